r"""AIMLE's two ways of choosing λ, each against the formula it implements, and empty batches.

* ``lambda_per="instance"`` (default): :math:`\lambda_{s,b} = \beta\|\theta_b\|/\|\bar y_{s,b}\|` (the AIMLE paper's
  per-instance step, Minervini, Franceschi, Niepert, AAAI 2023), gradient
  :math:`\frac1S\sum_s [f(\theta_b + \varepsilon Z_{s,b}) - f(\theta_b - \lambda_{s,b}\bar y_{s,b} + \varepsilon
  Z_{s,b})]/\lambda_{s,b}`;
* ``lambda_per="batch"``: one λ for the batch, as torch-adaptive-imle's ``aimle`` and PyEPO's
  ``adaptiveImplicitMLE`` compute it; their backward passes are transcribed below, in the maximization
  convention, from their published formulas (target :math:`\alpha\theta - \lambda\bar y`, symmetric form
  :math:`(f(\theta + \lambda\bar y) - f(\theta - \lambda\bar y))/(2\lambda)`).

The references solve top-k with ``torch.topk`` (not the oracle under test) on the same noise, which the test
draws with the same generator the layer uses (``layer.sample``). Every check is exact up to float rounding: the
noise is continuous (Normal), so no two scores tie.
"""

from __future__ import annotations

import math

import pytest
import torch

from colayers import AIMLE, TopKSubset
from colayers.perturb import Normal

K, N_ITEMS = 2, 6
THETA = torch.tensor(
    [[3.0, -1.0, 2.0, 0.5, 0.0, 1.0], [0.2, 0.1, -0.3, 0.4, 0.0, -0.1], [5.0, 4.0, -6.0, 1.0, 2.0, 0.0]],
    dtype=torch.float64,
)  # three instances with norms 4.0, 0.55, 8.8: a per-instance and a batch λ differ


def topk(scores):
    """The top-k one-hot of the last dimension (the reference solver)."""
    return torch.zeros_like(scores).scatter_(-1, scores.topk(K, dim=-1).indices, 1.0)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def run(layer, weights, seed):
    """One forward and backward of loss = <y, weights> with the noise of ``gen(seed)``; returns (grad, noise)."""
    noise = layer.sample(THETA, generator=gen(seed))[0].noise
    theta = THETA.clone().requires_grad_(True)
    y = layer(theta, generator=gen(seed))
    (y * weights).sum().backward()
    return theta.grad, noise


def state(layer):
    return float(layer.beta), float(layer.running_nnz)


@pytest.mark.parametrize("two_sided", [False, True])
def test_per_instance_lambda_is_the_papers_formula(two_sided):
    eps, beta, s, step = 0.7, 0.8, 3, 0.01
    layer = AIMLE(TopKSubset(K), noise=Normal(), epsilon=eps, num_samples=s, output="samples", beta=beta,
                  target=100.0, step=step, two_sided=two_sided)
    assert layer.lambda_per == "instance"
    w = torch.randn(s, *THETA.shape, generator=gen(1), dtype=torch.float64)  # each sample's incoming gradient
    grad, z = run(layer, w, seed=2)
    lam = beta * THETA.norm(dim=-1) / w.norm(dim=-1)  # (S, B): one lambda per sample and instance
    step_ = lam.unsqueeze(-1) * w
    if two_sided:
        diff = topk(THETA + 0.5 * step_ + eps * z) - topk(THETA - 0.5 * step_ + eps * z)
    else:
        diff = topk(THETA + eps * z) - topk(THETA - step_ + eps * z)
    expected = (diff / lam.unsqueeze(-1)).mean(0)
    assert expected.abs().sum() > 0  # the test sees a non-zero gradient
    torch.testing.assert_close(grad, expected, rtol=1e-12, atol=1e-12)
    # beta's update: the mean count of non-zero entries per (sample, instance), smoothed with decay 0.9 from the
    # initial running count (= target = 100), is below the target, so beta grows by one step
    running = 0.9 * 100.0 + 0.1 * float(diff.ne(0).sum(-1).double().mean())
    assert state(layer) == pytest.approx((beta + step, running), rel=1e-12)


