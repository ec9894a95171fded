r"""The shared core of every estimator: an oracle, a perturbation and a vector-Jacobian-product rule.

Every probabilistic layer replaces the piecewise-constant oracle
:math:`f(\theta) = \operatorname{argmax}_{y\in\mathcal Y}\langle\theta, y\rangle` by the law
:math:`p(\cdot\mid\theta)` of :math:`f(\eta)`, :math:`\eta` drawn from a :class:`~colayers.perturb.Perturbation`
of θ (ε = 0 is the Dirac at :math:`f(\theta)`), outputs its Monte Carlo mean
:math:`\hat\mu(\theta) = \frac1S\sum_s f(\eta_s)` (``output="mean"``) or the S hard samples
(``output="samples"``), and back-propagates with a VJP rule object:

* :class:`ScoreFunctionRule` — :math:`\frac1S\sum_s \langle f(\eta_s) - b_s, \bar y\rangle\,
  \nabla_\theta\log p(\eta_s\mid\theta)` with a baseline :math:`b_s` (perturbed optimizers, Pushforward);
* :class:`FiniteDifferenceRule` — :math:`\frac1\lambda\frac1S\sum_s [f(\eta_s) - f(\eta'_s)]` toward the
  target :math:`\eta'_s = (\alpha\theta - \lambda\bar y_s) \oplus_{\tau'} Z_s` with the same noise (I-MLE,
  AIMLE with an :class:`AdaptiveLambda`, Blackbox as ε = 0);
* :class:`IdentityRule` — :math:`\pm\bar y` (straight-through; IdentityRelaxation as ε = 0).

:class:`Perturbed` is that composition as a :class:`torch.nn.Module`; the named estimators
(:class:`~colayers.layers.PerturbedAdditive`, :class:`~colayers.layers.IMLE`, :class:`~colayers.layers.Blackbox`...)
are presets of it, and :func:`perturbed` is the same computation as a function. A new estimator is a new
combination, e.g. I-MLE on a multiplicative perturbation::

    Perturbed(oracle, Multiplicative(Normal(), 0.5), rule=FiniteDifferenceRule(lambda_=5.0), num_samples=4)

:func:`active_set_vjp` is the implicit-differentiation rule of the regularized (Frank-Wolfe) layers.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import torch

from .._validation import (
    ValidateArgs,
    check_event_shape,
    check_finite,
    check_generator,
    check_int_at_least,
    check_positive,
    check_tensor,
    check_validate_args,
    resolve_validate_args,
    trusted_inputs,
)
from ..distribution import SolutionDistribution
from ..oracles.base import Oracle
from ..perturb import Perturbation, PerturbedSample

__all__ = [
    "OracleLayer",
    "Perturbed",
    "perturbed",
    "VJPRule",
    "ScoreFunctionRule",
    "FiniteDifferenceRule",
    "AdaptiveLambda",
    "IdentityRule",
    "score_function_vjp",
    "finite_difference_vjp",
    "identity_vjp",
    "active_set_vjp",
    "OUTPUTS",
]

#: the forward modes of every stochastic layer
OUTPUTS = ("mean", "samples")


def _event_dims(ndim: int) -> tuple[int, ...]:
    return tuple(range(-ndim, 0)) if ndim > 0 else ()


def _unsqueeze_to(x: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append singleton dimensions to ``x`` until it has ``ndim`` dimensions."""
    return x.reshape(x.shape + (1,) * (ndim - x.ndim))


