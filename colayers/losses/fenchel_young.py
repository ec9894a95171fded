r"""The Fenchel-Young loss of a perturbed or regularized layer (Blondel, Martins, Niculae, JMLR 2020)."""

from __future__ import annotations

import torch
from torch import nn

from .._validation import on_compiled_cpu
from ..oracles.base import linear_objective
from ._common import check_in_solution_set, check_simplex, inner, negative_loss_hint, sign_tolerance
from .base import StructuredLoss

__all__ = ["FenchelYoungLoss"]


class FenchelYoungLoss(StructuredLoss):
    r"""Fenchel-Young loss of a layer: :math:`L(\theta; \bar y) = \Omega^*(\theta) + \Omega(\bar y) -
    \langle\theta, \bar y\rangle \ge 0`, with gradient :math:`\mu(\theta) - \bar y` (hand-written).

    The loss asks the layer for what it needs, never for its class (a layer with both is served as regularized):

    * a layer with ``omega(mu)`` (regularized; its forward is :math:`\mu(\theta)`):
      :math:`L = \langle\theta, \mu - \bar y\rangle - \Omega(\mu) + \Omega(\bar y)`, exact. SoftArgmax at
      temperature T gives T(CE(θ/T, ȳ) − H(ȳ)), SparseArgmax the sparsemax loss.
    * a layer with ``perturbation`` and ``oracle`` (perturbed, η = ``perturbation.apply(θ, Z)``):
      :math:`\Omega^*(\theta) = \mathbb E_Z[\max_y F(\eta, y)]`, :math:`F(\eta, y) = \langle\eta, g(y)\rangle + h(y)`,
      estimated from the layer's S samples :math:`(\eta_s, y_s = f(\eta_s))` (``layer.sample(theta, generator)``;
      for a layer without ``sample``, ``perturbation.sample`` and one batched oracle call) as below.

    The perturbed estimate and its gradient:

    .. math::  \hat L = \frac1S\sum_s F(\eta_s, y_s) - F(\eta_s, \bar y), \qquad
               \widehat{\nabla_\theta L} = \frac1S\sum_s \Big(\frac{\partial\eta_s}{\partial\theta}\Big)^{\!\top}
               g(y_s) - g(\bar y),

    ≥ 0 sample-wise for ȳ ∈ Y; the gradient is the VJP of ``perturbation.apply`` at the drawn noise, the mean
    :math:`\frac1S\sum_s g(y_s) - g(\bar y)` where ``perturbation.identity_jacobian`` (additive η; one compiled
    pass over η, the y_s and ȳ on the CPU when the objective is :math:`\langle\eta, y\rangle` itself), and
    :math:`\frac1S\sum_s g(y_s)\odot e^{\varepsilon Z_s - \varepsilon^2/2}` for the multiplicative η (as
    InferOpt.jl). Unbiased for zero-mean noise; Gumbel noise (mean γ) shifts it by :math:`-\varepsilon\gamma
    \sum_i g(\bar y)_i` (one-hot argmax: ε·CE(θ/ε, ȳ)). ε = 0: the structured perceptron loss.

    Works with: SoftArgmax, SparseArgmax, RegularizedFrankWolfe, SoftRank (ascending; targets are rank vectors,
    checked by its ``contains``), PerturbedAdditive, PerturbedMultiplicative,
    Perturbed, IMLE, AIMLE, Blackbox (their perturbation defines Ω*; their VJP rule is unused), or a user's
    layer with either capability; anything else raises a :class:`TypeError` at construction.

    Targets (``validate_args``): in Y by the layer's ``oracle.contains``; without an oracle, by the layer's
    ``contains`` if it has one, else one-hot (a probability vector with ``allow_relaxed_targets``). The value
    is checked ≥ 0 up to rounding: a negative value means a minimizing oracle or swapped arguments.

    Args:
        layer: the layer whose regularizer or perturbation defines the loss.
        reduction, allow_relaxed_targets, validate_args: see :class:`~colayers.losses.StructuredLoss`.

    Call: ``loss(theta, y_target, generator=None)``; ``generator`` feeds a perturbed layer's noise.

    Reference: M. Blondel, A. F. T. Martins, V. Niculae, "Learning with Fenchel-Young Losses", JMLR 21, 2020;
    Q. Berthet et al., "Learning with Differentiable Perturbed Optimizers", NeurIPS 2020; InferOpt.jl.

    Example:
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

    sign_hint = negative_loss_hint(
        "A Fenchel-Young loss is >= 0 when the layer's oracle maximizes <theta, g(y)> + h(y) over a set Y that "
        "holds y_target", "loss(theta, y_target)"
    )

    def __init__(
        self,
        layer: nn.Module,
        reduction: str = "mean",
        *,
        allow_relaxed_targets: bool = False,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(reduction, allow_relaxed_targets=allow_relaxed_targets, validate_args=validate_args)
        oracle = getattr(layer, "oracle", None)
        self._regularized = callable(getattr(layer, "omega", None))
        if not self._regularized and (getattr(layer, "perturbation", None) is None or oracle is None):
            raise TypeError(
                "FenchelYoungLoss needs a layer with a regularizer omega(mu) (SoftArgmax, SparseArgmax, yours...) or "
                "with a .perturbation and an .oracle (PerturbedAdditive, IMLE, Blackbox, yours...); "
                f"got {type(layer).__name__}, which has neither omega nor perturbation and oracle"
            )
        self.layer = layer
        self.event_ndim = 1 if oracle is None else oracle.event_ndim

    @property
    def solution_set(self) -> object | None:
        """The layer's oracle, else the layer when it has ``contains``, else ``None`` (probability vectors)."""
        layer = self.layer
        oracle = getattr(layer, "oracle", None)
        return oracle if oracle is not None or not callable(getattr(layer, "contains", None)) else layer

    def check_target_in_set(self, name: str, y: torch.Tensor) -> None:  # noqa: D102 - see the class docstring
        solution_set = self.solution_set
        if solution_set is None:
            check_simplex(name, y, allow_relaxed=self.allow_relaxed_targets)
        else:
            check_in_solution_set(name, y, solution_set, allow_relaxed=self.allow_relaxed_targets)

    def forward(
        self, theta: torch.Tensor, y_target: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.evaluate(theta, y_target, generator=generator)

    def per_instance(self, theta, y_target, generator=None):  # noqa: D102 - the math of the class docstring
        layer, th = self.layer, theta.detach()
        if self._regularized:
            with torch.no_grad():
                mu = layer(th) if generator is None else layer(th, generator=generator)
                nd = self.event_ndim
                a, b = inner(th, mu, nd), inner(th, y_target, nd)
                om_mu, om_y = layer.omega(mu), layer.omega(y_target)
                value = a - b - om_mu + om_y
                scale = a.abs() + b.abs() + om_mu.abs() + om_y.abs() + inner(th, th, nd)
                return value, mu - y_target, scale
        oracle, pert = layer.oracle, layer.perturbation
        sample, atoms = self._sample(th, generator)  # η_s (S, *theta.shape), y_s = f(η_s) (S, *batch, *solution)
        if sample.noise is None or getattr(pert, "identity_jacobian", False):  # ∂η_s/∂θ = I (η_s = θ + εZ_s)
            return _statistics(oracle, sample.eta, atoms, y_target, self.event_ndim)
        num_samples = sample.eta.shape[0]
        with torch.no_grad():
            g_atoms, g_target = oracle.g(atoms), oracle.g(y_target)
            best, at_target = oracle.objective(sample.eta, atoms), oracle.objective(sample.eta, y_target)
            value, scale = (best - at_target).mean(0), (best.abs() + at_target.abs()).mean(0)
        vjp_sum = getattr(pert, "vjp_sum", None)  # the perturbation's VJP in closed form (Multiplicative...)
        with torch.no_grad():
            pulled = None if vjp_sum is None else vjp_sum(th, sample.noise, g_atoms)
        if pulled is not None:
            return value, pulled.div_(num_samples).sub_(g_target), scale
        # the gradient (1/S) Σ_s (∂η_s/∂θ)ᵀ g(y_s) - g(ȳ), the VJP of the perturbation at the drawn noise, by
        # autograd in the caller's backward: the value plus surrogate - surrogate.detach() (exactly 0) whose
        # gradient it is, with g(y_s) and g(ȳ) constants
        nd = self.event_ndim
        surrogate = inner(pert.apply(theta, sample.noise), g_atoms, nd).sum(0) / num_samples
        surrogate = surrogate - inner(theta, g_target, nd)
        return value + (surrogate - surrogate.detach()), None, scale

    def _sample(self, theta: torch.Tensor, generator: torch.Generator | None):
        """``layer.sample``, else ``perturbation.sample`` (``num_samples``, default 1) and one oracle call."""
        layer = self.layer
        if callable(getattr(layer, "sample", None)):
            return layer.sample(theta, generator)
        with torch.no_grad():
            sample = layer.perturbation.sample(theta, int(getattr(layer, "num_samples", 1)), generator)
            return sample, layer.oracle(sample.eta)

    def extra_repr(self) -> str:
        return f"layer={type(self.layer).__name__}, reduction={self.reduction!r}"


def _statistics(oracle, eta, atoms, y_target, event_ndim):
    r"""``(value, grad, scale)`` of the perturbed estimate where :math:`\partial\eta_s/\partial\theta = I`:
    :math:`\hat L`, :math:`\frac1S\sum_s g(y_s) - g(\bar y)` and the size of the terms. For a linear objective on
    the CPU (float32/float64), one compiled pass (:mod:`colayers.losses._fy_kernel`); otherwise tensor operations."""
    if (
        on_compiled_cpu(eta, atoms, y_target)
        and atoms.shape == eta.shape
        and y_target.shape == eta.shape[1:]
        and linear_objective(oracle)
    ):
        from . import _fy_kernel  # numba is imported on first use only

        value, scale, grad, lowest = _fy_kernel.linear_statistics(
            eta, atoms, y_target, event_ndim, sign_tolerance(eta.dtype)
        )
        # the kernel ran the sign check's rule: its scale is handed on only when an instance failed it, for the
        # error message (no scale: no check)
        return value, grad, scale if lowest < 0 else None
    with torch.no_grad():
        best, at_target = oracle.objective(eta, atoms), oracle.objective(eta, y_target)
        value, scale = (best - at_target).mean(0), (best.abs() + at_target.abs()).mean(0)
        return value, oracle.g(atoms).mean(0) - oracle.g(y_target), scale

