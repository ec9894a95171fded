"""Fenchel-Young losses: closed forms (CE, sparsemax loss), non-negativity, zero set, perturbed estimators."""

import itertools
import math
import types

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers import (
    ArgmaxOneHot,
    FenchelYoungLoss,
    GridDAGShortestPath,
    Perturbed,
    PerturbedAdditive,
    PerturbedMultiplicative,
    RegularizedFrankWolfe,
    SoftArgmax,
    SparseArgmax,
    TopKSubset,
)
from colayers.perturb import Gumbel

DEVICES = [
    "cpu",
    pytest.param(
        "cuda", marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]
    ),
]
seeds = st.integers(0, 2**31 - 1)


def random_simplex(g, shape):
    return torch.softmax(3 * torch.randn(shape, generator=g, dtype=torch.float64), -1)


# -- regularized layers -------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(seed=seeds, temperature=st.floats(0.1, 5.0))
def test_softargmax_is_cross_entropy_minus_target_entropy(seed, temperature):
    g = torch.Generator().manual_seed(seed)
    theta = 3 * torch.randn(4, 5, generator=g, dtype=torch.float64)
    target = random_simplex(g, (4, 5))
    loss = FenchelYoungLoss(SoftArgmax(temperature=temperature), reduction="none", allow_relaxed_targets=True)
    value = loss(theta, target)
    ce = -(target * torch.log_softmax(theta / temperature, -1)).sum(-1)
    entropy = -(target * torch.log(target)).sum(-1)
    torch.testing.assert_close(value, temperature * (ce - entropy))


def test_softargmax_one_hot_is_cross_entropy():
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(16, 7, generator=g)
    labels = torch.randint(7, (16,), generator=g)
    value = FenchelYoungLoss(SoftArgmax())(theta, F.one_hot(labels, 7).float())
    torch.testing.assert_close(value, F.cross_entropy(theta, labels))


def sparsemax_loss_reference(z, q):
    """Martins & Astudillo (ICML 2016), eq. (18): −⟨z,q⟩ + ½Σ_{j∈S(z)}(z_j² − τ(z)²) + ½‖q‖²."""
    z_sorted = torch.sort(z, dim=-1, descending=True).values
    k = torch.arange(1, z.shape[-1] + 1, dtype=z.dtype)
    cssv = z_sorted.cumsum(-1)
    support_size = (1 + k * z_sorted > cssv).sum(-1, keepdim=True)
    tau = (cssv.gather(-1, support_size - 1) - 1) / support_size
    in_support = z > tau
    quad = torch.where(in_support, z**2 - tau**2, torch.zeros_like(z)).sum(-1)
    return -(z * q).sum(-1) + 0.5 * quad + 0.5 * (q * q).sum(-1)


@settings(max_examples=40, deadline=None)
@given(seed=seeds, scale=st.floats(0.1, 10.0))
def test_sparseargmax_is_the_sparsemax_loss(seed, scale):
    g = torch.Generator().manual_seed(seed)
    theta = scale * torch.randn(4, 6, generator=g, dtype=torch.float64)
    target = random_simplex(g, (4, 6))
    value = FenchelYoungLoss(SparseArgmax(), reduction="none", allow_relaxed_targets=True)(theta, target)
    torch.testing.assert_close(value, sparsemax_loss_reference(theta, target))


@settings(max_examples=30, deadline=None)
@given(seed=seeds, scale=st.floats(0.01, 20.0), which=st.sampled_from(["soft", "sparse", "fw"]))
def test_regularized_fy_nonnegative_and_zero_exactly_at_target(seed, scale, which):
    g = torch.Generator().manual_seed(seed)
    theta = scale * torch.randn(6, 5, generator=g, dtype=torch.float64)
    if which == "soft":
        layer, strong = SoftArgmax(), "l1"  # Ω = Σ μ log μ is 1-strongly convex in ‖·‖₁ (Pinsker)
        y = ArgmaxOneHot()(torch.randn(6, 5, generator=g, dtype=torch.float64))
    elif which == "sparse":
        layer, strong = SparseArgmax(), "l2"  # Ω = ½‖μ‖² is 1-strongly convex in ‖·‖₂
        y = ArgmaxOneHot()(torch.randn(6, 5, generator=g, dtype=torch.float64))
    else:
        layer, strong = RegularizedFrankWolfe(TopKSubset(2), max_iter=200), "l2"
        y = TopKSubset(2)(torch.randn(6, 5, generator=g, dtype=torch.float64))
    loss = FenchelYoungLoss(layer, reduction="none")
    value = loss(theta, y)
    mu = layer(theta)
    gap = (mu - y).abs().sum(-1) ** 2 if strong == "l1" else ((mu - y) ** 2).sum(-1)
    tol = 1e-6 if which == "fw" else 1e-12
    # FY ≥ ½‖μ(θ) − ȳ‖² ≥ 0 (strong convexity): so FY = 0 only where μ(θ) = ȳ ...
    assert bool((value >= 0.5 * gap - tol).all())
    # ... and at a target equal to μ(θ), FY = 0 (a relaxed target in conv Y)
    at_mu = FenchelYoungLoss(layer, reduction="none", allow_relaxed_targets=True)(theta, mu)
    assert bool((at_mu.abs() <= 1e-6 if which == "fw" else at_mu.abs() <= 1e-10).all())