def check_output(output: str) -> str:
    """Require ``"mean"`` or ``"samples"``."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}; got {output!r}")
    return output


def check_theta(theta: torch.Tensor, oracle: Oracle, validate: bool) -> tuple[int, ...]:
    """Check θ against the oracle's event shape (always: no tensor value is read) and, when ``validate``,
    its finiteness (one reduction and one read-back to the host); return the batch shape."""
    check_tensor("theta", theta)
    batch = check_event_shape("theta", theta, oracle.event_shape, oracle.event_ndim)
    if validate:
        check_finite("theta", theta)
    return batch


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
    :class:`~colayers.layers.Pushforward` run.

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
class _Plan:
    """What the backward needs, as plain objects (no module goes through the autograd context)."""

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
        ...     def vjp(self, plan, theta, atoms, sample, aux, grad_output):
        ...         return torch.zeros_like(theta)
        >>> from colayers import ArgmaxOneHot
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

    def extra_noise(self, perturbation: Perturbation, num_samples: int) -> int:
        """How many more noise draws the forward must make and keep for this rule's backward (default 0)."""
        return 0

    def vjp(
        self,
        plan: _Plan,
        theta: torch.Tensor,
        atoms: torch.Tensor,
        sample: PerturbedSample,
        aux: torch.Tensor | None,
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
        >>> layer = Perturbed(ArgmaxOneHot(), Additive(Gumbel(), 1.0), rule=ScoreFunctionRule(), num_samples=4000, seed=0)
        >>> theta = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)
        >>> layer(theta)[2].backward()  # d softmax_2 / d theta = p_2 (e_2 - p): about [-0.06, -0.16, 0.22]
        >>> [round(v, 1) for v in theta.grad.tolist()]
        [-0.1, -0.2, 0.2]
    """

    def __init__(self, baseline: bool = True) -> None:
        if not isinstance(baseline, bool):
            raise TypeError(f"baseline must be a bool; got {type(baseline).__name__} {baseline!r}")
        self.baseline = baseline

    def check(self, perturbation, num_samples, output):
        perturbation.check_score()

    def check_sample(self, perturbation, sample):
        if self.baseline and sample.groups is None and perturbation.iid_samples is None:
            perturbation.centered(sample.eta[:1], sample)  # raises the TypeError that says what to declare

    def vjp(self, plan, theta, atoms, sample, aux, grad_output):
        value_ndim = atoms.ndim - theta.ndim - 1 + plan.oracle.event_ndim
        return score_function_vjp(
            theta,
            atoms,
            sample,
            plan.perturbation,
            grad_output,
            value_ndim,
            baseline=self.baseline,
            per_sample=plan.output == "samples",
        )

    def __repr__(self) -> str:
        return f"ScoreFunctionRule(baseline={self.baseline})"


class AdaptiveLambda:
    r"""AIMLE's adaptive finite-difference step :math:`\lambda = \beta\,\|\theta\|/\|\bar y_s\|` with β adapted
    online (Minervini, Franceschi, Niepert, AAAI 2023), for :class:`FiniteDifferenceRule`.

    β and its statistics are the layer's state (``state["beta"]``, ``"target"``, ``"running_nnz"``,
    ``"previous_update"``, float64 tensors); after each backward with ``state["adapt"]`` true, the mean
    number of non-zero gradient entries per sample is smoothed by an exponential moving average (``decay``)
    and β moves by ``+step`` below ``target`` and ``-step`` otherwise (plus ``momentum`` times its previous
    move), clamped at β ≥ 0. A zero λ perturbs nothing and its difference, exactly zero, is divided by 1.

    Args:
        step: β's step size ≥ 0; momentum: ≥ 0; decay: the moving average's decay in [0, 1).
    """

    def __init__(self, step: float = 1e-3, momentum: float = 0.0, decay: float = 0.9) -> None:
        self.step = check_positive("step", step, allow_zero=True)
        self.momentum = check_positive("momentum", momentum, allow_zero=True)
        self.decay = check_positive("decay", decay, allow_zero=True)
        if self.decay >= 1:
            raise ValueError(f"decay must be in [0, 1); got {decay!r}")

    def lambdas(self, theta: torch.Tensor, dy: torch.Tensor, event_ndim: int, state: dict[str, Any]) -> torch.Tensor:
        """λ = β‖θ‖/‖ȳ_s‖ ≥ 0 of shape ``(S, *batch)`` (0 where β, θ or ȳ_s is 0)."""
        dims = tuple(range(-event_ndim, 0))
        norm_theta = torch.linalg.vector_norm(theta, dim=dims).unsqueeze(0)
        norm_dy = torch.linalg.vector_norm(dy, dim=dims)
        beta = state["beta"].to(device=theta.device, dtype=theta.dtype)  # state may live on another device
        return beta * norm_theta / torch.where(norm_dy > 0, norm_dy, 1.0)

    def update(self, diff: torch.Tensor, batch_ndim: int, state: dict[str, Any]) -> None:
        """β's online update from the per-sample number of non-zero entries of ``diff`` (no read-back)."""
        running = state["running_nnz"]
        per_sample = diff.reshape(diff.shape[: 1 + batch_ndim] + (-1,)).ne(0).sum(-1)
        total = per_sample.sum().to(device=running.device, dtype=running.dtype)
        nnz = total / max(per_sample.numel(), 1)
        running.mul_(self.decay).add_((1.0 - self.decay) * nnz)
        step = (1.0 - 2.0 * (running >= state["target"]).to(running.dtype)) * self.step  # +step below target
        upd = self.momentum * state["previous_update"] + step
        state["beta"].add_(upd).clamp_(min=0.0)
        state["previous_update"].copy_(upd)

    def __repr__(self) -> str:
        return f"AdaptiveLambda(step={self.step}, momentum={self.momentum}, decay={self.decay})"


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
        >>> from colayers import ArgmaxOneHot
        >>> from colayers.perturb import Additive
        >>> rule = FiniteDifferenceRule(lambda_=2.0, alpha=0.0)  # target theta' = -2 dy
        >>> theta = torch.tensor([3.0, 0.0, 1.0], requires_grad=True)
        >>> y = Perturbed(ArgmaxOneHot(), Additive(epsilon=0.0), rule=rule, num_samples=1)(theta)
        >>> (y * torch.tensor([0.0, -1.0, 0.0])).sum().backward()  # theta' = [0, 2, 0]: f = e_1
        >>> theta.grad  # (e_0 - e_1) / 2
        tensor([ 0.5000, -0.5000,  0.0000])
    """

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
        if isinstance(lambda_, AdaptiveLambda):
            self.lambda_: float | AdaptiveLambda = lambda_
        else:
            self.lambda_ = check_positive("lambda_", lambda_)
        for name, flag in (("two_sided", two_sided), ("divide_by_lambda", divide_by_lambda)):
            if not isinstance(flag, bool):
                raise TypeError(f"{name} must be a bool; got {type(flag).__name__} {flag!r}")
        self.two_sided = two_sided
        self.divide_by_lambda = divide_by_lambda
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
            raise TypeError(f"alpha must be a real number; got {type(alpha).__name__} {alpha!r}")
        if alpha != alpha or alpha in (float("inf"), float("-inf")):
            raise ValueError(f"alpha must be a finite number; got {alpha!r}")
        self.alpha = float(alpha)
        self.target_temperature = (
            None if target_temperature is None else check_positive("target_temperature", target_temperature, allow_zero=True)
        )
        self.num_target_samples = check_int_at_least("num_target_samples", num_target_samples, 1)

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

    def extra_noise(self, perturbation, num_samples):
        if perturbation.epsilon > 0:  # Z_{s,1} is the forward's noise; the M - 1 others are drawn here
            return (self.num_target_samples - 1) * num_samples
        # no forward noise: a perturbed target side draws all M of its noises here
        return self.num_target_samples * num_samples if self.target_noise(perturbation) else 0

    def vjp(self, plan, theta, atoms, sample, aux, grad_output):
        s = atoms.shape[0]
        event_ndim = plan.oracle.event_ndim
        pert = plan.perturbation
        dy = grad_output.unsqueeze(0).expand_as(atoms) if plan.output == "mean" else grad_output
        if self.adaptive:
            lam = self.lambda_.lambdas(theta, dy, event_ndim, plan.state)
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
            draws = [d for d in (noise, aux) if d is not None]
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
                both = plan.oracle(perturb(torch.cat([rep(center + half), rep(center - half)]), 2))
                upper, lower = mean_over_targets(both[: m * s]), mean_over_targets(both[m * s :])
            else:
                upper = atoms
                lower = mean_over_targets(plan.oracle(perturb(rep(center - step), 1)))
            if not self.divide_by_lambda:
                divisor: float | torch.Tensor = 1.0
            elif isinstance(lam, torch.Tensor):
                # a zero lambda (AIMLE with beta = 0) perturbs nothing, so upper == lower: divide that zero by 1
                divisor = torch.where(lam > 0, lam, torch.ones_like(lam))
            else:
                divisor = lam
            grad = finite_difference_vjp(upper, lower, divisor)
            if self.adaptive and plan.training and plan.state is not None and plan.state.get("adapt", False):
                self.lambda_.update(upper - lower, theta.ndim - event_ndim, plan.state)
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
        >>> from colayers import ArgmaxOneHot
        >>> from colayers.perturb import Additive
        >>> theta = torch.tensor([0.5, 2.0], requires_grad=True)
        >>> y = Perturbed(ArgmaxOneHot(), Additive(epsilon=0.0), rule=IdentityRule(), num_samples=1)(theta)
        >>> (y * torch.tensor([3.0, 4.0])).sum().backward(); theta.grad
        tensor([3., 4.])
    """

    def __init__(self, negative: bool = False) -> None:
        if not isinstance(negative, bool):
            raise TypeError(f"negative must be a bool; got {type(negative).__name__} {negative!r}")
        self.negative = negative

    def check_atoms(self, atoms, theta):
        if atoms.shape != (atoms.shape[0], *theta.shape):
            raise ValueError(
                f"oracle must return solutions of theta's shape {tuple(theta.shape)} for the identity rule; "
                f"got {tuple(atoms.shape[1:])}"
            )

    def vjp(self, plan, theta, atoms, sample, aux, grad_output):
        g = grad_output.sum(0) if plan.output == "samples" else grad_output
        return identity_vjp(g, self.negative)

    def __repr__(self) -> str:
        return f"IdentityRule(negative={self.negative})"


