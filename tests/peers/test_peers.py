r"""Conformance with the peer libraries, on identical inputs: PyEPO (SPO+, blackbox, perturbed, I-MLE) and entmax.

Runs when the optional ``peers`` extra is installed (``pip install -e ".[peers]"``: pyepo, entmax and OR-Tools,
the backend PyEPO solves with here — ``pyepo.model.ort.shortestPathModel``, free and pip-installable), and is
skipped otherwise (marker ``peers``: ``pytest -m peers`` selects these tests).

Conventions: PyEPO minimizes costs c, colayers maximizes scores θ; every comparison uses θ = −c, so PyEPO's
gradient in c is minus colayers' gradient in θ. Both use the edge order of
``pyepo.model.utils._get_grid_arcs`` (colayers' :class:`~colayers.oracles.GridDAGShortestPath` follows it).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import colayers as cl

from ..layers.reference_api import imle_output
from ._pyepo_solve import solve_pyepo

pyepo = pytest.importorskip("pyepo")
entmax = pytest.importorskip("entmax")
pytest.importorskip("ortools")
from pyepo.model.ort import shortestPathModel  # noqa: E402

pytestmark = pytest.mark.peers
DT = torch.float64
GRID = (3, 3)
N_SIGMA = 5.0


@pytest.fixture(scope="module")
def optmodel():
    return shortestPathModel(grid=GRID)


def _costs(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 12), generator=g, dtype=DT) * 2 + 0.2  # positive edge costs


def _solve_pyepo(optmodel, c):
    return solve_pyepo(optmodel, c, DT)


def test_the_shortest_path_solutions_agree(optmodel):
    c = _costs(20, 0)
    np.testing.assert_allclose(_solve_pyepo(optmodel, c).numpy(), cl.GridDAGShortestPath(*GRID)(-c).numpy(), atol=1e-9)


def test_spo_plus_value_and_gradient_equal_pyepo(optmodel):
    c_hat = _costs(16, 1).requires_grad_(True)
    c = _costs(16, 2)
    w = _solve_pyepo(optmodel, c)
    z = (c * w).sum(-1, keepdim=True)
    theirs = pyepo.func.SPOPlus(optmodel, processes=1, reduction="none")(c_hat, c, w, z).reshape(-1)
    (theirs * torch.arange(1.0, 17.0, dtype=DT)).sum().backward()
    g_theirs = c_hat.grad.clone()
    theta = (-c_hat.detach()).requires_grad_(True)
    ours = cl.SPOPlusLoss(cl.GridDAGShortestPath(*GRID), reduction="none")(theta, -c, w)
    (ours * torch.arange(1.0, 17.0, dtype=DT)).sum().backward()
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(-theta.grad.numpy(), g_theirs.numpy(), atol=1e-6)
    assert g_theirs.abs().sum() > 0


@pytest.mark.parametrize("lam", [3.0, 15.0])
def test_blackbox_gradient_equals_pyepo(optmodel, lam):
    c = _costs(16, 3).requires_grad_(True)
    target = _solve_pyepo(optmodel, _costs(16, 4))
    sol = pyepo.func.blackboxOpt(optmodel, lambd=lam, processes=1)(c)
    ((sol - target) ** 2).sum().backward()
    theta = (-c.detach()).requires_grad_(True)
    y = cl.Blackbox(cl.GridDAGShortestPath(*GRID), lambda_=lam)(theta)
    ((y - target) ** 2).sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), sol.detach().numpy(), atol=1e-9)
    # PyEPO divides by lambda + 1e-7; the relative difference is 1e-7 / lambda
    np.testing.assert_allclose(-theta.grad.numpy(), c.grad.numpy(), rtol=1e-6, atol=1e-9)
    assert c.grad.abs().sum() > 0


def _replicates(fn, c, r):
    """R stacked copies of one instance through fn: (forward (R, d), VJP (R, d)) for the loss sum <out, v>."""
    v = torch.linspace(-1.0, 1.0, 12, dtype=DT)
    x = c.expand(r, 12).clone().requires_grad_(True)
    out = fn(x)
    (out * v).sum().backward()
    return out.detach().numpy(), x.grad.numpy()


def _agree(a, b, label):
    """Means of two independent replicate sets agree within n_σ standard errors of their difference."""
    se = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
    err = np.abs(a.mean(0) - b.mean(0))
    assert np.all(err <= N_SIGMA * se + 1e-9), f"{label}: {err} > {N_SIGMA * se}"


def test_perturbed_gradient_agrees_with_pyepo_in_expectation(optmodel):
    """Additive Gaussian noise (σ = ε = 0.5, S = 4, leave-one-out baseline on both sides), R = 600 replicates."""
    c = _costs(1, 5)[0] * 0.4 + 0.8
    r, eps, s = 600, 0.5, 4
    theirs_f, theirs_g = _replicates(pyepo.func.perturbedOpt(optmodel, n_samples=s, sigma=eps, processes=1, seed=3),
                                     c, r)
    layer = cl.PerturbedAdditive(cl.GridDAGShortestPath(*GRID), epsilon=eps, num_samples=s, seed=4)
    ours_f, ours_g = _replicates(lambda x: layer(-x), c, r)
    _agree(ours_f, theirs_f, "perturbed forward")
    _agree(ours_g, theirs_g, "perturbed VJP")
    assert np.abs(theirs_g.mean(0)).max() > 5 * theirs_g.std(0).max() / math.sqrt(r)  # a gradient, not noise


class _NormalNoise:
    """A symmetric noise for PyEPO's implicitMLE (its default Sum-of-Gamma is not symmetric, and c = −θ flips it)."""

    def __init__(self, seed):
        self.gen = torch.Generator().manual_seed(seed)

    def sample(self, size, device=None, dtype=None):
        return torch.randn(size, generator=self.gen, dtype=dtype or DT)


