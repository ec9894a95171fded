"""CachedOracle: exact-theta LRU cache with hit/miss counts, bounded size, refuses non-deterministic oracles."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers.oracles import ArgmaxOneHot, CachedOracle, GridDAGShortestPath, Oracle, SolverOracle


class CountingArgmax(Oracle):
    """ArgmaxOneHot that counts the instances it solves and the calls it receives."""

    event_ndim = 1

    def __init__(self):
        super().__init__()
        self.instances = 0
        self.calls = 0

    def solve(self, theta):
        self.instances += theta.shape[0]
        self.calls += 1
        return ArgmaxOneHot().solve(theta)


def test_hits_and_misses_are_counted_and_misses_batched():
    inner = CountingArgmax()
    cached = CachedOracle(inner, max_size=10)
    a, b, c = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), torch.tensor([3.0, 2.0])
    y = cached(torch.stack([a, b, a, a]))
    assert torch.equal(y, ArgmaxOneHot()(torch.stack([a, b, a, a])))
    assert (inner.instances, inner.calls) == (2, 1)  # a and b solved once each, in one batched call
    assert (cached.hits, cached.misses) == (2, 2)
    cached(torch.stack([b, c]))
    assert (inner.instances, inner.calls) == (3, 2) and (cached.hits, cached.misses) == (3, 3)
    cached(torch.stack([a, b, c]))
    assert inner.calls == 2 and cached.hits == 6  # all hits: the oracle is not called at all


def test_key_is_exact_bytes_dtype_and_shape():
    inner = CountingArgmax()
    cached = CachedOracle(inner)
    x = torch.tensor([1.0, 2.0])
    cached(x)
    cached(x.double())  # same values, other dtype: a different key
    cached(torch.nextafter(x, torch.tensor(9.0)))  # one ulp away: a different key
    cached(torch.tensor([1.0, 2.0, 0.0]))  # other shape
    assert inner.instances == 4 and cached.hits == 0
    cached(x.clone())
    assert inner.instances == 4 and cached.hits == 1


def test_lru_eviction_bounds_the_size():
    inner = CountingArgmax()
    cached = CachedOracle(inner, max_size=2)
    t = [torch.tensor([float(i), 0.5]) for i in range(3)]
    cached(t[0])
    cached(t[1])
    cached(t[0])  # t0 is now the most recent
    cached(t[2])  # evicts t1, the least recently used
    assert len(cached) == 2
    before = inner.instances
    cached(t[0])
    assert inner.instances == before  # still cached
    cached(t[1])
    assert inner.instances == before + 1  # was evicted, solved again


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=30), st.integers(1, 6))
def test_cached_equals_uncached_for_any_sequence(choices, max_size):
    """Whatever the access pattern and size bound, answers equal the oracle's; size never exceeds the bound."""
    oracle = GridDAGShortestPath(3, 3)
    pool = -torch.rand(5, oracle.num_edges, generator=torch.Generator().manual_seed(0)) - 0.1
    cached = CachedOracle(oracle, max_size=max_size)
    for k in range(0, len(choices), 3):
        batch = pool[choices[k : k + 3]]
        assert torch.equal(cached(batch), oracle(batch))
        assert len(cached) <= max_size
    assert cached.hits + cached.misses == len(choices)


def test_refuses_non_deterministic_and_bad_arguments():
    random_solver = SolverOracle(lambda t: t, event_shape=(2,), deterministic=False)
    with pytest.raises(ValueError, match="must be deterministic"):
        CachedOracle(random_solver)
    with pytest.raises(TypeError, match="oracle must be a colayers Oracle"):
        CachedOracle(lambda t: t)
    with pytest.raises(ValueError, match="max_size must be an integer ≥ 1"):
        CachedOracle(ArgmaxOneHot(), max_size=0)


def test_clear_resets_and_objective_delegates():
    cached = CachedOracle(ArgmaxOneHot())
    theta = torch.tensor([[0.5, 2.0]])
    y = cached(theta)
    assert torch.equal(cached.objective(theta, y), torch.tensor([2.0]))
    cached.clear()
    assert len(cached) == 0 and cached.hits == 0 and cached.misses == 0
