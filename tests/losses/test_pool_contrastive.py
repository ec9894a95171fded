"""SolutionPool (dedup, growth, solve ratio) and the contrastive losses over it."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers import (
    ArgmaxOneHot,
    GridDAGShortestPath,
    MAPContrastiveLoss,
    NCELoss,
    SolutionPool,
    SPOPlusLoss,
    TopKSubset,
)
from colayers.oracles import Oracle


class CountingOracle(Oracle):
    """Wraps an oracle and counts the batches it solves."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner
        self.event_ndim = inner.event_ndim
        self.event_shape = inner.event_shape
        self.calls = 0

    def solve(self, theta):
        self.calls += 1
        return self.inner.solve(theta)


def test_deduplicates_and_grows():
    pool = SolutionPool(TopKSubset(2))
    assert len(pool) == 0
    y = TopKSubset(2)(torch.tensor([[3.0, 2.0, 0.0, 0.0], [3.0, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, 2.0]]))
    pool.add(y)
    assert len(pool) == 2
    pool.add(y[:1])  # already there
    assert len(pool) == 2
    pool.add(torch.tensor([[1.0, 0.0, 1.0, 0.0]]))
    assert len(pool) == 3
    # rows are distinct and each is one of the added solutions
    assert torch.unique(pool.solutions, dim=0).shape[0] == 3
    # growth through calls: every new oracle solution joins the pool
    pool(torch.tensor([[0.0, 5.0, 0.0, 5.0]]))
    assert len(pool) == 4
    with pytest.raises(ValueError, match="solutions must end with the pool's solution shape"):
        pool.add(torch.zeros(2, 5))


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_best_is_the_argmax_over_pool_members(seed):
    g = torch.Generator().manual_seed(seed)
    oracle = GridDAGShortestPath(3, 3)
    pool = SolutionPool(oracle, oracle(torch.randn(10, oracle.num_edges, generator=g)), solve_ratio=0.0)
    theta = torch.randn(7, oracle.num_edges, generator=g, dtype=torch.float64)
    best = pool(theta)
    members = pool.solutions.double()
    # the objective of the answer equals the best objective over members, row by row (a loop, for reference)
    for i in range(7):
        assert (theta[i] * best[i]).sum().item() == pytest.approx((members @ theta[i]).max().item())
        assert bool(((members == best[i]).all(-1)).any())


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.75, 1.0])
def test_solve_ratio_controls_oracle_calls(ratio):
    counting = CountingOracle(ArgmaxOneHot(5))
    pool = SolutionPool(counting, torch.eye(5), solve_ratio=ratio, generator=torch.Generator().manual_seed(0))
    batches = 1000
    g = torch.Generator().manual_seed(1)
    for _ in range(batches):
        pool(torch.randn(8, 5, generator=g))
    # Binomial(1000, r): sd ≤ √(1000/4) ≈ 15.8; 4 sd ≈ 64 calls
    assert abs(counting.calls - ratio * batches) <= 64
    assert counting.calls == pool.oracle_calls and pool.oracle_calls + pool.pool_calls == batches
    if ratio == 0.0:
        assert counting.calls == 0


def test_seeded_pool_replays_the_same_draws():
    def run(seed):
        counting = CountingOracle(ArgmaxOneHot(3))
        pool = SolutionPool(counting, torch.eye(3), solve_ratio=0.5, seed=seed)
        calls = []
        for _ in range(30):
            pool(torch.zeros(1, 3))
            calls.append(counting.calls)
        return calls

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_empty_pool_calls_the_oracle_and_pool_stands_in_for_spo_plus():
    counting = CountingOracle(TopKSubset(2, 6))
    pool = SolutionPool(counting, solve_ratio=0.0)
    theta = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    pool(theta)  # empty pool: must solve
    assert counting.calls == 1 and len(pool) >= 1
    # with every solution of Y in the pool, the pool answers exactly like the oracle
    full = SolutionPool(TopKSubset(2, 6), solve_ratio=0.0)
    full.add(TopKSubset(2, 6)(torch.randn(3000, 6, generator=torch.Generator().manual_seed(1))))
    assert len(full) == 15
    theta_true = torch.randn(4, 6, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(SPOPlusLoss(full)(theta, theta_true), SPOPlusLoss(TopKSubset(2))(theta, theta_true))


def test_bad_arguments():
    with pytest.raises(ValueError, match="solve_ratio must be in"):
        SolutionPool(ArgmaxOneHot(), solve_ratio=1.5)
    with pytest.raises(TypeError, match="oracle must be a colayers Oracle"):
        SolutionPool("argmax")
    with pytest.raises(ValueError, match="pool is empty"):
        SolutionPool(ArgmaxOneHot()).best(torch.zeros(3))
    with pytest.raises(TypeError, match="pool must be a colayers SolutionPool"):
        NCELoss(ArgmaxOneHot())


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_nce_and_map_match_their_formulas(seed):
    g = torch.Generator().manual_seed(seed)
    oracle = TopKSubset(2)
    sols = oracle(torch.randn(6, 5, generator=g))
    theta = torch.randn(4, 5, generator=g, dtype=torch.float64)
    y = oracle(torch.randn(4, 5, generator=g)).double()
    pool_nce = SolutionPool(oracle, sols, solve_ratio=0.0)
    pool_map = SolutionPool(oracle, sols, solve_ratio=0.0)
    nce = NCELoss(pool_nce, reduction="none")(theta, y)
    cmap = MAPContrastiveLoss(pool_map, reduction="none")(theta, y)
    members = torch.unique(torch.cat([sols, y.float()]), dim=0).double()  # targets join the pool
    scores = theta @ members.T
    target = (theta * y).sum(-1)
    torch.testing.assert_close(nce, scores.mean(-1) - target)
    torch.testing.assert_close(cmap, scores.max(-1).values - target)
    assert bool((cmap >= 0).all())  # ȳ ∈ Γ


def test_contrastive_gradcheck_and_pool_refresh():
    g = torch.Generator().manual_seed(3)
    oracle = TopKSubset(2)
    theta = torch.randn(4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = oracle(torch.randn(4, 6, generator=g, dtype=torch.float64))
    for cls in (NCELoss, MAPContrastiveLoss):
        loss = cls(SolutionPool(oracle, solve_ratio=0.0))
        assert torch.autograd.gradcheck(lambda t, loss=loss: loss(t, y), (theta,))
    # solve_ratio = 1: the solutions of θ join the pool before the loss is computed
    pool = SolutionPool(oracle, solve_ratio=1.0)
    MAPContrastiveLoss(pool, add_targets=False)(theta, y)
    assert len(pool) == torch.unique(oracle(theta.detach()), dim=0).shape[0]
    with pytest.raises(ValueError, match="y_target must be a solution in Y"):
        NCELoss(pool)(theta, torch.ones_like(theta))
    with pytest.raises(ValueError, match="reduction must be one of"):
        NCELoss(pool, reduction="total")
