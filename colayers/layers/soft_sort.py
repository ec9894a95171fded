r"""Differentiable sorting and ranking by isotonic regression (Blondel, Teboul, Berthet, Djolonga, ICML 2020).

Sorting and ranking are linear programs over a permutahedron :math:`\mathcal P(w) = \mathrm{conv}\{w_\sigma :
\sigma \text{ a permutation}\}`: with :math:`\rho = (n, n-1, \dots, 1)`,

.. math::  s(\theta) = \operatorname*{argmax}_{\mu\in\mathcal P(\theta)} \langle\rho, \mu\rangle
           \quad\text{(θ sorted in descending order)},\qquad
           r(\theta) = \operatorname*{argmax}_{\mu\in\mathcal P(\rho)} \langle -\theta, \mu\rangle
           \quad\text{(ranks, the largest θ ranked 1)}.

Regularizing with :math:`\varepsilon\Psi` turns them into projections :math:`P_{\varepsilon\Psi}(z, w) =
\operatorname{argmax}_{\mu\in\mathcal P(w)}\langle z,\mu\rangle - \varepsilon\Psi(\mu)`, which reduce to an
isotonic regression solved exactly by pool-adjacent-violators (PAV). For sorted :math:`w_1\ge\dots\ge w_n`
and :math:`\sigma` the permutation that sorts z in descending order,

.. math::  P_\Psi(z, w) = z - v_\Psi(z_\sigma, w)_{\sigma^{-1}},

* ``"l2"`` (:math:`\Psi = Q = \tfrac12\|\cdot\|^2`): :math:`P_{\varepsilon Q}(z, w) = P_Q(z/\varepsilon, w)`,
  the Euclidean projection of :math:`z/\varepsilon` onto :math:`\mathcal P(w)`, with
  :math:`v_Q(s, w) = \operatorname{argmin}_{v_1\ge\dots\ge v_n}\tfrac12\|v - (s - w)\|^2`;
* ``"kl"`` (:math:`\Psi = E`, :math:`E(\mu) = \langle\mu, \log\mu - 1\rangle`):
  :math:`P_E(z, w) = \log\operatorname{argmin}_{\mu\in\mathcal P(e^w)} \mathrm{KL}(\mu, e^z)`, with
  :math:`v_E(s, w) = \operatorname{argmin}_{v_1\ge\dots\ge v_n}\langle e^{s - v}, 1\rangle + \langle e^w, v\rangle`.

The isotonic solution is constant on blocks :math:`B` of consecutive indices, with value
:math:`\gamma_Q(B) = \frac1{|B|}\sum_{i\in B}(s_i - w_i)` or :math:`\gamma_E(B) = \log\sum_{i\in B}e^{s_i} -
\log\sum_{i\in B}e^{w_i}`, so its Jacobian is block-diagonal: :math:`\partial v/\partial s` is the block
averaging :math:`\frac1{|B|}\mathbf 1\mathbf 1^\top` (Q) or :math:`\mathbf 1\,\mathrm{softmax}(s_B)^\top` (E),
and :math:`\partial v/\partial w` is :math:`-\frac1{|B|}\mathbf 1\mathbf 1^\top` or
:math:`-\mathbf 1\,\mathrm{softmax}(w_B)^\top`. :class:`IsotonicRegression` implements that exact VJP;
sorting permutations are differentiated by autograd (they are locally constant).

The soft operators (with ε the regularization ``strength``):

* soft sort, descending: :math:`s_{\varepsilon\Psi}(\theta) = P_{\varepsilon\Psi}(\rho, \theta)`, a point of
  :math:`\mathcal P(\theta)` (``"l2"``) or of :math:`\log\mathcal P(e^\theta)` (``"kl"``);
* soft rank, descending: :math:`r_{\varepsilon\Psi}(\theta) = P_{\varepsilon\Psi}(-\theta, \rho)` (``"l2"``) or
  :math:`\exp P_{\varepsilon E}(-\theta, \log\rho)` (``"kl"``), a point of :math:`\mathcal P(\rho)`;
* ascending (the default, as :class:`~colayers.oracles.Ranking`: the largest θ gets rank n) use θ in place of
  −θ for ranks, and :math:`-s_{\varepsilon\Psi}(-\theta)` for sorts.

Soft ranks are a regularized layer over the ranking polytope: ascending ``"l2"`` soft ranks are
:math:`\operatorname{argmax}_{\mu\in\mathcal P(1..n)}\langle\theta,\mu\rangle - \tfrac\varepsilon2\|\mu\|^2`
and ascending ``"kl"`` soft ranks :math:`\operatorname{argmax}_{\mu\in\mathcal P(1..n)}\langle\theta,\mu\rangle
- \varepsilon\sum_i\mu_i\log\mu_i`, i.e. :class:`~colayers.layers.RegularizedFrankWolfe` on
:class:`~colayers.oracles.Ranking` with the same regularizer (computed here exactly in
:math:`O(n\log n)` (a sort and a linear-time PAV) instead of by Frank-Wolfe). As :math:`\varepsilon\to 0` the soft
operators tend to the hard sort and ranks; as :math:`\varepsilon\to\infty` to the mean (``"l2"``).

**The PAV solvers.** On the CPU (float32 and float64), a compiled stack PAV (:mod:`colayers.layers._pav`,
numba) scans each row once and pools on the fly: linear time per row, whatever the number of pooling rounds.
On other devices (and half precision) the solver runs on the whole batch at once, on θ's device, with no
Python loop over rows or positions: every round pools *all* adjacent violating blocks of every row
simultaneously (segment sums by ``scatter_add``), which is exact because in an isotonic regression with a
separable strictly convex loss two adjacent blocks whose own optima violate the order share their value in
the solution. It stops when no row has a violation (one device synchronisation per round); the number of
rounds is at most n, usually a handful, but grows with n and ε (hundreds for ``"kl"`` at n = 10,000,
ε = 1). Both return the block partition, from which the exact Jacobian is computed on θ's device.

References: M. Blondel, O. Teboul, Q. Berthet, J. Djolonga, *Fast Differentiable Sorting and Ranking*,
ICML 2020; R. Barlow, D. Bartholomew, J. Bremner, H. Brunk, *Statistical Inference under Order
Restrictions*, 1972 (pool-adjacent-violators).
"""