def torch_adaptive_imle_backward(theta, dy, z, beta, tau, symmetric):
    """torch-adaptive-imle's ``aimle`` backward with ``AdaptiveTargetDistribution`` (alpha = 1), nb_samples = S
    rows per instance, batch-major (B*S, n) as it lays them out: the target side uses
    pm = beta ||theta repeated S times|| / ||dy||, the gradient is divided by beta ||theta|| / ||dy|| (theta not
    repeated), averaged over the S samples. Returns (gradient, the nnz statistic it feeds to beta's update)."""
    s, b = z.shape[0], z.shape[1]
    theta_2d = theta.repeat_interleave(s, dim=0)  # theta.view(B, 1, -1).repeat(1, S, 1): (B*S, n)
    eps = (z.transpose(0, 1) * tau).reshape(b * s, -1)  # noise (S, B, n) -> (B, S, n) -> (B*S, n)
    pm_step = beta * theta_2d.norm() / dy.norm()
    pm_div = beta * theta.norm() / dy.norm()
    z_r = topk(theta_2d - pm_step * dy + eps)
    z_l = topk(theta_2d + (pm_step * dy if symmetric else 0.0) + eps)
    gradient = (z_l - z_r) / (2.0 if symmetric else 1.0)
    nnz = float(gradient.ne(0).sum()) / (b * s)
    return (gradient / pm_div).view(b, s, -1).mean(1), nnz


@pytest.mark.parametrize("two_sided", [False, True])
def test_per_batch_lambda_is_torch_adaptive_imles(two_sided):
    eps, beta, step = 0.6, 0.3, 0.002
    b = THETA.shape[0]
    dy_2d = torch.randn(b, N_ITEMS, generator=gen(3), dtype=torch.float64)  # nb_samples = 1: rows are instances
    # the same noise for both: the layer's draw, fed to the transcription
    factor = 2.0 if two_sided else 1.0  # the symmetric form solves at theta +- lambda dy: colayers' beta doubled
    layer = AIMLE(TopKSubset(K), noise=Normal(), epsilon=eps, num_samples=1, output="samples",
                  beta=factor * beta, step=factor * step, target=100.0, two_sided=two_sided, lambda_per="batch")
    grad, z = run(layer, dy_2d.unsqueeze(0), seed=4)
    ref, nnz = torch_adaptive_imle_backward(THETA, dy_2d, z, beta, eps, two_sided)
    assert ref.abs().sum() > 0
    torch.testing.assert_close(grad, ref, rtol=1e-12, atol=1e-12)
    # its beta update: running = 0.9 running + 0.1 nnz, beta += step below the target (beta doubled with it)
    assert state(layer) == pytest.approx((factor * (beta + step), 0.9 * 100.0 + 0.1 * nnz), rel=1e-12)
    # the per-instance default differs on this batch (its norms differ across instances)
    other = AIMLE(TopKSubset(K), noise=Normal(), epsilon=eps, num_samples=1, output="samples",
                  beta=factor * beta, two_sided=two_sided)
    assert not torch.allclose(run(other, dy_2d.unsqueeze(0), seed=4)[0], ref)


def test_torch_adaptive_imle_with_several_samples_divides_by_a_sqrt_s_smaller_lambda():
    # with nb_samples = S > 1 torch-adaptive-imle's step uses ||theta repeated S times|| = sqrt(S) ||theta|| but
    # its division uses ||theta||: its gradient is sqrt(S) times colayers' (which uses one lambda for both)
    eps, beta, s = 0.6, 0.3, 4
    b = THETA.shape[0]
    w = torch.randn(s, b, N_ITEMS, generator=gen(5), dtype=torch.float64)
    layer = AIMLE(TopKSubset(K), noise=Normal(), epsilon=eps, num_samples=s, output="samples", beta=beta,
                  lambda_per="batch")
    grad, z = run(layer, w, seed=6)
    ref, _ = torch_adaptive_imle_backward(THETA, w.transpose(0, 1).reshape(b * s, -1), z, beta, eps, False)
    assert ref.abs().sum() > 0
    torch.testing.assert_close(grad * math.sqrt(s), ref, rtol=1e-12, atol=1e-12)


