"""RegularizedFrankWolfe under a constant offset θ + c·1.

Where every solution has the same coordinate sum (simplex, top-k), μ(θ + c·1) = μ(θ) and the layer must
not depend on c; where the sums differ (the unit cube, "at most one item"), c changes the answer and the
layer must follow it. References the code did not produce: closed forms solved by bisection in float64 on
the float θ given to the layer (projection onto {0 ≤ μ ≤ 1, Σμ = k} is clip(θ/s − τ, 0, 1); the entropic
solution is min(1, exp((θ − τ)/s − 1)); sparsemax and softmax are the k = 1 cases), and the sparsemax
Jacobian diag(σ) − σσ⊤/|σ| (σ the support).

Tolerances: the oracle is called at the true scores, of size |c|, so it cannot tell apart vertices whose
scores differ by less than about ε_dtype·|c|·max‖y‖₁; μ can be off by that much (ε·|c|·k·2/s, with a factor
2 of slack), and not by more. Before the offset was handled, float32 was off by 0.15–0.67 at c ≥ 100 and
float64 by 0.15–0.37 at c = 1e4.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from colayers import ArgmaxOneHot, FenchelYoungLoss, NegativeEntropy, RegularizedFrankWolfe, SquaredNorm, TopKSubset
from colayers.oracles.base import Oracle

OFFSETS = [0.0, 30.0, 100.0, 1e3, 1e4, -1e4]
DTYPES = [torch.float32, torch.float64]


def _bisect(total, lo, hi, target):
    """The τ in [lo, hi] with total(τ) = target, total decreasing in τ (float64, to the last bit)."""
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if total(mid) > target else (lo, mid)
    return 0.5 * (lo + hi)


def capped_projection(x: np.ndarray, k: int) -> np.ndarray:
    """Euclidean projection of x onto {0 <= mu <= 1, sum mu = k}: clip(x - tau, 0, 1)."""
    tau = _bisect(lambda t: np.clip(x - t, 0, 1).sum(), x.min() - 2, x.max() + 2, k)
    return np.clip(x - tau, 0, 1)


def capped_entropic(x: np.ndarray, k: int, s: float) -> np.ndarray:
    """argmax of <x, mu> - s sum mu log mu over {0 <= mu <= 1, sum mu = k}: min(1, exp((x - tau)/s - 1))."""
    def mu(t):
        return np.minimum(1.0, np.exp(np.minimum((x - t) / s - 1, 0.0)))

    span = 50 * s + (x.max() - x.min())
    tau = _bisect(lambda t: mu(t).sum(), x.min() - span, x.max() + span, k)
    return mu(tau)


def _reference(theta: torch.Tensor, k: int, reg) -> np.ndarray:
    x = theta.detach().double().numpy()  # the float theta the layer was given, exactly
    s = reg.strength
    if isinstance(reg, SquaredNorm):
        return np.stack([capped_projection(row / s, k) for row in x])
    return np.stack([capped_entropic(row, k, s) for row in x])


def _atol(dtype, offset, k, s):
    eps = torch.finfo(dtype).eps
    return 2 * eps * (abs(offset) + 10) * k * 2 / min(s, 1.0) + 1e-6 * (dtype == torch.float32) + 1e-12


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", OFFSETS)
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("reg", [SquaredNorm(1.0), SquaredNorm(0.3), NegativeEntropy(0.5)], ids=repr)
def test_a_common_offset_leaves_mu_unchanged_where_the_coordinate_sum_is_constant(dtype, offset, k, reg):
    theta = torch.randn(8, 7, generator=torch.Generator().manual_seed(k), dtype=torch.float64).to(dtype)
    oracle = ArgmaxOneHot() if k == 1 else TopKSubset(k)
    shifted = theta + torch.tensor(offset, dtype=dtype)
    mu = RegularizedFrankWolfe(oracle, regularizer=reg)(shifted)
    assert mu.dtype == dtype
    np.testing.assert_allclose(mu.double().numpy(), _reference(shifted, k, reg), rtol=0,
                               atol=_atol(dtype, offset, k, reg.strength))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0.0, 100.0, 1e4])
@pytest.mark.parametrize("reg", [SquaredNorm(1.0), NegativeEntropy(0.5)], ids=repr)
def test_the_jacobian_under_an_offset_is_the_closed_form(dtype, offset, reg):
    theta = torch.randn(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64).to(dtype)
    x = (theta + torch.tensor(offset, dtype=dtype)).requires_grad_(True)
    layer = RegularizedFrankWolfe(ArgmaxOneHot(), regularizer=reg)
    jac = torch.autograd.functional.jacobian(layer, x).double().numpy()
    mu = _reference(x.unsqueeze(0), 1, reg)[0]
    if isinstance(reg, SquaredNorm):  # sparsemax: diag(sigma) - sigma sigma^T / |sigma|
        sigma = (mu > 0).astype(float)
        expected = np.diag(sigma) - np.outer(sigma, sigma) / sigma.sum()
    else:  # softmax(theta / s): (diag(mu) - mu mu^T) / s
        expected = (np.diag(mu) - np.outer(mu, mu)) / reg.strength
    np.testing.assert_allclose(jac, expected, rtol=0, atol=_atol(dtype, offset, 1, reg.strength) * 10)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0.0, 100.0, 1e4])
def test_fenchel_young_gradient_under_an_offset_is_mu_minus_target(dtype, offset):
    theta = torch.randn(5, 6, generator=torch.Generator().manual_seed(4), dtype=torch.float64).to(dtype)
    x = (theta + torch.tensor(offset, dtype=dtype)).requires_grad_(True)
    y = torch.nn.functional.one_hot(torch.arange(5) % 6, 6).to(dtype)
    FenchelYoungLoss(RegularizedFrankWolfe(ArgmaxOneHot()), reduction="sum")(x, y).backward()
    expected = _reference(x, 1, SquaredNorm(1.0)) - y.double().numpy()
    np.testing.assert_allclose(x.grad.double().numpy(), expected, rtol=0, atol=_atol(dtype, offset, 1, 1.0))


class AtMostOne(Oracle):
    """Y = the one-hot vectors and 0 (coordinate sums 1 and 0): conv(Y) = {mu >= 0, sum mu <= 1}."""

    def solve(self, theta):
        best = theta.argmax(-1)
        y = torch.nn.functional.one_hot(best, theta.shape[-1]).to(theta.dtype)
        return y * (theta.amax(-1, keepdim=True) > 0).to(theta.dtype)


class UnitCube(Oracle):
    """Y = {0, 1}^d (every coordinate sum 0..d): conv(Y) = [0, 1]^d."""

    def solve(self, theta):
        return (theta > 0).to(theta.dtype)


def _at_most_one_reference(x: np.ndarray, reg) -> np.ndarray:
    """Projection onto {mu >= 0, sum mu <= 1} (tau >= 0 where the sum constraint binds); entropic likewise."""
    s = reg.strength
    out = []
    for row in x:
        if isinstance(reg, SquaredNorm):
            free = np.clip(row / s, 0, None)
            out.append(free if free.sum() <= 1 else capped_projection(row / s, 1))
        else:
            free = np.exp(row / s - 1)
            out.append(free if free.sum() <= 1 else capped_entropic(row, 1, s))
    return np.stack(out)


@pytest.mark.parametrize("offset", [-1.0, -0.4, 0.0, 0.4, 1.0, 50.0])
@pytest.mark.parametrize("reg", [SquaredNorm(1.0), NegativeEntropy(0.5)], ids=repr)
def test_an_offset_moves_mu_where_the_coordinate_sums_differ(offset, reg):
    """The solver must not center θ where the polytope's vertices have different sums: c changes μ there."""
    theta = 0.5 * torch.randn(8, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    x = theta + offset
    for oracle, reference in (
        (AtMostOne(), _at_most_one_reference(x.numpy(), reg)),
        (UnitCube(), np.clip(x.numpy() / reg.strength, 0, 1) if isinstance(reg, SquaredNorm)
         else np.minimum(1.0, np.exp(x.numpy() / reg.strength - 1))),
    ):
        mu = RegularizedFrankWolfe(oracle, regularizer=reg, max_iter=500)(x)
        np.testing.assert_allclose(mu.numpy(), reference, rtol=0, atol=1e-6, err_msg=type(oracle).__name__)
