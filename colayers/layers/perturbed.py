r"""Perturbed optimizers (Berthet et al., NeurIPS 2020): the perturbed mean and its score-function VJP.

For a perturbation :math:`\eta = \theta + \varepsilon Z` (additive) or
:math:`\eta = \theta\odot\exp(\varepsilon Z - \varepsilon^2/2)` (multiplicative), the layer returns the
Monte Carlo mean of :math:`S` oracle calls, computed by ONE batched oracle call on ``(S, *batch, *event)``:

.. math::  \hat\mu(\theta) = \frac1S\sum_{s=1}^S f(\eta_s), \qquad \eta_s \sim p(\cdot\mid\theta),

and back-propagates with the score function (:func:`~colayers.layers.core.score_function_vjp`)

.. math::  \widehat{J^\top \bar y} = \frac1S\sum_{s=1}^S \langle f(\eta_s) - b_s, \bar y\rangle\,
           \nabla_\theta \log p(\eta_s\mid\theta),

with :math:`b_s = \frac{1}{S-1}\sum_{t\ne s} f(\eta_t)` the leave-one-out baseline (``baseline=True``).
"""

from __future__ import annotations

import torch

from .._validation import check_int_at_least
from ..distribution import SolutionDistribution
from ..oracles.base import Oracle
from ..perturb import Additive, Multiplicative, Noise, Perturbation, PerturbedSample
from .core import OracleLayer, PositionalFunction, leave_one_out_centered, score_function_vjp

__all__ = ["Perturbed", "PerturbedAdditive", "PerturbedMultiplicative", "ScoreFunctionMean", "LazyScoreFunctionMean"]


