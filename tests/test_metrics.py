"""Metrics: regret, normalized regret, cost ratio, exact match, Hamming and rank distances (maximization)."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers import ArgmaxOneHot, GridDAGShortestPath, TopKSubset
from colayers.metrics import cost_ratio, exact_match, hamming_distance, normalized_regret, rank_distance, regret


def all_paths_3x3(oracle):
    """Every monotone path of the 3×3 grid DAG, as edge indicators (6 paths)."""
    edge_index = {e: i for i, e in enumerate(oracle.edges)}
    paths = []
    for moves in set(itertools.permutations("RRDD")):
        v, y = 0, torch.zeros(oracle.num_edges, dtype=torch.float64)
        for m in moves:
            u = v + 1 if m == "R" else v + 3
            y[edge_index[(v, u)]] = 1.0
            v = u
        paths.append(y)
    return torch.stack(paths)


def test_hand_computed_values():
    oracle = TopKSubset(2)
    theta_true = torch.tensor([[4.0, 3.0, 1.0, 0.0], [1.0, 1.0, 2.0, 5.0]])
    y_pred = torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]])
    # optimal objectives 7 and 7; predicted 5 and 7
    torch.testing.assert_close(regret(y_pred, theta_true, oracle=oracle), torch.tensor([2.0, 0.0]))
    # per instance: regret over the batch's mean |optimum| (7); the mean is PyEPO's ratio of sums
    torch.testing.assert_close(normalized_regret(y_pred, theta_true, oracle=oracle), torch.tensor([2.0 / 7.0, 0.0]))
    torch.testing.assert_close(
        normalized_regret(y_pred, theta_true, oracle=oracle, reduction="mean"), torch.tensor(2.0 / 14.0)
    )
    # a maximization problem: 1 + regret / optimum, so 1 is optimal and larger is worse, as for costs
    torch.testing.assert_close(cost_ratio(y_pred, theta_true, oracle=oracle), torch.tensor([1.0 + 2.0 / 7.0, 1.0]))
    assert exact_match(y_pred, theta_true, oracle=oracle).tolist() == [False, True]
    torch.testing.assert_close(hamming_distance(y_pred, oracle(theta_true), oracle=oracle), torch.tensor([0.5, 0.0]))
    # without an oracle: the objective <theta, y> over event_ndim dimensions, y_target given
    torch.testing.assert_close(regret(y_pred, theta_true, oracle(theta_true), event_ndim=1), torch.tensor([2.0, 0.0]))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_grid_metrics_against_enumeration(seed):
    g = torch.Generator().manual_seed(seed)
    oracle = GridDAGShortestPath(3, 3)
    paths = all_paths_3x3(oracle)
    cost = torch.rand(5, oracle.num_edges, generator=g, dtype=torch.float64) + 0.1
    theta_true = -cost
    y_pred = paths[torch.randint(len(paths), (5,), generator=g)]
    best_cost = (cost @ paths.T).min(-1).values
    pred_cost = (cost * y_pred).sum(-1)
    torch.testing.assert_close(regret(y_pred, theta_true, oracle=oracle), pred_cost - best_cost)
    expected_normalized = (pred_cost - best_cost).sum() / best_cost.sum()
    torch.testing.assert_close(normalized_regret(y_pred, theta_true, oracle=oracle, reduction="mean"),
                               expected_normalized)
    ratio = cost_ratio(y_pred, theta_true, oracle=oracle)
    torch.testing.assert_close(ratio, pred_cost / best_cost)
    assert bool((ratio >= 1 - 1e-12).all())  # positive costs: predicted cost ≥ optimal cost
    expected_match = pred_cost - best_cost <= 1e-6 + 1e-6 * best_cost
    assert exact_match(y_pred, theta_true, oracle=oracle).tolist() == expected_match.tolist()


def test_exact_match_counts_an_equal_cost_alternative():
    oracle = GridDAGShortestPath(2, 2)  # two paths: right-down and down-right
    cost = torch.ones(1, oracle.num_edges)
    other = 1 - oracle(-cost)  # the other path, same cost
    assert exact_match(other, -cost, oracle=oracle).item()
    assert hamming_distance(other, oracle(-cost), oracle=oracle).item() == 1.0


def test_batch_shapes_and_explicit_optimum():
    oracle = ArgmaxOneHot()
    theta_true = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    y_pred = oracle(torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(1)))
    r = regret(y_pred, theta_true, oracle=oracle)
    assert r.shape == (2, 3) and bool((r >= 0).all())
    # the regret is max_i theta_i - <theta, y_pred> for one-hot Y (independent of the oracle)
    torch.testing.assert_close(r, theta_true.max(-1).values - (theta_true * y_pred).sum(-1))
    y_best = torch.nn.functional.one_hot(theta_true.argmax(-1), 4).to(theta_true.dtype)
    torch.testing.assert_close(regret(y_pred, theta_true, y_best, oracle=oracle), r)
    assert normalized_regret(y_pred, theta_true, oracle=oracle).shape == (2, 3)
    assert normalized_regret(y_pred, theta_true, oracle=oracle, reduction="mean").shape == ()
    assert hamming_distance(y_pred, y_pred, oracle=oracle).abs().sum().item() == 0.0


def test_bad_input():
    oracle = ArgmaxOneHot()
    with pytest.raises(ValueError, match="y_pred must have the shape of y_target"):
        regret(torch.zeros(2, 4), torch.randn(2, 3), oracle=oracle)
    with pytest.raises(ValueError, match="y_pred must have the shape of y_target"):
        hamming_distance(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="normalized_regret is undefined"):
        normalized_regret(torch.eye(3)[:2], torch.zeros(2, 3), oracle=oracle)
    with pytest.raises(ValueError, match="event_ndim must be at most the solutions' dimensions, 2; got 3"):
        hamming_distance(torch.zeros(2, 3), torch.zeros(2, 3), event_ndim=3)
    with pytest.raises(ValueError, match="event_ndim must be an integer ≥ 1; got 0"):
        regret(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), event_ndim=0)
    with pytest.raises(ValueError, match="reduction must be one of .*; got 'avg'"):
        exact_match(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), reduction="avg")
    with pytest.raises(ValueError, match="reduction must be one of"):
        rank_distance(torch.zeros(2, 3), torch.zeros(2, 3), reduction=None)
    with pytest.raises(TypeError, match="y_pred must be a torch.Tensor; got ArgmaxOneHot"):
        regret(oracle, torch.zeros(2, 3), torch.zeros(2, 3))  # the removed (oracle, theta, y_pred) order
    with pytest.raises(TypeError, match="positional"):
        cost_ratio(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), oracle)
    with pytest.raises(ValueError, match="needs 0/1 solutions.*rank_distance"):
        hamming_distance(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[3.0, 2.0, 1.0]]))
    with pytest.raises(ValueError, match="y_target is needed"):
        regret(torch.zeros(2, 3), torch.zeros(2, 3), event_ndim=1)


def test_hamming_takes_event_ndim_from_the_oracle_for_matrix_solutions():
    from colayers import BipartiteMatching

    oracle = BipartiteMatching(3)
    a, b = torch.eye(3).expand(2, 3, 3), torch.eye(3)[[1, 0, 2]].expand(2, 3, 3)
    d = hamming_distance(a, b, oracle=oracle)
    assert d.shape == (2,)  # one value per instance, not per row
    torch.testing.assert_close(d, torch.full((2,), 4 / 9))


@settings(max_examples=30, deadline=None)
@given(perm=st.permutations(list(range(1, 7))))
def test_rank_distance_is_a_normalized_footrule_in_0_1(perm):
    ident = torch.arange(1.0, 7.0)
    y = torch.tensor(perm, dtype=torch.float32)
    d = float(rank_distance(y[None], ident[None]))
    assert 0.0 <= d <= 1.0
    assert d == pytest.approx(sum(abs(a - b) for a, b in zip(perm, range(1, 7))) / 18)  # floor(36 / 2)
    assert float(rank_distance(ident.flip(0)[None], ident[None])) == 1.0


def test_metrics_take_any_object_with_objective_and_do_not_import_oracles():
    import ast
    import inspect

    import colayers.metrics as metrics

    class Scores:  # duck-typed: an objective and nothing else
        event_ndim = 1

        def objective(self, theta, y):
            return (theta * y).sum(-1) + 1.0

    y = torch.tensor([[1.0, 0.0]])
    assert regret(y, torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 1.0]]), oracle=Scores()).item() == 1.0
    tree = ast.parse(inspect.getsource(metrics))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(m and "oracles" in m for m in imported), imported


def test_every_reduction_against_hand_computed_values():
    # two instances of a 2x2 matching-like problem (event_ndim = 2), no oracle: objective <theta, y>
    theta = torch.tensor([[[4.0, 1.0], [2.0, 3.0]], [[1.0, 5.0], [2.0, 0.0]]], dtype=torch.float64)
    y_pred = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[0.0, 1.0], [1.0, 0.0]]], dtype=torch.float64)
    y_best = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 1.0], [1.0, 0.0]]], dtype=torch.float64)
    # optimal objectives 7 and 7, predicted 3 and 7: regrets 4 and 0
    args = (y_pred, theta, y_best)
    kw = dict(event_ndim=2)
    expected = {
        regret: [4.0, 0.0],
        normalized_regret: [4.0 / 7.0, 0.0],  # regret over the mean |optimum|, (7 + 7) / 2
        cost_ratio: [1.0 + 4.0 / 7.0, 1.0],
        exact_match: [0.0, 1.0],
    }
    for metric, values in expected.items():
        want = torch.tensor(values, dtype=torch.float64)
        none = metric(*args, **kw)
        assert none.shape == (2,), metric.__name__
        torch.testing.assert_close(none.to(torch.float64), want, msg=metric.__name__)
        torch.testing.assert_close(metric(*args, **kw, reduction="mean"), want.mean(), msg=metric.__name__)
        torch.testing.assert_close(metric(*args, **kw, reduction="sum"), want.sum(), msg=metric.__name__)
    assert exact_match(*args, **kw).dtype == torch.bool
    # Hamming over the 4 entries of each matrix: 4/4 and 0/4
    ham = hamming_distance(y_pred, y_best, event_ndim=2)
    torch.testing.assert_close(ham, torch.tensor([1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(hamming_distance(y_pred, y_best, event_ndim=2, reduction="mean"), ham.mean())
    torch.testing.assert_close(hamming_distance(y_pred, y_best, event_ndim=2, reduction="sum"), ham.sum())
    # rank distance: the footrule per ranking (last dimension, m = 3, floor(9/2) = 4)
    r_pred = torch.tensor([[3.0, 2.0, 1.0], [1.0, 3.0, 2.0]])
    r_true = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    torch.testing.assert_close(rank_distance(r_pred, r_true), torch.tensor([1.0, 0.5]))
    torch.testing.assert_close(rank_distance(r_pred, r_true, reduction="mean"), torch.tensor(0.75))
    torch.testing.assert_close(rank_distance(r_pred, r_true, reduction="sum"), torch.tensor(1.5))
    # two rankings per instance (event_ndim = 2): the mean over the instance's rankings
    torch.testing.assert_close(rank_distance(r_pred[None], r_true[None], event_ndim=2), torch.tensor([0.75]))


def test_hamming_default_is_one_event_dimension_without_an_oracle():
    a = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    b = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    torch.testing.assert_close(hamming_distance(a, b), torch.tensor([[0.0, 1.0]]))  # one value per row
    torch.testing.assert_close(hamming_distance(a, b, event_ndim=2), torch.tensor([0.5]))
    # an explicit event_ndim wins over the oracle's
    from colayers import BipartiteMatching

    torch.testing.assert_close(hamming_distance(a, b, oracle=BipartiteMatching(2), event_ndim=1),
                               torch.tensor([[0.0, 1.0]]))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 7))
def test_mean_normalized_regret_is_pyepo_ratio_of_sums(seed, n):
    g = torch.Generator().manual_seed(seed)
    cost = torch.rand(n, 6, generator=g, dtype=torch.float64) + 0.05  # positive costs, theta = -cost
    oracle = TopKSubset(2)
    y_pred = oracle(torch.randn(n, 6, generator=g, dtype=torch.float64))
    y_best = oracle(-cost)
    # PyEPO's pyepo.metric.regret: sum of (c.y_pred - c.y_best) over the data set, over the sum of |c.y_best|
    pred_cost, best_cost = (cost * y_pred).sum(-1), (cost * y_best).sum(-1)
    pyepo = (pred_cost - best_cost).sum() / best_cost.abs().sum()
    per = normalized_regret(y_pred, -cost, oracle=oracle)
    assert per.shape == (n,)
    torch.testing.assert_close(per, (pred_cost - best_cost) / best_cost.abs().mean())
    torch.testing.assert_close(per.mean(), pyepo)
    torch.testing.assert_close(normalized_regret(y_pred, -cost, oracle=oracle, reduction="mean"), pyepo)
    torch.testing.assert_close(normalized_regret(y_pred, -cost, oracle=oracle, reduction="sum"), n * pyepo)


# -- metrics of predicted scores: unambiguous (tie-aware) regret and SPO error ---------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unambiguous_regret_is_the_worst_tie_by_enumeration(seed):
    """Integer costs ×1.5 on the 3×3 grid tie often; the reference enumerates the 6 paths and their ties."""
    from colayers.metrics import unambiguous_regret

    oracle = GridDAGShortestPath(3, 3)
    paths = all_paths_3x3(oracle)
    g = torch.Generator().manual_seed(seed)
    theta_pred = -1.5 * torch.randint(1, 3, (40, oracle.num_edges), generator=g).double()
    theta_true = -(torch.rand(40, oracle.num_edges, generator=g, dtype=torch.float64) * 2.5 + 0.2)
    pred_values, true_values = theta_pred @ paths.T, theta_true @ paths.T  # (40, 6)
    ties = pred_values >= pred_values.max(-1, keepdim=True).values - 1e-12
    worst = torch.where(ties, true_values, torch.inf).min(-1).values
    reference = true_values.max(-1).values - worst
    ours = unambiguous_regret(theta_pred, theta_true, oracle=oracle)
    torch.testing.assert_close(ours, reference, atol=1e-12, rtol=0)
    realized = regret(oracle(theta_pred), theta_true, oracle=oracle)
    assert bool((ours >= realized - 1e-12).all()) and bool((ours > realized + 1e-3).any())  # ties matter here
    assert (ties.sum(-1) > 1).any()
    torch.testing.assert_close(unambiguous_regret(theta_pred, theta_true, oracle=oracle, reduction="sum"), ours.sum())


def test_unambiguous_regret_without_ties_is_the_regret():
    from colayers.metrics import unambiguous_regret

    g = torch.Generator().manual_seed(5)
    theta_pred, theta_true = torch.randn(30, 6, generator=g), torch.randn(30, 6, generator=g)
    oracle = TopKSubset(3)
    torch.testing.assert_close(
        unambiguous_regret(theta_pred, theta_true, oracle=oracle), regret(oracle(theta_pred), theta_true, oracle=oracle)
    )


def test_unambiguous_regret_says_when_it_cannot_be_sure():
    from colayers.metrics import unambiguous_regret

    oracle = ArgmaxOneHot()
    with pytest.raises(ValueError, match="oracle="):
        unambiguous_regret(torch.zeros(1, 3), torch.ones(1, 3), oracle=None)
    with pytest.raises(ValueError, match="tolerance"):
        unambiguous_regret(torch.zeros(1, 3), torch.ones(1, 3), oracle=oracle, tolerance=0.0)
    # scores of size 1e12 cannot move by 1e-5 / |θ̄|_1 even in float64: refused instead of a lucky tie-break
    with pytest.raises(ValueError, match="too small"):
        unambiguous_regret(torch.full((1, 3), 1e12), torch.ones(1, 3), oracle=oracle)

    class ScaledArgmax:  # solutions 1000 e_i: the tie step can leave the ties by more than the tolerance
        event_ndim = 1

        def __call__(self, theta):
            return 1000.0 * torch.nn.functional.one_hot(theta.argmax(-1), theta.shape[-1]).to(theta.dtype)

    theta_pred = torch.tensor([[1.0, 1.0 - 2e-6]], dtype=torch.float64)
    with pytest.raises(ValueError, match="smaller tolerance"):
        unambiguous_regret(theta_pred, torch.tensor([[1.0, 0.0]], dtype=torch.float64), oracle=ScaledArgmax())


def test_spo_error_is_pyepo_normalized_regret_of_the_decision():
    """PyEPO's SPOError: sum_i (c_i.w*(ĉ_i) - z*(c_i)) / sum_i |z*(c_i)|, with θ̂ = -ĉ, θ̄ = -c (costs ×2.5)."""
    from colayers.metrics import spo_error

    oracle = GridDAGShortestPath(3, 3)
    paths = all_paths_3x3(oracle)
    g = torch.Generator().manual_seed(11)
    c_hat = torch.rand(25, oracle.num_edges, generator=g, dtype=torch.float64) * 2.5 + 0.1
    c = torch.rand(25, oracle.num_edges, generator=g, dtype=torch.float64) * 2.5 + 0.1
    decided = paths[(c_hat @ paths.T).argmin(-1)]
    z = (c @ paths.T).min(-1).values
    reference = ((c * decided).sum(-1) - z).sum() / z.abs().sum()
    torch.testing.assert_close(spo_error(-c_hat, -c, oracle=oracle, reduction="mean"), reference)
    assert spo_error(-c_hat, -c, oracle=oracle).shape == (25,)
    with pytest.raises(ValueError, match="oracle="):
        spo_error(-c_hat, -c, oracle=None)
    with pytest.raises(ValueError, match="theta_pred"):
        spo_error(-c_hat[:, :3], -c, oracle=oracle)
