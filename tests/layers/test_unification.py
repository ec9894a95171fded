"""Unification checks: Blackbox is I-MLE at eps = 0; I-MLE tends to the smoothed Jacobian; frozen AIMLE is I-MLE."""

from __future__ import annotations

import math

import pytest
import torch

from colayers import AIMLE, IMLE, ArgmaxOneHot, Blackbox, PerturbedAdditive, TopKSubset
from colayers.perturb import Gumbel

from .helpers import softmax_jacobian


@pytest.mark.parametrize("lam", [0.5, 3.0, 20.0])
@pytest.mark.parametrize("oracle", [ArgmaxOneHot(), TopKSubset(2)], ids=["argmax", "topk"])
def test_imle_with_zero_noise_is_blackbox(lam, oracle):
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(4, 6, generator=g, dtype=torch.float64)
    dy = torch.randn(4, 6, generator=g, dtype=torch.float64)
    t1 = theta.clone().requires_grad_(True)
    t2 = theta.clone().requires_grad_(True)
    y1 = IMLE(oracle, epsilon=0.0, lambda_=lam, num_samples=1, output="mean")(t1)
    y2 = Blackbox(oracle, lambda_=lam)(t2)
    (y1 * dy).sum().backward()
    (y2 * dy).sum().backward()
    assert torch.equal(y1, y2)
    assert torch.equal(t1.grad, t2.grad)
    assert t1.grad.abs().sum() > 0  # lam large enough to change some solution: the check is not vacuous
    # also with several (identical) samples: the average of equal differences is the same difference
    t3 = theta.clone().requires_grad_(True)
    (IMLE(oracle, epsilon=0.0, lambda_=lam, num_samples=3, output="mean")(t3) * dy).sum().backward()
    assert torch.allclose(t3.grad, t2.grad)


def _imle_error(num_samples: int, lam: float, seed: int) -> float:
    eps = 1.0
    theta = torch.tensor([0.5, -0.2, 0.0], dtype=torch.float64, requires_grad=True)
    dy = torch.tensor([1.0, -0.5, 0.2], dtype=torch.float64)
    layer = IMLE(
        ArgmaxOneHot(),
        noise=Gumbel(),
        epsilon=eps,
        lambda_=lam,
        num_samples=num_samples,
        output="mean",
        two_sided=True,
    )
    (layer(theta, generator=torch.Generator().manual_seed(seed)) * dy).sum().backward()
    exact = softmax_jacobian(theta.detach(), eps) @ dy  # the smoothed Jacobian is symmetric
    return float((theta.grad - exact).abs().max())


def test_imle_converges_to_smoothed_jacobian_as_samples_grow_and_lambda_shrinks():
    # Gumbel noise on one-hot argmax: mu(theta) = softmax(theta / eps) exactly, so J dy is known. The central
    # difference has bias O(lambda^2) and MC std about 1 / sqrt(lambda S) (a sample differs on both sides with
    # probability O(lambda)); with lambda = 0.1 and S = 2e5 that std is ~0.007: allow 0.04.
    coarse = _imle_error(num_samples=20, lam=2.0, seed=0)
    fine = _imle_error(num_samples=200_000, lam=0.1, seed=0)
    assert fine < 0.04
    assert fine < coarse
    # the score-function rule on the same perturbed mean estimates the same vector
    theta = torch.tensor([0.5, -0.2, 0.0], dtype=torch.float64, requires_grad=True)
    dy = torch.tensor([1.0, -0.5, 0.2], dtype=torch.float64)
    pert = PerturbedAdditive(ArgmaxOneHot(), epsilon=1.0, num_samples=200_000, noise=Gumbel())
    (pert(theta, generator=torch.Generator().manual_seed(1)) * dy).sum().backward()
    exact = softmax_jacobian(theta.detach(), 1.0) @ dy
    # score-function std per entry <= |dy|_1 / (eps sqrt(S)) ~ 0.004; 5 standard deviations
    assert (theta.grad - exact).abs().max() < 5 * 1.7 / math.sqrt(200_000)


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize("beta", [0.3, 2.0])
def test_aimle_with_frozen_beta_equals_imle(beta, two_sided):
    oracle = TopKSubset(2)
    theta0 = torch.tensor([[1.0, 0.2, -0.4, 0.8, 0.1]], dtype=torch.float64)
    w = torch.tensor([0.5, -1.0, 2.0, 0.0, -0.3], dtype=torch.float64)  # dy = w for every sample
    lam = beta * float(theta0.norm()) / float(w.norm())
    ta = theta0.clone().requires_grad_(True)
    tb = theta0.clone().requires_grad_(True)
    aimle = AIMLE(oracle, num_samples=4, two_sided=two_sided, beta=beta, adapt=False, seed=5)
    imle = IMLE(oracle, lambda_=lam, num_samples=4, two_sided=two_sided, seed=5)
    (aimle(ta) * w).sum().backward()
    (imle(tb) * w).sum().backward()
    assert torch.allclose(ta.grad, tb.grad, atol=1e-12)
    assert float(aimle.beta) == beta  # frozen


