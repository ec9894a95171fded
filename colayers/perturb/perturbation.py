r"""Perturbations: the law of a perturbed score :math:`\eta` given :math:`\theta`.

* :class:`Additive`: :math:`\eta = \theta + \varepsilon Z`, with score
  :math:`\nabla_\theta \log p(\eta\mid\theta) = -\tfrac{1}{\varepsilon}\,(\nabla_z\log\rho)(Z)`
  (for Normal noise: :math:`Z/\varepsilon`).
* :class:`Multiplicative`: :math:`\eta = \theta \odot \exp(\varepsilon Z - \varepsilon^2/2)`, so that
  :math:`\mathbb E[\eta] = \theta` for Normal Z; score
  :math:`\nabla_\theta \log p(\eta\mid\theta) = -\tfrac{1}{\varepsilon\,\theta}\,(\nabla_z\log\rho)(Z)`
  (for Normal noise: :math:`Z/(\varepsilon\theta)`).

Samples have shape ``(S, *theta.shape)`` on θ's device and dtype and are drawn with an explicit
``generator`` (the global RNG is used only when none is given, and is never reseeded).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .._validation import check_generator, check_int_at_least, check_positive, check_tensor
from .noise import Noise, Normal

__all__ = ["Perturbation", "PerturbedSample", "Additive", "Multiplicative"]


@dataclass(frozen=True)
class PerturbedSample:
    """S perturbed copies of θ and the noise that made them.

    Attributes:
        eta: the perturbed scores, ``(S, *theta.shape)``.
        noise: the standard noise Z, ``(S, *theta.shape)``; finite-difference rules reuse it on both sides.
    """

    eta: torch.Tensor
    noise: torch.Tensor


class Perturbation:
    """Maps θ to the law of a perturbed η; subclasses implement :meth:`apply` and :meth:`score`."""

    def __init__(self, noise: Noise | None = None, epsilon: float = 1.0) -> None:
        self.noise = Normal() if noise is None else noise
        if not isinstance(self.noise, Noise):
            raise TypeError(f"noise must be a colayers.perturb.Noise; got {type(self.noise).__name__}")
        self.epsilon = check_positive("epsilon", epsilon)

    def draw_noise(
        self, theta: torch.Tensor, num_samples: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Standard noise Z of shape ``(num_samples, *theta.shape)`` on θ's device and dtype."""
        check_tensor("theta", theta)
        check_int_at_least("num_samples", num_samples, 1)
        check_generator(generator, theta.device)
        return self.noise.sample(
            (num_samples, *theta.shape), generator=generator, device=theta.device, dtype=theta.dtype
        )

    def sample(
        self, theta: torch.Tensor, num_samples: int = 1, generator: torch.Generator | None = None
    ) -> PerturbedSample:
        """Draw ``num_samples`` perturbed copies of θ: a :class:`PerturbedSample` of shape ``(S, *θ.shape)``."""
        z = self.draw_noise(theta, num_samples, generator)
        return PerturbedSample(eta=self.apply(theta, z), noise=z)

    def apply(self, theta: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """η as a function of θ and a given noise Z (broadcast over the leading sample dimension)."""
        raise NotImplementedError

    def score(self, theta: torch.Tensor, sample: PerturbedSample) -> torch.Tensor:
        r""":math:`\nabla_\theta \log p(\eta_s\mid\theta)` for each sample, shape ``(S, *theta.shape)``."""
        raise NotImplementedError

    def score_mean(self, theta: torch.Tensor, sample: PerturbedSample, weights: torch.Tensor) -> torch.Tensor:
        r"""The weighted mean of the scores, :math:`\frac1S\sum_s w_s\,\nabla_\theta\log p(\eta_s\mid\theta)`.

        ``weights`` has shape ``(S, *batch)`` (one weight per sample and instance, broadcast over θ's event
        dimensions). This is the score-function VJP once the weights :math:`\langle f(\eta_s) - b_s,
        \bar y\rangle` are known; subclasses compute it without forming the ``(S, *theta.shape)`` score.

        Returns:
            A tensor of θ's shape.

        Example:
            >>> import torch
            >>> pert = Additive(epsilon=0.5)
            >>> theta = torch.zeros(2, 3)
            >>> s = pert.sample(theta, 4, generator=torch.Generator().manual_seed(0))
            >>> w = torch.rand(4, 2, generator=torch.Generator().manual_seed(1))
            >>> torch.allclose(pert.score_mean(theta, s, w), (w[..., None] * pert.score(theta, s)).mean(0))
            True
        """
        score = self.score(theta, sample)
        return (weights.reshape(weights.shape + (1,) * (score.ndim - weights.ndim)) * score).mean(0)

    def _weighted_noise_score_sum(self, noise: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        r""":math:`-\sum_s w_s (\nabla_z\log\rho)(Z_s)`, shape ``noise.shape[1:]`` (for Normal noise
        :math:`\sum_s w_s Z_s`, without the elementwise pass)."""
        w = weights.reshape(weights.shape + (1,) * (noise.ndim - weights.ndim))
        if type(self.noise) is Normal:  # grad log rho(z) = -z
            return (w * noise).sum(0)
        return (w * self.noise.grad_log_density(noise)).sum(0).neg_()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.noise!r}, epsilon={self.epsilon})"


