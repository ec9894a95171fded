"""Noise statistics, reproducibility and argument checks.

Monte Carlo tolerances: with n i.i.d. draws, the sample mean has standard error σ/√n and the sample variance
has standard error ≈ σ²·√((κ − 1)/n) with κ the kurtosis (3 for the normal law, 5.4 for Gumbel). Every check
allows 5 standard errors, so a correct sampler fails with probability < 1e-6 per check (and the generators
are fixed, so the tests are deterministic).
"""

import contextlib
import math
from unittest import mock

import pytest
import torch

from colayers.perturb import Additive, Gumbel, Multiplicative, Normal, SumOfGamma
from tests.conftest import DEVICES

N = 200_000
EULER = 0.5772156649015329


def gen(device="cpu", seed=0):
    return torch.Generator(device=device).manual_seed(seed)


def assert_moments(z, mean, var, kurtosis):
    n = z.numel()
    se_mean = math.sqrt(var / n)
    se_var = var * math.sqrt((kurtosis - 1) / n)
    assert abs(z.mean().item() - mean) < 5 * se_mean, (z.mean().item(), mean, se_mean)
    assert abs(z.var().item() - var) < 5 * se_var, (z.var().item(), var, se_var)


@pytest.mark.parametrize("device", DEVICES)
def test_normal_moments(device):
    z = Normal().sample((N,), generator=gen(device), device=device, dtype=torch.float64)
    assert z.device.type == device and z.dtype == torch.float64
    assert_moments(z, 0.0, 1.0, 3.0)


@pytest.mark.parametrize("device", DEVICES)
def test_gumbel_moments(device):
    z = Gumbel().sample((N,), generator=gen(device), device=device, dtype=torch.float64)
    assert_moments(z, EULER, math.pi**2 / 6, 5.4)
    assert Gumbel.mean == pytest.approx(EULER) and Gumbel.variance == pytest.approx(math.pi**2 / 6)


def test_gumbel_is_finite_in_float32():
    z = Gumbel().sample((1_000_000,), generator=gen(), dtype=torch.float32)
    assert torch.isfinite(z).all()


@pytest.mark.parametrize("k", [1, 3, 10])
def test_sum_of_gamma_sums_to_gumbel(k):
    # The sum of k SoG(k, s) draws has mean H_s - log s -> γ and variance Σ_{i≤s} 1/i² -> π²/6 as s -> ∞.
    s = 100
    noise = SumOfGamma(k, terms=s)
    n = 20_000
    draws = noise.sample((k, n), generator=gen(seed=k), dtype=torch.float64).sum(0)
    harmonic = sum(1 / i for i in range(1, s + 1))
    mean_s, var_s = harmonic - math.log(s), sum(1 / i**2 for i in range(1, s + 1))
    # truncation error of the series: H_s - log s - γ ≈ 1/(2s), π²/6 - Σ 1/i² ≈ 1/s
    assert abs(mean_s - EULER) < 1 / s and abs(var_s - math.pi**2 / 6) < 1.01 / s
    assert_moments(draws, mean_s, var_s, 5.4)  # 5 standard errors (0.045 on the mean) dwarf the truncation
    assert_moments(draws, EULER, math.pi**2 / 6, 5.4)
    # the class reports the moments of one draw
    assert noise.mean * k == pytest.approx(mean_s) and noise.variance * k == pytest.approx(var_s)


def test_sum_of_gamma_one_draw_moments():
    noise = SumOfGamma(4, terms=10, temperature=2.0)
    z = noise.sample((N,), generator=gen(seed=3), dtype=torch.float64)
    # Gamma(1/k) is heavy-tailed (kurtosis 3 + 6k); bound the variance check with that kurtosis
    assert_moments(z, noise.mean, noise.variance, 3 + 6 * 4)


@pytest.mark.parametrize("device", DEVICES)
def test_multiplicative_has_mean_theta(device):
    theta = torch.tensor([2.0, -1.0, 0.5, 0.0], dtype=torch.float64, device=device)
    eps = 0.5
    eta = Multiplicative(Normal(), eps).sample(theta, N, generator=gen(device)).eta
    # Var of the log-normal factor is exp(ε²) - 1; standard error of the mean is |θ| √(that / N)
    se = theta.abs() * math.sqrt(math.expm1(eps**2) / N)
    assert ((eta.mean(0) - theta).abs() <= 5 * se + 1e-12).all()
    assert (eta[:, 3] == 0).all()


