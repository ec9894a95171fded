r"""The frame every structured loss shares, held once: reduction, argument checks, sign check (as torch's ``_Loss``).

A loss module keeps only its math; :class:`StructuredLoss` checks θ and the target once per public call,
runs the math with those tensors trusted (:func:`~colayers._validation.trusted_inputs`: the scores derived from
θ — perturbed η, θ_α, loss-augmented scores — reach oracles and layers unchecked), checks the sign of a loss
that is ≥ 0 by construction, attaches a hand-written gradient and applies the reduction.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from .._validation import ValidateArgs, check_finite, check_reduction, check_tensor, check_theta, reduce, trusted_inputs
from ._common import check_in_solution_set, check_nonnegative, sign_checkable, value_with_gradient

__all__ = ["StructuredLoss"]


class StructuredLoss(nn.Module):
    r"""Base of the structured losses: ``reduction``, ``validate_args``, ``allow_relaxed_targets`` and the checks.

    A subclass provides:

    * ``event_ndim``: the number of event dimensions of θ (attribute or property; default 1);
    * ``solution_set`` (optional): the object whose ``contains(y)`` says whether a target lies in Y — by default
      the loss's ``oracle`` attribute, ``None`` (no membership check) without one; override
      :meth:`check_target_in_set` for another test of targets;
    * ``sign_hint`` (optional): for a loss that is ≥ 0 by construction, the hint of the error raised (in
      validate mode, when ``solution_set`` maximizes its objective) where a value comes out negative;
    * its math: :meth:`per_instance` ``(theta, y_target, **kwargs) -> (value, grad, scale)`` for a loss called as
      ``loss(theta, y_target, ...)`` whose ``forward`` returns ``self.evaluate(theta, y_target, ...)``; a loss
      with other arguments writes ``forward`` from :meth:`check_scores`, :meth:`check_like_scores`,
      :meth:`check_target` and :meth:`finish`.

    Each input tensor is checked once per call: its type, shape and device always (no tensor value is read),
    its finiteness and the target's membership in Y only while ``validate_args`` is on (each costs a host
    synchronisation on CUDA).

    Args:
        reduction: 'mean' | 'sum' | 'none' over the batch ('mean' of an empty batch is NaN, as in torch).
        allow_relaxed_targets: accept targets in the convex hull of Y instead of requiring solutions in Y.
        validate_args: ``None`` follows :func:`~colayers.set_default_validate_args`; ``False`` skips every check
            that reads a tensor value.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> class Perceptron(StructuredLoss):  # max_y <θ, y> - <θ, ȳ>, gradient f(θ) - ȳ
        ...     def __init__(self, oracle, reduction="mean"):
        ...         super().__init__(reduction)
        ...         self.oracle = oracle
        ...     def forward(self, theta, y_target):
        ...         return self.evaluate(theta, y_target)
        ...     def per_instance(self, theta, y_target):
        ...         y = self.oracle(theta.detach())
        ...         return ((y - y_target) * theta.detach()).sum(-1), y - y_target, None
        >>> theta = torch.tensor([[1.0, 3.0, 2.0]], requires_grad=True)
        >>> Perceptron(ArgmaxOneHot())(theta, torch.tensor([[0.0, 0.0, 1.0]])).backward()
        >>> theta.grad
        tensor([[ 0.,  1., -1.]])
        >>> Perceptron(ArgmaxOneHot())(theta, torch.tensor([[0.0, 1.0, 1.0]]))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: y_target must be a solution in Y of ArgmaxOneHot(...) (oracle.contains(y_target) is False); ...
    """

    validate_args = ValidateArgs()  # None follows set_default_validate_args
    event_ndim: int = 1
    sign_hint: ClassVar[str | None] = None

    def __init__(
        self, reduction: str = "mean", *, allow_relaxed_targets: bool = False, validate_args: bool | None = None
    ) -> None:
        super().__init__()
        if not isinstance(allow_relaxed_targets, bool):
            raise TypeError(
                f"allow_relaxed_targets must be a bool; got {type(allow_relaxed_targets).__name__} "
                f"{allow_relaxed_targets!r}"
            )
        self.reduction = check_reduction(reduction)
        self.allow_relaxed_targets = allow_relaxed_targets
        self.validate_args = validate_args

    @property
    def solution_set(self) -> object | None:
        """The object whose ``contains(y)`` tests targets (the loss's ``oracle``; ``None``: unchecked)."""
        return getattr(self, "oracle", None)

    # -- checks: each input tensor once per call ------------------------------------------------------------
    def check_scores(self, theta: torch.Tensor) -> torch.Tensor:
        """θ: a floating tensor with at least ``event_ndim`` dimensions, finite while validating."""
        check_theta(theta, None, self.event_ndim, self.validate_args)
        return theta

    def check_like_scores(self, name: str, value: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """A floating tensor with θ's shape on θ's device (finite while validating), converted to θ's dtype."""
        check_tensor(name, value)
        if value.shape != theta.shape:
            raise ValueError(
                f"{name} must have the shape of theta (*batch, *event) = {tuple(theta.shape)}; "
                f"got {tuple(value.shape)}"
            )
        if value.device != theta.device:
            raise ValueError(f"{name} must be on theta's device ({theta.device}); got {value.device}")
        if self.validate_args:
            check_finite(name, value)
        return value if value.dtype == theta.dtype else value.to(theta.dtype)

    def check_target(self, y_target: torch.Tensor, theta: torch.Tensor, name: str = "y_target") -> torch.Tensor:
        """A target like θ (:meth:`check_like_scores`), in Y while validating (:meth:`check_target_in_set`);
        returned detached."""
        y_target = self.check_like_scores(name, y_target, theta).detach()
        if self.validate_args:
            self.check_target_in_set(name, y_target)
        return y_target

    def check_target_in_set(self, name: str, y: torch.Tensor) -> None:
        """Membership in Y through ``solution_set.contains`` (skipped with ``allow_relaxed_targets``)."""
        check_in_solution_set(name, y, self.solution_set, allow_relaxed=self.allow_relaxed_targets)

    # -- the frame of loss(theta, y_target, ...) --------------------------------------------------------------
    def evaluate(self, theta: torch.Tensor, y_target: torch.Tensor, **kwargs: object) -> torch.Tensor:
        """Check θ and the target once, run :meth:`per_instance` on trusted inputs, then :meth:`finish`."""
        self.check_scores(theta)
        y_target = self.check_target(y_target, theta)
        with trusted_inputs():  # everything below is derived from the tensors just checked
            value, grad, scale = self.per_instance(theta, y_target, **kwargs)
        return self.finish(theta, value, grad, scale)

    def per_instance(
        self, theta: torch.Tensor, y_target: torch.Tensor, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The loss's math: ``(value (*batch), grad (θ's shape) or None, scale (*batch) or None)``.

        ``grad`` is the hand-written gradient in θ (``None``: ``value`` is differentiable itself); ``scale``
        the size of the terms whose difference ``value`` is, for the sign check (``None``: no sign check).
        """
        raise NotImplementedError(f"{type(self).__name__} must implement per_instance(theta, y_target, ...)")

    def finish(
        self,
        theta: torch.Tensor,
        value: torch.Tensor,
        grad: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Sign check (validate mode, a ``sign_hint`` and a ``scale``), the gradient ``grad`` attached, reduction."""
        if scale is not None and self.sign_hint is not None and self.validate_args:
            if sign_checkable(self.solution_set):
                check_nonnegative(type(self).__name__, value.detach(), scale, self.sign_hint)
        if grad is not None:
            return value_with_gradient(theta, value, grad, self.reduction)
        return reduce(value, self.reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
