"""GridDAGShortestPath's compiled kernel against its tensor dynamic program (kept as the reference), bit for bit,
ties included; the tie rule in closed form; the backend argument and its dispatch."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers.oracles import GridDAGShortestPath, _dag_kernels

grids = st.tuples(st.integers(1, 7), st.integers(1, 7)).filter(lambda s: s[0] * s[1] >= 2)
# scores: continuous, integer-valued (many exact ties), and float32-absorbing magnitudes (1e8 + 1 == 1e8)
kinds = st.sampled_from(["normal", "integers", "absorbing"])


def scores(kind: str, n: int, num_edges: int, dtype: torch.dtype, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    if kind == "normal":
        theta = torch.randn(n, num_edges, generator=gen, dtype=torch.float64)
    elif kind == "integers":
        theta = torch.randint(-2, 3, (n, num_edges), generator=gen).double()
    else:
        theta = torch.randint(0, 3, (n, num_edges), generator=gen).double()
        theta = torch.where(theta == 2, 1e8, theta) * torch.randn(n, num_edges, generator=gen, dtype=torch.float64)
    return theta.to(dtype)


@settings(max_examples=150, deadline=None)
@given(grids, st.integers(0, 6), kinds, st.sampled_from([torch.float32, torch.float64]), st.integers(0, 2**31 - 1))
def test_kernel_equals_tensor_algorithm(shape, n, kind, dtype, seed):
    kernel = GridDAGShortestPath(*shape, backend="kernel")
    tensor = GridDAGShortestPath(*shape, backend="tensor")
    theta = scores(kind, n, kernel.num_edges, dtype, seed)
    y = kernel(theta)
    assert y.dtype == dtype and y.shape == theta.shape
    assert torch.equal(y, tensor(theta))
    assert torch.equal(_dag_kernels.solve(theta, *shape), tensor.solve(theta))  # B = 0 reaches the kernel too


@pytest.mark.parametrize("kind", ["normal", "integers", "absorbing"])
@pytest.mark.parametrize("shape", [(7, 7), (2, 60)])
def test_kernel_equals_tensor_algorithm_on_a_thousand_instances(kind, shape):
    kernel = GridDAGShortestPath(*shape, backend="kernel")
    for dtype in (torch.float32, torch.float64):
        theta = scores(kind, 1000, kernel.num_edges, dtype, 7)
        assert torch.equal(kernel(theta), GridDAGShortestPath(*shape, backend="tensor")(theta))


@pytest.mark.parametrize("backend", ["kernel", "tensor"])
@pytest.mark.parametrize("shape", [(3, 3), (1, 5), (5, 1), (2, 4)])
def test_ties_enter_from_the_left(backend, shape):
    # equal costs: every path is optimal; entering each vertex from the left when possible, traced back from the
    # last vertex, gives the path down the first column, then right along the last row
    h, w = shape
    oracle = GridDAGShortestPath(h, w, backend=backend)
    expected = torch.zeros(oracle.num_edges, dtype=torch.float64)
    for u, v in oracle.edges:
        if (v == u + w and u % w == 0) or (v == u + 1 and u >= (h - 1) * w):
            expected[oracle.edges.index((u, v))] = 1.0
    assert torch.equal(oracle(torch.full((oracle.num_edges,), -1.5, dtype=torch.float64)), expected)


def test_kernel_on_non_contiguous_scores_and_unchanged_theta():
    oracle = GridDAGShortestPath(5, 5, backend="kernel")
    theta = torch.randn(oracle.num_edges, 7, dtype=torch.float64).t()  # a transposed view
    before = theta.clone()
    y = oracle(theta)
    assert torch.equal(theta, before)
    assert torch.equal(y, GridDAGShortestPath(5, 5, backend="tensor")(theta.contiguous()))


def test_auto_dispatch(monkeypatch):
    calls = []
    original = _dag_kernels.solve
    monkeypatch.setattr(_dag_kernels, "solve", lambda *a: calls.append(a[0].dtype) or original(*a))
    oracle = GridDAGShortestPath(3, 4)
    theta = torch.randn(4, oracle.num_edges)
    reference = GridDAGShortestPath(3, 4, backend="tensor")
    for dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        assert torch.equal(oracle(theta.to(dtype)), reference(theta.to(dtype)))
    assert calls == [torch.float32, torch.float64]  # half precisions go to the tensor algorithm
    GridDAGShortestPath(3, 4, backend="tensor")(theta)
    assert len(calls) == 2


def test_backend_argument_is_checked():
    with pytest.raises(ValueError, match=r"backend must be one of \('auto', 'kernel', 'tensor'\); got 'numba'"):
        GridDAGShortestPath(3, 3, backend="numba")
    with pytest.raises(ValueError, match=r"backend='kernel' solves float32 or float64 scores on the CPU; got .*16"):
        GridDAGShortestPath(3, 3, backend="kernel")(torch.zeros(2, 12, dtype=torch.float16))
    expected = "GridDAGShortestPath(height=3, width=3, backend='tensor')"
    assert repr(GridDAGShortestPath(3, 3, backend="tensor")) == expected
    assert repr(GridDAGShortestPath(3, 3)) == "GridDAGShortestPath(height=3, width=3)"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_runs_the_tensor_algorithm_and_kernel_refuses_it():
    theta = torch.randint(-2, 3, (64, 40)).float()
    y = GridDAGShortestPath(5, 5)(theta.cuda())
    assert y.device.type == "cuda"
    assert torch.equal(y.cpu(), GridDAGShortestPath(5, 5, backend="kernel")(theta))
    with pytest.raises(ValueError, match="backend='kernel' solves .* on the CPU; got .* on cuda"):
        GridDAGShortestPath(5, 5, backend="kernel")(theta.cuda())


@settings(max_examples=150, deadline=None)
@given(grids, st.integers(0, 6), st.sampled_from([torch.float32, torch.float64]), st.integers(0, 2**31 - 1))
def test_kernel_membership_equals_unit_flow(shape, n, dtype, seed):
    # paths, paths with one entry flipped or set to 2 / -1 / NaN, and random 0/1 vectors, against the flow test
    kernel = GridDAGShortestPath(*shape)
    tensor = GridDAGShortestPath(*shape, backend="tensor")
    gen = torch.Generator().manual_seed(seed)
    paths = kernel(torch.randn(n, kernel.num_edges, generator=gen, dtype=dtype))
    flipped = paths.clone()
    odd = paths.clone()
    if n:
        index = torch.randint(kernel.num_edges, (n,), generator=gen)
        flipped[torch.arange(n), index] = 1.0 - flipped[torch.arange(n), index]
        odd[torch.arange(n), index] = torch.tensor([2.0, -1.0, float("nan"), 0.5], dtype=dtype)[torch.arange(n) % 4]
    coins = torch.randint(0, 2, (n, kernel.num_edges), generator=gen).to(dtype)
    y = torch.stack([paths, flipped, odd, coins])  # (4, n, E): a batch shape of two dimensions
    got = kernel.contains(y)
    assert got.shape == (4, n) and got.dtype == torch.bool
    assert torch.equal(got, tensor.contains(y))
    assert bool(got[0].all()) and not bool(got[1].any())
