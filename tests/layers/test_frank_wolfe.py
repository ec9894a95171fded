"""RegularizedFrankWolfe with pluggable regularizers, and the regularized-layer protocol.

References the code under test did not produce: cvxpy programs over conv(Y) given by its enumerated
vertices, softmax / sparsemax closed forms on the simplex, finite differences (gradcheck), and the KL soft
ranks (isotonic regression: a different algorithm) on the ranking polytope.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from torch.autograd import gradcheck

from colayers import (
    ArgmaxOneHot,
    NegativeEntropy,
    Ranking,
    RegularizedFrankWolfe,
    RegularizedLayer,
    SoftArgmax,
    SparseArgmax,
    SquaredNorm,
    TopKSubset,
    soft_rank,
)
from colayers.layers.frank_wolfe import Regularizer, frank_wolfe

from .helpers import SignOracle

_TIGHT = {"solver": "CLARABEL", "tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}


def _randn(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _vertices(oracle_name, n):
    if oracle_name == "topk":
        return np.array([[1.0 if i in c else 0.0 for i in range(n)] for c in itertools.combinations(range(n), 2)])
    return np.array([list(p) for p in itertools.permutations(range(1, n + 1))], dtype=np.float64)


def _cvxpy(theta, vertices, reg, s):
    """argmax over conv(vertices) of <theta, mu> - Omega(mu), over the vertex weights."""
    import cvxpy as cp

    lam = cp.Variable(len(vertices), nonneg=True)
    mu = vertices.T @ lam
    omega = 0.5 * s * cp.sum_squares(mu) if reg == "l2" else -s * cp.sum(cp.entr(mu))
    cp.Problem(cp.Maximize(theta @ mu - omega), [cp.sum(lam) == 1]).solve(**_TIGHT)
    return vertices.T @ lam.value


ORACLES = {"topk": (TopKSubset(2), 5), "ranking": (Ranking(), 4)}


@pytest.mark.parametrize("name", ["topk", "ranking"])
@pytest.mark.parametrize("reg,s", [("l2", 1.0), ("l2", 0.6), ("kl", 0.7), ("kl", 2.5)])
def test_forward_matches_cvxpy_over_enumerated_vertices(name, reg, s):
    oracle, n = ORACLES[name]
    theta = _randn(4, n, seed=1) * (3.0 if name == "ranking" else 1.5)
    regularizer = SquaredNorm(s) if reg == "l2" else NegativeEntropy(s)
    ours = RegularizedFrankWolfe(oracle, regularizer=regularizer, max_iter=300)(theta)
    vertices = _vertices(name, n)
    for i in range(4):
        np.testing.assert_allclose(ours[i].numpy(), _cvxpy(theta[i].numpy(), vertices, reg, s), atol=2e-5)


@pytest.mark.parametrize("s", [0.4, 1.9])
def test_entropic_on_the_simplex_is_softmax_in_value_and_jacobian(s):
    theta = _randn(3, 6, seed=2) * 2
    layer = RegularizedFrankWolfe(ArgmaxOneHot(), regularizer=NegativeEntropy(s))
    torch.testing.assert_close(layer(theta), torch.softmax(theta / s, -1), atol=1e-9, rtol=0)
    j_fw = torch.autograd.functional.jacobian(lambda t: layer(t).sum(0), theta)
    j_ref = torch.autograd.functional.jacobian(lambda t: torch.softmax(t / s, -1).sum(0), theta)
    torch.testing.assert_close(j_fw, j_ref, atol=1e-8, rtol=0)
    torch.testing.assert_close(layer.omega(layer(theta)), SoftArgmax(temperature=s).omega(layer(theta)))


@pytest.mark.parametrize("s", [0.5, 1.3])
def test_squared_norm_strength_on_the_simplex_is_sparsemax_of_theta_over_s(s):
    theta = _randn(5, 6, seed=3) * 2
    layer = RegularizedFrankWolfe(ArgmaxOneHot(), regularizer=SquaredNorm(s))
    torch.testing.assert_close(layer(theta), SparseArgmax()(theta / s), atol=1e-10, rtol=0)
    j_fw = torch.autograd.functional.jacobian(lambda t: layer(t).sum(0), theta)
    j_ref = torch.autograd.functional.jacobian(lambda t: SparseArgmax()(t / s).sum(0), theta)
    torch.testing.assert_close(j_fw, j_ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("s", [0.8, 3.0])
def test_entropic_on_ranking_equals_kl_soft_ranks(s):
    """Two algorithms for argmax_{mu in P(1..n)} <theta, mu> - s sum mu log mu: Frank-Wolfe over the Ranking
    oracle and isotonic regression (soft_rank, "kl")."""
    theta = _randn(3, 5, seed=4) * 2
    layer = RegularizedFrankWolfe(Ranking(), regularizer=NegativeEntropy(s), max_iter=300)
    ref = soft_rank(theta, strength=s, regularization="kl")
    torch.testing.assert_close(layer(theta), ref, atol=1e-7, rtol=0)
    j_fw = torch.autograd.functional.jacobian(lambda t: layer(t).sum(0), theta)
    j_ref = torch.autograd.functional.jacobian(lambda t: soft_rank(t, strength=s, regularization="kl").sum(0), theta)
    torch.testing.assert_close(j_fw, j_ref, atol=1e-6, rtol=0)


@pytest.mark.parametrize("n, s", [(12, 1.0), (20, 0.3)])
def test_entropic_on_longer_rankings_equals_kl_soft_ranks(n, s):
    """The pair the docs send rankings from (Frank-Wolfe) to (SoftRank "kl"): the same soft ranks within the
    solver's tolerance on rows longer than the Jacobian test's, where the compiled PAV pools long blocks."""
    theta = _randn(4, n, seed=6) * 2
    layer = RegularizedFrankWolfe(Ranking(), regularizer=NegativeEntropy(s))
    torch.testing.assert_close(layer(theta), soft_rank(theta, strength=s, regularization="kl"), atol=1e-7, rtol=0)


def test_l2_on_ranking_equals_l2_soft_ranks():
    theta = _randn(3, 5, seed=5) * 2
    layer = RegularizedFrankWolfe(Ranking(), regularizer=SquaredNorm(0.7))
    torch.testing.assert_close(layer(theta), soft_rank(theta, strength=0.7), atol=1e-8, rtol=0)


def test_gradcheck_entropic_topk():
    theta = (_randn(2, 5, seed=6) * 1.5).requires_grad_(True)
    layer = RegularizedFrankWolfe(TopKSubset(2), regularizer=NegativeEntropy(0.8), max_iter=300, tol=1e-12)
    assert gradcheck(layer, (theta,), atol=1e-5)


class _HalfSquare(Regularizer):
    """½‖·‖² without the projection shortcut: runs the generic Frank-Wolfe (bisection, Newton polish)."""

    def value(self, mu):
        return 0.5 * (mu * mu).sum(-1)

    def gradient(self, mu):
        return mu

    def hessian_diag(self, mu):
        return torch.ones_like(mu)


@pytest.mark.parametrize("name", ["topk", "ranking"])
def test_generic_solver_with_a_user_regularizer_matches_the_projection(name):
    oracle, n = ORACLES[name]
    theta = _randn(6, n, seed=7) * 2
    generic = RegularizedFrankWolfe(oracle, regularizer=_HalfSquare())
    torch.testing.assert_close(generic(theta), RegularizedFrankWolfe(oracle)(theta), atol=1e-8, rtol=0)
    t = theta.clone().requires_grad_(True)
    j_gen = torch.autograd.functional.jacobian(lambda x: generic(x).sum(0), t)
    j_ref = torch.autograd.functional.jacobian(lambda x: RegularizedFrankWolfe(oracle)(x).sum(0), t)
    torch.testing.assert_close(j_gen, j_ref, atol=1e-7, rtol=0)


def _in_topk(atoms):
    return bool((((atoms == 0) | (atoms == 1)).all(-1) & (atoms.sum(-1) == 2)).all())


def _in_ranking(atoms):
    n = atoms.shape[-1]
    return bool((torch.sort(atoms, -1).values == torch.arange(1, n + 1, dtype=atoms.dtype)).all())


@pytest.mark.parametrize("reg", [SquaredNorm(1.0), NegativeEntropy(0.9)], ids=["l2", "kl"])
@pytest.mark.parametrize("name", ["topk", "ranking"])
def test_distribution_atoms_in_y_weights_sum_to_one_mean_is_forward(reg, name):
    oracle, n = ORACLES[name]
    theta = _randn(2, 3, n, seed=8)
    layer = RegularizedFrankWolfe(oracle, regularizer=reg)
    d = layer.distribution(theta)
    assert d.atoms.shape[1:] == (2, 3, n) and d.weights.shape[1:] == (2, 3)
    assert (_in_topk if name == "topk" else _in_ranking)(d.atoms)
    assert bool((d.weights >= 0).all())
    torch.testing.assert_close(d.weights.sum(0), torch.ones(2, 3, dtype=torch.float64))
    torch.testing.assert_close(d.mean, layer(theta), atol=1e-12, rtol=0)


@pytest.mark.parametrize("layer", [SoftArgmax(temperature=0.7), SparseArgmax()], ids=["soft", "sparse"])
def test_simplex_layers_distribution(layer):
    theta = _randn(2, 3, 5, seed=9) * 2
    d = layer.distribution(theta)
    assert d.atoms.shape == (5, 2, 3, 5) and d.weights.shape == (5, 2, 3)
    assert bool(((d.atoms == 0) | (d.atoms == 1)).all()) and bool((d.atoms.sum(-1) == 1).all())
    ref = torch.softmax(theta / 0.7, -1) if isinstance(layer, SoftArgmax) else SparseArgmax()(theta)
    torch.testing.assert_close(d.weights, ref.movedim(-1, 0))
    torch.testing.assert_close(d.weights.sum(0), torch.ones(2, 3, dtype=torch.float64))
    torch.testing.assert_close(d.mean, layer(theta))
    with pytest.raises(TypeError, match="is deterministic and takes no generator"):
        layer(theta, generator=torch.Generator())
    with pytest.raises(TypeError, match="is deterministic and takes no generator"):
        layer.distribution(theta, generator=torch.Generator())


def test_protocol():
    for layer in (SoftArgmax(), SparseArgmax(), RegularizedFrankWolfe(TopKSubset(2), regularizer=NegativeEntropy())):
        assert isinstance(layer, RegularizedLayer)


def test_empty_batches_and_events():
    for reg in (SquaredNorm(), NegativeEntropy()):
        layer = RegularizedFrankWolfe(TopKSubset(2), regularizer=reg)
        theta = torch.zeros(0, 5, dtype=torch.float64, requires_grad=True)
        out = layer(theta)
        assert out.shape == (0, 5)
        out.sum().backward()
        assert theta.grad.shape == (0, 5)
        d = layer.distribution(torch.zeros(0, 5))
        assert d.atoms.shape[1:] == (0, 5) and d.mean.shape == (0, 5)
    for layer in (SoftArgmax(), SparseArgmax()):
        for shape in [(0, 4), (3, 0), (0,)]:
            theta = torch.zeros(shape, requires_grad=True)
            out = layer(theta)
            assert out.shape == shape
            out.sum().backward()
            assert theta.grad.shape == shape
        assert layer.distribution(torch.zeros(0, 4)).atoms.shape == (4, 0, 4)


@pytest.mark.parametrize("magnitude", [1e6, 1.7e7, 1e20, 3e38])
def test_sparsemax_is_stable_at_any_finite_magnitude(magnitude):
    base = _randn(4, 6, seed=10)
    theta32 = (base / base.abs().max() * magnitude).float()
    out = SparseArgmax()(theta32)
    assert bool(torch.isfinite(out).all())
    torch.testing.assert_close(out.sum(-1), torch.ones(4))
    ref = SparseArgmax()(theta32.double()).float()
    torch.testing.assert_close(out, ref)
    # small differences at a large offset: sparsemax is shift-invariant
    offset = torch.tensor([[1e6, 1e6 + 0.5, 1e6 - 4.0]])  # exact in float32
    torch.testing.assert_close(SparseArgmax()(offset), torch.tensor([[0.25, 0.75, 0.0]]))


def test_bad_input():
    with pytest.raises(TypeError, match="regularizer must be a colayers.layers.frank_wolfe.Regularizer"):
        RegularizedFrankWolfe(TopKSubset(2), regularizer="entropy")
    with pytest.raises(ValueError, match="strength must be > 0"):
        NegativeEntropy(0.0)
    with pytest.raises(ValueError, match="strength must be a finite number"):
        SquaredNorm(float("inf"))
    with pytest.raises(ValueError, match="temperature must be a finite number"):
        SoftArgmax(temperature=float("inf"))
    with pytest.raises(ValueError, match="non-negative entries"):
        RegularizedFrankWolfe(SignOracle(), regularizer=NegativeEntropy())(torch.tensor([[-1.0]]))


def test_frank_wolfe_function_budget_and_gap():
    """The returned weights reach the stopping rule: a Frank-Wolfe gap within tol (1 + |theta|^2)."""
    theta = _randn(8, 6, seed=11)
    reg = NegativeEntropy(0.5)
    oracle = TopKSubset(3)
    atoms, w = frank_wolfe(theta, oracle, reg, max_iter=300, tol=1e-10)
    mu = (w.unsqueeze(-1) * atoms).sum(1)
    g = theta - reg.gradient(mu)
    gap = (g * (oracle(g) - mu)).sum(-1)
    assert bool((gap <= 1e-9 * (1 + (theta * theta).sum(-1))).all())


def test_the_docs_page_examples_run():
    import pathlib
    import re

    page = pathlib.Path(__file__).resolve().parents[2] / "docs" / "regularized.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(block, namespace)
    assert namespace["mu"].shape == (8, 10) and bool((namespace["mu"] > 0).all())
    assert namespace["ranks"].shape == (32, 100)


def test_a_budget_that_runs_out_before_the_tolerance_is_said_and_a_converged_solve_is_silent():
    # the Euclidean projection of 6-item rankings (SquaredNorm) needs several atoms: 2 iterations cannot reach the
    # tolerance, and the forward must say so (a RuntimeWarning with the budget and the gap); the same scores with
    # the default budget converge and must stay silent
    import warnings

    theta = _randn(3, 6, seed=4) * 2.0
    with pytest.warns(RuntimeWarning, match=r"max_iter=2 before reaching its tolerance on \d of 3 instances"):
        short = RegularizedFrankWolfe(Ranking(), regularizer=SquaredNorm(1.0), max_iter=2)(theta)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        full = RegularizedFrankWolfe(Ranking(), regularizer=SquaredNorm(1.0))(theta)
    assert (short - full).abs().max().item() > 1e-3  # the warning was about a real difference
