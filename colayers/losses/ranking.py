r"""Learning-to-rank losses over a solution pool (Mandi et al., ICML 2022; PyEPO's ``listwiseLearningToRank``,
``pairwiseLearningToRank``, ``pointwiseLearningToRank``, aliased ``lsLTR``, ``prLTR``, ``ptLTR``).

Each loss ranks the members :math:`w` of a pool :math:`\Gamma` (a :class:`~colayers.oracles.SolutionPool`) by their
objective under the predicted scores, :math:`f(\theta, w) = \langle\theta, g(w)\rangle + h(w)`, and compares that
ranking with the one under the true scores :math:`f(\bar\theta, w)`. The pool grows as in the contrastive losses
(:mod:`colayers.losses.contrastive`): the targets join it (``add_targets``) and, with probability
``pool.solve_ratio``, so do the oracle's solutions at the detached θ. Every gradient is exact (pool members are
constants) and flows by autograd, to θ and to :math:`\bar\theta` when it requires one.

Convention: colayers maximizes scores θ; PyEPO minimizes costs :math:`\hat c = -\theta`, :math:`c = -\bar\theta`.
With that mapping, the values are PyEPO's and the gradients in θ are minus PyEPO's gradients in :math:`\hat c`.
"""

from __future__ import annotations

import torch

from .._validation import check_args, nonnegative, positive, trusted_inputs
from ..oracles.pool import SolutionPool
from .contrastive import _PoolFrame

__all__ = ["ListwiseRankingLoss", "PairwiseRankingLoss", "PointwiseRankingLoss"]


