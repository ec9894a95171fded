"""The score ∇_θ log p(η|θ) of each perturbation, checked against torch.distributions densities by autograd."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers.perturb import Additive, Gumbel, Multiplicative, Normal, Perturbation
from tests.conftest import DEVICES


def autograd_score(log_prob, theta, eta):
    theta = theta.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(log_prob(theta, eta).sum(), theta)
    return grad


REFERENCE = {
    # log p(η | θ) written with torch.distributions, independently of colayers
    "additive-normal": (
        lambda eps: Additive(Normal(), eps),
        lambda eps: lambda th, eta: torch.distributions.Normal(th, eps).log_prob(eta),
    ),
    "additive-gumbel": (
        lambda eps: Additive(Gumbel(), eps),
        lambda eps: lambda th, eta: torch.distributions.Gumbel(th, eps).log_prob(eta),
    ),
    # η = θ exp(εZ − ε²/2) with θ > 0 is log-normal with parameters (log θ − ε²/2, ε)
    "multiplicative-normal": (
        lambda eps: Multiplicative(Normal(), eps),
        lambda eps: lambda th, eta: torch.distributions.LogNormal(torch.log(th) - eps**2 / 2, eps).log_prob(eta),
    ),
}


@pytest.mark.parametrize("name", list(REFERENCE))
@settings(max_examples=25, deadline=None)
@given(eps=st.floats(0.05, 3.0), seed=st.integers(0, 2**16))
def test_score_matches_autograd_of_log_density(name, eps, seed):
    make, ref = REFERENCE[name]
    g = torch.Generator().manual_seed(seed)
    theta = torch.rand(3, 4, generator=g, dtype=torch.float64) * 2 + 0.1  # positive, for the log-normal form
    pert = make(eps)
    sample = pert.sample(theta, 6, generator=g)
    expected = torch.stack([autograd_score(ref(eps), theta, e) for e in sample.eta])
    assert torch.allclose(pert.score(theta, sample), expected, rtol=1e-6, atol=1e-8)


def test_multiplicative_score_for_negative_theta_and_zero():
    # for θ < 0 the law of -η is the law for -θ, so the score flips sign; at θ = 0 it is 0, not inf/NaN
    pert = Multiplicative(Normal(), 0.4)
    theta = torch.tensor([1.5, -1.5, 0.0], dtype=torch.float64)
    s = pert.sample(theta, 4, generator=torch.Generator().manual_seed(0))
    score = pert.score(theta, s)
    assert torch.isfinite(score).all() and (score[:, 2] == 0).all()
    assert torch.allclose(score[:, 1], -s.noise[:, 1] / (0.4 * 1.5))
    assert torch.allclose(score[:, 0], s.noise[:, 0] / (0.4 * 1.5))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_apply_reuses_noise_and_keeps_dtype(device, dtype):
    theta = torch.randn(2, 3, dtype=dtype, device=device)
    for pert in (Additive(Gumbel(), 0.7), Multiplicative(Normal(), 0.2)):
        s = pert.sample(theta, 4, generator=torch.Generator(device=device).manual_seed(1))
        assert s.eta.dtype == dtype and s.eta.device == theta.device
        assert torch.equal(pert.apply(theta, s.noise), s.eta)
        shifted = pert.apply(theta + 1.0, s.noise)  # same noise, another θ: what finite differences use
        assert shifted.shape == s.eta.shape


@pytest.mark.parametrize(
    "pert",
    [Additive(Normal(), 0.7), Additive(Gumbel(), 1.0), Multiplicative(Normal(), 0.4), Multiplicative(Gumbel(), 1.3)],
    ids=["add-normal", "add-gumbel", "mul-normal", "mul-gumbel"],
)
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16))
def test_score_mean_is_the_weighted_mean_of_scores(pert, seed):
    # score_mean skips forming the (S, *theta.shape) score; it must equal the weighted mean of score()
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn(3, 4, generator=g, dtype=torch.float64)
    theta[0, 1] = 0.0  # the multiplicative score is 0 there
    sample = pert.sample(theta, 5, generator=g)
    w = torch.randn(5, 3, generator=g, dtype=torch.float64)
    expected = (w[..., None] * pert.score(theta, sample)).mean(0)
    got = pert.score_mean(theta, sample, w)
    assert got.shape == theta.shape and torch.isfinite(got).all()
    assert torch.allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("make", [lambda e: Additive(Normal(), e), lambda e: Additive(Gumbel(), e),
                                  lambda e: Multiplicative(Normal(), e)], ids=["add-normal", "add-gumbel", "mult"])
@pytest.mark.parametrize("eps", [0.3, 1.0])
def test_vjp_sum_is_the_autograd_vjp_of_apply(make, eps):
    # Σ_s (∂η_s/∂θ)ᵀ c_s in closed form against autograd through apply, θ of both signs and zeros
    g = torch.Generator().manual_seed(0)
    pert = make(eps)
    theta = torch.randn(3, 5, generator=g, dtype=torch.float64)
    theta[0, 0] = 0.0
    noise = pert.noise.sample((4, 3, 5), generator=g, dtype=torch.float64)
    cot = torch.randn(4, 3, 5, generator=g, dtype=torch.float64)
    t = theta.clone().requires_grad_()
    (grad,) = torch.autograd.grad((pert.apply(t, noise) * cot).sum(), t)
    torch.testing.assert_close(pert.vjp_sum(theta, noise, cot), grad)


def test_vjp_sum_is_none_where_a_subclass_changes_eta():
    # a subclass with its own apply has no closed form here: the caller differentiates its apply by autograd
    class Shifted(Additive):
        def apply(self, theta, noise, epsilon=None):
            return 2.0 * theta + noise

    class Scaled(Multiplicative):
        def apply(self, theta, noise, epsilon=None):
            return theta.pow(3) * noise.exp()

    z = torch.randn(2, 3)
    for pert in (Shifted(), Scaled(), Perturbation(Normal())):  # the base class: no closed form
        assert pert.vjp_sum(torch.ones(3), z, torch.ones(2, 3)) is None