@pytest.mark.parametrize(
    "noise", [Normal(), Gumbel(), SumOfGamma(3)], ids=["normal", "gumbel", "sog"]
)
@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_same_samples_and_global_rng_untouched(noise, device):
    theta = torch.randn(3, 4, device=device)
    before = torch.random.get_rng_state()
    cuda_before = torch.cuda.get_rng_state() if device == "cuda" else None
    pert = Additive(noise, 0.3)
    a = pert.sample(theta, 5, generator=gen(device, 7))
    b = pert.sample(theta, 5, generator=gen(device, 7))
    c = pert.sample(theta, 5, generator=gen(device, 8))
    assert torch.equal(a.eta, b.eta) and torch.equal(a.noise, b.noise)
    assert not torch.equal(a.eta, c.eta)
    assert a.eta.shape == (5, 3, 4) and a.eta.device == theta.device and a.eta.dtype == theta.dtype
    assert torch.equal(torch.random.get_rng_state(), before)
    if cuda_before is not None:
        assert torch.equal(torch.cuda.get_rng_state(), cuda_before)


def test_bad_arguments_name_themselves():
    theta = torch.zeros(3)
    # epsilon = 0 is allowed (no noise); negative, infinite and NaN scales are refused, naming epsilon
    assert Additive(Normal(), 0.0).epsilon == 0.0
    with pytest.raises(ValueError, match="epsilon must be ≥ 0; got -1"):
        Multiplicative(Normal(), -1.0)
    for bad in (float("inf"), float("-inf"), float("nan")):
        for cls in (Additive, Multiplicative):
            with pytest.raises(ValueError, match="epsilon must be a finite number ≥ 0"):
                cls(Normal(), bad)
        with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
            SumOfGamma(2, temperature=bad)
    with pytest.raises(ValueError, match="antithetic sampling needs a noise with a mirror"):
        Additive(SumOfGamma(2), 1.0, antithetic=True)
    with pytest.raises(ValueError, match="num_samples must be even for antithetic sampling"):
        Additive(Normal(), 1.0, antithetic=True).sample(theta, 3)
    with pytest.raises(ValueError, match="num_samples must be an integer ≥ 1; got 0"):
        Additive(Normal(), 1.0).sample(theta, 0)
    with pytest.raises(ValueError, match="k must be > 0; got 0"):
        SumOfGamma(0)
    with pytest.raises(ValueError, match="k must be a finite number > 0; got inf"):
        SumOfGamma(math.inf)
    with pytest.raises(ValueError, match="terms must be an integer ≥ 1; got 0"):
        SumOfGamma(2, terms=0)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        SumOfGamma(2, temperature=0.0)
    with pytest.raises(TypeError, match="noise must be a colayers.perturb.Noise"):
        Additive("normal", 1.0)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        Additive(Normal(), 1.0).sample(theta, 2, generator=3)
    with pytest.raises(NotImplementedError, match="no closed-form density"):
        SumOfGamma(2).grad_log_density(theta)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_generator_for_cuda_theta_is_refused():
    with pytest.raises(ValueError, match="generator must live on the device of theta"):
        Additive(Normal(), 1.0).sample(torch.zeros(3, device="cuda"), 2, generator=gen("cpu"))


# --- the vectorised Gamma sampler behind SumOfGamma ------------------------------------------------------
# Two-sample Kolmogorov-Smirnov tests against torch's own sampler at fixed generators: under equal laws the
# p-value is uniform, so a threshold of 1e-3 fails a correct sampler with probability 1e-3 per check (and the
# generators are fixed, so the outcome is deterministic). With n = 20 000 per side the test rejects, at that
# level, any law whose CDF differs from the reference by more than about 0.02 somewhere.


def _reference_sum_of_gamma(noise, shape, generator, dtype):
    """SumOfGamma drawn term by term with torch._standard_gamma (the definition, slowly)."""
    conc = torch.full((noise.terms, *shape), 1.0 / noise.k, dtype=dtype)
    gammas = torch._standard_gamma(conc, generator=generator)
    scale = noise.k / torch.arange(1, noise.terms + 1, dtype=dtype)
    total = (gammas * scale.view((noise.terms,) + (1,) * len(shape))).sum(0) - math.log(noise.terms)
    return total * (noise.temperature / noise.k)


