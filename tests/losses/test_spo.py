"""SPO+: value against brute force, upper bound on the regret, subgradient, gradcheck, bad input."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers import ArgmaxOneHot, GridDAGShortestPath, SPOPlusLoss, TopKSubset
from colayers.metrics import regret

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
    ),
]


def all_subsets(n, k, dtype=torch.float64):
    rows = []
    for idx in itertools.combinations(range(n), k):
        y = torch.zeros(n, dtype=dtype)
        y[list(idx)] = 1.0
        rows.append(y)
    return torch.stack(rows)


def seeds():
    return st.integers(min_value=0, max_value=2**31 - 1)


@settings(max_examples=40, deadline=None)
@given(seed=seeds(), k=st.integers(1, 5), scale=st.floats(0.1, 10.0))
def test_value_equals_brute_force_definition(seed, k, scale):
    g = torch.Generator().manual_seed(seed)
    theta = scale * torch.randn(3, 6, generator=g, dtype=torch.float64)
    theta_true = torch.randn(3, 6, generator=g, dtype=torch.float64)
    ys = all_subsets(6, k)  # every solution of TopKSubset(k) on 6 items
    y_bar = ys[(theta_true @ ys.T).argmax(-1)]
    theta_alpha = 2 * theta - theta_true
    expected = (theta_alpha @ ys.T).max(-1).values - (theta_alpha * y_bar).sum(-1)
    got = SPOPlusLoss(TopKSubset(k), reduction="none")(theta, theta_true)
    torch.testing.assert_close(got, expected)


@settings(max_examples=40, deadline=None)
@given(seed=seeds(), k=st.integers(1, 5), scale=st.floats(0.01, 100.0))
def test_upper_bounds_regret_top_k(seed, k, scale):
    g = torch.Generator().manual_seed(seed)
    theta = scale * torch.randn(8, 6, generator=g, dtype=torch.float64)
    theta_true = torch.randn(8, 6, generator=g, dtype=torch.float64)
    oracle = TopKSubset(k)
    spo = SPOPlusLoss(oracle, reduction="none")(theta, theta_true)
    r = regret(oracle(theta), theta_true, oracle=oracle)
    assert bool((spo >= r - 1e-9).all())
    assert bool((r >= -1e-12).all())


@settings(max_examples=25, deadline=None)
@given(seed=seeds(), scale=st.floats(0.01, 100.0), integer=st.booleans())
def test_upper_bounds_regret_grid_paths(seed, scale, integer):
    g = torch.Generator().manual_seed(seed)
    oracle = GridDAGShortestPath(5, 5)
    theta = scale * torch.randn(8, 40, generator=g, dtype=torch.float64)
    theta_true = -torch.rand(8, 40, generator=g, dtype=torch.float64)  # θ̄ = −cost, costs positive
    if integer:  # many ties: the bound must hold whatever the tie-breaking
        theta = theta.round()
        theta_true = (4 * theta_true).round()
    spo = SPOPlusLoss(oracle, reduction="none")(theta, theta_true)
    r = regret(oracle(theta), theta_true, oracle=oracle)
    assert bool((spo >= r - 1e-9).all())


def test_subgradient_matches_finite_difference_of_value():
    g = torch.Generator().manual_seed(3)
    oracle = GridDAGShortestPath(5, 5)
    loss = SPOPlusLoss(oracle, reduction="sum")
    theta = torch.randn(4, 40, generator=g, dtype=torch.float64, requires_grad=True)
    theta_true = -torch.rand(4, 40, generator=g, dtype=torch.float64)
    loss(theta, theta_true).backward()
    # generic θ: the maximizer is unique, so the value is linear near θ and a central difference is exact
    h = 1e-6
    for _ in range(5):
        v = torch.randn(4, 40, generator=g, dtype=torch.float64)
        fd = (loss(theta.detach() + h * v, theta_true) - loss(theta.detach() - h * v, theta_true)) / (2 * h)
        torch.testing.assert_close(fd, (theta.grad * v).sum(), atol=1e-6, rtol=1e-6)


def test_gradcheck_theta_and_theta_true():
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    theta_true = torch.randn(3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    y_target = TopKSubset(3)(theta_true.detach())
    loss = SPOPlusLoss(TopKSubset(3), alpha=1.5)
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b, y_target), (theta, theta_true))


def test_alpha_scales_the_predicted_scores():
    oracle = ArgmaxOneHot()
    theta = torch.tensor([[1.0, 0.0, 0.5]], requires_grad=True)
    theta_true = torch.tensor([[0.0, 1.0, 0.0]])
    value = SPOPlusLoss(oracle, alpha=3.0)(theta, theta_true)
    # θ_3 = 3θ − θ̄ = (3, −1, 1.5): y_3 = e1, ȳ = e2, value = 3 − (−1) = 4, gradient 3(e1 − e2)
    value.backward()
    assert value.item() == 4.0
    torch.testing.assert_close(theta.grad, torch.tensor([[3.0, -3.0, 0.0]]))


def test_given_y_target_equals_computed_and_zero_at_perfect_prediction():
    g = torch.Generator().manual_seed(1)
    oracle = TopKSubset(2)
    theta_true = torch.randn(5, 6, generator=g)
    loss = SPOPlusLoss(oracle, reduction="none")
    torch.testing.assert_close(loss(theta_true, theta_true, oracle(theta_true)), loss(theta_true, theta_true))
    # θ = θ̄ gives θ_2 = θ̄, whose maximizer is ȳ: zero loss
    assert bool((loss(theta_true, theta_true) == 0).all())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reductions_device_dtype(device, dtype):
    g = torch.Generator().manual_seed(2)
    theta = torch.randn(2, 3, 6, generator=g, dtype=dtype).to(device).requires_grad_()
    theta_true = torch.randn(2, 3, 6, generator=g, dtype=dtype).to(device)
    oracle = TopKSubset(2)
    none = SPOPlusLoss(oracle, reduction="none")(theta, theta_true)
    assert none.shape == (2, 3) and none.dtype == dtype and none.device.type == device
    torch.testing.assert_close(SPOPlusLoss(oracle, reduction="sum")(theta, theta_true), none.sum())
    mean = SPOPlusLoss(oracle)(theta, theta_true)
    torch.testing.assert_close(mean, none.mean())
    mean.backward()
    assert theta.grad.device.type == device and theta.grad.dtype == dtype


def test_bad_input():
    oracle = TopKSubset(2)
    theta = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="alpha must be > 0"):
        SPOPlusLoss(oracle, alpha=0.0)
    with pytest.raises(ValueError, match="alpha must be > 0"):
        SPOPlusLoss(oracle, alpha=-1.0)
    with pytest.raises(ValueError, match="reduction must be one of"):
        SPOPlusLoss(oracle, reduction="avg")
    with pytest.raises(TypeError, match="oracle must be a colayers Oracle"):
        SPOPlusLoss(lambda t: t)
    with pytest.raises(ValueError, match="theta_true must have the shape of theta"):
        SPOPlusLoss(oracle)(theta, torch.randn(4, 5))
    with pytest.raises(ValueError, match="theta must be finite"):
        SPOPlusLoss(oracle)(theta.clone().fill_(float("nan")), theta)
    with pytest.raises(ValueError, match="y_target must have theta's batch shape"):
        SPOPlusLoss(oracle)(theta, theta, torch.zeros(3, 6))
    with pytest.raises(ValueError, match="y_target must have the shape of the oracle's solutions"):
        SPOPlusLoss(oracle, allow_relaxed_targets=True)(theta, theta, torch.zeros(4, 5))
    not_in_y = torch.tensor([[1.0, 1.0, 1.0, 0.0, 0.0, 0.0]]).expand(4, 6)  # 3 items, k = 2
    with pytest.raises(ValueError, match="y_target must be a solution in Y of TopKSubset.*allow_relaxed_targets"):
        SPOPlusLoss(oracle)(theta, theta, not_in_y)
    in_hull = torch.tensor([[2 / 3, 2 / 3, 2 / 3, 0.0, 0.0, 0.0]]).expand(4, 6)  # in conv Y, not a vertex
    with pytest.raises(ValueError, match="y_target must be a solution in Y of TopKSubset"):
        SPOPlusLoss(oracle)(theta, theta, in_hull)
    relaxed = SPOPlusLoss(oracle, allow_relaxed_targets=True, reduction="none")(theta, theta, in_hull)
    assert relaxed.shape == (4,) and bool((relaxed >= 0).all())  # max over Y ≥ any point of its hull


def test_batched_losses_equal_a_per_instance_loop():
    from colayers import StructuredSVMLoss

    g = torch.Generator().manual_seed(4)
    oracle = GridDAGShortestPath(4, 5)
    theta = torch.randn(2, 3, oracle.num_edges, generator=g, dtype=torch.float64)
    theta_true = -torch.rand(2, 3, oracle.num_edges, generator=g, dtype=torch.float64)
    y_bar = oracle(theta_true)
    for loss in (SPOPlusLoss(oracle, reduction="none"), StructuredSVMLoss(oracle, reduction="none")):
        args = (theta_true,) if isinstance(loss, SPOPlusLoss) else (y_bar,)
        batched = loss(theta, *args)
        looped = torch.stack([torch.stack([loss(theta[i, j], args[0][i, j]) for j in range(3)]) for i in range(2)])
        torch.testing.assert_close(batched, looped)


def test_autograd_functions_of_every_step_skip_argument_binding(monkeypatch):
    # Function.apply binds its arguments with inspect.signature(forward) on every call when the Function defines
    # setup_context; the Functions of every training step take ctx in forward instead: no call of
    # inspect.signature in a forward + backward of SPO+, perturbed Fenchel-Young and Blackbox (their values and
    # gradients are checked against closed forms by the tests of each loss and layer)
    import torch.autograd.function as autograd_function

    from colayers import Blackbox, FenchelYoungLoss, PerturbedAdditive

    calls = []
    original = autograd_function.inspect.signature
    monkeypatch.setattr(autograd_function.inspect, "signature", lambda f, *a, **k: calls.append(f) or original(f))
    oracle, g = TopKSubset(2), torch.Generator().manual_seed(0)
    theta = torch.randn(3, 5, generator=g, requires_grad=True)
    truth = torch.randn(3, 5, generator=g)
    SPOPlusLoss(oracle)(theta, truth).backward()
    FenchelYoungLoss(PerturbedAdditive(oracle, num_samples=4, seed=0))(theta, oracle(truth)).backward()
    Blackbox(oracle)(theta).sum().backward()
    assert calls == []
