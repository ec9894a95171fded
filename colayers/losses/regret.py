r"""Decision-focused losses through a layer: expected regret from true scores, and expected cost ("experience")."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._validation import check_finite, trusted_inputs
from ..oracles.base import Oracle
from ._common import inner
from .base import StructuredLoss

__all__ = ["RegretLoss", "ExperienceLoss"]


class RegretLoss(StructuredLoss):
    r"""Expected regret under a layer's distribution, from the true scores :math:`\bar\theta`:

    .. math::  \ell(\theta; \bar\theta) = \mathbb E_{y\sim p(\cdot\mid\theta)}\big[\langle\bar\theta, \bar y\rangle
               - \langle\bar\theta, y\rangle\big] = \langle\bar\theta, \bar y - \mu(\theta)\rangle \;\ge 0,

    with :math:`\bar y = f(\bar\theta)` and :math:`\mu(\theta) = \mathbb E_p[y]` the layer's differentiable output
    (the objective is linear in y, so the expectation passes through the mean). The gradient is the layer's
    own VJP applied to :math:`-\bar\theta`: the score function for perturbed layers, the finite difference
    for IMLE/Blackbox (whose sample outputs ``(S, *batch, *event)`` are averaged), the straight-through
    identity, or the exact Jacobian of a regularized layer. For a cost that is not linear in y, use
    :class:`ExperienceLoss`. The oracle's statistic g must be the identity and its offset h zero (checked
    with ``validate_args``: a :class:`ValueError` otherwise), since only the mean :math:`\mathbb E[y]` is used.

    Works with: any differentiable layer ``layer(theta, generator=...)`` whose output is the mean
    :math:`\mu(\theta)` (or S samples of it) — every layer of :mod:`colayers.layers` (PerturbedAdditive,
    PerturbedMultiplicative, IMLE, AIMLE, Blackbox, IdentityRelaxation, SoftArgmax, SparseArgmax,
    RegularizedFrankWolfe) and a user's own. The target :math:`\bar y = f(\bar\theta)` comes from
    ``oracle`` or the layer's ``.oracle``; a layer without one (SoftArgmax, SparseArgmax) needs ``oracle=`` or
    an explicit ``y_target``.

    Args:
        layer: the layer producing μ(θ).
        oracle: the oracle computing :math:`\bar y = f(\bar\theta)` (default: ``layer.oracle``).
        reduction: 'mean' | 'sum' | 'none'.
        allow_relaxed_targets: skip the check that a given ``y_target`` is a vertex of Y.
        validate_args: check shapes, finiteness and targets on every call.

    Call: ``loss(theta, theta_true, y_target=None, generator=None)``.

    Reference: InferOpt.jl (regret as a ``Pushforward`` of a perturbed layer); Berthet et al., NeurIPS 2020;
    Elmachtoub & Grigas 2022 for the regret itself.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot, SoftArgmax
        >>> loss = RegretLoss(SoftArgmax(), oracle=ArgmaxOneHot())
        >>> theta = torch.zeros(1, 3, requires_grad=True)
        >>> value = loss(theta, torch.tensor([[3.0, 0.0, 0.0]]))  # 3 - 3 * (1/3)
        >>> value.backward()
        >>> value.item(), bool(theta.grad[0, 0] < 0)
        (2.0, True)
    """

    def __init__(
        self,
        layer: nn.Module,
        reduction: str = "mean",
        *,
        oracle: Oracle | None = None,
        allow_relaxed_targets: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(reduction, allow_relaxed_targets=allow_relaxed_targets, validate_args=validate_args)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"layer must be a colayers layer (a torch.nn.Module); got {type(layer).__name__}")
        if oracle is not None and not isinstance(oracle, Oracle):
            raise TypeError(f"oracle must be a colayers Oracle or None; got {type(oracle).__name__}")
        self.layer = layer
        self.oracle = oracle if oracle is not None else getattr(layer, "oracle", None)
        layer_oracle = getattr(layer, "oracle", None)
        self.event_ndim = next((o.event_ndim for o in (oracle, layer_oracle) if o is not None), 1)

    def forward(
        self,
        theta: torch.Tensor,
        theta_true: torch.Tensor,
        y_target: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        self.check_scores(theta)
        theta_true = self.check_like_scores("theta_true", theta_true, theta).detach()
        if y_target is None and self.oracle is None:
            raise ValueError(
                f"{type(self.layer).__name__} has no oracle: pass y_target or build RegretLoss(layer, oracle=...)"
            )
        if y_target is not None:
            y_target = self.check_target(y_target, theta)
        with trusted_inputs():  # the layer and the oracle get the tensors just checked
            if y_target is None:
                y_target = self.oracle(theta_true)
            if self.validate_args and self.oracle is not None:
                self._check_linear_objective(y_target)
            mu = self.layer(theta, generator=generator)
        if mu.ndim == theta.ndim + 1:  # IMLE-style sample outputs (S, *batch, *event)
            mu = mu.mean(0)
        nd = self.event_ndim
        return self.finish(theta, inner(theta_true, y_target, nd) - inner(theta_true, mu, nd))

    def _check_linear_objective(self, y: torch.Tensor) -> None:
        oracle = self.oracle
        if oracle.h(y) is not None or not torch.equal(oracle.g(y), y):
            raise ValueError(
                f"RegretLoss needs an oracle whose objective is <theta, y> (g the identity, h zero), since it uses "
                f"the layer's mean E[y]; {oracle!r} has another g or h. Use ExperienceLoss with the regret "
                "F(theta_true, y_target) - F(theta_true, y) as cost_fn instead"
            )

    def extra_repr(self) -> str:
        return f"layer={type(self.layer).__name__}, reduction={self.reduction!r}"


class ExperienceLoss(StructuredLoss):
    r"""Expected cost of a perturbed layer's solutions ("learning by experience", InferOpt's ``Pushforward``):

    .. math::  \ell(\theta) = \mathbb E_{\eta\sim p(\cdot\mid\theta)}\big[\varphi(f(\eta), \text{args})\big]
               \approx \frac1S\sum_s\varphi(y_s, \text{args}),

    differentiated by the score function (with the layer's leave-one-out baseline) through
    :class:`~colayers.layers.Pushforward`; φ is never differentiated, so it may be any black-box cost: a
    simulator, a non-linear cost, or a regret. No target solution is needed.

    Works with: PerturbedAdditive, PerturbedMultiplicative (any :class:`~colayers.layers.Perturbed` layer
    whose noise has a closed-form density).

    Args:
        layer: a perturbed layer.
        cost_fn: ``cost_fn(atoms, *args) -> (S, *batch)`` with atoms ``(S, *batch, *solution)``; ``args`` are the
            extra tensors passed to the call (e.g. true costs).
        reduction: 'mean' | 'sum' | 'none'.
        validate_args: check that the floating tensors in ``args`` and cost_fn's values are finite (a NaN
            raises a ValueError naming it); ``None`` follows :func:`~colayers.set_default_validate_args`.

    Call: ``loss(theta, *args, generator=None)``.

    Reference: G. Dalle, L. Baty, L. Bouvier, A. Parmentier, "Learning with Combinatorial Optimization Layers:
    a Probabilistic Approach", 2022 (InferOpt.jl).

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot, PerturbedAdditive
        >>> layer = PerturbedAdditive(ArgmaxOneHot(), num_samples=100, seed=0)
        >>> loss = ExperienceLoss(layer, lambda y, cost: (y * cost).sum(-1))
        >>> theta = torch.zeros(1, 3, requires_grad=True)
        >>> loss(theta, torch.tensor([[3.0, 1.0, 2.0]])).backward()
        >>> int(theta.grad.argmin())  # raise the score of the cheapest item
        1
    """

    def __init__(
        self,
        layer: nn.Module,
        cost_fn: Callable[..., torch.Tensor],
        reduction: str = "mean",
        *,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(reduction, validate_args=validate_args)
        from ..layers.pushforward import Pushforward

        if not callable(cost_fn):
            raise TypeError(f"cost_fn must be callable; got {type(cost_fn).__name__}")
        self._pushforward_cls = Pushforward
        Pushforward(layer, cost_fn)  # validates the layer type with a clear TypeError
        self.layer = layer
        self.cost_fn = cost_fn

    def forward(
        self, theta: torch.Tensor, *args: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        validate = self.validate_args
        for i, arg in enumerate(args):  # a NaN target or true cost would make the loss NaN without a word
            if validate and isinstance(arg, torch.Tensor) and arg.is_floating_point():
                check_finite(f"args[{i}] (the extra tensors passed to cost_fn)", arg)
        cost = self.cost_fn
        push = self._pushforward_cls(self.layer, lambda atoms: cost(atoms, *args), validate_args=validate)
        return self.finish(theta, push(theta, generator=generator))  # the layer checks θ, once

    def extra_repr(self) -> str:
        return f"layer={type(self.layer).__name__}, reduction={self.reduction!r}"