@pytest.mark.parametrize("k", [1, 3, 10])
def test_sum_of_gamma_matches_its_definition(k):
    from scipy.stats import ks_2samp

    noise = SumOfGamma(k, terms=10, temperature=1.5)
    x = noise.sample((100, 200), generator=gen(seed=21), dtype=torch.float64)
    ref = _reference_sum_of_gamma(noise, (100, 200), gen(seed=22), torch.float64)
    assert ks_2samp(x.flatten().numpy(), ref.flatten().numpy()).pvalue > 1e-3


@pytest.mark.parametrize("k", [1, 4])
def test_sum_of_gamma_reproducible_shape_dtype(k):
    noise = SumOfGamma(k)
    a = noise.sample((3, 5), generator=gen(seed=5))
    b = noise.sample((3, 5), generator=gen(seed=5))
    assert torch.equal(a, b) and a.shape == (3, 5) and a.dtype == torch.float32
    assert noise.sample((0, 4), generator=gen()).shape == (0, 4)
    assert noise.sample((2,), generator=gen(), dtype=torch.float64).dtype == torch.float64


# --- Sum-of-Gamma with a real k (torch-imle's path example uses k = 1.3 * 16 = 20.8) ----------------------------


@pytest.mark.parametrize("k", [0.3, 2.5, 20.8])
def test_sum_of_gamma_with_a_real_k_matches_its_definition(k):
    from scipy.stats import ks_2samp

    s, tau = 20, 1.5
    noise = SumOfGamma(k, terms=s, temperature=tau)
    assert noise.k == k
    # moments from the definition (tau/k)[sum_i Gamma(1/k, k/i) - log s]: Gamma(shape a, scale b) has cumulants
    # k2 = a b^2, k4 = 6 a b^4; with a = 1/k, b = k/i: mean 1/i, variance k/i^2, fourth cumulant 6 k^3/i^4
    mean = tau / k * (sum(1 / i for i in range(1, s + 1)) - math.log(s))
    var = (tau / k) ** 2 * sum(k / i**2 for i in range(1, s + 1))
    kurtosis = 3 + 6 * k * sum(i**-4.0 for i in range(1, s + 1)) / sum(i**-2.0 for i in range(1, s + 1)) ** 2
    assert noise.mean == pytest.approx(mean, rel=1e-12) and noise.variance == pytest.approx(var, rel=1e-12)
    z = noise.sample((N,), generator=gen(seed=31), dtype=torch.float64)
    assert_moments(z, mean, var, kurtosis)
    # and the whole law, against the definition drawn term by term with torch's Gamma sampler
    ref = _reference_sum_of_gamma(noise, (20_000,), gen(seed=32), torch.float64)
    assert ks_2samp(z[:20_000].numpy(), ref.numpy()).pvalue > 1e-3
    a = noise.sample((3, 4), generator=gen(seed=5))
    assert torch.equal(a, noise.sample((3, 4), generator=gen(seed=5))) and a.dtype == torch.float32


# --- Sum-of-Gamma against its definition drawn by numpy, on both samplers -----------------------------------------
# The definition (tau/k)[sum_{i<=s} Gamma(1/k, scale k/i) - log s] drawn term by term with numpy's Gamma sampler
# (independent of torch and of this package). Two-sample Kolmogorov-Smirnov test at significance level 1e-3 per
# check, n = 20 000 per side (it rejects, at that level, a CDF off by more than about 0.02 anywhere); the generators
# are fixed, so the outcome is deterministic. "compiled" is the CPU's compiled sampler (colayers.perturb._gamma),
# "torch" torch's per-entry gamma kernel that CUDA uses (forced here on the CPU).


def _definition_numpy(k, s, tau, n, seed):
    import numpy as np

    rng = np.random.default_rng(seed)
    scale = k / np.arange(1, s + 1)
    terms = rng.gamma(1.0 / k, scale[:, None], size=(s, n))
    return tau / k * (terms.sum(0) - math.log(s))