class ScoreFunctionMean(PositionalFunction):
    r"""``values.mean(0)`` as a function of θ, differentiated by the score function.

    ``apply(theta, values, score, value_ndim, baseline)``: ``values`` ``(S, *batch, *value_event)`` and
    ``score`` ``(S, *batch, *theta_event)`` are computed without autograd from samples of
    :math:`p(\cdot\mid\theta)`; the backward is :func:`~colayers.layers.core.score_function_vjp`.
    """

    @staticmethod
    def forward(theta, values, score, value_ndim, baseline):
        return values.mean(0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        _, values, score, value_ndim, baseline = inputs
        ctx.save_for_backward(values, score)
        ctx.value_ndim = value_ndim
        ctx.baseline = baseline

    @staticmethod
    def backward(ctx, grad_output):
        values, score = ctx.saved_tensors
        grad = score_function_vjp(values, score, grad_output, ctx.value_ndim, ctx.baseline)
        return grad, None, None, None, None


class LazyScoreFunctionMean(PositionalFunction):
    r"""``values.mean(0)`` as a function of θ, differentiated by the score function, with the score left
    implicit until the backward.

    ``apply(theta, values, sample, perturbation, value_ndim, baseline)``: ``values``
    ``(S, *batch, *value_event)`` were computed without autograd from ``sample`` (a
    :class:`~colayers.perturb.PerturbedSample` of ``perturbation`` at θ). The backward forms the weights
    :math:`w_s = \langle v_s - b_s, \bar y\rangle` and returns ``perturbation.score_mean(theta, sample, w)``,
    which equals :func:`~colayers.layers.core.score_function_vjp` without building the ``(S, *theta.shape)``
    score tensor (nor any of it in a forward whose result is never differentiated).

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> from colayers.perturb import Additive
        >>> pert, theta = Additive(epsilon=1.0), torch.zeros(3, requires_grad=True)
        >>> sample = pert.sample(theta.detach(), 4, generator=torch.Generator().manual_seed(0))
        >>> values = ArgmaxOneHot()(sample.eta)
        >>> mu = LazyScoreFunctionMean.apply(theta, values, sample, pert, 1, True)
        >>> torch.equal(mu, values.mean(0)), float(mu.detach().sum())
        (True, 1.0)
    """

    @staticmethod
    def forward(theta, values, sample, perturbation, value_ndim, baseline):
        return values.mean(0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        theta, values, sample, perturbation, value_ndim, baseline = inputs
        ctx.save_for_backward(theta, values)
        ctx.sample = sample  # plain tensors that never require grad
        ctx.perturbation = perturbation
        ctx.value_ndim = value_ndim
        ctx.baseline = baseline

    @staticmethod
    def backward(ctx, grad_output):
        theta, values = ctx.saved_tensors
        value_ndim = ctx.value_ndim
        prod = values * grad_output.unsqueeze(0)
        inner = prod.sum(dim=tuple(range(-value_ndim, 0))) if value_ndim else prod
        if ctx.baseline:
            inner = leave_one_out_centered(inner)
        return ctx.perturbation.score_mean(theta.detach(), ctx.sample, inner), None, None, None, None, None


def _check_score_perturbation(perturbation: Perturbation) -> Perturbation:
    if not isinstance(perturbation, Perturbation):
        raise TypeError(f"perturbation must be a colayers.perturb.Perturbation; got {type(perturbation).__name__}")
    if not perturbation.noise.has_score:
        raise ValueError(
            f"perturbation must use a noise with a closed-form density for the score-function rule; got "
            f"{perturbation.noise!r} (use Normal or Gumbel noise, or IMLE for Sum-of-Gamma noise)"
        )
    return perturbation


class Perturbed(OracleLayer):
    r"""Perturbed optimizer for any :class:`~colayers.perturb.Perturbation`: mean of S perturbed oracle calls.

    .. math::
        \mu(\theta) = \mathbb E_{\eta\sim p(\cdot\mid\theta)}[f(\eta)] \approx \frac1S\sum_s f(\eta_s),\qquad
        J^\top\bar y \approx \frac1S\sum_s \langle f(\eta_s) - b_s, \bar y\rangle\,\nabla_\theta\log p(\eta_s\mid\theta)

    (Berthet, Blondel, Teboul, Cuturi, Vert, Bach, *Learning with Differentiable Perturbed Optimizers*,
    NeurIPS 2020; InferOpt.jl's ``PerturbedAdditive``/``PerturbedMultiplicative``). The S×B perturbed
    instances go to the oracle in one batched call. The VJP is divided by S: it estimates :math:`J^\top\bar y`
    and does not grow with the number of samples.

    Args:
        oracle: the maximization oracle f.
        perturbation: the law of η given θ (needs a noise with a score, e.g. Normal or Gumbel).
        num_samples: S ≥ 1.
        baseline: subtract the leave-one-out baseline in the VJP (variance reduction; S ≥ 2).
        seed: seed of the layer-owned generator (see :class:`~colayers.layers.core.OracleLayer`).
        validate_args: check θ on every call.

    Example:
        >>> import torch
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
        num_samples: int = 10,
        baseline: bool = True,
        seed: int | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(oracle, seed=seed, validate_args=validate_args)
        self.perturbation = _check_score_perturbation(perturbation)
        self.num_samples = check_int_at_least("num_samples", num_samples, 1)
        self.baseline = bool(baseline)

    def sample(
        self, theta: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[PerturbedSample, torch.Tensor]:
        """Draw S perturbed scores and solve them in ONE batched oracle call (no autograd).

        Returns:
            ``(sample, atoms)`` with ``sample.eta`` of shape ``(S, *theta.shape)`` and
            ``atoms = oracle(sample.eta)`` of shape ``(S, *batch, *solution)``.
        """
        self.check_theta(theta)
        gen = self.resolve_generator(generator, theta)
        pert = self.perturbation
        with torch.no_grad():
            t = theta.detach()
            if type(pert).sample is Perturbation.sample and type(pert).draw_noise is Perturbation.draw_noise:
                # theta, num_samples and the generator are checked already: draw and apply directly
                z = pert.noise.sample((self.num_samples, *t.shape), generator=gen, device=t.device, dtype=t.dtype)
                sample = PerturbedSample(eta=pert.apply(t, z), noise=z)
            else:  # a perturbation with its own sampling (e.g. antithetic): use it
                sample = pert.sample(t, self.num_samples, gen)
            atoms = self.oracle(sample.eta)
        return sample, atoms

    def distribution(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> SolutionDistribution:
        """The empirical distribution of the S perturbed solutions (uniform weights)."""
        _, atoms = self.sample(theta, generator)
        return SolutionDistribution(atoms, None, event_ndim=atoms.ndim - 1 - theta.ndim + self.oracle.event_ndim)

    def forward(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        sample, atoms = self.sample(theta, generator)
        value_ndim = atoms.ndim - 1 - theta.ndim + self.oracle.event_ndim
        return LazyScoreFunctionMean.apply(theta, atoms, sample, self.perturbation, value_ndim, self.baseline)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, perturbation={self.perturbation!r}, num_samples={self.num_samples}, "
            f"baseline={self.baseline}"
        )


class PerturbedAdditive(Perturbed):
    r"""Additive perturbed optimizer: :math:`\mu(\theta) = \mathbb E[f(\theta + \varepsilon Z)]`.

    The preset :class:`Perturbed` with :class:`~colayers.perturb.Additive` (score :math:`Z/\varepsilon`
    for Normal noise). With Gumbel noise on one-hot argmax, :math:`\mu(\theta) = \mathrm{softmax}(\theta/\varepsilon)`.
    Reference: Berthet et al., NeurIPS 2020 (called DPO in some libraries).

    Args:
        oracle: the maximization oracle.
        epsilon: noise scale ε > 0.
        num_samples: S ≥ 1.
        noise: the law of Z (default :class:`~colayers.perturb.Normal`).
        baseline, seed, validate_args: see :class:`Perturbed`.

    Example:
        >>> import torch
        >>> from colayers import TopKSubset
        >>> layer = PerturbedAdditive(TopKSubset(2), epsilon=0.5, num_samples=20, seed=0)
        >>> mu = layer(torch.randn(4, 6, generator=torch.Generator().manual_seed(1)))
        >>> mu.shape, bool(torch.allclose(mu.sum(-1), torch.full((4,), 2.0)))
        (torch.Size([4, 6]), True)
    """

    def __init__(
        self,
        oracle: Oracle,
        *,
        epsilon: float = 1.0,
        num_samples: int = 10,
        noise: Noise | None = None,
        baseline: bool = True,
        seed: int | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            oracle,
            Additive(noise, epsilon),
            num_samples=num_samples,
            baseline=baseline,
            seed=seed,
            validate_args=validate_args,
        )


class PerturbedMultiplicative(Perturbed):
    r"""Multiplicative perturbed optimizer:
    :math:`\mu(\theta) = \mathbb E[f(\theta\odot e^{\varepsilon Z - \varepsilon^2/2})]`.

    The preset :class:`Perturbed` with :class:`~colayers.perturb.Multiplicative`: the factor has mean one
    (so :math:`\mathbb E[\eta] = \theta`) and keeps the sign of every score, which suits oracles that need
    signed scores (e.g. positive costs). Score :math:`Z/(\varepsilon\theta)`, set to 0 where θ = 0.
    Reference: Dalle et al., *Learning with Combinatorial Optimization Layers: a Probabilistic Approach*
    (InferOpt.jl), 2022.

    Args:
        oracle, epsilon, num_samples, noise, baseline, seed, validate_args: see :class:`PerturbedAdditive`.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> layer = PerturbedMultiplicative(ArgmaxOneHot(), epsilon=0.3, num_samples=50, seed=0)
        >>> mu = layer(torch.tensor([1.0, 2.0, 0.0]))
        >>> float(mu.sum()), bool(mu[2] == 0)
        (1.0, True)
    """

    def __init__(
        self,
        oracle: Oracle,
        *,
        epsilon: float = 1.0,
        num_samples: int = 10,
        noise: Noise | None = None,
        baseline: bool = True,
        seed: int | None = None,
        validate_args: bool = True,
    ) -> None:
        super().__init__(
            oracle,
            Multiplicative(noise, epsilon),
            num_samples=num_samples,
            baseline=baseline,
            seed=seed,
            validate_args=validate_args,
        )
