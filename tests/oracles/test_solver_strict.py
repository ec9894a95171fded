"""SolverOracle is strict: malformed solutions, failures, timeouts, hung solvers and broken executors."""

import concurrent.futures
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from colayers.oracles import LinearProgram, OracleError, SolverOracle


def positive_part(theta):
    return (theta > 0).astype(float)


def exits_the_worker(theta):
    os._exit(3)


# ---- malformed solutions ----------------------------------------------------------------------------------
@pytest.mark.parametrize("threads", [0, 2])
@pytest.mark.parametrize(
    "bad, match",
    [
        (lambda t: t * np.nan, r"returned 3 NaN and 0 inf entries on instance 0 of 4; a solution must be finite"),
        (lambda t: np.where(t > 1.5, np.inf, t), r"returned 0 NaN and 1 inf entries on instance 2 of 4"),
        (lambda t: t + 1j, r"returned dtype complex64 on instance 0 of 4; a solution must be real numbers"),
        (lambda t: np.array(["a", "b", "c"]), r"returned dtype <U1 on instance 0 of 4"),
    ],
)
def test_non_finite_or_non_real_solutions_are_refused(bad, match, threads):
    theta = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 2.0], [3.0, 3.0, 3.0]])
    executor = concurrent.futures.ThreadPoolExecutor(threads) if threads else None
    try:
        with pytest.raises(OracleError, match=match):
            SolverOracle(bad, event_shape=(3,), executor=executor)(theta)
    finally:
        if executor is not None:
            executor.shutdown()


def test_serial_run_stops_at_the_first_failing_instance():
    calls = []

    def fails_on_one(theta):
        calls.append(int(theta[0]))
        if theta[0] == 1:
            raise ValueError("bad instance")
        return theta

    theta = torch.arange(5.0).repeat_interleave(2).reshape(5, 2)
    with pytest.raises(OracleError, match=r"failed on instance 1 of 5: ValueError: bad instance$"):
        SolverOracle(fails_on_one, event_shape=(2,))(theta)
    assert calls == [0, 1]  # instances 2, 3, 4 were not solved


def test_an_oracle_error_from_the_solver_is_reported_at_one_level():
    lp = LinearProgram(2, A_ub=[[1.0, 1.0]], b_ub=[1.0], bounds=(None, None))  # unbounded below
    with pytest.raises(OracleError) as info:
        lp(torch.tensor([[1.0, 1.0], [-1.0, 0.0]]))
    message = str(info.value)
    assert message.count("failed on instance") == 1 and "OracleError" not in message
    assert message.endswith("failed on instance 1 of 2: HiGHS model status 10 (Unbounded)")


# ---- timeouts ---------------------------------------------------------------------------------------------
def test_timeout_is_honoured_serially_and_the_next_call_works():
    def slow_on_negative(theta):
        if theta[0] < 0:
            time.sleep(3.0)
        return positive_part(theta)

    oracle = SolverOracle(slow_on_negative, event_shape=(2,), timeout=0.2)
    start = time.perf_counter()
    with pytest.raises(OracleError, match=r"no result for instance 1 of 2 within timeout=0.2s \(serial mode"):
        oracle(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    assert time.perf_counter() - start < 2.0  # it did not wait for the 3 s sleep
    assert torch.equal(oracle(torch.tensor([[1.0, -1.0]])), torch.tensor([[1.0, 0.0]]))  # a fresh worker


@pytest.mark.parametrize("timeout", [0, -1.0, "1", True])
def test_timeout_must_be_positive_seconds(timeout):
    with pytest.raises(ValueError, match="timeout must be a number of seconds > 0 or None"):
        SolverOracle(positive_part, event_shape=(2,), timeout=timeout)


HUNG_SCRIPT = """
import concurrent.futures, time, torch
from colayers.oracles import OracleError, SolverOracle

def hangs(theta):
    time.sleep(600)

if __name__ == "__main__":
    executor = {executor}
    oracle = SolverOracle(hangs, event_shape=(2,), executor=executor, timeout=0.5)
    try:
        oracle(torch.zeros(3, 2))
    except OracleError as exc:
        print("caught:", exc)
    {after}
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    "executor, after",
    [
        ("None", ""),
        (
            "concurrent.futures.ProcessPoolExecutor(2)",
            "try:\n        oracle(torch.zeros(1, 2))\n    except OracleError as exc:\n        print('next:', exc)",
        ),
    ],
)
def test_a_hung_solver_does_not_stop_the_interpreter_from_exiting(executor, after):
    script = textwrap.dedent(HUNG_SCRIPT).format(executor=executor, after=after)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=90, env=env)
    assert done.returncode == 0, done.stderr
    assert "caught: solver hangs gave no result for instance 0 of 3 within timeout=0.5s" in done.stdout
    if after:
        assert "workers were terminated" in done.stdout
        assert "next: executor ProcessPoolExecutor cannot run instances" in done.stdout  # broken, said so
    assert time.perf_counter() - start < 80  # far below the solver's 600 s sleep


# ---- broken executors -------------------------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_a_broken_process_pool_becomes_an_oracle_error_with_its_cause():
    with concurrent.futures.ProcessPoolExecutor(1) as pool:
        oracle = SolverOracle(exits_the_worker, event_shape=(2,), executor=pool, timeout=60)
        match = r"executor ProcessPoolExecutor failed on instance 0 of 2: Broken"
        with pytest.raises(OracleError, match=match) as info:
            oracle(torch.zeros(2, 2))
        assert isinstance(info.value.__cause__, concurrent.futures.process.BrokenProcessPool)
        with pytest.raises(OracleError, match=r"cannot run instances .*BrokenProcessPool") as info:
            SolverOracle(positive_part, event_shape=(2,), executor=pool)(torch.zeros(2, 2))
        assert isinstance(info.value.__cause__, concurrent.futures.process.BrokenProcessPool)


def test_a_shut_down_executor_becomes_an_oracle_error_with_its_cause():
    pool = concurrent.futures.ThreadPoolExecutor(2)
    oracle = SolverOracle(positive_part, event_shape=(2,), executor=pool)
    assert torch.equal(oracle(torch.tensor([1.0, -1.0])), torch.tensor([1.0, 0.0]))
    pool.shutdown()
    with pytest.raises(OracleError, match=r"executor ThreadPoolExecutor cannot run instances .*RuntimeError") as info:
        oracle(torch.zeros(2, 2))
    assert isinstance(info.value.__cause__, RuntimeError)


def test_executor_must_have_submit():
    with pytest.raises(TypeError, match="executor must be a concurrent.futures.Executor or None; got int"):
        SolverOracle(positive_part, event_shape=(2,), executor=3)


def test_the_serial_timeout_thread_ends_when_idle_and_restarts_on_demand():
    from colayers.oracles.base import _DaemonWorker

    worker = _DaemonWorker(idle=0.05)
    assert worker.submit(sum, [1, 2]).result(timeout=5) == 3
    deadline = time.perf_counter() + 5
    while worker._running and time.perf_counter() < deadline:
        time.sleep(0.01)
    assert not worker._running  # the idle thread has ended
    assert worker.submit(max, [1, 2]).result(timeout=5) == 2  # and a new one serves the next call
