"""Every public oracle (found from the package by tests/conformance): invariant to a positive scale of θ,
half-precision θ, empty batches and events."""

import itertools

import cvxpy as cp
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers.oracles import (
    ArgmaxOneHot,
    CachedOracle,
    CvxpyOracle,
    EnumeratedOracle,
    GridDAGShortestPath,
    Knapsack,
    LinearProgram,
    Ranking,
    SpanningTree,
    TopKSubset,
    grid_dag_paths,
)
from tests.conformance import EVENT, Case, discover


def cvxpy_lp():
    theta, y = cp.Parameter(5), cp.Variable(5)
    return CvxpyOracle(cp.Problem(cp.Maximize(theta @ y), [cp.sum(y) <= 2, y >= 0, y <= 1]), theta, y)


# Every deterministic public oracle, found by tests/conformance from the package's __all__ (one instance per class,
# from its table of constructors), and the second configurations of the classes that have two solving paths.
EXTRA_CONFIGURATIONS = {
    "Knapsack-dynamic-program": Case(lambda: Knapsack([2, 3, 4, 1, 2], 6)),  # integer weights: a DP, not a MILP
    "LinearProgram-integer": Case(
        lambda: LinearProgram(5, A_ub=[[1.0, 2.0, 3.0, 1.0, 1.0]], b_ub=[4], bounds=(0, 1), integrality=True)
    ),
    "CvxpyOracle-LP": Case(cvxpy_lp),
}
# Clarabel through cvxpy: the LP's point is a vertex only to about 1e-8; the portfolio's second-order cone program
# is solved to gap and feasibility tolerances of 1e-9 (Portfolio's default), which leave up to ~2e-5 on the
# allocation (1.7e-5 over 150 random instances; the unique maximizer is sensitive to the solver's stopping point)
INTERIOR_POINT = {"CvxpyOracle-LP": 1e-6, "Portfolio": 1e-4}
ORACLES: dict[str, Case] = {piece.name: piece.case for piece in discover()["oracle"] if piece.error is None}
ORACLES.update(EXTRA_CONFIGURATIONS)


def build(case):
    try:
        return case.build()
    except pytest.skip.Exception:  # an optional extra that is not installed (PyEPO)
        return None


BUILT = {name: build(case) for name, case in ORACLES.items()}
BUILT = {name: oracle for name, oracle in BUILT.items() if oracle is not None and oracle.deterministic}
ORACLES = {name: ORACLES[name] for name in BUILT}


def event(name):
    if ORACLES[name].event is not None:
        return ORACLES[name].event
    shape = BUILT[name].event_shape
    return tuple(shape) if shape is not None else EVENT


def scores(name, seed, batch=4):
    return ORACLES[name].scores((batch, *event(name)), torch.Generator().manual_seed(seed), torch.float64)


# ---- scale ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(ORACLES))
@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), exponent=st.sampled_from([-17, -8, -3, 2, 8, 17]), mantissa=st.floats(1, 9.9))
def test_argmax_does_not_depend_on_the_scale_of_theta(name, seed, exponent, mantissa):
    """f(c θ) = f(θ) for c > 0; continuous random θ has no ties, so the solutions are equal, not just as good."""
    oracle = BUILT[name]
    theta = scores(name, seed)
    scale = mantissa * 10.0**exponent
    if name in INTERIOR_POINT:
        assert torch.allclose(oracle(scale * theta), oracle(theta), atol=INTERIOR_POINT[name], rtol=0)
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


@pytest.mark.parametrize("name", [n for n in ORACLES if n not in INTERIOR_POINT])
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
    shape = event(name)
    theta = torch.zeros((*batch, *shape), dtype=torch.float64)
    expected = (*batch, *oracle.solution_shape(shape))
    assert oracle(theta).shape == expected and CachedOracle(oracle)(theta).shape == expected
    assert oracle.solve(theta.reshape(0, *shape)).shape == (0, *expected[len(batch) :])


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
