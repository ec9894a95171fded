"""Every built-in oracle: invariant to a positive scale of θ, half-precision θ, empty batches and events."""

import itertools

import cvxpy as cp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers.oracles import (
    ArgmaxOneHot,
    BipartiteMatching,
    CachedOracle,
    CvxpyOracle,
    EnumeratedOracle,
    GridDAGShortestPath,
    GridVertexShortestPath,
    Knapsack,
    LinearProgram,
    Ranking,
    SpanningTree,
    TopKSubset,
    grid_dag_paths,
)


def cvxpy_knapsack():
    theta, y = cp.Parameter(5), cp.Variable(5, boolean=True)
    return CvxpyOracle(cp.Problem(cp.Maximize(theta @ y), [[0.5, 1.5, 2.5, 1.25, 0.75] @ y <= 3.3]), theta, y)


def cvxpy_lp():
    theta, y = cp.Parameter(5), cp.Variable(5)
    return CvxpyOracle(cp.Problem(cp.Maximize(theta @ y), [cp.sum(y) <= 2, y >= 0, y <= 1]), theta, y)


# name -> (oracle factory, sign of theta it needs: +1 any, -1 negative scores only)
ORACLES = {
    "argmax": (lambda: ArgmaxOneHot(), (6,), 1),
    "top-k": (lambda: TopKSubset(3), (6,), 1),
    "ranking": (lambda: Ranking(), (6,), 1),
    "grid DAG": (lambda: GridDAGShortestPath(3, 4), (17,), 1),
    "grid vertex": (lambda: GridVertexShortestPath(3, 3), (3, 3), -1),
    "knapsack DP": (lambda: Knapsack([2, 3, 4, 1, 2], 6), (5,), 1),
    "knapsack MILP": (lambda: Knapsack([0.5, 1.5, 2.5, 1.25, 0.75], 3.3), (5,), 1),
    "matching": (lambda: BipartiteMatching(3, 4), (3, 4), 1),
    "spanning tree": (lambda: SpanningTree(4, [(0, 1), (1, 2), (2, 3), (0, 3), (0, 2), (1, 3)]), (6,), 1),
    "LP": (lambda: LinearProgram(5, A_ub=[[1.0] * 5], b_ub=[2], bounds=(0, 1)), (5,), 1),
    "MILP": (lambda: LinearProgram(5, A_ub=[[1.0, 2.0, 3.0, 1.0, 1.0]], b_ub=[4], bounds=(0, 1), integrality=True),
             (5,), 1),
    "cvxpy MILP": (cvxpy_knapsack, (5,), 1),
    "cvxpy LP": (cvxpy_lp, (5,), 1),
    "enumerated": (lambda: EnumeratedOracle(grid_dag_paths(3, 3)), (12,), 1),
}
BUILT = {name: factory() for name, (factory, _, _) in ORACLES.items()}
SOLVER_BASED = ["knapsack MILP", "matching", "spanning tree", "LP", "MILP", "cvxpy MILP", "cvxpy LP"]


def scores(name, seed, batch=4):
    _, event, sign = ORACLES[name]
    theta = torch.randn((batch, *event), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return -theta.abs() - 0.1 if sign < 0 else theta


# ---- scale ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ORACLES))
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), exponent=st.sampled_from([-17, -8, -3, 2, 8, 17]), mantissa=st.floats(1, 9.9))
def test_argmax_does_not_depend_on_the_scale_of_theta(name, seed, exponent, mantissa):
    """f(c θ) = f(θ) for c > 0; continuous random θ has no ties, so the solutions are equal, not just as good.

    cvxpy's LP goes to an interior-point solver (Clarabel), whose point is a vertex only to about 1e-8.
    """
    oracle = BUILT[name]
    theta = scores(name, seed)
    scale = mantissa * 10.0**exponent
    if name == "cvxpy LP":
        assert torch.allclose(oracle(scale * theta), oracle(theta), atol=1e-6, rtol=0)
    else:
        assert torch.equal(oracle(scale * theta), oracle(theta))


