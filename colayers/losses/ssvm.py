r"""The structured support-vector-machine (structured hinge) loss."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._validation import check_positive
from ..oracles.base import Oracle
from ._common import check_binary, check_oracle, event_dims, negative_loss_hint
from .base import StructuredLoss

__all__ = ["StructuredSVMLoss", "hamming_margin", "hamming_augmented_oracle"]

_SIGN_HINT = negative_loss_hint(
    "The structured hinge loss is >= 0 when the (loss-augmented) oracle maximizes delta(y, y_target) + "
    "<theta, g(y)> + h(y) over a set Y that holds y_target, with delta(y_target, y_target) >= 0",
    "loss(theta, y_target)",
)


def hamming_margin(y: torch.Tensor, y_target: torch.Tensor, event_ndim: int = 1, weight: float = 1.0) -> torch.Tensor:
    r"""Weighted Hamming margin :math:`\delta(y, \bar y) = w \sum_i (y_i + \bar y_i - 2 y_i \bar y_i)`.

    For 0/1 vectors this is :math:`w\,\lVert y - \bar y\rVert_1`; written this way it is linear in
    :math:`y`, which makes the loss-augmented problem a plain oracle call (see
    :func:`hamming_augmented_oracle`). ``y`` broadcasts against ``y_target``; the result is ``(*batch)``.

    Example:
        >>> import torch
        >>> hamming_margin(torch.tensor([1.0, 0.0, 1.0]), torch.tensor([1.0, 1.0, 0.0]))
        tensor(2.)
    """
    return weight * (y + y_target - 2 * y * y_target).sum(dim=event_dims(event_ndim))


def hamming_augmented_oracle(oracle: Oracle, theta: torch.Tensor, y_target: torch.Tensor, weight: float = 1.0):
    r"""Solve :math:`\operatorname{argmax}_y\ \delta_H(y, \bar y) + \langle\theta, y\rangle` with one oracle call.

    Since :math:`\delta_H(y,\bar y) = w\sum_i y_i(1 - 2\bar y_i) + w\sum_i \bar y_i` for 0/1 vectors :math:`y`,

    .. math::

        \operatorname{argmax}_y\ \delta_H(y, \bar y) + \langle\theta, y\rangle
        = f\big(\theta + w(\mathbf 1 - 2\bar y)\big).

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> hamming_augmented_oracle(ArgmaxOneHot(), torch.tensor([2.0, 1.5, 0.0]), torch.tensor([1.0, 0.0, 0.0]))
        tensor([0., 1., 0.])
    """
    with torch.no_grad():
        return oracle(theta.detach() + weight * (1 - 2 * y_target))


class StructuredSVMLoss(StructuredLoss):
    r"""Structured hinge (SSVM) loss.

    .. math::  \ell(\theta; \bar y) = \max_{y\in\mathcal Y}\ \delta(y, \bar y) + \langle\theta, g(y) - g(\bar y)\rangle.

    The value is ≥ 0 when :math:`\bar y \in \mathcal Y` and δ(ȳ, ȳ) = 0 (take y = ȳ); its subgradient is
    :math:`g(\hat y) - g(\bar y)` with :math:`\hat y` the loss-augmented maximizer (hand-written).

    * Default margin: the weighted Hamming distance :math:`\delta(y,\bar y) = w\lVert y-\bar y\rVert_1` for 0/1
      solutions (g the identity). It is linear in y, so the loss-augmented problem is the plain oracle at
      :math:`\theta + w(\mathbf 1 - 2\bar y)` (:func:`hamming_augmented_oracle`): one batched call.
    * Any other margin: pass ``margin(y, y_target) -> (*batch)`` and
      ``loss_augmented_oracle(theta, y_target) -> y`` solving
      :math:`\operatorname{argmax}_y \delta(y,\bar y) + \langle\theta, g(y)\rangle + h(y)`.

    Works with: any :class:`~colayers.oracles.Oracle` whose solutions are 0/1 vectors (Hamming margin:
    ArgmaxOneHot, TopKSubset, GridDAGShortestPath, GridVertexShortestPath, matchings, spanning trees,
    knapsack...); any oracle with a user-supplied loss-augmented oracle. No layer is needed. The shifted
    scores :math:`\theta + w(\mathbf 1 - 2\bar y)` can leave the domain of an oracle that needs scores of one
    sign (``GridVertexShortestPath``); such an oracle then raises.

    Args:
        oracle: the maximization oracle.
        margin_weight: w > 0, the weight of the Hamming margin (ignored with a custom ``margin``).
        margin: optional custom δ(y, ȳ) returning ``(*batch)``; requires ``loss_augmented_oracle``.
        loss_augmented_oracle: optional ``(theta, y_target) -> y`` for the custom margin.
        reduction: 'mean' | 'sum' | 'none'.
        allow_relaxed_targets: accept targets in [0, 1] (Hamming) / outside Y instead of raising.
        validate_args: check shapes, finiteness, targets and that the value is ≥ 0 (up to rounding) on every
            call; the sign check raises on a minimizing oracle or swapped arguments.

    Call: ``loss(theta, y_target)``, both ``(*batch, *event)``.

    Reference: I. Tsochantaridis, T. Joachims, T. Hofmann, Y. Altun, "Large Margin Methods for Structured and
    Interdependent Output Variables", JMLR 6, 2005.

    Example:
        >>> import torch
        >>> from colayers import TopKSubset
        >>> loss = StructuredSVMLoss(TopKSubset(2))
        >>> theta = torch.tensor([[2.0, 1.0, 0.5, 0.0]], requires_grad=True)
        >>> y_target = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
        >>> value = loss(theta, y_target)  # augmented scores (1, 2, -0.5, 1): ŷ = (1, 1, 0, 0)
        >>> value.backward()
        >>> value.item(), theta.grad
        (2.5, tensor([[ 0.,  1., -1.,  0.]]))
    """

    sign_hint = _SIGN_HINT

    def __init__(
        self,
        oracle: Oracle,
        margin_weight: float = 1.0,
        reduction: str = "mean",
        *,
        margin: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        loss_augmented_oracle: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        allow_relaxed_targets: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(reduction, allow_relaxed_targets=allow_relaxed_targets, validate_args=validate_args)
        self.oracle = check_oracle("oracle", oracle)
        self.event_ndim = oracle.event_ndim
        self.margin_weight = check_positive("margin_weight", margin_weight)
        if (margin is None) != (loss_augmented_oracle is None):
            raise ValueError(
                "margin and loss_augmented_oracle must be given together (a custom margin needs its own "
                f"loss-augmented oracle); got margin={margin!r}, loss_augmented_oracle={loss_augmented_oracle!r}"
            )
        for name, fn in (("margin", margin), ("loss_augmented_oracle", loss_augmented_oracle)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable; got {type(fn).__name__}")
        self.margin = margin
        self.loss_augmented_oracle = loss_augmented_oracle

    def forward(self, theta: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
        return self.evaluate(theta, y_target)

    def check_target_in_set(self, name: str, y: torch.Tensor) -> None:
        """The Hamming margin needs 0/1 targets (in [0, 1] when relaxed) and g the identity; then Y's membership."""
        if self.margin is None:
            check_binary(name, y, allow_relaxed=self.allow_relaxed_targets)
            if not torch.equal(self.oracle.g(y), y):
                raise ValueError(
                    f"the Hamming margin needs an oracle whose statistic g is the identity; "
                    f"{type(self.oracle).__name__}.g changes y. Pass margin= and loss_augmented_oracle="
                )
        super().check_target_in_set(name, y)

    def per_instance(self, theta: torch.Tensor, y_target: torch.Tensor):  # noqa: D102 - see the class docstring
        oracle = self.oracle
        with torch.no_grad():
            th = theta.detach()
            if self.margin is None:
                y_hat = hamming_augmented_oracle(oracle, th, y_target, self.margin_weight)
                delta = hamming_margin(y_hat, y_target, self.event_ndim, self.margin_weight)
            else:
                y_hat = self.loss_augmented_oracle(th, y_target)
                delta = self.margin(y_hat, y_target)
            best, at_target = oracle.objective(th, y_hat), oracle.objective(th, y_target)
            value = delta + best - at_target
            grad = oracle.g(y_hat) - oracle.g(y_target)
        return value, grad, delta.abs() + best.abs() + at_target.abs()

    def extra_repr(self) -> str:
        m = "hamming" if self.margin is None else getattr(self.margin, "__name__", "custom")
        return f"oracle={self.oracle!r}, margin={m}, margin_weight={self.margin_weight}, reduction={self.reduction!r}"