class Additive(Perturbation):
    r"""Additive perturbation :math:`\eta = \theta + \varepsilon Z` (Berthet et al., NeurIPS 2020).

    Args:
        noise: the law of Z (default :class:`Normal`).
        epsilon: the noise scale ε > 0.

    Example:
        >>> import torch
        >>> from colayers.perturb import Additive, Gumbel
        >>> pert = Additive(Gumbel(), epsilon=0.5)
        >>> s = pert.sample(torch.zeros(2, 3), num_samples=4, generator=torch.Generator().manual_seed(0))
        >>> s.eta.shape, torch.allclose(s.eta, 0.5 * s.noise)
        (torch.Size([4, 2, 3]), True)
    """

    def apply(self, theta: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return theta + noise if self.epsilon == 1.0 else theta + self.epsilon * noise

    def score(self, theta: torch.Tensor, sample: PerturbedSample) -> torch.Tensor:
        return -self.noise.grad_log_density(sample.noise) / self.epsilon

    def score_mean(self, theta: torch.Tensor, sample: PerturbedSample, weights: torch.Tensor) -> torch.Tensor:
        if type(self).score is not Additive.score:  # a subclass with its own score: use it
            return super().score_mean(theta, sample, weights)
        noise = sample.noise
        return self._weighted_noise_score_sum(noise, weights).mul_(1.0 / (noise.shape[0] * self.epsilon))


class Multiplicative(Perturbation):
    r"""Multiplicative perturbation :math:`\eta = \theta \odot \exp(\varepsilon Z - \varepsilon^2/2)`.

    With Normal Z the factor is log-normal with mean one, so :math:`\mathbb E[\eta] = \theta`, and the sign
    of each η entry is that of θ (InferOpt's ``PerturbedMultiplicative``). Where :math:`\theta_i = 0` the law
    of :math:`\eta_i` is a point mass at 0 and carries no information about :math:`\theta_i`: the score is
    set to 0 there (rather than ±inf), so those coordinates get no score-function gradient.

    Args:
        noise: the law of Z (default :class:`Normal`; the mean-one property holds for Normal only).
        epsilon: the noise scale ε > 0.

    Example:
        >>> import torch
        >>> from colayers.perturb import Multiplicative
        >>> pert = Multiplicative(epsilon=0.1)
        >>> s = pert.sample(torch.tensor([1.0, -2.0, 0.0]), 3, generator=torch.Generator().manual_seed(0))
        >>> bool((s.eta[:, 0] > 0).all() and (s.eta[:, 1] < 0).all() and (s.eta[:, 2] == 0).all())
        True
    """

    def apply(self, theta: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        eps = self.epsilon
        return theta * (eps * noise).sub_(eps * eps / 2).exp_()

    def score(self, theta: torch.Tensor, sample: PerturbedSample) -> torch.Tensor:
        g = -self.noise.grad_log_density(sample.noise) / self.epsilon
        safe = torch.where(theta == 0, torch.ones_like(theta), theta)
        return torch.where(theta == 0, torch.zeros_like(g), g / safe)

    def score_mean(self, theta: torch.Tensor, sample: PerturbedSample, weights: torch.Tensor) -> torch.Tensor:
        if type(self).score is not Multiplicative.score:  # a subclass with its own score: use it
            return super().score_mean(theta, sample, weights)
        noise = sample.noise
        g = self._weighted_noise_score_sum(noise, weights).mul_(1.0 / (noise.shape[0] * self.epsilon))
        zero = theta == 0
        return torch.where(zero, torch.zeros_like(g), g / torch.where(zero, torch.ones_like(theta), theta))
