"""Oracle.contains: exact against brute-force enumerations of Y, every oracle's own outputs accepted, bad input."""

import itertools

import cvxpy as cp
import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers.oracles import (
    ArgmaxOneHot,
    BipartiteMatching,
    CachedOracle,
    CountingOracle,
    CvxpyOracle,
    EnumeratedOracle,
    GridDAGShortestPath,
    GridVertexShortestPath,
    Knapsack,
    LinearProgram,
    Oracle,
    Ranking,
    SolutionPool,
    SolverOracle,
    SpanningTree,
    TopKSubset,
    grid_dag_paths,
)
from colayers.oracles.packing import PackingOracle, feasible_packings

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
    ),
]
seeds = st.integers(0, 2**32 - 1)


def all_binary(shape):
    n = int(np.prod(shape))
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n))).reshape(-1, *shape)


def as_set(rows):
    return {tuple(r.reshape(-1).tolist()) for r in rows}


# -- exact membership against independent enumerations of Y ----------------------------------------------


def test_simplex_sets_match_enumeration():
    cube = all_binary((5,))
    for k in (1, 2, 3):
        oracle = ArgmaxOneHot() if k == 1 else TopKSubset(k)
        expected = {tuple(float(i in c) for i in range(5)) for c in itertools.combinations(range(5), k)}
        assert as_set(cube[oracle.contains(cube)]) == expected
    grid = torch.tensor(list(itertools.product([1.0, 2.0, 3.0, 4.0], repeat=4)))
    expected = {tuple(float(v) for v in p) for p in itertools.permutations([1, 2, 3, 4])}
    assert as_set(grid[Ranking().contains(grid)]) == expected  # 24 of 256


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("height,width", [(2, 3), (3, 3), (3, 2)])
def test_grid_dag_paths_match_networkx(device, height, width):
    oracle = GridDAGShortestPath(height, width)
    graph = nx.DiGraph(oracle.edges)
    index = {e: i for i, e in enumerate(oracle.edges)}
    expected = set()
    for path in nx.all_simple_paths(graph, 0, height * width - 1):
        y = [0.0] * oracle.num_edges
        for e in zip(path, path[1:]):
            y[index[e]] = 1.0
        expected.add(tuple(y))
    cube = all_binary((oracle.num_edges,)).to(device)
    ok = oracle.contains(cube)
    assert ok.device.type == device and ok.dtype == torch.bool
    assert as_set(cube[ok].cpu()) == expected  # 6 paths of 4096 edge sets for 3 x 3


def _induced_paths(height, width):
    """Tile sets of the simple 8-neighbour corner-to-corner paths without shortcuts, by networkx."""
    graph = nx.Graph()
    for r, c in itertools.product(range(height), range(width)):
        for dr, dc in itertools.product((-1, 0, 1), repeat=2):
            if (dr or dc) and 0 <= r + dr < height and 0 <= c + dc < width:
                graph.add_edge((r, c), (r + dr, c + dc))
    out = set()
    for path in nx.all_simple_paths(graph, (0, 0), (height - 1, width - 1)):
        sub = graph.subgraph(path)
        if sub.number_of_edges() == len(path) - 1:  # induced: only the path's own steps
            y = np.zeros((height, width))
            for tile in path:
                y[tile] = 1.0
            out.add(tuple(y.reshape(-1).tolist()))
    return out


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("height,width", [(2, 2), (2, 3), (3, 3), (1, 4)])
def test_grid_vertex_paths_match_networkx(device, height, width):
    oracle = GridVertexShortestPath(height, width)
    cube = all_binary((height, width)).to(device)
    assert as_set(cube[oracle.contains(cube)].cpu()) == _induced_paths(height, width)


def test_induced_paths_are_the_shortest_paths_of_some_positive_costs():
    # every induced path is the oracle's answer for cost 1 on it and 50 elsewhere: so contains accepts no
    # tile set the oracle could never return, and (with the test above) refuses none it can
    oracle = GridVertexShortestPath(3, 4)
    paths = torch.tensor(sorted(_induced_paths(3, 4))).reshape(-1, 3, 4)
    cost = torch.where(paths == 1, 1.0, 50.0)
    torch.testing.assert_close(oracle.shortest_path(cost), paths)


def test_spanning_trees_and_matchings_match_enumeration():
    k4 = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    tree = SpanningTree(4, k4)
    cube = all_binary((6,))
    expected = set()
    for y in cube:
        chosen = nx.Graph([e for e, b in zip(k4, y) if b])
        chosen.add_nodes_from(range(4))
        if nx.is_tree(chosen):
            expected.add(tuple(y.tolist()))
    assert len(expected) == 16  # Cayley: 4^2
    assert as_set(cube[tree.contains(cube)]) == expected
    for n, m in ((3, 3), (2, 3), (3, 2)):
        cube = all_binary((n, m))
        expected = set()
        for rows in itertools.permutations(range(max(n, m)), min(n, m)):
            y = np.zeros((n, m))
            for a, b in enumerate(rows):
                y[(a, b) if n <= m else (b, a)] = 1.0
            expected.add(tuple(y.reshape(-1).tolist()))
        assert as_set(cube[BipartiteMatching(n, m).contains(cube)]) == expected