class _SampleFunction(torch.autograd.Function):
    """``apply(theta, atoms, sample, aux, plan)``: the mean of the atoms (or the atoms) forward; the plan's
    rule backward."""

    @staticmethod
    def forward(theta, atoms, sample, aux, plan):
        if plan.output == "mean":
            return atoms[0].clone() if atoms.shape[0] == 1 else atoms.mean(0)  # (the mean of one sample is itself)
        return atoms.clone()

    @staticmethod
    def setup_context(ctx, inputs, output):
        theta, atoms, sample, aux, plan = inputs
        ctx.save_for_backward(theta, atoms)
        ctx.sample = sample  # plain tensors that never require grad
        ctx.aux = aux
        ctx.plan = plan

    @staticmethod
    def backward(ctx, grad_output):
        theta, atoms = ctx.saved_tensors
        plan: _Plan = ctx.plan
        grad = plan.rule.vjp(plan, theta.detach(), atoms, ctx.sample, ctx.aux, grad_output)
        return grad, None, None, None, None


def sample_solutions(
    theta: torch.Tensor,
    oracle: Oracle,
    perturbation: Perturbation,
    num_samples: int,
    generator: torch.Generator | None = None,
    validate_args: bool | None = None,
) -> tuple[PerturbedSample, torch.Tensor]:
    """Check θ once, draw S perturbed scores and solve them in ONE batched oracle call (no autograd).

    Returns:
        ``(sample, atoms)`` with ``sample.eta`` of shape ``(S, *theta.shape)`` and ``atoms = oracle(sample.eta)``
        of shape ``(S, *batch, *solution)``.
    """
    check_theta(theta, oracle, resolve_validate_args(validate_args))
    with torch.no_grad():
        sample = perturbation.sample(theta.detach(), num_samples, generator)
        with trusted_inputs():  # eta is derived from the theta just checked: not checked again
            atoms = oracle(sample.eta)
    return sample, atoms


