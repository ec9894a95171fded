"""The compiled Fenchel-Young statistics (linear objective, CPU) against float64 formulas; the autograd node of a
loss with a hand-written gradient, by reduction; the sign check at its boundary."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers import FenchelYoungLoss, GridDAGShortestPath, PerturbedAdditive, TopKSubset
from colayers.losses import _fy_kernel
from colayers.losses._common import check_nonnegative, sign_tolerance, value_with_gradient
from colayers.oracles import CachedOracle, Oracle
from colayers.oracles.base import linear_objective
from colayers.perturb import Additive


def reference(eta, atoms, target, event_ndim):
    """The three statistics in float64 from their definitions."""
    eta, atoms, target = eta.double(), atoms.double(), target.double()
    dims = tuple(range(-event_ndim, 0))
    best, at_target = (eta * atoms).sum(dims), (eta * target).sum(dims)
    return (best - at_target).mean(0), (best.abs() + at_target.abs()).mean(0), atoms.mean(0) - target


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    num=st.integers(1, 6),
    batch=st.sampled_from([(), (0,), (1,), (5,), (2, 3)]),
    event=st.sampled_from([(1,), (7,), (3, 4)]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    tied=st.booleans(),
)
def test_kernel_statistics_equal_the_float64_definitions(seed, num, batch, event, dtype, tied):
    g = torch.Generator().manual_seed(seed)
    eta = torch.randn(num, *batch, *event, generator=g, dtype=dtype) * 3
    if tied:  # integer scores: exact sums, so the comparison below is exact too
        eta = eta.round()
    atoms = (torch.rand(num, *batch, *event, generator=g) > 0.5).to(dtype)
    target = (torch.rand(*batch, *event, generator=g) > 0.5).to(dtype)
    tolerance = float(torch.rand((), generator=g)) * 0.5
    value, scale, grad, lowest = _fy_kernel.linear_statistics(eta, atoms, target, len(event), tolerance)
    ref = reference(eta, atoms, target, len(event))
    # the lowest margin value + tolerance (1 + scale): check_nonnegative's rule, over the instances
    margins = ref[0] + tolerance * (1 + ref[1])
    want_lowest = float(margins.min()) if margins.numel() else float("inf")
    assert lowest == want_lowest or abs(lowest - want_lowest) <= 1e-9 * (1 + float(ref[1].abs().max()))
    size = ref[1].reshape(ref[1].shape + (1,) * len(event))  # the terms' size, per instance
    for got, want in zip((value, scale, grad), ref):
        assert got.dtype == dtype and got.shape == want.shape
        # the kernel sums in float64 and rounds once to dtype: within half an ulp of dtype of the float64 value,
        # plus the float64 rounding of sums in another order (at most ~E ulps of float64 of the terms' size)
        noise = 64 * torch.finfo(torch.float64).eps * (size if got.ndim > value.ndim else ref[1])
        tol = torch.finfo(dtype).eps / 2 * want.abs() + noise
        assert bool(((got.double() - want).abs() <= tol).all()), (got, want)
        if tied and dtype == torch.float64:  # integer scores: every sum is exact, so is the float64 result
            assert torch.equal(got, want)


def test_fy_loss_on_the_kernel_equals_the_loss_on_tensor_operations():
    # the same layer, noise and target: once on a linear oracle (kernel), once on the same oracle with g redefined
    # as the identity (not recognised as linear: tensor operations); values and gradients agree to rounding
    class SameG(GridDAGShortestPath):
        def g(self, y):
            return y

    for oracle in (GridDAGShortestPath(4, 5), SameG(4, 5)):
        assert linear_objective(oracle) is (type(oracle) is GridDAGShortestPath)
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(6, 31, generator=g)
    y = GridDAGShortestPath(4, 5)(torch.randn(6, 31, generator=g))
    out = []
    for oracle in (GridDAGShortestPath(4, 5), SameG(4, 5)):
        t = theta.clone().requires_grad_()
        loss = FenchelYoungLoss(PerturbedAdditive(oracle, epsilon=0.7, num_samples=5, seed=11), reduction="none")
        value = loss(t, y)
        value.sum().backward()
        out.append((value.detach(), t.grad))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-5, atol=1e-5)
    # the mean of 0/1 atoms minus ȳ in [-1, 1]: the kernel rounds once, torch twice (the mean, the difference)
    torch.testing.assert_close(out[0][1], out[1][1], rtol=0, atol=2 * torch.finfo(torch.float32).eps)


def test_linear_objective_sees_through_forwarding_wrappers_only():
    class WithOffset(TopKSubset):
        def h(self, y):
            return y.sum(-1)

    assert linear_objective(TopKSubset(2)) and linear_objective(CachedOracle(TopKSubset(2)))
    assert not linear_objective(WithOffset(2)) and not linear_objective(CachedOracle(WithOffset(2)))
    assert not linear_objective(type("Own", (Oracle,), {"objective": lambda self, t, y: (t * y).sum(-1)})())


def test_the_sign_check_run_by_the_kernel_names_the_failing_instance():
    # targets outside Y (accepted unchecked with allow_relaxed_targets, which skips membership, not the sign check):
    # ȳ = (2, 0, 0) scores 6 against a maximum of ≈ 3, so the loss of instances 1 and 3 is ≈ −3
    theta = torch.tensor([[3.0, 1.0, 2.0]]).repeat(4, 1)
    y = torch.tensor([[1.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 0.0, 1.0], [2.0, 0.0, 0.0]])
    loss = FenchelYoungLoss(PerturbedAdditive(TopKSubset(1), epsilon=1e-3, num_samples=3, seed=0),
                            allow_relaxed_targets=True)
    with pytest.raises(ValueError, match=r"is negative: -(3|2\.99\d*) at batch index \(1,\) \(2 of 4 instance"):
        loss(theta, y)
    assert float(loss(theta[[0, 2]], y[[0, 2]])) >= 0


def test_an_offset_objective_takes_the_general_path_with_its_offset():
    # h(y) = 0.25 * sum(y) on top-2: the estimate is (1/S) Σ_s F(η_s, y_s) − F(η_s, ȳ), F = ⟨η, y⟩ + h(y); with
    # two ones in every solution the offsets cancel, so the value equals the linear oracle's on the same noise
    class WithOffset(TopKSubset):
        def h(self, y):
            return 0.25 * y.sum(-1)

    g = torch.Generator().manual_seed(0)
    theta = torch.randn(4, 6, generator=g, dtype=torch.float64)
    y = TopKSubset(2)(torch.randn(4, 6, generator=g, dtype=torch.float64))
    values = [
        FenchelYoungLoss(PerturbedAdditive(o, epsilon=0.5, num_samples=4, seed=2), reduction="none")(theta, y)
        for o in (TopKSubset(2), WithOffset(2))
    ]
    torch.testing.assert_close(values[0], values[1])


def test_identity_jacobian_only_for_the_additive_map_itself():
    class Doubled(Additive):
        def apply(self, theta, noise, epsilon=None):
            return 2 * theta + (self.epsilon if epsilon is None else epsilon) * noise

    assert Additive(epsilon=0.3).identity_jacobian and not Doubled(epsilon=0.3).identity_jacobian
    # Doubled: ∂η/∂θ = 2I, so the gradient is 2 (1/S) Σ_s y_s − ȳ (autograd through apply)
    from colayers import Perturbed

    oracle = TopKSubset(2)
    g = torch.Generator().manual_seed(4)
    theta = torch.randn(3, 6, generator=g, dtype=torch.float64, requires_grad=True)
    y = oracle(torch.randn(3, 6, generator=g, dtype=torch.float64))
    layer = Perturbed(oracle, Doubled(epsilon=0.3), num_samples=5)
    FenchelYoungLoss(layer, reduction="sum")(theta, y, generator=torch.Generator().manual_seed(8)).backward()
    _, atoms = layer.sample(theta.detach(), generator=torch.Generator().manual_seed(8))
    torch.testing.assert_close(theta.grad, 2 * atoms.mean(0) - y)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("batch", [(4,), (2, 3), (0,)])
def test_value_with_gradient_reduces_once_and_scales_the_gradient(reduction, batch):
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(*batch, 5, generator=g, dtype=torch.float64, requires_grad=True)
    value = torch.randn(batch, generator=g, dtype=torch.float64)
    grad = torch.randn(*batch, 5, generator=g, dtype=torch.float64)
    out = value_with_gradient(theta, value, grad, reduction)
    expected = {"mean": value.mean(), "sum": value.sum(), "none": value}[reduction]
    torch.testing.assert_close(out, expected, equal_nan=True)
    cotangent = torch.randn(out.shape, generator=g, dtype=torch.float64) * 1.7
    out.backward(cotangent)
    count = max(1, value.numel())
    if reduction == "none":
        want = cotangent.unsqueeze(-1) * grad
    else:
        want = cotangent * grad / (count if reduction == "mean" else 1)
    torch.testing.assert_close(theta.grad, want)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_sign_check_boundary_is_the_stated_tolerance(dtype):
    c = sign_tolerance(dtype)
    scale = torch.tensor([0.0, 3.0, 100.0], dtype=dtype)
    inside = -(1 - 1e-3) * c * (1 + scale)  # just within the tolerance: accepted
    check_nonnegative("L", inside, scale, "hint")
    for i in range(3):
        outside = inside.clone()
        outside[i] = -(1 + 1e-2) * c * (1 + scale[i])  # just below it: refused, naming the instance
        with pytest.raises(ValueError, match=rf"at batch index \({i},\)"):
            check_nonnegative("L", outside, scale, "hint")
    check_nonnegative("L", torch.tensor([float("nan")], dtype=dtype), torch.zeros(1, dtype=dtype), "h")
    check_nonnegative("L", torch.zeros(0, dtype=dtype), torch.zeros(0, dtype=dtype), "h")


def test_a_seeded_layer_uses_one_generator_per_device_however_named():
    layer = PerturbedAdditive(TopKSubset(1), num_samples=2, seed=5)
    gen = layer.generator_for(torch.device("cpu"))
    assert layer.generator_for("cpu") is gen and layer.generator_for(torch.zeros(1).device) is gen
    fresh = PerturbedAdditive(TopKSubset(1), num_samples=2, seed=5)
    a = [layer(torch.zeros(3)) for _ in range(3)]
    b = [fresh(torch.zeros(3)) for _ in range(3)]
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
