r"""The SPO+ loss of Elmachtoub & Grigas (Management Science, 2022), in the maximization convention."""

from __future__ import annotations

import torch
from torch import nn

from .._validation import ValidateArgs, resolve_validate_args
from ..oracles.base import Oracle
from ._common import (
    check_alpha,
    check_in_solution_set,
    check_like_theta,
    check_nonnegative,
    check_oracle,
    check_reduction_arg,
    check_theta,
    reduce,
    sign_checkable,
)

__all__ = ["SPOPlusLoss", "spo_plus_loss"]

_SIGN_HINT = (
    "SPO+ is >= 0 when the oracle maximizes <theta, g(y)> + h(y) over a set Y that holds y_target. Likely causes: "
    "a minimizing oracle (colayers oracles maximize: a cost minimizer such as scipy's linear_sum_assignment needs "
    "maximize=True, or theta = -cost), or swapped arguments (the call is loss(theta, theta_true, y_target))."
)


class _SPOPlusFunction(torch.autograd.Function):
    """Value and hand-written subgradient of SPO+; the oracle output never enters autograd."""

    @staticmethod
    def forward(theta, theta_true, value, g_diff, alpha):  # noqa: D102
        return value.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):  # noqa: D102
        _, _, _, g_diff, alpha = inputs
        ctx.save_for_backward(g_diff)
        ctx.alpha = alpha

    @staticmethod
    def backward(ctx, grad_output):  # noqa: D102
        (g_diff,) = ctx.saved_tensors
        go = grad_output.reshape(grad_output.shape + (1,) * (g_diff.ndim - grad_output.ndim))
        grad_theta = go * (ctx.alpha * g_diff) if ctx.needs_input_grad[0] else None
        grad_true = -go * g_diff if ctx.needs_input_grad[1] else None
        return grad_theta, grad_true, None, None, None


def spo_plus_loss(
    theta: torch.Tensor,
    theta_true: torch.Tensor,
    oracle: Oracle,
    y_target: torch.Tensor | None = None,
    *,
    alpha: float = 2.0,
    reduction: str = "mean",
    allow_relaxed_targets: bool = False,
    validate_args: bool | None = None,
) -> torch.Tensor:
    r"""Functional form of :class:`SPOPlusLoss` (same arguments, oracle passed explicitly).

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> spo_plus_loss(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0]), ArgmaxOneHot())
        tensor(3.)
    """
    check_oracle("oracle", oracle)
    alpha = check_alpha(alpha)
    check_reduction_arg(reduction)
    nd = oracle.event_ndim
    validate_args = resolve_validate_args(validate_args)
    check_theta(theta, nd, validate_args)
    theta_true = check_like_theta("theta_true", theta_true, theta, validate_args)
    if y_target is None:
        y_target = oracle(theta_true.detach())
    else:
        if validate_args:
            if y_target.shape[: y_target.ndim - nd] != theta.shape[: theta.ndim - nd]:
                raise ValueError(
                    f"y_target must have theta's batch shape {tuple(theta.shape[: theta.ndim - nd])}; "
                    f"got shape {tuple(y_target.shape)}"
                )
            if y_target.device != theta.device:
                raise ValueError(f"y_target must be on theta's device ({theta.device}); got {y_target.device}")
            check_in_solution_set("y_target", y_target, oracle, allow_relaxed=allow_relaxed_targets)
        y_target = y_target.detach().to(theta.dtype)
    with torch.no_grad():
        theta_alpha = alpha * theta.detach() - theta_true.detach()
        y_alpha = oracle(theta_alpha)
        if validate_args and y_alpha.shape != y_target.shape:
            raise ValueError(f"y_target must have the shape of the oracle's solutions {tuple(y_alpha.shape)}; "
                             f"got {tuple(y_target.shape)}")
        best, at_target = oracle.objective(theta_alpha, y_alpha), oracle.objective(theta_alpha, y_target)
        value = best - at_target
        g_diff = oracle.g(y_alpha) - oracle.g(y_target)
    if validate_args and sign_checkable(oracle):
        check_nonnegative("SPOPlusLoss", value, best.abs() + at_target.abs(), _SIGN_HINT)
    loss = _SPOPlusFunction.apply(theta, theta_true, value, g_diff, alpha)
    return reduce(loss, reduction)


