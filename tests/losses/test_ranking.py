"""Learning-to-rank losses over a solution pool: hand-computed values and gradients, pool growth, checks."""

import math

import pytest
import torch

from colayers import (
    ArgmaxOneHot,
    ListwiseRankingLoss,
    PairwiseRankingLoss,
    PointwiseRankingLoss,
    SolutionPool,
    TopKSubset,
)

DT = torch.float64
# pool of 2-subsets of 4 items (g = identity, multi-hot members): w0 = {0,1}, w1 = {0,2}, w2 = {2,3}
POOL = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0]], dtype=DT)
THETA = [0.5, -1.0, 2.0, 0.25]
THETA_TRUE = [3.0, 1.0, -2.0, 0.5]
# objectives <θ, w> written out by hand: under θ: w0 = -0.5, w1 = 2.5, w2 = 2.25; under θ̄: 4, 1, -1.5
S = [-0.5, 2.5, 2.25]
S_TRUE = [4.0, 1.0, -1.5]


def _pool(solve_ratio=0.0):
    return SolutionPool(TopKSubset(2), POOL.clone(), solve_ratio=solve_ratio)


def _theta():
    return torch.tensor([THETA], dtype=DT, requires_grad=True), torch.tensor([THETA_TRUE], dtype=DT)


def _softmax(v, tau):
    e = [math.exp(x / tau) for x in v]
    return [x / sum(e) for x in e]


def test_the_objectives_written_by_hand_are_the_pools():
    theta, theta_true = _theta()
    pool = _pool()  # the pool stores its members sorted: find each of ours
    order = [next(i for i in range(3) if torch.equal(pool.solutions[i], w)) for w in POOL]
    assert pool.scores(theta.detach())[0, order].tolist() == S
    assert pool.scores(theta_true)[0, order].tolist() == S_TRUE


@pytest.mark.parametrize("tau", [0.7, 2.5])
def test_listwise_value_and_gradient_by_hand(tau):
    theta, theta_true = _theta()
    p, q = _softmax(S, tau), _softmax(S_TRUE, tau)
    expected = -sum(qi * math.log(pi) for pi, qi in zip(p, q))
    grad = [sum((p[w] - q[w]) * POOL[w, i].item() for w in range(3)) / tau for i in range(4)]
    value = ListwiseRankingLoss(_pool(), temperature=tau)(theta, theta_true)
    value.backward()
    assert value.item() == pytest.approx(expected, abs=1e-12)
    torch.testing.assert_close(theta.grad[0], torch.tensor(grad, dtype=DT), atol=1e-12, rtol=0)


@pytest.mark.parametrize("margin", [0.0, 0.4])
def test_pairwise_value_and_gradient_by_hand(margin):
    theta, theta_true = _theta()
    # true best: w0 (4 > 1 > -1.5); hinges [m + s_w - s_w0]_+ for w1, w2: [m + 3]_+, [m + 2.75]_+, both active
    expected = ((margin + 3.0) + (margin + 2.75)) / 2
    grad = ((POOL[1] - POOL[0]) + (POOL[2] - POOL[0])) / 2
    value = PairwiseRankingLoss(_pool(), margin=margin)(theta, theta_true)
    value.backward()
    assert value.item() == pytest.approx(expected, abs=1e-12)
    torch.testing.assert_close(theta.grad[0], grad, atol=1e-12, rtol=0)


def test_pairwise_inactive_hinge_and_zero_at_a_good_ranking():
    theta_true = torch.tensor([THETA_TRUE], dtype=DT)
    # θ ranks w0 first by 0.5 over w1 and by 3.5 over w2: with margin 2 only w1's hinge is active: (2 - 0.5) / 2
    theta = torch.tensor([[2.0, 1.0, 0.5, -1.0]], dtype=DT, requires_grad=True)  # s = 3, 2.5, -0.5
    value = PairwiseRankingLoss(_pool(), margin=2.0)(theta, theta_true)
    value.backward()
    assert value.item() == pytest.approx((2.0 - 0.5) / 2)
    torch.testing.assert_close(theta.grad[0], (POOL[1] - POOL[0]) / 2)
    assert PairwiseRankingLoss(_pool())(theta.detach(), theta_true).item() == 0.0


