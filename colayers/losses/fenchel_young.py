r"""The Fenchel-Young loss of a perturbed or regularized layer (Blondel, Martins, Niculae, JMLR 2020)."""

from __future__ import annotations

import torch
from torch import nn

from .._validation import ValidateArgs
from ._common import (
    check_in_solution_set,
    check_like_theta,
    check_nonnegative,
    check_reduction_arg,
    check_simplex,
    check_theta,
    inner,
    reduce,
    sign_checkable,
    value_with_gradient,
)

__all__ = ["FenchelYoungLoss"]

_NEEDS = (
    "a layer with a regularizer omega(mu) (a regularized layer: SoftArgmax, SparseArgmax, RegularizedFrankWolfe, "
    "or your own) or with a .perturbation and an .oracle (a perturbed layer: PerturbedAdditive, "
    "PerturbedMultiplicative, Perturbed, IMLE, AIMLE, Blackbox, or your own)"
)


def _capability(layer: object) -> str:
    """'regularized' for a layer with a callable ``omega``, 'perturbed' for one with ``perturbation`` and
    ``oracle``; a :class:`TypeError` naming what is missing otherwise."""
    if callable(getattr(layer, "omega", None)):
        return "regularized"
    if getattr(layer, "perturbation", None) is not None and getattr(layer, "oracle", None) is not None:
        return "perturbed"
    raise TypeError(
        f"FenchelYoungLoss needs {_NEEDS}; got {type(layer).__name__}, which has neither omega nor "
        "perturbation and oracle"
    )