class SPOPlusLoss(nn.Module):
    r"""SPO+ (smart predict-then-optimize plus) loss, from the true scores :math:`\bar\theta`.

    In the maximization convention of colayers (an oracle returns
    :math:`f(\theta) = \operatorname{argmax}_{y\in\mathcal Y} \langle\theta, g(y)\rangle`), with
    :math:`\theta_\alpha = \alpha\theta - \bar\theta`, :math:`y_\alpha = f(\theta_\alpha)` and
    :math:`\bar y = f(\bar\theta)`:

    .. math::

        \ell_\alpha(\theta; \bar\theta) = \max_{y\in\mathcal Y} \langle\theta_\alpha, g(y)\rangle
            - \langle\theta_\alpha, g(\bar y)\rangle \;\ge 0, \qquad
        \partial_\theta \ell_\alpha \ni \alpha\,(g(y_\alpha) - g(\bar y)).

    For α = 2 this is the SPO+ loss of Elmachtoub & Grigas, written for costs :math:`c = -\bar\theta`,
    predicted costs :math:`\hat c = -\theta` and the minimization oracle :math:`w^*(c)`:

    .. math::

        \ell_{\mathrm{SPO+}}(\hat c, c) = \max_{w\in S}\{(c - 2\hat c)^\top w\} + 2\hat c^\top w^*(c) - c^\top w^*(c),

    a convex upper bound of the regret :math:`c^\top w^*(\hat c) - c^\top w^*(c)` (PyEPO's ``SPOPlus``).
    The value is exact and the subgradient is hand-written (one batched oracle call at
    :math:`\theta_\alpha`, plus one at :math:`\bar\theta` when ``y_target`` is not given). A gradient also
    flows to ``theta_true`` (:math:`-(g(y_\alpha) - g(\bar y))`) when it requires one. For an oracle with an
    offset :math:`h`, the value is the objective difference
    :math:`F(\theta_\alpha, y_\alpha) - F(\theta_\alpha, \bar y)`
    with :math:`F(\theta, y) = \langle\theta, g(y)\rangle + h(y)`.

    Works with: any :class:`~colayers.oracles.Oracle` (including a :class:`SolutionPool` standing in for one);
    no layer is needed. An oracle that accepts only scores of one sign (``GridVertexShortestPath`` needs
    θ < 0, i.e. positive tile costs) rejects :math:`\theta_\alpha` wherever :math:`\alpha\theta - \bar\theta` leaves
    that domain (negative costs make its problem unbounded); use an imitation loss there.

    Args:
        oracle: the maximization oracle.
        alpha: the scale α > 0 of the predicted scores (2 is SPO+).
        reduction: 'mean' | 'sum' | 'none' over the batch.
        allow_relaxed_targets: skip the check that a given ``y_target`` is a vertex of Y.
        validate_args: check shapes, finiteness, targets and that the value is ≥ 0 (up to rounding) on every
            call; the sign check raises on a minimizing oracle or swapped arguments.

    Call: ``loss(theta, theta_true, y_target=None)`` with ``theta``, ``theta_true`` of shape ``(*batch, *event)``
    and ``y_target`` an optimal solution for ``theta_true`` (computed with the oracle when omitted).

    Reference: A. N. Elmachtoub, P. Grigas, "Smart 'Predict, then Optimize'", Management Science 68(1), 2022.

    Example:
        >>> import torch
        >>> from colayers import TopKSubset
        >>> loss = SPOPlusLoss(TopKSubset(2))
        >>> theta = torch.tensor([[0.5, 1.0, -1.0, 0.0]], requires_grad=True)
        >>> theta_true = torch.tensor([[1.0, 0.0, 0.0, 2.0]])
        >>> value = loss(theta, theta_true)
        >>> value.backward()
        >>> value.item(), theta.grad
        (4.0, tensor([[ 0.,  2.,  0., -2.]]))
    """

    validate_args = ValidateArgs()  # None follows set_default_validate_args

    def __init__(
        self,
        oracle: Oracle,
        alpha: float = 2.0,
        reduction: str = "mean",
        *,
        allow_relaxed_targets: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__()
        self.oracle = check_oracle("oracle", oracle)
        self.alpha = check_alpha(alpha)
        self.reduction = check_reduction_arg(reduction)
        self.allow_relaxed_targets = allow_relaxed_targets
        self.validate_args = validate_args

    def forward(
        self, theta: torch.Tensor, theta_true: torch.Tensor, y_target: torch.Tensor | None = None
    ) -> torch.Tensor:
        return spo_plus_loss(
            theta,
            theta_true,
            self.oracle,
            y_target,
            alpha=self.alpha,
            reduction=self.reduction,
            allow_relaxed_targets=self.allow_relaxed_targets,
            validate_args=self.validate_args,
        )

    def extra_repr(self) -> str:
        return f"oracle={self.oracle!r}, alpha={self.alpha}, reduction={self.reduction!r}"