@pytest.mark.parametrize("weights,capacity", [([2, 3, 4, 1], 5), ([1.5, 2.25, 0.7, 3.1], 3.0)])
def test_knapsack_packings_match_enumeration(weights, capacity):
    cube = all_binary((4,))
    expected = as_set(cube[(cube.double() @ torch.tensor(weights, dtype=torch.float64)) <= capacity])
    knapsack = Knapsack(weights, capacity)
    assert as_set(cube[knapsack.contains(cube)]) == expected
    half = torch.tensor([[0.5, 0.0, 0.0, 0.0]])
    assert not bool(knapsack.contains(half))


def test_linear_program_vertices_and_integer_points():
    # the unit square cut by y1 + y2 <= 1.5: vertices (0,0) (1,0) (0,1) (1,.5) (.5,1)
    lp = LinearProgram(2, A_ub=[[1.0, 1.0]], b_ub=[1.5], bounds=(0, 1))
    points = torch.tensor(
        [[0, 0], [1, 0], [0, 1], [1, 0.5], [0.5, 1], [0.5, 0.5], [1, 1], [0.25, 0], [1 + 1e-7, 0.5], [1.01, 0.5]],
        dtype=torch.float64,
    )
    expected = [True] * 5 + [False, False, False, True, False]  # interior, infeasible, edge midpoint, tolerance
    assert lp.contains(points).tolist() == expected
    # an equality: the simplex {y >= 0, sum y = 1} has the one-hot vectors as vertices
    simplex = LinearProgram(3, A_eq=[[1.0, 1.0, 1.0]], b_eq=[1.0])
    cube = all_binary((3,)).double()
    assert as_set(cube[simplex.contains(cube)]) == as_set(torch.eye(3))
    assert not bool(simplex.contains(torch.full((3,), 1 / 3, dtype=torch.float64)))
    # integer variables: feasible lattice points, vertices of the relaxation or not
    milp = LinearProgram(2, A_ub=[[2.0, 2.0]], b_ub=[3.0], bounds=(0, 1), integrality=True)
    assert milp.contains(torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.5, 0.0], [0.0, 0.0]])).tolist() == [
        True, False, False, True,
    ]


def test_cvxpy_feasibility():
    theta, y = cp.Parameter(3), cp.Variable(3, boolean=True)
    oracle = CvxpyOracle(cp.Problem(cp.Maximize(theta @ y), [np.array([2, 3, 4]) @ y <= 5]), theta, y)
    cube = all_binary((3,))
    expected = as_set(cube[cube @ torch.tensor([2.0, 3.0, 4.0]) <= 5])
    assert as_set(cube[oracle.contains(cube)]) == expected
    assert not bool(oracle.contains(torch.tensor([0.5, 0.0, 0.0])))
    assert y.value is None  # left as it was
    x, scores = cp.Variable(2), cp.Parameter(2)
    box = CvxpyOracle(cp.Problem(cp.Maximize(scores @ x), [x >= 0, x <= 1]), scores, x)
    assert box.contains(torch.tensor([[0.5, 1.0], [1.5, 0.0]], dtype=torch.float64)).tolist() == [True, False]


# -- every built-in oracle accepts its own outputs --------------------------------------------------------


def _k5():
    return SpanningTree(5, list(itertools.combinations(range(5), 2)))


def _cvxpy_assignment():
    theta, y = cp.Parameter((3, 3)), cp.Variable((3, 3))
    constraints = [y >= 0, cp.sum(y, axis=0) == 1, cp.sum(y, axis=1) == 1]
    return CvxpyOracle(cp.Problem(cp.Maximize(cp.sum(cp.multiply(theta, y))), constraints), theta, y)


