r"""The compiled CPU kernel of the score-function VJP for an additive perturbation with Normal noise (numba),
imported on first use.

For :math:`\eta_s = \theta + \varepsilon Z_s` with :math:`Z_s \sim \mathcal N(0, I)` the score is
:math:`\nabla_\theta\log p(\eta_s\mid\theta) = Z_s/\varepsilon`, and the VJP of the perturbed mean is, per instance,

.. math::  \frac{1}{S\varepsilon}\sum_s w_s Z_s, \qquad w_s = \langle v_s, \bar y\rangle - b_s,

with :math:`b_s` the leave-one-out mean of the other samples' inner products
(:math:`w_s = \frac{S}{S-1}(\langle v_s, \bar y\rangle - \overline{\langle v, \bar y\rangle})`, S ≥ 2) or 0. One
pass over the values, :math:`\bar y` and the noise replaces the nine tensor operations of
:func:`~colayers.layers.rules.score_function_vjp`; the sums are accumulated in float64 and rounded once.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

__all__ = ["additive_normal_vjp"]


@numba.njit(cache=True, nogil=True)
def _vjp(values, grad_output, noise, scale, centering):  # pragma: no cover - jit
    """``values`` (S, N, V), ``grad_output`` (N, V), ``noise`` (S, N, E) -> (N, E); ``centering`` S/(S-1), or 0 for
    no baseline; ``scale`` 1/(S ε)."""
    num, n, nv = values.shape
    ne = noise.shape[2]
    grad = np.empty((n, ne), noise.dtype)
    inner = np.empty(num, np.float64)
    acc = np.empty(ne, np.float64)
    for i in range(n):
        mean = 0.0
        for s in range(num):
            a = 0.0
            for j in range(nv):
                a += np.float64(values[s, i, j]) * grad_output[i, j]
            inner[s] = a
            mean += a
        mean /= num
        acc[:] = 0.0
        for s in range(num):
            w = (inner[s] - mean) * centering if centering > 0.0 else inner[s]
            for j in range(ne):
                acc[j] += w * noise[s, i, j]
        for j in range(ne):
            grad[i, j] = acc[j] * scale
    return grad


def additive_normal_vjp(
    values: torch.Tensor,
    grad_output: torch.Tensor,
    noise: torch.Tensor,
    epsilon: float,
    value_ndim: int,
    baseline: bool,
) -> torch.Tensor:
    """The VJP, of the shape of one noise draw ``noise.shape[1:]`` (θ's), from ``values`` ``(S, *batch, *value)``,
    ``grad_output`` ``(*batch, *value)`` and ``noise`` ``(S, *batch, *event)``: CPU tensors of one dtype in
    :data:`~colayers._validation.COMPILED_DTYPES`."""
    num = values.shape[0]
    batch = grad_output.shape[: grad_output.ndim - value_ndim]
    n = math.prod(batch)
    if n == 0 or noise[0].numel() == 0:
        return noise.new_zeros(noise.shape[1:])
    nv = math.prod(grad_output.shape[grad_output.ndim - value_ndim :])
    centering = num / (num - 1) if baseline and num > 1 else 0.0
    flat = len(batch) == 1 and value_ndim == 1 and noise.ndim == 3
    if flat:  # (S, N, V), (N, V), (S, N, E) already
        arrays = (values, grad_output, noise)
    else:
        arrays = (values.reshape(num, n, nv), grad_output.reshape(n, nv), noise.reshape(num, n, -1))
    grad = _vjp(*(a.contiguous().numpy() for a in arrays), 1.0 / (num * epsilon), centering)
    grad = torch.from_numpy(grad)
    return grad if flat else grad.reshape(noise.shape[1:])