def test_sparseargmax_zero_loss_on_a_vertex():
    theta = torch.tensor([[3.0, 1.0, 0.5], [0.0, 0.2, 1.5]], dtype=torch.float64)  # gap ≥ 1: sparsemax is one-hot
    y = ArgmaxOneHot()(theta)
    torch.testing.assert_close(SparseArgmax()(theta), y)
    assert bool((FenchelYoungLoss(SparseArgmax(), reduction="none")(theta, y) == 0).all())


@pytest.mark.parametrize("layer", [SoftArgmax(temperature=0.5), SparseArgmax()], ids=["softargmax", "sparseargmax"])
def test_regularized_gradcheck_and_gradient(layer):
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    target = random_simplex(g, (3, 5))
    loss = FenchelYoungLoss(layer, allow_relaxed_targets=True, reduction="sum")
    assert torch.autograd.gradcheck(lambda t: loss(t, target), (theta,))
    loss(theta, target).backward()
    torch.testing.assert_close(theta.grad, layer(theta.detach()) - target)


# -- perturbed layers ---------------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=seeds, scale=st.floats(0.01, 10.0), kind=st.sampled_from(["add", "add-gumbel", "mul"]))
def test_perturbed_fy_nonnegative_for_targets_in_y(seed, scale, kind):
    g = torch.Generator().manual_seed(seed)
    oracle = GridDAGShortestPath(3, 4)
    theta = scale * torch.randn(5, oracle.num_edges, generator=g, dtype=torch.float64)
    y = oracle(torch.randn(5, oracle.num_edges, generator=g, dtype=torch.float64))
    if kind == "add":
        layer = PerturbedAdditive(oracle, epsilon=0.5, num_samples=4)
    elif kind == "add-gumbel":
        layer = PerturbedAdditive(oracle, epsilon=0.5, num_samples=4, noise=Gumbel())
    else:
        layer = PerturbedMultiplicative(oracle, epsilon=0.5, num_samples=4)
    value = FenchelYoungLoss(layer, reduction="none")(theta, y, generator=g)
    # each sample: ⟨η_s, y_s⟩ ≥ ⟨η_s, ȳ⟩ because y_s maximizes ⟨η_s, ·⟩ over Y ∋ ȳ
    assert bool((value >= -1e-12).all())


@pytest.mark.parametrize("kind", ["additive", "multiplicative"])
def test_perturbed_value_and_gradient_use_the_same_samples(kind):
    g0 = torch.Generator().manual_seed(0)
    oracle = TopKSubset(2)
    theta = torch.randn(3, 6, generator=g0, dtype=torch.float64, requires_grad=True)
    y = oracle(torch.randn(3, 6, generator=g0, dtype=torch.float64))
    cls = PerturbedAdditive if kind == "additive" else PerturbedMultiplicative
    layer = cls(oracle, epsilon=0.3, num_samples=7)
    loss = FenchelYoungLoss(layer, reduction="sum")
    loss(theta, y, generator=torch.Generator().manual_seed(42)).backward()
    sample, atoms = layer.sample(theta.detach(), generator=torch.Generator().manual_seed(42))
    if kind == "additive":
        expected_grad = atoms.mean(0) - y  # μ̂(θ) − ȳ
    else:
        factor = torch.exp(0.3 * sample.noise - 0.3**2 / 2)  # as InferOpt: Σ y_s ⊙ e^{εZ_s − ε²/2}/S − ȳ
        expected_grad = (atoms * factor).mean(0) - y
    torch.testing.assert_close(theta.grad, expected_grad)
    expected_value = ((sample.eta * (atoms - y)).sum(-1)).mean(0).sum()
    value = loss(theta.detach(), y, generator=torch.Generator().manual_seed(42))
    torch.testing.assert_close(value, expected_value)


