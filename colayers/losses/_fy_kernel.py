r"""The compiled CPU kernel of the perturbed Fenchel-Young statistics for a linear objective (numba), imported on
first use.

For an oracle whose objective is :math:`\langle\eta, y\rangle` (``g`` the identity, no ``h``), S perturbed scores
:math:`\eta_s`, their solutions :math:`y_s` and a target :math:`\bar y`, one pass over the three arrays gives, per
instance,

.. math::  \hat L = \frac1S\sum_s \langle\eta_s, y_s\rangle - \langle\eta_s, \bar y\rangle, \qquad
           \text{scale} = \frac1S\sum_s |\langle\eta_s, y_s\rangle| + |\langle\eta_s, \bar y\rangle|, \qquad
           \hat\mu - \bar y = \frac1S\sum_s y_s - \bar y,

the value, the size of its terms (for the sign check) and the gradient of an additive perturbation, which
:class:`~colayers.losses.FenchelYoungLoss` otherwise computes with about a dozen tensor operations. The inner
products are accumulated in float64 (at least as accurate as torch's float32 sums) and rounded once to the
inputs' dtype; the mean of the solutions is their float64 sum divided by S, rounded once.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

__all__ = ["linear_statistics"]


@numba.njit(cache=True, nogil=True)
def _statistics(eta, atoms, target, tolerance):  # pragma: no cover - jit
    """``eta``, ``atoms`` (S, N, E) and ``target`` (N, E): value (N), scale (N), mean of atoms − target (N, E), and
    the lowest ``value + tolerance (1 + scale)`` (in float64; +inf for no instance)."""
    lowest = np.inf
    num, n, e = eta.shape
    value = np.empty(n, eta.dtype)
    scale = np.empty(n, eta.dtype)
    grad = np.empty((n, e), eta.dtype)
    acc = np.empty(e, np.float64)
    for i in range(n):
        y = target[i]
        acc[:] = 0.0
        v = 0.0
        size = 0.0
        for s in range(num):
            x = eta[s, i]
            a = atoms[s, i]
            best = 0.0
            at_target = 0.0
            for j in range(e):
                xj = np.float64(x[j])
                best += xj * a[j]
                at_target += xj * y[j]
                acc[j] += a[j]
            v += best - at_target
            size += abs(best) + abs(at_target)
        value[i] = v / num
        scale[i] = size / num
        margin = v / num + tolerance * (1.0 + size / num)
        if margin < lowest:
            lowest = margin
        for j in range(e):
            grad[i, j] = acc[j] / num - y[j]
    return value, scale, grad, lowest


def linear_statistics(
    eta: torch.Tensor, atoms: torch.Tensor, target: torch.Tensor, event_ndim: int, tolerance: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    r"""``(value, scale, grad, lowest)``: tensors of shapes ``(*batch)``, ``(*batch)``, ``target.shape`` from ``eta``
    and ``atoms`` ``(S, *batch, *event)`` and ``target`` ``(*batch, *event)``, CPU tensors of one dtype in
    :data:`~colayers._validation.COMPILED_DTYPES`, and the lowest
    :math:`\hat L + \text{tolerance}\,(1 + \text{scale})` over the instances (the rule of
    :func:`~colayers.losses._common.check_nonnegative`: below 0, the sign check fails; +inf for none)."""
    batch = target.shape[: target.ndim - event_ndim]
    num, e = eta.shape[0], math.prod(target.shape[target.ndim - event_ndim :])
    if target.numel() == 0:  # no instance or an empty event: every sum is 0
        lowest = math.inf if math.prod(batch) == 0 else tolerance  # no instance, or values 0 and scales 0
        return target.new_zeros(batch), target.new_zeros(batch), target.new_zeros(target.shape), lowest
    flat = len(batch) == 1 and event_ndim == 1  # (S, N, E) and (N, E) already
    value, scale, grad, lowest = _statistics(
        _array(eta, None if flat else (num, -1, e)),
        _array(atoms, None if flat else (num, -1, e)),
        _array(target, None if flat else (-1, e)),
        tolerance,
    )
    value, scale, grad = torch.from_numpy(value), torch.from_numpy(scale), torch.from_numpy(grad)
    if len(batch) != 1:
        value, scale = value.reshape(batch), scale.reshape(batch)
    return value, scale, grad if grad.shape == target.shape else grad.reshape(target.shape), lowest


def _array(t: torch.Tensor, shape: tuple[int, ...] | None) -> np.ndarray:
    """``t`` (reshaped to ``shape`` unless ``None``) as a C-contiguous array sharing its memory where it can."""
    t = t.detach() if t.requires_grad else t
    return (t if shape is None else t.reshape(shape)).contiguous().numpy()
