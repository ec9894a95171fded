r"""The Frank-Wolfe / SparseMAP forward and VJP against an independent projection onto conv(Y) with cvxpy.

The reference solves :math:`\min_{w\in\Delta_m}\|\sum_j w_j y_j - \theta\|^2` over the ENUMERATED vertices
y_j (tests/references.py; top-2 of 5, rankings of 4, the 3×3 grid paths) with Clarabel at tight tolerances, and
for top-k also over the polytope's inequality description :math:`\{0\le\mu\le1, \sum_i\mu_i = k\}`. The Jacobian
reference is central differences of that cvxpy projection (the projection is piecewise affine; the step h is
small against the distance to a kink at these random points, and the test asserts the two one-sided
differences agree, i.e. that no kink lies within h).
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import pytest
import torch

import colayers as cl

from .. import references as ref

DT = torch.float64


def project_vertices(Y: np.ndarray, theta: np.ndarray) -> np.ndarray:
    w = cp.Variable(Y.shape[0], nonneg=True)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(Y.T @ w - theta)), [cp.sum(w) == 1])
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    assert prob.status == cp.OPTIMAL, prob.status
    return Y.T @ w.value


def project_topk(theta: np.ndarray, k: int) -> np.ndarray:
    mu = cp.Variable(theta.size)
    prob = cp.Problem(cp.Minimize(cp.sum_squares(mu - theta)), [mu >= 0, mu <= 1, cp.sum(mu) == k])
    prob.solve(solver=cp.CLARABEL, tol_gap_abs=1e-12, tol_gap_rel=1e-12, tol_feas=1e-12)
    assert prob.status == cp.OPTIMAL, prob.status
    return mu.value


CASES = {
    "top2of5": (lambda: cl.TopKSubset(2), ref.topk_set(5, 2)),
    "rank4": (lambda: cl.Ranking(), ref.ranking_set(4)),
    "grid3x3": (lambda: cl.GridDAGShortestPath(3, 3), ref.grid_path_set(3, 3)),
}


def _theta(name, seed):
    _, Y = CASES[name]
    rng = np.random.default_rng(seed)
    # scores at the scale of the vertices, so that the projection lands on a face of middle dimension
    return rng.normal(size=Y.shape[1]) * (1.5 if name == "rank4" else 0.6) + Y.mean(0)


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sparsemap_forward_equals_the_cvxpy_projection(name, seed):
    make, Y = CASES[name]
    theta = _theta(name, seed)
    got = cl.RegularizedFrankWolfe(make())(torch.tensor(theta, dtype=DT)).numpy()
    want = project_vertices(Y, theta)
    np.testing.assert_allclose(got, want, atol=1e-6)
    if name == "top2of5":
        np.testing.assert_allclose(got, project_topk(theta, 2), atol=1e-6)
    # the projection is the closest point of the hull: a wrong forward (e.g. theta itself) is rejected
    assert np.linalg.norm(theta - got) <= np.linalg.norm(theta - Y.mean(0)) + 1e-9


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize(("seed", "strength"), [(0, 1.0), (1, 1.0), (2, 1.0), (3, 2.5)])
def test_sparsemap_vjp_equals_differences_of_the_cvxpy_projection(name, seed, strength):
    """Ω = (s/2)‖μ‖²: μ(θ) = proj(θ/s), so the reference is the differences of θ ↦ proj(θ/s) (s ≠ 1 included)."""
    make, Y = CASES[name]
    theta = _theta(name, seed) * strength
    v = np.random.default_rng(seed + 100).normal(size=theta.size)
    th = torch.tensor(theta, dtype=DT).requires_grad_(True)
    out = cl.RegularizedFrankWolfe(make(), regularizer=cl.SquaredNorm(strength))(th)
    (out * torch.tensor(v, dtype=DT)).sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), project_vertices(Y, theta / strength), atol=1e-6)
    h = 1e-4
    fwd = np.zeros(theta.size)
    bwd = np.zeros(theta.size)
    base = project_vertices(Y, theta / strength) @ v
    for i in range(theta.size):
        e = np.zeros(theta.size)
        e[i] = h
        fwd[i] = (project_vertices(Y, (theta + e) / strength) @ v - base) / h
        bwd[i] = (base - project_vertices(Y, (theta - e) / strength) @ v) / h
    assert np.allclose(fwd, bwd, atol=1e-4), "a kink of the projection lies within h of this theta"
    want = 0.5 * (fwd + bwd)
    np.testing.assert_allclose(th.grad.numpy(), want, atol=1e-4)
    if np.abs(want).max() > 1e-2:
        for c in (2.0, 0.5, -1.0, strength, 1 / strength):
            if c != 1.0:
                assert not np.allclose(c * th.grad.numpy(), want, atol=1e-4)