@contextlib.contextmanager
def gamma_sampler(which):
    from colayers.perturb import noise as noise_module

    if which == "compiled":
        yield
    else:
        with mock.patch.object(noise_module, "_compiled_on", lambda device: False):
            yield


@pytest.mark.parametrize("which", ["compiled", "torch"])
@pytest.mark.parametrize("s", [1, 10, 50])
@pytest.mark.parametrize("k", [0.5, 1.0, 2.5, 5.0])
def test_sum_of_gamma_law_against_numpy_definition(k, s, which):
    from scipy.stats import ks_2samp

    tau, n = 1.3, 20_000
    noise = SumOfGamma(k, terms=s, temperature=tau)
    with gamma_sampler(which):
        z = noise.sample((n,), generator=gen(seed=41), dtype=torch.float64)
        z32 = noise.sample((n,), generator=gen(seed=42), dtype=torch.float32)
    ref = _definition_numpy(k, s, tau, n, seed=43)
    assert ks_2samp(z.numpy(), ref).pvalue > 1e-3
    assert z32.dtype == torch.float32 and ks_2samp(z32.double().numpy(), ref).pvalue > 1e-3


@pytest.mark.parametrize("which", ["compiled", "torch"])
@pytest.mark.parametrize("k", [0.5, 2.5, 5.0])
def test_sum_of_gamma_moments_both_samplers(k, which):
    # mean and variance from the definition; tolerances of 5 standard errors from the variance and the kurtosis
    # (fourth cumulant of Gamma(1/k, k/i): 6 k^3 / i^4), as in test_sum_of_gamma_with_a_real_k_matches_its_definition
    s, tau = 10, 0.7
    noise = SumOfGamma(k, terms=s, temperature=tau)
    mean = tau / k * (sum(1 / i for i in range(1, s + 1)) - math.log(s))
    var = (tau / k) ** 2 * sum(k / i**2 for i in range(1, s + 1))
    kurtosis = 3 + 6 * k * sum(i**-4.0 for i in range(1, s + 1)) / sum(i**-2.0 for i in range(1, s + 1)) ** 2
    with gamma_sampler(which):
        z = noise.sample((N,), generator=gen(seed=51), dtype=torch.float64)
    assert_moments(z, mean, var, kurtosis)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("which", ["compiled", "torch"])
@pytest.mark.parametrize("k", [0.5, 1.0, 5.0])
def test_sum_of_gamma_seed_replay(k, which, device):
    # the generator drives every draw: same seed, same draws; another seed, other draws; on the generator's device
    noise = SumOfGamma(k, terms=10)
    with gamma_sampler(which):
        a = noise.sample((10, 32, 40), generator=gen(device, seed=7), device=device)
        b = noise.sample((10, 32, 40), generator=gen(device, seed=7), device=device)
        c = noise.sample((10, 32, 40), generator=gen(device, seed=8), device=device)
    assert a.device.type == device and a.shape == (10, 32, 40) and a.dtype == torch.float32
    assert torch.equal(a, b) and not torch.equal(a, c)


# --- the compiled CPU sampler (colayers.perturb._gamma) ---------------------------------------------------------
# One Gamma term alone: SumOfGamma(k, terms=1, temperature=1) is (1/k)(k G) = G ~ Gamma(1/k, 1). One-sample
# Kolmogorov-Smirnov test against scipy's exact Gamma CDF (independent of torch and of this package) at significance
# level 1e-3, n = 200 000 draws: it rejects, at that level, a CDF off by more than about 0.0044 anywhere. Shapes
# 1/k cover the step envelope (k > 1, integer and real 1/alpha: repeated squaring and exp(log)) and Marsaglia-Tsang
# (k < 1). float64 here: in float32, Gamma(1/20) puts 1.3 % of its mass below the smallest normal number.


@pytest.mark.parametrize("k", [20.0, 20.8, 10.0, 5.0, 2.5, 1.1, 0.9, 2 / 3, 0.3, 0.1])
def test_compiled_gamma_term_against_the_exact_cdf(k):
    from scipy import stats

    n = 200_000
    g = SumOfGamma(k, terms=1, temperature=1.0).sample((n,), generator=gen(seed=61), dtype=torch.float64)
    assert stats.kstest(g.numpy(), stats.gamma(1.0 / k).cdf).pvalue > 1e-3
    # Gamma(alpha, 1): mean = variance = alpha, kurtosis 3 + 6 / alpha
    assert_moments(g, 1.0 / k, 1.0 / k, 3 + 6 * k)