ORACLES = {
    "argmax": lambda: ArgmaxOneHot(),
    "topk": lambda: TopKSubset(3),
    "ranking": lambda: Ranking(),
    "grid_dag": lambda: GridDAGShortestPath(4, 5),
    "grid_vertex": lambda: GridVertexShortestPath(4, 5, min_cost=0.05),
    "matching": lambda: BipartiteMatching(3, 4),
    "spanning_tree": _k5,
    "knapsack_dp": lambda: Knapsack([3, 1, 4, 1, 5, 9], 10),
    "knapsack_milp": lambda: Knapsack([0.3, 1.1, 0.4, 1.5, 0.9, 2.6], 2.5),
    "lp": lambda: LinearProgram(4, A_ub=np.array([[1.0, 2.0, 0.5, 1.0], [1.0, -1.0, 1.0, 0.0]]), b_ub=[3.0, 1.0],
                                bounds=(0, 2)),
    "lp_eq": lambda: LinearProgram(3, A_eq=[[1.0, 1.0, 1.0]], b_eq=[2.0], bounds=(0, 1)),
    "cvxpy": _cvxpy_assignment,
    "cached": lambda: CachedOracle(TopKSubset(2)),
    "counting": lambda: CountingOracle(_k5()),
    "pool": lambda: SolutionPool(GridDAGShortestPath(3, 3), solve_ratio=0.5, seed=0),
    "packing": lambda: PackingOracle(feasible_packings(np.array([[3.0, 1, 4, 1, 5, 9]]), np.array([10.0]), 10**4)),
    "enumerated": lambda: EnumeratedOracle(grid_dag_paths(3, 4)),
}
EVENTS = {"grid_vertex": (4, 5), "matching": (3, 4), "spanning_tree": (10,), "cvxpy": (3, 3)}
SIZES = {"argmax": 6, "topk": 6, "ranking": 6, "grid_dag": 31, "knapsack_dp": 6, "knapsack_milp": 6, "lp": 4,
         "lp_eq": 3, "cached": 5, "counting": 10, "pool": 12, "packing": 6, "enumerated": 17}


@settings(max_examples=10, deadline=None)
@given(seed=seeds, scale=st.sampled_from([1e-3, 1.0, 100.0]), dtype=st.sampled_from([torch.float32, torch.float64]))
@pytest.mark.parametrize("name", sorted(ORACLES))
def test_every_oracle_accepts_its_own_outputs(name, seed, scale, dtype):
    oracle = ORACLES[name]()
    event = EVENTS.get(name, (SIZES.get(name),))
    g = torch.Generator().manual_seed(seed)
    theta = scale * torch.randn(2, 3, *event, generator=g, dtype=dtype)
    if name == "grid_vertex":
        theta = -theta.abs() - scale * 0.01
    for _ in range(2):  # twice: the pool answers from its members on some calls
        y = oracle(theta)
        ok = oracle.contains(y)
        assert ok.shape == (2, 3) and ok.dtype == torch.bool
        assert bool(ok.all()), f"{oracle!r} refused its own solution(s) {y[~ok]}"


@pytest.mark.parametrize("name", ["argmax", "topk", "grid_dag", "grid_vertex", "spanning_tree", "matching"])
def test_perturbed_outputs_are_refused(name):
    # a solution plus a unit change of one entry (or two swapped entries moved off 0/1) leaves Y
    oracle = ORACLES[name]()
    event = EVENTS.get(name, (SIZES.get(name),))
    theta = -torch.rand(4, *event, generator=torch.Generator().manual_seed(0)) - 0.1
    y = oracle(theta)
    flipped = y.clone().reshape(4, -1)
    flipped[:, 1] = 1 - flipped[:, 1]
    assert not bool(oracle.contains(flipped.reshape(y.shape)).any())
    assert not bool(oracle.contains(0.5 * y).any())


def test_wrappers_delegate_and_unknown_is_none():
    spy = []

    class Custom(Oracle):
        def solve(self, theta):
            return theta

        def contains(self, y):
            spy.append(y.shape)
            return torch.zeros(y.shape[:-1], dtype=torch.bool)

    for wrapper in (CachedOracle(Custom()), CountingOracle(Custom()), SolutionPool(Custom())):
        assert wrapper.contains(torch.zeros(2, 3)).tolist() == [False, False]
    assert spy == [(2, 3)] * 3
    assert SolverOracle(lambda t: t, event_shape=(3,)).contains(torch.zeros(3)) is None
    assert CountingOracle(SolverOracle(lambda t: t, event_shape=(3,))).contains(torch.zeros(3)) is None


def test_empty_batches_and_non_finite_entries():
    for name, make in ORACLES.items():
        oracle = make()
        event = EVENTS.get(name, (SIZES.get(name),))
        empty = oracle.contains(torch.zeros(0, *event))
        assert empty.shape == (0,) and empty.dtype == torch.bool, name
        bad = torch.full((1, *event), float("nan"))
        assert not bool(oracle.contains(bad)), name


def test_wrong_shapes_are_errors_naming_the_oracle():
    with pytest.raises(ValueError, match=r"GridDAGShortestPath.contains: y must have shape \(\*batch, 12\)"):
        GridDAGShortestPath(3, 3).contains(torch.zeros(2, 11))
    with pytest.raises(ValueError, match=r"BipartiteMatching.contains: y must have shape \(\*batch, 2, 2\)"):
        BipartiteMatching(2).contains(torch.zeros(4, 3, 2))
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        TopKSubset(2).contains([1.0, 0.0])
