r"""The vector-Jacobian-product rules of a :class:`~colayers.layers.Perturbed` layer.

A rule sees the forward's θ, its atoms :math:`f(\eta_s)` ``(S, *batch, *solution)``, the
:class:`~colayers.perturb.PerturbedSample` and the incoming gradient :math:`\bar y`, and returns the gradient of θ:

* :class:`ScoreFunctionRule` — :math:`\frac1S\sum_s \langle f(\eta_s) - b_s, \bar y\rangle\,
  \nabla_\theta\log p(\eta_s\mid\theta)` with a baseline :math:`b_s` (perturbed optimizers, Pushforward);
* :class:`FiniteDifferenceRule` — :math:`\frac1\lambda\frac1S\sum_s [f(\eta_s) - f(\eta'_s)]` toward the
  target :math:`\eta'_s = (\alpha\theta - \lambda\bar y_s) \oplus_{\tau'} Z_s` with the same noise (I-MLE,
  AIMLE with an :class:`AdaptiveLambda`, Blackbox as ε = 0);
* :class:`IdentityRule` — :math:`\pm\bar y` (straight-through; IdentityRelaxation as ε = 0).

Each rule is an object with the hooks of :class:`VJPRule`; the plain-tensor functions
:func:`score_function_vjp`, :func:`finite_difference_vjp` and :func:`identity_vjp` are the arithmetic they run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from .._validation import (
    boolean,
    check_args,
    integer_at_least,
    nonnegative,
    on_compiled_cpu,
    one_of,
    optional,
    positive,
    real,
    trusted_inputs,
)
from ..oracles.base import Oracle
from ..perturb import Additive, Normal, Perturbation, PerturbedSample

__all__ = [
    "BackwardContext",
    "VJPRule",
    "ScoreFunctionRule",
    "FiniteDifferenceRule",
    "AdaptiveLambda",
    "IdentityRule",
    "score_function_vjp",
    "finite_difference_vjp",
    "identity_vjp",
]


def _event_dims(ndim: int) -> tuple[int, ...]:
    return tuple(range(-ndim, 0)) if ndim > 0 else ()


def _unsqueeze_to(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append singleton dimensions to ``x`` until it has ``ndim`` dimensions."""
    return x.reshape(x.shape + (1,) * (ndim - x.ndim))


# --------------------------------------------------------------------------------------------------------------
# the VJP functions (plain tensors in, plain tensors out)


def score_function_vjp(
    theta: torch.Tensor,
    values: torch.Tensor,
    sample: PerturbedSample,
    perturbation: Perturbation,
    grad_output: torch.Tensor,
    value_ndim: int,
    *,
    baseline: bool = True,
    per_sample: bool = False,
) -> torch.Tensor:
    r"""Score-function (REINFORCE) VJP of :math:`\theta\mapsto\mathbb E_{\eta\sim p(\cdot\mid\theta)}[v(\eta)]`.

    .. math::
        \nabla_\theta \langle \mathbb E[v], \bar y\rangle \approx
        \frac1S\sum_{s=1}^S \langle v_s - b_s, \bar y\rangle \, \nabla_\theta \log p(\eta_s\mid\theta)

    with :math:`b_s` the perturbation's baseline (``perturbation.centered``: the leave-one-out mean of the
    other samples, or of the samples outside s's group for dependent samples such as antithetic pairs) or 0.
    With ``per_sample=True``, ``grad_output`` holds one :math:`\bar y_s` per sample (the samples were the
    output) and the VJP is :math:`\sum_s \langle v_s - b_s, \bar y_s\rangle\nabla_\theta\log p(\eta_s\mid\theta)`,
    the baseline being formed on the values. The score is never formed as a tensor of shape
    ``(S, *theta.shape)`` (``perturbation.score_mean``). This is the one implementation the layers and
    :class:`~colayers.layers.Pushforward` run; for ``Additive`` with ``Normal`` noise and independent samples on the
    CPU it is one compiled pass (:mod:`colayers.layers._score_kernel`, the same gradient up to rounding).

    Args:
        theta: θ, ``(*batch, *theta_event)``.
        values: :math:`v_s`, ``(S, *batch, *value_event)`` (oracle outputs, or costs with ``value_ndim = 0``).
        sample: the :class:`~colayers.perturb.PerturbedSample` the values come from.
        perturbation: its perturbation (gives the score).
        grad_output: :math:`\bar y`, ``(*batch, *value_event)`` (``(S, ...)`` with ``per_sample``).
        value_ndim: the number of event dimensions of ``values``.
        baseline: subtract the baseline.
        per_sample: see above.

    Returns:
        The gradient with respect to θ, of θ's shape.

    Example:
        >>> from colayers.perturb import Additive, PerturbedSample
        >>> pert = Additive(epsilon=0.5)
        >>> z = torch.tensor([[1.0, -1.0], [-1.0, 1.0]])  # S = 2 noises
        >>> values = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # their one-hot solutions
        >>> sample = PerturbedSample(eta=pert.apply(torch.zeros(2), z), noise=z)
        >>> # (1/2) sum_s <v_s - b_s, dy> z_s / eps with b_s the other sample
        >>> score_function_vjp(torch.zeros(2), values, sample, pert, torch.tensor([1.0, 0.0]), 1)
        tensor([ 2., -2.])
    """
    if not per_sample and _on_kernel(theta, values, sample, perturbation, grad_output):
        from . import _score_kernel  # numba is imported on first use only

        return _score_kernel.additive_normal_vjp(
            values, grad_output, sample.noise, perturbation.epsilon, value_ndim, baseline
        )
    dims = _event_dims(value_ndim)
    if per_sample:
        centered = perturbation.centered(values, sample) if baseline else values
        prod = centered * grad_output
        inner = prod.sum(dim=dims) if value_ndim else prod
        return perturbation.score_mean(theta, sample, inner * values.shape[0])
    prod = values * grad_output.unsqueeze(0)
    inner = prod.sum(dim=dims) if value_ndim else prod
    if baseline:
        inner = perturbation.centered(inner, sample)
    return perturbation.score_mean(theta, sample, inner)


