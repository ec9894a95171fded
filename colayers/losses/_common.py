"""Pieces shared by the losses: reductions, inner products, solution-set membership, the sign check, hand-written
gradients. The frame that calls them (checks of θ and targets, reduction) is
:class:`~colayers.losses.base.StructuredLoss`."""

from __future__ import annotations

import functools

import torch

from .._validation import reduce
from ..oracles.base import Oracle

__all__: list[str] = []


def event_dims(event_ndim: int) -> tuple[int, ...]:
    return tuple(range(-event_ndim, 0))


def inner(a: torch.Tensor, b: torch.Tensor, event_ndim: int) -> torch.Tensor:
    """:math:`\\langle a, b\\rangle` over the trailing ``event_ndim`` dimensions (broadcasting)."""
    return (a * b).sum(dim=event_dims(event_ndim))


def check_oracle(name: str, oracle: object) -> Oracle:
    if not isinstance(oracle, Oracle):
        raise TypeError(
            f"{name} must be a colayers Oracle (e.g. ArgmaxOneHot(), TopKSubset(k)); got {type(oracle).__name__}"
        )
    return oracle


# -- membership of targets in the solution set Y ---------------------------------------------------------


def _is_binary(y: torch.Tensor) -> torch.Tensor:
    return (y == 0) | (y == 1)


def check_in_solution_set(
    name: str, y: torch.Tensor, oracle: Oracle | None, *, allow_relaxed: bool, what: str = "a solution in Y"
) -> None:
    """Raise a ValueError when ``oracle.contains(y)`` says some instance of ``y`` is not in Y.

    Nothing is checked with ``allow_relaxed``, without an oracle, or when the oracle cannot tell
    (:meth:`~colayers.oracles.Oracle.contains` returns ``None``): dispatch is on the oracle's capability, never
    on its class, so a user's oracle with a ``contains`` method gets its targets checked like a built-in one.
    """
    if allow_relaxed or oracle is None:
        return
    ok = oracle.contains(y)
    if ok is None:
        return
    if not bool(ok.all()):
        bad = (~ok).nonzero()
        first = tuple(int(i) for i in bad[0].tolist())
        raise ValueError(
            f"{name} must be {what} of {oracle!r} (oracle.contains({name}) is False); "
            f"{int((~ok).sum())} of {ok.numel()} instance(s) are not, first at batch index {first}. "
            "Pass allow_relaxed_targets=True to accept targets in the convex hull."
        )


@functools.cache
def sign_tolerance(dtype: torch.dtype) -> float:
    """Relative rounding tolerance of the sign check: 10·√ε of ``dtype`` (3.5e-3 in float32, 1.5e-7 in float64)."""
    return 10.0 * torch.finfo(dtype).eps ** 0.5


def sign_checkable(oracle: object) -> bool:
    """Whether a loss built on ``oracle`` is ≥ 0 by construction: its argmax maximizes its objective
    (:attr:`~colayers.oracles.Oracle.maximizes_objective`; ``True`` without an oracle)."""
    return oracle is None or bool(getattr(oracle, "maximizes_objective", True))


def negative_loss_hint(condition: str, call: str) -> str:
    """The hint of a failed sign check: when the loss is ≥ 0, and the two usual mistakes."""
    return (
        f"{condition}. Likely causes: a minimizing oracle (colayers oracles maximize: a cost minimizer such as "
        "scipy's linear_sum_assignment needs maximize=True, or theta = -cost), or swapped arguments (the call is "
        f"{call})."
    )


