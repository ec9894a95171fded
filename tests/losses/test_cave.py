"""CaVE (cone-aligned cosine loss): values and gradients against normal cones known in closed form, a loss of zero
exactly at the LP's own optimum, batching, the study method, and the refusals."""

import math

import numpy as np
import pytest
import torch

from colayers import TopKSubset
from colayers.losses import ConeAlignedCosineLoss, binding_normals, cone_aligned_cosine_loss
from colayers.oracles import LinearProgram
from colayers.studies.methods import make_method

DT = torch.float64
DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
    ),
]


def _triangle():
    # 0 ≤ y ≤ 2, y1 + y2 ≤ 3: at the vertex (2, 1) the binding normals are (1, 1) and (1, 0), so the normal cone
    # is {x : x1 ≥ x2 ≥ 0}
    return LinearProgram(2, A_ub=[[1.0, 1.0]], b_ub=[3.0], bounds=(0, 2))


def _closed_form_gradient(theta, p):
    # ∂(1 - cos(θ, p))/∂θ with p held constant
    nt, np_ = theta.norm(), p.norm()
    cos = theta @ p / (nt * np_)
    return -(p / (nt * np_) - cos * theta / nt**2)


@pytest.mark.parametrize(
    "theta, p",
    [
        ((1.0, 3.0), (2.0, 2.0)),  # nearest to the ray (1, 1)
        ((2.0, -1.0), (2.0, 0.0)),  # nearest to the ray (1, 0)
        ((5.0, 1.5), (5.0, 1.5)),  # inside the cone
    ],
)
def test_value_and_gradient_match_the_closed_form_projection_on_the_triangle_cone(theta, p):
    lp = _triangle()
    theta = torch.tensor(theta, dtype=DT, requires_grad=True)
    p = torch.tensor(p, dtype=DT)
    value = ConeAlignedCosineLoss(lp)(theta, torch.tensor([2.0, 1.0], dtype=DT))
    value.backward()
    cos = (theta @ p / (theta.norm() * p.norm())).item()
    assert value.item() == pytest.approx(1 - cos, abs=1e-12)
    torch.testing.assert_close(theta.grad, _closed_form_gradient(theta.detach(), p), atol=1e-12, rtol=0)


def test_the_value_at_one_three_is_one_minus_two_over_root_five():
    theta, target = torch.tensor([1.0, 3.0], dtype=DT), torch.tensor([2.0, 1.0], dtype=DT)
    value = cone_aligned_cosine_loss(theta, target, _triangle())
    assert value.item() == pytest.approx(1 - 2 / math.sqrt(5), abs=1e-12)


def test_a_theta_in_the_polar_cone_has_loss_one_and_no_gradient():
    theta = torch.tensor([-1.0, -2.0], dtype=DT, requires_grad=True)  # ⟨θ, k⟩ < 0 for every k of the cone
    value = ConeAlignedCosineLoss(_triangle())(theta, torch.tensor([2.0, 1.0], dtype=DT))
    value.backward()
    assert value.item() == pytest.approx(1.0, abs=1e-12)
    assert torch.equal(theta.grad, torch.zeros(2, dtype=DT))


@pytest.mark.parametrize(
    "theta, p",
    [
        ((3.0, 0.0, 1.0), (3.0, 0.5, 0.5)),  # one violated face x3 ≤ x2
        ((0.0, 0.0, 4.0), (4 / 3, 4 / 3, 4 / 3)),  # both faces: onto the line x1 = x2 = x3
    ],
)
def test_equality_rows_count_with_both_signs(theta, p):
    # Σy = 2, 0 ≤ y ≤ 1: at (1, 1, 0) the cone is span(1, 1, 1) + cone(e1, e2, -e3) = {x : x3 ≤ min(x1, x2)}
    lp = LinearProgram(3, A_eq=[[1.0, 1.0, 1.0]], b_eq=[2.0], bounds=(0, 1))
    theta = torch.tensor(theta, dtype=DT, requires_grad=True)
    p = torch.tensor(p, dtype=DT)
    value = ConeAlignedCosineLoss(lp)(theta, torch.tensor([1.0, 1.0, 0.0], dtype=DT))
    value.backward()
    cos = (theta @ p / (theta.norm() * p.norm())).item()
    assert value.item() == pytest.approx(1 - cos, abs=1e-12)
    torch.testing.assert_close(theta.grad, _closed_form_gradient(theta.detach(), p), atol=1e-12, rtol=0)


