r"""The composition every estimator is made of: an oracle, a perturbation and a vector-Jacobian-product rule.

Every probabilistic layer replaces the piecewise-constant oracle
:math:`f(\theta) = \operatorname{argmax}_{y\in\mathcal Y}\langle\theta, y\rangle` by the law
:math:`p(\cdot\mid\theta)` of :math:`f(\eta)`, :math:`\eta` drawn from a :class:`~colayers.perturb.Perturbation`
of θ (ε = 0 is the Dirac at :math:`f(\theta)`), outputs its Monte Carlo mean
:math:`\hat\mu(\theta) = \frac1S\sum_s f(\eta_s)` (``output="mean"``) or the S hard samples
(``output="samples"``), and back-propagates with a VJP rule object of :mod:`colayers.layers.rules`.

:class:`Perturbed` is that composition as a :class:`torch.nn.Module`; the named estimators
(:class:`~colayers.layers.PerturbedAdditive`, :class:`~colayers.layers.IMLE`, :class:`~colayers.layers.Blackbox`...)
are subclasses whose ``__init__`` builds the pieces, and :func:`perturbed` is the same computation as a function.
Whether a composition draws noise (and so takes a ``seed`` or a ``generator``) is decided in one place,
:func:`draws_noise`. A new estimator is a new combination, e.g. I-MLE on a multiplicative perturbation::

    Perturbed(oracle, Multiplicative(Normal(), 0.5), rule=FiniteDifferenceRule(lambda_=5.0), num_samples=4)
"""

from __future__ import annotations

from typing import Any

import torch

from .._validation import (
    ValidateArgs,
    check_generator,
    check_theta,
    check_validate_args,
    one_of,
    resolve_validate_args,
    trusted_inputs,
)
from ..distribution import SolutionDistribution
from ..oracles.base import Oracle
from ..perturb import Perturbation, PerturbedSample
from .rules import BackwardContext, ScoreFunctionRule, VJPRule

__all__ = ["OracleLayer", "Perturbed", "perturbed", "draws_noise"]

#: the forward modes of every stochastic layer
OUTPUTS = ("mean", "samples")


def check_output(output: str) -> str:
    """Require ``"mean"`` or ``"samples"``."""
    return one_of(*OUTPUTS).check("output", output)


def _check_theta(theta: torch.Tensor, oracle: Oracle, validate: bool) -> tuple[int, ...]:
    """:func:`~colayers._validation.check_theta` against the oracle's event shape."""
    return check_theta(theta, oracle.event_shape, oracle.event_ndim, validate)


def draws_noise(perturbation: Perturbation, rule: VJPRule, num_samples: int) -> bool:
    """Whether the composition draws noise: ε > 0, or a rule that draws some for its backward (I-MLE with ε = 0
    and a target temperature). The one place that decides whether a layer or its functional form takes a
    ``seed`` or a ``generator``.

    Example:
        >>> from colayers.perturb import Additive
        >>> from colayers.layers import FiniteDifferenceRule
        >>> draws_noise(Additive(epsilon=0.0), FiniteDifferenceRule(), 1)
        False
        >>> draws_noise(Additive(epsilon=0.0), FiniteDifferenceRule(target_temperature=1.0), 1)
        True
    """
    return perturbation.epsilon > 0 or rule.num_extra_draws(perturbation, num_samples) > 0


def _refuse_generator(name: str, generator: torch.Generator | None) -> None:
    if generator is not None:
        raise TypeError(
            f"{name} draws no noise (epsilon = 0, no target noise): it takes no generator; got {generator!r}"
        )


class _SampleFunction(torch.autograd.Function):
    """``apply(theta, atoms, sample, extra_draws, context)``: the mean of the atoms (or the atoms) forward; the
    context's rule backward."""

    # forward(ctx, ...) without setup_context: torch's Function.apply then skips binding the arguments through
    # inspect.signature on every call (a few µs per step; these Functions need no torch.func transforms)
    @staticmethod
    def forward(ctx, theta, atoms, sample, extra_draws, context):
        ctx.save_for_backward(theta, atoms)
        ctx.sample = sample  # plain tensors that never require grad
        ctx.extra_draws = extra_draws
        ctx.context = context
        if context.output == "mean":
            return atoms[0].clone() if atoms.shape[0] == 1 else atoms.mean(0)  # (the mean of one sample is itself)
        return atoms.clone()

    @staticmethod
    def backward(ctx, grad_output):
        theta, atoms = ctx.saved_tensors
        context: BackwardContext = ctx.context
        grad = context.rule.vjp(context, theta.detach(), atoms, ctx.sample, ctx.extra_draws, grad_output)
        return grad, None, None, None, None




