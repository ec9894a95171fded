r"""Contrastive losses over a solution pool (Mulamba et al., IJCAI 2021; PyEPO's NCE and CMAP)."""

from __future__ import annotations

import torch

from .._validation import boolean, check_args
from ..oracles.pool import SolutionPool
from ._common import event_dims
from .base import StructuredLoss

__all__ = ["NCELoss", "MAPContrastiveLoss"]


def pool_objectives(
    pool: SolutionPool, theta: torch.Tensor, y_target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores (*batch, |Γ|), target objective (*batch))``, both differentiable in θ."""
    scores = pool.scores(theta)
    nd = pool.event_ndim
    target = (theta * pool.oracle.g(y_target)).sum(dim=event_dims(nd))
    h = pool.oracle.h(y_target)
    if h is not None:
        target = target + h
    return scores, target


class _PoolFrame(StructuredLoss):
    """The frame every loss over a :class:`~colayers.oracles.SolutionPool` shares (the contrastive losses here, the
    learning-to-rank losses of :mod:`colayers.losses.ranking`): the pool, ``add_targets``, and targets checked as
    solutions of the pool's oracle."""

    arg_constraints = {"add_targets": boolean}

    def __init__(
        self,
        pool: SolutionPool,
        reduction: str = "mean",
        *,
        add_targets: bool = True,
        allow_relaxed_targets: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(reduction, allow_relaxed_targets=allow_relaxed_targets, validate_args=validate_args)
        if not isinstance(pool, SolutionPool):
            raise TypeError(f"pool must be a colayers SolutionPool; got {type(pool).__name__}")
        self.pool = pool
        self.event_ndim = pool.event_ndim
        self.add_targets = check_args(self, add_targets=add_targets)["add_targets"]

    @property
    def solution_set(self) -> object:
        """The pool's oracle: targets are solutions in its Y."""
        return self.pool.oracle


class _PoolLoss(_PoolFrame):
    """The contrastive frame: the pool's refresh, and the objectives of the pool and of the target."""

    def forward(
        self, theta: torch.Tensor, y_target: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.evaluate(theta, y_target, generator=generator)

    def per_instance(self, theta, y_target, generator=None):  # noqa: D102 - the pool's refresh, then contrast()
        if self.add_targets:
            self.pool.add(y_target)
        self.pool.update(theta, generator)
        return self.contrast(*pool_objectives(self.pool, theta, y_target)), None, None

    def contrast(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss from the pool's objectives ``(*batch, |Γ|)`` and the target's ``(*batch)``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"pool={self.pool!r}, reduction={self.reduction!r}"


class NCELoss(_PoolLoss):
    r"""Noise-contrastive estimation loss over a solution pool Γ (the "NCE" of Mulamba et al. / PyEPO).

    In the maximization convention, for a target :math:`\bar y`:

    .. math::  \ell(\theta; \bar y) = \frac{1}{|\Gamma|}\sum_{w\in\Gamma}
        \big(\langle\theta, g(w)\rangle - \langle\theta, g(\bar y)\rangle\big),
        \qquad \nabla_\theta\ell = \frac{1}{|\Gamma|}\sum_{w\in\Gamma} g(w) - g(\bar y).

    (PyEPO, minimizing costs ĉ = −θ: :math:`\frac1{|\Gamma|}\sum_w \hat c^\top w^*(c) - \hat c^\top w`.) The
    loss is linear in θ and unbounded below: it pushes the target's objective above the pool's average.
    Each call first refreshes the pool: the targets are added (``add_targets``) and, with probability
    ``pool.solve_ratio``, the oracle solves the detached θ and its solutions join the pool. The gradient is
    exact (pool members are constants).

    Works with: any :class:`~colayers.oracles.Oracle` (any g and h) wrapped in a
    :class:`~colayers.oracles.SolutionPool`; no layer.

    Args:
        pool: the :class:`~colayers.oracles.SolutionPool` (seed it with the training targets).
        reduction: 'mean' | 'sum' | 'none'.
        add_targets: add each batch's targets to the pool.
        allow_relaxed_targets: skip the check that targets are vertices of Y.
        validate_args: check shapes, finiteness and targets on every call.

    Call: ``loss(theta, y_target, generator=None)``.

    Reference: M. Mulamba et al., "Contrastive Losses and Solution Caching for Predict-and-Optimize", IJCAI 2021.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> pool = SolutionPool(ArgmaxOneHot(), torch.eye(3), solve_ratio=0.0)
        >>> NCELoss(pool)(torch.tensor([[3.0, 0.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]))
        tensor(-2.)
    """

    def contrast(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return scores.mean(dim=-1) - target


class MAPContrastiveLoss(_PoolLoss):
    r"""MAP-contrastive loss over a solution pool Γ (the "CMAP" of Mulamba et al. / PyEPO).

    In the maximization convention, for a target :math:`\bar y`:

    .. math::  \ell(\theta; \bar y) = \max_{w\in\Gamma}\langle\theta, g(w)\rangle - \langle\theta, g(\bar y)\rangle
        \;\ge 0 \text{ when } \bar y\in\Gamma,
        \qquad \partial_\theta\ell \ni g(w^\star) - g(\bar y).

    It is the structured-perceptron loss with the oracle replaced by the pool's best member
    (PyEPO, minimizing ĉ = −θ: :math:`\hat c^\top w^*(c) - \min_{w\in\Gamma}\hat c^\top w`). The pool is refreshed
    as in :class:`NCELoss`; with ``add_targets`` (default) the target is in Γ and the loss is ≥ 0.

    Works with: any :class:`~colayers.oracles.Oracle` (any g and h) wrapped in a
    :class:`~colayers.oracles.SolutionPool`; no layer.

    Args:
        pool, reduction, add_targets, allow_relaxed_targets, validate_args: as in :class:`NCELoss`.

    Reference: M. Mulamba et al., "Contrastive Losses and Solution Caching for Predict-and-Optimize", IJCAI 2021.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> pool = SolutionPool(ArgmaxOneHot(), torch.eye(3), solve_ratio=0.0)
        >>> MAPContrastiveLoss(pool)(torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[1.0, 0.0, 0.0]]))
        tensor(1.)
    """

    def contrast(self, scores: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return scores.max(dim=-1).values - target
