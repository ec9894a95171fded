r"""Conformance of :class:`~colayers.losses.ConeAlignedCosineLoss` with PyEPO 2.2's ``coneAlignedCosine`` (CaVE).

Same inputs, same loss value and gradient (to 1e-6), on PyEPO's shortest-path model on a 3 × 3 grid (OR-Tools
backend). PyEPO minimizes costs c; colayers maximizes θ = −c, so PyEPO's ``pred_cost`` is −θ. PyEPO takes the
binding constraints as an argument (``tight_ctrs``, built by its Gurobi-only ``optDatasetConstrs``); here they are
read from PyEPO's own OR-Tools model with PyEPO's rules (``pyepo.data.dataset._extract_tight_normals``: ``≤`` rows as
they are, ``≥`` rows negated, equalities with both signs, −e_k at 0 and +e_k at 1), while colayers derives its cone
from :attr:`~colayers.oracles.GridDAGShortestPath.linear_constraints` — two independent descriptions of the cone.

PyEPO's default ``max_iter=3`` (CaVE+) truncates Clarabel's interior-point method on purpose: it is compared with
``projection="truncated"`` at the same ``max_iter``; the exact projection is compared with PyEPO at a converged
``max_iter=200`` (PyEPO rounds the projection to float32: a relative error ≤ 1e-7, within the 1e-6 tolerance). The
heuristic branch (``solve_ratio=0``) is compared with ``projection="average"``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import colayers as cl

pyepo = pytest.importorskip("pyepo")
pytest.importorskip("ortools")
pytest.importorskip("clarabel")  # PyEPO's cone projection
from pyepo.func import coneAlignedCosine  # noqa: E402
from pyepo.model.ort import shortestPathModel  # noqa: E402

pytestmark = pytest.mark.peers
DT = torch.float64
GRID = (3, 3)


@pytest.fixture(scope="module")
def optmodel():
    return shortestPathModel(grid=GRID)


def _pyepo_tight_rows(optmodel, sol: np.ndarray, tol: float = 1e-5) -> np.ndarray:
    """PyEPO's binding normals at ``sol``, read from its OR-Tools model."""
    solver = optmodel._model
    xs = list(optmodel.x.values())
    rows = []
    for con in solver.constraints():
        a = np.array([con.GetCoefficient(v) for v in xs])
        lhs = a @ sol
        if con.lb() == con.ub():
            if abs(lhs - con.ub()) < tol:
                rows += [a, -a]
            continue
        if np.isfinite(con.ub()) and abs(lhs - con.ub()) < tol:
            rows.append(a)
        if np.isfinite(con.lb()) and abs(lhs - con.lb()) < tol:
            rows.append(-a)
    eye = np.eye(len(xs))
    rows += [-eye[k] for k in np.where(sol <= tol)[0]] + [eye[k] for k in np.where(sol >= 1 - tol)[0]]
    return np.array(rows)


def _padded(blocks: list[np.ndarray]) -> torch.Tensor:
    m = max(b.shape[0] for b in blocks)
    out = np.zeros((len(blocks), m, blocks[0].shape[1]))
    for i, b in enumerate(blocks):
        out[i, : b.shape[0]] = b
    return torch.tensor(out, dtype=DT)