class FenchelYoungLoss(nn.Module):
    r"""Fenchel-Young loss of a layer.

    .. math::  L_\Omega(\theta; \bar y) = \Omega^*(\theta) + \Omega(\bar y) - \langle\theta, \bar y\rangle \ge 0.

    Its gradient is :math:`\nabla_\theta L = \mu(\theta) - \bar y` where :math:`\mu = \nabla\Omega^*` is the
    layer's output (hand-written: no autograd through the layer or the oracle). It is zero exactly when
    :math:`\mu(\theta) = \bar y` (for a strictly convex Ω).

    The loss serves a layer by what it can do, never by its class:

    **A layer with** ``omega(mu)`` (regularized: :math:`\mu(\theta) = \operatorname{argmax}_\mu
    \langle\theta,\mu\rangle - \Omega(\mu)` is its forward):
    :math:`\Omega^*(\theta) = \langle\theta,\mu(\theta)\rangle - \Omega(\mu(\theta))`, so
    :math:`L = \langle\theta, \mu - \bar y\rangle - \Omega(\mu) + \Omega(\bar y)`, exact (up to the
    Frank-Wolfe tolerance). SoftArgmax at temperature T gives :math:`T(\mathrm{CE}(\theta/T, \bar y) - H(\bar y))`
    (cross-entropy for one-hot targets); SparseArgmax gives the sparsemax loss.

    **A layer with** ``perturbation`` **and** ``oracle`` (perturbed, η = ``perturbation.apply(θ, Z)``):
    :math:`\Omega^*(\theta) = \mathbb E_Z[\max_y F(\eta(\theta, Z), y)]` with the oracle's objective
    :math:`F(\eta, y) = \langle\eta, g(y)\rangle + h(y)`. With S samples :math:`\eta_s` (``layer.num_samples``,
    drawn by ``perturbation.sample``) and :math:`y_s = f(\eta_s)` (ONE batched oracle call), the value is

    .. math::  \hat L = \frac1S\sum_s F(\eta_s, y_s) - F(\eta_s, \bar y)

    (≥ 0 sample-wise for :math:`\bar y\in\mathcal Y`: :math:`y_s` maximizes :math:`F(\eta_s, \cdot)`), whose
    mean is :math:`\mathbb E[\max_y F(\eta, y)] - \mathbb E[F(\eta, \bar y)]`. For zero-mean noise (Normal,
    additive) and for the mean-one multiplicative perturbation, :math:`\mathbb E[\eta] = \theta` and this is
    unbiased for :math:`L`. For Gumbel noise (mean γ) it is :math:`L - \varepsilon\gamma\sum_i g(\bar y)_i`,
    a constant shift that makes the estimator ≥ 0 and, for one-hot argmax, unbiased for the softmax FY loss
    :math:`\varepsilon\,\mathrm{logsumexp}(\theta/\varepsilon) - \langle\theta,\bar y\rangle` (= ε·CE(θ/ε, ȳ)).
    The gradient (Danskin's theorem through the reparametrization, same samples) is

    .. math::  \widehat{\nabla_\theta L} = \frac1S\sum_s \Big(\frac{\partial\eta_s}{\partial\theta}\Big)^{\!\top}
               g(y_s) - g(\bar y),

    computed as the vector-Jacobian product of ``perturbation.apply`` at the drawn noise: for the additive
    :math:`\eta_s = \theta + \varepsilon Z_s` it is :math:`\frac1S\sum_s g(y_s) - g(\bar y)`; for the
    multiplicative :math:`\eta_s = \theta\odot e^{\varepsilon Z_s - \varepsilon^2/2}` it is
    :math:`\frac1S\sum_s g(y_s)\odot e^{\varepsilon Z_s-\varepsilon^2/2} - g(\bar y)` (as InferOpt.jl). With
    no noise (ε = 0) it is the structured perceptron loss :math:`\max_y F(\theta, y) - F(\theta, \bar y)`.
    A layer with both capabilities is served as a regularized one.

    Works with: any layer with ``omega`` — SoftArgmax, SparseArgmax, RegularizedFrankWolfe (SparseMAP), or a
    user's regularized layer — and any layer with ``perturbation`` and ``oracle`` — PerturbedAdditive,
    PerturbedMultiplicative, :class:`~colayers.layers.Perturbed` with any perturbation, I-MLE, AIMLE and
    Blackbox (their perturbation defines Ω*; their own VJP rule is not used), or a user's layer; over any
    oracle. Anything else raises a :class:`TypeError` at construction that names the two capabilities.

    Targets: with ``validate_args``, ``y_target`` must lie in Y, tested by the layer's
    ``oracle.contains`` (:meth:`~colayers.oracles.Oracle.contains`; unchecked where it returns ``None``), or,
    for a layer without an oracle, by the layer's own ``contains(y)`` if it has one, else as a one-hot
    vector (the probability simplex of the last dimension, where SoftArgmax and SparseArgmax act). With
    ``allow_relaxed_targets`` a target in the convex hull is accepted (for a layer without an oracle or
    ``contains``: a probability vector). The value is then checked to be ≥ 0 up to a rounding tolerance (see
    :func:`~colayers.losses._common.check_nonnegative`): a negative Fenchel-Young loss means the oracle does
    not maximize (e.g. a cost minimizer passed as is) or the arguments are swapped.

    Args:
        layer: the layer whose regularizer or perturbation defines the loss.
        reduction: 'mean' | 'sum' | 'none' ('mean' of an empty batch is NaN, as in torch).
        allow_relaxed_targets: accept targets in the convex hull of Y instead of requiring vertices.
        validate_args: check shapes, finiteness, targets and the sign of the value on every call (costs a
            host synchronisation on CUDA); ``False`` skips every check.

    Call: ``loss(theta, y_target, generator=None)``; ``generator`` feeds a perturbed layer's noise (default:
    the layer's own generator when it has a ``seed``, else the global one).

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

    validate_args = ValidateArgs()  # None follows set_default_validate_args

    def __init__(
        self,
        layer: nn.Module,
        reduction: str = "mean",
        *,
        allow_relaxed_targets: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__()
        self._capability = _capability(layer)
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
        validate = self.validate_args
        check_theta(theta, nd, validate)
        y_target = check_like_theta("y_target", y_target, theta, validate).detach()
        if validate:
            self._check_target(y_target)
        if self._capability == "regularized":
            value, grad, scale = self._regularized(theta, y_target, nd, generator)
        else:
            value, grad, scale = self._perturbed(theta, y_target, generator)
        if validate and sign_checkable(getattr(self.layer, "oracle", None)):
            check_nonnegative("FenchelYoungLoss", value, scale, _SIGN_HINT)
        return reduce(value_with_gradient(theta, value, grad), self.reduction)

    def _check_target(self, y_target: torch.Tensor) -> None:
        layer, relaxed = self.layer, self.allow_relaxed_targets
        oracle = getattr(layer, "oracle", None)
        if oracle is not None:
            check_in_solution_set("y_target", y_target, oracle, allow_relaxed=relaxed)
        elif callable(getattr(layer, "contains", None)):
            if not relaxed:
                check_in_solution_set("y_target", y_target, layer, allow_relaxed=False)
        else:
            check_simplex("y_target", y_target, allow_relaxed=relaxed)

    def _regularized(self, theta, y_target, nd, generator):
        layer = self.layer
        with torch.no_grad():
            th = theta.detach()
            mu = layer(th) if generator is None else layer(th, generator=generator)
            a, b = inner(th, mu, nd), inner(th, y_target, nd)
            om_mu, om_y = layer.omega(mu), layer.omega(y_target)
            value = a - b - om_mu + om_y
            scale = a.abs() + b.abs() + om_mu.abs() + om_y.abs() + inner(th, th, nd)
            return value, mu - y_target, scale

    def _perturbed(self, theta, y_target, generator):
        layer = self.layer
        oracle, pert = layer.oracle, layer.perturbation
        num_samples = int(getattr(layer, "num_samples", 1))
        resolve = getattr(layer, "resolve_generator", None)
        gen = resolve(generator, theta) if callable(resolve) else generator
        th = theta.detach()
        with torch.no_grad():
            sample = pert.sample(th, num_samples, gen)
            atoms = oracle(sample.eta)  # (S, *batch, *solution)
            g_atoms = oracle.g(atoms)
            best = oracle.objective(sample.eta, atoms)  # (S, *batch)
            at_target = oracle.objective(sample.eta, y_target)
            value = (best - at_target).mean(0)
            scale = (best.abs() + at_target.abs()).mean(0)
        if sample.noise is None:  # no noise: η_s = θ
            mean_g = g_atoms.mean(0)
        else:  # d/dθ (1/S) Σ_s <η_s(θ), g(y_s)>: the VJP of the perturbation at the drawn noise
            with torch.enable_grad():
                t = theta.detach().requires_grad_(True)
                eta = pert.apply(t, sample.noise)
                (mean_g,) = torch.autograd.grad(eta, t, g_atoms / num_samples)
        return value, mean_g - oracle.g(y_target), scale

    def extra_repr(self) -> str:
        return f"layer={type(self.layer).__name__}, reduction={self.reduction!r}"


_SIGN_HINT = (
    "A Fenchel-Young loss is >= 0 when the layer's oracle maximizes <theta, g(y)> + h(y) over a set Y that holds "
    "y_target. Likely causes: a minimizing oracle (colayers oracles maximize: a cost minimizer such as scipy's "
    "linear_sum_assignment needs maximize=True, or theta = -cost), or swapped arguments (the call is "
    "loss(theta, y_target))."
)
