r"""Noise laws Z for perturbations: Normal, Gumbel, Sum-of-Gamma.

A :class:`Noise` draws standard samples with an explicit :class:`torch.Generator` on a given device and dtype,
and (where its density :math:`\rho` is known in closed form) gives :math:`\nabla_z \log \rho(z)`, which
the score-function rule needs.
"""

from __future__ import annotations

import math

import torch

from .._validation import check_int_at_least, check_positive

__all__ = ["Noise", "Normal", "Gumbel", "SumOfGamma"]

EULER_GAMMA = 0.5772156649015329


class Noise:
    """A law of i.i.d. standard noise entries.

    Attributes:
        has_score: whether :meth:`grad_log_density` is available (closed-form density).
        mean, variance: moments of one entry (``None`` where not closed-form).
    """

    has_score: bool = True
    mean: float | None = None
    variance: float | None = None

    def sample(
        self,
        shape: tuple[int, ...],
        *,
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """Draw a tensor of i.i.d. entries with the given shape, device and dtype."""
        raise NotImplementedError

    def grad_log_density(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`\nabla_z \log \rho(z)` entrywise."""
        raise NotImplementedError(
            f"{type(self).__name__} has no closed-form density, so the score-function rule cannot use it; "
            "use a finite-difference rule (IMLE) or Normal/Gumbel noise"
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Normal(Noise):
    r"""Standard normal noise :math:`Z \sim \mathcal N(0, 1)`; :math:`\nabla_z \log\rho(z) = -z`.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> Normal().sample((2, 3), generator=g).shape
        torch.Size([2, 3])
    """

    mean = 0.0
    variance = 1.0

    def sample(self, shape, *, generator=None, device=None, dtype=torch.float32):
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    def grad_log_density(self, z: torch.Tensor) -> torch.Tensor:
        return -z


class Gumbel(Noise):
    r"""Standard Gumbel noise, :math:`\rho(z) = \exp(-z - e^{-z})`; mean :math:`\gamma`, variance :math:`\pi^2/6`.

    Sampled as :math:`-\log(-\log U)` with :math:`U` uniform on (0, 1) (drawn away from 0 and 1 so the
    result is finite in every dtype). :math:`\nabla_z \log\rho(z) = e^{-z} - 1`.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> z = Gumbel().sample((100000,), generator=g, dtype=torch.float64)
        >>> abs(z.mean().item() - 0.5772) < 0.02
        True
    """

    mean = EULER_GAMMA
    variance = math.pi**2 / 6

    def sample(self, shape, *, generator=None, device=None, dtype=torch.float32):
        u = torch.rand(shape, generator=generator, device=device, dtype=dtype)
        tiny = torch.finfo(dtype).tiny
        u = u.clamp(min=tiny, max=1.0 - torch.finfo(dtype).eps)
        return -torch.log(-torch.log(u))

    def grad_log_density(self, z: torch.Tensor) -> torch.Tensor:
        return torch.expm1(-z)


class SumOfGamma(Noise):
    r"""Sum-of-Gamma noise of I-MLE (Niepert, Minervini, Franceschi, NeurIPS 2021).

    .. math::  \mathrm{SoG}(k, \tau, s) = \frac{\tau}{k} \Big[\sum_{i=1}^{s} \mathrm{Gamma}(1/k,\, k/i) - \log s\Big]

    (shape 1/k, scale k/i). The sum of k independent draws is approximately a Gumbel(0, τ) variable
    (exactly as ``terms`` → ∞), so that perturb-and-MAP with SoG noise on a k-subset problem
    approximates a Gumbel perturbation of the k-subset distribution. It has no closed-form density.

    Args:
        k: the number of summands that together follow a Gumbel law (the subset size in I-MLE), ≥ 1.
        terms: the number s of Gamma terms in the truncated series, ≥ 1.
        temperature: τ > 0.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> SumOfGamma(k=5, terms=10).sample((4,), generator=g).shape
        torch.Size([4])
    """

    has_score = False

    def __init__(self, k: int, terms: int = 10, temperature: float = 1.0) -> None:
        self.k = check_int_at_least("k", k, 1)
        self.terms = check_int_at_least("terms", terms, 1)
        self.temperature = check_positive("temperature", temperature)
        harmonic = sum(1.0 / i for i in range(1, self.terms + 1))
        # E[Gamma(1/k, k/i)] = 1/i, so one draw has mean (tau/k)(H_s - log s); k draws sum to ~ tau * gamma
        self.mean = self.temperature / self.k * (harmonic - math.log(self.terms))
        # Var[Gamma(1/k, k/i)] = k/i^2
        self.variance = (self.temperature / self.k) ** 2 * sum(self.k / i**2 for i in range(1, self.terms + 1))

    def sample(self, shape, *, generator=None, device=None, dtype=torch.float32):
        conc = torch.full((self.terms, *shape), 1.0 / self.k, device=device, dtype=dtype)
        gammas = torch._standard_gamma(conc, generator=generator)  # Gamma(1/k, 1)
        scale = self.k / torch.arange(1, self.terms + 1, device=device, dtype=dtype)
        gammas = gammas * scale.view((self.terms,) + (1,) * len(shape))
        total = gammas.sum(0) - math.log(self.terms)
        return total * (self.temperature / self.k)

    def __repr__(self) -> str:
        return f"SumOfGamma(k={self.k}, terms={self.terms}, temperature={self.temperature})"
