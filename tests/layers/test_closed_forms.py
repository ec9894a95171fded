"""Closed forms: Gumbel-perturbed argmax is softmax, Normal-perturbed sign is 2 Phi - 1, regularized forms."""

from __future__ import annotations

import math

import torch

from colayers import ArgmaxOneHot, Blackbox, PerturbedAdditive, SoftArgmax, SparseArgmax
from colayers.perturb import Gumbel, Normal

from .helpers import SignOracle, jacobian, softmax_jacobian

S = 20000


def test_gumbel_argmax_mean_is_softmax():
    eps = 0.7
    theta = torch.tensor([0.3, -0.5, 1.0, 0.0], dtype=torch.float64)
    layer = PerturbedAdditive(ArgmaxOneHot(), epsilon=eps, num_samples=S, noise=Gumbel())
    mu = layer(theta, generator=torch.Generator().manual_seed(0))
    # each entry is a mean of S Bernoulli draws: std <= 0.5 / sqrt(S); allow 5 standard deviations
    tol = 5 * 0.5 / math.sqrt(S)
    assert (mu - torch.softmax(theta / eps, -1)).abs().max() < tol


def test_gumbel_argmax_jacobian_is_softmax_jacobian_over_eps():
    eps = 1.0
    theta = torch.tensor([0.3, -0.5, 1.0, 0.0], dtype=torch.float64)
    layer = PerturbedAdditive(ArgmaxOneHot(), epsilon=eps, num_samples=S, noise=Gumbel())
    g = torch.Generator().manual_seed(1)
    jac = jacobian(lambda t: layer(t, generator=g), theta)
    # one term is (y_i - b_i) * (1 - exp(-Z_j)) / eps with |y - b| <= 1 and Var(exp(-Z)) = 1 for Gumbel Z,
    # so each entry's std is <= 1 / (eps sqrt(S)) ~ 0.007; allow 5 standard deviations
    tol = 5 / (eps * math.sqrt(S))
    assert (jac - softmax_jacobian(theta, eps)).abs().max() < tol


def test_normal_sign_mean_and_derivative():
    eps = 0.8
    theta = torch.tensor([[0.3], [-0.6], [0.0]], dtype=torch.float64)
    layer = PerturbedAdditive(SignOracle(), epsilon=eps, num_samples=S, noise=Normal())
    t = theta.clone().requires_grad_(True)
    mu = layer(t, generator=torch.Generator().manual_seed(2))
    phi = torch.distributions.Normal(0.0, 1.0)
    expected = 2 * phi.cdf(theta / eps) - 1
    # mean of S draws in {-1, 1}: std <= 1 / sqrt(S); 5 standard deviations
    assert (mu - expected).abs().max() < 5 / math.sqrt(S)
    mu.sum().backward()
    dexpected = 2 * torch.exp(phi.log_prob(theta / eps)) / eps
    # one term is (y - b) Z / eps with |y - b| <= 2: std <= 2 / (eps sqrt(S)); 5 standard deviations
    assert (t.grad - dexpected).abs().max() < 5 * 2 / (eps * math.sqrt(S))


def test_soft_argmax_and_sparse_argmax_closed_forms():
    theta = torch.tensor([[0.2, 1.4, 1.0, -3.0]], dtype=torch.float64)
    assert torch.allclose(SoftArgmax(temperature=0.5)(theta), torch.softmax(theta / 0.5, -1))
    mu = SparseArgmax()(theta)
    # sparsemax: tau solves sum (theta - tau)_+ = 1 -> support {1.4, 1.0}: tau = (2.4 - 1) / 2 = 0.7
    assert torch.allclose(mu, torch.tensor([[0.0, 0.7, 0.3, 0.0]], dtype=torch.float64))
    assert torch.allclose(SparseArgmax().omega(mu), 0.5 * (0.49 + 0.09) * torch.ones(1, dtype=torch.float64))


def test_blackbox_gradient_step_decreases_loss():
    # maximization convention: grad = (f(theta) - f(theta - lambda dy)) / lambda; descending it moves toward
    # the solution the loss prefers.
    oracle = ArgmaxOneHot()
    layer = Blackbox(oracle, lambda_=3.0)
    target = torch.tensor([0.0, 0.0, 1.0, 0.0])
    theta = torch.tensor([2.0, 1.0, 0.0, 0.5], requires_grad=True)
    losses = []
    for _ in range(10):
        loss = ((layer(theta) - target) ** 2).sum()
        losses.append(float(loss.detach()))
        theta.grad = None
        loss.backward()
        with torch.no_grad():
            theta -= 1.0 * theta.grad
    assert losses[0] == 2.0 and losses[-1] == 0.0
    # and the first step alone already points the right way: it raises theta[2] and lowers theta[0]
    theta0 = torch.tensor([2.0, 1.0, 0.0, 0.5], requires_grad=True)
    ((layer(theta0) - target) ** 2).sum().backward()
    assert theta0.grad[2] < 0 and theta0.grad[0] > 0