def test_aimle_adapts_beta_toward_the_target_and_saves_state():
    oracle = TopKSubset(2)
    theta = torch.tensor([[3.0, 0.0, 2.0, 1.0, -1.0]], requires_grad=True)
    w = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])
    # target far above any achievable count: beta must grow; target 0: beta must shrink
    up = AIMLE(oracle, num_samples=2, target=50.0, step=0.1, seed=0)
    down = AIMLE(oracle, num_samples=2, target=0.0, step=0.1, seed=0)
    for layer in (up, down):
        for _ in range(3):
            (layer(theta) * w).sum().backward()
    assert float(up.beta) == pytest.approx(1.3) and float(down.beta) == pytest.approx(0.7)
    assert float(up.running_nnz) != 50.0  # the running statistic moved
    fresh = AIMLE(oracle)
    fresh.load_state_dict(up.state_dict())
    assert float(fresh.beta) == float(up.beta) and float(fresh.running_nnz) == float(up.running_nnz)
    # eval mode freezes beta too
    up.eval()
    before = float(up.beta)
    (up(theta) * w).sum().backward()
    assert float(up.beta) == before


@pytest.mark.parametrize("output", ["samples", "mean"])
@pytest.mark.parametrize("two_sided", [False, True])
def test_aimle_with_zero_beta_gives_exactly_zero_gradient(two_sided, output):
    # lambda = beta ||theta|| / ||dy|| = 0: the target score theta - 0 * dy is theta itself, so the finite difference
    # is exactly zero (torch-adaptive-imle perturbs with the raw lambda and substitutes 1 only in the divisor);
    # a lambda replaced by 1 before the perturbation would give the non-zero f(theta + eps Z) - f(theta - dy + eps Z)
    oracle = TopKSubset(2)
    theta = torch.tensor([[0.3, -0.1, 0.2, 0.0, 0.1], [1.0, 2.0, -1.0, 0.5, 0.0]], requires_grad=True)
    layer = AIMLE(oracle, num_samples=3, beta=0.0, two_sided=two_sided, output=output, seed=0)
    y = layer(theta)
    w = 30.0 * torch.randn(y.shape, generator=torch.Generator().manual_seed(0))  # large dy: a unit step would flip
    (y * w).sum().backward()
    assert torch.equal(theta.grad, torch.zeros_like(theta))
    # the same layer with beta > 0 and the same noise does produce a gradient (the check above is not vacuous)
    theta.grad = None
    layer2 = AIMLE(oracle, num_samples=3, beta=1.0, two_sided=two_sided, output=output, seed=0)
    (layer2(theta) * w).sum().backward()
    assert theta.grad.abs().sum() > 0


def test_aimle_running_count_reaches_a_low_target():
    # small scores and large incoming gradients: a unit step theta - dy flips about 4 of 10 entries per sample, so
    # a low target (0.5) is only reachable by lambda -> 0. beta must go down to about 0 and the running count must
    # settle at the target; with lambda replaced by 1 at beta = 0 the count stayed at ~4. The count is an EMA with
    # weight 0.1 of a per-step mean over 16 samples; across 8 seeds the mean over the last 40 of 100 steps was
    # 0.48-0.52, so a band of 0.25 is wide.
    n, k, b, target = 10, 3, 8, 0.5
    g = torch.Generator().manual_seed(0)
    theta = (0.1 * torch.randn(b, n, generator=g)).requires_grad_(True)
    layer = AIMLE(TopKSubset(k), num_samples=2, target=target, step=0.1, seed=0)
    opt = torch.optim.SGD([theta], lr=0.01)
    history = []
    for _ in range(100):
        opt.zero_grad()
        y = layer(theta)
        (y * (30.0 * torch.randn(y.shape, generator=g))).sum().backward()
        opt.step()
        history.append(float(layer.running_nnz))
    late = sum(history[-40:]) / 40
    assert abs(late - target) < 0.25
    assert float(layer.beta) < 1.0  # beta went down from its initial 1


