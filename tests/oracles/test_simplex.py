"""Properties of the tensor-native vector oracles: ArgmaxOneHot, TopKSubset, Ranking."""

import contextlib
import itertools
import math
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers import ArgmaxOneHot, Ranking, TopKSubset
from tests.conftest import DEVICES

SETTINGS = settings(max_examples=40, deadline=None)


@st.composite
def scores(draw, min_n=1, max_n=7):
    """A batch (B, n) of scores; values from a small grid so that ties are frequent."""
    b = draw(st.integers(1, 4))
    n = draw(st.integers(min_n, max_n))
    tied = draw(st.booleans())
    elems = st.integers(-3, 3).map(float) if tied else st.floats(-1e3, 1e3, allow_nan=False, width=32)
    vals = draw(st.lists(elems, min_size=b * n, max_size=b * n))
    return torch.tensor(vals, dtype=torch.float64).reshape(b, n)


def all_solutions(oracle, n):
    """Enumerate Y for small n, independently of the oracle's code."""
    if isinstance(oracle, ArgmaxOneHot):
        return torch.eye(n, dtype=torch.float64)
    if isinstance(oracle, TopKSubset):
        rows = []
        for idx in itertools.combinations(range(n), oracle.k):
            y = torch.zeros(n, dtype=torch.float64)
            y[list(idx)] = 1
            rows.append(y)
        return torch.stack(rows)
    return torch.tensor(list(itertools.permutations(range(1, n + 1))), dtype=torch.float64)


def in_y(oracle, y):
    n = y.shape[-1]
    if isinstance(oracle, ArgmaxOneHot):
        return bool(((y == 0) | (y == 1)).all() and (y.sum(-1) == 1).all())
    if isinstance(oracle, TopKSubset):
        return bool(((y == 0) | (y == 1)).all() and (y.sum(-1) == oracle.k).all())
    expected = torch.arange(1, n + 1, dtype=y.dtype)
    return bool((y.sort(-1).values == expected).all())


ORACLES = [ArgmaxOneHot(), TopKSubset(1), TopKSubset(2), TopKSubset(3), Ranking()]


