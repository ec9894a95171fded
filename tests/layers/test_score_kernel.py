"""The compiled score-function VJP (additive Normal perturbation, CPU) against its float64 formula, against the
tensor operations it replaces, and the cases it must leave to them."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers import PerturbedAdditive, Pushforward, TopKSubset
from colayers.layers import _score_kernel, rules
from colayers.layers.rules import score_function_vjp
from colayers.perturb import Additive, Gumbel, PerturbedSample


def formula(values, grad_output, noise, epsilon, value_ndim, baseline):
    """(1/(S ε)) Σ_s w_s Z_s with w_s = <v_s, ȳ> − b_s (leave-one-out), in float64, one instance at a time."""
    num = values.shape[0]
    batch = grad_output.shape[: grad_output.ndim - value_ndim]
    n = 1
    for d in batch:
        n *= d
    if n == 0:
        return torch.zeros(noise.shape[1:], dtype=torch.float64)
    v = values.double().reshape(num, n, -1)
    gy = grad_output.double().reshape(v.shape[1], -1)
    z = noise.double().reshape(num, v.shape[1], -1)
    out = torch.zeros(z.shape[1:], dtype=torch.float64)
    for i in range(v.shape[1]):
        inner = torch.stack([(v[s, i] * gy[i]).sum() for s in range(num)])
        if baseline and num > 1:
            inner = torch.stack([inner[s] - (inner.sum() - inner[s]) / (num - 1) for s in range(num)])
        out[i] = sum(inner[s] * z[s, i] for s in range(num)) / (num * epsilon)
    return out.reshape(noise.shape[1:])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    num=st.integers(1, 6),
    batch=st.sampled_from([(), (0,), (1,), (4,), (2, 3)]),
    event=st.sampled_from([(1,), (5,), (2, 3)]),
    costs=st.booleans(),
    baseline=st.booleans(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_kernel_equals_the_float64_formula(seed, num, batch, event, costs, baseline, dtype):
    g = torch.Generator().manual_seed(seed)
    epsilon = 0.3 + torch.rand((), generator=g).item()
    noise = torch.randn(num, *batch, *event, generator=g, dtype=dtype)
    value_shape = () if costs else event  # scalar costs (value_ndim 0) or solutions of θ's event
    values = torch.randn((num, *batch, *value_shape), generator=g, dtype=dtype)
    grad_output = torch.randn((*batch, *value_shape), generator=g, dtype=dtype) * 2.5
    got = _score_kernel.additive_normal_vjp(values, grad_output, noise, epsilon, len(value_shape), baseline)
    want = formula(values, grad_output, noise, epsilon, len(value_shape), baseline)
    assert got.dtype == dtype and got.shape == noise.shape[1:]
    # float64 sums rounded once: within a few ulps of dtype of the terms' size
    def largest(t):
        return float(t.double().abs().max()) if t.numel() else 0.0

    size = float(values.double().abs().sum()) * largest(grad_output) * largest(noise) + 1
    torch.testing.assert_close(got.double(), want, rtol=0, atol=8 * torch.finfo(dtype).eps * size)


@pytest.mark.parametrize("baseline", [True, False])
def test_the_layers_gradient_on_the_kernel_equals_the_tensor_operations(baseline, monkeypatch):
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(6, 9, generator=g, dtype=torch.float64)
    cotangent = torch.randn(6, 9, generator=g, dtype=torch.float64)
    grads = []
    for on_kernel in (True, False):
        if not on_kernel:
            monkeypatch.setattr(rules, "_on_kernel", lambda *args: False)
        t = theta.clone().requires_grad_()
        layer = PerturbedAdditive(TopKSubset(3), epsilon=0.8, num_samples=7, baseline=baseline, seed=3)
        (layer(t) * cotangent).sum().backward()
        grads.append(t.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-12, atol=1e-12)


def test_pushforward_costs_on_the_kernel_equal_the_tensor_operations(monkeypatch):
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(5, 7, generator=g)
    grads = []
    for on_kernel in (True, False):
        if not on_kernel:
            monkeypatch.setattr(rules, "_on_kernel", lambda *args: False)
        t = theta.clone().requires_grad_()
        inner = PerturbedAdditive(TopKSubset(2), epsilon=0.5, num_samples=6, seed=4)
        layer = Pushforward(inner, lambda y: (y * torch.arange(7.0)).sum(-1))
        layer(t).sum().backward()
        grads.append(t.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-5)


def test_the_kernel_leaves_other_laws_groups_and_subclasses_to_tensor_operations():
    theta = torch.zeros(2, 3)
    values = torch.ones(4, 2, 3)
    z = torch.randn(4, 2, 3)
    plain = PerturbedSample(eta=z, noise=z)
    assert rules._on_kernel(theta, values, plain, Additive(epsilon=1.0), theta)
    assert not rules._on_kernel(theta, values, plain, Additive(Gumbel(), epsilon=1.0), theta)
    paired = PerturbedSample(eta=z, noise=z, groups=torch.tensor([0, 1, 0, 1]))
    assert not rules._on_kernel(theta, values, paired, Additive(epsilon=1.0, antithetic=True), theta)
    assert not rules._on_kernel(theta, values, plain, type("Own", (Additive,), {})(epsilon=1.0), theta)
    assert not rules._on_kernel(theta.half(), values.half(), PerturbedSample(eta=z.half(), noise=z.half()),
                                Additive(epsilon=1.0), theta.half())
    # with groups, the tensor path's leave-group-out baseline: the pair's partner is excluded
    got = score_function_vjp(theta, values * torch.arange(4.0).reshape(4, 1, 1), paired, Additive(epsilon=1.0),
                             torch.ones(2, 3), 1)
    inner = 3 * torch.arange(4.0)
    baseline = torch.stack([inner[[1, 3]].mean(), inner[[0, 2]].mean(), inner[[1, 3]].mean(), inner[[0, 2]].mean()])
    torch.testing.assert_close(got, ((inner - baseline).reshape(4, 1, 1) * z).mean(0))