def check_nonnegative(loss: str, value: torch.Tensor, scale: torch.Tensor, hint: str) -> None:
    r"""Raise a ValueError where a loss that is ≥ 0 by construction came out negative beyond rounding.

    ``value`` and ``scale`` are per instance ``(*batch)``; ``scale`` is the size of the terms whose difference
    ``value`` is (e.g. :math:`|F(\theta, \hat y)| + |F(\theta, \bar y)|`), so the tolerance is
    :func:`sign_tolerance` × (1 + scale). Called only in validate mode: it costs one host synchronisation.
    """
    c = sign_tolerance(value.dtype)
    margin = torch.add(value, scale, alpha=c)  # value + c·scale < −c  ⟺  value < −c (1 + scale)
    if margin.numel() and float(margin.min()) < -c:  # one reduction, one read-back
        tol = c * (1.0 + scale)
        bad = value < -tol
        if not bool(bad.any()):  # the two roundings of the boundary disagree: within the tolerance
            return
        index = bad.nonzero()[0]
        first = tuple(int(i) for i in index.tolist())
        raise ValueError(
            f"{loss} is negative: {float(value[first]):.6g} at batch index {first} "
            f"({int(bad.sum())} of {bad.numel()} instance(s) below the rounding tolerance "
            f"-{float(tol[first]):.3g}). {hint} Pass validate_args=False to skip this check."
        )


def check_binary(name: str, y: torch.Tensor, *, allow_relaxed: bool) -> None:
    """0/1 entries (or, with ``allow_relaxed``, entries in [0, 1])."""
    if allow_relaxed:
        ok = (y >= 0) & (y <= 1)
        what = "entries in [0, 1]"
    else:
        ok = _is_binary(y)
        what = "0/1 entries (pass allow_relaxed_targets=True for targets in [0, 1])"
    if not bool(ok.all()):
        bad = (~ok).nonzero()[0].tolist()
        raise ValueError(
            f"{name} must have {what}; found {int((~ok).sum())} other entries, first at index {tuple(bad)} "
            f"with value {float(y[tuple(bad)])}"
        )


def check_simplex(name: str, y: torch.Tensor, *, allow_relaxed: bool, atol: float = 1e-5) -> None:
    """One-hot rows (or, with ``allow_relaxed``, rows in the probability simplex)."""
    nonneg = (y >= 0).all(dim=-1)
    sums = (y.sum(dim=-1) - 1).abs() <= atol * y.shape[-1]
    ok = nonneg & sums
    if not allow_relaxed:
        ok = ok & _is_binary(y).all(dim=-1)
        what = "one-hot along the last dimension (pass allow_relaxed_targets=True for probability vectors)"
    else:
        what = "a probability vector (non-negative, summing to 1) along the last dimension"
    if not bool(ok.all()):
        first = tuple(int(i) for i in (~ok).nonzero()[0].tolist())
        raise ValueError(f"{name} must be {what}; {int((~ok).sum())} row(s) are not, first at batch index {first}")


class _ValueWithGradient(torch.autograd.Function):
    """Return a precomputed per-instance value, reduced, whose gradient in θ is a precomputed tensor.

    ``forward(theta, value, grad, reduction)``: ``value`` is ``(*batch)``, ``grad`` is ``(*batch, *event)``
    (θ's shape), ``reduction`` one of ``"mean"``, ``"sum"``, ``"none"``; backward returns ``grad_output * grad``
    (divided by the number of instances for ``"mean"``). Used for losses whose (sub)gradient is known in closed
    form (Danskin's theorem), so that no oracle output enters autograd; the reduction is done here so that a step
    pays one autograd node for the loss.
    """

    @staticmethod
    def forward(ctx, theta, value, grad, reduction):  # noqa: D102 - ctx first, no setup_context: no argument binding
        ctx.save_for_backward(grad)
        ctx.reduction = reduction
        ctx.count = value.numel()
        return reduce(value, reduction) if reduction != "none" else value.clone()

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        (grad,) = ctx.saved_tensors
        if ctx.reduction == "none":
            go = grad_output.reshape(grad_output.shape + (1,) * (grad.ndim - grad_output.ndim))
            return go * grad, None, None, None
        if ctx.reduction == "mean" and ctx.count:
            grad_output = grad_output / ctx.count
        return grad * grad_output, None, None, None


def value_with_gradient(
    theta: torch.Tensor, value: torch.Tensor, grad: torch.Tensor, reduction: str = "none"
) -> torch.Tensor:
    """``value`` (detached) as a function of θ with gradient ``grad`` (see :class:`_ValueWithGradient`), reduced
    by ``reduction`` (``"mean"``, ``"sum"`` or ``"none"``)."""
    value = value.detach() if value.requires_grad else value
    grad = grad.detach() if grad.requires_grad else grad
    return _ValueWithGradient.apply(theta, value, grad, reduction)
