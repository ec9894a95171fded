r"""Conformance with PyEPO 2.2.7 on identical inputs, for the methods added from its list: the perturbation-gradient
losses (``pyepo.func.perturbationGradient``), the unambiguous regret (``pyepo.metric.calUnambRegret``) and the SPO
error (``pyepo.metric.SPOError``).

PyEPO solves with OR-Tools here (``pyepo.model.ort.shortestPathModel``, free and pip-installable; the ``peers``
extra). Conventions: PyEPO minimizes costs c, colayers maximizes scores θ; every comparison uses θ = −c, so
PyEPO's gradient in c is minus colayers' gradient in θ.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import colayers as cl
from colayers.metrics import spo_error, unambiguous_regret

pyepo = pytest.importorskip("pyepo")
pytest.importorskip("ortools")
from pyepo.model.ort import shortestPathModel  # noqa: E402

pytestmark = pytest.mark.peers
DT = torch.float64
GRID = (3, 3)


@pytest.fixture(scope="module")
def optmodel():
    return shortestPathModel(grid=GRID)


def _costs(n, seed, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 12), generator=g, dtype=DT) * scale + 0.2  # positive edge costs


@pytest.mark.parametrize(("sigma", "two_sided"), [(0.1, False), (0.7, False), (0.3, True), (1.3, True)])
def test_perturbation_gradient_value_and_gradient_equal_pyepo(optmodel, sigma, two_sided):
    c_hat = _costs(24, 10).requires_grad_(True)
    c = _costs(24, 11, scale=3.0)
    weights = torch.arange(1.0, 25.0, dtype=DT)
    pg = pyepo.func.perturbationGradient(optmodel, sigma=sigma, two_sides=two_sided, processes=1, reduction="none")
    theirs = pg(c_hat, c).reshape(-1)
    (theirs * weights).sum().backward()
    theta = (-c_hat.detach()).requires_grad_(True)
    loss = cl.PerturbationGradientLoss(
        cl.GridDAGShortestPath(*GRID), sigma=sigma, two_sided=two_sided, reduction="none"
    )
    ours = loss(theta, -c)
    (ours * weights).sum().backward()
    # PyEPO divides by σ + 1e-8 (2σ + 1e-8): a relative difference of at most 1e-7 here
    np.testing.assert_allclose(ours.detach().numpy(), theirs.detach().numpy(), rtol=1e-7, atol=1e-6)
    np.testing.assert_allclose(-theta.grad.numpy(), c_hat.grad.numpy(), rtol=1e-7, atol=1e-6)
    assert c_hat.grad.abs().sum() > 0  # some decisions change within the step


def test_unambiguous_regret_equals_pyepo(optmodel):
    """Integer predicted costs ×1.5 tie on many paths; PyEPO's worst tie and ours agree instance by instance."""
    g = torch.Generator().manual_seed(12)
    c_hat = 1.5 * torch.randint(1, 3, (30, 12), generator=g).to(DT)
    c = _costs(30, 13, scale=2.5)
    theirs = []
    for cp_i, c_i in zip(c_hat.numpy(), c.numpy()):
        optmodel.setObj(c_i)
        _, z_i = optmodel.solve()
        theirs.append(pyepo.metric.calUnambRegret(optmodel, cp_i, c_i, float(z_i)))
    ours = unambiguous_regret(-c_hat, -c, oracle=cl.GridDAGShortestPath(*GRID))
    np.testing.assert_allclose(ours.numpy(), np.array(theirs), atol=1e-6)
    oracle = cl.GridDAGShortestPath(*GRID)
    realized = cl.metrics.regret(oracle(-c_hat), -c, oracle=oracle)
    assert bool((ours > realized + 1e-3).any())  # the ties change the answer on these inputs


def test_spo_error_equals_pyepo(optmodel):
    c_hat, c = _costs(30, 14), _costs(30, 15, scale=2.5)
    theirs = pyepo.metric.SPOError(c_hat.numpy(), c.numpy(), optmodel)
    ours = spo_error(-c_hat, -c, oracle=cl.GridDAGShortestPath(*GRID), reduction="mean")
    assert abs(float(ours) - theirs) < 1e-6 * max(1.0, abs(theirs))