from __future__ import annotations

import math

import torch

from .._validation import (
    ValidateArgs,
    boolean,
    check_args,
    check_positive,
    check_tensor,
    check_theta,
    on_compiled_cpu,
    resolve_validate_args,
)
from ..oracles._membership import permutation_of_ranks

__all__ = [
    "isotonic_regression",
    "soft_sort",
    "soft_rank",
    "SoftSort",
    "SoftRank",
]

_REGULARIZATIONS = ("l2", "kl")


def _check_regularization(regularization: str) -> str:
    if regularization not in _REGULARIZATIONS:
        raise ValueError(f"regularization must be one of {_REGULARIZATIONS}; got {regularization!r}")
    return regularization


def _segment_sum(x: torch.Tensor, bid: torch.Tensor) -> torch.Tensor:
    """Per-row sums of ``x`` ``(B, n)`` over the block ids ``bid`` ``(B, n)`` (block j at column j);
    differentiable in ``x``."""
    return torch.scatter_add(torch.zeros_like(x), 1, bid, x)


def _segment_logsumexp(x: torch.Tensor, bid: torch.Tensor) -> torch.Tensor:
    """Per-row log-sum-exp of ``x`` over blocks (unused block slots hold -inf); differentiable in ``x``."""
    top = torch.full_like(x, float("-inf")).scatter_reduce_(1, bid, x.detach(), "amax", include_self=True)
    shifted = torch.exp(x - top.gather(1, bid))
    return top + torch.log(_segment_sum(shifted, bid))


def _block_values(s: torch.Tensor, w: torch.Tensor, bid: torch.Tensor, kl: bool) -> torch.Tensor:
    """γ(B) per block slot, ``(B, n)`` (slots past the last block are garbage, never gathered)."""
    if kl:
        return _segment_logsumexp(s, bid) - _segment_logsumexp(w, bid)
    ones = torch.ones_like(s)
    return _segment_sum(s - w, bid) / _segment_sum(ones, bid).clamp(min=1.0)