def _data(n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    c_true = torch.rand((n, 12), generator=g, dtype=DT) * 2 + 0.2
    c_hat = torch.randn((n, 12), generator=g, dtype=DT)  # some entries negative: θ = −ĉ often outside the cone
    y_true = cl.GridDAGShortestPath(*GRID)(-c_true)
    return c_hat, y_true


def _both(optmodel, c_hat, y_true, theirs_loss, ours_loss):
    tight = _padded([_pyepo_tight_rows(optmodel, y.numpy()) for y in y_true])
    c1 = c_hat.clone().requires_grad_(True)
    theirs = theirs_loss(c1, tight)
    # an upstream gradient other than 1 (one weight per instance for reduction="none")
    weights = torch.linspace(0.5, 2.0, len(c_hat), dtype=DT) if theirs.ndim else torch.tensor(1.7, dtype=DT)
    theirs.backward(weights)
    c2 = c_hat.clone().requires_grad_(True)
    ours = ours_loss(-c2, y_true)
    ours.backward(weights)
    return (theirs.detach(), c1.grad), (ours.detach(), c2.grad)


def test_the_cones_are_the_same_set_of_rows(optmodel):
    _, y_true = _data(8, 0)
    oracle = cl.GridDAGShortestPath(*GRID)
    normals, binding = cl.binding_normals(oracle, y_true)
    for i, y in enumerate(y_true):
        theirs = {tuple(r) for r in _pyepo_tight_rows(optmodel, y.numpy()).tolist()}
        ours = {tuple(r) for r in normals[binding[i]].tolist()}
        assert ours == theirs


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_exact_projection_value_and_gradient_equal_pyepo(optmodel, reduction):
    c_hat, y_true = _data(16, 1)
    theirs_loss = coneAlignedCosine(optmodel, max_iter=200, reduction=reduction)
    ours_loss = cl.ConeAlignedCosineLoss(cl.GridDAGShortestPath(*GRID), reduction=reduction)
    (tv, tg), (ov, og) = _both(optmodel, c_hat, y_true, theirs_loss, ours_loss)
    assert (ov > 1e-3).any()  # the comparison sees θ outside the cone
    torch.testing.assert_close(ov, tv, atol=1e-6, rtol=0)
    torch.testing.assert_close(og, tg, atol=1e-6, rtol=0)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_truncated_projection_equals_pyepo_default_cave_plus(optmodel, reduction):
    c_hat, y_true = _data(32, 3)
    theirs_loss = coneAlignedCosine(optmodel, reduction=reduction)  # PyEPO's defaults: max_iter=3, solve_ratio=1
    ours_loss = cl.ConeAlignedCosineLoss(cl.GridDAGShortestPath(*GRID), projection="truncated", reduction=reduction)
    (tv, tg), (ov, og) = _both(optmodel, c_hat, y_true, theirs_loss, ours_loss)
    torch.testing.assert_close(ov, tv, atol=1e-6, rtol=0)
    torch.testing.assert_close(og, tg, atol=1e-6, rtol=0)
    exact = cl.ConeAlignedCosineLoss(cl.GridDAGShortestPath(*GRID), reduction=reduction)(-c_hat, y_true)
    assert (ov - exact).abs().max() > 1e-3  # CaVE+ is not the exact projection on these data


@pytest.mark.parametrize("max_iter", [1, 5])
def test_truncated_projection_equals_pyepo_at_other_iteration_limits(optmodel, max_iter):
    c_hat, y_true = _data(16, 4)
    theirs_loss = coneAlignedCosine(optmodel, max_iter=max_iter, reduction="none")
    ours_loss = cl.ConeAlignedCosineLoss(
        cl.GridDAGShortestPath(*GRID), projection="truncated", max_iter=max_iter, reduction="none"
    )
    (tv, tg), (ov, og) = _both(optmodel, c_hat, y_true, theirs_loss, ours_loss)
    torch.testing.assert_close(ov, tv, atol=1e-6, rtol=0)
    torch.testing.assert_close(og, tg, atol=1e-6, rtol=0)


def test_average_projection_equals_pyepo_heuristic_branch(optmodel):
    c_hat, y_true = _data(16, 2)
    theirs_loss = coneAlignedCosine(optmodel, solve_ratio=0.0, inner_ratio=0.35)
    ours_loss = cl.ConeAlignedCosineLoss(cl.GridDAGShortestPath(*GRID), projection="average", inner_ratio=0.35)
    (tv, tg), (ov, og) = _both(optmodel, c_hat, y_true, theirs_loss, ours_loss)
    torch.testing.assert_close(ov, tv, atol=1e-6, rtol=0)
    torch.testing.assert_close(og, tg, atol=1e-6, rtol=0)
