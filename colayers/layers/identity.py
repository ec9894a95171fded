r"""Straight-through estimator: the oracle's output forward, the incoming gradient passed through backward."""

from __future__ import annotations

import torch

from ..oracles.base import Oracle
from .core import OracleLayer, PositionalFunction, identity_vjp

__all__ = ["IdentityRelaxation", "StraightThrough"]


class StraightThrough(PositionalFunction):
    """``apply(theta, y, negative)`` returns ``y``; the VJP is :func:`~colayers.layers.core.identity_vjp`."""

    @staticmethod
    def forward(theta, y, negative):
        return y.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.negative = inputs[2]

    @staticmethod
    def backward(ctx, grad_output):
        return identity_vjp(grad_output, ctx.negative), None, None


class IdentityRelaxation(OracleLayer):
    r"""Straight-through layer: forward :math:`f(\theta)`, backward :math:`J^\top\bar y := \pm\bar y`.

    The Dirac distribution at :math:`f(\theta)` with the identity (``negative=False``) as surrogate
    Jacobian; ``negative=True`` passes :math:`-\bar y`, the variant for users whose oracle *minimizes*
    (there :math:`f` decreases in its input). References: Bengio, Léonard, Courville 2013
    (straight-through); Sahoo et al., *Backpropagation through combinatorial algorithms: identity with
    projection works*, ICLR 2023.

    Args:
        oracle: the oracle (its solution shape must equal θ's event shape).
        negative: pass :math:`-\bar y` instead of :math:`\bar y`.
        validate_args: check θ on every call.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> theta = torch.tensor([0.5, 2.0, -1.0], requires_grad=True)
        >>> y = IdentityRelaxation(ArgmaxOneHot())(theta)
        >>> (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
        >>> y, theta.grad
        (tensor([0., 1., 0.], grad_fn=<StraightThroughBackward>), tensor([1., 2., 3.]))
    """

    def __init__(self, oracle: Oracle, *, negative: bool = False, validate_args: bool = True) -> None:
        super().__init__(oracle, validate_args=validate_args)
        self.negative = bool(negative)

    def forward(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        oracle = self.oracle
        # the stock Oracle.__call__ with validate_args makes exactly the layer's checks on this same tensor (same
        # argument name, shape and messages), so the layer does not repeat them
        # (Oracle.__call__ detaches its input itself and runs without autograd)
        if self.validate_args and getattr(oracle, "validate_args", False) and type(oracle).__call__ is Oracle.__call__:
            y = oracle(theta)
        else:
            self.check_theta(theta)
            y = oracle(theta.detach())
        if y.shape != theta.shape:
            raise ValueError(
                f"oracle must return solutions of theta's shape {tuple(theta.shape)} for the identity rule; "
                f"got {tuple(y.shape)}"
            )
        return StraightThrough.apply(theta, y, self.negative)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, negative={self.negative}"
