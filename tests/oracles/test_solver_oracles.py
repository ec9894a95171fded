"""LinearProgram, CvxpyOracle, BipartiteMatching, SpanningTree, Knapsack: feasible and optimal against references."""

import itertools

import cvxpy as cp
import networkx as nx
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers.oracles import (
    BipartiteMatching,
    CvxpyOracle,
    Knapsack,
    LinearProgram,
    OracleError,
    SpanningTree,
)

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
    ),
]
seeds = st.integers(0, 2**32 - 1)


def binary_points(n):
    return np.array(list(itertools.product([0.0, 1.0], repeat=n)))


# ---- LinearProgram --------------------------------------------------------------------------------------
@settings(max_examples=20, deadline=None)
@given(st.integers(2, 6), st.integers(1, 3), seeds)
def test_binary_program_matches_brute_force(n, m, seed):
    """max <theta, y> over y in {0,1}^n with A y <= b (y = 0 always feasible: b >= 0); integer scores give ties."""
    rng = np.random.default_rng(seed)
    A = rng.integers(-2, 4, size=(m, n)).astype(float)
    b = rng.integers(0, 5, size=m).astype(float)
    theta = rng.integers(-3, 4, size=(4, n)).astype(float)
    y = LinearProgram(n, A_ub=A, b_ub=b, bounds=(0, 1), integrality=True)(torch.from_numpy(theta)).numpy()
    points = binary_points(n)
    feasible = points[(points @ A.T <= b + 1e-9).all(axis=1)]
    for i in range(theta.shape[0]):
        assert any((y[i] == p).all() for p in feasible)  # y is one of the feasible 0/1 points
        assert theta[i] @ y[i] == pytest.approx((feasible @ theta[i]).max(), abs=1e-9)


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 5), seeds)
def test_continuous_lp_matches_an_independent_solver(n, seed):
    """An LP with equality and inequality constraints against cvxpy's interior-point solver (Clarabel)."""
    rng = np.random.default_rng(seed)
    A_ub = rng.normal(size=(2, n))
    b_ub = A_ub @ np.full(n, 1.0 / n) + rng.uniform(0.1, 1.0, size=2)  # the centre of the simplex is feasible
    A_eq, b_eq = np.ones((1, n)), np.array([1.0])
    theta = rng.normal(size=(3, n))
    lp = LinearProgram(n, A_ub=A_ub, b_ub=b_ub, A_eq=A_eq, b_eq=b_eq, bounds=(0, 1))
    y = lp(torch.from_numpy(theta)).numpy()
    x = cp.Variable(n)
    for i in range(3):
        ref = cp.Problem(cp.Maximize(theta[i] @ x), [A_ub @ x <= b_ub, A_eq @ x == b_eq, x >= 0, x <= 1])
        ref.solve(solver="CLARABEL")
        assert np.all(A_ub @ y[i] <= b_ub + 1e-7) and np.allclose(A_eq @ y[i], b_eq)
        assert np.all(y[i] >= -1e-9) and np.all(y[i] <= 1 + 1e-9)
        assert theta[i] @ y[i] == pytest.approx(ref.value, abs=1e-6)


def test_infeasible_and_unbounded_name_status_and_instance():
    lp = LinearProgram(2, A_ub=[[1.0, 1.0]], b_ub=[1.0], A_eq=[[1.0, -1.0]], b_eq=[0.0], bounds=(None, None))
    theta = torch.tensor([[-1.0, -1.0], [1.0, 1.0], [1.0, 1.0]])
    assert torch.allclose(lp(theta[1]), torch.tensor([0.5, 0.5]))
    with pytest.raises(OracleError, match=r"failed on instance 0 of 3: HiGHS model status \d+ \(Unbounded\)$"):
        lp(theta)  # instance 0 maximizes -2 y1 over y1 = y2 free below: unbounded
    assert torch.allclose(lp(theta[1]), torch.tensor([0.5, 0.5]))  # the model recovers after a failure
    with pytest.raises(ValueError, match=r"no y satisfies the constraints.*on the constraints: Infeasible"):
        LinearProgram(2, A_ub=[[1.0, 1.0]], b_ub=[-1.0])  # y >= 0 and y1 + y2 <= -1: infeasible for every theta
    with pytest.raises(ValueError, match=r"on the LP relaxation of the constraints: Infeasible"):
        LinearProgram(2, A_ub=[[1.0, 1.0]], b_ub=[0.5], bounds=(1, 2), integrality=True)


