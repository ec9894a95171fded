r"""The Fenchel-Young loss of a perturbed or regularized layer (Blondel, Martins, Niculae, JMLR 2020)."""

from __future__ import annotations

import torch
from torch import nn

from ._common import (
    check_in_solution_set,
    check_like_theta,
    check_reduction_arg,
    check_simplex,
    check_theta,
    inner,
    reduce,
    value_with_gradient,
)

__all__ = ["FenchelYoungLoss"]

_SERVED = (
    "PerturbedAdditive (or Perturbed with an Additive perturbation), PerturbedMultiplicative (or Perturbed with a "
    "Multiplicative perturbation), SoftArgmax, SparseArgmax, RegularizedFrankWolfe (SparseMAP)"
)


def _layer_kind(layer: object) -> str:
    from ..layers.perturbed import Perturbed
    from ..layers.regularized import RegularizedFrankWolfe, SoftArgmax, SparseArgmax
    from ..perturb.perturbation import Additive, Multiplicative

    if isinstance(layer, Perturbed):
        if isinstance(layer.perturbation, Additive):
            return "additive"
        if isinstance(layer.perturbation, Multiplicative):
            return "multiplicative"
        raise TypeError(
            f"FenchelYoungLoss serves {_SERVED}; got a Perturbed layer with a {type(layer.perturbation).__name__} "
            "perturbation"
        )
    if isinstance(layer, (SoftArgmax, SparseArgmax)):
        return "simplex"
    if isinstance(layer, RegularizedFrankWolfe):
        return "polytope"
    raise TypeError(f"FenchelYoungLoss serves {_SERVED}; got {type(layer).__name__}")