def test_perturbed_gumbel_converges_to_softmax_closed_form():
    eps, num_samples = 0.5, 20000
    theta = torch.tensor([[0.3, -0.2, 0.9, 0.0]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[0.0, 1.0, 0.0, 0.0]], dtype=torch.float64)
    layer = PerturbedAdditive(ArgmaxOneHot(), epsilon=eps, num_samples=num_samples, noise=Gumbel())
    loss = FenchelYoungLoss(layer, reduction="sum")
    value = loss(theta, y, generator=torch.Generator().manual_seed(0))
    value.backward()
    # Gradient: each coordinate of μ̂ is a mean of S Bernoulli draws, std ≤ 0.5/√S ≈ 0.0035; 5σ ≈ 0.018.
    torch.testing.assert_close(theta.grad, torch.softmax(theta.detach() / eps, -1) - y, atol=0.018, rtol=0)
    # Value: E = ε·logsumexp(θ/ε) − ⟨θ, ȳ⟩ (the Gumbel mean εγ cancels for one-hot ȳ).
    # Tolerance 5·sd/√S with sd the sample standard deviation of the per-sample terms ⟨η_s, y_s − ȳ⟩.
    sample, atoms = layer.sample(theta.detach(), generator=torch.Generator().manual_seed(0))
    per_sample = (sample.eta * (atoms - y)).sum(-1)
    tol = 5 * per_sample.std().item() / math.sqrt(num_samples)
    closed = eps * torch.logsumexp(theta.detach() / eps, -1) - (theta.detach() * y).sum(-1)
    assert abs(value.item() - closed.item()) < tol