def test_linear_program_bad_arguments():
    with pytest.raises(ValueError, match="A_ub and b_ub must be given together"):
        LinearProgram(2, A_ub=[[1.0, 1.0]])
    with pytest.raises(ValueError, match="A_eq must be a matrix with 3 columns"):
        LinearProgram(3, A_eq=[[1.0, 1.0]], b_eq=[1.0])
    with pytest.raises(ValueError, match="b_ub must be finite"):
        LinearProgram(2, A_ub=[[1.0, 1.0]], b_ub=[float("nan")])
    with pytest.raises(ValueError, match="integrality must hold 0"):
        LinearProgram(2, integrality=[0, 2])
    with pytest.raises(ValueError, match="theta must be finite"):
        LinearProgram(2, bounds=(0, 1))(torch.tensor([1.0, float("nan")]))


# ---- CvxpyOracle ----------------------------------------------------------------------------------------
def test_cvxpy_knapsack_matches_brute_force_and_builds_once():
    rng = np.random.default_rng(0)
    w = rng.integers(1, 6, size=6).astype(float)
    theta_p, y_v = cp.Parameter(6), cp.Variable(6, boolean=True)
    problem = cp.Problem(cp.Maximize(theta_p @ y_v), [w @ y_v <= 9])
    oracle = CvxpyOracle(problem, theta_p, y_v)
    assert oracle.solver.solver == "HIGHS"  # mixed-integer default
    theta = rng.integers(-2, 6, size=(5, 6)).astype(float)
    y = oracle(torch.from_numpy(theta)).numpy()
    points = binary_points(6)
    feasible = points[points @ w <= 9]
    for i in range(5):
        assert w @ y[i] <= 9 and set(np.unique(y[i])) <= {0.0, 1.0}
        assert theta[i] @ y[i] == pytest.approx((feasible @ theta[i]).max())
    assert oracle.problem is problem  # the same problem object served every instance


def test_cvxpy_lp_equals_linear_program_and_reports_failures():
    theta_p, x = cp.Parameter(3), cp.Variable(3)
    simplex = cp.Problem(cp.Maximize(theta_p @ x), [cp.sum(x) == 1, x >= 0])
    theta = torch.tensor([[0.1, 0.7, 0.2], [3.0, -1.0, 0.0]], dtype=torch.float64)
    y = CvxpyOracle(simplex, theta_p, x)(theta)
    lp = LinearProgram(3, A_eq=[[1.0, 1.0, 1.0]], b_eq=[1.0])
    assert torch.allclose(y, lp(theta), atol=1e-6) and y.dtype == torch.float64
    bad = cp.Problem(cp.Maximize(theta_p @ x), [cp.sum(x) == 1, x >= 1])
    # (a commercial default solver, where installed, reports 'infeasible_or_unbounded')
    status = r"'infeasible(_or_unbounded)?'$"
    with pytest.raises(OracleError, match=r"on instance 0 of 2: cvxpy solver \S+ ended with status " + status):
        CvxpyOracle(bad, theta_p, x)(theta)


def test_cvxpy_oracle_bad_arguments():
    theta_p, x = cp.Parameter(3), cp.Variable(3)
    minimize = cp.Problem(cp.Minimize(theta_p @ x), [cp.sum(x) == 1, x >= 0])
    with pytest.raises(ValueError, match="problem must maximize"):
        CvxpyOracle(minimize, theta_p, x)
    ok = cp.Problem(cp.Maximize(theta_p @ x), [cp.sum(x) == 1, x >= 0])
    with pytest.raises(TypeError, match="parameter must be a cvxpy.Parameter"):
        CvxpyOracle(ok, np.ones(3), x)
    with pytest.raises(ValueError, match="does not appear in the problem"):
        CvxpyOracle(ok, cp.Parameter(3), x)