def _sample_and_solve(
    theta: torch.Tensor, oracle: Oracle, perturbation: Perturbation, num_samples: int, generator
) -> tuple[PerturbedSample, torch.Tensor]:
    """Draw S perturbed scores from a checked θ and solve them in ONE batched oracle call (no autograd)."""
    with torch.no_grad(), trusted_inputs():  # eta is derived from the checked theta: not checked again
        sample = perturbation.sample(theta.detach(), num_samples, generator)
        atoms = oracle(sample.eta)
    return sample, atoms


def _run(
    theta: torch.Tensor,
    oracle: Oracle,
    perturbation: Perturbation,
    rule: VJPRule,
    num_samples: int,
    output: str,
    generator: torch.Generator | None,
    state: dict[str, Any] | None,
    training: bool,
) -> torch.Tensor:
    """The forward of every composition, on arguments already checked once by the caller."""
    sample, atoms = _sample_and_solve(theta, oracle, perturbation, num_samples, generator)
    rule.check_sample(perturbation, sample)
    rule.check_atoms(atoms, theta)
    n_extra = rule.num_extra_draws(perturbation, num_samples)
    extra_draws = None
    if n_extra:
        with torch.no_grad(), trusted_inputs():
            extra_draws = perturbation.draw_noise(theta.detach(), n_extra, generator)
    context = BackwardContext(oracle, perturbation, rule, output, state, training)
    return _SampleFunction.apply(theta, atoms, sample, extra_draws, context)


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
) -> torch.Tensor:
    r"""The core as a function: the mean of S perturbed solutions (or the solutions), differentiated by ``rule``.

    :math:`\hat\mu(\theta) = \frac1S\sum_s f(\eta_s)`, :math:`\eta_s\sim p(\cdot\mid\theta)` from
    ``perturbation``, with the VJP of ``rule`` (default :class:`~colayers.layers.ScoreFunctionRule` with
    ``baseline``). It is ``Perturbed(oracle, perturbation, ...)(theta, generator)`` without a module: the same
    checks (each argument once), the same computation.

    Args:
        theta: scores ``(*batch, *event)``.
        oracle: the maximization oracle f.
        perturbation: the law of η given θ.
        rule: the VJP rule (``None``: the score function with ``baseline``).
        num_samples: S ≥ 1.
        output: ``"mean"`` (shape ``(*batch, *solution)``) or ``"samples"`` (``(S, *batch, *solution)``).
        baseline: the score-function baseline when ``rule`` is ``None``.
        generator: the random generator (``None``: the global one); refused when nothing is drawn
            (:func:`draws_noise`).
        validate_args: check θ's finiteness (``None``: the global default).

    Example:
        >>> from colayers import ArgmaxOneHot
        >>> from colayers.perturb import Additive
        >>> g = torch.Generator().manual_seed(0)
        >>> perturbed(torch.tensor([0.0, 5.0]), ArgmaxOneHot(), Additive(epsilon=0.1), generator=g)
        tensor([0., 1.])
    """
    rule, s = _check_composition(oracle, perturbation, rule, baseline, num_samples, output, "perturbed")
    if generator is not None:
        if not draws_noise(perturbation, rule, s):
            _refuse_generator("perturbed", generator)
        check_generator(generator, theta.device if isinstance(theta, torch.Tensor) else "cpu")
    _check_theta(theta, oracle, resolve_validate_args(check_validate_args(validate_args)))
    return _run(theta, oracle, perturbation, rule, s, output, generator, None, True)