def test_the_reported_small_scale_lp_case():
    theta = torch.tensor([-0.1468, 0.7861, 0.9468, -1.1143, 1.6908], dtype=torch.float64)
    lp = LinearProgram(5, A_ub=[[1] * 5], b_ub=[2], bounds=(0, 1))
    expected = torch.tensor([0.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    for scale in (1.0, 1e-8, 1e-12, 1e-30, 1e30):
        assert torch.equal(lp(scale * theta), expected)


def test_spanning_tree_separates_scores_near_1e_minus_17():
    """The two cheapest edges differ by 1e-17; a +1 shift would make them equal and pick by position."""
    tree = SpanningTree(3, [(0, 1), (1, 2), (0, 2)])
    theta = torch.tensor([1e-17, 2e-17, 3e-17], dtype=torch.float64)
    assert torch.equal(tree(theta), torch.tensor([0.0, 1.0, 1.0], dtype=torch.float64))
    assert torch.equal(tree(theta.flip(0)), torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))


@pytest.mark.parametrize("name", [n for n in SOLVER_BASED if n != "cvxpy LP"])  # interior point: ≈ vertex
def test_solutions_have_no_signed_zeros_and_exact_integers(name):
    y = BUILT[name](scores(name, 3, batch=8))
    assert not torch.signbit(y).any()  # no -0.0 (and no negative entries in these 0/1 problems)
    assert torch.equal(y, y.round())


# ---- dtypes -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", list(ORACLES))
def test_half_precision_theta_is_solved_and_returned_in_its_dtype(name, dtype):
    theta = scores(name, 11).to(dtype)
    for oracle in (BUILT[name], CachedOracle(BUILT[name])):
        y = oracle(theta)
        assert y.dtype == dtype and y.shape == oracle(theta.float()).shape
        assert torch.equal(y, oracle(theta.float()).to(dtype))  # the half values are exact in float32


# ---- empty inputs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ORACLES))
@pytest.mark.parametrize("batch", [(0,), (2, 0)])
def test_an_empty_batch_gives_an_empty_result(name, batch):
    oracle = BUILT[name]
    _, event, _ = ORACLES[name]
    theta = torch.zeros((*batch, *event), dtype=torch.float64)
    expected = (*batch, *oracle.solution_shape(tuple(event)))
    assert oracle(theta).shape == expected and CachedOracle(oracle)(theta).shape == expected
    assert oracle.solve(theta.reshape(0, *event)).shape == (0, *expected[len(batch) :])


@pytest.mark.parametrize("oracle", [ArgmaxOneHot(), Ranking()], ids=repr)
@pytest.mark.parametrize("batch", [(3,), (0,), (2, 2)])
def test_an_empty_event_gives_an_empty_solution(oracle, batch):
    y = oracle(torch.zeros((*batch, 0)))
    assert y.shape == (*batch, 0)


def test_top_k_of_an_empty_event_is_refused():
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 0\]"):
        TopKSubset(1)(torch.zeros(3, 0))


# ---- EnumeratedOracle -------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(2, 3), (3, 3), (5, 5), (4, 6)])
def test_enumerated_grid_paths_equal_the_grid_dynamic_program(size):
    paths = grid_dag_paths(*size)
    assert paths.shape[0] == len(list(itertools.combinations(range(sum(size) - 2), size[0] - 1)))
    dag = GridDAGShortestPath(*size)
    assert dag.contains(paths).all() if hasattr(dag, "contains") else True
    theta = torch.randn(64, paths.shape[1], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(EnumeratedOracle(paths)(theta), dag(theta))


def test_enumerated_oracle_breaks_ties_to_the_first_solution_and_checks_membership():
    oracle = EnumeratedOracle(torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]))
    assert torch.equal(oracle(torch.tensor([[1.0, 1.0], [-1.0, -1.0]])), torch.tensor([[1.0, 1.0], [0.0, 1.0]]))
    assert torch.equal(oracle(torch.tensor([[1.0, -1.0]])), torch.tensor([[1.0, 0.0]]))
    member = oracle.contains(torch.tensor([[[1.0, 1.0], [0.0, 0.0]], [[0.0, 1.0], [1.0, 0.5]]]))
    assert torch.equal(member, torch.tensor([[True, False], [True, False]]))
    with pytest.raises(ValueError, match="solutions must be distinct"):
        EnumeratedOracle([[1.0, 0.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match=r"solutions must have shape \(K, \*event\) with K ≥ 1"):
        EnumeratedOracle(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="solutions must be finite"):
        EnumeratedOracle([[1.0, float("nan")]])


def test_enumerated_oracle_equals_brute_force_for_subsets():
    subsets = [[float(i in c) for i in range(6)] for c in itertools.combinations(range(6), 3)]
    oracle = EnumeratedOracle(subsets)
    theta = torch.randn(50, 6, generator=torch.Generator().manual_seed(2))
    assert torch.equal(oracle(theta), TopKSubset(3)(theta))
