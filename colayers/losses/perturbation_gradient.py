r"""The perturbation-gradient (PG) losses of Huang & Gupta (NeurIPS 2024), in the maximization convention."""

from __future__ import annotations

import torch

from .._validation import boolean, check_args, positive, trusted_inputs
from ..oracles.base import Oracle
from ._common import check_oracle
from .base import StructuredLoss

__all__ = ["PerturbationGradientLoss", "perturbation_gradient_loss"]


class PerturbationGradientLoss(StructuredLoss):
    r"""Perturbation-gradient loss: a finite difference of the optimal value along the true scores.

    With :math:`F(\theta) = \max_{y\in\mathcal Y} \langle\theta, g(y)\rangle + h(y)`, :math:`f` its maximizer
    (the oracle), the true scores :math:`\bar\theta` and a step :math:`\sigma > 0`, the one-sided (backward,
    "PGB") and two-sided (central, "PGC") losses are

    .. math::

        \ell_{\mathrm{PGB}}(\theta; \bar\theta) = \frac{F(\theta - \sigma\bar\theta) - F(\theta)}{\sigma},
        \qquad
        \ell_{\mathrm{PGC}}(\theta; \bar\theta) = \frac{F(\theta - \sigma\bar\theta)
            - F(\theta + \sigma\bar\theta)}{2\sigma},

    with the gradients (Danskin's theorem; :math:`y_{\pm} = f(\theta \pm \sigma\bar\theta)`, :math:`y_0 = f(\theta)`)

    .. math::

        \nabla_\theta \ell_{\mathrm{PGB}} = \frac{g(y_-) - g(y_0)}{\sigma}, \qquad
        \nabla_\theta \ell_{\mathrm{PGC}} = \frac{g(y_-) - g(y_+)}{2\sigma}.

    Both are finite-difference estimates of the directional derivative
    :math:`-\tfrac{\mathrm d}{\mathrm d s}F(\theta + s\bar\theta)|_{s=0} = -\langle\bar\theta, g(f(\theta))\rangle`,
    the decision loss (the true cost of the decision :math:`f(\theta)`); since :math:`F` is convex, the one-sided
    loss is an upper bound of it. Unlike SPO+, they need the true scores only, not an optimal solution. No
    gradient flows to :math:`\bar\theta` (it is data, as in PyEPO).

    **PyEPO** (``pyepo.func.perturbationGradient(optmodel, sigma, two_sides)``) minimizes costs: with predicted
    costs :math:`\hat c = -\theta`, true costs :math:`c = -\bar\theta` and :math:`z^*(c) = \min_w c^\top w`, its
    loss :math:`(z^*(\hat c) - z^*(\hat c - \sigma c))/\sigma` (``two_sides=False``) or
    :math:`(z^*(\hat c + \sigma c) - z^*(\hat c - \sigma c))/(2\sigma)` (``two_sides=True``) is this loss, and its
    gradient in :math:`\hat c` is minus this gradient in θ. (PyEPO adds 10⁻⁸ to the denominator; colayers does not.)
    A PyEPO model with ``modelSense=MAXIMIZE`` takes θ and :math:`\bar\theta` as they are.

    Works with: any :class:`~colayers.oracles.Oracle` (one batched call on ``2 × batch`` scores); no layer is
    needed. An oracle that accepts scores of one sign only rejects :math:`\theta \pm \sigma\bar\theta` where they
    leave its domain.

    Args:
        oracle: the maximization oracle.
        sigma: the finite-difference step σ > 0 (PyEPO's default 0.1); it multiplies :math:`\bar\theta`, so its
            scale is relative to the true scores'.
        two_sided: central difference (PyEPO's ``two_sides=True``) instead of the backward one.
        reduction: 'mean' | 'sum' | 'none' over the batch.
        validate_args: check shapes and finiteness on every call.

    Call: ``loss(theta, theta_true)`` with both of shape ``(*batch, *event)``.

    Reference: M. Huang, V. Gupta, "Decision-Focused Learning with Directional Gradients", NeurIPS 2024.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> theta = torch.tensor([[2.0, 1.0, 0.0]], requires_grad=True)
        >>> theta_true = torch.tensor([[0.0, 3.0, 1.0]])  # the model's choice (item 0) has true value 0
        >>> loss = PerturbationGradientLoss(ArgmaxOneHot(), sigma=0.5)
        >>> value = loss(theta, theta_true)  # (F(θ - σθ̄) - F(θ)) / σ = (max(2, -0.5, -0.5) - 2) / 0.5
        >>> value.backward()
        >>> value.item(), theta.grad
        (0.0, tensor([[0., 0., 0.]]))
        >>> PerturbationGradientLoss(ArgmaxOneHot(), sigma=1.0, two_sided=True)(theta, theta_true).item()
        -1.0
    """

    arg_constraints = {"sigma": positive, "two_sided": boolean}

    def __init__(
        self,
        oracle: Oracle,
        sigma: float = 0.1,
        two_sided: bool = False,
        reduction: str = "mean",
        *,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(reduction, validate_args=validate_args)
        self.oracle = check_oracle("oracle", oracle)
        checked = check_args(self, sigma=sigma, two_sided=two_sided)
        self.sigma, self.two_sided = checked["sigma"], checked["two_sided"]
        self.event_ndim = oracle.event_ndim

    def forward(self, theta: torch.Tensor, theta_true: torch.Tensor) -> torch.Tensor:
        self.check_scores(theta)
        theta_true = self.check_like_scores("theta_true", theta_true, theta).detach()
        oracle, sigma = self.oracle, self.sigma
        with torch.no_grad(), trusted_inputs():  # θ ± σθ̄ are derived from the tensors just checked
            t = theta.detach()
            upper = t + sigma * theta_true if self.two_sided else t
            lower = t - sigma * theta_true
            both = torch.stack([upper, lower])  # one batched oracle call
            y_upper, y_lower = oracle(both).unbind(0)
            width = 2 * sigma if self.two_sided else sigma
            value = (oracle.objective(lower, y_lower) - oracle.objective(upper, y_upper)) / width
            grad = (oracle.g(y_lower) - oracle.g(y_upper)) / width
        return self.finish(theta, value, grad)

    def extra_repr(self) -> str:
        return f"oracle={self.oracle!r}, sigma={self.sigma}, two_sided={self.two_sided}, reduction={self.reduction!r}"


def perturbation_gradient_loss(
    theta: torch.Tensor,
    theta_true: torch.Tensor,
    oracle: Oracle,
    *,
    sigma: float = 0.1,
    two_sided: bool = False,
    reduction: str = "mean",
    validate_args: bool | None = None,
) -> torch.Tensor:
    r"""Functional form of :class:`PerturbationGradientLoss` (same arguments, oracle passed explicitly).

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> perturbation_gradient_loss(torch.tensor([1.0, 0.0]), torch.tensor([-2.0, 1.0]), ArgmaxOneHot(), sigma=0.5)
        tensor(2.)
    """
    loss = PerturbationGradientLoss(oracle, sigma, two_sided, reduction, validate_args=validate_args)
    return loss(theta, theta_true)
