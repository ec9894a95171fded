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


def test_lazy_score_backward_equals_the_explicit_score_rule():
    # the perturbed layers form the score in the backward only (LazyScoreFunctionMean); the gradient must equal
    # score_function_vjp applied to the explicit score of the same samples
    from colayers import TopKSubset
    from colayers.layers.core import score_function_vjp

    g = torch.Generator().manual_seed(0)
    theta = torch.randn(4, 6, generator=g, dtype=torch.float64)
    dy = torch.randn(4, 6, generator=g, dtype=torch.float64)
    for layer in (
        PerturbedAdditive(TopKSubset(2), epsilon=0.5, num_samples=7),
        PerturbedMultiplicative(TopKSubset(2), epsilon=0.5, num_samples=7, noise=Gumbel()),
    ):
        t = theta.clone().requires_grad_(True)
        (layer(t, generator=torch.Generator().manual_seed(1)) * dy).sum().backward()
        sample, atoms = layer.sample(theta, generator=torch.Generator().manual_seed(1))
        expected = score_function_vjp(atoms, layer.perturbation.score(theta, sample), dy, 1, baseline=True)
        assert torch.allclose(t.grad, expected, rtol=1e-10, atol=1e-12)


def test_positional_apply_matches_stock_apply_and_functorch():
    # PositionalFunction.apply skips torch's signature binding; gradients must be those of the stock path,
    # and under torch.func transforms it must fall back to the stock path (which supports them)
    from colayers import IdentityRelaxation
    from colayers.layers.identity import StraightThrough

    theta = torch.tensor([0.5, 2.0, -1.0], requires_grad=True)
    y = IdentityRelaxation(ArgmaxOneHot(), negative=True)(theta)
    (y * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.equal(theta.grad, torch.tensor([-1.0, -2.0, -3.0]))
    assert type(y.grad_fn).__name__ == "StraightThroughBackward"
    grad = torch.func.grad(lambda t: (StraightThrough.apply(t, t.detach() * 2, False) * t.detach()).sum())(
        torch.tensor([1.0, -1.0])
    )
    assert torch.equal(grad, torch.tensor([1.0, -1.0]))


@pytest.mark.parametrize(
    "bad",
    [[1.0, 2.0, 3.0], torch.tensor([1, 2, 3]), torch.tensor([1.0, float("nan"), 0.0]), torch.zeros(4)],
    ids=["list", "int", "nan", "shape"],
)
@pytest.mark.parametrize("kind", ["identity", "blackbox"])
def test_direct_layers_report_bad_theta_like_check_theta(bad, kind):
    # IdentityRelaxation and Blackbox leave their checks to a validating stock oracle called on theta itself;
    # the errors must be the layer's own
    from colayers import Blackbox, IdentityRelaxation

    layer = IdentityRelaxation(ArgmaxOneHot(n=3)) if kind == "identity" else Blackbox(ArgmaxOneHot(n=3))
    with pytest.raises((TypeError, ValueError)) as expected:
        layer.check_theta(bad)
    with pytest.raises(expected.type) as got:
        layer(bad)
    assert str(got.value) == str(expected.value)


@pytest.mark.parametrize(
    "values",
    [[1.0, 2.0], [3e38, 3e38], [float("nan"), 1.0], [1.0, float("inf")], [float("-inf"), float("inf")], []],
    ids=["finite", "sum-overflows", "nan", "inf", "inf-minus-inf", "empty"],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_finite_check_agrees_with_check_finite(values, dtype):
    # the layers check theta with one sum; a sum that overflows (or is NaN) falls back to the full check
    from colayers._validation import check_finite
    from colayers.layers.core import check_finite_fast

    x = torch.tensor(values, dtype=dtype)
    try:
        check_finite("theta", x)
        expected = None
    except ValueError as err:
        expected = str(err)
    if expected is None:
        assert check_finite_fast("theta", x) is x
    else:
        with pytest.raises(ValueError) as got:
            check_finite_fast("theta", x)
        assert str(got.value) == expected


def test_custom_perturbation_sampling_and_score_are_used():
    # the fast paths (direct noise draw, score_mean) must not bypass a subclass's own sample/score
    from colayers import TopKSubset
    from colayers.layers import Perturbed
    from colayers.perturb import Additive, PerturbedSample

    calls = []

    class Antithetic(Additive):
        def sample(self, theta, num_samples=1, generator=None):
            calls.append("sample")
            half = self.draw_noise(theta, num_samples // 2, generator)
            z = torch.cat([half, -half])
            return PerturbedSample(eta=self.apply(theta, z), noise=z)

        def score(self, theta, sample):
            calls.append("score")
            return super().score(theta, sample)

    layer = Perturbed(TopKSubset(2), Antithetic(epsilon=0.5), num_samples=6)
    theta = torch.randn(3, 5, dtype=torch.float64, requires_grad=True)
    sample, _ = layer.sample(theta, generator=torch.Generator().manual_seed(0))
    assert torch.equal(sample.noise[:3], -sample.noise[3:])
    layer(theta, generator=torch.Generator().manual_seed(0)).sum().backward()
    assert calls.count("sample") == 2 and calls.count("score") == 1


def _layer_outputs_and_grads():
    """Outputs and gradients of every layer family on fixed scores, generators and incoming gradients."""
    from colayers import (
        IMLE,
        Blackbox,
        IdentityRelaxation,
        RegularizedFrankWolfe,
        SparseArgmax,
        TopKSubset,
    )

    oracle = TopKSubset(2)
    g = torch.Generator().manual_seed(0)
    theta0 = torch.randn(3, 5, generator=g, dtype=torch.float64)
    layers = [
        PerturbedAdditive(oracle, num_samples=4),
        PerturbedMultiplicative(oracle, num_samples=4),
        IMLE(oracle, num_samples=4),
        Blackbox(oracle),
        IdentityRelaxation(oracle),
        RegularizedFrankWolfe(oracle),
        SparseArgmax(),
    ]
    results = []
    for layer in layers:
        theta = theta0.clone().requires_grad_(True)
        # SparseArgmax is deterministic and refuses a generator
        gen = None if isinstance(layer, SparseArgmax) else torch.Generator().manual_seed(1)
        out = layer(theta, generator=gen)
        (out * torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=out.dtype)).sum().backward()
        results.append((type(layer).__name__, out.detach(), theta.grad))
    return results


def test_positional_function_falls_back_to_the_public_apply(monkeypatch):
    # PositionalFunction's fast path relies on private torch pieces, feature-detected once at import. With the
    # detection forced off, every layer must go through the public Function.apply and give identical results.
    from colayers.layers import core

    fast = _layer_outputs_and_grads()
    calls = []
    stock = torch.autograd.Function.__dict__["apply"].__func__

    def spy(cls, *args, **kwargs):
        calls.append(cls.__name__)
        return stock(cls, *args, **kwargs)

    monkeypatch.setattr(torch.autograd.Function, "apply", classmethod(spy))
    if core._unwrap_dead_wrappers is not None:  # the fast path is on with this torch: it bypasses the public apply
        _layer_outputs_and_grads()
        # the regularized layers' Functions are plain torch.autograd.Function: always the public apply
        assert [c for c in calls if c not in ("ActiveSetProjection", "Sparsemax")] == []
    monkeypatch.setattr(core, "_unwrap_dead_wrappers", None)
    slow = _layer_outputs_and_grads()
    assert len(calls) >= len(slow)  # every layer's autograd Function went through the public apply
    for (name, out_a, grad_a), (_, out_b, grad_b) in zip(fast, slow):
        assert torch.equal(out_a, out_b), name
        assert torch.equal(grad_a, grad_b), name


def test_fast_apply_detection_rejects_a_missing_or_changed_helper(monkeypatch):
    import torch._functorch.utils as functorch_utils

    from colayers.layers import core

    original = getattr(functorch_utils, "unwrap_dead_wrappers", None)
    if original is not None:
        # detected on this torch: the fast path is on and returns the helper
        assert core._detect_fast_apply() is original
    monkeypatch.delattr(functorch_utils, "unwrap_dead_wrappers", raising=False)
    assert core._detect_fast_apply() is None
    # a helper with another signature, or one that no longer returns the arguments unchanged, is rejected
    monkeypatch.setattr(functorch_utils, "unwrap_dead_wrappers", lambda args, level: args, raising=False)
    assert core._detect_fast_apply() is None
    monkeypatch.setattr(functorch_utils, "unwrap_dead_wrappers", lambda args: list(args)[:1], raising=False)
    assert core._detect_fast_apply() is None
    monkeypatch.delattr(torch._C, "_are_functorch_transforms_active")
    monkeypatch.setattr(functorch_utils, "unwrap_dead_wrappers", original or (lambda args: args), raising=False)
    assert core._detect_fast_apply() is None