_AIMLE_STATE = ("beta", "target", "running_nnz", "previous_update")


def test_aimle_state_stays_float64_under_dtype_casts_and_round_trips():
    # the state is float64 whatever .to(dtype)/.half() do to the module: a bfloat16 beta (8 bits of mantissa) could
    # not move by step = 1e-3 from 1.0 at all
    oracle = TopKSubset(2)
    theta = torch.tensor([[3.0, 0.0, 2.0, 1.0, -1.0]])
    w = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])
    theta.requires_grad_(True)
    layer = AIMLE(oracle, num_samples=2, target=50.0, step=1e-3, seed=0)
    (layer(theta) * w).sum().backward()  # one update: beta = 1 + 1e-3 exactly representable in float64 only
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    for cast in (lambda m: m.to(torch.bfloat16), lambda m: m.half(), lambda m: m.float(), lambda m: m.double()):
        cast(layer)
        for name in _AIMLE_STATE:
            assert getattr(layer, name).dtype == torch.float64, name
            assert torch.equal(getattr(layer, name), before[name]), name
    assert float(layer.beta) == 1.0 + 1e-3
    # the layer still adapts on float16 scores after .half()
    (layer(theta.detach().half().requires_grad_(True)) * w.half()).sum().backward()
    assert float(layer.beta) == 1.0 + 1e-3 + 1e-3  # float64 arithmetic of two steps
    # state_dict round trip: exact values, float64, into a fresh layer (also from a float32 copy of the state)
    saved = layer.state_dict()
    fresh = AIMLE(oracle)
    fresh.load_state_dict(saved)
    for name in _AIMLE_STATE:
        assert getattr(fresh, name).dtype == torch.float64 and torch.equal(getattr(fresh, name), saved[name])
    fresh.load_state_dict({k: v.float() for k, v in saved.items()})
    assert fresh.beta.dtype == torch.float64 and float(fresh.beta) == float(saved["beta"].float())


def test_aimle_momentum_update_rule():
    # beta's move (computed as a tensor expression on the state's device) follows the reference rule
    oracle = TopKSubset(2)
    theta = torch.tensor([[3.0, 0.0, 2.0, 1.0, -1.0]], requires_grad=True)
    w = torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0])
    layer = AIMLE(oracle, num_samples=2, target=0.0, step=0.1, momentum=0.5, seed=0)
    (layer(theta) * w).sum().backward()
    (layer(theta) * w).sum().backward()
    # running count above target 0 twice: moves -0.1 then 0.5 * (-0.1) - 0.1 = -0.15
    assert float(layer.beta) == pytest.approx(1.0 - 0.1 - 0.15)
    assert float(layer.previous_update) == pytest.approx(-0.15)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_aimle_on_cuda_scores_with_state_left_on_the_cpu():
    # rule: the state lives where the module is; theta may be elsewhere. beta is copied to theta's device for
    # lambda and the update's statistic (one scalar) is moved to the state's device. A module not moved to CUDA
    # must give the same gradients and the same state as one that was.
    oracle = TopKSubset(2)
    theta = torch.tensor([[3.0, 0.0, 2.0, 1.0, -1.0], [0.5, 0.2, -0.3, 1.0, 0.0]], device="cuda")
    w = torch.tensor([0.0, 1.0, 0.0, 0.0, 2.0], device="cuda")
    left = AIMLE(oracle, num_samples=3, target=1.0, step=0.05, seed=0)
    moved = AIMLE(oracle, num_samples=3, target=1.0, step=0.05, seed=0).to("cuda")
    for _ in range(3):
        ta, tb = theta.clone().requires_grad_(True), theta.clone().requires_grad_(True)
        (left(ta) * w).sum().backward()
        (moved(tb) * w).sum().backward()
        assert ta.grad.device.type == "cuda" and torch.equal(ta.grad, tb.grad)
    for name in _AIMLE_STATE:
        assert getattr(left, name).device.type == "cpu" and getattr(moved, name).device.type == "cuda"
        assert getattr(left, name).dtype == torch.float64 == getattr(moved, name).dtype
        assert torch.equal(getattr(left, name), getattr(moved, name).cpu()), name