def _check_composition(
    oracle: object, perturbation: object, rule: object, baseline: bool, num_samples: int, output: str, owner: str
) -> tuple[VJPRule, int]:
    """Check the pieces of a composition once (at construction for a module); return the rule and S."""
    if not isinstance(oracle, Oracle):
        raise TypeError(f"oracle must be a colayers.oracles.Oracle; got {type(oracle).__name__}")
    if not isinstance(perturbation, Perturbation):
        raise TypeError(f"perturbation must be a colayers.perturb.Perturbation; got {type(perturbation).__name__}")
    if rule is None:
        rule = ScoreFunctionRule(baseline=baseline)
    elif baseline is not True:
        raise TypeError(
            f"{owner}: baseline is a setting of the score-function rule; pass rule=ScoreFunctionRule(baseline=False)"
        )
    if not isinstance(rule, VJPRule):
        raise TypeError(f"rule must be a colayers.layers.VJPRule; got {type(rule).__name__}")
    s = perturbation.check_num_samples(num_samples)
    check_output(output)
    rule.check(perturbation, s, output)
    return rule, s


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
        cached = self._generators.get(device)  # theta.device as given: no normalisation on the hot path
        if cached is not None:
            return cached
        given, device = device, torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        key = str(device)
        if key not in self._generators:
            self._generators[key] = torch.Generator(device=device).manual_seed(self.seed)
        if isinstance(given, torch.device) and (given.type != "cuda" or given.index is not None):
            self._generators[given] = self._generators[key]  # the same generator under the device itself
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
        return _check_theta(theta, self.oracle, self.validate_args)

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
        rule, s = _check_composition(oracle, perturbation, rule, baseline, num_samples, output, type(self).__name__)
        self.perturbation = perturbation
        self.rule = rule
        self.num_samples = s
        self.output = output
        if seed is not None and self.deterministic:
            raise TypeError(f"{type(self).__name__} draws no noise (epsilon = 0, no target noise): it takes no seed")

    @property
    def deterministic(self) -> bool:
        """Whether the layer draws no noise (:func:`draws_noise`): then it takes no ``seed`` or ``generator``."""
        return not draws_noise(self.perturbation, self.rule, self.num_samples)

    @property
    def epsilon(self) -> float:
        """The perturbation's noise scale ε."""
        return self.perturbation.epsilon

    @property
    def baseline(self) -> bool:
        """Whether a score-function VJP of this layer subtracts a baseline (the rule's setting, else True)."""
        return getattr(self.rule, "baseline", True)

    def rule_state(self) -> dict[str, Any] | None:
        """The state the rule reads and updates (AIMLE's buffers); ``None`` by default."""
        return None

    def _generator(self, theta: torch.Tensor, generator: torch.Generator | None) -> torch.Generator | None:
        """Check θ once and resolve the generator (refused when the layer draws no noise)."""
        _check_theta(theta, self.oracle, self.validate_args)
        if generator is not None and self.deterministic:
            _refuse_generator(type(self).__name__, generator)
        return self.resolve_generator(generator, theta)

    def sample(
        self, theta: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[PerturbedSample, torch.Tensor]:
        """Draw S perturbed scores and solve them in ONE batched oracle call (no autograd): what a loss on this
        layer asks for (:class:`~colayers.losses.FenchelYoungLoss`).

        Returns:
            ``(sample, atoms)`` with ``sample.eta`` of shape ``(S, *theta.shape)`` and
            ``atoms = oracle(sample.eta)`` of shape ``(S, *batch, *solution)``.

        Example:
            >>> from colayers import ArgmaxOneHot, PerturbedAdditive
            >>> sample, atoms = PerturbedAdditive(ArgmaxOneHot(), num_samples=4, seed=0).sample(torch.zeros(2, 3))
            >>> sample.eta.shape, atoms.shape
            (torch.Size([4, 2, 3]), torch.Size([4, 2, 3]))
        """
        gen = self._generator(theta, generator)
        return _sample_and_solve(theta, self.oracle, self.perturbation, self.num_samples, gen)

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
        gen = self._generator(theta, generator)
        state = self.rule_state()
        return _run(theta, self.oracle, self.perturbation, self.rule, self.num_samples, self.output, gen, state,
                    self.training)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, perturbation={self.perturbation!r}, rule={self.rule!r}, "
            f"num_samples={self.num_samples}, output={self.output!r}"
        )
