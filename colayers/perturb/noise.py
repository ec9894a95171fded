r"""Noise laws Z for perturbations: Normal, Gumbel, Sum-of-Gamma.

A :class:`Noise` draws standard samples with an explicit :class:`torch.Generator` on a given device and dtype,
and (where its density :math:`\rho` is known in closed form) gives :math:`\nabla_z \log \rho(z)`, which
the score-function rule needs.
"""

from __future__ import annotations

import math

import torch

from .._validation import check_args, integer_at_least, positive

__all__ = ["Noise", "Normal", "Gumbel", "SumOfGamma"]

EULER_GAMMA = 0.5772156649015329


def _compiled_on(device) -> bool:
    """Whether Sum-of-Gamma noise is drawn by the compiled sampler on ``device`` (the CPU)."""
    return (torch.device(device) if device is not None else torch.get_default_device()).type == "cpu"


def _sum_of_gamma_compiled(
    alpha: float, terms: int, tau: float, shift: float, n: int, generator, dtype: torch.dtype
) -> torch.Tensor:
    r"""``n`` draws of :math:`\tau \sum_{i \le s} G_i / i - \text{shift}`, :math:`G_i` i.i.d. Gamma(α, 1), on the CPU in
    ``dtype`` (float32 or float64) by the compiled rejection samplers of :mod:`colayers.perturb._gamma`, whose own
    generator (xoshiro256**) is seeded by four 63-bit words drawn from ``generator``: the draws are a function of
    ``generator``'s state, which advances by those four words."""
    from ._gamma import sum_of_gamma, tables  # numba is imported (and the kernel loaded from its cache) on first use

    lower, first, span, _ = tables(alpha)
    seed = torch.empty(4, dtype=torch.int64).random_(generator=generator).numpy().view("uint64")
    out = torch.empty(n, dtype=dtype)
    sum_of_gamma(seed, out.numpy(), alpha, terms, tau, shift, lower, first, span)
    return out


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

    def mirror(self, z: torch.Tensor) -> torch.Tensor:
        r"""The antithetic partner :math:`F^{-1}(1 - F(z))` of each entry (:math:`F` the CDF): the same law,
        perfectly negatively rank-correlated with ``z``. Used by antithetic sampling
        (:class:`~colayers.perturb.Perturbation` with ``antithetic=True``)."""
        raise NotImplementedError(
            f"{type(self).__name__} has no antithetic mirror; antithetic sampling needs Normal or Gumbel noise"
        )

    @property
    def has_mirror(self) -> bool:
        """Whether :meth:`mirror` is available (antithetic sampling)."""
        return type(self).mirror is not Noise.mirror

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

    def mirror(self, z: torch.Tensor) -> torch.Tensor:
        """``-z`` (the law is symmetric)."""
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

    def mirror(self, z: torch.Tensor) -> torch.Tensor:
        r""":math:`-\log(-\log(1 - e^{-e^{-z}}))`: with :math:`F(z) = e^{-e^{-z}}`, the entry whose CDF is
        :math:`1 - F(z)` (computed with ``expm1`` so that large z stays finite).

        Example:
            >>> import torch
            >>> z = torch.tensor([-1.0, 0.3665129, 2.0], dtype=torch.float64)  # 0.3665... is the median
            >>> m = Gumbel().mirror(z)
            >>> torch.allclose(Gumbel().mirror(m), z), round(float(m[1]), 6)
            (True, 0.366513)
        """
        tiny = torch.finfo(z.dtype).tiny
        return torch.log(torch.log(torch.expm1(-torch.exp(-z)).neg_().clamp_(min=tiny)).neg_().clamp_(min=tiny)).neg_()


