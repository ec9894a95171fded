"""PyEPOOracle: a PyEPO model (Pyomo backend on HiGHS) as a colayers oracle; skipped without the pyepo extra."""

import concurrent.futures

import numpy as np
import pytest
import torch

pytest.importorskip("pyepo", reason="the optional pyepo extra is not installed")
pyomo_environ = pytest.importorskip("pyomo.environ", reason="PyEPO's Pyomo backend is not installed")
if not pyomo_environ.SolverFactory("appsi_highs").available(exception_flag=False):
    pytest.skip("Pyomo has no HiGHS (appsi_highs) solver here", allow_module_level=True)

from pyepo.model.omo import knapsackModel, shortestPathModel  # noqa: E402

from colayers.oracles import GridDAGShortestPath, Knapsack, OracleError  # noqa: E402
from colayers.oracles.pyepo import PyEPOOracle  # noqa: E402


def test_shortest_path_model_equals_the_grid_oracle_with_theta_minus_cost():
    oracle = PyEPOOracle(shortestPathModel((3, 4), solver="appsi_highs"))
    assert not oracle.maximize and oracle.event_shape == (17,)
    cost = torch.rand(6, 17, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    dag = GridDAGShortestPath(3, 4)  # PyEPO's arc order, an independent exact solver
    assert torch.equal(oracle(-cost), dag(-cost))
    assert torch.equal(oracle.solve_costs(cost), dag.shortest_path(cost))
    assert torch.equal(oracle(-1e-9 * cost), dag(-cost))  # scale does not matter


def test_maximizing_knapsack_model_keeps_the_sign_and_matches_the_dynamic_program():
    weights = np.array([[3.0, 4.0, 5.0, 2.0, 6.0]])
    oracle = PyEPOOracle(knapsackModel(weights, [10.0], solver="appsi_highs"))
    assert oracle.maximize
    theta = torch.rand(5, 5, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(oracle(theta), Knapsack(weights[0], 10.0)(theta))


def test_thread_pool_and_process_pool_match_serial():
    serial = PyEPOOracle(shortestPathModel((3, 3), solver="appsi_highs"))
    theta = -torch.rand(2, 4, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = serial(theta)
    for pool in (concurrent.futures.ThreadPoolExecutor(3), concurrent.futures.ProcessPoolExecutor(2)):
        with pool:
            model = shortestPathModel((3, 3), solver="appsi_highs")
            assert torch.equal(PyEPOOracle(model, executor=pool, timeout=120)(theta), y)


def test_not_a_pyepo_model_is_refused_and_failures_are_named():
    with pytest.raises(TypeError, match="model must be a PyEPO optModel"):
        PyEPOOracle(object())
    model = shortestPathModel((2, 2), solver="appsi_highs")
    model.setObj = None  # a broken model: setObj is no longer callable
    with pytest.raises(TypeError, match="model must be a PyEPO optModel"):
        PyEPOOracle(model)

    class Broken(shortestPathModel):
        def solve(self):
            raise RuntimeError("no licence")

    with pytest.raises(OracleError, match=r"solver PyEPO Broken failed on instance 0 of 2: RuntimeError: no licence$"):
        PyEPOOracle(Broken((2, 2), solver="appsi_highs"))(torch.zeros(2, 4))