def test_average_projection_matches_its_closed_form():
    r = 0.3
    theta = torch.tensor([1.0, 3.0], dtype=DT, requires_grad=True)
    mean_normal = (torch.tensor([1.0, 1.0], dtype=DT) / math.sqrt(2) + torch.tensor([1.0, 0.0], dtype=DT)) / 2
    p = (1 - r) * theta.detach() / theta.detach().norm() + r * mean_normal
    loss = ConeAlignedCosineLoss(_triangle(), projection="average", inner_ratio=r)
    value = loss(theta, torch.tensor([2.0, 1.0], dtype=DT))
    value.backward()
    cos = (theta @ p / (theta.norm() * p.norm())).item()
    assert value.item() == pytest.approx(1 - cos, abs=1e-12)
    torch.testing.assert_close(theta.grad, _closed_form_gradient(theta.detach(), p), atol=1e-12, rtol=0)


def _path_lp():
    # shortest s-t path on a 4-node graph with 5 arcs as an LP: flow conservation (equalities), 0 ≤ y ≤ 1
    arcs = [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]
    A = torch.zeros(4, 5, dtype=DT)
    for j, (u, v) in enumerate(arcs):
        A[u, j], A[v, j] = -1.0, 1.0
    return LinearProgram(5, A_eq=A.numpy(), b_eq=[-1.0, 0.0, 0.0, 1.0], bounds=(0, 1))


@pytest.mark.parametrize("device", DEVICES)
def test_loss_is_zero_at_the_lp_optimum_and_positive_at_another_vertex(device):
    lp = _path_lp()
    g = torch.Generator().manual_seed(0)
    theta = -(torch.rand(16, 5, generator=g, dtype=DT) * 3 + 0.5)  # θ = -cost
    y_best = lp(theta)
    loss = ConeAlignedCosineLoss(lp, reduction="none")
    assert loss(theta.to(device), y_best.to(device)).abs().max().item() < 1e-9
    other = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0], dtype=DT).expand(16, 5)  # path 0-1-3
    worse = (theta * other).sum(-1) < (theta * y_best).sum(-1) - 1e-6
    value = loss(theta.to(device), other.to(device))
    assert value.device.type == device
    assert (value.cpu()[worse] > 1e-6).all() and worse.any()


def test_batched_loss_equals_a_loop_and_reductions_agree():
    lp = _path_lp()
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(2, 3, 5, generator=g, dtype=DT)
    target = lp(-(torch.rand(2, 3, 5, generator=g, dtype=DT) + 0.1))
    none = ConeAlignedCosineLoss(lp, reduction="none")(theta, target)
    loop = torch.stack([ConeAlignedCosineLoss(lp)(t, y) for t, y in zip(theta.reshape(6, 5), target.reshape(6, 5))])
    torch.testing.assert_close(none.reshape(6), loop, atol=1e-12, rtol=0)
    assert ConeAlignedCosineLoss(lp, reduction="sum")(theta, target).item() == pytest.approx(loop.sum().item())


def _clarabel_iterate(theta, normals, max_iter):
    # PyEPO's CaVE+ QP, written here from its definition: min ½λ'(2NN')λ - 2(Nθ)'λ s.t. λ ≥ 0 (as -λ + s = 0,
    # s in the nonnegative cone), Clarabel without presolve or equilibration, one thread, stopped at max_iter
    clarabel = pytest.importorskip("clarabel")
    from scipy import sparse

    N, th = normals.numpy(), theta.numpy()
    m = N.shape[0]
    settings = clarabel.DefaultSettings()
    settings.max_iter = max_iter
    settings.verbose = False
    settings.max_threads = 1
    settings.presolve_enable = False
    settings.equilibrate_enable = False
    P = sparse.csc_matrix(np.triu(2.0 * N @ N.T))
    A = sparse.csc_matrix(-np.eye(m))
    solver = clarabel.DefaultSolver(P, -2.0 * N @ th, A, np.zeros(m), [clarabel.NonnegativeConeT(m)], settings)
    return torch.tensor(np.asarray(solver.solve().x) @ N, dtype=DT)


