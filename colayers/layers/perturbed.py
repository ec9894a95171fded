r"""Perturbed optimizers (Berthet et al., NeurIPS 2020): the perturbed mean and its score-function VJP.

For a perturbation :math:`\eta = \theta + \varepsilon Z` (additive) or
:math:`\eta = \theta\odot\exp(\varepsilon Z - \varepsilon^2/2)` (multiplicative), the layer returns the
Monte Carlo mean of :math:`S` oracle calls, computed by ONE batched oracle call on ``(S, *batch, *event)``:

.. math::  \hat\mu(\theta) = \frac1S\sum_{s=1}^S f(\eta_s), \qquad \eta_s \sim p(\cdot\mid\theta),

and back-propagates with the score function (:class:`~colayers.layers.rules.ScoreFunctionRule`)

.. math::  \widehat{J^\top \bar y} = \frac1S\sum_{s=1}^S \langle f(\eta_s) - b_s, \bar y\rangle\,
           \nabla_\theta \log p(\eta_s\mid\theta),

with :math:`b_s = \frac{1}{S-1}\sum_{t\ne s} f(\eta_t)` the leave-one-out baseline (``baseline=True``; the
mean over the other antithetic pairs with ``antithetic=True``). Both presets are
:class:`~colayers.layers.core.Perturbed` with a given perturbation and rule.
"""

from __future__ import annotations

from ..oracles.base import Oracle
from ..perturb import Additive, Multiplicative, Noise
from .core import Perturbed
from .rules import ScoreFunctionRule

__all__ = ["PerturbedAdditive", "PerturbedMultiplicative"]


class PerturbedAdditive(Perturbed):
    r"""Additive perturbed optimizer: :math:`\mu(\theta) = \mathbb E[f(\theta + \varepsilon Z)]`.

    ``Perturbed(oracle, Additive(noise, epsilon, antithetic=antithetic), rule=ScoreFunctionRule(baseline))``
    (score :math:`Z/\varepsilon` for Normal noise). With Gumbel noise on one-hot argmax,
    :math:`\mu(\theta) = \mathrm{softmax}(\theta/\varepsilon)`. Reference: Berthet et al., NeurIPS 2020
    (called DPO in some libraries).

    Args:
        oracle: the maximization oracle.
        epsilon: noise scale ε > 0.
        num_samples: S ≥ 1 (even with ``antithetic``).
        noise: the law of Z (default :class:`~colayers.perturb.Normal`).
        baseline: subtract the leave-one-out baseline in the VJP (variance reduction; S ≥ 2).
        antithetic: draw the samples as antithetic pairs (Z, mirror(Z)); the baseline then leaves each pair out.
        output: ``"mean"`` (default) or ``"samples"`` (the S hard samples, ``(S, *batch, *event)``).
        seed, validate_args: see :class:`~colayers.layers.core.OracleLayer`.

    Example:
        >>> import torch
        >>> from colayers import TopKSubset
        >>> layer = PerturbedAdditive(TopKSubset(2), epsilon=0.5, num_samples=20, seed=0)
        >>> mu = layer(torch.randn(4, 6, generator=torch.Generator().manual_seed(1)))
        >>> mu.shape, bool(torch.allclose(mu.sum(-1), torch.full((4,), 2.0)))
        (torch.Size([4, 6]), True)
        >>> PerturbedAdditive(TopKSubset(2), num_samples=4, antithetic=True, output="samples", seed=0)(
        ...     torch.zeros(6)).shape
        torch.Size([4, 6])
    """

    def __init__(
        self,
        oracle: Oracle,
        *,
        epsilon: float = 1.0,
        num_samples: int = 10,
        noise: Noise | None = None,
        baseline: bool = True,
        antithetic: bool = False,
        output: str = "mean",
        seed: int | None = None,
        validate_args: bool | None = None,
    ) -> None:
        perturbation = Additive(noise, epsilon, antithetic=antithetic)
        super().__init__(oracle, perturbation, rule=ScoreFunctionRule(baseline), num_samples=num_samples,
                         output=output, seed=seed, validate_args=validate_args)


class PerturbedMultiplicative(Perturbed):
    r"""Multiplicative perturbed optimizer:
    :math:`\mu(\theta) = \mathbb E[f(\theta\odot e^{\varepsilon Z - \varepsilon^2/2})]`.

    ``Perturbed(oracle, Multiplicative(noise, epsilon), rule=ScoreFunctionRule(baseline))``: the factor has
    mean one (so :math:`\mathbb E[\eta] = \theta`) and keeps the sign of every score, which suits oracles that
    need signed scores (e.g. positive costs). Score :math:`Z/(\varepsilon\theta)`, set to 0 where θ = 0.
    Reference: Dalle et al., *Learning with Combinatorial Optimization Layers: a Probabilistic Approach*
    (InferOpt.jl), 2022.

    Args:
        oracle, epsilon, num_samples, noise, baseline, antithetic, output, seed, validate_args: see
            :class:`PerturbedAdditive`.

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
        antithetic: bool = False,
        output: str = "mean",
        seed: int | None = None,
        validate_args: bool | None = None,
    ) -> None:
        perturbation = Multiplicative(noise, epsilon, antithetic=antithetic)
        super().__init__(oracle, perturbation, rule=ScoreFunctionRule(baseline), num_samples=num_samples,
                         output=output, seed=seed, validate_args=validate_args)
