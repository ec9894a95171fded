"""gradcheck in float64 for the deterministic differentiable layers; frozen-noise finite differences."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from colayers import IMLE, ArgmaxOneHot, RegularizedFrankWolfe, SoftArgmax, SparseArgmax, TopKSubset
from colayers.layers.functional import regularized_frank_wolfe, sparse_argmax


def _theta(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(True)


def test_gradcheck_soft_argmax():
    assert gradcheck(SoftArgmax(0.7), (_theta(3, 5),))


def test_gradcheck_sparse_argmax():
    assert gradcheck(sparse_argmax, (_theta(3, 5),))


@pytest.mark.parametrize("oracle", [ArgmaxOneHot(), TopKSubset(2)], ids=["argmax", "topk"])
def test_gradcheck_regularized_frank_wolfe(oracle):
    theta = _theta(3, 5, seed=1)
    assert gradcheck(lambda t: regularized_frank_wolfe(t, oracle), (theta,))


def test_frank_wolfe_on_simplex_agrees_with_sparsemax():
    theta = _theta(6, 7, seed=2) * 2
    fw = RegularizedFrankWolfe(ArgmaxOneHot())
    assert torch.allclose(fw(theta), SparseArgmax()(theta), atol=1e-10)
    j_fw = torch.autograd.functional.jacobian(lambda t: fw(t).sum(0), theta)
    j_sp = torch.autograd.functional.jacobian(lambda t: sparse_argmax(t).sum(0), theta)
    assert torch.allclose(j_fw, j_sp, atol=1e-10)


def test_frank_wolfe_distribution_reconstructs_the_mean():
    theta = _theta(2, 3, 6, seed=3).detach()
    fw = RegularizedFrankWolfe(TopKSubset(3))
    d = fw.distribution(theta)
    assert d.atoms.shape[1:] == theta.shape and d.weights.shape[1:] == theta.shape[:-1]
    assert torch.allclose(d.weights.sum(0), torch.ones(2, 3, dtype=torch.float64))
    assert torch.allclose(d.mean, fw(theta), atol=1e-12)
    assert ((d.atoms.sum(-1) == 3) | (d.weights == 0)).all()


@pytest.mark.parametrize("two_sided", [False, True])
def test_finite_difference_rule_with_frozen_noise(two_sided):
    # with the noise frozen (same generator state), the I-MLE VJP is exactly the finite difference of the
    # perturbed mean computed by hand: (mu(theta + a dy) - mu(theta - b dy)) / lambda
    oracle, lam, eps = TopKSubset(2), 2.0, 0.5
    theta = _theta(3, 6, seed=4)
    dy = torch.randn(3, 6, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    layer = IMLE(oracle, epsilon=eps, lambda_=lam, num_samples=5, two_sided=two_sided, return_mean=True)
    (layer(theta, generator=torch.Generator().manual_seed(11)) * dy).sum().backward()
    z = layer.noise.sample((5, 3, 6), generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    base = theta.detach() + eps * z
    hi, lo = (0.5 * lam, 0.5 * lam) if two_sided else (0.0, lam)
    expected = (oracle(base + hi * dy).mean(0) - oracle(base - lo * dy).mean(0)) / lam
    assert torch.allclose(theta.grad, expected, atol=1e-14)
    assert theta.grad.abs().sum() > 0
