"""Batched oracle calls, validation, reproducibility, devices and dtypes, functional twins."""

from __future__ import annotations

import pytest
import torch

from colayers import (
    AIMLE,
    IMLE,
    ArgmaxOneHot,
    Blackbox,
    IdentityRelaxation,
    OracleError,
    Perturbed,
    PerturbedAdditive,
    PerturbedMultiplicative,
    Pushforward,
    RegularizedFrankWolfe,
    SoftArgmax,
    SparseArgmax,
    TopKSubset,
)
from colayers.layers import functional as F
from colayers.perturb import Additive, SumOfGamma
from tests.conftest import DEVICES

from .helpers import CountingOracle, WrongShapeOracle

S, B, N = 7, 4, 6


def _theta(device="cpu", dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, N, generator=g, dtype=dtype).to(device).requires_grad_(True)


@pytest.mark.parametrize("cls", [PerturbedAdditive, PerturbedMultiplicative])
def test_perturbed_layers_make_one_oracle_call_per_forward_and_none_backward(cls):
    oracle = CountingOracle()
    layer = cls(oracle, num_samples=S, seed=0)
    out = layer(_theta())
    assert (oracle.calls, oracle.instances) == (1, S * B)
    out.pow(2).sum().backward()
    assert oracle.calls == 1


@pytest.mark.parametrize("two_sided", [False, True])
@pytest.mark.parametrize(
    "make",
    [
        lambda o, ts: IMLE(o, num_samples=S, two_sided=ts, seed=0),
        lambda o, ts: AIMLE(o, num_samples=S, two_sided=ts, seed=0),
        lambda o, ts: Blackbox(o),
    ],
    ids=["imle", "aimle", "blackbox"],
)
def test_finite_difference_layers_make_one_oracle_call_per_backward(make, two_sided):
    oracle = CountingOracle()
    layer = make(oracle, two_sided)
    out = layer(_theta())
    assert oracle.calls == 1
    out.pow(2).sum().backward()
    assert oracle.calls == 2
    s = getattr(layer, "num_samples", 1)
    assert oracle.instances == s * B + (2 if layer.two_sided else 1) * s * B


def test_pushforward_makes_one_oracle_call():
    oracle = CountingOracle()
    push = Pushforward(PerturbedAdditive(oracle, num_samples=S, seed=0), lambda y: y[..., 0])
    push(_theta()).sum().backward()
    assert oracle.calls == 1


def test_validation_errors_name_the_argument():
    oracle = ArgmaxOneHot(n=N)
    bad = _theta().detach().clone()
    bad[1, 2] = float("nan")
    for layer in (
        PerturbedAdditive(oracle),
        IMLE(oracle),
        Blackbox(oracle),
        IdentityRelaxation(oracle),
        RegularizedFrankWolfe(oracle),
    ):
        with pytest.raises(ValueError, match="theta"):
            layer(bad)
        with pytest.raises(ValueError, match="theta"):
            layer(torch.zeros(B, N + 1))
    bad_inf = torch.zeros(B, N)
    bad_inf[0, 0] = float("inf")
    with pytest.raises(ValueError, match="theta"):
        SoftArgmax()(bad_inf)
    with pytest.raises(ValueError, match="theta"):
        SparseArgmax()(bad_inf)
    with pytest.raises(ValueError, match="epsilon"):
        PerturbedAdditive(oracle, epsilon=0.0)
    with pytest.raises(ValueError, match="epsilon"):
        PerturbedMultiplicative(oracle, epsilon=-1.0)
    with pytest.raises(ValueError, match="epsilon"):
        IMLE(oracle, epsilon=-0.1)
    for make in (lambda: IMLE(oracle, lambda_=0.0), lambda: Blackbox(oracle, lambda_=-2.0)):
        with pytest.raises(ValueError, match="lambda_"):
            make()
    with pytest.raises(ValueError, match="num_samples"):
        PerturbedAdditive(oracle, num_samples=0)
    with pytest.raises(ValueError, match="num_samples"):
        IMLE(oracle, num_samples=0)
    with pytest.raises(ValueError, match="temperature"):
        SoftArgmax(temperature=0.0)
    with pytest.raises(ValueError, match="perturbation"):
        Perturbed(oracle, Additive(SumOfGamma(2)))
    with pytest.raises(TypeError, match="oracle"):
        PerturbedAdditive(lambda t: t)
    with pytest.raises(TypeError, match="generator"):
        PerturbedAdditive(oracle)(_theta(), generator=5)
    with pytest.raises(ValueError, match="cost_fn"):
        Pushforward(PerturbedAdditive(oracle), lambda y: y)(_theta())