@torch.no_grad()
def _pav(s: torch.Tensor, w: torch.Tensor, kl: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Decreasing isotonic regression of flat rows ``(B, n)``: returns ``(v, bid)``, the solution and the
    block id of every entry (blocks numbered 0, 1, ... from the left in each row). CPU float32/float64 rows
    go to the compiled linear-time PAV (:func:`_pav_compiled`), everything else (CUDA, half precision) to the
    batched rounds of :func:`_pav_rounds`."""
    if on_compiled_cpu(s, w):
        return _pav_compiled(s, w, kl)
    return _pav_rounds(s, w, kl)


def _pav_compiled(s: torch.Tensor, w: torch.Tensor, kl: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The stack PAV of :mod:`colayers.layers._pav` (numba, linear time per row) on CPU rows ``(B, n)``."""
    from ._pav import pav_rows  # numba is imported (and the kernel loaded from its cache) on first use

    s, w = s.detach().contiguous(), w.detach().contiguous()
    v, bid = torch.empty_like(s), torch.empty(s.shape, dtype=torch.int64)
    if s.numel():
        pav_rows(s.numpy(), w.numpy(), kl, v.numpy(), bid.numpy())
    return v, bid


@torch.no_grad()
def _pav_rounds(s: torch.Tensor, w: torch.Tensor, kl: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The batched PAV (any device): every round pools all adjacent violating blocks of every row at once;
    the same ``(v, bid)`` as :func:`_pav_compiled` (identical blocks where no two adjacent levels tie)."""
    b, n = s.shape
    start = torch.ones(b, n, dtype=torch.bool, device=s.device)
    while True:
        bid = start.cumsum(1) - 1
        v = _block_values(s, w, bid, kl).gather(1, bid)
        # entries of one block hold the same gathered value, so only block boundaries can violate
        violation = v[:, :-1] < v[:, 1:]
        if not bool(violation.any()):
            return v, bid
        start[:, 1:] &= ~violation


class IsotonicRegression(torch.autograd.Function):
    r"""``apply(s, w, regularization)`` on flat rows ``(B, n)``: ``(v, blocks)``, the decreasing isotonic
    regression :math:`v_\Psi(s, w)` (see the module docstring) and the block id of every entry (a
    non-differentiable output), with the exact block-wise VJP

    .. math::  \bar s_k = c_k \textstyle\sum_{i\in B(k)}\bar v_i, \qquad
               \bar w_k = -c'_k \textstyle\sum_{i\in B(k)}\bar v_i,

    :math:`c_k = c'_k = 1/|B(k)|` for ``"l2"``, :math:`c_k = \mathrm{softmax}(s_{B(k)})_k` and
    :math:`c'_k = \mathrm{softmax}(w_{B(k)})_k` for ``"kl"``, B(k) the block of k.
    """

    @staticmethod
    def forward(s, w, regularization):
        return _pav(s, w, regularization == "kl")

    @staticmethod
    def setup_context(ctx, inputs, output):
        s, w, regularization = inputs
        _, bid = output
        ctx.mark_non_differentiable(bid)
        ctx.kl = regularization == "kl"
        if ctx.kl:
            ctx.save_for_backward(bid, s, w)
        else:
            ctx.save_for_backward(bid)

    @staticmethod
    def backward(ctx, grad_v, _grad_bid):
        if ctx.kl:
            bid, s, w = ctx.saved_tensors
            total = _segment_sum(grad_v, bid).gather(1, bid)  # Σ_{i∈B(k)} v̄_i at every k
            soft_s = torch.exp(s - _segment_logsumexp(s, bid).gather(1, bid))
            soft_w = torch.exp(w - _segment_logsumexp(w, bid).gather(1, bid))
            return soft_s * total, -soft_w * total, None
        (bid,) = ctx.saved_tensors
        size = _segment_sum(torch.ones_like(grad_v), bid).gather(1, bid)
        mean = _segment_sum(grad_v, bid).gather(1, bid) / size
        return mean, -mean, None


def _check_theta(theta: torch.Tensor, validate: bool | None) -> None:
    check_theta(theta, None, 1, resolve_validate_args(validate))


def _check_strength(strength: float) -> float:
    strength = check_positive("strength", strength)
    if not math.isfinite(strength):
        raise ValueError(f"strength must be a finite number > 0; got {strength!r}")
    return strength


def isotonic_regression(s: torch.Tensor, w: torch.Tensor | None = None, *, regularization: str = "l2") -> torch.Tensor:
    r"""Decreasing isotonic regression over the last dimension, batched, with its exact Jacobian.

    ``"l2"``: :math:`\operatorname{argmin}_{v_1\ge\dots\ge v_n}\tfrac12\|v - (s - w)\|^2`;
    ``"kl"``: :math:`\operatorname{argmin}_{v_1\ge\dots\ge v_n}\langle e^{s-v}, 1\rangle + \langle e^w,
    v\rangle`. Solved by pool-adjacent-violators on every row at once (see the module docstring).

    Args:
        s: ``(*batch, n)``.
        w: broadcastable to ``s`` (``None``: zeros).
        regularization: ``"l2"`` or ``"kl"``.

    Returns:
        v, the shape of ``s``.

    Example:
        >>> isotonic_regression(torch.tensor([1.0, 3.0, 2.0, 0.0]))
        tensor([2., 2., 2., 0.])
        >>> isotonic_regression(torch.tensor([0.0, 1.0]), regularization="kl")  # log((1 + e) / 2)
        tensor([0.6201, 0.6201])
    """
    check_tensor("s", s)
    _check_regularization(regularization)
    if s.ndim < 1:
        raise ValueError(f"s must have at least 1 dimension (*batch, n); got shape {tuple(s.shape)}")
    if w is None:
        w = torch.zeros_like(s)
    check_tensor("w", w)
    s, w = torch.broadcast_tensors(s, w)
    shape = s.shape
    v, _ = IsotonicRegression.apply(s.reshape(-1, shape[-1]), w.reshape(-1, shape[-1]), regularization)
    return v.reshape(shape)


def _primal(z: torch.Tensor, w: torch.Tensor, regularization: str) -> torch.Tensor:
    r""":math:`z - v_\Psi(z, w)` on flat rows ``(B, n)``, z and w both in descending order.

    Written per block as :math:`(z_i - \bar z_B) + \bar w_B` (block means for ``"l2"``, log-sum-exps for
    ``"kl"``) rather than :math:`z_i - \gamma(B)`: that is the same number, but it keeps the entries of
    θ-sized z from cancelling against w (a singleton block gives :math:`w_i` exactly). The blocks come from
    PAV and are locally constant; the differentiable segment operations give the exact Jacobian.
    """
    _, bid = IsotonicRegression.apply(z.detach(), w.detach(), regularization)
    if regularization == "kl":
        return (z - _segment_logsumexp(z, bid).gather(1, bid)) + _segment_logsumexp(w, bid).gather(1, bid)
    size = _segment_sum(torch.ones_like(z), bid).clamp(min=1.0)  # unused slots: 0 / 1, never gathered
    z_mean = (_segment_sum(z, bid) / size).gather(1, bid)
    return (z - z_mean) + (_segment_sum(w, bid) / size).gather(1, bid)


def _projection(z: torch.Tensor, w: torch.Tensor, regularization: str) -> torch.Tensor:
    r""":math:`P_\Psi(z, w) = z - v_\Psi(z_\sigma, w)_{\sigma^{-1}}` on flat rows ``(B, n)``, ``w`` sorted
    in descending order (``(B, n)``)."""
    z_sorted, perm = torch.sort(z, dim=-1, descending=True, stable=True)
    return torch.scatter(torch.empty_like(z), -1, perm, _primal(z_sorted, w, regularization))


def _flat(theta: torch.Tensor) -> torch.Tensor:
    return theta.reshape(math.prod(theta.shape[:-1]), theta.shape[-1])


def _rho(n: int, like: torch.Tensor) -> torch.Tensor:
    """(n, n-1, ..., 1) in θ's dtype and device."""
    return torch.arange(n, 0, -1, dtype=like.dtype, device=like.device)


def soft_rank(
    theta: torch.Tensor,
    *,
    strength: float = 1.0,
    regularization: str = "l2",
    descending: bool = False,
    validate_args: bool | None = None,
) -> torch.Tensor:
    r"""Soft ranks over the last dimension (Blondel et al., ICML 2020).

    Ascending (the default; the largest θ gets rank n, as :class:`~colayers.oracles.Ranking`), with
    :math:`\varepsilon` = ``strength`` and :math:`\mathcal P` the permutahedron of :math:`(1, \dots, n)`:

    .. math::  r(\theta) = \operatorname*{argmax}_{\mu\in\mathcal P}\langle\theta,\mu\rangle
               - \varepsilon\,\Omega(\mu), \qquad \Omega(\mu) = \tfrac12\|\mu\|^2\ (\texttt{"l2"})
               \text{ or } \textstyle\sum_i \mu_i\log\mu_i\ (\texttt{"kl"}),

    computed as :math:`P_Q(\theta/\varepsilon, \rho)` or :math:`\exp P_E(\theta/\varepsilon, \log\rho)`
    by pool-adjacent-violators, with the exact Jacobian. ``descending=True`` ranks the largest θ first
    (:math:`\theta \to -\theta`). Hard ranks as :math:`\varepsilon\to 0`; :math:`\frac{n+1}2` everywhere as
    :math:`\varepsilon\to\infty`.

    Args:
        theta: ``(*batch, n)`` scores.
        strength: ε > 0.
        regularization: ``"l2"`` (piecewise linear in θ) or ``"kl"`` (entropic).
        descending: rank 1 for the largest θ instead of the smallest.
        validate_args: check that θ is finite.

    Returns:
        ``(*batch, n)`` soft ranks, a point of the permutahedron of :math:`(1, \dots, n)`.

    Example:
        >>> import torch
        >>> soft_rank(torch.tensor([0.0, 3.0, 1.0]), strength=0.1)  # hard ranks
        tensor([1., 3., 2.])
        >>> soft_rank(torch.tensor([0.0, 0.5]), strength=1.0)  # 1.5 -+ 0.5 / 2
        tensor([1.2500, 1.7500])
    """
    _check_theta(theta, validate_args)
    strength = _check_strength(strength)
    _check_regularization(regularization)
    z = _flat(-theta if descending else theta) / strength
    rho = _rho(theta.shape[-1], theta).expand_as(z)
    if regularization == "kl":
        out = torch.exp(_projection(z, torch.log(rho), "kl"))
    else:
        out = _projection(z, rho, "l2")
    return out.reshape(theta.shape)


def soft_sort(
    theta: torch.Tensor,
    *,
    strength: float = 1.0,
    regularization: str = "l2",
    descending: bool = False,
    validate_args: bool | None = None,
) -> torch.Tensor:
    r"""Soft sort over the last dimension (Blondel et al., ICML 2020).

    Descending: :math:`s(\theta) = P_{\varepsilon\Psi}(\rho, \theta) = \operatorname*{argmax}_{\mu\in
    \mathcal P(\theta)}\langle\rho,\mu\rangle - \varepsilon\,\Psi(\mu)` for ``"l2"`` (a point of the
    permutahedron of θ: the Euclidean projection of :math:`\rho/\varepsilon` onto it), and
    :math:`P_E(\rho/\varepsilon, \theta)` (a point of :math:`\log\mathcal P(e^\theta)`) for ``"kl"``, with
    :math:`\rho = (n, \dots, 1)`; ascending (the default) is :math:`-s(-\theta)`. Computed by pool-adjacent-violators
    with the exact Jacobian. The hard sort as :math:`\varepsilon\to 0`; the mean of θ everywhere as
    :math:`\varepsilon\to\infty` (``"l2"``).

    Args:
        theta: ``(*batch, n)`` values.
        strength: ε > 0.
        regularization: ``"l2"`` or ``"kl"``.
        descending: sort from the largest value down.
        validate_args: check that θ is finite.

    Returns:
        ``(*batch, n)`` soft-sorted values.

    Example:
        >>> import torch
        >>> soft_sort(torch.tensor([2.0, 0.0, 1.0]), strength=0.1)  # hard sort
        tensor([0., 1., 2.])
        >>> soft_sort(torch.tensor([0.0, 2.0]), strength=1.0)  # 1 -+ min(1 / (2 eps), 1)
        tensor([0.5000, 1.5000])
    """
    _check_theta(theta, validate_args)
    strength = _check_strength(strength)
    _check_regularization(regularization)
    values = _flat(theta if descending else -theta)
    w = torch.sort(values, dim=-1, descending=True, stable=True).values
    z = (_rho(theta.shape[-1], theta) / strength).expand_as(w)  # already in descending order: sigma = id
    out = _primal(z, w, regularization)
    return (out if descending else 0.0 - out).reshape(theta.shape)  # 0 - x: no signed zeros


class SoftSort(torch.nn.Module):
    r"""Module form of :func:`soft_sort` (soft sort by isotonic regression; Blondel et al., ICML 2020).

    Args:
        strength: the regularization strength ε > 0.
        regularization: ``"l2"`` or ``"kl"``.
        descending: sort from the largest value down (default: ascending), a bool.
        validate_args: check that θ is finite on every call.

    Example:
        >>> import torch
        >>> SoftSort(strength=0.01)(torch.tensor([[3.0, 1.0, 2.0]]))
        tensor([[1., 2., 3.]])
    """

    validate_args = ValidateArgs()  # None follows set_default_validate_args
    arg_constraints = {"descending": boolean}

    def __init__(
        self,
        *,
        strength: float = 1.0,
        regularization: str = "l2",
        descending: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__()
        self.strength = _check_strength(strength)
        self.regularization = _check_regularization(regularization)
        self.descending = check_args(self, descending=descending)["descending"]
        self.validate_args = validate_args

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return soft_sort(
            theta,
            strength=self.strength,
            regularization=self.regularization,
            descending=self.descending,
            validate_args=self.validate_args,
        )

    def extra_repr(self) -> str:
        return f"strength={self.strength}, regularization={self.regularization!r}, descending={self.descending}"


class SoftRank(torch.nn.Module):
    r"""Module form of :func:`soft_rank`: a regularized layer over the ranking polytope.

    Ascending soft ranks are :math:`\operatorname{argmax}_{\mu\in\mathcal P(1..n)}\langle\theta,\mu\rangle
    - \Omega(\mu)` with :math:`\Omega(\mu) = \tfrac\varepsilon2\|\mu\|^2` (``"l2"``) or
    :math:`\varepsilon\sum_i\mu_i\log\mu_i` (``"kl"``), exposed as :meth:`omega` (so that a Fenchel-Young
    loss can use it); a descending layer maximizes :math:`\langle-\theta,\mu\rangle - \Omega(\mu)` and has
    no ``omega`` attribute.

    Args:
        strength: the regularization strength ε > 0.
        regularization: ``"l2"`` or ``"kl"``.
        descending: rank 1 for the largest θ (default: the largest θ gets rank n), a bool.
        validate_args: check that θ is finite on every call.

    Example:
        >>> import torch
        >>> layer = SoftRank(strength=0.01)
        >>> layer(torch.tensor([[0.3, -2.0, 5.0]]))
        tensor([[2., 1., 3.]])
        >>> round(float(layer.omega(torch.tensor([2.0, 1.0, 3.0]))), 6)  # 0.01 / 2 * 14
        0.07
    """

    validate_args = ValidateArgs()  # None follows set_default_validate_args
    arg_constraints = {"descending": boolean}

    def __init__(
        self,
        *,
        strength: float = 1.0,
        regularization: str = "l2",
        descending: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__()
        self.strength = _check_strength(strength)
        self.regularization = _check_regularization(regularization)
        self.descending = check_args(self, descending=descending)["descending"]
        self.validate_args = validate_args

    def forward(self, theta: torch.Tensor) -> torch.Tensor:
        return soft_rank(
            theta,
            strength=self.strength,
            regularization=self.regularization,
            descending=self.descending,
            validate_args=self.validate_args,
        )

    @property
    def omega(self):
        r""":math:`\Omega(\mu)` over the last dimension, shape ``(*batch)`` (ascending layers only)."""
        if self.descending:
            raise AttributeError("a descending SoftRank maximizes <-theta, mu> - Omega(mu) and has no omega")
        return self._omega

    def _omega(self, mu: torch.Tensor) -> torch.Tensor:
        if self.regularization == "kl":
            return self.strength * torch.xlogy(mu, mu).sum(-1)
        return 0.5 * self.strength * (mu * mu).sum(-1)

    def contains(self, y: torch.Tensor) -> torch.Tensor:
        r"""Whether each row of ``y`` ``(*batch, n)`` is a rank vector, a permutation of :math:`(1, \dots, n)`:
        the vertices of the permutahedron the layer's output lies in (a bool tensor ``(*batch)``; entries that
        are not finite are not ranks). :class:`~colayers.losses.FenchelYoungLoss` checks its targets with it.

        Example:
            >>> SoftRank().contains(torch.tensor([[2.0, 1.0, 3.0], [1.0, 1.0, 3.0]]))
            tensor([ True, False])
        """
        if not isinstance(y, torch.Tensor) or y.ndim == 0:
            raise ValueError(f"y must be a tensor of rank vectors (*batch, n); got {type(y).__name__} "
                             f"{tuple(getattr(y, 'shape', ()))}")
        return permutation_of_ranks(y)

    def extra_repr(self) -> str:
        return f"strength={self.strength}, regularization={self.regularization!r}, descending={self.descending}"