def perturbed(
    theta: torch.Tensor,
    oracle: Oracle,
    perturbation: Perturbation,
    *,
    rule: VJPRule | None = None,
    num_samples: int = 10,
    output: str = "mean",
    baseline: bool = True,
    generator: torch.Generator | None = None,
    validate_args: bool | None = None,
    _state: dict[str, Any] | None = None,
    _training: bool = True,
) -> torch.Tensor:
    r"""The core as a function: the mean of S perturbed solutions (or the solutions), differentiated by ``rule``.

    :math:`\hat\mu(\theta) = \frac1S\sum_s f(\eta_s)`, :math:`\eta_s\sim p(\cdot\mid\theta)` from
    ``perturbation``, with the VJP of ``rule`` (default :class:`ScoreFunctionRule` with ``baseline``). The
    layers (:class:`Perturbed` and its presets) and the functional twins in
    :mod:`colayers.layers.functional` run this function.

    Args:
        theta: scores ``(*batch, *event)``.
        oracle: the maximization oracle f.
        perturbation: the law of η given θ.
        rule: the VJP rule (``None``: the score function with ``baseline``).
        num_samples: S ≥ 1.
        output: ``"mean"`` (shape ``(*batch, *solution)``) or ``"samples"`` (``(S, *batch, *solution)``).
        baseline: the score-function baseline when ``rule`` is ``None``.
        generator: the random generator (``None``: the global one).
        validate_args: check θ's finiteness (``None``: the global default).

    Example:
        >>> from colayers import ArgmaxOneHot
        >>> from colayers.perturb import Additive
        >>> g = torch.Generator().manual_seed(0)
        >>> perturbed(torch.tensor([0.0, 5.0]), ArgmaxOneHot(), Additive(epsilon=0.1), generator=g)
        tensor([0., 1.])
    """
    if rule is None:
        rule = ScoreFunctionRule(baseline=baseline)
    s = perturbation.check_num_samples(num_samples)
    check_output(output)
    rule.check(perturbation, s, output)
    sample, atoms = sample_solutions(theta, oracle, perturbation, s, generator, validate_args)
    rule.check_sample(perturbation, sample)
    rule.check_atoms(atoms, theta)
    n_extra = rule.extra_noise(perturbation, s)
    aux = None
    if n_extra:
        with torch.no_grad():
            aux = perturbation.draw_noise(theta.detach(), n_extra, generator)
    plan = _Plan(oracle, perturbation, rule, output, _state, _training)
    return _SampleFunction.apply(theta, atoms, sample, aux, plan)


