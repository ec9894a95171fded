"""Pieces shared by the losses: reductions, inner products, solution-set membership, the sign check, hand-written
gradients. The frame that calls them (checks of θ and targets, reduction) is
:class:`~colayers.losses.base.StructuredLoss`."""

from __future__ import annotations

import torch

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
    tol = sign_tolerance(value.dtype) * (1.0 + scale)
    bad = value < -tol
    if bool(bad.any()):
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
    """Return a precomputed per-instance value whose gradient in θ is a precomputed tensor.

    ``forward(theta, value, grad)``: ``value`` is ``(*batch)``, ``grad`` is ``(*batch, *event)`` (θ's shape);
    backward returns ``grad_output * grad``. Used for losses whose (sub)gradient is known in closed form
    (Danskin's theorem), so that no oracle output enters autograd.
    """

    @staticmethod
    def forward(ctx, theta, value, grad):  # noqa: D102 - ctx first, no setup_context: no argument binding per call
        ctx.save_for_backward(grad)
        return value.clone()

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        (grad,) = ctx.saved_tensors
        go = grad_output.reshape(grad_output.shape + (1,) * (grad.ndim - grad_output.ndim))
        return go * grad, None, None




def value_with_gradient(theta: torch.Tensor, value: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """``value`` (detached) as a function of θ with gradient ``grad`` (see :class:`_ValueWithGradient`)."""
    return _ValueWithGradient.apply(theta, value.detach(), grad.detach())
