"""Grid shortest-path oracles against scipy.sparse.csgraph, ties included; batching, dtype, device, bad input."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.sparse.csgraph import connected_components, shortest_path

from colayers.oracles import GridDAGShortestPath, GridVertexShortestPath

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
    ),
]


# ---- references ---------------------------------------------------------------------------------------
def dag_optimum(oracle, cost):
    """Least path cost from vertex 0 to the last vertex by scipy's Bellman-Ford (costs may be negative)."""
    nv = oracle.height * oracle.width
    src, dst = np.array(oracle.edges).T
    # costs are never exactly 0 here (csgraph would drop a stored zero edge)
    graph = sp.csr_matrix((cost, (src, dst)), shape=(nv, nv))
    return shortest_path(graph, method="BF", indices=0)[nv - 1]


def vertex_graph(h, w, cost):
    """Edge u -> v of weight cost[v] between 8-neighbour tiles."""
    src, dst = [], []
    for r in range(h):
        for c in range(w):
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    if (dr or dc) and 0 <= r + dr < h and 0 <= c + dc < w:
                        src.append(r * w + c)
                        dst.append((r + dr) * w + c + dc)
    flat = cost.reshape(-1)
    return sp.csr_matrix((flat[dst], (src, dst)), shape=(h * w, h * w))


def vertex_optimum(cost):
    h, w = cost.shape
    return shortest_path(vertex_graph(h, w, cost), method="D", indices=0)[h * w - 1] + cost[0, 0]


def assert_dag_path(oracle, y):
    """y is the indicator of a path from vertex 0 to the last vertex (flow conservation, 0/1, length)."""
    nv = oracle.height * oracle.width
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert y.sum() == oracle.height + oracle.width - 2
    balance = np.zeros(nv)
    for (u, v), used in zip(oracle.edges, y):
        balance[u] += used
        balance[v] -= used
    expected = np.zeros(nv)
    expected[0], expected[-1] = 1.0, -1.0
    np.testing.assert_array_equal(balance, expected)


def assert_vertex_path(y):
    """y marks both corner tiles and an 8-connected set of tiles."""
    h, w = y.shape
    assert set(np.unique(y)) <= {0.0, 1.0}
    assert y[0, 0] == 1 and y[-1, -1] == 1
    keep = np.flatnonzero(y.reshape(-1))
    sub = vertex_graph(h, w, np.ones((h, w)))[keep][:, keep]
    assert connected_components(sub, directed=False)[0] == 1


grids = st.tuples(st.integers(1, 6), st.integers(1, 6)).filter(lambda s: s[0] * s[1] >= 2)


# ---- the edge-weighted DAG ------------------------------------------------------------------------------
def pyepo_arcs(h, w):
    """PyEPO's arc list (pyepo.model.utils._get_grid_arcs), written out independently: for each row, its
    w - 1 right edges left to right, then (except for the last row) its w down edges left to right."""
    rows = [[(r * w + c, r * w + c + 1) for c in range(w - 1)] for r in range(h)]
    downs = [[(r * w + c, (r + 1) * w + c) for c in range(w)] for r in range(h - 1)] + [[]]
    return [e for row, down in zip(rows, downs) for e in row + down]


def test_dag_edges_match_pyepo_layout():
    oracle = GridDAGShortestPath(5, 5)
    assert oracle.num_edges == 40 and oracle.event_shape == (40,)
    assert oracle.edges[:6] == [(0, 1), (1, 2), (2, 3), (3, 4), (0, 5), (1, 6)]
    assert all(v - u in (1, 5) for u, v in oracle.edges) and len(set(oracle.edges)) == 40
    assert GridDAGShortestPath(3, 3).edges == [
        (0, 1), (1, 2), (0, 3), (1, 4), (2, 5),  # row 0: right edges, then down edges
        (3, 4), (4, 5), (3, 6), (4, 7), (5, 8),  # row 1
        (6, 7), (7, 8),  # last row: right edges only
    ]  # fmt: skip