@pytest.mark.parametrize("two_sides", [False, True])
def test_imle_gradient_agrees_with_pyepo_in_expectation(optmodel, two_sides):
    """One-sided: the same rule. Central: PyEPO steps to c ± λȳ and divides by 2λ, colayers steps to θ ± (λ/2)ȳ
    and divides by λ, so PyEPO's λ is colayers' 2λ (the two expectations differ at a finite step otherwise)."""
    c = _costs(1, 6)[0] * 0.4 + 0.8
    r, eps, lam, s = 600, 0.5, 2.0, 3
    their_layer = pyepo.func.implicitMLE(optmodel, n_samples=s, sigma=eps, lambd=lam, two_sides=two_sides,
                                         distribution=_NormalNoise(7), processes=1)
    theirs_f, theirs_g = _replicates(their_layer, c, r)
    ours_lam = 2 * lam if two_sides else lam
    layer = cl.IMLE(cl.GridDAGShortestPath(*GRID), noise=cl.perturb.Normal(), epsilon=eps, lambda_=ours_lam, num_samples=s,
                    two_sided=two_sides, seed=8, **imle_output(True))
    ours_f, ours_g = _replicates(lambda x: layer(-x), c, r)
    _agree(ours_f, theirs_f, "I-MLE forward")
    _agree(ours_g, theirs_g, "I-MLE VJP")
    assert np.abs(theirs_g.mean(0)).max() > 5 * theirs_g.std(0).max() / math.sqrt(r)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_argmax_equals_entmax_sparsemax(seed):
    z = torch.randn((8, 7), generator=torch.Generator().manual_seed(seed), dtype=DT) * 1.5
    v = torch.randn((8, 7), generator=torch.Generator().manual_seed(seed + 10), dtype=DT)
    a = z.clone().requires_grad_(True)
    b = z.clone().requires_grad_(True)
    ours = cl.SparseArgmax()(a)
    theirs = entmax.sparsemax(b, dim=-1)
    (ours * v).sum().backward()
    (theirs * v).sum().backward()
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)
    torch.testing.assert_close(a.grad, b.grad, rtol=0, atol=1e-12)