def test_pointwise_value_and_gradient_by_hand():
    theta, theta_true = _theta()
    r = [a - b for a, b in zip(S, S_TRUE)]  # -4.5, 1.5, 3.75
    expected = sum(x * x for x in r) / 3
    grad = sum(2 * r[w] * POOL[w] for w in range(3)) / 3
    value = PointwiseRankingLoss(_pool())(theta, theta_true)
    value.backward()
    assert value.item() == pytest.approx(expected, abs=1e-12)
    torch.testing.assert_close(theta.grad[0], grad, atol=1e-12, rtol=0)
    assert PointwiseRankingLoss(_pool())(theta_true, theta_true).item() == 0.0


@pytest.mark.parametrize(
    "make", [lambda p: ListwiseRankingLoss(p, 1.7), lambda p: PairwiseRankingLoss(p, 0.3), PointwiseRankingLoss]
)
def test_gradients_equal_finite_differences(make):
    theta_true = torch.randn(3, 4, generator=torch.Generator().manual_seed(1), dtype=DT)
    theta = torch.randn(3, 4, generator=torch.Generator().manual_seed(2), dtype=DT, requires_grad=True)
    loss = make(_pool())
    assert torch.autograd.gradcheck(lambda t: loss(t, theta_true, None), (theta,))


@pytest.mark.parametrize("cls", [ListwiseRankingLoss, PairwiseRankingLoss, PointwiseRankingLoss])
def test_batch_equals_a_loop_and_reductions(cls):
    gen = torch.Generator().manual_seed(3)
    theta, theta_true = torch.randn(5, 4, generator=gen, dtype=DT), torch.randn(5, 4, generator=gen, dtype=DT)
    batched = cls(_pool(), reduction="none")(theta, theta_true)
    loop = torch.stack([cls(_pool(), reduction="none")(theta[i], theta_true[i]) for i in range(5)])
    torch.testing.assert_close(batched, loop)
    assert cls(_pool(), reduction="sum")(theta, theta_true).item() == pytest.approx(batched.sum().item())
    assert cls(_pool())(theta, theta_true).item() == pytest.approx(batched.mean().item())


def test_the_pool_grows_with_targets_and_solutions():
    """Solve ratio 1: the oracle's solution at θ joins the pool before the loss is computed (as PyEPO's)."""
    pool = SolutionPool(ArgmaxOneHot(), torch.tensor([[1.0, 0.0, 0.0]], dtype=DT), solve_ratio=1.0)
    loss = PointwiseRankingLoss(pool)
    theta = torch.tensor([[0.0, 2.0, 0.0]], dtype=DT)  # f(θ) = e1
    theta_true = torch.tensor([[1.0, 0.5, 3.0]], dtype=DT)
    y_target = torch.tensor([[0.0, 0.0, 1.0]], dtype=DT)  # f(θ̄) = e2
    value = loss(theta, theta_true, y_target)
    assert len(pool) == 3 and pool.oracle_calls == 1
    assert value.item() == pytest.approx(((0 - 1.0) ** 2 + (2 - 0.5) ** 2 + (0 - 3.0) ** 2) / 3)


def test_solve_ratio_zero_keeps_the_pool_and_add_targets_false_leaves_it():
    pool = SolutionPool(ArgmaxOneHot(), torch.eye(3, dtype=DT)[:1], solve_ratio=0.0)
    loss = ListwiseRankingLoss(pool, add_targets=False)
    loss(torch.tensor([[0.0, 2.0, 0.0]], dtype=DT), torch.zeros(1, 3, dtype=DT), torch.eye(3, dtype=DT)[2:])
    assert len(pool) == 1 and pool.oracle_calls == 0


def test_bad_input_is_refused_by_name():
    with pytest.raises(TypeError, match="pool must be a colayers SolutionPool"):
        ListwiseRankingLoss(ArgmaxOneHot())
    with pytest.raises(ValueError, match="temperature must be > 0"):
        ListwiseRankingLoss(_pool(), temperature=0.0)
    with pytest.raises(ValueError, match="margin must be ≥ 0"):
        PairwiseRankingLoss(_pool(), margin=-1.0)
    with pytest.raises(TypeError, match="add_targets must be a bool"):
        PointwiseRankingLoss(_pool(), add_targets=1)
    theta = torch.zeros(2, 4, dtype=DT)
    with pytest.raises(ValueError, match="theta_true must have the shape of theta"):
        PointwiseRankingLoss(_pool())(theta, torch.zeros(2, 3, dtype=DT))
    with pytest.raises(ValueError, match="theta_true must be finite"):
        PointwiseRankingLoss(_pool())(theta, torch.full((2, 4), math.nan, dtype=DT))
    with pytest.raises(ValueError, match="y_target must be a solution in Y"):
        PointwiseRankingLoss(_pool())(theta, theta, torch.ones(2, 4, dtype=DT))
