"""Regression checks for bugs other libraries shipped."""

from __future__ import annotations

import math

import pytest
import torch

from colayers import ArgmaxOneHot, PerturbedAdditive, PerturbedMultiplicative
from colayers.perturb import Gumbel

from .helpers import jacobian, softmax_jacobian


@pytest.mark.parametrize("num_samples", [500, 5000])
def test_perturbed_jacobian_does_not_scale_with_num_samples(num_samples):
    theta = torch.tensor([0.3, -0.5, 1.0, 0.0], dtype=torch.float64)
    layer = PerturbedAdditive(ArgmaxOneHot(), epsilon=1.0, num_samples=num_samples, noise=Gumbel())
    g = torch.Generator().manual_seed(3)
    jac = jacobian(lambda t, layer=layer, g=g: layer(t, generator=g), theta)
    exact = softmax_jacobian(theta, 1.0)
    # a Jacobian summed (not averaged) over samples would be num_samples times too large; the MC error of the
    # averaged estimate is <= 5 / sqrt(S) per entry (5 standard deviations, see test_closed_forms)
    assert (jac - exact).abs().max() < 5 / math.sqrt(num_samples)
    ratio = float(jac.norm() / exact.norm())
    assert 0.6 < ratio < 1.6


def test_multiplicative_perturbation_keeps_mean_theta():
    eps, s = 0.5, 40000
    theta = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    layer = PerturbedMultiplicative(ArgmaxOneHot(), epsilon=eps, num_samples=s)
    sample, _ = layer.sample(theta, generator=torch.Generator().manual_seed(0))
    # eta = theta * LogNormal(-eps^2/2, eps): mean theta, std |theta| sqrt(exp(eps^2) - 1); 5 standard errors
    tol = 5 * theta.abs() * math.sqrt(math.exp(eps**2) - 1) / math.sqrt(s)
    assert ((sample.eta.mean(0) - theta).abs() < tol).all()
    # without the -eps^2/2 shift the mean would be theta * exp(eps^2/2), far outside the tolerance
    assert ((theta * math.exp(eps**2 / 2) - theta).abs() > 3 * tol).all()


def test_multiplicative_layer_accepts_zeros_in_theta():
    theta = torch.tensor([[0.0, 1.0, 0.5, 0.0], [2.0, 0.0, 0.0, 0.0]], requires_grad=True)
    layer = PerturbedMultiplicative(ArgmaxOneHot(), epsilon=0.5, num_samples=50, seed=0)
    mu = layer(theta)
    assert torch.isfinite(mu).all() and torch.allclose(mu.sum(-1), torch.ones(2))
    (mu * torch.tensor([1.0, -1.0, 2.0, 0.5])).sum().backward()
    assert torch.isfinite(theta.grad).all()
    # a zero score carries no information about theta_i: those coordinates get no gradient
    assert (theta.grad[theta.detach() == 0] == 0).all()
    assert theta.grad[0, 1] != 0


def test_leave_one_out_baseline_lowers_error_against_closed_form():
    # one dominant coordinate: without a baseline y_0 ~ 1 multiplies pure score noise on every row
    theta = torch.tensor([2.0, 0.0, -1.0, 0.0], dtype=torch.float64)
    exact = softmax_jacobian(theta, 1.0)
    errors = {}
    for baseline in (True, False):
        layer = PerturbedAdditive(ArgmaxOneHot(), epsilon=1.0, num_samples=20, noise=Gumbel(), baseline=baseline)
        g = torch.Generator().manual_seed(7)
        fn = lambda t, layer=layer, g=g: layer(t, generator=g)  # noqa: E731
        sq = [((jacobian(fn, theta) - exact) ** 2).sum() for _ in range(100)]
        errors[baseline] = float(torch.stack(sq).mean())
    # the MSE over 100 repetitions has a relative std of about sqrt(2/100) ~ 0.14; the observed ratio is ~0.47,
    # so asking for < 0.7 leaves a margin of more than two such standard deviations on each side
    assert errors[True] < 0.7 * errors[False]


