r"""Conformance with PyEPO 2.2.7 on identical inputs, for its methods not compared elsewhere in ``tests/peers``:
negative identity (NID), the perturbed Fenchel-Young loss (PFYL), the multiplicative perturbed optimizer and its
Fenchel-Young loss (DPOMul, PFYMul), the contrastive losses (NCE, CMAP) and adaptive I-MLE (AIMLE).

PyEPO solves with OR-Tools here (``pyepo.model.ort.shortestPathModel`` on a 5×5 grid, 40 edges; the ``peers``
extra). Conventions: PyEPO minimizes costs c, colayers maximizes scores θ; every comparison uses θ = −c, so
PyEPO's gradient in c is minus colayers' gradient in θ. Deterministic methods agree to 1e-6; sampled ones are
compared in expectation: R stacked copies of one instance give R independent replicates on each side, and the two
means must agree within ``N_SIGMA`` standard errors of their difference (per coordinate).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import colayers as cl

from ._pyepo_solve import solve_pyepo

pyepo = pytest.importorskip("pyepo")
pytest.importorskip("ortools")
from pyepo.data.dataset import optDataset  # noqa: E402
from pyepo.model.ort import shortestPathModel  # noqa: E402

pytestmark = pytest.mark.peers
DT = torch.float64
GRID = (5, 5)
D = 40  # edges of the 5×5 grid
N_SIGMA = 5.0  # per-coordinate bound: P(|N(0,1)| > 5) ≈ 6e-7, so 40 coordinates × a few tests fail < 1e-4


@pytest.fixture(scope="module")
def optmodel():
    return shortestPathModel(grid=GRID)


def _oracle():
    return cl.GridDAGShortestPath(*GRID)


def _costs(n, seed, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, D), generator=g, dtype=DT) * scale + 0.2  # positive edge costs


def _solve_pyepo(optmodel, c):
    return solve_pyepo(optmodel, c, DT)


def _agree(a, b, label):
    """Means of two independent replicate sets agree within N_SIGMA standard errors of their difference."""
    se = np.sqrt(a.var(0, ddof=1) / len(a) + b.var(0, ddof=1) / len(b))
    err = np.abs(a.mean(0) - b.mean(0))
    assert np.all(err <= N_SIGMA * se + 1e-9), f"{label}: {err} > {N_SIGMA * se}"


def _informative(g, label):
    """The compared gradient is a signal: some coordinate's mean is ≥ 5 standard errors from zero."""
    assert np.any(np.abs(g.mean(0)) > 5 * g.std(0, ddof=1) / math.sqrt(len(g))), f"{label}: only noise"


def _layer_replicates(fn, c, r):
    """R stacked copies of one instance through a layer fn: (forward (R, d), VJP (R, d)) for the loss Σ<out, v>."""
    v = torch.linspace(-1.0, 1.0, D, dtype=DT)
    x = c.expand(r, D).clone().requires_grad_(True)
    out = fn(x)
    (out * v).sum().backward()
    return out.detach().numpy(), x.grad.numpy()


def _loss_replicates(fn, c, w, r):
    """R stacked copies of one (c, w) through a loss fn with reduction 'none': (values (R,), gradients (R, d))."""
    x = c.expand(r, D).clone().requires_grad_(True)
    loss = fn(x, w.expand(r, D).clone())
    loss.sum().backward()
    return loss.detach().reshape(r, 1).numpy(), x.grad.numpy()


class _NormalNoise:
    """A symmetric noise for PyEPO's (adaptive) I-MLE (its default Sum-of-Gamma is not symmetric, and c = −θ
    flips it)."""

    def __init__(self, seed):
        self.gen = torch.Generator().manual_seed(seed)

    def sample(self, size, device=None, dtype=None):
        return torch.randn(size, generator=self.gen, dtype=dtype or DT)


def test_negative_identity_equals_identity_relaxation(optmodel):
    """NID: forward w*(c), backward −grad in c; IdentityRelaxation: forward f(θ), backward identity in θ."""
    c = _costs(12, 20).requires_grad_(True)
    v = torch.randn((12, D), generator=torch.Generator().manual_seed(21), dtype=DT)
    theirs = pyepo.func.negativeIdentity(optmodel, processes=1)(c)
    (theirs * v).sum().backward()
    theta = (-c.detach()).requires_grad_(True)
    ours = cl.IdentityRelaxation(_oracle())(theta)
    (ours * v).sum().backward()
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(-theta.grad.numpy(), c.grad.numpy(), atol=1e-6)
    np.testing.assert_allclose(c.grad.numpy(), -v.numpy(), atol=1e-12)  # the closed form −v


def test_perturbed_fenchel_young_agrees_with_pyepo_in_expectation(optmodel):
    """PFYL vs FenchelYoungLoss(PerturbedAdditive): Gaussian noise σ = ε = 0.5, S = 3, R = 400 replicates."""
    c = _costs(1, 22)[0] * 0.4 + 0.8
    w = _solve_pyepo(optmodel, _costs(1, 23))[0]
    r, eps, s = 400, 0.5, 3
    pfyl = pyepo.func.perturbedFenchelYoung(optmodel, n_samples=s, sigma=eps, processes=1, seed=3, reduction="none")
    theirs_f, theirs_g = _loss_replicates(lambda x, y: pfyl(x, y).reshape(-1), c, w, r)
    fyl = cl.FenchelYoungLoss(cl.PerturbedAdditive(_oracle(), epsilon=eps, num_samples=s, seed=4), reduction="none")
    ours_f, ours_g = _loss_replicates(lambda x, y: fyl(-x, y), c, w, r)
    _agree(ours_f, theirs_f, "PFYL value")
    _agree(ours_g, theirs_g, "PFYL gradient")
    _informative(theirs_g, "PFYL gradient")


