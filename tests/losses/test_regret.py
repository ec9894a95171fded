"""Regret and experience losses through layers."""

import math

import pytest
import torch

from colayers import (
    IMLE,
    ArgmaxOneHot,
    ExperienceLoss,
    PerturbedAdditive,
    RegretLoss,
    SoftArgmax,
    SparseArgmax,
    TopKSubset,
)
from colayers.metrics import regret
from colayers.perturb import Gumbel


def test_regret_loss_regularized_closed_form_and_gradcheck():
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    theta_true = torch.randn(4, 5, generator=g, dtype=torch.float64)
    loss = RegretLoss(SoftArgmax(), oracle=ArgmaxOneHot(), reduction="none")
    value = loss(theta, theta_true)
    best = theta_true.max(-1).values
    torch.testing.assert_close(value, best - (theta_true * torch.softmax(theta, -1)).sum(-1))
    assert bool((value >= 0).all())
    for layer in (SoftArgmax(), SparseArgmax()):
        fn = RegretLoss(layer, oracle=ArgmaxOneHot())
        assert torch.autograd.gradcheck(lambda t, fn=fn: fn(t, theta_true), (theta,))


def test_regret_loss_perturbed_is_the_mean_sample_regret_and_matches_experience_gradient():
    g = torch.Generator().manual_seed(1)
    oracle = TopKSubset(2)
    theta = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    theta_true = torch.randn(3, 6, generator=g, dtype=torch.float64)
    layer = PerturbedAdditive(oracle, epsilon=0.7, num_samples=9)
    value = RegretLoss(layer, reduction="sum")(theta, theta_true, generator=torch.Generator().manual_seed(5))
    value.backward()
    grad_regret = theta.grad.clone()
    _, atoms = layer.sample(theta.detach(), generator=torch.Generator().manual_seed(5))
    y_bar = oracle(theta_true)
    per_sample = (theta_true * y_bar).sum(-1) - (theta_true * atoms).sum(-1)  # (S, B)
    torch.testing.assert_close(value, per_sample.mean(0).sum())
    assert bool((per_sample >= 0).all())
    # the same estimator written as an experience loss with the regret as black-box cost
    theta.grad = None
    experience = ExperienceLoss(
        layer, lambda y, tt: (tt * oracle(tt)).sum(-1) - (tt * y).sum(-1), reduction="sum"
    )
    value_e = experience(theta, theta_true, generator=torch.Generator().manual_seed(5))
    value_e.backward()
    torch.testing.assert_close(value_e, value)
    torch.testing.assert_close(theta.grad, grad_regret)


def test_regret_loss_averages_imle_samples_and_trains():
    g = torch.Generator().manual_seed(2)
    oracle = TopKSubset(2)
    theta_true = torch.randn(16, 6, generator=g)
    x = torch.randn(16, 4, generator=g)
    model = torch.nn.Linear(4, 6)
    with torch.no_grad():  # seeded initialization: the result is the same on every run
        model.weight.copy_(0.5 * torch.randn(6, 4, generator=g))
        model.bias.zero_()
    loss_fn = RegretLoss(IMLE(oracle, num_samples=3, seed=0))
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    with torch.no_grad():
        before = regret(oracle(model(x)), theta_true, oracle=oracle).mean().item()
    for _ in range(60):
        value = loss_fn(model(x), theta_true)
        opt.zero_grad()
        value.backward()
        opt.step()
    assert value.ndim == 0
    with torch.no_grad():
        after = regret(oracle(model(x)), theta_true, oracle=oracle).mean().item()
    # after / before over the layer's seeds 0-7: 0.33-0.52, with this Sum-of-Gamma sampler and the one before it (the
    # same law, another stream); 0.6 leaves a margin, and a model that does not train stays near 1
    assert after < 0.6 * before


def test_experience_loss_gradient_matches_softmax_closed_form():
    # Gumbel-perturbed argmax: E[⟨c, y⟩] = ⟨c, softmax(θ/ε)⟩, gradient (diag p − p pᵀ) c / ε.
    eps, num_samples = 1.0, 20000
    cost = torch.tensor([[3.0, 1.0, 2.0]], dtype=torch.float64)
    theta = torch.tensor([[0.2, -0.1, 0.4]], dtype=torch.float64, requires_grad=True)
    layer = PerturbedAdditive(ArgmaxOneHot(), epsilon=eps, num_samples=num_samples, noise=Gumbel())
    loss = ExperienceLoss(layer, lambda y, c: (y * c).sum(-1), reduction="sum")
    value = loss(theta, cost, generator=torch.Generator().manual_seed(0))
    value.backward()
    p = torch.softmax(theta.detach() / eps, -1)
    expected = (p * cost - p * (p * cost).sum(-1, keepdim=True)) / eps
    # value: a mean of S costs in [1, 3], sd ≤ 1, so 5 sd/√S ≈ 0.035
    assert abs(value.item() - (p * cost).sum().item()) < 5 / math.sqrt(num_samples)
    # gradient: per-sample terms |c − b|·|score| with |c − b| ≤ 2 and Gumbel score sd 1/ε, so sd ≤ 2;
    # 5·2/√S ≈ 0.071
    torch.testing.assert_close(theta.grad, expected, atol=10 / math.sqrt(num_samples), rtol=0)


def test_bad_input():
    theta = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="has no oracle: pass y_target"):
        RegretLoss(SoftArgmax())(theta, theta)
    y = ArgmaxOneHot()(theta)
    assert RegretLoss(SoftArgmax())(theta, theta, y).ndim == 0
    with pytest.raises(ValueError, match="theta_true must have the shape of theta"):
        RegretLoss(SoftArgmax(), oracle=ArgmaxOneHot())(theta, theta[:, :3])
    with pytest.raises(ValueError, match="y_target must be a solution in Y of ArgmaxOneHot"):
        RegretLoss(SoftArgmax(), oracle=ArgmaxOneHot())(theta, theta, torch.ones_like(theta))
    with pytest.raises(ValueError, match="reduction must be one of"):
        RegretLoss(SoftArgmax(), reduction="none ")
    with pytest.raises(TypeError, match="layer must have a distribution"):  # any layer with a distribution serves
        ExperienceLoss(torch.nn.Linear(3, 3), lambda y: y.sum(-1))
    with pytest.raises(TypeError, match="cost_fn must be callable"):
        ExperienceLoss(PerturbedAdditive(ArgmaxOneHot()), 3.0)