def _on_kernel(theta, values, sample, perturbation, grad_output) -> bool:
    """Whether :func:`score_function_vjp` runs as one compiled pass (:mod:`colayers.layers._score_kernel`): θ + εZ
    with Normal Z exactly (``Additive`` itself, no subclass), independent samples, CPU tensors of one float32/64
    dtype."""
    noise = sample.noise
    return (
        type(perturbation) is Additive and type(perturbation.noise) is Normal and noise is not None
        and sample.groups is None and noise.shape[1:] == theta.shape
        and on_compiled_cpu(theta, values, grad_output, noise)
    )


def finite_difference_vjp(
    atoms: torch.Tensor, target_atoms: torch.Tensor, lambda_: float | torch.Tensor
) -> torch.Tensor:
    r"""Finite-difference VJP of I-MLE and Blackbox: :math:`\frac1\lambda\frac1S\sum_s (y_s - y'_s)`.

    ``atoms`` are :math:`y_s` and ``target_atoms`` the target solutions :math:`y'_s` (same noise);
    ``lambda_`` is a float or a tensor broadcastable to ``(S, *batch)`` (one λ per sample and instance,
    as in AIMLE).

    Returns:
        The gradient with respect to θ, shape ``atoms.shape[1:]``.

    Example:
        >>> finite_difference_vjp(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]]), 2.0)
        tensor([ 0.5000, -0.5000])
    """
    diff = atoms - target_atoms
    if isinstance(lambda_, torch.Tensor):
        diff = diff / _unsqueeze_to(lambda_, diff.ndim)
    elif lambda_ != 1.0:
        diff.div_(lambda_)
    return diff[0] if diff.shape[0] == 1 else diff.mean(0)  # the mean of one sample is that sample


def identity_vjp(grad_output: torch.Tensor, negative: bool = False) -> torch.Tensor:
    r"""Straight-through VJP: :math:`\bar y` (or :math:`-\bar y` with ``negative=True``).

    Example:
        >>> identity_vjp(torch.tensor([1.0, -2.0]), negative=True)
        tensor([-1.,  2.])
    """
    return -grad_output if negative else grad_output


# --------------------------------------------------------------------------------------------------------------
# the VJP rules (objects a layer is composed of)


@dataclass(frozen=True)
class BackwardContext:
    """What a rule's backward is handed besides tensors, as plain objects (no module goes through autograd's
    context): the layer's ``oracle`` and ``perturbation``, its ``output`` mode, the ``state`` the rule reads and
    updates (AIMLE's β and statistics; ``None`` for stateless rules) and whether the layer is ``training``."""

    oracle: Oracle
    perturbation: Perturbation
    rule: VJPRule
    output: str
    state: dict[str, Any] | None
    training: bool