def test_perturbed_multiplicative_agrees_with_pyepo_in_expectation(optmodel):
    """DPOMul vs PerturbedMultiplicative: c ⊙ exp(σZ − σ²/2), σ = ε = 0.6, S = 4 with the leave-one-out baseline
    on both sides, R = 600 replicates."""
    c = _costs(1, 24, scale=3.0)[0] + 0.3  # costs 0.5 to 3.5: the noise scales with each cost, unlike additive noise
    r, eps, s = 600, 0.6, 4
    theirs_f, theirs_g = _layer_replicates(
        pyepo.func.perturbedOptMul(optmodel, n_samples=s, sigma=eps, processes=1, seed=3), c, r)
    layer = cl.PerturbedMultiplicative(_oracle(), epsilon=eps, num_samples=s, seed=4)
    ours_f, ours_g = _layer_replicates(lambda x: layer(-x), c, r)
    _agree(ours_f, theirs_f, "DPOMul forward")
    _agree(ours_g, theirs_g, "DPOMul VJP")
    _informative(theirs_g, "DPOMul VJP")


def test_perturbed_fenchel_young_mul_agrees_with_pyepo_in_expectation(optmodel):
    """PFYMul vs FenchelYoungLoss(PerturbedMultiplicative): σ = ε = 0.4, S = 3, R = 400 replicates."""
    c = _costs(1, 25, scale=3.0)[0]
    w = _solve_pyepo(optmodel, _costs(1, 26))[0]
    r, eps, s = 400, 0.4, 3
    pfyl = pyepo.func.perturbedFenchelYoungMul(optmodel, n_samples=s, sigma=eps, processes=1, seed=3,
                                               reduction="none")
    theirs_f, theirs_g = _loss_replicates(lambda x, y: pfyl(x, y).reshape(-1), c, w, r)
    fyl = cl.FenchelYoungLoss(cl.PerturbedMultiplicative(_oracle(), epsilon=eps, num_samples=s, seed=4),
                              reduction="none")
    ours_f, ours_g = _loss_replicates(lambda x, y: fyl(-x, y), c, w, r)
    _agree(ours_f, theirs_f, "PFYMul value")
    _agree(ours_g, theirs_g, "PFYMul gradient")
    _informative(theirs_g, "PFYMul gradient")


@pytest.mark.parametrize(("theirs_name", "ours_cls"), [("NCE", cl.NCELoss), ("contrastiveMAP", cl.MAPContrastiveLoss)])
def test_contrastive_value_and_gradient_equal_pyepo(optmodel, theirs_name, ours_cls):
    """Both pools start from the training solutions and add w*(ĉ) of the batch (solve ratio 1), so they hold the
    same set; the losses are then deterministic."""
    c_train = _costs(10, 27, scale=3.0)
    data = optDataset(optmodel, np.zeros((10, 1)), c_train.numpy())
    true_sol = torch.as_tensor(data.sols, dtype=DT)[:6]
    c_hat = _costs(6, 28).requires_grad_(True)
    weights = torch.arange(1.0, 7.0, dtype=DT)
    their_loss = getattr(pyepo.func, theirs_name)(optmodel, processes=1, solve_ratio=1.0, reduction="none",
                                                   dataset=data)
    theirs = their_loss(c_hat, true_sol).reshape(-1)
    (theirs * weights).sum().backward()
    pool = cl.SolutionPool(_oracle(), torch.as_tensor(data.sols, dtype=DT), solve_ratio=1.0, seed=0)
    theta = (-c_hat.detach()).requires_grad_(True)
    ours = ours_cls(pool, reduction="none")(theta, true_sol)
    (ours * weights).sum().backward()
    assert len(pool) == their_loss.solpool.shape[0]
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), atol=1e-6)
    np.testing.assert_allclose(-theta.grad.numpy(), c_hat.grad.numpy(), atol=1e-6)
    assert c_hat.grad.abs().sum() > 0


@pytest.mark.parametrize("two_sides", [False, True])
def test_adaptive_imle_agrees_with_pyepo_in_expectation(optmodel, two_sides):
    """AIMLE with one λ = α‖ĉ‖/‖ȳ‖ per batch (PyEPO's α and colayers' β = 1 at the first step), Normal noise
    σ = ε = 0.5, S = 3, R = 400 replicates. Two-sided, PyEPO steps to c ± λȳ and divides by 2λ: colayers' β
    doubled (docs/guides/coming-from.md)."""
    c = _costs(1, 29)[0] * 0.4 + 0.8
    r, eps, s = 400, 0.5, 3
    their_layer = pyepo.func.adaptiveImplicitMLE(optmodel, n_samples=s, sigma=eps, two_sides=two_sides,
                                                 distribution=_NormalNoise(7), processes=1)
    theirs_f, theirs_g = _layer_replicates(their_layer, c, r)
    beta = 2.0 if two_sides else 1.0
    layer = cl.AIMLE(_oracle(), noise=cl.perturb.Normal(), epsilon=eps, num_samples=s, two_sided=two_sides,
                     beta=beta, lambda_per="batch", output="mean", seed=8)
    ours_f, ours_g = _layer_replicates(lambda x: layer(-x), c, r)
    _agree(ours_f, theirs_f, "AIMLE forward")
    _agree(ours_g, theirs_g, "AIMLE VJP")
    _informative(theirs_g, "AIMLE VJP")