# --------------------------------------------------------------------------------------------------------------
# the modules


class OracleLayer(torch.nn.Module):
    """Base module of the estimators: owns an oracle, validates θ, and manages seeded generators.

    Args:
        oracle: a :class:`~colayers.oracles.Oracle` (maximization convention).
        seed: if given, every stochastic call without an explicit ``generator`` draws from a layer-owned
            generator (one per device, created from ``seed`` on first use), so a freshly built layer with
            the same seed replays the same outputs call after call.
        validate_args: check θ's finiteness on every call (``None``: follow
            :func:`colayers.set_default_validate_args`, on by default). This check reads one value back to
            the host (a device-to-host synchronisation on CUDA); shape and dtype are always checked.

    Example:
        >>> from colayers import ArgmaxOneHot
        >>> layer = OracleLayer(ArgmaxOneHot(), seed=0)
        >>> g1 = layer.generator_for(torch.device("cpu"))
        >>> g1 is layer.generator_for(torch.device("cpu"))
        True
    """

    validate_args = ValidateArgs()  # None follows set_default_validate_args

    def __init__(self, oracle: Oracle, *, seed: int | None = None, validate_args: bool | None = None) -> None:
        super().__init__()
        if not isinstance(oracle, Oracle):
            raise TypeError(f"oracle must be a colayers.oracles.Oracle; got {type(oracle).__name__}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None; got {type(seed).__name__} {seed!r}")
        self.oracle = oracle
        self.seed = seed
        self.validate_args = check_validate_args(validate_args)
        self._generators: dict[str | torch.device, torch.Generator] = {}

    @property
    def event_ndim(self) -> int:
        return self.oracle.event_ndim

    def generator_for(self, device: torch.device) -> torch.Generator | None:
        """The layer-owned generator for ``device`` (``None`` without a seed)."""
        if self.seed is None:
            return None
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[key]

    def resolve_generator(self, generator: torch.Generator | None, theta: torch.Tensor) -> torch.Generator | None:
        """``generator`` if given (checked against θ's device), else the layer-owned one, else ``None``."""
        if generator is not None:
            check_generator(generator, theta.device)
            return generator
        return self.generator_for(theta.device)

    def check_theta(self, theta: torch.Tensor) -> tuple[int, ...]:
        """Validate θ against the oracle's event shape (and its finiteness, see ``validate_args``); return the
        batch shape."""
        return check_theta(theta, self.oracle, resolve_validate_args(self.validate_args))

    def extra_repr(self) -> str:
        return f"oracle={self.oracle!r}" + ("" if self.seed is None else f", seed={self.seed}")


