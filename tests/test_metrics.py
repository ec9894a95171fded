"""Metrics: regret, normalized regret, cost ratio, exact match, Hamming distance (maximization convention)."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers import ArgmaxOneHot, GridDAGShortestPath, TopKSubset
from colayers.metrics import cost_ratio, exact_match, hamming_distance, normalized_regret, regret


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
    torch.testing.assert_close(regret(oracle, theta_true, y_pred), torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(normalized_regret(oracle, theta_true, y_pred), torch.tensor(2.0 / 14.0))
    torch.testing.assert_close(cost_ratio(oracle, theta_true, y_pred), torch.tensor([5.0 / 7.0, 1.0]))
    assert exact_match(oracle, theta_true, y_pred).tolist() == [False, True]
    torch.testing.assert_close(hamming_distance(y_pred, oracle(theta_true)), torch.tensor([0.5, 0.0]))


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
    torch.testing.assert_close(regret(oracle, theta_true, y_pred), pred_cost - best_cost)
    expected_normalized = (pred_cost - best_cost).sum() / best_cost.sum()
    torch.testing.assert_close(normalized_regret(oracle, theta_true, y_pred), expected_normalized)
    ratio = cost_ratio(oracle, theta_true, y_pred)
    torch.testing.assert_close(ratio, pred_cost / best_cost)
    assert bool((ratio >= 1 - 1e-12).all())  # positive costs: predicted cost ≥ optimal cost
    expected_match = pred_cost - best_cost <= 1e-6 + 1e-6 * best_cost
    assert exact_match(oracle, theta_true, y_pred).tolist() == expected_match.tolist()


def test_exact_match_counts_an_equal_cost_alternative():
    oracle = GridDAGShortestPath(2, 2)  # two paths: right-down and down-right
    cost = torch.ones(1, oracle.num_edges)
    other = 1 - oracle(-cost)  # the other path, same cost
    assert exact_match(oracle, -cost, other).item()
    assert hamming_distance(other, oracle(-cost)).item() == 1.0


def test_batch_shapes_and_explicit_optimum():
    oracle = ArgmaxOneHot()
    theta_true = torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(0))
    y_pred = oracle(torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(1)))
    r = regret(oracle, theta_true, y_pred)
    assert r.shape == (2, 3) and bool((r >= 0).all())
    # the regret is max_i theta_i - <theta, y_pred> for one-hot Y (independent of the oracle)
    torch.testing.assert_close(r, theta_true.max(-1).values - (theta_true * y_pred).sum(-1))
    y_best = torch.nn.functional.one_hot(theta_true.argmax(-1), 4).to(theta_true.dtype)
    torch.testing.assert_close(regret(oracle, theta_true, y_pred, y_best), r)
    assert normalized_regret(oracle, theta_true, y_pred).shape == ()
    assert hamming_distance(y_pred, y_pred).abs().sum().item() == 0.0


def test_bad_input():
    oracle = ArgmaxOneHot()
    with pytest.raises(ValueError, match="y_pred must have the shape of y_opt"):
        regret(oracle, torch.randn(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="y_pred must have the shape of y_true"):
        hamming_distance(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="normalized_regret is undefined"):
        normalized_regret(oracle, torch.zeros(2, 3), torch.eye(3)[:2])
