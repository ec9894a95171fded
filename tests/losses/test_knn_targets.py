"""kNN-robust targets: against a brute-force loop, by hand, and bad input refused by name."""

import math

import pytest
import torch

from colayers import ArgmaxOneHot, GridDAGShortestPath, TopKSubset, knn_targets

DT = torch.float64


def _brute_force(x, theta_true, oracle, k, weight):
    """One instance and one neighbour at a time: sort the distances in Python, solve each smoothed score alone."""
    n = x.shape[0]
    sols, scores, objs = [], [], []
    for i in range(n):
        d = [(math.dist(x[i].tolist(), x[j].tolist()), j) for j in range(n) if j != i]
        nbrs = [j for _, j in sorted(d)[:k]]
        ys, ts, os = [], [], []
        for j in nbrs:
            t = weight * theta_true[i] + (1 - weight) * theta_true[j]
            y = oracle(t)
            ys.append(y)
            ts.append(t)
            os.append(float((t * y).sum()))
        sols.append(torch.stack(ys).mean(0))
        scores.append(torch.stack(ts).mean(0))
        objs.append(sum(os) / k)
    return torch.stack(sols), torch.stack(scores), torch.tensor(objs, dtype=DT)


@pytest.mark.parametrize(
    "oracle, shape", [(TopKSubset(3), (7,)), (GridDAGShortestPath(3, 3), (12,)), (ArgmaxOneHot(), (5,))]
)
@pytest.mark.parametrize("k, weight", [(1, 0.5), (4, 0.3), (6, 0.0)])
def test_equal_a_brute_force_loop(oracle, shape, k, weight):
    gen = torch.Generator().manual_seed(k)
    x = torch.randn(11, 4, generator=gen, dtype=DT)
    theta_true = -torch.rand((11, *shape), generator=gen, dtype=DT) * 3 - 0.1
    got = knn_targets(x, theta_true, oracle, k=k, weight=weight)
    ref = _brute_force(x, theta_true, oracle, k, weight)
    for a, b in zip(got, ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)
    assert got.solutions.dtype == DT and got.objectives.shape == (11,)


def test_by_hand_on_three_points():
    # x = 0, 1, 3: neighbours (k = 2, all but self) and ω = 0.25; argmax of each smoothed score
    x = torch.tensor([[0.0], [1.0], [3.0]], dtype=DT)
    theta = torch.tensor([[1.0, 0.0], [0.0, 2.0], [4.0, 0.0]], dtype=DT)
    got = knn_targets(x, theta, ArgmaxOneHot(), k=2, weight=0.25)
    # instance 0: with 1 → [.25, 1.5] → e1; with 2 → [3.25, 0] → e0; mean [.5, .5]
    # instance 1: with 0 → [.75, .5] → e0; with 2 → [3, .5] → e0; mean [1, 0]
    # instance 2: with 0 → [1.75, 0] → e0; with 1 → [1, 1.5] → e1; mean [.5, .5]
    torch.testing.assert_close(got.solutions, torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.5, 0.5]], dtype=DT))
    torch.testing.assert_close(got.scores[0], torch.tensor([0.25 + 0.75 * 2.0, 0.75 * 1.0], dtype=DT))
    objectives = torch.tensor([(1.5 + 3.25) / 2, (0.75 + 3.0) / 2, (1.75 + 1.5) / 2], dtype=DT)
    torch.testing.assert_close(got.objectives, objectives)


def test_weight_one_gives_the_plain_solutions():
    gen = torch.Generator().manual_seed(0)
    x, theta = torch.randn(6, 2, generator=gen), torch.randn(6, 5, generator=gen)
    got = knn_targets(x, theta, TopKSubset(2), k=3, weight=1.0)
    torch.testing.assert_close(got.solutions, TopKSubset(2)(theta))
    torch.testing.assert_close(got.scores, theta)


def test_bad_input_is_refused_by_name():
    x, theta, o = torch.randn(4, 2), torch.randn(4, 3), ArgmaxOneHot()
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 3\]; got 4"):
        knn_targets(x, theta, o, k=4)
    with pytest.raises(ValueError, match="k must be an integer ≥ 1"):
        knn_targets(x, theta, o, k=0)
    with pytest.raises(ValueError, match=r"weight must be in \[0, 1\]; got 1.5"):
        knn_targets(x, theta, o, k=1, weight=1.5)
    with pytest.raises(TypeError, match="weight must be a real number"):
        knn_targets(x, theta, o, k=1, weight=True)
    with pytest.raises(ValueError, match="theta_true must have one row per row of x"):
        knn_targets(x, theta[:3], o, k=1)
    with pytest.raises(ValueError, match=r"x must be a tensor of features \(n, d\)"):
        knn_targets(x[:, 0], theta, o, k=1)
    with pytest.raises(ValueError, match="x must be finite"):
        knn_targets(torch.full((4, 2), math.nan), theta, o, k=1)
    with pytest.raises(TypeError, match="oracle must be a colayers Oracle"):
        knn_targets(x, theta, "argmax", k=1)
    with pytest.raises(TypeError, match="x must have a floating-point dtype"):
        knn_targets(torch.zeros(4, 2, dtype=torch.long), theta, o, k=1)