@pytest.mark.parametrize("max_iter", [1, 3, 6])
def test_truncated_projection_is_clarabels_iterate_after_max_iter_iterations(max_iter):
    lp = _path_lp()
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(6, 5, generator=g, dtype=DT)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=DT).expand(6, 5)  # path 0-1-2-3
    normals, binding = binding_normals(lp, target)
    loss = ConeAlignedCosineLoss(lp, projection="truncated", max_iter=max_iter, reduction="none")
    exact = ConeAlignedCosineLoss(lp, reduction="none")(theta, target)
    values = []
    for i in range(6):
        t = theta[i].clone().requires_grad_(True)
        value = loss(t, target[i])
        value.backward()
        p = _clarabel_iterate(theta[i], normals[binding[i]], max_iter)
        cos = (theta[i] @ p / (theta[i].norm() * p.norm())).item()
        assert value.item() == pytest.approx(1 - cos, abs=1e-10)
        torch.testing.assert_close(t.grad, _closed_form_gradient(theta[i], p), atol=1e-10, rtol=0)
        values.append(value.item())
    if max_iter <= 3:  # an interior iterate, not the projection: the loss is larger than the exact one
        assert (torch.tensor(values, dtype=DT) - exact).min() > 1e-4


def test_truncated_projection_converges_to_the_exact_one():
    lp = _path_lp()
    theta = torch.randn(8, 5, generator=torch.Generator().manual_seed(4), dtype=DT)
    target = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=DT).expand(8, 5)
    late = ConeAlignedCosineLoss(lp, projection="truncated", max_iter=200, reduction="none")(theta, target)
    exact = ConeAlignedCosineLoss(lp, reduction="none")(theta, target)
    torch.testing.assert_close(late, exact, atol=1e-6, rtol=0)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "3", True])
def test_a_bad_max_iter_is_refused_by_name(bad):
    with pytest.raises((TypeError, ValueError), match="max_iter must be an integer"):
        ConeAlignedCosineLoss(_triangle(), projection="truncated", max_iter=bad)


def test_binding_normals_finds_the_tight_rows():
    normals, binding = binding_normals(_triangle(), torch.tensor([[2.0, 1.0], [0.0, 0.0]]))
    assert normals[binding[0]].tolist() == [[1.0, 1.0], [1.0, 0.0]]
    assert normals[binding[1]].tolist() == [[-1.0, 0.0], [0.0, -1.0]]


def test_an_oracle_without_linear_constraints_is_refused_by_name():
    with pytest.raises(TypeError, match="linear_constraints.*TopKSubset"):
        ConeAlignedCosineLoss(TopKSubset(2))
    with pytest.raises(ValueError, match="inner_ratio"):
        ConeAlignedCosineLoss(_triangle(), inner_ratio=1.5)
    with pytest.raises(ValueError, match="projection"):
        ConeAlignedCosineLoss(_triangle(), projection="clarabel")


def test_a_target_that_is_not_a_vertex_is_refused():
    with pytest.raises(ValueError, match="y_target"):
        ConeAlignedCosineLoss(_triangle())(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 1.0]))


def test_study_method_cave_trains_on_a_linear_program_and_refuses_other_oracles():
    lp = _path_lp()
    theta = torch.tensor([[-1.0, -3.0, -1.0, -3.0, -1.0]], dtype=DT)
    y_true = torch.tensor([[1.0, 0.0, 1.0, 0.0, 1.0]], dtype=DT)  # 0-1-2-3, optimal for θ
    exact = make_method("cave", lp, 1, projection="exact")
    assert exact.loss(theta, -theta, y_true).item() == pytest.approx(0.0, abs=1e-12)
    # the default is PyEPO's: CaVE+, the Clarabel iterate after 3 iterations, which is inside the cone but not θ
    method = make_method("cave", lp, 1)
    assert (method.fn.projection, method.fn.max_iter) == ("truncated", 3)
    normals, binding = binding_normals(lp, y_true[0])
    p = _clarabel_iterate(theta[0], normals[binding], 3)
    cos = (theta[0] @ p / (theta[0].norm() * p.norm())).item()
    assert method.loss(theta, -theta, y_true).item() == pytest.approx(1 - cos, abs=1e-10) and cos < 1 - 1e-6
    with pytest.raises(ValueError, match="cave.*LinearProgram.*TopKSubset"):
        make_method("cave", TopKSubset(2), 1)