class SumOfGamma(Noise):
    r"""Sum-of-Gamma noise of I-MLE (Niepert, Minervini, Franceschi, NeurIPS 2021).

    .. math::  \mathrm{SoG}(k, \tau, s) = \frac{\tau}{k} \Big[\sum_{i=1}^{s} \mathrm{Gamma}(1/k,\, k/i) - \log s\Big]

    (shape 1/k, scale k/i; torch-imle writes the same law with rate i/k). For every real k > 0 one draw has mean
    :math:`\frac\tau k(H_s - \log s)` and variance :math:`\frac{\tau^2}{k^2}\sum_{i\le s} k/i^2`
    (:attr:`mean`, :attr:`variance`), since :math:`\mathrm{Gamma}(1/k, k/i)` has mean 1/i and variance
    :math:`k/i^2`. For an integer k the sum of k independent draws is approximately a Gumbel(0, τ) variable
    (exactly as ``terms`` → ∞), so that perturb-and-MAP with SoG noise on a k-subset problem approximates a
    Gumbel perturbation of the k-subset distribution; a real k (torch-imle's path example uses
    :math:`k = 1.3 \cdot 16 = 20.8`) keeps the law above. It has no closed-form density.

    Sampling is exact in law and every draw is a function of ``generator``'s state. On the CPU, a compiled kernel
    (:mod:`colayers.perturb._gamma`, numba) draws the s Gamma(1/k) terms of each entry one after the other by exact
    rejection (for k > 1 from a 256-step envelope, acceptance above 0.99; for k < 1 by Marsaglia & Tsang), with an
    exponential variable recycled from one acceptance test to the next, and sums them as it goes; its random numbers
    (about 1.01 per term at k = 5) come from a xoshiro256** generator inside the kernel, seeded by four words drawn
    from ``generator`` (which advances by those four). On CUDA (and any other device) all s·(entries) terms come
    from one call of torch's per-entry gamma kernel, so that no count is read back to the host. For k = 1 the terms
    are Exp(1)/i and their sum has the law of the maximum of s i.i.d. Exp(1) (Rényi's representation), drawn from one
    uniform per entry as :math:`-\log(1 - U^{1/s})` (on every device). (For k = 1 and s → ∞ the law tends to
    Gumbel(0, τ); with finite s it is not Gumbel, and this class keeps the truncated law.)

    Args:
        k: the shape parameter, a real number > 0 (the subset size in I-MLE, where k summands together follow
            a Gumbel law).
        terms: the number s of Gamma terms in the truncated series, ≥ 1.
        temperature: τ > 0.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> SumOfGamma(k=5, terms=10).sample((4,), generator=g).shape
        torch.Size([4])
        >>> noise = SumOfGamma(k=20.8, terms=100)  # torch-imle's path example
        >>> z = noise.sample((20000,), generator=g, dtype=torch.float64)
        >>> abs(z.mean().item() - noise.mean) < 5 * (noise.variance / 20000) ** 0.5
        True
    """

    has_score = False

    arg_constraints = {"k": positive, "terms": integer_at_least(1), "temperature": positive}

    def __init__(self, k: float, terms: int = 10, temperature: float = 1.0) -> None:
        vars(self).update(check_args(self, k=k, terms=terms, temperature=temperature))
        harmonic = sum(1.0 / i for i in range(1, self.terms + 1))
        # E[Gamma(1/k, k/i)] = 1/i, so one draw has mean (tau/k)(H_s - log s); k draws sum to ~ tau * gamma
        self.mean = self.temperature / self.k * (harmonic - math.log(self.terms))
        # Var[Gamma(1/k, k/i)] = (1/k)(k/i)^2 = k/i^2
        self.variance = (self.temperature / self.k) ** 2 * sum(self.k / i**2 for i in range(1, self.terms + 1))

    def sample(self, shape, *, generator=None, device=None, dtype=torch.float32):
        shape = tuple(shape)
        work = dtype if dtype in (torch.float32, torch.float64) else torch.float32
        s = self.terms
        if self.k != 1 and _compiled_on(device):
            # (tau/k)[sum_i (k/i) G_i - log s] = tau sum_i G_i / i - (tau/k) log s, G_i ~ Gamma(1/k, 1)
            shift = self.temperature / self.k * math.log(s)
            total = _sum_of_gamma_compiled(1.0 / self.k, s, self.temperature, shift, math.prod(shape), generator, work)
            return total.view(shape) if work == dtype else total.view(shape).to(dtype)
        if self.k == 1:
            # Gamma(1, 1/i) = E_i / i with E_i ~ Exp(1), and sum_{i<=s} E_i / i has the law of the maximum of
            # s i.i.d. Exp(1) (Renyi's representation of exponential order statistics), whose CDF is
            # (1 - e^{-x})^s: one uniform per entry, x = -log(1 - U^{1/s}), computed without cancellation
            u = torch.rand(shape, generator=generator, device=device, dtype=work)
            total = torch.log(u).div_(s).expm1_().neg_().log_().neg_()
        else:
            # torch's per-entry gamma kernel (Marsaglia-Tsang, boosted for shape < 1), one call for all s * n terms
            n = math.prod(shape)
            alpha = torch.full((s * n,), 1.0 / self.k, device=device, dtype=work)
            gammas = torch._standard_gamma(alpha, generator=generator)
            scale = self.k / torch.arange(1, s + 1, device=device, dtype=work)  # Gamma(1/k, k/i) = (k/i) Gamma(1/k)
            total = (scale @ gammas.view(s, n)).view(shape)
        total = (total - math.log(s)) * (self.temperature / self.k)
        return total if work == dtype else total.to(dtype)

    def __repr__(self) -> str:
        return f"SumOfGamma(k={self.k:g}, terms={self.terms}, temperature={self.temperature})"