def test_perturbed_normal_value_is_unbiased_for_expected_max():
    # E[max_i (θ_i + εZ_i)] − θ_ȳ, by a large independent Monte Carlo run (no oracle involved)
    eps, num_samples = 1.0, 20000
    theta = torch.tensor([[0.5, 0.0, -0.5]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    layer = PerturbedAdditive(ArgmaxOneHot(), epsilon=eps, num_samples=num_samples)
    value = FenchelYoungLoss(layer)(theta, y, generator=torch.Generator().manual_seed(1)).item()
    z = torch.randn(200000, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    reference_terms = (theta + eps * z).max(-1).values - theta[0, 0]
    # the FY estimate has per-sample sd ≤ that of max(θ + εZ) − θ_ȳ − εZ_ȳ, below 2 here; 5·2/√S ≈ 0.07
    assert abs(value - reference_terms.mean().item()) < 5 * 2 / math.sqrt(num_samples)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reductions_device_dtype(device, dtype):
    g = torch.Generator(device=device).manual_seed(0)
    theta = torch.randn(2, 3, 5, dtype=dtype, device=device, generator=g).requires_grad_()
    y = ArgmaxOneHot()(torch.randn(2, 3, 5, dtype=dtype, device=device, generator=g))
    for layer in (SoftArgmax(), SparseArgmax(), PerturbedAdditive(ArgmaxOneHot(), num_samples=3, seed=0)):
        none = FenchelYoungLoss(layer, reduction="none")(theta, y)
        assert none.shape == (2, 3) and none.dtype == dtype and none.device.type == device
        total = FenchelYoungLoss(layer, reduction="sum")(theta, y)
        mean = FenchelYoungLoss(layer, reduction="mean")(theta, y)
        if not isinstance(layer, PerturbedAdditive):
            torch.testing.assert_close(total, none.sum())
            torch.testing.assert_close(mean, none.mean())
        mean.backward()
        assert theta.grad.device.type == device and theta.grad.dtype == dtype
        theta.grad = None


def test_layers_without_omega_or_perturbation_raise_type_error_naming_both():
    class OracleOnly(torch.nn.Module):
        oracle = ArgmaxOneHot()

    for layer in (OracleOnly(), torch.nn.Linear(3, 3)):
        with pytest.raises(TypeError, match=r"needs a layer with a regularizer omega\(mu\).*\.perturbation and an "
                           r"\.oracle.*got (OracleOnly|Linear), which has neither"):
            FenchelYoungLoss(layer)


def _top2_of_5():
    return torch.tensor([[float(i in c) for i in range(5)] for c in itertools.combinations(range(5), 2)])


class _TableNoise:
    """A user's perturbation, not a colayers class: η = 2θ + Z with Z read from a fixed table (no RNG)."""

    def __init__(self, table):
        self.table = table

    def sample(self, theta, num_samples, generator=None):
        z = self.table[:num_samples].expand(num_samples, *theta.shape)
        return types.SimpleNamespace(eta=self.apply(theta, z), noise=z)

    def apply(self, theta, noise):
        return 2 * theta + noise


class _UserPerturbedLayer(torch.nn.Module):
    """A user's perturbed layer: only the .oracle, .perturbation and .num_samples capabilities."""

    def __init__(self, oracle, perturbation, num_samples):
        super().__init__()
        self.oracle, self.perturbation, self.num_samples = oracle, perturbation, num_samples


class _UserSoftArgmax(torch.nn.Module):
    """A user's regularized layer: softmax(θ/T) with omega = T Σ μ log μ, and no oracle."""

    def __init__(self, temperature):
        super().__init__()
        self.temperature = temperature

    def forward(self, theta):
        return torch.softmax(theta / self.temperature, -1)

    def omega(self, mu):
        return self.temperature * torch.xlogy(mu, mu).sum(-1)


def test_a_users_own_layers_are_served_by_capability():
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    y = TopKSubset(2)(torch.randn(4, 5, generator=g, dtype=torch.float64))
    # perturbed: η_s = 2θ + Z_s; reference by enumerating the 10 two-subsets (no oracle): value
    # mean_s max_y <η_s, y> - <η_s, ȳ>, gradient mean_s 2 y*_s - ȳ (the VJP of η in θ is 2·I)
    table = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    loss = FenchelYoungLoss(_UserPerturbedLayer(TopKSubset(2), _TableNoise(table), 3), reduction="none")
    value = loss(theta, y)
    value.sum().backward()
    eta = 2 * theta.detach() + table
    scores = eta @ _top2_of_5().double().T  # (S, B, 10)
    best = _top2_of_5().double()[scores.argmax(-1)]
    torch.testing.assert_close(value, (scores.max(-1).values - (eta * y).sum(-1)).mean(0))
    torch.testing.assert_close(theta.grad, 2 * best.mean(0) - y)
    # regularized, without an oracle: targets checked as one-hot, value T(CE(θ/T, ȳ) − H(ȳ)) = T·CE for one-hot
    one_hot = ArgmaxOneHot()(torch.randn(4, 5, generator=g, dtype=torch.float64))
    value = FenchelYoungLoss(_UserSoftArgmax(0.7), reduction="none")(theta.detach(), one_hot)
    ce = -(one_hot * torch.log_softmax(theta.detach() / 0.7, -1)).sum(-1)
    torch.testing.assert_close(value, 0.7 * ce)
    with pytest.raises(ValueError, match="one-hot"):
        FenchelYoungLoss(_UserSoftArgmax(0.7))(theta.detach(), y)


def test_bad_input():
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(4, 5, generator=g)
    y = ArgmaxOneHot()(torch.randn(4, 5, generator=g))
    with pytest.raises(ValueError, match="reduction must be one of"):
        FenchelYoungLoss(SoftArgmax(), reduction="means")
    with pytest.raises(ValueError, match="y_target must have the shape of theta"):
        FenchelYoungLoss(SoftArgmax())(theta, y[:3])
    soft = torch.full((4, 5), 0.2)
    with pytest.raises(ValueError, match="one-hot.*allow_relaxed_targets=True"):
        FenchelYoungLoss(SoftArgmax())(theta, soft)
    # uniform target: logsumexp(θ) - mean(θ) - log 5 > 0 unless θ is constant in a row
    assert FenchelYoungLoss(SoftArgmax(), allow_relaxed_targets=True)(theta, soft).item() > 0
    with pytest.raises(ValueError, match="probability vector"):
        FenchelYoungLoss(SoftArgmax(), allow_relaxed_targets=True)(theta, 2 * soft)
    with pytest.raises(ValueError, match="theta must be finite"):
        FenchelYoungLoss(SoftArgmax())(theta.clone().fill_(float("inf")), y)


def test_relaxed_targets_in_the_hull_pass_and_targets_outside_trip_the_sign_check():
    topk = PerturbedAdditive(TopKSubset(2), num_samples=8)
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(4, 5, generator=g)
    one_hot = ArgmaxOneHot()(torch.randn(4, 5, generator=g))
    with pytest.raises(ValueError, match="y_target must be a solution in Y of TopKSubset"):
        FenchelYoungLoss(topk)(theta, one_hot)  # one item where k = 2
    # ȳ in conv(Y) (entries in [0, 1] summing to k = 2): each sample's max_y <η, y> - <η, ȳ> is >= 0, so the
    # value is >= 0 for every draw, not only in expectation
    hull = torch.full((4, 5), 0.4)
    value = FenchelYoungLoss(topk, reduction="none", allow_relaxed_targets=True)(
        theta, hull, generator=torch.Generator().manual_seed(1)
    )
    assert value.shape == (4,) and bool((value >= 0).all())
    # a one-hot target is outside conv(Y) for k = 2: max_y <η, y> - η_j can be negative, and is, by about
    # -10 per sample, with θ_j = 10 on the target and -10 elsewhere (unit Normal noise moves it by a few units);
    # allow_relaxed_targets skips the membership check, not the sign check, which names the cause
    theta = torch.where(one_hot.bool(), 10.0, -10.0)
    with pytest.raises(ValueError, match="FenchelYoungLoss is negative"):
        FenchelYoungLoss(topk, allow_relaxed_targets=True)(theta, one_hot, generator=torch.Generator().manual_seed(1))
    value = FenchelYoungLoss(topk, reduction="none", allow_relaxed_targets=True, validate_args=False)(
        theta, one_hot, generator=torch.Generator().manual_seed(1)
    )
    assert value.shape == (4,) and bool((value < -5).all())


def test_generic_perturbed_with_additive_gumbel_perturbation_is_the_softmax_loss():
    # Perturbed(ArgmaxOneHot, Additive(Gumbel, ε)): E[gradient] = softmax(θ/ε) − ȳ; S = 20000 Bernoulli means,
    # sd ≤ 0.5/√S ≈ 0.0035 per coordinate, 5σ ≈ 0.018
    from colayers.perturb import Additive

    eps = 0.4
    layer = Perturbed(ArgmaxOneHot(), Additive(Gumbel(), eps), num_samples=20000)
    theta = torch.tensor([[0.2, -0.5, 0.4]], dtype=torch.float64, requires_grad=True)
    y = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)
    FenchelYoungLoss(layer)(theta, y, generator=torch.Generator().manual_seed(5)).backward()
    torch.testing.assert_close(theta.grad, torch.softmax(theta.detach() / eps, -1) - y, atol=0.018, rtol=0)


def test_multiplicative_on_a_two_dimensional_event():
    # Warcraft-style vertex shortest path: θ = −cost < 0; the multiplicative perturbation keeps the sign
    from colayers import GridVertexShortestPath

    g = torch.Generator().manual_seed(0)
    oracle = GridVertexShortestPath(4, 4)
    theta = (-torch.rand(3, 4, 4, generator=g, dtype=torch.float64) - 0.1).requires_grad_()
    y = oracle(-torch.rand(3, 4, 4, generator=g, dtype=torch.float64) - 0.1)
    layer = PerturbedMultiplicative(oracle, epsilon=0.2, num_samples=5)
    value = FenchelYoungLoss(layer, reduction="none")(theta, y, generator=torch.Generator().manual_seed(1))
    assert value.shape == (3,) and bool((value >= 0).all())
    value.sum().backward()
    sample, atoms = layer.sample(theta.detach(), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(theta.grad, (atoms * torch.exp(0.2 * sample.noise - 0.02)).mean(0) - y)


@pytest.mark.parametrize("closed_form", [True, False], ids=["closed-form-vjp", "autograd-vjp"])
def test_perturbed_gradient_is_the_vjp_of_the_perturbation_either_way(closed_form):
    # the gradient (1/S) Σ_s (∂η_s/∂θ)ᵀ g(y_s) - g(ȳ) from the perturbation's closed form (vjp_sum) equals the one
    # from autograd through apply (a subclass whose apply is the same function, so vjp_sum is None), at the
    # same noise: 1/S Σ y_s ⊙ exp(εZ_s - ε²/2) - ȳ, computed here from the drawn samples
    from colayers.perturb import Multiplicative

    class SameEta(Multiplicative):
        def apply(self, theta, noise, epsilon=None):
            return super().apply(theta, noise, epsilon)

    g = torch.Generator().manual_seed(0)
    oracle = TopKSubset(2)
    pert = Multiplicative(epsilon=0.4) if closed_form else SameEta(epsilon=0.4)
    assert (pert.vjp_sum(torch.ones(5), torch.zeros(1, 5), torch.ones(1, 5)) is None) is not closed_form
    layer = Perturbed(oracle, pert, num_samples=6)
    theta = (torch.rand(3, 5, generator=g, dtype=torch.float64) + 0.1).requires_grad_()
    y = oracle(torch.randn(3, 5, generator=g, dtype=torch.float64))
    FenchelYoungLoss(layer, reduction="sum")(theta, y, generator=torch.Generator().manual_seed(1)).backward()
    sample, atoms = layer.sample(theta.detach(), generator=torch.Generator().manual_seed(1))
    expected = (atoms * torch.exp(0.4 * sample.noise - 0.08)).mean(0) - y
    torch.testing.assert_close(theta.grad, expected)