def test_grid_dag_shortest_path_constraints_make_its_own_paths_optimal():
    # the flow polytope's normal cone at the DP's shortest path holds θ: loss 0; another path that is worse: loss > 0
    from colayers import GridDAGShortestPath

    oracle = GridDAGShortestPath(3, 4)
    g = torch.Generator().manual_seed(2)
    theta = -(torch.rand(12, oracle.num_edges, generator=g, dtype=DT) * 2 + 0.1)
    best = oracle(theta)
    loss = ConeAlignedCosineLoss(oracle, reduction="none")
    assert loss(theta, best).abs().max().item() < 1e-9
    other = best.flip(0)
    worse = (theta * other).sum(-1) < (theta * best).sum(-1) - 1e-6
    assert worse.any() and (loss(theta, other)[worse] > 1e-6).all()


@pytest.mark.parametrize("multi", [False, True])
def test_knapsack_relaxation_cone_is_inside_the_optimality_cone_of_the_packing(multi):
    # Knapsack (one constraint, dynamic program) and PackingOracle (two constraints, enumeration) describe their
    # 0/1 program by its linear relaxation. Where the CaVE loss is 0 (θ in the cone of the rows binding at the
    # packing y), y must be optimal over all packings (checked by enumerating them); the loss must be > 0 where y
    # is not optimal; and the knapsack study problem's oracle carries the constraints (so `cave` runs there).
    from colayers.oracles import Knapsack, PackingOracle
    from colayers.oracles.packing import feasible_packings

    w = np.array([[3.0, 4.0, 5.0, 2.0, 6.0]]) if not multi else np.array([[3.0, 4.0, 5.0, 2.0, 6.0], [5, 1, 2, 4, 3]])
    cap = np.array([9.0]) if not multi else np.array([9.0, 8.0])
    packings = feasible_packings(w, cap, limit=1000)
    oracle = PackingOracle(packings, weights=w, capacity=cap) if multi else Knapsack(w[0], cap[0])
    assert np.array_equal(oracle.linear_constraints.A_ub, w) and np.array_equal(oracle.linear_constraints.b_ub, cap)
    Y = torch.as_tensor(packings, dtype=DT)
    g = torch.Generator().manual_seed(5)
    loss = ConeAlignedCosineLoss(oracle, projection="exact", reduction="none")
    zero_seen = 0
    for _ in range(40):
        theta = torch.randn(8, 5, generator=g, dtype=DT) * 3
        for y in Y[torch.randint(len(Y), (6,), generator=g)]:
            values = loss(theta, y.expand(8, 5))
            optimal = (theta @ y) >= (theta @ Y.T).max(dim=1).values - 1e-9
            assert bool(optimal[values < 1e-9].all())  # loss 0 ⇒ optimal over the packings
            assert bool((values[~optimal] > 1e-9).all())  # not optimal ⇒ loss > 0
            zero_seen += int((values < 1e-9).sum())
    assert zero_seen > 0  # the implication above was exercised


def test_packing_oracle_constraints_are_checked_and_the_knapsack_problem_carries_them():
    from colayers.oracles import PackingOracle
    from colayers.studies.problems import make_problem

    packings = np.array([[0, 0], [1, 0], [0, 1]])
    assert PackingOracle(packings).linear_constraints is None
    with pytest.raises(ValueError, match="weights and capacity"):
        PackingOracle(packings, weights=np.array([[1.0, 1.0]]))
    with pytest.raises(ValueError, match="exceeds the capacity"):
        PackingOracle(packings, weights=np.array([[1.0, 3.0]]), capacity=np.array([2.0]))
    with pytest.raises(ValueError, match=r"weights must be \(dim, 2\)"):
        PackingOracle(packings, weights=np.array([[1.0, 1.0, 1.0]]), capacity=np.array([2.0]))
    problem = make_problem("knapsack", seed=0, n=4, n_test=2, n_val=0, num_items=10)
    constraints = problem.oracle.linear_constraints
    assert constraints.A_ub.shape == (2, 10) and (constraints.b_ub == 20.0).all()
    method = make_method("cave", problem.oracle, 1, projection="exact")
    assert torch.isfinite(method.loss(problem.theta_train, problem.theta_train, problem.y_train)).item()