def pyepo_adaptive_imle_backward(theta, dl, z, alpha, sigma, two_sides):
    """PyEPO's ``adaptiveImplicitMLE`` backward (output: the mean of S solutions), written for maximization
    (theta = -cost, noise in theta's sign): lambda = alpha ||theta|| / ||dl|| over the whole batch;
    one-sided (f(theta + sigma z) - f(theta - lambda dl + sigma z)) / (lambda + 1e-7), two-sided
    (f(theta + lambda dl + sigma z) - f(theta - lambda dl + sigma z)) / (2 lambda + 1e-7), averaged over S."""
    lam = alpha * theta.norm() / dl.norm()
    if two_sides:
        return (topk(theta + lam * dl + sigma * z) - topk(theta - lam * dl + sigma * z)).mean(0) / (2 * lam + 1e-7)
    return (topk(theta + sigma * z) - topk(theta - lam * dl + sigma * z)).mean(0) / (lam + 1e-7)


@pytest.mark.parametrize("two_sided", [False, True])
def test_per_batch_lambda_is_pyepos(two_sided):
    sigma, alpha, s = 0.5, 0.4, 5
    dl = torch.randn(*THETA.shape, generator=gen(7), dtype=torch.float64)  # the gradient of the mean output
    factor = 2.0 if two_sided else 1.0
    layer = AIMLE(TopKSubset(K), noise=Normal(), epsilon=sigma, num_samples=s, beta=factor * alpha,
                  two_sided=two_sided, lambda_per="batch")
    grad, z = run(layer, dl, seed=8)
    ref = pyepo_adaptive_imle_backward(THETA, dl, z, alpha, sigma, two_sided)
    assert ref.abs().sum() > 0
    torch.testing.assert_close(grad, ref, rtol=1e-6, atol=0.0)  # PyEPO's 1e-7 in the divisor: relative 1e-6


@pytest.mark.parametrize("lambda_per", ["instance", "batch"])
@pytest.mark.parametrize("output", ["mean", "samples"])
@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("shape", [(0, N_ITEMS), (2, 0, N_ITEMS)])
def test_empty_batch_forward_and_backward(lambda_per, output, two_sided, shape):
    layer = AIMLE(TopKSubset(K), num_samples=3, output=output, two_sided=two_sided, lambda_per=lambda_per, seed=0)
    before = {name: buf.clone() for name, buf in layer.named_buffers()}
    theta = torch.zeros(shape, requires_grad=True)
    y = layer(theta)
    assert y.shape == ((3, *shape) if output == "samples" else shape)
    y.sum().backward()
    assert theta.grad.shape == shape
    # an empty batch carries no statistic: beta and its running count are unchanged
    assert all(torch.equal(buf, before[name]) for name, buf in layer.named_buffers())
    # and the next non-empty batch still trains
    theta = torch.tensor([[3.0, 0.0, 2.0, 1.0, 0.5, -1.0]], requires_grad=True)
    layer(theta).sum().backward()
    assert float(layer.beta) != float(before["beta"])


def test_lambda_per_is_declared_and_shown():
    with pytest.raises(ValueError, match="lambda_per must be one of"):
        AIMLE(TopKSubset(K), lambda_per="sample")
    layer = AIMLE(TopKSubset(K), lambda_per="batch")
    assert layer.lambda_per == "batch" and "lambda_per='batch'" in repr(layer)
