r"""The imitation loss: a structured margin plus a regularizer, generalizing Fenchel-Young and structured SVM."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._validation import check_positive
from ..oracles.base import Oracle
from ._common import inner
from .base import StructuredLoss
from .ssvm import hamming_augmented_oracle, hamming_margin

__all__ = ["ImitationLoss"]

Maximizer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ImitationLoss(StructuredLoss):
    r"""Imitation loss (InferOpt's ``ImitationLoss``):

    .. math::

        \ell(\theta; \bar y) = \max_{y}\ \big\{\delta(y, \bar y) + \alpha\langle\theta, y - \bar y\rangle
            - \Omega(y) + \Omega(\bar y)\big\},
        \qquad \nabla_\theta \ell = \alpha\,(\hat y - \bar y),

    with :math:`\hat y` the maximizer (Danskin's theorem; hand-written gradient). It contains

    * the Fenchel-Young loss of the regularizer Ω when δ = 0 (at α = 1:
      :math:`\Omega^*(\theta) + \Omega(\bar y) - \langle\theta,\bar y\rangle`; in general the FY loss at αθ);
    * the structured SVM loss with margin δ when Ω = 0 (at α = 1).

    The user supplies ``maximizer(theta_scaled, y_target)`` that returns
    :math:`\operatorname{argmax}_y \delta(y,\bar y) + \langle\theta_{\mathrm{scaled}}, y\rangle - \Omega(y)` with
    :math:`\theta_{\mathrm{scaled}} = \alpha\theta`, plus ``delta(y, y_target) -> (*batch)`` (``None`` for 0) and
    ``omega(y) -> (*batch)`` (``None`` for 0). The two presets build these from library pieces:
    :meth:`fenchel_young` (a regularized layer: SoftArgmax, SparseArgmax, RegularizedFrankWolfe) and
    :meth:`structured_svm` (an oracle with the Hamming margin).

    Works with: any maximizer consistent with the given δ and Ω; the presets serve the regularized layers
    and every 0/1 oracle.

    Args:
        maximizer: ``(theta_scaled, y_target) -> y``, the loss-augmented regularized maximizer.
        delta: the margin δ(y, ȳ) or ``None``.
        omega: the regularizer Ω(y) or ``None``.
        alpha: α > 0, the scale of θ.
        event_ndim: the number of event dimensions of θ.
        reduction: 'mean' | 'sum' | 'none'.
        validate_args: check shapes and finiteness on every call.

    Reference: InferOpt.jl ``ImitationLoss``; M. Blondel, A. F. T. Martins, V. Niculae, "Learning with
    Fenchel-Young Losses", JMLR 21, 2020 (cost-augmented FY losses).

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> loss = ImitationLoss.structured_svm(ArgmaxOneHot())
        >>> theta = torch.tensor([2.0, 1.5, 0.0], requires_grad=True)
        >>> value = loss(theta, torch.tensor([1.0, 0.0, 0.0]))  # ŷ = argmax(1, 2.5, 1) = e_2
        >>> value.backward()
        >>> value.item(), theta.grad
        (1.5, tensor([-1.,  1.,  0.]))
    """

    def __init__(
        self,
        maximizer: Maximizer,
        delta: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        omega: Callable[[torch.Tensor], torch.Tensor] | None = None,
        alpha: float = 1.0,
        *,
        event_ndim: int = 1,
        reduction: str = "mean",
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(reduction, validate_args=validate_args)
        for name, fn in (("maximizer", maximizer), ("delta", delta), ("omega", omega)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None; got {type(fn).__name__}")
        if maximizer is None:
            raise TypeError("maximizer must be callable; got None")
        self.maximizer = maximizer
        self.delta = delta
        self.omega = omega
        self.alpha = check_positive("alpha", alpha)
        self.event_ndim = int(event_ndim)

    # -- presets ---------------------------------------------------------------------------------------
    @classmethod
    def fenchel_young(cls, layer: nn.Module, alpha: float = 1.0, **kwargs) -> ImitationLoss:
        r"""δ = 0 and Ω = ``layer.omega``: the Fenchel-Young loss of a regularized layer (at αθ).

        ``layer`` is a regularized layer (SoftArgmax, SparseArgmax, RegularizedFrankWolfe): its forward is
        :math:`\operatorname{argmax}_{\mu} \langle\theta,\mu\rangle - \Omega(\mu)` and it has ``.omega``.
        """
        omega = getattr(layer, "omega", None)
        if not callable(omega):
            raise TypeError(
                f"layer must be a regularized layer with an .omega method (SoftArgmax, SparseArgmax, "
                f"RegularizedFrankWolfe); got {type(layer).__name__}"
            )

        def maximizer(theta_scaled: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return layer(theta_scaled)

        oracle = getattr(layer, "oracle", None)
        kwargs.setdefault("event_ndim", getattr(oracle, "event_ndim", 1))
        return cls(maximizer, None, omega, alpha, **kwargs)

    @classmethod
    def structured_svm(cls, oracle: Oracle, margin_weight: float = 1.0, alpha: float = 1.0, **kwargs) -> ImitationLoss:
        r"""Ω = 0 and the Hamming margin δ = w‖y − ȳ‖₁, served by the oracle at :math:`\alpha\theta + w(1-2\bar y)`."""
        w = check_positive("margin_weight", margin_weight)
        nd = oracle.event_ndim

        def maximizer(theta_scaled: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
            return hamming_augmented_oracle(oracle, theta_scaled, y_target, w)

        def delta(y: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
            return hamming_margin(y, y_target, nd, w)

        kwargs.setdefault("event_ndim", nd)
        return cls(maximizer, delta, None, alpha, **kwargs)

    def forward(self, theta: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
        return self.evaluate(theta, y_target)

    def per_instance(self, theta: torch.Tensor, y_target: torch.Tensor):  # noqa: D102 - see the class docstring
        nd = self.event_ndim
        with torch.no_grad():
            th = theta.detach()
            y_hat = self.maximizer(self.alpha * th, y_target)
            if self.validate_args and y_hat.shape != theta.shape:
                raise ValueError(
                    f"maximizer must return a solution of theta's shape {tuple(theta.shape)}; got {tuple(y_hat.shape)}"
                )
            value = self.alpha * inner(th, y_hat - y_target, nd)
            if self.delta is not None:
                value = value + self.delta(y_hat, y_target)
            if self.omega is not None:
                value = value - self.omega(y_hat) + self.omega(y_target)
            grad = self.alpha * (y_hat - y_target)
        return value, grad, None

    def extra_repr(self) -> str:
        has = f"delta={self.delta is not None}, omega={self.omega is not None}"
        return f"alpha={self.alpha}, {has}, reduction={self.reduction!r}"