class FenchelYoungLoss(nn.Module):
    r"""Fenchel-Young loss of a layer.

    .. math::  L_\Omega(\theta; \bar y) = \Omega^*(\theta) + \Omega(\bar y) - \langle\theta, \bar y\rangle \ge 0.

    Its gradient is :math:`\nabla_\theta L = \mu(\theta) - \bar y` where :math:`\mu = \nabla\Omega^*` is the
    layer's output (hand-written: no autograd through the layer or the oracle). It is zero exactly when
    :math:`\mu(\theta) = \bar y` (for a strictly convex Ω).

    **Regularized layers** (:class:`SoftArgmax`, :class:`SparseArgmax`, :class:`RegularizedFrankWolfe`):
    :math:`\Omega^*(\theta) = \langle\theta,\mu(\theta)\rangle - \Omega(\mu(\theta))` with the layer's ``omega``,
    so :math:`L = \langle\theta, \mu - \bar y\rangle - \Omega(\mu) + \Omega(\bar y)`, exact (up to the
    Frank-Wolfe tolerance). SoftArgmax at temperature T gives :math:`T(\mathrm{CE}(\theta/T, \bar y) - H(\bar y))`
    (cross-entropy for one-hot targets); SparseArgmax gives the sparsemax loss.

    **Perturbed layers**: :math:`\Omega^*(\theta) = \mathbb E_Z[\max_y\langle\eta(\theta, Z), y\rangle]`. With the
    layer's S samples :math:`\eta_s`, :math:`y_s = f(\eta_s)` (ONE batched oracle call) the value is estimated by

    .. math::  \hat L = \frac1S\sum_s \langle\eta_s, g(y_s) - g(\bar y)\rangle

    (≥ 0 sample-wise for :math:`\bar y\in\mathcal Y`),

    whose mean is :math:`\mathbb E[\max_y\langle\eta, y\rangle] - \langle\mathbb E[\eta], \bar y\rangle`. For
    zero-mean noise (Normal, additive) and for the mean-one multiplicative perturbation,
    :math:`\mathbb E[\eta] = \theta` and this is unbiased for :math:`L`. For Gumbel noise (mean γ)
    it is :math:`L - \varepsilon\gamma\sum_i\bar y_i`, a
    constant shift that makes the estimator ≥ 0 and, for one-hot argmax, unbiased for the softmax FY loss
    :math:`\varepsilon\,\mathrm{logsumexp}(\theta/\varepsilon) - \langle\theta,\bar y\rangle` (= ε·CE(θ/ε, ȳ)).
    Gradient, with the same samples:

    * additive :math:`\eta_s = \theta + \varepsilon Z_s`: :math:`\frac1S\sum_s g(y_s) - g(\bar y)`;
    * multiplicative :math:`\eta_s = \theta\odot e^{\varepsilon Z_s - \varepsilon^2/2}`:
      :math:`\frac1S\sum_s g(y_s)\odot e^{\varepsilon Z_s-\varepsilon^2/2} - g(\bar y)` (as InferOpt.jl).

    Works with: PerturbedAdditive, PerturbedMultiplicative (any :class:`~colayers.layers.Perturbed` with an
    Additive or Multiplicative perturbation, over any oracle), SoftArgmax, SparseArgmax,
    RegularizedFrankWolfe / SparseMAP. Any other layer raises a :class:`TypeError`.

    Args:
        layer: the layer whose regularizer defines the loss.
        reduction: 'mean' | 'sum' | 'none'.
        allow_relaxed_targets: accept targets in the convex hull of Y (e.g. probability vectors for
            SoftArgmax/SparseArgmax, which must still lie in the simplex) instead of requiring vertices.
        validate_args: check shapes, finiteness and targets on every call.

    Call: ``loss(theta, y_target, generator=None)``; ``generator`` feeds the perturbed layers' noise.

    Reference: M. Blondel, A. F. T. Martins, V. Niculae, "Learning with Fenchel-Young Losses", JMLR 21, 2020;
    Q. Berthet et al., "Learning with Differentiable Perturbed Optimizers", NeurIPS 2020;
    InferOpt.jl ``FenchelYoungLoss``.

    Example:
        >>> import torch
        >>> from colayers import SoftArgmax
        >>> loss = FenchelYoungLoss(SoftArgmax(), reduction="none")
        >>> theta = torch.tensor([[1.0, 2.0, 0.5]], requires_grad=True)
        >>> y = torch.tensor([[0.0, 1.0, 0.0]])
        >>> value = loss(theta, y)
        >>> bool(torch.allclose(value, torch.nn.functional.cross_entropy(theta, y.argmax(-1), reduction="none")))
        True
        >>> value.sum().backward()
        >>> bool(torch.allclose(theta.grad, torch.softmax(theta, -1) - y))
        True
    """

    def __init__(
        self,
        layer: nn.Module,
        reduction: str = "mean",
        *,
        allow_relaxed_targets: bool = False,
        validate_args: bool = True,
    ) -> None:
        super().__init__()
        self.kind = _layer_kind(layer)
        self.layer = layer
        self.reduction = check_reduction_arg(reduction)
        self.allow_relaxed_targets = allow_relaxed_targets
        self.validate_args = validate_args

    @property
    def event_ndim(self) -> int:
        oracle = getattr(self.layer, "oracle", None)
        return 1 if oracle is None else oracle.event_ndim

    def forward(
        self, theta: torch.Tensor, y_target: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        nd = self.event_ndim
        check_theta(theta, nd, self.validate_args)
        y_target = check_like_theta("y_target", y_target, theta, self.validate_args).detach()
        if self.validate_args:
            if self.kind == "simplex":
                check_simplex("y_target", y_target, allow_relaxed=self.allow_relaxed_targets)
            else:
                check_in_solution_set("y_target", y_target, self.layer.oracle, allow_relaxed=self.allow_relaxed_targets)
        if self.kind in ("additive", "multiplicative"):
            value, grad = self._perturbed(theta, y_target, generator, nd)
        else:
            value, grad = self._regularized(theta, y_target, nd)
        return reduce(value_with_gradient(theta, value, grad), self.reduction)

    def _regularized(self, theta, y_target, nd):
        with torch.no_grad():
            th = theta.detach()
            mu = self.layer(th)
            value = inner(th, mu - y_target, nd) - self.layer.omega(mu) + self.layer.omega(y_target)
            return value, mu - y_target

    def _perturbed(self, theta, y_target, generator, nd):
        layer = self.layer
        oracle = layer.oracle
        sample, atoms = layer.sample(theta, generator)
        with torch.no_grad():
            eta = sample.eta
            g_atoms = oracle.g(atoms)  # (S, *batch, *event)
            g_target = oracle.g(y_target)
            value = oracle.objective(eta, atoms) - oracle.objective(eta, y_target)  # (S, *batch)
            value = value.mean(0)
            if self.kind == "additive":
                mean_g = g_atoms.mean(0)
            else:
                factor = layer.perturbation.apply(torch.ones_like(theta), sample.noise)
                mean_g = (g_atoms * factor).mean(0)
        return value, mean_g - g_target

    def extra_repr(self) -> str:
        return f"layer={type(self.layer).__name__}, kind={self.kind!r}, reduction={self.reduction!r}"
