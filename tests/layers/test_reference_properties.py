r"""Exact properties of the estimators, checked with hypothesis on frozen noise.

* scale: for an oracle invariant under positive scaling, :math:`f(\theta + \varepsilon Z) = f(\theta/\varepsilon + Z)`,
  so with the same noise :math:`\hat\mu_\varepsilon(\theta) = \hat\mu_1(\theta/\varepsilon)` and the score VJP obeys
  :math:`\hat J_\varepsilon^\top v(\theta) = \hat J_1^\top v(\theta/\varepsilon)/\varepsilon`; the finite-difference
  VJP obeys :math:`g_{\varepsilon,\lambda}(\theta) = g_{1,\lambda/\varepsilon}(\theta/\varepsilon)/\varepsilon`;
* batching: a batch equals the loop over its instances with each instance's slice of the same noise,
  forward and backward;
* invariance: every solution of argmax / top-k / ranking sees a constant shift of θ equally, so the exact VJP
  rules (finite differences, Fenchel-Young, SparseMAP, sparsemax) give gradients orthogonal to 1;
* dtype and device: outputs and gradients keep θ's dtype (float16, bfloat16, float32, float64) and device;
* perturbed Fenchel-Young: ≥ 0 sample-wise on targets in Y, and (additive) its gradient is the derivative of
  its value with the noise frozen (central differences);
* SPO+ is convex along every line.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import colayers as cl
from colayers.perturb import Noise

from .reference_api import imle_output

DT = torch.float64
SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class FrozenNoise(Noise):
    """A 'noise' that returns a given tensor (the standard-Normal score −∇ log ρ(z) = z)."""

    def __init__(self, z: torch.Tensor) -> None:
        self.z = z

    def sample(self, shape, *, generator=None, device=None, dtype=torch.float32):
        assert tuple(shape) == tuple(self.z.shape), (shape, self.z.shape)
        return self.z.to(device=device, dtype=dtype)

    def grad_log_density(self, z):
        return -z


ORACLES = {
    "argmax": lambda: cl.ArgmaxOneHot(),
    "top2": lambda: cl.TopKSubset(2),
    "ranking": lambda: cl.Ranking(),
}
SIMPLEX_TYPE = list(ORACLES)

thetas = st.lists(st.floats(-3, 3, allow_nan=False, width=32), min_size=5, max_size=5).map(
    lambda xs: torch.tensor(xs, dtype=DT) + torch.arange(5, dtype=DT) * 1e-3  # no exact ties
)
epsilons = st.sampled_from([0.25, 0.5, 2.0, 3.0])


def _vjp(layer, theta, v):
    t = theta.clone().requires_grad_(True)
    out = layer(t)
    (out * v).sum().backward()
    return out.detach(), t.grad


@SETTINGS
@given(theta=thetas, eps=epsilons, name=st.sampled_from(SIMPLEX_TYPE), s=st.sampled_from([1, 3]),
       mult=st.booleans(), seed=st.integers(0, 2**16))
def test_score_function_layers_scale_with_epsilon(theta, eps, name, s, mult, seed):
    z = torch.randn((s, 5), generator=torch.Generator().manual_seed(seed), dtype=DT)
    v = torch.randn(5, generator=torch.Generator().manual_seed(seed + 1), dtype=DT)
    if mult:
        # multiplicative: f(theta * F) with F = exp(eps Z - eps^2/2) does not depend on scaling theta by c > 0,
        # and the score Z/(eps theta) scales as 1/c: mu(c theta) = mu(theta), J(c theta) = J(theta)/c
        make = lambda: cl.PerturbedMultiplicative(ORACLES[name](), epsilon=eps, num_samples=s, noise=FrozenNoise(z))
        mu_a, g_a = _vjp(make(), theta * eps, v)
        mu_b, g_b = _vjp(make(), theta, v)
    else:
        mu_a, g_a = _vjp(cl.PerturbedAdditive(ORACLES[name](), epsilon=eps, num_samples=s, noise=FrozenNoise(z)),
                         theta, v)
        mu_b, g_b = _vjp(cl.PerturbedAdditive(ORACLES[name](), epsilon=1.0, num_samples=s, noise=FrozenNoise(z)),
                         theta / eps, v)
    torch.testing.assert_close(mu_a, mu_b, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_a, g_b / eps, rtol=1e-9, atol=1e-12)


@SETTINGS
@given(theta=thetas, eps=epsilons, lam=st.sampled_from([0.3, 2.0, 7.0]), name=st.sampled_from(SIMPLEX_TYPE),
       s=st.sampled_from([1, 3]), two_sided=st.booleans(), seed=st.integers(0, 2**16))
def test_finite_difference_layers_scale_with_epsilon(theta, eps, lam, name, s, two_sided, seed):
    z = torch.randn((s, 5), generator=torch.Generator().manual_seed(seed), dtype=DT)
    v = torch.randn((s, 5), generator=torch.Generator().manual_seed(seed + 1), dtype=DT)
    a = cl.IMLE(ORACLES[name](), noise=FrozenNoise(z), epsilon=eps, lambda_=lam, num_samples=s, two_sided=two_sided,
                **imle_output(False))
    b = cl.IMLE(ORACLES[name](), noise=FrozenNoise(z), epsilon=1.0, lambda_=lam / eps, num_samples=s,
                two_sided=two_sided, **imle_output(False))
    y_a, g_a = _vjp(a, theta, v)
    y_b, g_b = _vjp(b, theta / eps, v)
    torch.testing.assert_close(y_a, y_b, rtol=0, atol=0)
    torch.testing.assert_close(g_a, g_b / eps, rtol=1e-9, atol=1e-12)


LAYERS = {
    "additive": lambda o, z: cl.PerturbedAdditive(o, epsilon=0.7, num_samples=z.shape[0], noise=FrozenNoise(z)),
    "multiplicative": lambda o, z: cl.PerturbedMultiplicative(o, epsilon=0.4, num_samples=z.shape[0],
                                                              noise=FrozenNoise(z)),
    "imle": lambda o, z: cl.IMLE(o, noise=FrozenNoise(z), epsilon=0.7, lambda_=1.3, num_samples=z.shape[0],
                                 output="samples"),
    "imle-mean": lambda o, z: cl.IMLE(o, noise=FrozenNoise(z), epsilon=0.7, lambda_=1.3, num_samples=z.shape[0],
                                      output="mean"),
    "imle-central": lambda o, z: cl.IMLE(o, noise=FrozenNoise(z), epsilon=0.7, lambda_=1.3, num_samples=z.shape[0],
                                         two_sided=True, output="samples"),
    "aimle-frozen": lambda o, z: cl.AIMLE(o, noise=FrozenNoise(z), epsilon=0.7, num_samples=z.shape[0], beta=0.5,
                                          adapt=False, output="samples"),
}


@SETTINGS
@given(kind=st.sampled_from(list(LAYERS)), name=st.sampled_from(SIMPLEX_TYPE), b=st.integers(1, 4),
       s=st.sampled_from([1, 3]), seed=st.integers(0, 2**16))
def test_batch_equals_the_loop_over_instances_with_frozen_noise(kind, name, b, s, seed):
    g = torch.Generator().manual_seed(seed)
    theta = torch.randn((b, 5), generator=g, dtype=DT) + 0.5  # positive-ish for the multiplicative layer
    z = torch.randn((s, b, 5), generator=g, dtype=DT)
    batched = LAYERS[kind](ORACLES[name](), z)
    out = batched(theta.clone())
    v = torch.randn(out.shape, generator=g, dtype=DT)
    out_b, grad_b = _vjp(batched, theta, v)
    for i in range(b):
        single = LAYERS[kind](ORACLES[name](), z[:, i])
        vi = v[:, i] if out.ndim == 3 else v[i]
        out_i, grad_i = _vjp(single, theta[i], vi)
        torch.testing.assert_close(out_b[:, i] if out.ndim == 3 else out_b[i], out_i, rtol=0, atol=1e-12)
        torch.testing.assert_close(grad_b[i], grad_i, rtol=1e-12, atol=1e-12)


@SETTINGS
@given(theta=thetas, name=st.sampled_from(SIMPLEX_TYPE), c=st.floats(-5, 5, allow_nan=False),
       seed=st.integers(0, 2**16))
def test_constant_shift_is_invisible_to_the_exact_rules(theta, name, c, seed):
    """Every y in Y has the same ⟨1, y⟩: the forward ignores θ + c·1 and exact VJP rules are orthogonal to 1."""
    z = torch.randn((3, 5), generator=torch.Generator().manual_seed(seed), dtype=DT)
    v = torch.randn(5, generator=torch.Generator().manual_seed(seed + 1), dtype=DT)
    layers = [
        cl.IMLE(ORACLES[name](), noise=FrozenNoise(z), epsilon=0.6, lambda_=1.7, num_samples=3, output="mean"),
        cl.AIMLE(ORACLES[name](), noise=FrozenNoise(z), epsilon=0.6, num_samples=3, beta=0.4, adapt=False,
                 two_sided=True, output="mean"),
        cl.Blackbox(ORACLES[name](), lambda_=2.3),
        cl.PerturbedAdditive(ORACLES[name](), epsilon=0.6, num_samples=3, noise=FrozenNoise(z)),
        cl.RegularizedFrankWolfe(ORACLES[name]()),
    ]
    if name == "argmax":
        layers += [cl.SparseArgmax(), cl.SoftArgmax(temperature=0.7)]
    for layer in layers:
        mu, grad = _vjp(layer, theta, v)
        mu_shift, _ = _vjp(layer, theta + c, v)
        torch.testing.assert_close(mu, mu_shift, rtol=0, atol=1e-6)
        if not isinstance(layer, cl.PerturbedAdditive):  # the score estimate is orthogonal to 1 only in expectation
            assert abs(float(grad.sum())) < 1e-9 * (1 + float(grad.abs().sum())), type(layer).__name__
    y_target = ORACLES[name]()(v)
    loss = cl.FenchelYoungLoss(cl.PerturbedAdditive(ORACLES[name](), epsilon=0.6, num_samples=3,
                                                    noise=FrozenNoise(z)))
    t = theta.clone().requires_grad_(True)
    loss(t, y_target).backward()
    assert abs(float(t.grad.sum())) < 1e-9


DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


def _all_layers(oracle_name):
    o = ORACLES[oracle_name]
    return {
        "PerturbedAdditive": cl.PerturbedAdditive(o(), epsilon=0.5, num_samples=3, seed=0),
        "PerturbedMultiplicative": cl.PerturbedMultiplicative(o(), epsilon=0.5, num_samples=3, seed=0),
        "IMLE": cl.IMLE(o(), epsilon=0.5, lambda_=2.0, num_samples=3, seed=0, **imle_output(False)),
        "AIMLE": cl.AIMLE(o(), epsilon=0.5, num_samples=3, seed=0, **imle_output(False)),
        "Blackbox": cl.Blackbox(o(), lambda_=2.0),
        "IdentityRelaxation": cl.IdentityRelaxation(o()),
        "RegularizedFrankWolfe": cl.RegularizedFrankWolfe(o()),
    }


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("layer_name", list(_all_layers("top2")))
def test_dtype_and_device_are_preserved(layer_name, dtype, device):
    layer = _all_layers("top2")[layer_name].to(device)
    theta = (torch.arange(10, dtype=torch.float64).reshape(2, 5) * 0.37 % 1.3 + 0.2).to(device, dtype)
    theta.requires_grad_(True)
    out = layer(theta)
    assert out.dtype == dtype and out.device == theta.device
    out.float().square().sum().backward()
    assert theta.grad.dtype == dtype and theta.grad.device == theta.device
    assert torch.isfinite(theta.grad.float()).all()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_losses_keep_dtype_and_device(dtype, device):
    theta = (torch.arange(10, dtype=torch.float64).reshape(2, 5) * 0.37 % 1.3 + 0.2).to(device, dtype)
    theta.requires_grad_(True)
    oracle = cl.TopKSubset(2)
    y = oracle(theta.detach().flip(-1))
    losses = [
        cl.FenchelYoungLoss(cl.PerturbedAdditive(oracle, epsilon=0.5, num_samples=3, seed=0))(theta, y),
        cl.SPOPlusLoss(oracle)(theta, theta.detach().flip(-1)),
        cl.StructuredSVMLoss(oracle)(theta, y),
    ]
    for value in losses:
        assert value.dtype == dtype and value.device == theta.device
        theta.grad = None
        value.backward()
        assert theta.grad.dtype == dtype and theta.grad.device == theta.device


@SETTINGS
@given(theta=thetas, name=st.sampled_from(SIMPLEX_TYPE), eps=epsilons, s=st.sampled_from([1, 4]),
       seed=st.integers(0, 2**16), target_seed=st.integers(0, 2**16))
def test_perturbed_fenchel_young_is_nonnegative_and_its_gradient_is_its_derivative(theta, name, eps, s, seed,
                                                                                   target_seed):
    z = torch.randn((s, 5), generator=torch.Generator().manual_seed(seed), dtype=DT)
    oracle = ORACLES[name]()
    y_target = oracle(torch.randn(5, generator=torch.Generator().manual_seed(target_seed), dtype=DT))
    loss = cl.FenchelYoungLoss(cl.PerturbedAdditive(oracle, epsilon=eps, num_samples=s, noise=FrozenNoise(z)))
    t = theta.clone().requires_grad_(True)
    value = loss(t, y_target)
    value.backward()
    assert value.detach().item() >= -1e-12
    h = 1e-6
    numeric = torch.zeros(5, dtype=DT)
    for i in range(5):
        e = torch.zeros(5, dtype=DT)
        e[i] = h
        numeric[i] = (loss(theta + e, y_target) - loss(theta - e, y_target)) / (2 * h)
    torch.testing.assert_close(t.grad, numeric, rtol=0, atol=1e-5)


@SETTINGS
@given(theta=thetas, direction=thetas, theta_true=thetas, name=st.sampled_from(SIMPLEX_TYPE),
       alpha=st.sampled_from([1.0, 2.0, 3.5]), a=st.floats(-3, 3), b=st.floats(-3, 3), w=st.floats(0, 1))
def test_spo_plus_is_convex_along_lines(theta, direction, theta_true, name, alpha, a, b, w):
    loss = cl.SPOPlusLoss(ORACLES[name](), alpha=alpha)

    def at(t):
        return float(loss(theta + t * direction, theta_true))

    mid = w * a + (1 - w) * b
    assert at(mid) <= w * at(a) + (1 - w) * at(b) + 1e-9 * (1 + abs(at(a)) + abs(at(b)))
    assert at(0.0) >= -1e-9 * (1 + float(theta_true.abs().sum()))  # SPO+ >= 0 (an upper bound of the regret)