@pytest.mark.parametrize("oracle", ORACLES, ids=repr)
@SETTINGS
@given(theta=scores())
def test_output_in_y_and_optimal(oracle, theta):
    k = getattr(oracle, "k", 1)
    if theta.shape[-1] < k:
        with pytest.raises(ValueError, match="k must be"):
            oracle(theta)
        return
    y = oracle(theta)
    assert y.shape == theta.shape
    assert in_y(oracle, y)
    # optimality against every y in Y (n ≤ 7, so Y is small)
    best = (theta @ all_solutions(oracle, theta.shape[-1]).T).max(-1).values
    got = oracle.objective(theta, y)
    assert torch.allclose(got, best, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("oracle", ORACLES, ids=repr)
@SETTINGS
@given(theta=scores(min_n=3))
def test_batch_equals_loop(oracle, theta):
    batched = oracle(theta.reshape(1, *theta.shape))[0]
    looped = torch.stack([oracle(row) for row in theta])
    assert torch.equal(batched, looped)


@pytest.mark.parametrize("oracle", ORACLES, ids=repr)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
def test_dtype_and_device_preserved(oracle, dtype, device):
    theta = torch.randn(2, 3, 6, dtype=dtype, generator=torch.Generator().manual_seed(0)).to(device)
    y = oracle(theta)
    assert y.dtype == dtype and y.device == theta.device and y.shape == theta.shape
    assert torch.equal(y.cpu(), oracle(theta.cpu()))  # CUDA agrees with CPU exactly


def test_ties_break_to_lowest_index():
    theta = torch.tensor([2.0, 5.0, 5.0, 5.0, 1.0])
    assert ArgmaxOneHot()(theta).tolist() == [0, 1, 0, 0, 0]
    assert TopKSubset(2)(theta).tolist() == [0, 1, 1, 0, 0]
    # equal scores: the lower index gets the higher rank
    assert Ranking()(theta).tolist() == [2, 5, 4, 3, 1]


def test_ranking_gives_largest_score_rank_n():
    theta = torch.tensor([0.1, 9.0, -4.0, 3.0])
    y = Ranking()(theta)
    assert y[1] == 4 and y[2] == 1


def test_no_autograd_through_oracle():
    theta = torch.randn(4, 5, requires_grad=True)
    y = TopKSubset(2)(theta)
    assert not y.requires_grad


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: TopKSubset(0), "k must be an integer ≥ 1"),
        (lambda: TopKSubset(6, n=5), r"k must be an integer in \[1, n=5\]"),
        (lambda: ArgmaxOneHot(n=0), "n must be"),
        (lambda: TopKSubset(2.5), "k must be an integer"),
    ],
)
def test_bad_construction(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


def test_bad_theta():
    with pytest.raises(ValueError, match="theta must be finite; found 1 NaN"):
        ArgmaxOneHot()(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match="inf"):
        Ranking()(torch.tensor([0.0, float("inf")]))
    with pytest.raises(ValueError, match=r"theta must have shape \(\*batch, 4\)"):
        ArgmaxOneHot(n=4)(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        ArgmaxOneHot()(torch.tensor(1.0))
    with pytest.raises(TypeError, match="floating-point"):
        ArgmaxOneHot()(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match=r"k must be an integer in \[1, 2\]"):
        TopKSubset(3)(torch.zeros(2))


# --- selection (torch.max / torch.topk) against the stable sort it replaced ------------------------------------
# ArgmaxOneHot and TopKSubset select instead of sorting (below simplex.SORT_BELOW scores they still sort). The sort
# they used before is kept here as the reference: their outputs must equal it exactly, on random, heavily tied and
# non-finite scores (validation off), in every path: the sort for small inputs, selection with the CPU's early
# exit, and selection with the unconditional tie fix-up that runs on CUDA.


def _sort_reference(theta, k):
    """The former algorithm: stable sort of -theta (ties keep index order, NaN last), the first k indices."""
    idx = torch.sort(-theta, dim=-1, stable=True).indices[..., :k]
    return torch.zeros_like(theta).scatter_(-1, idx, 1.0)


SPECIALS = [-math.inf, math.inf, math.nan, -0.0, 0.0, 1.0, -1.0]


@st.composite
def selection_cases(draw):
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    batch = tuple(draw(st.lists(st.integers(0, 3), max_size=2)))  # () and empty batches included
    n = draw(st.integers(1, 12))
    kind = draw(st.sampled_from(["floats", "tied", "non-finite", "mostly NaN and -inf"]))
    width = 32 if dtype == torch.float32 else 64
    finite = st.floats(allow_nan=False, allow_infinity=False, width=width)
    elems = {
        "floats": finite,
        "tied": st.integers(-2, 2).map(float),
        "non-finite": st.one_of(st.sampled_from(SPECIALS), st.integers(-1, 1).map(float), finite),
        "mostly NaN and -inf": st.sampled_from([math.nan, -math.inf, math.nan, -math.inf, 0.0]),
    }[kind]
    size = math.prod(batch) * n
    vals = draw(st.lists(elems, min_size=size, max_size=size))
    k = draw(st.one_of(st.just(1), st.just(n), st.integers(1, n)))
    return torch.tensor(vals, dtype=dtype).reshape(*batch, n), k, kind not in ("floats", "tied")


@contextlib.contextmanager
def selection_path(path):
    """Force a path: "sort" (as shipped for small inputs), "select" (CPU), "select-device" (CUDA's fix-up)."""
    from colayers.oracles import simplex

    with contextlib.ExitStack() as stack:
        if path != "sort":
            stack.enter_context(mock.patch.object(simplex, "SORT_BELOW", 0))
        if path == "select-device":
            stack.enter_context(mock.patch.object(simplex, "_ties_settled", lambda flags: False))
        yield


@pytest.mark.parametrize("path", ["sort", "select", "select-device"])
@settings(max_examples=300, deadline=None)
@given(case=selection_cases())
def test_selection_equals_the_stable_sort(path, case):
    theta, k, non_finite = case
    n = theta.shape[-1]
    expected = _sort_reference(theta.reshape(-1, n), k).reshape(theta.shape)
    oracles = [TopKSubset(k, validate_args=not non_finite)]
    if k == 1:
        oracles.append(ArgmaxOneHot(validate_args=not non_finite))
    with selection_path(path):
        for oracle in oracles:
            y = oracle(theta)
            assert y.dtype == theta.dtype and y.shape == theta.shape
            assert torch.equal(y, expected), (oracle, theta, k)


def test_selection_reference_rule():
    # the rule the reference encodes, spelled out: lowest index first among ties, NaN below -inf, -0.0 == 0.0
    theta = torch.tensor([[math.nan, -math.inf, 2.0, math.nan, -math.inf], [-0.0, 3.0, 0.0, 3.0, -1.0]])
    assert _sort_reference(theta, 1).tolist() == [[0, 0, 1, 0, 0], [0, 1, 0, 0, 0]]
    assert _sort_reference(theta, 3).tolist() == [[0, 1, 1, 0, 1], [1, 1, 0, 1, 0]]
    assert _sort_reference(theta, 4).tolist() == [[1, 1, 1, 0, 1], [1, 1, 1, 1, 0]]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("tied", [False, True])
def test_selection_at_scale(device, dtype, tied):
    # sizes above SORT_BELOW take the selection path as shipped; heavily tied rows need the fix-up
    g = torch.Generator().manual_seed(3)
    theta = torch.randint(-3, 4, (6, 2000), generator=g) if tied else torch.randn(6, 2000, generator=g)
    theta = theta.to(dtype)
    theta[0, ::7] = theta[0].max()  # many ties at the top of one row
    for k in (1, 2, 7, 999, 1000, 1999, 2000):
        expected = _sort_reference(theta, k)
        assert torch.equal(TopKSubset(k)(theta.to(device)).cpu(), expected), k
    assert torch.equal(ArgmaxOneHot()(theta.to(device)).cpu(), _sort_reference(theta, 1))