# ---- BipartiteMatching ------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.integers(1, 5), st.integers(1, 5), seeds)
def test_matching_matches_brute_force(n, m, seed):
    rng = np.random.default_rng(seed)
    theta = rng.integers(-3, 4, size=(3, n, m)).astype(float)
    y = BipartiteMatching(n, m)(torch.from_numpy(theta)).numpy()
    k = min(n, m)
    for i in range(3):
        assert (y[i].sum(0) <= 1).all() and (y[i].sum(1) <= 1).all() and y[i].sum() == k
        if n <= m:
            best = max(theta[i][np.arange(n), list(p)].sum() for p in itertools.permutations(range(m), n))
        else:
            best = max(theta[i][list(p), np.arange(m)].sum() for p in itertools.permutations(range(n), m))
        assert (theta[i] * y[i]).sum() == pytest.approx(best)


# ---- SpanningTree -----------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.integers(2, 8), st.floats(0.2, 1.0), seeds)
def test_spanning_tree_matches_networkx(n, density, seed):
    rng = np.random.default_rng(seed)
    path = [(i, i + 1) for i in range(n - 1)]  # keeps the graph connected
    extra = [(u, v) for u in range(n) for v in range(u + 2, n) if rng.random() < density]
    edges = [(v, u) if rng.random() < 0.5 else (u, v) for u, v in path + extra]  # either orientation
    theta = rng.integers(-3, 4, size=(3, len(edges))).astype(float)
    y = SpanningTree(n, edges)(torch.from_numpy(theta)).numpy()
    for i in range(3):
        chosen = [e for e, used in zip(edges, y[i]) if used]
        tree = nx.Graph(chosen)
        assert len(chosen) == n - 1 and tree.number_of_nodes() == n and nx.is_tree(tree)
        graph = nx.Graph()
        graph.add_weighted_edges_from((u, v, t) for (u, v), t in zip(edges, theta[i]))
        best = nx.maximum_spanning_tree(graph).size(weight="weight")
        assert theta[i] @ y[i] == pytest.approx(best)


def test_spanning_tree_bad_graphs():
    with pytest.raises(ValueError, match="connected"):
        SpanningTree(4, [(0, 1), (2, 3)])
    with pytest.raises(ValueError, match="repeat"):
        SpanningTree(2, [(0, 1), (1, 0)])
    with pytest.raises(ValueError, match="self-loops"):
        SpanningTree(2, [(0, 1), (1, 1)])
    with pytest.raises(ValueError, match=r"vertices in \[0, 2\]"):
        SpanningTree(3, [(0, 1), (1, 3)])


# ---- Knapsack -----------------------------------------------------------------------------------------
@settings(max_examples=25, deadline=None)
@given(st.integers(1, 7), st.booleans(), seeds)
def test_knapsack_matches_brute_force(n, integer, seed):
    rng = np.random.default_rng(seed)
    w = rng.integers(1, 7, size=n).astype(float) if integer else rng.uniform(0.5, 6.0, size=n)
    cap = float(rng.integers(0, 3 * n + 1)) if integer else float(rng.uniform(0, 3 * n))
    theta = rng.integers(-2, 5, size=(4, n)).astype(float)  # ties
    knap = Knapsack(w, cap)
    assert knap.method == ("dynamic programming" if integer else "mixed-integer program (HiGHS)")
    y = knap(torch.from_numpy(theta)).numpy()
    points = binary_points(n)
    feasible = points[points @ w <= cap + 1e-9]
    for i in range(4):
        assert set(np.unique(y[i])) <= {0.0, 1.0} and w @ y[i] <= cap + 1e-9
        assert theta[i] @ y[i] == pytest.approx((feasible @ theta[i]).max())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_knapsack_dp_batch_equals_loop_on_device(device, dtype):
    knap = Knapsack([3, 1, 4, 1, 5, 9, 2, 6], capacity=12)
    theta = torch.randn(3, 5, 8, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    y = knap(theta)
    assert y.dtype == dtype and y.device == theta.device and y.shape == theta.shape
    assert torch.equal(y, torch.stack([torch.stack([knap(t) for t in row]) for row in theta]))


def test_knapsack_bad_arguments():
    with pytest.raises(ValueError, match="weights must be finite and > 0"):
        Knapsack([1.0, 0.0], 3)
    with pytest.raises(ValueError, match="capacity must be finite"):
        Knapsack([1.0, 2.0], -1)
    with pytest.raises(ValueError, match=r"theta must have shape \(\*batch, 2\)"):
        Knapsack([1.0, 2.0], 2)(torch.ones(3))


# ---- all per-instance oracles: batch equals loop, dtype kept ---------------------------------------------
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "oracle",
    [
        BipartiteMatching(3, 4),
        SpanningTree(4, [(0, 1), (1, 2), (2, 3), (0, 3), (0, 2)]),
        Knapsack([0.5, 1.5, 2.5, 1.0], capacity=3.2),
        LinearProgram(4, A_ub=[[1.0, 2.0, 1.0, 1.0]], b_ub=[3.0], bounds=(0, 1), integrality=[1, 1, 0, 1]),
    ],
    ids=repr,
)
def test_batch_equals_loop_and_dtype(oracle, dtype):
    shape = (2, 3, *oracle.event_shape)
    theta = torch.randn(shape, generator=torch.Generator().manual_seed(3), dtype=dtype)
    y = oracle(theta)
    assert y.dtype == dtype and y.shape[:2] == (2, 3)
    assert torch.equal(y, torch.stack([torch.stack([oracle(t) for t in row]) for row in theta]))