def test_oracle_returning_the_wrong_shape_is_caught():
    with pytest.raises(OracleError, match="shape"):
        PerturbedAdditive(WrongShapeOracle())(_theta())
    with pytest.raises(OracleError, match="shape"):
        IMLE(WrongShapeOracle())(_theta())


@pytest.mark.parametrize(
    "make",
    [
        lambda seed: PerturbedAdditive(TopKSubset(2), num_samples=3, seed=seed),
        lambda seed: PerturbedMultiplicative(TopKSubset(2), num_samples=3, seed=seed),
        lambda seed: IMLE(TopKSubset(2), num_samples=3, seed=seed),
    ],
    ids=["additive", "multiplicative", "imle"],
)
def test_seeded_layers_replay_the_same_sequence(make):
    theta = _theta().detach()
    a, b, c = make(0), make(0), make(1)
    seq_a = [a(theta) for _ in range(3)]
    seq_b = [b(theta) for _ in range(3)]
    assert all(torch.equal(x, y) for x, y in zip(seq_a, seq_b))
    assert not torch.equal(seq_a[0], seq_a[1])  # successive calls draw fresh noise
    assert not all(torch.equal(x, y) for x, y in zip(seq_a, [c(theta) for _ in range(3)]))
    # an explicit generator overrides the layer-owned one
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(a(theta, generator=g1), b(theta, generator=g2))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_layer_keeps_device_and_dtype(device, dtype):
    oracle = TopKSubset(2)
    layers = [
        PerturbedAdditive(oracle, num_samples=S, seed=0),
        PerturbedMultiplicative(oracle, num_samples=S, seed=0),
        IMLE(oracle, num_samples=S, seed=0),
        AIMLE(oracle, num_samples=S, seed=0).to(device),
        Blackbox(oracle),
        IdentityRelaxation(oracle),
        RegularizedFrankWolfe(oracle),
        SoftArgmax(),
        SparseArgmax(),
        Pushforward(PerturbedAdditive(oracle, num_samples=S, seed=0), lambda y: y[..., 0]),
    ]
    for layer in layers:
        theta = _theta(device, dtype)
        out = layer(theta)
        assert out.device.type == device and out.dtype == dtype, type(layer).__name__
        out.sum().backward() if out.ndim == 1 else (out * torch.randn_like(out)).sum().backward()
        assert theta.grad.device.type == device and theta.grad.dtype == dtype
        assert theta.grad.shape == theta.shape and torch.isfinite(theta.grad).all()


def test_batched_output_equals_a_per_instance_loop():
    theta = _theta(dtype=torch.float64).detach()
    for layer in (
        Blackbox(TopKSubset(2)),
        IdentityRelaxation(TopKSubset(2)),
        RegularizedFrankWolfe(TopKSubset(2)),
        SparseArgmax(),
    ):
        batched = layer(theta)
        looped = torch.stack([layer(row) for row in theta])
        assert torch.allclose(batched, looped, atol=1e-10), type(layer).__name__


def test_multiple_batch_dims_and_shapes():
    theta = torch.randn(2, 3, N, dtype=torch.float64, requires_grad=True)
    assert PerturbedAdditive(TopKSubset(2), num_samples=S, seed=0)(theta).shape == (2, 3, N)
    # one forward-mode switch on every stochastic layer: output="mean" (default) or "samples"
    for make in (
        lambda **kw: PerturbedAdditive(TopKSubset(2), num_samples=S, seed=0, **kw),
        lambda **kw: PerturbedMultiplicative(TopKSubset(2), num_samples=S, seed=0, **kw),
        lambda **kw: IMLE(TopKSubset(2), num_samples=S, seed=0, **kw),
        lambda **kw: AIMLE(TopKSubset(2), num_samples=S, seed=0, **kw),
    ):
        assert make()(theta).shape == (2, 3, N)
        assert make(output="mean")(theta).shape == (2, 3, N)
        samples = make(output="samples")(theta)
        assert samples.shape == (S, 2, 3, N)
        assert torch.equal(samples.mean(0), make()(theta))  # same seed, same draws: the mean of the samples
        with pytest.raises(ValueError, match="output"):
            make(output="sample")
    d = PerturbedAdditive(TopKSubset(2), num_samples=S, seed=0).distribution(theta)
    assert d.atoms.shape == (S, 2, 3, N) and d.event_ndim == 1


