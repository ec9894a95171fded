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


def standard_gamma_small(
    alpha: float,
    n: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    r"""``n`` i.i.d. draws of :math:`\mathrm{Gamma}(\alpha, 1)`, :math:`0 < \alpha \le 1`, exact in law.

    Vectorised rejection sampler GS of Ahrens & Dieter (*Computer methods for sampling from gamma, beta,
    Poisson and binomial distributions*, Computing 12, 1974), with :math:`b = 1 + \alpha/e`: draw
    :math:`U_1, U_2` uniform and :math:`P = bU_1`;

    * if :math:`P \le 1`: propose :math:`X = P^{1/\alpha}`, accept if :math:`-\log U_2 \ge X` (decided without
      the logarithm where :math:`U_2 \le 1 - X`, since :math:`e^{-X} \ge 1 - X`);
    * else: propose :math:`X = -\log((b - P)/\alpha)`, accept if :math:`\log U_2 \le (\alpha - 1)\log X`.

    The acceptance probability is :math:`\Gamma(\alpha + 1)/b` (0.92 at α = 0.1, 0.75 at α = 0.5, 0.73 at
    α = 1); uniforms are drawn in bulk with ``generator`` and only the rejected entries are drawn again, so
    equal generator states give equal draws. It replaces :func:`torch._standard_gamma`, which draws one
    scalar at a time on the CPU, for the many small-shape draws of :class:`SumOfGamma`.

    Args:
        alpha: the shape, in (0, 1].
        n: the number of draws.
        generator, device, dtype: where and how to draw (dtype float32 or float64).

    Returns:
        A tensor of shape ``(n,)``.

    Example:
        >>> import torch
        >>> x = standard_gamma_small(0.5, 100000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        >>> abs(x.mean().item() - 0.5) < 0.01, bool((x >= 0).all())
        (True, True)
    """
    if not 0 < alpha <= 1:
        raise ValueError(f"alpha must be in (0, 1]; got {alpha!r}")
    b = 1.0 + alpha / math.e
    accept_rate = math.gamma(alpha + 1.0) / b
    # first round: one proposal per entry, accepted ones written in place; later rounds: enough proposals for
    # the remaining entries, whose accepted ones fill them in order (i.i.d. accepted draws, so exact)
    x, rejected = _gs_round(alpha, b, n, generator, device, dtype)
    out, todo = x, rejected
    while todo.numel():
        m = todo.numel()
        x, rejected = _gs_round(alpha, b, int(m / accept_rate * 1.2) + 16, generator, device, dtype)
        keep = torch.ones(x.shape, dtype=torch.bool, device=x.device)
        keep[rejected] = False
        x = torch.masked_select(x, keep)[:m]
        out.index_copy_(0, todo[: x.numel()], x)
        todo = todo[x.numel() :]
    # like torch._standard_gamma, report draws that underflow as the smallest positive normal number
    return out.clamp_(min=torch.finfo(dtype).tiny)


def _gs_round(alpha, b, m, generator, device, dtype):
    """One round of m GS proposals: ``(x, rejected)``, the proposals and the indices of the rejected ones."""
    inv_alpha = 1.0 / alpha
    tiny = torch.finfo(dtype).tiny
    u = torch.rand((2, m), generator=generator, device=device, dtype=dtype)
    p, u2 = u[0].mul_(b), u[1]
    x = _power(p, inv_alpha)  # P^(1/alpha): the proposal where P <= 1
    # Quick acceptance without a logarithm: exp(-x) >= 1 - x, so U2 + x <= 1 accepts (with a margin of a few
    # ulps, so that rounding never accepts what the exact test would reject). The few other entries get the
    # exact tests below; they include every P > 1 (about alpha / (e b) of them, second proposal), since
    # P > 1 gives x = P^(1/alpha) >= 1 in floating point too.
    special = (u2 + x > 1.0 - 4 * torch.finfo(dtype).eps).nonzero().squeeze(-1)
    # (index_select / index_copy_ / masked_select: the same as advanced indexing, several times faster on CPU)
    ps, xs, log_u2 = p.index_select(0, special), x.index_select(0, special), torch.log(u2.index_select(0, special))
    upper = ps > 1.0
    xb = torch.log(((b - ps) * inv_alpha).clamp_(min=tiny)).neg_()  # >= 1 where P in (1, b)
    ok = torch.where(upper, log_u2 <= (alpha - 1.0) * torch.log(xb.clamp(min=tiny)), log_u2 <= -xs)
    x.index_copy_(0, special, torch.where(upper, xb, xs))
    return x, torch.masked_select(special, ok.logical_not_())


def _standard_gamma_large(
    alpha: float, n: int, generator: torch.Generator | None, device, dtype: torch.dtype
) -> torch.Tensor:
    r"""``n`` i.i.d. draws of :math:`\mathrm{Gamma}(\alpha, 1)`, :math:`\alpha > 1`, exact in law: the rejection
    sampler of Marsaglia & Tsang (*A simple method for generating gamma variables*, ACM TOMS 26, 2000). With
    :math:`d = \alpha - 1/3`, :math:`c = 1/\sqrt{9d}`, :math:`X` standard normal, :math:`V = (1 + cX)^3` and
    :math:`U` uniform, :math:`dV` is accepted where :math:`V > 0` and :math:`\log U < X^2/2 + d - dV + d\log V`
    (acceptance probability above 0.95 for every α ≥ 1). As in :func:`standard_gamma_small`, proposals are drawn
    in bulk with ``generator`` and only the rejected entries are drawn again."""
    d = alpha - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(n, device=device, dtype=dtype)
    todo = torch.arange(n, device=device)
    while todo.numel():
        m = int(todo.numel() * 1.1) + 16
        x = torch.randn(m, generator=generator, device=device, dtype=dtype)
        log_u = torch.rand(m, generator=generator, device=device, dtype=dtype).log()
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (log_u < 0.5 * x * x + d - d * v + d * torch.log(v.clamp(min=torch.finfo(dtype).tiny)))
        accepted = torch.masked_select(d * v, ok)[: todo.numel()]
        out.index_copy_(0, todo[: accepted.numel()], accepted)
        todo = todo[accepted.numel() :]
    return out


def _bulk_on(device) -> bool:
    """Whether the bulk rejection samplers run on ``device`` (the CPU, where reading a count back costs nothing)."""
    return (torch.device(device) if device is not None else torch.get_default_device()).type == "cpu"


def _standard_gamma(
    alpha: float, n: int, generator: torch.Generator | None, device, dtype: torch.dtype
) -> torch.Tensor:
    r"""``n`` i.i.d. draws of :math:`\mathrm{Gamma}(\alpha, 1)`, exact in law, with ``generator``, on ``device``.

    On the CPU: the bulk rejection samplers above (:func:`standard_gamma_small` for α ≤ 1, Marsaglia–Tsang for
    α > 1), whose rounds size themselves from the number of rejections, a count read on the host. On any other
    device, where that read would wait for the device, one call of torch's per-entry gamma kernel
    (``torch._standard_gamma``, Marsaglia–Tsang with the boost :math:`\mathrm{Gamma}(\alpha + 1)\,U^{1/\alpha}` for
    α < 1, each entry rejecting until it accepts on the device): exact, on the generator given, and no value read
    back. (The public ``torch.distributions.Gamma`` calls the same kernel but takes no generator; on the CPU the
    kernel draws one scalar at a time, 2–3× slower than the bulk samplers.)
    """
    if not _bulk_on(device):
        return torch._standard_gamma(torch.full((n,), alpha, device=device, dtype=dtype), generator=generator)
    if alpha <= 1.0:
        return standard_gamma_small(alpha, n, generator=generator, device=device, dtype=dtype)
    return _standard_gamma_large(alpha, n, generator, device, dtype)


def _power(p: torch.Tensor, exponent: float) -> torch.Tensor:
    """``p ** exponent`` for p >= 0: by repeated squaring when the exponent is a small integer (as 1/alpha = k
    is for Sum-of-Gamma noise; a few multiplications instead of a logarithm and an exponential)."""
    k = round(exponent)
    if k != exponent or not 1 <= k <= 256:
        return torch.log(p).mul_(exponent).exp_()
    result, base = None, p
    while True:
        if k & 1:
            result = base.clone() if result is None and base is p else base if result is None else result.mul_(base)
        k >>= 1
        if not k:
            return result
        base = base * base


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

    Sampling is exact in law and vectorised, with ``generator``: on the CPU, for k > 1 the s·(entries) Gamma(1/k)
    draws come from :func:`standard_gamma_small` (bulk rejection sampling), for k < 1 (shape 1/k > 1) from the
    rejection sampler of Marsaglia & Tsang; on CUDA (and any other device) from one call of torch's per-entry gamma
    kernel, so that no count is read back to the host; for k = 1 the terms are Exp(1)/i and their sum has the law
    of the maximum of s i.i.d. Exp(1) (Rényi's representation), drawn from one uniform per entry as
    :math:`-\log(1 - U^{1/s})` (on every device). (For k = 1 and s → ∞ the law tends to Gumbel(0, τ); with finite s
    it is not Gumbel, and this class keeps the truncated law.)

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
        if self.k == 1:
            # Gamma(1, 1/i) = E_i / i with E_i ~ Exp(1), and sum_{i<=s} E_i / i has the law of the maximum of
            # s i.i.d. Exp(1) (Renyi's representation of exponential order statistics), whose CDF is
            # (1 - e^{-x})^s: one uniform per entry, x = -log(1 - U^{1/s}), computed without cancellation
            u = torch.rand(shape, generator=generator, device=device, dtype=work)
            total = torch.log(u).div_(s).expm1_().neg_().log_().neg_()
        else:
            n = math.prod(shape)
            gammas = _standard_gamma(1.0 / self.k, s * n, generator, device, work)
            scale = self.k / torch.arange(1, s + 1, device=device, dtype=work)  # Gamma(1/k, k/i) = (k/i) Gamma(1/k)
            total = (scale @ gammas.view(s, n)).view(shape)
        total = (total - math.log(s)) * (self.temperature / self.k)
        return total if work == dtype else total.to(dtype)

    def __repr__(self) -> str:
        return f"SumOfGamma(k={self.k:g}, terms={self.terms}, temperature={self.temperature})"