# ---- signed zeros ---------------------------------------------------------------------------------------
def test_no_signed_zero_in_any_solver_oracle_output():
    # A solver that negates, or rounds a tiny negative, returns -0.0; a solution must not carry it (it prints as
    # "-0." and it is not equal bit for bit to the same solution found elsewhere).
    from colayers.oracles import SolverOracle

    negated = SolverOracle(lambda t: -np.zeros_like(t), event_shape=(3,))
    y = negated(torch.ones(2, 3))
    assert not torch.signbit(y).any()
    theta_p, y_v = cp.Parameter(3), cp.Variable(3, boolean=True)
    knapsack = cp.Problem(cp.Maximize(theta_p @ y_v), [np.array([2.0, 3.0, 4.0]) @ y_v <= 5])
    y = CvxpyOracle(knapsack, theta_p, y_v)(torch.tensor([[3.0, 4.0, 5.0], [1.0, 1.0, 5.0]]))
    assert torch.equal(y, torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])) and not torch.signbit(y).any()
    lp = LinearProgram(5, A_ub=[[1.0] * 5], b_ub=[2.0], bounds=(0, 1), integrality=True)
    assert not torch.signbit(lp(torch.randn(16, 5, generator=torch.Generator().manual_seed(0)))).any()


# ---- the persistent HiGHS model ---------------------------------------------------------------------------
def test_highs_program_pickles_its_configuration_and_rebuilds_the_model_lazily():
    import pickle

    lp = LinearProgram(4, A_ub=[[1.0, 2.0, 1.0, 3.0]], b_ub=[3.0], bounds=(0, 1), integrality=True)
    theta = torch.tensor([[1.0, 2.0, -1.0, 2.5], [0.5, 0.1, 0.2, 3.0]], dtype=torch.float64)
    y = lp(theta)  # builds the model of this thread
    copy = pickle.loads(pickle.dumps(lp.solver))
    assert getattr(copy._local, "highs", None) is None  # nothing solver-side travelled
    assert torch.equal(torch.from_numpy(np.stack([copy(t) for t in theta.numpy()])), y)
    assert getattr(copy._local, "highs", None) is not None  # built on first use


def test_highs_models_are_per_thread_and_agree_with_serial():
    import concurrent.futures

    rng = np.random.default_rng(5)
    A = rng.integers(1, 5, size=(2, 8)).astype(float)
    theta = torch.from_numpy(rng.normal(size=(40, 8)))
    serial = LinearProgram(8, A_ub=A, b_ub=[6.0, 7.0], bounds=(0, 1), integrality=True)(theta)
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        threaded = LinearProgram(8, A_ub=A, b_ub=[6.0, 7.0], bounds=(0, 1), integrality=True, executor=pool)
        assert torch.equal(threaded(theta), serial)


def test_the_optimality_certificate_rejects_a_suboptimal_vertex():
    lp = LinearProgram(3, A_eq=[[1.0, 1.0, 1.0]], b_eq=[1.0], bounds=(0, 1))
    program = lp.solver
    cost = np.array([0.5, 0.25, -0.125])
    best = program(cost)
    assert np.array_equal(best, [1.0, 0.0, 0.0])
    program._certify(program._model(), cost, best)  # the optimum passes
    with pytest.raises(OracleError, match="not certified optimal: primal objective 0.25 but dual objective 0.5"):
        program._certify(program._model(), cost, np.array([0.0, 1.0, 0.0]))  # a feasible vertex, not optimal