def test_identity_relaxation_passes_gradient_and_its_negative():
    theta = _theta()
    dy = torch.randn(B, N)
    (IdentityRelaxation(ArgmaxOneHot())(theta) * dy).sum().backward()
    assert torch.equal(theta.grad, dy)
    theta.grad = None
    (IdentityRelaxation(ArgmaxOneHot(), negative=True)(theta) * dy).sum().backward()
    assert torch.equal(theta.grad, -dy)


def test_functional_twins_match_modules():
    theta = _theta(dtype=torch.float64).detach()
    oracle = TopKSubset(2)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    assert torch.equal(
        F.perturbed_additive(theta, oracle, epsilon=0.5, num_samples=S, generator=g()),
        PerturbedAdditive(oracle, epsilon=0.5, num_samples=S)(theta, generator=g()),
    )
    assert torch.equal(
        F.perturbed_multiplicative(theta, oracle, epsilon=0.5, num_samples=S, generator=g()),
        PerturbedMultiplicative(oracle, epsilon=0.5, num_samples=S)(theta, generator=g()),
    )
    assert torch.equal(
        F.perturbed(theta, oracle, Additive(epsilon=0.5), num_samples=S, generator=g()),
        PerturbedAdditive(oracle, epsilon=0.5, num_samples=S)(theta, generator=g()),
    )
    assert torch.equal(
        F.imle(theta, oracle, num_samples=S, generator=g()), IMLE(oracle, num_samples=S)(theta, generator=g())
    )
    assert torch.equal(F.blackbox(theta, oracle), oracle(theta))
    assert torch.equal(F.identity_relaxation(theta, oracle), oracle(theta))
    assert torch.allclose(F.soft_argmax(theta, temperature=0.5), torch.softmax(theta / 0.5, -1))
    assert torch.allclose(F.sparse_argmax(theta), SparseArgmax()(theta))
    assert torch.allclose(F.regularized_frank_wolfe(theta, oracle), RegularizedFrankWolfe(oracle)(theta))
    layer = PerturbedAdditive(oracle, epsilon=0.5, num_samples=S)
    assert torch.equal(
        F.pushforward(theta, layer, lambda y: y[..., 0], generator=g()), layer(theta, generator=g())[..., 0]
    )


def test_omega_values():
    mu = torch.tensor([[0.5, 0.5, 0.0]])
    expected = torch.tensor([2.0 * torch.log(torch.tensor(0.5)).item()])
    assert torch.allclose(SoftArgmax(temperature=2.0).omega(mu), expected)
    assert torch.allclose(RegularizedFrankWolfe(ArgmaxOneHot()).omega(mu), torch.tensor([0.25]))


@pytest.mark.parametrize(
    "make",
    [
        lambda o: IMLE(o, None, 1.0),
        lambda o: AIMLE(o, None, 1.0),
        lambda o: Blackbox(o, 5.0),
        lambda o: PerturbedAdditive(o, 0.5),
        lambda o: PerturbedMultiplicative(o, 0.5),
        lambda o: Perturbed(o, Additive(epsilon=0.5), 5),
        lambda o: IdentityRelaxation(o, True),
        lambda o: RegularizedFrankWolfe(o, 10),
        lambda o: SoftArgmax(2.0),
        lambda o: F.imle(torch.zeros(3), o, None),
        lambda o: F.perturbed_additive(torch.zeros(3), o, 0.5),
        lambda o: F.perturbed_multiplicative(torch.ones(3), o, 0.5),
        lambda o: F.perturbed(torch.zeros(3), o, Additive(epsilon=0.5), 5),
        lambda o: F.blackbox(torch.zeros(3), o, 5.0),
        lambda o: F.identity_relaxation(torch.zeros(3), o, True),
        lambda o: F.soft_argmax(torch.zeros(3), 2.0),
        lambda o: F.regularized_frank_wolfe(torch.zeros(3), o, 10),
    ],
)
def test_settings_after_the_oracle_are_keyword_only(make):
    # IMLE(oracle, noise, epsilon, lambda_, ...) and AIMLE(oracle, noise, epsilon, num_samples, ...) used to read the
    # same positions differently (and the presets took (oracle, epsilon, num_samples, noise)): positional settings
    # are now refused rather than silently taken for another argument
    with pytest.raises(TypeError, match="positional"):
        make(ArgmaxOneHot())