@pytest.mark.parametrize("alpha", [0.001, 0.05, 0.2, 1 / 2.5, 0.9, 1.0])
def test_step_envelope_is_an_envelope_of_equal_pieces(alpha):
    # the exactness of the k > 1 sampler rests on this: every piece has the same envelope mass w (so U P = m + V
    # picks each with probability 1/P), the envelope lies above x^(alpha - 1) e^{-x} on every piece, and the
    # acceptance probability is Gamma(alpha) / (P w). The pieces are kept as a = c^alpha (c underflows to 0 near 0
    # for a small alpha: at alpha = 0.001 most of the mass lies below the smallest double)
    from colayers.perturb._gamma import PIECES, tables

    lower, first, span, acceptance = tables(alpha)
    a, c = torch.from_numpy(first), torch.from_numpy(lower)
    assert a.shape == (PIECES,) and a[0] == 0 and bool((a.diff() > 0).all()) and bool((c.diff() >= 0).all())
    last = c[-1] ** (alpha - 1) * torch.exp(-c[-1])
    masses = torch.cat([torch.exp(-c[:-1]) * (a[1:] - a[:-1]) / alpha, last[None]])
    w = masses.mean().item()
    assert torch.allclose(masses, torch.full_like(masses, w), rtol=1e-9, atol=0)
    assert acceptance == pytest.approx(math.gamma(alpha) / (PIECES * w), rel=1e-12) and acceptance > 0.98
    assert torch.allclose(torch.from_numpy(first[:-1] + span[:-1]), a[1:], rtol=1e-12, atol=0)
    assert torch.allclose(a ** (1 / alpha), c, rtol=1e-12, atol=0)
    v = torch.linspace(0, 1, 65, dtype=torch.float64)[1:-1]
    x = c[:-1, None] + v * (c[1:] - c[:-1])[:, None]  # points inside the finite pieces (where c did not underflow)
    x = x[x > 0]
    cx = c[torch.searchsorted(c, x, right=True) - 1]
    assert bool((torch.exp(-cx) * x ** (alpha - 1) >= x ** (alpha - 1) * torch.exp(-x)).all())
    xt = c[-1] + torch.linspace(0, 30, 61, dtype=torch.float64)  # and on the last piece
    assert bool((c[-1] ** (alpha - 1) * torch.exp(-xt) >= xt ** (alpha - 1) * torch.exp(-xt) * (1 - 1e-12)).all())


@pytest.mark.parametrize("k", [200.0, 1000.0])
def test_compiled_sampler_for_a_tiny_shape(k):
    # Gamma(1/k) with k in the hundreds: most draws lie below 1e-300, so the step envelope must keep its pieces as
    # c^(1/k) (a KS test cannot see this law in float64: at k = 1000 47 % of it underflows to 0). Mean of
    # SumOfGamma(k, 3) within 5 standard errors (the variance is exact: k/i^2 per term)
    noise = SumOfGamma(k, terms=3, temperature=1.0)
    z = noise.sample((N,), generator=gen(seed=91), dtype=torch.float64)
    assert bool(torch.isfinite(z).all())
    assert abs(z.mean().item() - noise.mean) < 5 * math.sqrt(noise.variance / N)


