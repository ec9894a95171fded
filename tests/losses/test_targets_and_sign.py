"""Targets checked by Oracle.contains, the sign check of FY / SSVM / SPO+, empty batches."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from colayers import (
    ArgmaxOneHot,
    BipartiteMatching,
    CountingOracle,
    ExperienceLoss,
    FenchelYoungLoss,
    GridDAGShortestPath,
    GridVertexShortestPath,
    ImitationLoss,
    Knapsack,
    LinearProgram,
    MAPContrastiveLoss,
    NCELoss,
    Oracle,
    PerturbedAdditive,
    PerturbedMultiplicative,
    Ranking,
    RegretLoss,
    SoftArgmax,
    SolutionPool,
    SolverOracle,
    SpanningTree,
    SparseArgmax,
    SPOPlusLoss,
    StructuredSVMLoss,
    TopKSubset,
)
from colayers.losses import _common
from colayers.losses import base as loss_base

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
seeds = st.integers(0, 2**32 - 1)


# -- targets: every oracle's own solutions are accepted, invalid ones refused by name ------------------------


def test_spanning_tree_of_k5_targets_are_accepted_by_every_loss():
    # the edge list of a spanning-tree oracle is not a DAG: its solutions must not be checked as paths
    oracle = SpanningTree(5, list(itertools.combinations(range(5), 2)))
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(6, 10, generator=g, dtype=torch.float64, requires_grad=True)
    theta_true = torch.randn(6, 10, generator=g, dtype=torch.float64)
    y = oracle(theta_true)
    spo = SPOPlusLoss(oracle, reduction="none")(theta, theta_true, y)
    fy = FenchelYoungLoss(PerturbedAdditive(oracle, epsilon=0.5, num_samples=3, seed=0), reduction="none")(theta, y)
    ssvm = StructuredSVMLoss(oracle, reduction="none")(theta, y)
    for value in (spo, fy, ssvm):
        assert value.shape == (6,) and bool((value >= 0).all())
    (spo.sum() + fy.sum() + ssvm.sum()).backward()
    assert torch.isfinite(theta.grad).all()
    cycle = torch.zeros(10, dtype=torch.float64)
    cycle[[0, 1, 4, 9]] = 1.0  # edges (0,1) (0,2) (1,2) (3,4): 4 edges, a triangle, vertices 3-4 cut off
    with pytest.raises(ValueError, match=r"y_target must be a solution in Y of SpanningTree\(num_nodes=5"):
        SPOPlusLoss(oracle)(theta[0], theta_true[0], cycle)


def test_invalid_dag_paths_are_refused_with_a_clear_message():
    oracle = GridDAGShortestPath(3, 3)
    theta = torch.randn(2, 12, generator=torch.Generator().manual_seed(1))
    path = oracle(theta)
    broken = path.clone()
    broken[1] = 0.0
    broken[1, [0, 1, 9]] = 1.0  # (0,1) (1,2) then (5,8): the edge (2,5) is missing
    message = (
        r"y_target must be a solution in Y of GridDAGShortestPath\(height=3, width=3\) "
        r"\(oracle.contains\(y_target\) is False\); 1 of 2 instance\(s\) are not, first at batch index \(1,\)"
    )
    for call in (
        lambda: SPOPlusLoss(oracle)(theta, theta, broken),
        lambda: StructuredSVMLoss(oracle)(theta, broken),
        lambda: FenchelYoungLoss(PerturbedAdditive(oracle, num_samples=2))(theta, broken),
    ):
        with pytest.raises(ValueError, match=message):
            call()
    assert SPOPlusLoss(oracle, allow_relaxed_targets=True)(theta, theta, broken).ndim == 0


def test_invalid_rankings_are_refused_with_a_clear_message():
    oracle = Ranking()
    theta = torch.randn(3, 4, generator=torch.Generator().manual_seed(2))
    ranks = oracle(theta)
    ranks[2] = torch.tensor([1.0, 2.0, 2.0, 4.0])  # a repeated rank
    for call in (
        lambda: SPOPlusLoss(oracle)(theta, theta, ranks),
        lambda: FenchelYoungLoss(PerturbedAdditive(oracle, num_samples=2))(theta, ranks),
    ):
        with pytest.raises(ValueError, match=r"y_target must be a solution in Y of Ranking\(\).*batch index \(2,\)"):
            call()


def test_a_users_contains_is_used_and_unknown_membership_is_not_checked():
    class EvenOnly(Oracle):  # a user's oracle: one-hot argmax over even indices, with its own contains
        def solve(self, theta):
            masked = theta.clone()
            masked[:, 1::2] = -float("inf")
            return torch.zeros_like(theta).scatter_(-1, masked.argmax(-1, keepdim=True), 1.0)

        def contains(self, y):
            return ArgmaxOneHot().contains(y) & (y[..., 1::2] == 0).all(-1)

    theta = torch.randn(4, 6, generator=torch.Generator().manual_seed(3))
    oracle = EvenOnly()
    assert float(SPOPlusLoss(oracle)(theta, theta, oracle(theta))) == 0.0
    odd = torch.zeros(4, 6)
    odd[:, 1] = 1.0
    with pytest.raises(ValueError, match="y_target must be a solution in Y of EvenOnly"):
        SPOPlusLoss(oracle)(theta, theta, odd)
    unknown = SolverOracle(lambda t: (t == t.max()).astype(float), event_shape=(6,))
    assert unknown.contains(odd) is None
    assert SPOPlusLoss(unknown)(theta, theta, odd).ndim == 0  # membership unknown: accepted


def _own_solutions(name):
    g = torch.Generator().manual_seed(0)
    make = {
        "topk": (lambda: TopKSubset(2), (6,)),
        "ranking": (lambda: Ranking(), (5,)),
        "dag": (lambda: GridDAGShortestPath(3, 4), (17,)),
        "vertex": (lambda: GridVertexShortestPath(3, 4, min_cost=0.1), (3, 4)),
        "matching": (lambda: BipartiteMatching(3), (3, 3)),
        "tree": (lambda: SpanningTree(4, list(itertools.combinations(range(4), 2))), (6,)),
        "knapsack": (lambda: Knapsack([1.5, 2.0, 0.7, 1.1], 2.5), (4,)),
        "lp": (lambda: LinearProgram(4, A_ub=[[1.0, 2.0, 1.0, 1.0]], b_ub=[2.0], bounds=(0, 1)), (4,)),
    }[name]
    return make[0](), make[1], g


@settings(max_examples=8, deadline=None)
@given(seed=seeds)
@pytest.mark.parametrize("name", ["topk", "ranking", "dag", "vertex", "matching", "tree", "knapsack", "lp"])
def test_every_oracles_own_solutions_pass_spo_and_fy_validation(name, seed):
    oracle, event, _ = _own_solutions(name)
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(3, *event, generator=g, dtype=torch.float64)
    theta_true = -torch.rand(3, *event, generator=g, dtype=torch.float64) - 0.2  # negative: the tile oracle's domain
    y = oracle(theta_true)
    assert SPOPlusLoss(oracle, reduction="none")(theta, theta_true, y).shape == (3,)
    fy = FenchelYoungLoss(PerturbedMultiplicative(oracle, epsilon=0.3, num_samples=2, seed=seed), reduction="none")
    assert bool((fy(theta_true, y) >= 0).all())


# -- the sign check ----------------------------------------------------------------------------------------


def _assignment_minimizing(theta):
    rows, cols = linear_sum_assignment(theta)  # maximize=False: the mistake under test
    y = np.zeros(theta.shape)
    y[rows, cols] = 1.0
    return y


def test_a_minimizing_matching_solver_is_caught_by_every_sign_checked_loss():
    # what scipy's linear_sum_assignment without maximize=True did silently: FY −7.1, −8.7, −10.7, −13.0 ...
    oracle = SolverOracle(_assignment_minimizing, event_shape=(4, 4))
    g = torch.Generator().manual_seed(0)
    theta = 3 * torch.randn(8, 4, 4, generator=g, dtype=torch.float64)
    theta_true = 3 * torch.randn(8, 4, 4, generator=g, dtype=torch.float64)
    y = BipartiteMatching(4)(theta_true)
    cause = r"minimizing oracle.*linear_sum_assignment needs maximize=True.*swapped arguments"
    with pytest.raises(ValueError, match=r"FenchelYoungLoss is negative: .*" + cause):
        FenchelYoungLoss(PerturbedAdditive(oracle, epsilon=0.5, num_samples=4, seed=0))(theta, y)
    with pytest.raises(ValueError, match=r"SPOPlusLoss is negative: .*" + cause):
        SPOPlusLoss(oracle)(theta, theta_true)  # its own y_target = the minimizer at θ̄
    with pytest.raises(ValueError, match=r"StructuredSVMLoss is negative: .*" + cause):
        StructuredSVMLoss(oracle)(theta, y)
    # with validation off the value is computed, negative, unchecked; the maximizing oracle is ≥ 0
    quiet = FenchelYoungLoss(PerturbedAdditive(oracle, epsilon=0.5, num_samples=4, seed=0), validate_args=False)
    assert float(quiet(theta, y)) < -1.0
    fixed = FenchelYoungLoss(PerturbedAdditive(BipartiteMatching(4), epsilon=0.5, num_samples=4, seed=0))
    assert float(fixed(theta, y)) >= 0.0


def test_a_minimizing_oracle_does_not_train_silently_with_plain_sgd():
    # the reported failure: FY with the minimizing solver falls without bound; validation stops it at once
    oracle = SolverOracle(_assignment_minimizing, event_shape=(3, 3))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 5, generator=g, dtype=torch.float64)
    y = BipartiteMatching(3)(torch.randn(16, 3, 3, generator=g, dtype=torch.float64))
    model = torch.nn.Linear(5, 9, dtype=torch.float64)
    torch.nn.init.normal_(model.weight, generator=g)
    layer = PerturbedAdditive(oracle, epsilon=0.2, num_samples=4, seed=0)
    unchecked = FenchelYoungLoss(layer, validate_args=False)
    values = []
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(4):
        opt.zero_grad()
        value = unchecked(model(x).view(16, 3, 3), y)
        value.backward()
        opt.step()
        values.append(float(value.detach()))
    assert values[-1] < values[0] < 0  # negative and falling: what the check exists for
    with pytest.raises(ValueError, match="FenchelYoungLoss is negative"):
        FenchelYoungLoss(layer)(model(x).view(16, 3, 3), y)


def test_swapped_arguments_are_caught_where_membership_is_unknown():
    unknown = SolverOracle(lambda t: (np.arange(t.size) == np.argmax(t)).astype(float), event_shape=(5,))
    g = torch.Generator().manual_seed(2)
    theta = 3 + torch.rand(4, 5, generator=g, dtype=torch.float64)  # scores well above 1
    y = ArgmaxOneHot()(theta)
    loss = FenchelYoungLoss(PerturbedAdditive(unknown, epsilon=0.1, num_samples=3, seed=0))
    assert float(loss(theta, y)) >= 0
    with pytest.raises(ValueError, match="FenchelYoungLoss is negative.*swapped arguments"):
        loss(y, theta)  # max_i (y + εZ)_i ≈ 1 is far below <y + εZ, θ> ≥ 3


def test_oracles_that_solve_a_modified_problem_skip_the_sign_check():
    # GridVertexShortestPath(min_cost=c) takes the argmax at min(θ, −c) and the objective at θ: SPO+ may then
    # be negative without any mistake, so the check must not fire; the exact oracle keeps it
    clamped, exact = GridVertexShortestPath(3, 3, min_cost=0.5), GridVertexShortestPath(3, 3)
    assert not clamped.maximizes_objective and exact.maximizes_objective
    theta_true = torch.full((1, 3, 3), -2.0)
    theta_true[0, 0, 1] = theta_true[0, 1, 2] = -0.5  # ȳ: (0,0) (0,1) (1,2) (2,2), cost 5 < 6 (the diagonal)
    theta = torch.full((1, 3, 3), -0.3)
    theta[0, 0, 1] = theta[0, 1, 2] = 5.0  # θ_2 = 2θ − θ̄ > 0 everywhere: every tile clamped to cost 0.5
    value = SPOPlusLoss(clamped)(theta, theta_true)  # y_2 = the diagonal: 3·1.4 − (1.4 + 10.5 + 10.5 + 1.4)
    torch.testing.assert_close(value, torch.tensor(-19.6))
    assert CountingOracle(clamped).maximizes_objective is False
    pool = SolutionPool(exact, solve_ratio=0.5)
    assert not pool.maximizes_objective and SolutionPool(exact).maximizes_objective


def test_rounding_never_trips_the_sign_check():
    # values that are 0 in exact arithmetic (θ = θ̄ for SPO+, μ = ȳ for SparseArgmax) at large magnitudes
    g = torch.Generator().manual_seed(4)
    for dtype in (torch.float32, torch.float64):
        theta = 1e4 * torch.randn(64, 7, generator=g, dtype=dtype)
        assert bool((SPOPlusLoss(TopKSubset(3), reduction="none")(theta, theta) >= 0).all())
        y = ArgmaxOneHot()(theta)
        assert SparseArgmax()(theta).eq(y).all()
        FenchelYoungLoss(SparseArgmax(), reduction="none")(theta, y)  # ≈ 0 up to rounding: no error


def test_sign_check_is_skipped_without_validation(monkeypatch):
    calls = []
    # every loss runs the sign check through the one frame, StructuredLoss.finish
    monkeypatch.setattr(_common, "check_nonnegative", lambda *a: calls.append(a))
    monkeypatch.setattr(loss_base, "check_nonnegative", lambda *a: calls.append(a))
    theta = torch.randn(3, 5, generator=torch.Generator().manual_seed(5))
    y = ArgmaxOneHot()(theta)
    losses = [
        FenchelYoungLoss(SoftArgmax(), validate_args=False),
        FenchelYoungLoss(PerturbedAdditive(ArgmaxOneHot(), num_samples=2, seed=0), validate_args=False),
    ]
    for loss in losses:
        loss(theta, y)
    SPOPlusLoss(ArgmaxOneHot(), validate_args=False)(theta, theta, y)
    StructuredSVMLoss(ArgmaxOneHot(), validate_args=False)(theta, y)
    assert calls == []
    FenchelYoungLoss(SoftArgmax())(theta, y)
    SPOPlusLoss(ArgmaxOneHot())(theta, theta, y)
    StructuredSVMLoss(ArgmaxOneHot())(theta, y)
    assert len(calls) == 3


@CUDA
@pytest.mark.cuda
def test_no_host_synchronisation_without_validation_on_cuda():
    theta = torch.randn(32, 6, device="cuda")
    y = TopKSubset(2)(torch.randn(32, 6, device="cuda"))
    layer = PerturbedAdditive(TopKSubset(2, validate_args=False), num_samples=3, validate_args=False)
    losses = [
        lambda: FenchelYoungLoss(layer, validate_args=False)(theta, y, generator=torch.Generator("cuda")),
        lambda: SPOPlusLoss(TopKSubset(2, validate_args=False), validate_args=False)(theta, theta, y),
        lambda: StructuredSVMLoss(TopKSubset(2, validate_args=False), validate_args=False)(theta, y),
    ]
    for loss in losses:
        loss()  # warm-up (allocations, lazy tables)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            loss()
        finally:
            torch.cuda.set_sync_debug_mode("default")


# -- empty batches: every loss returns an empty / zero result; 'mean' is NaN as in torch ---------------------


def _empty_cases():
    oracle = TopKSubset(2)
    pool = SolutionPool(oracle, torch.tensor([[1.0, 1.0, 0.0, 0.0, 0.0]]), solve_ratio=0.0)
    return {
        "fy-softargmax": lambda r: lambda t, y: FenchelYoungLoss(SoftArgmax(), r)(t, y),
        "fy-sparseargmax": lambda r: lambda t, y: FenchelYoungLoss(SparseArgmax(), r)(t, y),
        "fy-perturbed": lambda r: lambda t, y: FenchelYoungLoss(PerturbedAdditive(oracle, num_samples=3), r)(t, y),
        "spo+": lambda r: lambda t, y: SPOPlusLoss(oracle, reduction=r)(t, t, y),
        "ssvm": lambda r: lambda t, y: StructuredSVMLoss(oracle, reduction=r)(t, y),
        "imitation": lambda r: lambda t, y: ImitationLoss.structured_svm(oracle, reduction=r)(t, y),
        "regret": lambda r: lambda t, y: RegretLoss(PerturbedAdditive(oracle, num_samples=3), r)(t, t),
        "experience": lambda r: lambda t, y: ExperienceLoss(
            PerturbedAdditive(oracle, num_samples=3), lambda a, c: (a * c).sum(-1), r
        )(t, t),
        "nce": lambda r: lambda t, y: NCELoss(pool, r)(t, y),
        "map-contrastive": lambda r: lambda t, y: MAPContrastiveLoss(pool, r)(t, y),
    }


@pytest.mark.parametrize("name", sorted(_empty_cases()))
def test_empty_batches(name):
    make = _empty_cases()[name]
    theta = torch.zeros(0, 5, requires_grad=True)
    y = torch.zeros(0, 5)
    none = make("none")(theta, y)
    assert none.shape == (0,)
    total = make("sum")(theta, y)
    assert total.shape == () and float(total) == 0.0
    total.backward()
    assert theta.grad.shape == (0, 5)
    mean = make("mean")(theta, y)
    assert mean.shape == () and bool(torch.isnan(mean))  # torch's convention: the mean of nothing is NaN
    assert bool(torch.isnan(torch.nn.functional.mse_loss(torch.zeros(0), torch.zeros(0))))