class Perturbed(OracleLayer):
    r"""A probabilistic layer: an oracle, a :class:`~colayers.perturb.Perturbation` and a VJP rule.

    .. math::
        \mu(\theta) = \mathbb E_{\eta\sim p(\cdot\mid\theta)}[f(\eta)] \approx \frac1S\sum_s f(\eta_s)

    Forward: the mean of S perturbed oracle calls (``output="mean"``, shape ``(*batch, *solution)``) or the S
    hard samples (``output="samples"``, ``(S, *batch, *solution)``), from ONE batched oracle call. Backward:
    ``rule`` (:class:`ScoreFunctionRule` by default, which estimates :math:`J^\top\bar y` with
    :math:`\frac1S\sum_s \langle f(\eta_s) - b_s, \bar y\rangle\nabla_\theta\log p(\eta_s\mid\theta)`;
    :class:`FiniteDifferenceRule`; :class:`IdentityRule`; or a user's :class:`VJPRule`). Berthet et al.,
    *Learning with Differentiable Perturbed Optimizers*, NeurIPS 2020; InferOpt.jl's ``PerturbedOracle``.

    Modes: ``eval()`` changes nothing in the forward (the layer keeps sampling, with the same law: its
    output is an estimate of μ(θ), not f(θ)); only AIMLE's adaptation of λ stops. For a deterministic
    prediction call the oracle, ``layer.oracle(theta)``.

    Args:
        oracle: the maximization oracle f.
        perturbation: the law of η given θ (ε = 0: a Dirac at f(θ), then no ``seed``/``generator``).
        rule: the VJP rule (``None``: ``ScoreFunctionRule(baseline)``; it needs a perturbation with a score).
        num_samples: S ≥ 1 (even with an antithetic perturbation).
        output: ``"mean"`` or ``"samples"``.
        baseline: the score-function baseline when ``rule`` is ``None``.
        seed, validate_args: see :class:`OracleLayer`.

    Example:
        >>> from colayers import ArgmaxOneHot
        >>> from colayers.perturb import Additive, Gumbel
        >>> layer = Perturbed(ArgmaxOneHot(), Additive(Gumbel(), epsilon=1.0), num_samples=1000, seed=0)
        >>> theta = torch.tensor([0.0, 1.0, 2.0], requires_grad=True)
        >>> mu = layer(theta)  # close to softmax(theta)
        >>> bool((mu - torch.softmax(theta, -1)).abs().max() < 0.05)
        True
        >>> mu[2].backward(); theta.grad.shape
        torch.Size([3])
    """

    def __init__(
        self,
        oracle: Oracle,
        perturbation: Perturbation,
        *,
        rule: VJPRule | None = None,
        num_samples: int = 10,
        output: str = "mean",
        baseline: bool = True,
        seed: int | None = None,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(oracle, seed=seed, validate_args=validate_args)
        if not isinstance(perturbation, Perturbation):
            raise TypeError(f"perturbation must be a colayers.perturb.Perturbation; got {type(perturbation).__name__}")
        if rule is None:
            rule = ScoreFunctionRule(baseline=baseline)
        elif baseline is not True:
            raise TypeError(
                f"{type(self).__name__}: baseline is a setting of the score-function rule; pass "
                "rule=ScoreFunctionRule(baseline=False)"
            )
        if not isinstance(rule, VJPRule):
            raise TypeError(f"rule must be a colayers.layers.VJPRule; got {type(rule).__name__}")
        self.perturbation = perturbation
        self.rule = rule
        self.num_samples = perturbation.check_num_samples(num_samples)
        self.output = check_output(output)
        rule.check(perturbation, self.num_samples, self.output)
        if seed is not None and self.deterministic:
            raise TypeError(f"{type(self).__name__} draws no noise (epsilon = 0, no target noise): it takes no seed")

    @property
    def deterministic(self) -> bool:
        """Whether the layer draws no noise: ε = 0 (its law is the Dirac at f(θ)) and a rule that draws none
        for its backward (e.g. no target noise temperature)."""
        return self.perturbation.epsilon == 0 and self.rule.extra_noise(self.perturbation, self.num_samples) == 0

    @property
    def epsilon(self) -> float:
        """The perturbation's noise scale ε."""
        return self.perturbation.epsilon

    @property
    def baseline(self) -> bool:
        """Whether a score-function VJP of this layer subtracts a baseline (the rule's setting, else True)."""
        return getattr(self.rule, "baseline", True)

    def _check_generator_arg(self, generator: torch.Generator | None) -> None:
        if generator is not None and self.deterministic:
            raise TypeError(
                f"{type(self).__name__} draws no noise (epsilon = 0): it takes no generator; got {generator!r}"
            )

    def rule_state(self) -> dict[str, Any] | None:
        """The state the rule reads and updates (AIMLE's buffers); ``None`` by default."""
        return None

    def sample(
        self, theta: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[PerturbedSample, torch.Tensor]:
        """Draw S perturbed scores and solve them in ONE batched oracle call (no autograd).

        Returns:
            ``(sample, atoms)`` with ``sample.eta`` of shape ``(S, *theta.shape)`` and
            ``atoms = oracle(sample.eta)`` of shape ``(S, *batch, *solution)``.
        """
        check_tensor("theta", theta)
        self._check_generator_arg(generator)
        gen = self.resolve_generator(generator, theta)
        return sample_solutions(theta, self.oracle, self.perturbation, self.num_samples, gen, self.validate_args)

    def distribution(self, theta: torch.Tensor, *, generator: torch.Generator | None = None) -> SolutionDistribution:
        """The empirical law of the S perturbed solutions (uniform weights; one atom f(θ) when ε = 0).

        Example:
            >>> from colayers import ArgmaxOneHot, Blackbox
            >>> Blackbox(ArgmaxOneHot()).distribution(torch.tensor([0.0, 2.0])).atoms
            tensor([[0., 1.]])
        """
        _, atoms = self.sample(theta, generator)
        return SolutionDistribution(atoms, None, event_ndim=atoms.ndim - 1 - theta.ndim + self.oracle.event_ndim)

    def forward(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        check_tensor("theta", theta)
        self._check_generator_arg(generator)
        return perturbed(
            theta,
            self.oracle,
            self.perturbation,
            rule=self.rule,
            num_samples=self.num_samples,
            output=self.output,
            generator=self.resolve_generator(generator, theta),
            validate_args=self.validate_args,
            _state=self.rule_state(),
            _training=self.training,
        )

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, perturbation={self.perturbation!r}, rule={self.rule!r}, "
            f"num_samples={self.num_samples}, output={self.output!r}"
        )


# --------------------------------------------------------------------------------------------------------------
# presets: a named estimator is a function of its settings returning the pieces


class Preset(Perturbed):
    """Base of the named estimators: a subclass defines ``pieces(oracle, **settings)``, a static method returning
    the keyword arguments of :class:`Perturbed` (``perturbation``, ``rule``, ``num_samples``, ``output``);
    its constructor signature and its functional twin are derived from it, so each setting is declared once.

    ``deterministic_preset = True`` marks a preset without noise: it takes no ``seed`` (nor ``generator``).
    """

    deterministic_preset: bool = False

    @staticmethod
    def pieces(oracle: Oracle, **settings: Any) -> dict[str, Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "pieces" in vars(cls):
            params = [inspect.Parameter("oracle", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Oracle)]
            params += [p for name, p in inspect.signature(cls.pieces).parameters.items() if name != "oracle"]
            if not cls.deterministic_preset:
                params.append(inspect.Parameter("seed", inspect.Parameter.KEYWORD_ONLY, default=None))
            params.append(inspect.Parameter("validate_args", inspect.Parameter.KEYWORD_ONLY, default=None))
            cls.__signature__ = inspect.Signature(params)
            if "__init__" not in vars(cls):  # an __init__ of its own, so that its signature can be the preset's

                def __init__(self, oracle: Oracle, *args: Any, **kwargs: Any) -> None:
                    Preset.__init__(self, oracle, *args, **kwargs)

                __init__.__qualname__ = f"{cls.__qualname__}.__init__"
                cls.__init__ = __init__
            self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
            cls.__init__.__signature__ = inspect.Signature([self_param, *params])

    @classmethod
    def build_pieces(cls, oracle: Oracle, settings: dict[str, Any]) -> dict[str, Any]:
        """``cls.pieces(oracle, **settings)``, with a TypeError naming the layer for an unknown setting."""
        accepted = inspect.signature(cls.pieces).parameters
        for name in settings:
            if name not in accepted:
                hint = ""
                if cls.deterministic_preset and name in ("seed", "generator", "epsilon", "num_samples", "output"):
                    hint = f" ({cls.__name__} draws no noise: epsilon = 0, one sample)"
                raise TypeError(f"{cls.__name__} got an unexpected keyword argument {name!r}{hint}")
        return cls.pieces(oracle, **settings)

    def __init__(self, oracle: Oracle, *args: Any, seed: int | None = None, validate_args: bool | None = None, **settings: Any) -> None:
        if args:
            raise TypeError(
                f"{type(self).__name__} takes 1 positional argument (the oracle) but {1 + len(args)} were given; "
                "every setting after the oracle is keyword-only"
            )
        if seed is not None and self.deterministic_preset:
            raise TypeError(
                f"{type(self).__name__} got an unexpected keyword argument 'seed' ({type(self).__name__} draws no "
                "noise: epsilon = 0, one sample)"
            )
        super().__init__(oracle, seed=seed, validate_args=validate_args, **self.build_pieces(oracle, settings))


def check_lambda(lambda_: float) -> float:
    """λ > 0 for finite-difference rules."""
    return check_positive("lambda_", lambda_)


def pinv_psd(gram: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse of a batch of small symmetric PSD matrices (Gram matrices of atoms), in gram's dtype.

    Computed in float64 whatever gram's dtype (the matrices are ``(B, m, m)`` with small m): in float32,
    torch's eigensolver spent tens of seconds failing to converge on the ill-conditioned Gram matrices of
    many nearly dependent atoms. The eigendecomposition-based ``torch.linalg.pinv(hermitian=True)`` is
    used, and the SVD-based one if the eigensolver still fails.

    Example:
        >>> pinv_psd(torch.tensor([[[2.0, 0.0], [0.0, 0.0]]]))
        tensor([[[0.5000, 0.0000],
                 [0.0000, 0.0000]]])
    """
    work = gram if gram.dtype == torch.float64 else gram.to(torch.float64)
    try:
        inv = torch.linalg.pinv(work, hermitian=True)
    except torch.linalg.LinAlgError:
        inv = torch.linalg.pinv(work)
    return inv.to(gram.dtype)


def active_set_vjp(
    atoms: torch.Tensor, weights: torch.Tensor, grad_output: torch.Tensor, face: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Implicit-differentiation VJP of the Euclidean projection onto :math:`\mathrm{conv}(\mathcal Y)`.

    At :math:`\mu = \sum_j w_j a_j`, let :math:`F` be the atoms that span the face of the polytope on which
    the projection is locally an affine projection (by default the active atoms :math:`\{a_j : w_j > 0\}`;
    ``face`` can add zero-weight atoms of the same face, see
    :func:`~colayers.layers.regularized.complete_face`). The projection is locally the projection onto
    their affine hull, whose Jacobian is the orthogonal projector onto the span of the differences
    :math:`D = [a_j - a_r]_{j\in F}` (:math:`a_r` the heaviest atom):

    .. math::  J = D^\top (D D^\top)^{+} D, \qquad J^\top\bar y = D^\top (D D^\top)^{+} D\,\bar y,

    symmetric positive semi-definite. The small ``(B, m, m)`` system is solved with
    :func:`torch.linalg.pinv` (Hermitian), which also handles padded atoms outside F (zero rows) and
    affinely dependent or repeated atoms.

    Args:
        atoms: ``(B, m, d)`` flattened atoms; weights: ``(B, m)``; grad_output: ``(B, d)``.
        face: ``(B, m)`` boolean mask of the atoms spanning the face (``None``: ``weights > 0``); it must
            contain the heaviest atom of each instance.

    Returns:
        ``(B, d)``.

    Example:
        >>> atoms = torch.eye(3, dtype=torch.float64).unsqueeze(0)  # the simplex, all atoms active
        >>> w = torch.full((1, 3), 1 / 3, dtype=torch.float64)
        >>> active_set_vjp(atoms, w, torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64))
        tensor([[ 0.6667, -0.3333, -0.3333]], dtype=torch.float64)
    """
    ref = weights.argmax(-1)  # (B,)
    a_ref = torch.gather(atoms, 1, ref.view(-1, 1, 1).expand(-1, 1, atoms.shape[-1]))  # (B, 1, d)
    active = ((weights > 0) if face is None else face).to(atoms.dtype).unsqueeze(-1)
    diff = (atoms - a_ref) * active  # (B, m, d); atoms outside the face become zero rows
    gram = diff @ diff.transpose(-1, -2)  # (B, m, m)
    rhs = diff @ grad_output.unsqueeze(-1)  # (B, m, 1)
    coef = pinv_psd(gram) @ rhs
    return (diff.transpose(-1, -2) @ coef).squeeze(-1)
