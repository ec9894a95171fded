r"""Conformance with PyEPO 2.2's learning-to-rank losses and kNN-robust data set, on identical inputs.

Same setup as ``test_peers.py``: PyEPO solves with OR-Tools (``pyepo.model.ort.shortestPathModel``), colayers with
:class:`~colayers.oracles.GridDAGShortestPath` in the same edge order. PyEPO minimizes costs c, colayers maximizes
θ = −c: the values are equal and PyEPO's gradient in ĉ is minus colayers' gradient in θ. Both pools start from
the data set's optimal solutions and grow by the solutions at the predicted scores (solve ratio 1); a pool is a
set, so its order (PyEPO's insertion order, colayers' sorted order) does not change the listwise and pointwise
values, and the pairwise value only on ties of the true objective (none here: continuous random costs).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import colayers as cl

pyepo = pytest.importorskip("pyepo")
pytest.importorskip("ortools")
from pyepo.data.dataset import optDataset, optDatasetKNN  # noqa: E402
from pyepo.model.ort import shortestPathModel  # noqa: E402

pytestmark = pytest.mark.peers
DT = torch.float64
GRID = (3, 3)
N = 24


@pytest.fixture(scope="module")
def optmodel():
    return shortestPathModel(grid=GRID)


@pytest.fixture(scope="module")
def data(optmodel):
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(N, 5, generator=gen, dtype=DT)
    costs = torch.rand((N, 12), generator=gen, dtype=DT) * 2 + 0.2
    return feats, costs, optDataset(optmodel, feats.numpy(), costs.numpy())


LOSSES = [
    ("listwiseLearningToRank", cl.ListwiseRankingLoss),
    ("pairwiseLearningToRank", cl.PairwiseRankingLoss),
    ("pointwiseLearningToRank", cl.PointwiseRankingLoss),
]


@pytest.mark.parametrize("theirs_name, ours_cls", LOSSES)
def test_ltr_value_and_gradient_equal_pyepo(optmodel, data, theirs_name, ours_cls):
    feats, costs, dataset = data
    gen = torch.Generator().manual_seed(1)
    weights = torch.arange(1.0, 9.0, dtype=DT)
    theirs = getattr(pyepo.func, theirs_name)(optmodel, processes=1, solve_ratio=1.0, reduction="none", dataset=dataset)
    pool = cl.SolutionPool(cl.GridDAGShortestPath(*GRID), dataset.sols.to(DT), solve_ratio=1.0)
    ours = ours_cls(pool, reduction="none")
    for step in range(3):  # the pools grow by the solutions at ĉ on each step
        batch = slice(8 * step, 8 * step + 8)
        c_hat = (costs[batch] + torch.randn(8, 12, generator=gen, dtype=DT)).requires_grad_(True)
        value_theirs = theirs(c_hat, costs[batch])
        (value_theirs * weights).sum().backward()
        theta = (-c_hat.detach()).requires_grad_(True)
        value_ours = ours(theta, -costs[batch], dataset.sols[batch].to(DT))
        (value_ours * weights).sum().backward()
        np.testing.assert_allclose(value_ours.detach().numpy(), value_theirs.detach().numpy(), rtol=0, atol=1e-6)
        np.testing.assert_allclose(-theta.grad.numpy(), c_hat.grad.numpy(), rtol=0, atol=1e-6)
        assert c_hat.grad.abs().sum() > 0
        assert len(pool) == len(theirs.solpool)


@pytest.mark.parametrize("k, weight", [(3, 0.5), (5, 0.2)])
def test_knn_targets_equal_pyepo_dataset(optmodel, data, k, weight):
    feats, costs, _ = data
    theirs = optDatasetKNN(optmodel, feats.numpy(), costs.numpy(), k=k, weight=weight)
    ours = cl.knn_targets(feats, -costs, cl.GridDAGShortestPath(*GRID), k=k, weight=weight)
    np.testing.assert_allclose(ours.solutions.numpy(), theirs.sols.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(-ours.scores.numpy(), theirs.costs.numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(-ours.objectives.numpy(), theirs.objs.numpy().reshape(-1), rtol=0, atol=1e-5)
    assert not np.allclose(theirs.sols.numpy(), np.round(theirs.sols.numpy()))  # the smoothing mixes solutions
