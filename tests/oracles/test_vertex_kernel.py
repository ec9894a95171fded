"""The compiled CPU kernel of GridVertexShortestPath against the tensor algorithm it replaces on the CPU (kept as the
CUDA path and as ``backend="tensor"``): the same paths and distances bit for bit, ties and rounding included; the
dispatch by device and dtype; bad input answered as before."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers.oracles import GridVertexShortestPath, OracleError, grid
from colayers.oracles import _vertex_kernel as kernel
from tests.conftest import DEVICES

DTYPES = {"float32": torch.float32, "float64": torch.float64}
# every shape with at least 2 tiles up to 7 x 7, 1 x k and k x 1 included
shapes = st.tuples(st.integers(1, 7), st.integers(1, 7)).filter(lambda s: s[0] * s[1] >= 2)


def draw_scores(kind: str, n: int, shape: tuple[int, int], seed: int, dtype: torch.dtype) -> torch.Tensor:
    """Scores theta = -cost of one kind: uniform costs, small integers (many ties), costs over 8 decades (float32
    rounding absorbs the small ones: the recording re-solve), costs {1, big} with big + 1 == big in the dtype, or
    scores of both signs (for ``min_cost``)."""
    rng = np.random.default_rng(seed)
    size = (n, *shape)
    big = 1e8 if dtype == torch.float32 else 1e17
    cost = {
        "uniform": lambda: rng.uniform(0.1, 10.0, size),
        "integers": lambda: rng.integers(1, 4, size).astype(np.float64),
        "decades": lambda: 10.0 ** rng.uniform(-4.0, 4.0, size),
        "absorbed": lambda: rng.choice([1.0, big], size),
        "signs": lambda: rng.normal(1.0, 2.0, size),
    }[kind]()
    return -torch.from_numpy(cost).to(dtype)


@settings(max_examples=150, deadline=None)
@given(
    shapes,
    st.integers(0, 5),
    st.sampled_from(["uniform", "integers", "decades", "absorbed", "signs"]),
    st.sampled_from(sorted(DTYPES)),
    st.integers(0, 2**32 - 1),
)
def test_kernel_equals_tensor_algorithm(shape, n, kind, dtype, seed):
    """Same paths bit for bit (ties go to the same neighbour; stuck instances take the same re-solve), in the
    dtype, for batches of 0 to 5 instances; scores of both signs through min_cost; the distances too."""
    theta = draw_scores(kind, n, shape, seed, DTYPES[dtype])
    min_cost = 0.5 if kind == "signs" else None
    fast = GridVertexShortestPath(*shape, min_cost, backend="kernel")
    slow = GridVertexShortestPath(*shape, min_cost, backend="tensor")
    y = fast(theta)
    assert y.dtype == theta.dtype and y.shape == theta.shape
    assert torch.equal(y, slow(theta))
    assert torch.equal(GridVertexShortestPath(*shape, min_cost)(theta), y)  # "auto" on the CPU
    cost = -theta.clamp(max=-0.5) if min_cost else -theta
    assert torch.equal(fast.distances(cost), slow.distances(cost))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_absorbed_costs_reach_the_recording_re_solve(dtype):
    """Costs {1, big} with big + 1 == big: the kernel reports the instances whose traceback is stuck, and the
    oracle's answer for them is the recording variant's, as on the tensor path."""
    theta = draw_scores("absorbed", 40, (9, 13), 3, dtype)
    _, status = kernel.shortest_paths(theta)
    stuck = np.flatnonzero(status == kernel.STUCK)
    assert 0 < stuck.size < 40 and set(np.unique(status)) <= {kernel.OK, kernel.STUCK}
    oracle = GridVertexShortestPath(9, 13)
    y = oracle(theta)
    assert torch.equal(y[stuck], oracle._solve_recording(theta[stuck]))
    assert torch.equal(y, GridVertexShortestPath(9, 13, backend="tensor")(theta))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_auto_takes_the_kernel_on_the_cpu(monkeypatch, dtype):
    calls = []
    original = kernel.shortest_paths
    monkeypatch.setattr(kernel, "shortest_paths", lambda theta: calls.append(theta.shape) or original(theta))
    theta = draw_scores("uniform", 4, (5, 6), 0, dtype)
    y = GridVertexShortestPath(5, 6)(theta)
    assert calls == [(4, 5, 6)]
    GridVertexShortestPath(5, 6, backend="tensor")(theta)
    assert len(calls) == 1
    assert torch.equal(y, GridVertexShortestPath(5, 6, backend="tensor")(theta))


@pytest.mark.parametrize("device", DEVICES)
def test_tensors_the_kernel_cannot_take_stay_where_they_are(monkeypatch, device):
    """CUDA tensors and other dtypes keep the tensor algorithm under "auto" (on their device, in their dtype);
    "kernel" refuses them by name instead of moving or casting them."""
    monkeypatch.setattr(kernel, "shortest_paths", lambda theta: pytest.fail("the kernel was called"))
    dtype = torch.float32 if device == "cuda" else torch.bfloat16
    theta = draw_scores("integers", 3, (4, 5), 1, torch.float64).to(device=device, dtype=dtype)
    y = GridVertexShortestPath(4, 5)(theta)
    assert y.device == theta.device and y.dtype == dtype
    assert torch.equal(y, GridVertexShortestPath(4, 5, backend="tensor")(theta))
    with pytest.raises(ValueError, match=f"CPU kernel solves float32 or float64 tensors on the CPU; got {dtype}"):
        GridVertexShortestPath(4, 5, backend="kernel")(theta)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_cuda_tensor_path_equals_the_cpu_kernel():
    theta = torch.cat([draw_scores(k, 100, (12, 12), 5, torch.float32) for k in ("uniform", "integers", "absorbed")])
    oracle = GridVertexShortestPath(12, 12)
    assert torch.equal(oracle(theta.cuda()).cpu(), oracle(theta))


def test_without_numba_auto_uses_the_tensor_algorithm(monkeypatch):
    monkeypatch.setattr(grid, "_KERNEL", [None])  # as where numba cannot be imported
    theta = draw_scores("integers", 3, (4, 5), 2, torch.float32)
    assert torch.equal(GridVertexShortestPath(4, 5)(theta), GridVertexShortestPath(4, 5, backend="tensor")(theta))
    with pytest.raises(ImportError, match="numba"):
        GridVertexShortestPath(4, 5, backend="kernel")(theta)


def test_backend_is_checked_by_name():
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'kernel', 'tensor'\); got 'numba'"):
        GridVertexShortestPath(3, 3, backend="numba")
    assert repr(GridVertexShortestPath(3, 3, backend="tensor")) == "GridVertexShortestPath(height=3, width=3, " \
        "backend='tensor')"


def test_unvalidated_scores_out_of_range_are_answered_as_before():
    """With validation off, theta > 0 (a negative cost) or NaN reaches the solver: the kernel hands such instances
    to the tensor algorithm, so the outcome is the same (an answer, or the same error)."""
    theta = draw_scores("integers", 3, (3, 4), 4, torch.float64)
    zero = theta.clone()
    zero[1, 1, 2] = 0.0  # a zero cost: the kernel's own business
    negative_cycle = theta.clone()
    negative_cycle[2, 1, 1] = 5.0  # cost -5 next to costs <= 3: no shortest walk
    nan = theta.clone()
    nan[0, 2, 3] = float("nan")
    fast = GridVertexShortestPath(3, 4, validate_args=False)
    slow = GridVertexShortestPath(3, 4, validate_args=False, backend="tensor")
    assert torch.equal(fast(zero), slow(zero))
    for bad in (negative_cycle, nan):
        with pytest.raises(OracleError, match="did not converge"):
            slow(bad)
        with pytest.raises(OracleError, match="did not converge"):
            fast(bad)
    mild = theta.clone()
    mild[0, 0, 1] = 0.5  # cost -0.5 next to costs >= 1: the walks still have a least cost
    assert torch.equal(fast(mild), slow(mild))
    assert torch.equal(fast.distances(-mild), slow.distances(-mild))


def test_kernel_reads_views_and_leaves_theta_alone(capsys):
    """A non-contiguous θ that requires grad gives the same answer as a contiguous copy; θ is unchanged and nothing is
    printed (the compiled code included)."""
    base = draw_scores("uniform", 6, (7, 5), 6, torch.float64)
    theta = base.transpose(1, 2).requires_grad_()  # (6, 5, 7), not contiguous
    before = theta.detach().clone()
    y = GridVertexShortestPath(5, 7)(theta)
    assert torch.equal(theta.detach(), before)
    assert torch.equal(y, GridVertexShortestPath(5, 7, backend="tensor")(before))
    assert capsys.readouterr() == ("", "")