class VJPRule:
    """A vector-Jacobian-product rule of a :class:`Perturbed` layer (the interface a new rule provides).

    A rule sees the forward's θ, its atoms :math:`f(\\eta_s)` ``(S, *batch, *solution)``, the
    :class:`~colayers.perturb.PerturbedSample` and the incoming gradient, and returns the gradient of θ.

    Example:
        >>> class ZeroRule(VJPRule):  # a (useless) custom rule: no gradient
        ...     def vjp(self, context, theta, atoms, sample, extra_draws, grad_output):
        ...         return torch.zeros_like(theta)
        >>> from colayers import ArgmaxOneHot, Perturbed
        >>> from colayers.perturb import Additive
        >>> theta = torch.tensor([0.0, 1.0], requires_grad=True)
        >>> Perturbed(ArgmaxOneHot(), Additive(epsilon=0.5), rule=ZeroRule(), num_samples=3)(theta)[1].backward()
        >>> theta.grad
        tensor([0., 0.])
    """

    def check(self, perturbation: Perturbation, num_samples: int, output: str) -> None:
        """Refuse, at construction, a perturbation or setting the rule cannot work with."""

    def check_atoms(self, atoms: torch.Tensor, theta: torch.Tensor) -> None:
        """Refuse, after the oracle call, solutions the rule cannot use."""

    def check_sample(self, perturbation: Perturbation, sample: PerturbedSample) -> None:
        """Refuse, after sampling, samples the rule cannot use (e.g. of unknown dependence)."""

    def num_extra_draws(self, perturbation: Perturbation, num_samples: int) -> int:
        """How many more noise draws the forward must make and keep for this rule's backward (default 0); they
        reach :meth:`vjp` as ``extra_draws``, shape ``(n, *theta.shape)``."""
        return 0

    def vjp(
        self,
        context: BackwardContext,
        theta: torch.Tensor,
        atoms: torch.Tensor,
        sample: PerturbedSample,
        extra_draws: torch.Tensor | None,
        grad_output: torch.Tensor,
    ) -> torch.Tensor:
        """The gradient of θ (θ's shape) given the incoming gradient of the layer's output."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class ScoreFunctionRule(VJPRule):
    r"""The score-function (REINFORCE, log-derivative) rule: :func:`score_function_vjp`.

    .. math::  J^\top\bar y \approx \frac1S\sum_s \langle f(\eta_s) - b_s, \bar y\rangle\,
               \nabla_\theta\log p(\eta_s\mid\theta)

    an unbiased estimate of the gradient of the perturbed mean :math:`\mu(\theta) = \mathbb E[f(\eta)]`
    (Berthet et al., NeurIPS 2020). With ``output="samples"`` each sample gets its own :math:`\bar y_s` and
    the estimate is :math:`\sum_s \langle f(\eta_s) - b_s, \bar y_s\rangle\nabla_\theta\log p(\eta_s\mid\theta)`.
    It needs a perturbation with a score (ε > 0 and Normal or Gumbel noise).

    Args:
        baseline: subtract the baseline :math:`b_s` (leave-one-out mean of the other samples; for antithetic
            pairs the mean of the other pairs, so that the estimate stays unbiased). Needs S ≥ 2 (S ≥ 4 with
            pairs); with fewer samples no baseline is subtracted.

    Example:
        >>> from colayers import ArgmaxOneHot
        >>> from colayers.perturb import Additive, Gumbel
        >>> from colayers.layers import Perturbed
        >>> layer = Perturbed(ArgmaxOneHot(), Additive(Gumbel(), 1.0), rule=ScoreFunctionRule(), num_samples=4000,
        ...                   seed=0)
        >>> theta = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)
        >>> layer(theta)[2].backward()  # d softmax_2 / d theta = p_2 (e_2 - p): about [-0.06, -0.16, 0.22]
        >>> [round(v, 1) for v in theta.grad.tolist()]
        [-0.1, -0.2, 0.2]
    """

    arg_constraints = {"baseline": boolean}

    def __init__(self, baseline: bool = True) -> None:
        vars(self).update(check_args(self, baseline=baseline))

    def check(self, perturbation, num_samples, output):
        perturbation.check_score()

    def check_sample(self, perturbation, sample):
        if self.baseline and sample.groups is None and perturbation.iid_samples is None:
            perturbation.centered(sample.eta[:1], sample)  # raises the TypeError that says what to declare

    def vjp(self, context, theta, atoms, sample, extra_draws, grad_output):
        value_ndim = atoms.ndim - theta.ndim - 1 + context.oracle.event_ndim
        return score_function_vjp(
            theta,
            atoms,
            sample,
            context.perturbation,
            grad_output,
            value_ndim,
            baseline=self.baseline,
            per_sample=context.output == "samples",
        )

    def __repr__(self) -> str:
        return f"ScoreFunctionRule(baseline={self.baseline})"


class AdaptiveLambda:
    r"""AIMLE's adaptive finite-difference step :math:`\lambda = \beta\,\|\theta\|/\|\bar y\|` with β adapted
    online (Minervini, Franceschi, Niepert, AAAI 2023), for :class:`FiniteDifferenceRule`.

    Where the norms are taken is ``per``:

    * ``"instance"`` (the default): one λ per sample s and instance b,
      :math:`\lambda_{s,b} = \beta\,\|\theta_b\|/\|\bar y_{s,b}\|` (norms over the event), the paper's
      per-instance formula applied to each instance of the batch;
    * ``"batch"``: ONE λ for the whole call, :math:`\lambda = \beta\,\|\theta\otimes 1_S\|/\|\bar y\|` with the
      norms over every entry, :math:`\bar y` of shape ``(S, *batch, *event)`` (each sample's incoming gradient;
      with ``output="mean"`` every sample gets :math:`\bar y`, and λ is :math:`\beta\|\theta\|/\|\bar y\|`) and
      θ repeated S times. This is what torch-adaptive-imle's ``aimle`` (its target side) and PyEPO's
      ``adaptiveImplicitMLE`` compute.

    β and its statistics are the layer's state (``state["beta"]``, ``"target"``, ``"running_nnz"``,
    ``"previous_update"``, float64 tensors); after each backward with ``state["adapt"]`` true, the mean
    number of non-zero gradient entries per sample (over the S·B sample-instance pairs) is smoothed by an
    exponential moving average (``decay``) and β moves by ``+step`` below ``target`` and ``-step`` otherwise
    (plus ``momentum`` times its previous move), clamped at β ≥ 0. An empty batch carries no statistic and leaves
    the state unchanged. A zero λ perturbs nothing and its difference, exactly zero, is divided by 1.

    Args:
        step: β's step size ≥ 0; momentum: ≥ 0; decay: the moving average's decay in [0, 1).
        per: ``"instance"`` or ``"batch"``, as above.

    Example:
        >>> theta = torch.tensor([[3.0, 4.0], [0.0, 1.0]])   # two instances, norms 5 and 1
        >>> dy = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])    # one sample, norms 1 and 2
        >>> state = {"beta": torch.tensor(0.5, dtype=torch.float64)}
        >>> AdaptiveLambda().lambdas(theta, dy, 1, state)   # 0.5 * 5 / 1, 0.5 * 1 / 2
        tensor([[2.5000, 0.2500]])
        >>> AdaptiveLambda(per="batch").lambdas(theta, dy, 1, state)   # 0.5 * sqrt(26) / sqrt(5)
        tensor([[1.1402, 1.1402]])
    """

    arg_constraints = {
        "step": nonnegative,
        "momentum": nonnegative,
        "decay": nonnegative,
        "per": one_of("instance", "batch"),
    }

    def __init__(self, step: float = 1e-3, momentum: float = 0.0, decay: float = 0.9, per: str = "instance") -> None:
        vars(self).update(check_args(self, step=step, momentum=momentum, decay=decay, per=per))
        if self.decay >= 1:
            raise ValueError(f"decay must be in [0, 1); got {decay!r}")

    def lambdas(self, theta: torch.Tensor, dy: torch.Tensor, event_ndim: int, state: dict[str, Any]) -> torch.Tensor:
        """λ ≥ 0 of shape ``(S, *batch)`` for ``dy`` of shape ``(S, *batch, *event)`` (0 where β, θ or ȳ is 0)."""
        beta = state["beta"].to(device=theta.device, dtype=theta.dtype)  # state may live on another device
        if self.per == "batch":  # one lambda: the norms of theta repeated S times and of every sample's dy
            norm_theta = torch.linalg.vector_norm(theta) * math.sqrt(dy.shape[0])
            norm_dy = torch.linalg.vector_norm(dy)
            lam = beta * norm_theta / torch.where(norm_dy > 0, norm_dy, 1.0)
            return lam.expand(dy.shape[: dy.ndim - event_ndim])
        dims = tuple(range(-event_ndim, 0))
        norm_theta = torch.linalg.vector_norm(theta, dim=dims).unsqueeze(0)
        norm_dy = torch.linalg.vector_norm(dy, dim=dims)
        return beta * norm_theta / torch.where(norm_dy > 0, norm_dy, 1.0)

    def update(self, diff: torch.Tensor, batch_ndim: int, state: dict[str, Any]) -> None:
        """β's online update from the per-sample number of non-zero entries of ``diff`` (no read-back); an empty
        batch leaves the state unchanged."""
        lead = diff.shape[: 1 + batch_ndim]
        if math.prod(lead) == 0:
            return
        running = state["running_nnz"]
        per_sample = diff.reshape(lead + (math.prod(diff.shape[1 + batch_ndim :]),)).ne(0).sum(-1)
        total = per_sample.sum().to(device=running.device, dtype=running.dtype)
        nnz = total / per_sample.numel()
        running.mul_(self.decay).add_((1.0 - self.decay) * nnz)
        step = (1.0 - 2.0 * (running >= state["target"]).to(running.dtype)) * self.step  # +step below target
        upd = self.momentum * state["previous_update"] + step
        state["beta"].add_(upd).clamp_(min=0.0)
        state["previous_update"].copy_(upd)

    def __repr__(self) -> str:
        per = "" if self.per == "instance" else f", per={self.per!r}"
        return f"AdaptiveLambda(step={self.step}, momentum={self.momentum}, decay={self.decay}{per})"


class FiniteDifferenceRule(VJPRule):
    r"""The finite-difference rule of I-MLE, AIMLE and Blackbox: a step toward a target score, same noise.

    With the forward's noise :math:`Z_s`, :math:`\eta = \theta \oplus_\varepsilon Z` the perturbation
    (:math:`\theta + \varepsilon Z` additive, :math:`\theta\odot e^{\varepsilon Z-\varepsilon^2/2}`
    multiplicative) and :math:`\bar y_s` the incoming gradient of sample s (:math:`\bar y` for every sample
    with ``output="mean"``):

    .. math::
        \theta'_s = \alpha\theta - \lambda\bar y_s, \qquad
        y'_s = \frac1M\sum_{m=1}^M f(\theta'_s \oplus_{\tau'} Z_{s,m}), \qquad
        \nabla_\theta \approx \frac1\lambda\,\frac1S\sum_{s=1}^S \big[f(\theta\oplus_\varepsilon Z_s) - y'_s\big]

    with :math:`Z_{s,1} = Z_s` (the same noise as the forward) and :math:`Z_{s,m\ge2}` further draws made in
    the forward (``num_target_samples = M``), τ' the target noise temperature (``target_temperature``,
    default ε). ``two_sided=True`` takes the central difference
    :math:`\frac1\lambda[f((\alpha\theta + \tfrac\lambda2\bar y_s)\oplus_{\tau'} Z_s) -
    f((\alpha\theta - \tfrac\lambda2\bar y_s)\oplus_{\tau'} Z_s)]` (no bias of order λ; one more solve
    per sample). The S·M (or 2·S·M) target instances go to the oracle in ONE batched call. The S
    differences are averaged (I-MLE's convention) in both output modes.

    α = 1, τ' = ε, M = 1 is I-MLE (Niepert, Minervini, Franceschi, NeurIPS 2021); ε = 0 is Blackbox
    differentiation (Vlastelica et al., ICLR 2020); torch-imle's ``TargetDistribution(alpha, beta)`` is
    ``alpha=alpha, lambda_=beta`` with ``divide_by_lambda=False``, its ``target_noise_temperature`` is
    ``target_temperature`` and its ``nb_marginal_samples`` ``num_target_samples``.

    Args:
        lambda_: λ > 0, or an :class:`AdaptiveLambda` (AIMLE).
        two_sided: the central difference.
        alpha: α, the weight of θ in the target (finite; 1 by default; torch-imle's path example uses 0).
        target_temperature: τ' ≥ 0, the noise temperature of the target side (``None``: the
            perturbation's ε). With ε = 0 and τ' > 0 the forward is the plain solution f(θ) and only the
            target side is perturbed, with noise drawn in the forward (torch-imle's
            ``input_noise_temperature=0``); with ε = 0 and τ' unset there is no noise at all (Blackbox).
        num_target_samples: M ≥ 1 target samples per input sample (M > 1 needs noise on the target side).
        divide_by_lambda: divide the difference by λ (``False``: torch-imle's unscaled gradient).

    Example:
        >>> from colayers import ArgmaxOneHot, Perturbed
        >>> from colayers.perturb import Additive
        >>> rule = FiniteDifferenceRule(lambda_=2.0, alpha=0.0)  # target theta' = -2 dy
        >>> theta = torch.tensor([3.0, 0.0, 1.0], requires_grad=True)
        >>> y = Perturbed(ArgmaxOneHot(), Additive(epsilon=0.0), rule=rule, num_samples=1)(theta)
        >>> (y * torch.tensor([0.0, -1.0, 0.0])).sum().backward()  # theta' = [0, 2, 0]: f = e_1
        >>> theta.grad  # (e_0 - e_1) / 2
        tensor([ 0.5000, -0.5000,  0.0000])
    """

    arg_constraints = {
        "lambda_": positive,  # or an AdaptiveLambda
        "two_sided": boolean,
        "alpha": real,
        "target_temperature": optional(nonnegative),
        "num_target_samples": integer_at_least(1),
        "divide_by_lambda": boolean,
    }

    def __init__(
        self,
        lambda_: float | AdaptiveLambda = 10.0,
        *,
        two_sided: bool = False,
        alpha: float = 1.0,
        target_temperature: float | None = None,
        num_target_samples: int = 1,
        divide_by_lambda: bool = True,
    ) -> None:
        self.lambda_: float | AdaptiveLambda = (
            lambda_ if isinstance(lambda_, AdaptiveLambda) else positive.check("lambda_", lambda_)
        )
        checked = check_args(
            self,
            two_sided=two_sided,
            alpha=alpha,
            target_temperature=target_temperature,
            num_target_samples=num_target_samples,
            divide_by_lambda=divide_by_lambda,
        )
        vars(self).update(checked)

    @property
    def adaptive(self) -> bool:
        return isinstance(self.lambda_, AdaptiveLambda)

    def target_noise(self, perturbation: Perturbation) -> bool:
        """Whether the target side is perturbed: τ' > 0 (τ' = ε when unset)."""
        tau = perturbation.epsilon if self.target_temperature is None else self.target_temperature
        return tau > 0

    def check(self, perturbation, num_samples, output):
        if self.num_target_samples > 1 and not self.target_noise(perturbation):
            raise ValueError(
                f"num_target_samples > 1 needs noise on the target side (epsilon > 0 or target_temperature > 0); "
                f"got num_target_samples={self.num_target_samples} with epsilon = {perturbation.epsilon} and "
                f"target_temperature = {self.target_temperature}"
            )

    def check_atoms(self, atoms, theta):
        if atoms.shape != (atoms.shape[0], *theta.shape):
            raise ValueError(
                f"oracle must return solutions of theta's shape for the finite-difference rule; "
                f"got {tuple(atoms.shape[1:])} for theta {tuple(theta.shape)}"
            )

    def num_extra_draws(self, perturbation, num_samples):
        if perturbation.epsilon > 0:  # Z_{s,1} is the forward's noise; the M - 1 others are drawn here
            return (self.num_target_samples - 1) * num_samples
        # no forward noise: a perturbed target side draws all M of its noises here
        return self.num_target_samples * num_samples if self.target_noise(perturbation) else 0

    def vjp(self, context, theta, atoms, sample, extra_draws, grad_output):
        s = atoms.shape[0]
        event_ndim = context.oracle.event_ndim
        pert = context.perturbation
        dy = grad_output.unsqueeze(0).expand_as(atoms) if context.output == "mean" else grad_output
        if self.adaptive:
            lam = self.lambda_.lambdas(theta, dy, event_ndim, context.state)
            step = _unsqueeze_to(lam, dy.ndim) * dy
        else:
            lam = self.lambda_
            step = lam * dy
        center = theta.unsqueeze(0) if self.alpha == 1.0 else self.alpha * theta.unsqueeze(0)
        noise = sample.noise
        m = self.num_target_samples

        def perturb(centers: torch.Tensor, copies: int) -> torch.Tensor:
            # centers (copies * S, ...): the target scores, perturbed with the forward noise (and the extra draws)
            # (M * S, ...): Z_{s,1} = Z_s (the forward's noise, None when epsilon = 0), then the extra draws (None
            # when M = 1 with forward noise; all M * S of them when only the target side is perturbed)
            draws = [d for d in (noise, extra_draws) if d is not None]
            if not draws:
                return centers
            z = draws[0] if len(draws) == 1 else torch.cat(draws)
            z = z.repeat((copies,) + (1,) * (z.ndim - 1)) if copies > 1 else z
            return pert.apply(centers, z, self.target_temperature)

        def rep(x: torch.Tensor) -> torch.Tensor:
            x = x.expand_as(atoms)
            return x if m == 1 else x.repeat((m,) + (1,) * (x.ndim - 1))

        def mean_over_targets(y: torch.Tensor) -> torch.Tensor:
            return y if m == 1 else y.reshape((m, s) + y.shape[1:]).mean(0)

        with torch.no_grad(), trusted_inputs():  # targets derived from the checked theta: not checked again
            if self.two_sided:
                half = 0.5 * step
                both = context.oracle(perturb(torch.cat([rep(center + half), rep(center - half)]), 2))
                upper, lower = mean_over_targets(both[: m * s]), mean_over_targets(both[m * s :])
            else:
                upper = atoms
                lower = mean_over_targets(context.oracle(perturb(rep(center - step), 1)))
            if not self.divide_by_lambda:
                divisor: float | torch.Tensor = 1.0
            elif isinstance(lam, torch.Tensor):
                # a zero lambda (AIMLE with beta = 0) perturbs nothing, so upper == lower: divide that zero by 1
                divisor = torch.where(lam > 0, lam, torch.ones_like(lam))
            else:
                divisor = lam
            grad = finite_difference_vjp(upper, lower, divisor)
            if self.adaptive and context.training and context.state is not None and context.state.get("adapt", False):
                self.lambda_.update(upper - lower, theta.ndim - event_ndim, context.state)
        return grad

    def __repr__(self) -> str:
        parts = [f"lambda_={self.lambda_!r}"]
        if self.two_sided:
            parts.append("two_sided=True")
        if self.alpha != 1.0:
            parts.append(f"alpha={self.alpha}")
        if self.target_temperature is not None:
            parts.append(f"target_temperature={self.target_temperature}")
        if self.num_target_samples != 1:
            parts.append(f"num_target_samples={self.num_target_samples}")
        if not self.divide_by_lambda:
            parts.append("divide_by_lambda=False")
        return f"FiniteDifferenceRule({', '.join(parts)})"


class IdentityRule(VJPRule):
    r"""The straight-through (identity) rule: :math:`J^\top\bar y := \pm\bar y` (:func:`identity_vjp`).

    With ``output="samples"`` the per-sample gradients are summed (each sample's Jacobian is taken to be
    ±I). ``negative=True`` passes :math:`-\bar y`, for an oracle that *minimizes* its input. References:
    Bengio, Léonard, Courville 2013; Sahoo et al., ICLR 2023.

    Example:
        >>> from colayers import ArgmaxOneHot, Perturbed
        >>> from colayers.perturb import Additive
        >>> theta = torch.tensor([0.5, 2.0], requires_grad=True)
        >>> y = Perturbed(ArgmaxOneHot(), Additive(epsilon=0.0), rule=IdentityRule(), num_samples=1)(theta)
        >>> (y * torch.tensor([3.0, 4.0])).sum().backward(); theta.grad
        tensor([3., 4.])
    """

    arg_constraints = {"negative": boolean}

    def __init__(self, negative: bool = False) -> None:
        vars(self).update(check_args(self, negative=negative))

    def check_atoms(self, atoms, theta):
        if atoms.shape != (atoms.shape[0], *theta.shape):
            raise ValueError(
                f"oracle must return solutions of theta's shape {tuple(theta.shape)} for the identity rule; "
                f"got {tuple(atoms.shape[1:])}"
            )

    def vjp(self, context, theta, atoms, sample, extra_draws, grad_output):
        g = grad_output.sum(0) if context.output == "samples" else grad_output
        return identity_vjp(g, self.negative)

    def __repr__(self) -> str:
        return f"IdentityRule(negative={self.negative})"