def test_score_function_backward_equals_the_formula_written_out():
    # the perturbed layers never form the (S, *theta.shape) score; their gradient must equal the estimator written
    # out here by hand from the same samples: (1/S) sum_s <y_s - b_s, dy> score_s with b_s the mean of the others
    # (output="mean"), and sum_s <y_s - b_s, dy_s> score_s (output="samples"). The scores come from
    # Perturbation.score, which tests/perturb checks against torch.distributions densities.
    from colayers import TopKSubset

    g = torch.Generator().manual_seed(0)
    theta = torch.randn(4, 6, generator=g, dtype=torch.float64)
    S = 7
    for output in ("mean", "samples"):
        dy = torch.randn((4, 6) if output == "mean" else (S, 4, 6), generator=g, dtype=torch.float64)
        for layer in (
            PerturbedAdditive(TopKSubset(2), epsilon=0.5, num_samples=S, output=output),
            PerturbedMultiplicative(TopKSubset(2), epsilon=0.5, num_samples=S, noise=Gumbel(), output=output),
        ):
            t = theta.clone().requires_grad_(True)
            (layer(t, generator=torch.Generator().manual_seed(1)) * dy).sum().backward()
            sample, atoms = layer.sample(theta, generator=torch.Generator().manual_seed(1))
            score = layer.perturbation.score(theta, sample)
            expected = torch.zeros_like(theta)
            for s in range(S):
                others = torch.cat([atoms[:s], atoms[s + 1 :]]).mean(0)
                dy_s = dy / S if output == "mean" else dy[s]
                expected += ((atoms[s] - others) * dy_s).sum(-1, keepdim=True) * score[s]
            assert torch.allclose(t.grad, expected, rtol=1e-10, atol=1e-12), (output, type(layer).__name__)


def test_identity_relaxation_negative_passes_minus_the_gradient():
    from colayers import IdentityRelaxation

    theta = torch.tensor([0.5, 2.0, -1.0], requires_grad=True)
    y = IdentityRelaxation(ArgmaxOneHot(), negative=True)(theta)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(theta.grad, torch.tensor([-1.0, -2.0, -3.0]))


@pytest.mark.parametrize(
    "bad",
    [[1.0, 2.0, 3.0], torch.tensor([1, 2, 3]), torch.tensor([1.0, float("nan"), 0.0]), torch.zeros(4)],
    ids=["list", "int", "nan", "shape"],
)
@pytest.mark.parametrize("kind", ["identity", "blackbox", "imle", "additive"])
def test_layers_report_bad_theta_like_check_theta(bad, kind):
    # theta is checked once, by the layer, whatever the layer: the errors must be the layer's own
    from colayers import IMLE, Blackbox, IdentityRelaxation

    oracle = ArgmaxOneHot(n=3)
    layer = {
        "identity": lambda: IdentityRelaxation(oracle),
        "blackbox": lambda: Blackbox(oracle),
        "imle": lambda: IMLE(oracle, seed=0),
        "additive": lambda: PerturbedAdditive(oracle, seed=0),
    }[kind]()
    with pytest.raises((TypeError, ValueError)) as expected:
        layer.check_theta(bad)
    with pytest.raises(expected.type) as got:
        layer(bad)
    assert str(got.value) == str(expected.value)


def test_custom_sampler_is_used_and_must_declare_its_dependence():
    # a subclass's own sample/score are used (no shortcut bypasses them); a sampler of undeclared dependence is
    # refused with the leave-one-out baseline (which would be biased for dependent samples, e.g. antithetic pairs)
    from colayers import TopKSubset
    from colayers.layers import Perturbed, ScoreFunctionRule
    from colayers.perturb import Additive, PerturbedSample

    calls = []

    class Antithetic(Additive):  # overrides sample() without saying whether its samples are independent
        def sample(self, theta, num_samples=1, generator=None):
            calls.append("sample")
            half = self.draw_noise(theta, num_samples // 2, generator)
            z = torch.cat([half, -half])
            return PerturbedSample(eta=self.apply(theta, z), noise=z)

        def score(self, theta, sample):
            calls.append("score")
            return super().score(theta, sample)

    class Paired(Antithetic):  # the same samples, with their pairs declared
        def sample(self, theta, num_samples=1, generator=None):
            s = super().sample(theta, num_samples, generator)
            return PerturbedSample(s.eta, s.noise, groups=torch.arange(num_samples // 2).repeat(2))

    theta = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    assert Antithetic.iid_samples is None and Additive.iid_samples is True
    with pytest.raises(TypeError, match="iid_samples"):
        Perturbed(TopKSubset(2), Antithetic(epsilon=0.5), num_samples=6)(theta)
    # without a baseline the estimator is unbiased whatever the dependence: allowed
    Perturbed(TopKSubset(2), Antithetic(epsilon=0.5), rule=ScoreFunctionRule(baseline=False), num_samples=6)(theta)
    calls.clear()
    layer = Perturbed(TopKSubset(2), Paired(epsilon=0.5), num_samples=6)
    sample, _ = layer.sample(theta, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample.noise[:3], -sample.noise[3:])
    layer(theta, generator=torch.Generator().manual_seed(0)).sum().backward()
    assert calls.count("sample") == 2 and calls.count("score") == 1
