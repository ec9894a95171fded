r"""Identity relaxation (straight-through): the oracle's output forward, the incoming gradient passed through
backward."""

from __future__ import annotations

from ..oracles.base import Oracle
from ..perturb import Additive
from .core import Perturbed
from .rules import IdentityRule

__all__ = ["IdentityRelaxation"]


class IdentityRelaxation(Perturbed):
    r"""Identity relaxation (the straight-through estimator): forward :math:`f(\theta)`, backward
    :math:`J^\top\bar y := \pm\bar y`.

    ``Perturbed(oracle, Additive(epsilon=0), rule=IdentityRule(negative), num_samples=1)``: the Dirac
    distribution at :math:`f(\theta)` with the identity as surrogate Jacobian; ``negative=True`` passes
    :math:`-\bar y`, the variant for users whose oracle *minimizes* (there :math:`f` decreases in its input).
    Deterministic: it takes no ``seed`` or ``generator``. References: Bengio, Léonard, Courville 2013
    (straight-through); Sahoo et al., *Backpropagation through combinatorial algorithms: identity with
    projection works*, ICLR 2023; InferOpt.jl's ``IdentityRelaxation``.

    Args:
        oracle: the oracle (its solution shape must equal θ's event shape).
        negative: pass :math:`-\bar y` instead of :math:`\bar y`.
        validate_args: see :class:`~colayers.layers.core.OracleLayer`.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> theta = torch.tensor([0.5, 2.0, -1.0], requires_grad=True)
        >>> y = IdentityRelaxation(ArgmaxOneHot())(theta)
        >>> (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
        >>> y.detach(), theta.grad
        (tensor([0., 1., 0.]), tensor([1., 2., 3.]))
    """

    def __init__(self, oracle: Oracle, *, negative: bool = False, validate_args: bool | None = None) -> None:
        super().__init__(oracle, Additive(epsilon=0.0), rule=IdentityRule(negative), num_samples=1,
                         validate_args=validate_args)

    @property
    def negative(self) -> bool:
        return self.rule.negative