def _xoshiro_reference(words, count):
    # xoshiro256** and SplitMix64's output function as their authors publish them (prng.di.unimi.it), in Python
    # integers modulo 2^64: the kernel's generator must give exactly these uniforms
    mask = 2**64 - 1

    def mix(z):
        z = (z + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    def rotl(x, k):
        return ((x << k) | (x >> (64 - k))) & mask

    s = [mix(w) for w in words]
    out = []
    for _ in range(count):
        out.append((rotl((s[1] * 5) & mask, 7) * 9 & mask) >> 11)
        t = (s[1] << 17) & mask
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
    return [v * 2.0**-53 for v in out]


def test_compiled_generator_is_xoshiro256starstar():
    import numpy as np

    from colayers.perturb._gamma import seed_state, uniforms

    words = [0, 1, 2**63 + 12345, 2**64 - 1]
    s = seed_state(np.array(words, dtype=np.uint64))
    u = np.empty(1000)
    uniforms(s, u[:7])  # two calls: the state carries over
    uniforms(s, u[7:])
    assert u.tolist() == _xoshiro_reference(words, 1000)


def test_compiled_walk_equals_the_term_by_term_tests():
    # the kernel accepts a whole entry at once where E exceeds the sum of its thresholds; a reference in Python
    # tests each term one by one (the recycled exponential of the module docstring), from the same random numbers
    # (the kernel's own proposals and generator), over three chunks: the same draws up to rounding
    import numpy as np

    from colayers.perturb import _gamma

    alpha, terms, tau, shift, n = 0.2, 10, 1.3, 0.4, 1000
    lower, first, span, _ = _gamma.tables(alpha)
    words = np.array([3, 1, 4, 1], dtype=np.uint64)
    out = np.empty(n)
    _gamma.sum_of_gamma(words, out, alpha, terms, tau, shift, lower, first, span)
    s, u = _gamma.seed_state(words), np.empty(1)
    x, t = np.empty(_gamma.CHUNK), np.empty(_gamma.CHUNK)
    piece, tail, tail_v = np.empty(_gamma.CHUNK, np.int64), np.empty(_gamma.CHUNK, np.int64), np.empty(_gamma.CHUNK)
    _gamma.uniforms(s, u)
    e, ref, acc, i = -math.log(1.0 - u[0]), [], 0.0, 1
    while len(ref) < n:
        size = min(_gamma.CHUNK, (n - len(ref)) * terms - (i - 1))
        _gamma._stepped_proposals(s, size, alpha, lower, first, span, x, t, piece, tail, tail_v)
        for q in range(size):
            if len(ref) == n:
                break
            if e >= t[q]:
                e, acc, i = e - t[q], acc + x[q] / i, i + 1
                if i > terms:
                    ref.append(tau * acc - shift)
                    acc, i = 0.0, 1
            else:
                _gamma.uniforms(s, u)
                e = -math.log(1.0 - u[0])
    assert n * terms > 2 * _gamma.CHUNK
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("k", [5.0, 0.5])
def test_compiled_sampler_is_the_same_law_over_many_chunks_and_calls(k):
    # 200 000 terms per side go through about 50 chunks of proposals (and, for k = 0.5, polar-method normals, an odd
    # count in the last chunks); many small calls, each seeded anew from the generator, give the same law as one
    # large call: KS against the numpy definition at 1e-3, n = 20 000 per side
    from scipy.stats import ks_2samp

    s, tau, n = 10, 1.3, 20_000
    noise = SumOfGamma(k, terms=s, temperature=tau)
    ref = _definition_numpy(k, s, tau, n, seed=73)
    g = gen(seed=71)
    one = noise.sample((n,), generator=g, dtype=torch.float64)
    many = torch.cat([noise.sample((7,), generator=g, dtype=torch.float64) for _ in range(n // 7 + 1)])[:n]
    assert ks_2samp(one.numpy(), ref).pvalue > 1e-3
    assert ks_2samp(many.numpy(), ref).pvalue > 1e-3


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("k", [5.0, 2.5, 0.5])
def test_compiled_sampler_draws_from_the_generator_only(k, dtype):
    # the same seed gives the same draws, in the dtype asked for; the generator advances by exactly the four words
    # that seed the kernel's own generator, and no other random state is used: reseeding numpy's and numba's own
    # generators changes nothing
    import numpy as np
    from numba import njit

    @njit
    def reseed_numba(seed):
        np.random.seed(seed)  # noqa: NPY002 - numba's own generator is seeded only this way

    noise, shape = SumOfGamma(k, terms=10), (10, 32, 40)
    g = gen(seed=81)
    a = noise.sample(shape, generator=g, dtype=dtype)
    np.random.seed(1)  # noqa: NPY002 - numpy's global generator, which the sampler must not use
    reseed_numba(2)
    b = noise.sample(shape, generator=gen(seed=81), dtype=dtype)
    assert a.dtype == dtype and a.shape == shape and torch.equal(a, b)
    replay = gen(seed=81)
    torch.empty(4, dtype=torch.int64).random_(generator=replay)
    assert torch.equal(g.get_state(), replay.get_state())
