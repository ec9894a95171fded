"""Built-in per-instance oracles on executors: threads, processes and a real dask.distributed LocalCluster.

One LocalCluster (2 worker processes, 1 thread each, loopback only) is started for the whole module.
"""

import concurrent.futures
import multiprocessing
import os
from pathlib import Path

import cvxpy as cp
import numpy as np
import pytest
import torch

from colayers.oracles import (
    BipartiteMatching,
    CvxpyOracle,
    Knapsack,
    LinearProgram,
    OracleError,
    SolverOracle,
    SpanningTree,
)

distributed = pytest.importorskip("distributed")  # a declared test dependency: present in CI


def make_oracles(executor=None):
    """One of each per-instance oracle, all on ``executor``."""
    theta_p, y_v = cp.Parameter(5), cp.Variable(5, boolean=True)
    knapsack_model = cp.Problem(cp.Maximize(theta_p @ y_v), [np.arange(1.0, 6.0) @ y_v <= 7])
    return {
        "matching": BipartiteMatching(4, 5, executor=executor, timeout=60),
        "tree": SpanningTree(4, [(0, 1), (1, 2), (2, 3), (0, 3), (0, 2)], executor=executor, timeout=60),
        "lp": LinearProgram(
            5, A_ub=[[1.0, 2.0, 3.0, 1.0, 1.0]], b_ub=[4.0], bounds=(0, 1), executor=executor, timeout=60
        ),
        "knapsack": Knapsack([0.5, 1.5, 2.5, 1.25, 0.75], 3.3, executor=executor, timeout=60),
        "cvxpy": CvxpyOracle(knapsack_model, theta_p, y_v, executor=executor, timeout=60),
    }


def batch_for(oracle):
    return torch.randn((3, 4, *oracle.event_shape), generator=torch.Generator().manual_seed(7), dtype=torch.float64)


SERIAL = {name: oracle(batch_for(oracle)) for name, oracle in make_oracles().items()}


@pytest.mark.parametrize("kind", ["threads", "processes"])
def test_builtin_oracles_identical_on_thread_and_process_pools(kind):
    if kind == "threads":
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=2)
    else:  # fork: the workers need nothing but numpy/scipy/cvxpy, and start in milliseconds
        pool = concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("fork"))
    with pool:
        for name, oracle in make_oracles(pool).items():
            assert torch.equal(oracle(batch_for(oracle)), SERIAL[name]), name


@pytest.fixture(scope="module")
def client():
    import dask

    # one retry after a worker dies, so a solver that always kills its worker fails fast with KilledWorker
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=50,
        )
        with cluster, distributed.Client(cluster) as c:
            yield c


@pytest.mark.timeout(120)
def test_dask_cluster_equals_serial(client):
    executor = client.get_executor()
    for name, oracle in make_oracles(executor).items():
        assert torch.equal(oracle(batch_for(oracle)), SERIAL[name]), name


def _die_once(marker_dir, theta):
    """Kill the worker process the first time it sees the marker instance (theta[0] == 99), then solve."""
    marker = Path(marker_dir) / "died"
    if theta[0] == 99.0 and not marker.exists():
        marker.write_text("x")
        os._exit(1)
    return np.sort(theta)


def _always_die(theta):
    if theta[0] == 99.0:
        os._exit(1)
    return np.sort(theta)


def _batch_with_marker():
    theta = torch.arange(24, dtype=torch.float64).reshape(8, 3)
    theta[5, 0] = 99.0
    return theta


@pytest.mark.timeout(120)
def test_dask_worker_killed_once_gives_the_retried_correct_result(client, tmp_path):
    import functools

    oracle = SolverOracle(
        functools.partial(_die_once, str(tmp_path)), event_shape=(3,), executor=client.get_executor(), timeout=60
    )
    theta = _batch_with_marker()
    y = oracle(theta)
    assert (tmp_path / "died").exists()  # a worker really died mid-batch
    assert torch.equal(y, torch.sort(theta, dim=-1).values)


@pytest.mark.timeout(120)
def test_dask_worker_killed_every_time_raises_oracle_error(client):
    oracle = SolverOracle(_always_die, event_shape=(3,), executor=client.get_executor(), timeout=60)
    with pytest.raises(OracleError, match=r"instance 5 of 8.*KilledWorker"):
        oracle(_batch_with_marker())
    # the cluster recovers: the next batch is solved correctly
    theta = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.equal(oracle(theta), torch.sort(theta, dim=-1).values)