class _RankingLoss(_PoolFrame):
    """The frame of the ranking losses: the pool, its refresh, the pool's objectives under θ and under θ̄."""

    def forward(
        self,
        theta: torch.Tensor,
        theta_true: torch.Tensor,
        y_target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """``(*batch)`` losses of scores θ ``(*batch, *event)`` against the true scores ``theta_true`` (same shape).

        ``y_target`` (optional, θ's shape): solutions in Y added to the pool (the optimal solutions for
        ``theta_true``, as PyEPO seeds its pool with the training set's); ``generator`` draws the solve-ratio coin.
        """
        self.check_scores(theta)
        theta_true = self.check_like_scores("theta_true", theta_true, theta)
        if y_target is not None:
            y_target = self.check_target(y_target, theta)
        with trusted_inputs():
            if y_target is not None and self.add_targets:
                self.pool.add(y_target)
            self.pool.update(theta, generator)
            value = self.rank(self.pool.scores(theta), self.pool.scores(theta_true))
        return self.finish(theta, value)

    def rank(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        """The loss ``(*batch)`` from the pool's objectives ``(*batch, |Γ|)`` under θ (``pred``) and θ̄ (``true``)."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"pool={self.pool!r}, reduction={self.reduction!r}"


class ListwiseRankingLoss(_RankingLoss):
    r"""Listwise learning-to-rank loss: cross-entropy between the pool's softmax rankings (PyEPO's
    ``listwiseLearningToRank``, ``lsLTR``).

    With :math:`s_w = f(\theta, w)`, :math:`\bar s_w = f(\bar\theta, w)` over the pool Γ and a temperature τ,

    .. math::  \ell(\theta;\bar\theta) = -\sum_{w\in\Gamma} \operatorname{softmax}(\bar s/\tau)_w\,
        \log\operatorname{softmax}(s/\tau)_w,
        \qquad \nabla_\theta\ell = \frac1\tau\sum_{w\in\Gamma}
        \big(\operatorname{softmax}(s/\tau)_w - \operatorname{softmax}(\bar s/\tau)_w\big)\, g(w).

    PyEPO (minimizing :math:`\hat c = -\theta`, :math:`c = -\bar\theta`) computes the same with τ = 1, except
    that it clamps the true probabilities at 10⁻⁸ from below (a pool member with a true probability under 10⁻⁸
    weighs 10⁻⁸ there and 0 here). The loss is ≥ the entropy of the true ranking (Gibbs' inequality), with
    equality when the two softmaxes agree.

    Works with: any :class:`~colayers.oracles.Oracle` (any g and h) wrapped in a
    :class:`~colayers.oracles.SolutionPool`; no layer.

    Args:
        pool: the :class:`~colayers.oracles.SolutionPool` (seed it with the training targets; its ``solve_ratio``
            is PyEPO's, default 1).
        temperature: τ > 0 (Mandi et al.'s τ; PyEPO's value is 1).
        reduction: 'mean' | 'sum' | 'none'.
        add_targets: add each batch's ``y_target`` to the pool.
        allow_relaxed_targets: skip the check that targets are vertices of Y.
        validate_args: check shapes, finiteness and targets on every call.

    Call: ``loss(theta, theta_true, y_target=None, generator=None)``.

    Reference: J. Mandi, V. Bucarey, M. Mulamba, T. Guns, "Decision-Focused Learning: Through the Lens of Learning
    to Rank", ICML 2022.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> from colayers.oracles import SolutionPool
        >>> pool = SolutionPool(ArgmaxOneHot(), torch.eye(2), solve_ratio=0.0)
        >>> loss = ListwiseRankingLoss(pool, temperature=2.0)
        >>> loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[4.0, 0.0]]))  # -log(1/2): a uniform prediction
        tensor(0.6931)
    """

    arg_constraints = {**_RankingLoss.arg_constraints, "temperature": positive}

    def __init__(
        self,
        pool: SolutionPool,
        temperature: float = 1.0,
        reduction: str = "mean",
        *,
        add_targets: bool = True,
        allow_relaxed_targets: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(
            pool,
            reduction,
            add_targets=add_targets,
            allow_relaxed_targets=allow_relaxed_targets,
            validate_args=validate_args,
        )
        self.temperature = check_args(self, temperature=temperature)["temperature"]

    def rank(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:  # noqa: D102
        q = torch.softmax(true / self.temperature, dim=-1)
        return -(q * torch.log_softmax(pred / self.temperature, dim=-1)).sum(dim=-1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={self.temperature}"


class PairwiseRankingLoss(_RankingLoss):
    r"""Pairwise learning-to-rank loss: the pool's true best beats every other member (PyEPO's
    ``pairwiseLearningToRank``, ``prLTR``).

    With :math:`b = \operatorname{argmax}_{w\in\Gamma} f(\bar\theta, w)` (the first in the pool's order on a tie)
    and a margin m ≥ 0,

    .. math::  \ell(\theta;\bar\theta) = \frac{1}{\max(|\Gamma|-1, 1)} \sum_{w\in\Gamma\setminus\{b\}}
        \big[m + f(\theta, w) - f(\theta, b)\big]_+,
        \qquad \nabla_\theta\ell = \frac{1}{\max(|\Gamma|-1,1)}\sum_{w \ne b,\ \text{active}} \big(g(w) - g(b)\big).

    PyEPO (minimizing :math:`\hat c = -\theta`, :math:`c = -\bar\theta`: :math:`b = \operatorname{argmin}_w c^\top w`,
    terms :math:`[\hat c^\top b - \hat c^\top w]_+`) is the case m = 0. Members tied with b under θ̄ count as
    worse than b. The loss is ≥ 0, and 0 when b beats every other member by the margin.

    Works with: as :class:`ListwiseRankingLoss`.

    Args:
        pool: the :class:`~colayers.oracles.SolutionPool`.
        margin: m ≥ 0 (PyEPO's value is 0).
        reduction, add_targets, allow_relaxed_targets, validate_args: as in :class:`ListwiseRankingLoss`.

    Reference: Mandi et al., ICML 2022 (as :class:`ListwiseRankingLoss`).

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> from colayers.oracles import SolutionPool
        >>> pool = SolutionPool(ArgmaxOneHot(), torch.eye(3), solve_ratio=0.0)
        >>> loss = PairwiseRankingLoss(pool, margin=0.5)
        >>> loss(torch.tensor([[1.0, 2.0, 0.0]]), torch.tensor([[3.0, 0.0, 0.0]]))  # ([1.5]_+ + [-0.5]_+) / 2
        tensor(0.7500)
    """

    arg_constraints = {**_RankingLoss.arg_constraints, "margin": nonnegative}

    def __init__(
        self,
        pool: SolutionPool,
        margin: float = 0.0,
        reduction: str = "mean",
        *,
        add_targets: bool = True,
        allow_relaxed_targets: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(
            pool,
            reduction,
            add_targets=add_targets,
            allow_relaxed_targets=allow_relaxed_targets,
            validate_args=validate_args,
        )
        self.margin = check_args(self, margin=margin)["margin"]

    def rank(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:  # noqa: D102
        best = true.argmax(dim=-1, keepdim=True)
        others = torch.ones_like(pred, dtype=torch.bool).scatter(-1, best, False)
        hinge = torch.relu(self.margin + pred - pred.gather(-1, best)) * others
        return hinge.sum(dim=-1) / max(pred.shape[-1] - 1, 1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, margin={self.margin}"


class PointwiseRankingLoss(_RankingLoss):
    r"""Pointwise learning-to-rank loss: each pool member's objective regressed on its true one (PyEPO's
    ``pointwiseLearningToRank``, ``ptLTR``).

    .. math::  \ell(\theta;\bar\theta) = \frac{1}{|\Gamma|}\sum_{w\in\Gamma} \big(f(\theta, w) - f(\bar\theta, w)\big)^2
        = \frac{1}{|\Gamma|}\sum_{w\in\Gamma} \langle\theta-\bar\theta, g(w)\rangle^2,
        \qquad \nabla_\theta\ell = \frac{2}{|\Gamma|}\sum_{w\in\Gamma}\langle\theta-\bar\theta, g(w)\rangle\, g(w).

    PyEPO (minimizing :math:`\hat c = -\theta`, :math:`c = -\bar\theta`: :math:`((c-\hat c)^\top w)^2` averaged
    over the pool) computes the same value. The loss is ≥ 0, and 0 at θ = θ̄.

    Works with: as :class:`ListwiseRankingLoss`.

    Args:
        pool, reduction, add_targets, allow_relaxed_targets, validate_args: as in :class:`ListwiseRankingLoss`.

    Reference: Mandi et al., ICML 2022 (as :class:`ListwiseRankingLoss`).

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> from colayers.oracles import SolutionPool
        >>> pool = SolutionPool(ArgmaxOneHot(), torch.eye(2), solve_ratio=0.0)
        >>> PointwiseRankingLoss(pool)(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 2.0]]))  # (2² + 0²) / 2
        tensor(2.)
    """

    def rank(self, pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return (pred - true).square().mean(dim=-1)