@pytest.mark.parametrize("shape", [(2, 2), (3, 3), (5, 5), (2, 7), (6, 3), (1, 4), (4, 1)])
def test_dag_edge_order_is_pyepo_order(shape):
    assert GridDAGShortestPath(*shape).edges == pyepo_arcs(*shape)


@settings(max_examples=40, deadline=None)
@given(grids, st.integers(0, 2**32 - 1), st.booleans())
def test_dag_optimal_against_scipy(shape, seed, ties):
    """Integer costs in {1, 2, 3} force ties: only the cost of the returned path is compared."""
    oracle = GridDAGShortestPath(*shape)
    rng = np.random.default_rng(seed)
    if ties:
        cost = rng.integers(1, 4, size=(6, oracle.num_edges)).astype(np.float64)
    else:
        cost = rng.normal(size=(6, oracle.num_edges))  # negative costs too: the graph is acyclic
    y = oracle.shortest_path(torch.from_numpy(cost)).numpy()
    for i in range(cost.shape[0]):
        assert_dag_path(oracle, y[i])
        np.testing.assert_allclose(cost[i] @ y[i], dag_optimum(oracle, cost[i]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dag_batch_equals_loop_and_keeps_dtype_device(device, dtype):
    oracle = GridDAGShortestPath(4, 6)
    gen = torch.Generator().manual_seed(0)
    theta = torch.randint(-3, 0, (3, 5, oracle.num_edges), generator=gen).to(device=device, dtype=dtype)
    y = oracle(theta)
    assert y.shape == theta.shape and y.dtype == dtype and y.device == theta.device
    loop = torch.stack([torch.stack([oracle(t) for t in row]) for row in theta])
    assert torch.equal(y, loop)
    # shortest_path takes costs: its paths cost what scipy's Bellman-Ford says (an independent optimum)
    cost = -theta.detach().cpu().double()
    sp_paths = oracle.shortest_path(cost).cpu().double()
    for b in np.ndindex(cost.shape[:-1]):
        np.testing.assert_allclose(float(cost[b] @ sp_paths[b]), dag_optimum(oracle, cost[b].numpy()), atol=1e-9)


# ---- the vertex-weighted 8-neighbour grid --------------------------------------------------------------
@settings(max_examples=40, deadline=None)
@given(grids, st.integers(0, 2**32 - 1), st.booleans())
def test_vertex_optimal_against_scipy(shape, seed, ties):
    oracle = GridVertexShortestPath(*shape)
    rng = np.random.default_rng(seed)
    if ties:
        cost = rng.integers(1, 3, size=(6, *shape)).astype(np.float64)
    else:
        cost = rng.uniform(0.1, 10.0, size=(6, *shape))
    y = oracle.shortest_path(torch.from_numpy(cost)).numpy()
    for i in range(cost.shape[0]):
        assert_vertex_path(y[i])
        np.testing.assert_allclose((cost[i] * y[i]).sum(), vertex_optimum(cost[i]), rtol=1e-12)


def test_vertex_detour_through_cheap_tiles():
    """A wall of expensive tiles forces a long serpentine path, found exactly (many Bellman-Ford rounds)."""
    cost = torch.ones(7, 7, dtype=torch.float64)
    cost[1, :6] = 100.0  # walls leave a gap on alternating sides
    cost[3, 1:] = 100.0
    cost[5, :6] = 100.0
    y = GridVertexShortestPath(7, 7).shortest_path(cost)
    assert_vertex_path(y.numpy())
    assert (y * cost).sum().item() == pytest.approx(vertex_optimum(cost.numpy()))
    assert (y * cost).sum().item() < 100.0  # never crosses a wall


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_vertex_batch_equals_loop_and_keeps_dtype_device(device, dtype):
    oracle = GridVertexShortestPath(5, 4)
    gen = torch.Generator().manual_seed(1)
    cost = torch.randint(1, 4, (2, 6, 5, 4), generator=gen).to(device=device, dtype=dtype)
    y = oracle.shortest_path(cost)
    assert y.shape == cost.shape and y.dtype == dtype and y.device == cost.device
    loop = torch.stack([torch.stack([oracle.shortest_path(c) for c in row]) for row in cost])
    assert torch.equal(y, loop)
    assert torch.equal(oracle(-cost), y)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_cuda_agrees_with_cpu_exactly():
    gen = torch.Generator().manual_seed(2)
    dag, vertex = GridDAGShortestPath(5, 5), GridVertexShortestPath(12, 12)
    c1 = torch.randint(1, 4, (500, 40), generator=gen).float()
    c2 = torch.rand(500, 12, 12, generator=gen) + 0.5
    c2[:250] = c2[:250].round()  # ties
    assert torch.equal(dag.shortest_path(c1.cuda()).cpu(), dag.shortest_path(c1))
    assert torch.equal(vertex.shortest_path(c2.cuda()).cpu(), vertex.shortest_path(c2))


# ---- bad input -----------------------------------------------------------------------------------------
def test_vertex_rejects_non_positive_costs():
    oracle = GridVertexShortestPath(3, 3)
    cost = torch.ones(2, 3, 3)
    cost[1, 2, 1] = 0.0
    with pytest.raises(ValueError, match=r"theta must be < 0.*\(1, 2, 1\)"):
        oracle.shortest_path(cost)
    with pytest.raises(ValueError, match="theta must be < 0"):
        oracle(torch.ones(3, 3))  # forgot the sign: positive scores


@pytest.mark.parametrize(
    "oracle, shape", [(GridDAGShortestPath(3, 3), (4, 11)), (GridVertexShortestPath(3, 3), (4, 3, 4))]
)
def test_wrong_shapes_and_nan(oracle, shape):
    with pytest.raises(ValueError, match="theta must have shape"):
        oracle(-torch.ones(shape))
    good = -torch.ones((4, *oracle.event_shape))
    good[1, 0] = float("nan")
    with pytest.raises(ValueError, match="must be finite"):
        oracle(good)


@pytest.mark.parametrize("cls", [GridDAGShortestPath, GridVertexShortestPath])
def test_bad_grid_sizes(cls):
    with pytest.raises(ValueError, match="at least 2 vertices"):
        cls(1, 1)
    with pytest.raises(ValueError, match="height"):
        cls(0, 3)
    with pytest.raises(TypeError, match="width"):
        cls(3, 2.5)
    with pytest.raises(TypeError, match="cost"):
        cls(2, 2).shortest_path(np.ones(4))


def test_vertex_chunking_does_not_change_the_result():
    cost = torch.randint(1, 4, (30, 6, 7), generator=torch.Generator().manual_seed(5)).double()
    whole = GridVertexShortestPath(6, 7, chunk_size=30).shortest_path(cost)
    assert torch.equal(GridVertexShortestPath(6, 7, chunk_size=7).shortest_path(cost), whole)
    with pytest.raises(ValueError, match="chunk_size"):
        GridVertexShortestPath(6, 7, chunk_size=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    "batch, chunk_size",
    [((), None), ((1,), None), ((3,), 2), ((5,), 4)],  # the last two: a last chunk of one instance
    ids=["unbatched", "batch1", "3-by-2", "5-by-4"],
)
def test_vertex_leaves_a_one_instance_theta_unchanged(device, batch, chunk_size):
    """Regression: the costs were negated in place, and for one instance (an unbatched θ, a batch of one, the last
    chunk when N ≡ 1 mod chunk_size) the batch-last copy was a view of θ, so the caller's scores were flipped and a
    second call refused them as positive."""
    oracle = GridVertexShortestPath(4, 5, chunk_size=chunk_size)
    cost = torch.rand((*batch, 4, 5), generator=torch.Generator().manual_seed(3), dtype=torch.float64) + 0.5
    theta = (-cost).to(device)
    before = theta.clone()
    first = oracle(theta)
    assert torch.equal(theta, before)
    assert torch.equal(oracle(theta), first)  # a second call sees the same scores
    absorbed = torch.tensor([[1.0, 1e8, 1.0], [1e8, 1.0, 1e8], [1.0, 1.0, 1.0]], device=device)  # recording path
    theta = -absorbed.float()
    before = theta.clone()
    GridVertexShortestPath(3, 3)(theta)
    assert torch.equal(theta, before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_warcraft_size_against_scipy(dtype):
    """12 x 12 maps as in the Warcraft benchmark, half of them with integer costs (many ties)."""
    gen = torch.Generator().manual_seed(4)
    cost = 1.0 + 9.0 * torch.rand(40, 12, 12, generator=gen, dtype=torch.float64)
    cost[:20] = cost[:20].round()
    cost = cost.to(dtype)
    y = GridVertexShortestPath(12, 12).shortest_path(cost)
    rtol = 1e-5 if dtype == torch.float32 else 1e-12
    for c, path in zip(cost.double().numpy(), y.double().numpy()):
        assert_vertex_path(path)
        np.testing.assert_allclose((c * path).sum(), vertex_optimum(c), rtol=rtol)


# ---- wide-range costs: rounding must neither break the traceback nor the optimality ---------------------
def rounding_rtol(h, w, dtype):
    """Relative gap allowed between the returned path's cost and the optimum when the distances are summed in
    ``dtype``: each of the two paths (at most h*w tiles) is summed with a relative error ≤ h*w*eps, hence
    2*h*w*eps in all (the exact optimum is then within that of the cost found)."""
    return 2 * h * w * torch.finfo(dtype).eps


def check_vertex_against_scipy(cost, dtype):
    """cost (N, h, w) float64 numpy; the oracle runs in dtype on the costs rounded to dtype."""
    h, w = cost.shape[1:]
    rounded = torch.from_numpy(cost).to(dtype)
    y = GridVertexShortestPath(h, w).shortest_path(rounded)
    assert y.dtype == dtype
    exact = rounded.double().numpy()
    for c, path in zip(exact, y.double().numpy()):
        assert_vertex_path(path)
        np.testing.assert_allclose((c * path).sum(), vertex_optimum(c), rtol=rounding_rtol(h, w, dtype))


non_square = st.tuples(st.integers(2, 13), st.integers(2, 13)).filter(lambda s: s[0] != s[1])


@settings(max_examples=30, deadline=None)
@given(non_square, st.integers(0, 2**32 - 1), st.sampled_from([torch.float32, torch.float64]))
def test_vertex_log_uniform_costs_over_8_decades(shape, seed, dtype):
    """Tile costs 10^U(-4, 4): running sums far exceed the smallest costs, which round away in float32."""
    cost = 10.0 ** np.random.default_rng(seed).uniform(-4.0, 4.0, size=(6, *shape))
    check_vertex_against_scipy(cost, dtype)


@settings(max_examples=30, deadline=None)
@given(non_square, st.integers(0, 2**32 - 1), st.sampled_from([torch.float32, torch.float64]))
def test_vertex_two_valued_costs(shape, seed, dtype):
    """Costs in {1, 1e8}: in float32 1e8 + 1 == 1e8, so neighbours of a wall tile tie in distance."""
    cost = np.random.default_rng(seed).choice([1.0, 1e8], size=(6, *shape))
    check_vertex_against_scipy(cost, dtype)


@pytest.mark.parametrize("shape", [(3, 7), (7, 3), (6, 6), (12, 12), (4, 10)])
@pytest.mark.parametrize("dtype, big", [(torch.float32, 1e8), (torch.float64, 1e17)])
def test_vertex_absorbed_costs_regression(shape, dtype, big):
    """The reported failures: costs {1, big} with big + 1 == big in dtype used to make the traceback cycle
    ('did not reach the start tile'); 30 maps per shape, seeded."""
    cost = np.random.default_rng(sum(shape)).choice([1.0, big], size=(30, *shape))
    check_vertex_against_scipy(cost, dtype)


def test_vertex_30x30_log_uniform_float32():
    cost = 10.0 ** np.random.default_rng(7).uniform(-4.0, 4.0, size=(16, 30, 30))
    check_vertex_against_scipy(cost, torch.float32)


@settings(max_examples=20, deadline=None)
@given(grids, st.integers(0, 2**32 - 1), st.booleans())
def test_vertex_recording_fallback_optimal_against_scipy(shape, seed, ties):
    """The rounding-proof fallback (predecessors recorded on strict improvements) on its own, ties included."""
    oracle = GridVertexShortestPath(*shape)
    rng = np.random.default_rng(seed)
    cost = rng.integers(1, 3, size=(6, *shape)) if ties else rng.uniform(0.1, 10.0, size=(6, *shape))
    y = oracle._solve_recording(-torch.from_numpy(cost.astype(np.float64))).numpy()
    for c, path in zip(cost, y):
        assert_vertex_path(path)
        np.testing.assert_allclose((c * path).sum(), vertex_optimum(c), rtol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.cuda
def test_cuda_agrees_with_cpu_on_absorbed_costs():
    cost = torch.from_numpy(np.random.default_rng(3).choice([1.0, 1e8], size=(200, 9, 13))).float()
    oracle = GridVertexShortestPath(9, 13)
    assert torch.equal(oracle.shortest_path(cost.cuda()).cpu(), oracle.shortest_path(cost))


# ---- min_cost: explicit opt-in for scores outside theta < 0 ---------------------------------------------
@settings(max_examples=30, deadline=None)
@given(non_square, st.integers(0, 2**32 - 1), st.sampled_from([1e-3, 0.5, 2.0]))
def test_vertex_min_cost_equals_oracle_on_clamped_scores(shape, seed, min_cost):
    """Scores of both signs (e.g. theta + eps Z, or theta - lambda dy): with min_cost=c the oracle is the plain
    oracle applied to min(theta, -c), and the objective still uses the scores given."""
    theta = torch.from_numpy(np.random.default_rng(seed).normal(-1.0, 2.0, size=(5, *shape)))
    theta[0, 0, 0], theta[-1, -1, -1] = 0.5, 0.0  # a positive and a zero score at least
    oracle = GridVertexShortestPath(*shape, min_cost=min_cost)
    clamped = torch.minimum(theta, torch.tensor(-min_cost, dtype=theta.dtype))
    y = oracle(theta)
    assert torch.equal(y, GridVertexShortestPath(*shape)(clamped))
    torch.testing.assert_close(oracle.objective(theta, y), (theta * y).sum(dim=(-2, -1)), rtol=0, atol=0)


def test_vertex_min_cost_on_positive_scores_and_error_without_it():
    theta = torch.tensor([[-1.0, 3.0, 0.0], [0.0, -5.0, 2.0]])  # positive and zero scores: invalid costs
    with pytest.raises(ValueError, match="theta must be < 0.*min_cost"):
        GridVertexShortestPath(2, 3)(theta)
    y = GridVertexShortestPath(2, 3, min_cost=1.0)(theta)
    # clamped costs [[1, 1, 1], [1, 5, 1]]: the cheapest path avoids the tile of cost 5, 3 tiles of cost 1
    expected = GridVertexShortestPath(2, 3).shortest_path(torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0]]))
    assert torch.equal(y, expected) and y.sum() == 3 and y[1, 1] == 0


@pytest.mark.parametrize(
    "bad, error",
    [
        (0.0, ValueError),
        (-1.0, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (True, TypeError),
        ("1", TypeError),
    ],
)
def test_vertex_min_cost_validation(bad, error):
    with pytest.raises(error, match="min_cost"):
        GridVertexShortestPath(3, 3, min_cost=bad)
