"""PerturbationGradientLoss against enumeration of Y (top-2 subsets of 5 items), at steps σ other than 1."""

import itertools

import pytest
import torch

from colayers import ArgmaxOneHot, TopKSubset
from colayers.losses import PerturbationGradientLoss, perturbation_gradient_loss

DT = torch.float64
N, K = 5, 2
Y = torch.tensor(
    [[1.0 if i in s else 0.0 for i in range(N)] for s in itertools.combinations(range(N), K)], dtype=DT
)  # every 2-subset, (10, 5)


def _max_by_enumeration(theta):
    """F(θ) and its maximizer over the enumerated Y, per row of θ (B, N)."""
    values = theta @ Y.T
    best = values.argmax(-1)
    return values.max(-1).values, Y[best]


def _reference(theta, theta_true, sigma, two_sided):
    """The PG value and gradient of Huang & Gupta, written out from the enumeration."""
    f_minus, y_minus = _max_by_enumeration(theta - sigma * theta_true)
    if two_sided:
        f_plus, y_plus = _max_by_enumeration(theta + sigma * theta_true)
        return (f_minus - f_plus) / (2 * sigma), (y_minus - y_plus) / (2 * sigma)
    f_0, y_0 = _max_by_enumeration(theta)
    return (f_minus - f_0) / sigma, (y_minus - y_0) / sigma


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("sigma", [0.3, 2.5])
def test_value_and_gradient_equal_enumeration(two_sided, sigma):
    g = torch.Generator().manual_seed(int(sigma * 10) + two_sided)
    theta = torch.randn(32, N, generator=g, dtype=DT).requires_grad_(True)
    theta_true = 3.0 * torch.randn(32, N, generator=g, dtype=DT)
    weights = torch.rand(32, generator=g, dtype=DT)  # a weighted sum checks the per-instance gradient
    value = PerturbationGradientLoss(TopKSubset(K), sigma=sigma, two_sided=two_sided, reduction="none")(
        theta, theta_true
    )
    (value * weights).sum().backward()
    ref_value, ref_grad = _reference(theta.detach(), theta_true, sigma, two_sided)
    torch.testing.assert_close(value.detach(), ref_value, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(theta.grad, weights[:, None] * ref_grad, atol=1e-12, rtol=1e-12)
    assert ref_grad.abs().sum() > 0  # some instances switch decision within σ


def test_small_step_gives_the_decision_loss_and_the_one_sided_loss_bounds_it():
    """σ → 0: both tend to -<θ̄, f(θ)> (the true cost of the decision); F convex: PGB ≥ it for every σ."""
    g = torch.Generator().manual_seed(7)
    theta = torch.randn(64, N, generator=g, dtype=DT)
    theta_true = 2.0 * torch.randn(64, N, generator=g, dtype=DT)
    decision_loss = -(theta_true * _max_by_enumeration(theta)[1]).sum(-1)
    for two_sided in (False, True):
        tiny = perturbation_gradient_loss(
            theta, theta_true, TopKSubset(K), sigma=1e-7, two_sided=two_sided, reduction="none"
        )
        torch.testing.assert_close(tiny, decision_loss, atol=1e-6, rtol=0)
    for sigma in (0.2, 1.7):
        pgb = perturbation_gradient_loss(theta, theta_true, TopKSubset(K), sigma=sigma, reduction="none")
        assert bool((pgb >= decision_loss - 1e-12).all())


def test_reductions_batch_shapes_and_no_gradient_to_the_true_scores():
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(2, 3, 4, generator=g, dtype=DT)
    theta_true = torch.randn(2, 3, 4, generator=g, dtype=DT).requires_grad_(True)
    loss = PerturbationGradientLoss(ArgmaxOneHot(), sigma=0.4, two_sided=True, reduction="none")
    per = loss(theta, theta_true)
    assert per.shape == (2, 3)
    rows = torch.stack([loss(theta[i], theta_true[i]) for i in range(2)])
    torch.testing.assert_close(per, rows)
    loss.reduction = "sum"
    torch.testing.assert_close(loss(theta, theta_true), per.sum())
    assert not loss(theta, theta_true).requires_grad  # θ̄ is data, as in PyEPO


def test_bad_input_is_refused_by_name():
    with pytest.raises(ValueError, match="sigma"):
        PerturbationGradientLoss(ArgmaxOneHot(), sigma=0.0)
    with pytest.raises(TypeError, match="two_sided"):
        PerturbationGradientLoss(ArgmaxOneHot(), two_sided="yes")
    with pytest.raises(TypeError, match="oracle"):
        PerturbationGradientLoss(lambda t: t)
    loss = PerturbationGradientLoss(ArgmaxOneHot())
    with pytest.raises(ValueError, match="theta_true must have the shape of theta"):
        loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="theta_true"):
        loss(torch.zeros(2, 3), torch.tensor([[0.0, float("nan"), 0.0]] * 2))
