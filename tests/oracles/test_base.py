"""The Oracle base class and the per-instance SolverOracle wrapper."""

import concurrent.futures

import numpy as np
import pytest
import torch

from colayers import Oracle, OracleError, SolverOracle
from tests.conftest import DEVICES


def best_vertex(theta):
    """Argmax over the vertices of the unit cube {0,1}^n: 1 where the score is positive."""
    return (np.asarray(theta) > 0).astype(np.float64)


def fails_on_three(theta):
    if theta[0] == 3.0:
        raise ValueError("instance with a 3 in front is infeasible")
    return best_vertex(theta)


def wrong_shape_on_five(theta):
    return np.zeros(2) if theta[0] == 5.0 else best_vertex(theta)


def numbered_batch(n=8, d=4):
    theta = torch.randn(n, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    theta[:, 0] = torch.arange(n, dtype=torch.float64)
    return theta


EXECUTORS = {
    "serial": lambda: None,
    "threads": lambda: concurrent.futures.ThreadPoolExecutor(2),
    "processes": lambda: concurrent.futures.ProcessPoolExecutor(2),
}


@pytest.fixture(scope="module", params=list(EXECUTORS))
def executor(request):
    ex = EXECUTORS[request.param]()
    yield ex
    if ex is not None:
        ex.shutdown(wait=True, cancel_futures=True)


def test_executors_give_identical_results(executor):
    theta = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    oracle = SolverOracle(best_vertex, event_shape=(4,), executor=executor)
    y = oracle(theta)
    assert y.shape == theta.shape and y.dtype == theta.dtype
    assert torch.equal(y, (theta > 0).to(theta.dtype))
    assert torch.equal(y, SolverOracle(best_vertex, event_shape=(4,))(theta))


def test_failing_instance_is_named(executor):
    oracle = SolverOracle(fails_on_three, event_shape=(4,), executor=executor)
    with pytest.raises(OracleError, match=r"failed on instance 3 of 8: ValueError: instance with a 3 in front"):
        oracle(numbered_batch())


def test_wrong_solver_shape_is_caught(executor):
    oracle = SolverOracle(wrong_shape_on_five, event_shape=(4,), executor=executor)
    with pytest.raises(OracleError, match=r"returned shape \(2,\) on instance 5 of 8; expected \(4,\)"):
        oracle(numbered_batch())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_solver_oracle_keeps_device_and_dtype(device, dtype):
    theta = torch.randn(2, 4, dtype=dtype).to(device)
    y = SolverOracle(best_vertex, event_shape=(4,))(theta)
    assert y.device == theta.device and y.dtype == dtype


def test_executor_timeout_is_reported():
    import time

    def slow(theta):
        time.sleep(2.0)
        return best_vertex(theta)

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        oracle = SolverOracle(slow, event_shape=(4,), executor=ex, timeout=0.05)
        with pytest.raises(OracleError, match=r"no result for instance 0 of 2 within timeout=0.05s"):
            oracle(torch.randn(2, 4))


class _Bad(Oracle):
    def __init__(self, out):
        super().__init__()
        self.out = out

    def solve(self, theta):
        return self.out(theta)


@pytest.mark.parametrize(
    "out, match",
    [
        (lambda t: t[:, :2].clone(), r"returned shape \(3, 2\); expected \(3, 4\)"),
        (lambda t: t.double(), "returned dtype torch.float64; expected theta's dtype torch.float32"),
        (lambda t: t.numpy(), "must return a torch.Tensor; got ndarray"),
    ],
)
def test_oracle_output_is_checked(out, match):
    with pytest.raises(OracleError, match=match):
        _Bad(out)(torch.zeros(3, 4))


class _Square(Oracle):
    """argmax over y in {0,1}^n of <theta, y> + h(y) with h(y) = -0.5 * sum(y); g = identity."""

    event_ndim = 1

    def solve(self, theta):
        return (theta > 0.5).to(theta.dtype)

    def h(self, y):
        return -0.5 * y.sum(-1)


def test_objective_uses_g_and_h_and_broadcasts_over_samples():
    oracle = _Square()
    theta = torch.tensor([[1.0, 0.2, 0.7], [0.0, 2.0, 0.6]])
    y = oracle(theta)
    assert torch.allclose(oracle.objective(theta, y), torch.tensor([1.7 - 1.0, 2.6 - 1.0]))
    ys = torch.stack([y, torch.zeros_like(y), torch.ones_like(y)])  # (S=3, B=2, n)
    obj = oracle.objective(theta, ys)
    assert obj.shape == (3, 2)
    assert torch.allclose(obj[1], torch.zeros(2)) and torch.allclose(obj[2], theta.sum(-1) - 1.5)
    # f(theta) is optimal for this objective over all 8 vertices
    cube = torch.tensor([[a, b, c] for a in (0.0, 1.0) for b in (0.0, 1.0) for c in (0.0, 1.0)])
    best = oracle.objective(theta, cube[:, None, :]).max(0).values
    assert torch.allclose(oracle.objective(theta, y), best)


def test_solver_oracle_g_h_and_solution_shape():
    oracle = SolverOracle(
        lambda t: np.array([float(t.sum() > 0)]), event_shape=(3,), solution_shape=(1,),
        g=lambda y: y.expand(*y.shape[:-1], 3), h=lambda y: 0.25 * y[..., 0],
    )
    theta = torch.tensor([[1.0, 1.0, -1.0], [-1.0, 0.0, 0.0]])
    y = oracle(theta)
    assert y.tolist() == [[1.0], [0.0]]
    assert torch.allclose(oracle.objective(theta, y), torch.tensor([1.25, 0.0]))


def test_batch_shapes_and_empty_batch():
    oracle = SolverOracle(best_vertex, event_shape=(4,))
    theta = torch.randn(2, 3, 4)
    assert oracle(theta).shape == (2, 3, 4)
    assert oracle(torch.zeros(0, 4)).shape == (0, 4)
    with pytest.raises(ValueError, match=r"theta must have shape \(\*batch, 4\)"):
        oracle(torch.zeros(2, 5))


def test_bad_solver_argument():
    with pytest.raises(TypeError, match="solver must be callable"):
        SolverOracle(3, event_shape=(4,))


def test_oracle_wrapper_delegates_everything_but_what_it_overrides():
    from colayers import OracleWrapper

    inner = SolverOracle(
        lambda t: np.array([float(t.sum() > 0)]), event_shape=(3,), solution_shape=(1,),
        g=lambda y: y.expand(*y.shape[:-1], 3), h=lambda y: 0.25 * y[..., 0], deterministic=False,
    )

    class Flipped(OracleWrapper):
        def solve(self, theta):
            return 1.0 - self.oracle.solve(theta)

    wrapped = Flipped(inner)
    theta = torch.tensor([[1.0, 1.0, -1.0], [-1.0, 0.0, 0.0]])
    assert wrapped.event_shape == (3,) and wrapped.deterministic is False
    y = wrapped(theta)
    assert y.tolist() == [[0.0], [1.0]]  # its own solve, the inner solution shape
    assert torch.equal(wrapped.objective(theta, y), inner.objective(theta, y))
    assert torch.allclose(wrapped.objective(theta, y), torch.tensor([0.0, -1.0 + 0.25]))
    with pytest.raises(TypeError, match="oracle must be a colayers Oracle; got str"):
        Flipped("argmax")


def test_counting_oracle_counts_calls_instances_and_shares_a_tally():
    from colayers import ArgmaxOneHot, CountingOracle, TopKSubset

    counted = CountingOracle(ArgmaxOneHot())
    theta = torch.randn(4, 2, 3)
    assert torch.equal(counted(theta), ArgmaxOneHot()(theta))
    with counted.paused():
        counted(theta)
    assert (counted.calls, counted.instances) == (1, 8)
    shared = CountingOracle(TopKSubset(2), counter=counted)
    shared(torch.zeros(5, 3))
    assert (counted.calls, counted.instances, shared.calls) == (2, 13, 0)
    with counted.paused():  # pausing the shared counter pauses every oracle that reports to it
        shared(torch.zeros(5, 3))
    assert counted.calls == 2 and shared.k == 2  # other attributes are the wrapped oracle's
    with pytest.raises(TypeError, match="counter must be a CountingOracle or None; got int"):
        CountingOracle(ArgmaxOneHot(), counter=3)
