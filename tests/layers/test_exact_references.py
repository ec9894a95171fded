r"""Every estimator's forward and VJP against references it did not produce.

The solution sets are enumerated (tests/references.py: argmax over 5, top-2 of 5, rankings of 4, the 6 paths
of the 3×3 grid DAG, 3×3 matchings, a 5-item knapsack) and the references are closed forms or ONE large
fixed-seed numpy Monte Carlo over the enumerated set (N = 400,000 draws, cached per module), never the
library's oracles or layers.

Method: each estimator runs on R copies of θ stacked as a batch (one call, independent noise per row), so that
the R rows are i.i.d. replicates of the estimator at its S. The test asserts

    |mean_R(estimate) − reference| ≤ n_σ · sqrt(σ̂²/R + se_ref²)      (n_σ = 5, entrywise),

with σ̂² the replicates' sample variance, and — in the same assertion helper — that the estimator scaled by
each wrong constant (×S, ×ε, ×λ, ×2, ×½, a flipped sign, the inverses) would FAIL that tolerance. The constants
are ε ≠ 1, λ ≠ 1, S = 1 and S > 1.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import colayers as cl
from colayers.perturb import Gumbel, Normal

from .. import references as ref
from .reference_api import imle_output

N_SIGMA = 5.0
DT = torch.float64

# ----------------------------------------------------------------------------------------------- problems
_rng = np.random.default_rng(2024)


def _theta(d, scale=0.5):
    return _rng.normal(size=d) * scale


PROBLEMS = {
    "argmax5": dict(oracle=lambda: cl.ArgmaxOneHot(), Y=ref.argmax_set(5), shape=(5,)),
    "top2of5": dict(oracle=lambda: cl.TopKSubset(2), Y=ref.topk_set(5, 2), shape=(5,)),
    "rank4": dict(oracle=lambda: cl.Ranking(), Y=ref.ranking_set(4), shape=(4,)),
    "grid3x3": dict(oracle=lambda: cl.GridDAGShortestPath(3, 3), Y=ref.grid_path_set(3, 3), shape=(12,)),
    "match3": dict(oracle=lambda: cl.BipartiteMatching(3), Y=ref.matching_set(3), shape=(3, 3)),
    "knap5": dict(
        oracle=lambda: cl.Knapsack(weights=[2, 3, 4, 1, 2], capacity=6),
        Y=ref.knapsack_set([2, 3, 4, 1, 2], 6),
        shape=(5,),
    ),
}
for _name, _p in PROBLEMS.items():
    _d = int(np.prod(_p["shape"]))
    _p["theta"] = _theta(_d)
    _p["v"] = _rng.normal(size=_d)
    # positive scores for the multiplicative perturbation (a sign-keeping factor on a positive theta)
    _p["theta_pos"] = np.abs(_theta(_d)) + 0.5
# the knapsack takes no item of score <= 0: give it positive values so that the packing is not empty
PROBLEMS["knap5"]["theta"] = np.abs(PROBLEMS["knap5"]["theta"]) + 0.2

ALL = list(PROBLEMS)
R_DEFAULT = 4000


def _rows(name, r, positive=False):
    p = PROBLEMS[name]
    t = torch.tensor(p["theta_pos"] if positive else p["theta"], dtype=DT).reshape(p["shape"])
    return t.expand(r, *p["shape"]).clone().requires_grad_(True)


def _v(name):
    p = PROBLEMS[name]
    return torch.tensor(p["v"], dtype=DT).reshape(p["shape"])


def _run(layer, name, r=R_DEFAULT, positive=False, samples_output=False):
    """(forward replicates (R, d), VJP replicates (R, d)) of the loss sum_rows <out_row, v>."""
    theta = _rows(name, r, positive)
    out = layer(theta)
    v = _v(name)
    (out * v).sum().backward()
    fwd = out.mean(0) if samples_output else out
    return fwd.detach().reshape(r, -1).numpy(), theta.grad.reshape(r, -1).numpy()


def _wrong(*, S=1, epsilon=1.0, lambda_=1.0):
    """The wrong constants a reference test must be able to see."""
    factors = {2.0, 0.5, -1.0, S, 1.0 / S, epsilon, 1.0 / epsilon, lambda_, 1.0 / lambda_}
    return sorted(c for c in factors if c != 1.0)


# -------------------------------------------------------------------------- perturbed (score function)
SLOW = pytest.mark.slow


def _cases(default, extended):
    """The default cases, plus the rest of the grid under the ``slow`` marker (``--runslow``)."""
    return [*default, *[pytest.param(*c, marks=SLOW) for c in extended if c not in default]]


PERTURBED_CASES = _cases(
    # (problem, noise kind, multiplicative, epsilon, S): every problem at S > 1, each setting somewhere
    [
        *[(name, "normal", False, 0.5, 4) for name in ALL],
        ("argmax5", "normal", False, 0.5, 1),
        ("rank4", "normal", False, 0.5, 1),
        ("top2of5", "gumbel", False, 0.4, 3),
        ("grid3x3", "gumbel", False, 0.4, 3),
        ("match3", "normal", True, 0.4, 4),
        ("knap5", "normal", True, 0.4, 4),
        ("rank4", "normal", True, 0.4, 4),
        ("top2of5", "normal", True, 0.4, 1),
        ("argmax5", "gumbel", True, 0.3, 3),
        ("grid3x3", "gumbel", True, 0.3, 3),
    ],
    [
        (name, kind, mult, eps, s)
        for name in ALL
        for kind, mult, eps in (("normal", False, 0.5), ("gumbel", False, 0.4), ("normal", True, 0.4),
                                ("gumbel", True, 0.3))
        for s in ((1, 4) if kind == "normal" else (3,))
    ],
)


def _noise(kind):
    return Normal() if kind == "normal" else Gumbel()


@pytest.mark.parametrize(("name", "kind", "mult", "eps", "S"), PERTURBED_CASES)
def test_perturbed_forward_and_vjp_match_the_enumerated_reference(name, kind, mult, eps, S):
    p = PROBLEMS[name]
    cls = cl.PerturbedMultiplicative if mult else cl.PerturbedAdditive
    layer = cls(p["oracle"](), epsilon=eps, num_samples=S, noise=_noise(kind), seed=7)
    theta = p["theta_pos"] if mult else p["theta"]
    fwd, vjp = _run(layer, name, positive=mult)
    mu = ref.perturbed_mean(p["Y"], theta, eps, kind, mult)
    jtv = ref.perturbed_vjp(p["Y"], theta, p["v"], eps, kind, mult)
    label = f"{cls.__name__}({kind}, eps={eps}, S={S}) on {name}"
    ref.assert_mc_close(fwd, mu, n_sigma=N_SIGMA, label=label + " forward")
    ref.assert_mc_close(vjp, jtv, n_sigma=N_SIGMA, wrong_factors=_wrong(S=S, epsilon=eps), label=label + " VJP")


@pytest.mark.parametrize("eps", [0.3, 2.0])
@pytest.mark.parametrize("S", [1, 5])
def test_gumbel_argmax_equals_softmax_in_value_and_jacobian(eps, S):
    """Closed form: Gumbel-perturbed one-hot argmax has mean softmax(θ/ε), Jacobian (diag p − ppᵀ)/ε."""
    p = PROBLEMS["argmax5"]
    layer = cl.PerturbedAdditive(cl.ArgmaxOneHot(), epsilon=eps, num_samples=S, noise=Gumbel(), seed=3)
    fwd, vjp = _run(layer, "argmax5", r=20000)
    mu, jac = ref.softmax_argmax(p["theta"], eps)
    ref.assert_mc_close(fwd, ref.Estimate(mu), label="softmax forward")
    ref.assert_mc_close(
        vjp, ref.Estimate(jac.T @ p["v"]), wrong_factors=_wrong(S=S, epsilon=eps), label="softmax Jacobian"
    )


@pytest.mark.parametrize("eps", [0.4, 1.7])
def test_normal_argmax_over_two_equals_phi(eps):
    """Closed form: additive Normal noise on argmax over 2 gives μ₁ = Φ((θ₁ − θ₂)/(ε√2))."""
    theta = np.array([0.3, -0.2])
    v = np.array([1.5, -0.5])
    layer = cl.PerturbedAdditive(cl.ArgmaxOneHot(), epsilon=eps, num_samples=3, seed=11)
    t = torch.tensor(theta, dtype=DT).expand(20000, 2).clone().requires_grad_(True)
    out = layer(t)
    (out * torch.tensor(v, dtype=DT)).sum().backward()
    mu, jac = ref.normal_argmax2(theta, eps)
    ref.assert_mc_close(out.detach().numpy(), ref.Estimate(mu), label="Phi forward")
    ref.assert_mc_close(t.grad.numpy(), ref.Estimate(jac.T @ v), wrong_factors=_wrong(S=3, epsilon=eps), label="Phi VJP")


def test_closed_forms_agree_with_the_monte_carlo_reference():
    """The reference machinery itself: MC softmax and Φ against their closed forms (and MC score-VJP)."""
    p = PROBLEMS["argmax5"]
    mu, jac = ref.softmax_argmax(p["theta"], 0.4)
    ref.assert_mc_close(ref.perturbed_mean(p["Y"], p["theta"], 0.4, "gumbel").value[None], ref.Estimate(mu),
                        n_sigma=6, atol=3e-3)
    est = ref.perturbed_vjp(p["Y"], p["theta"], p["v"], 0.4, "gumbel")
    assert np.all(np.abs(est.value - jac.T @ p["v"]) <= 5 * est.se + 1e-9)
    Y2 = ref.argmax_set(2)
    mu2, jac2 = ref.normal_argmax2(np.array([0.3, -0.2]), 0.7)
    est2 = ref.perturbed_vjp(Y2, np.array([0.3, -0.2]), np.array([1.0, 0.0]), 0.7)
    assert np.all(np.abs(est2.value - jac2[0]) <= 5 * est2.se)


# ----------------------------------------------------------------------- finite differences: I-MLE, AIMLE
IMLE_CASES = _cases(
    # (problem, noise kind, epsilon, lambda, S, two_sided, mean output)
    [
        *[(name, "normal", 0.6, 2.5, 3, False, False) for name in ALL],
        ("top2of5", "normal", 0.6, 2.5, 1, False, False),
        ("match3", "normal", 0.6, 2.5, 1, False, False),
        ("rank4", "normal", 0.6, 2.5, 3, False, True),
        ("knap5", "normal", 0.6, 2.5, 3, False, True),
        ("argmax5", "normal", 0.6, 0.4, 2, True, False),
        ("grid3x3", "normal", 0.6, 0.4, 2, True, False),
        ("argmax5", "gumbel", 0.5, 3.0, 2, False, False),
        ("rank4", "gumbel", 0.5, 0.3, 2, False, True),
    ],
    [
        (name, "normal", 0.6, lam, s, two, mean)
        for name in ALL
        for lam, s, two, mean in ((2.5, 1, False, False), (2.5, 3, False, True), (0.4, 2, True, False))
    ],
)


@pytest.mark.parametrize(("name", "kind", "eps", "lam", "S", "two_sided", "mean"), IMLE_CASES)
def test_imle_matches_its_exact_finite_difference_expectation(name, kind, eps, lam, S, two_sided, mean):
    p = PROBLEMS[name]
    layer = cl.IMLE(p["oracle"](), noise=_noise(kind), epsilon=eps, lambda_=lam, num_samples=S,
                    two_sided=two_sided, output="mean" if mean else "samples", seed=5)
    fwd, vjp = _run(layer, name, samples_output=not mean)
    mu = ref.perturbed_mean(p["Y"], p["theta"], eps, kind)
    fd = ref.finite_difference_expectation(p["Y"], p["theta"], p["v"], eps, lam, kind, two_sided=two_sided)
    label = f"IMLE({kind}, eps={eps}, lambda={lam}, S={S}, two_sided={two_sided}, mean={mean}) on {name}"
    ref.assert_mc_close(fwd, mu, label=label + " forward")
    ref.assert_mc_close(vjp, fd, wrong_factors=_wrong(S=S, epsilon=eps, lambda_=lam), label=label + " VJP")


@pytest.mark.parametrize(("name", "k"), [("top2of5", 2), ("argmax5", 1)])
def test_imle_default_sum_of_gamma_noise_matches_its_reference(name, k):
    """Default I-MLE noise: Sum-of-Gamma(k = oracle.k, 10 terms), sampled independently with numpy."""
    p = PROBLEMS[name]
    layer = cl.IMLE(p["oracle"](), epsilon=0.7, lambda_=1.5, num_samples=3, output="samples", seed=9)
    fwd, vjp = _run(layer, name, samples_output=True)
    mu = ref.perturbed_mean(p["Y"], p["theta"], 0.7, "sog", k=k)
    fd = ref.finite_difference_expectation(p["Y"], p["theta"], p["v"], 0.7, 1.5, "sog", k=k)
    ref.assert_mc_close(fwd, mu, label=f"IMLE SoG({k}) forward")
    ref.assert_mc_close(vjp, fd, wrong_factors=_wrong(S=3, epsilon=0.7, lambda_=1.5), label=f"IMLE SoG({k}) VJP")


@pytest.mark.parametrize(
    ("name", "two_sided"),
    [("top2of5", False), ("rank4", True), *[pytest.param(n, t, marks=SLOW) for n, t in
                                           (("top2of5", True), ("rank4", False), ("grid3x3", False), ("grid3x3", True))]],
)
def test_aimle_with_frozen_beta_is_the_finite_difference_at_its_lambda(name, two_sided):
    """AIMLE with β frozen: λ = β‖θ‖/‖ȳ‖ per instance (here every sample has ȳ = v)."""
    p = PROBLEMS[name]
    beta, eps, S = 0.3, 0.6, 2
    layer = cl.AIMLE(p["oracle"](), noise=Normal(), epsilon=eps, num_samples=S, beta=beta, adapt=False,
                     two_sided=two_sided, output="samples", seed=13)
    fwd, vjp = _run(layer, name, samples_output=True)
    lam = beta * np.linalg.norm(p["theta"]) / np.linalg.norm(p["v"])
    fd = ref.finite_difference_expectation(p["Y"], p["theta"], p["v"], eps, lam, "normal", two_sided=two_sided)
    assert float(layer.beta) == beta  # frozen
    ref.assert_mc_close(fwd, ref.perturbed_mean(p["Y"], p["theta"], eps), label="AIMLE forward")
    ref.assert_mc_close(vjp, fd, wrong_factors=_wrong(S=S, epsilon=eps, lambda_=lam), label=f"AIMLE on {name}")


@pytest.mark.parametrize(
    "name", ["argmax5", "top2of5", pytest.param("rank4", marks=SLOW), pytest.param("grid3x3", marks=SLOW)]
)
def test_finite_difference_expectation_converges_to_the_smoothed_jacobian(name):
    """As λ → 0 the exact finite-difference expectation tends to Jv (J symmetric for additive noise), with a
    visible bias at a large λ; I-MLE at a small λ matches Jv within its Monte Carlo tolerance."""
    p = PROBLEMS[name]
    eps = 0.6
    jv = ref.perturbed_vjp(p["Y"], p["theta"], p["v"], eps)
    errors = []
    for lam in (4.0, 1.0, 0.25, 0.05):
        fd = ref.finite_difference_expectation(p["Y"], p["theta"], p["v"], eps, lam, two_sided=True)
        errors.append(np.abs(fd.value - jv.value).max())
        se = np.sqrt(fd.se**2 + jv.se**2)
    assert errors[-1] < errors[0]
    assert np.all(np.abs(fd.value - jv.value) <= N_SIGMA * se + 1e-9)  # lambda = 0.05: no visible bias
    assert errors[0] > N_SIGMA * se.max()  # lambda = 4: the bias is visible
    layer = cl.IMLE(p["oracle"](), noise=Normal(), epsilon=eps, lambda_=0.1, num_samples=4, two_sided=True,
                    output="mean", seed=17)
    _, vjp = _run(layer, name, r=8000)
    ref.assert_mc_close(vjp, jv, wrong_factors=_wrong(S=4, epsilon=eps, lambda_=0.1), label=f"IMLE(lambda→0) {name}")


# ----------------------------------------------------------------------------------------------- blackbox
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("lam", [0.7, 6.0])
@pytest.mark.parametrize("which", ["Blackbox", "IMLE(eps=0, S=3)"])
def test_blackbox_is_the_exact_interpolation_rule(name, lam, which):
    """ε = 0: forward f(θ), backward (f(θ) − f(θ − λv))/λ, exactly, by enumeration (Blackbox, and I-MLE without
    noise and several identical samples: each checked against the enumeration, not against the other)."""
    p = PROBLEMS[name]
    if which == "Blackbox":
        layer = cl.Blackbox(p["oracle"](), lambda_=lam)
    else:
        layer = cl.IMLE(p["oracle"](), epsilon=0.0, lambda_=lam, num_samples=3, **imle_output(True))
    theta = torch.tensor(p["theta"], dtype=DT).reshape(p["shape"]).requires_grad_(True)
    out = layer(theta)
    (out * _v(name)).sum().backward()
    np.testing.assert_array_equal(out.detach().numpy().ravel(), ref.solve(p["Y"], p["theta"]))
    want = ref.finite_difference_expectation(p["Y"], p["theta"], p["v"], 0.0, lam).value
    np.testing.assert_allclose(theta.grad.numpy().ravel(), want, rtol=0, atol=1e-12)
    if np.any(want != 0):
        for c in _wrong(lambda_=lam):
            assert not np.allclose(c * theta.grad.numpy().ravel(), want, atol=1e-12)


def test_grid_shortest_path_is_the_enumerated_argmin():
    """shortest_path(cost) and the oracle at θ = −cost both give the cheapest of the 6 enumerated 3×3 paths."""
    Y = PROBLEMS["grid3x3"]["Y"]
    oracle = cl.GridDAGShortestPath(3, 3)
    assert oracle.edges == ref.grid_edges(3, 3)
    cost = np.random.default_rng(5).uniform(-1, 2, size=(50, 12))
    want = Y[np.argmin(cost @ Y.T, axis=-1)]
    np.testing.assert_array_equal(oracle.shortest_path(torch.tensor(cost)).numpy(), want)
    np.testing.assert_array_equal(oracle(torch.tensor(-cost)).numpy(), want)


def test_blackbox_gradient_is_not_zero_on_the_checked_instances():
    """Guard: the blackbox checks above see a non-zero gradient on most problems (else they prove little)."""
    nonzero = 0
    for name, p in PROBLEMS.items():
        for lam in (0.7, 6.0):
            nonzero += bool(np.any(ref.finite_difference_expectation(p["Y"], p["theta"], p["v"], 0.0, lam).value))
    assert nonzero >= 8


# ----------------------------------------------------------------------------------------- Fenchel-Young
FY_CASES = [
    *[(name, "normal", False, 0.5, 3) for name in ALL],
    *[(name, "normal", True, 0.4, 3) for name in ALL],
    ("top2of5", "gumbel", False, 0.4, 1),
    ("rank4", "gumbel", True, 0.3, 2),
]


@pytest.mark.parametrize(("name", "kind", "mult", "eps", "S"), FY_CASES)
def test_perturbed_fenchel_young_value_and_gradient(name, kind, mult, eps, S):
    r"""Gradient: E[y*(η)] − ȳ (additive) or E[F ⊙ y*(θ ⊙ F)] − ȳ (multiplicative, envelope theorem);
    value: E[max_y ⟨η, y⟩] − ⟨E η, ȳ⟩ with E η = θ + εγ for Gumbel noise (the documented shift)."""
    p = PROBLEMS[name]
    cls = cl.PerturbedMultiplicative if mult else cl.PerturbedAdditive
    layer = cls(p["oracle"](), epsilon=eps, num_samples=S, noise=_noise(kind), seed=19)
    loss = cl.FenchelYoungLoss(layer, reduction="none")
    theta_np = p["theta_pos"] if mult else p["theta"]
    y_target = ref.solve(p["Y"], -np.asarray(p["v"]))  # a vertex other than the prediction, in general
    r = R_DEFAULT
    theta = _rows(name, r, positive=mult)
    yt = torch.tensor(y_target, dtype=DT).reshape(p["shape"]).expand(r, *p["shape"])
    value = loss(theta, yt)
    value.sum().backward()
    if mult:
        grad_ref = ref.multiplicative_fy_gradient(p["Y"], theta_np, eps, kind)
        # E[exp(eps Z - eps^2/2)]: 1 for Normal Z, Gamma(1 - eps) exp(-eps^2/2) for Gumbel Z
        mean_eta = theta_np * (_gumbel_mgf(eps) * math.exp(-(eps**2) / 2) if kind == "gumbel" else 1.0)
    else:
        grad_ref = ref.perturbed_mean(p["Y"], theta_np, eps, kind)
        mean_eta = theta_np + (eps * ref.EULER_GAMMA if kind == "gumbel" else 0.0)
    grad_ref = ref.Estimate(grad_ref.value - y_target, grad_ref.se)
    omega = ref.perturbed_max(p["Y"], theta_np, eps, kind, mult)
    value_ref = ref.Estimate(omega.value - mean_eta @ y_target, omega.se)
    label = f"FY({cls.__name__}, {kind}, eps={eps}, S={S}) on {name}"
    ref.assert_mc_close(value.detach().numpy()[:, None], value_ref, wrong_factors=[2.0, 0.5], label=label + " value")
    ref.assert_mc_close(theta.grad.reshape(r, -1).numpy(), grad_ref, wrong_factors=_wrong(S=S, epsilon=eps),
                        label=label + " gradient")


def _gumbel_mgf(eps):
    """E[exp(εG)] = Γ(1 − ε) for a standard Gumbel G (ε < 1)."""
    return math.gamma(1.0 - eps)


def test_gumbel_fenchel_young_on_argmax_is_the_softmax_loss():
    """Closed form: ε·logsumexp(θ/ε) − ⟨θ, ȳ⟩ and gradient softmax(θ/ε) − ȳ."""
    p = PROBLEMS["argmax5"]
    eps, r = 0.6, 20000
    loss = cl.FenchelYoungLoss(cl.PerturbedAdditive(cl.ArgmaxOneHot(), epsilon=eps, num_samples=2, noise=Gumbel(),
                                                    seed=23), reduction="none")
    y_target = np.eye(5)[1]
    theta = _rows("argmax5", r)
    value = loss(theta, torch.tensor(y_target, dtype=DT).expand(r, 5))
    value.sum().backward()
    t = p["theta"] / eps
    lse = eps * (t.max() + math.log(np.exp(t - t.max()).sum()))
    mu, _ = ref.softmax_argmax(p["theta"], eps)
    ref.assert_mc_close(value.detach().numpy()[:, None], ref.Estimate([lse - p["theta"] @ y_target]),
                        wrong_factors=[2.0, 0.5, eps], label="softmax FY value")
    ref.assert_mc_close(theta.grad.numpy(), ref.Estimate(mu - y_target), wrong_factors=_wrong(S=2, epsilon=eps),
                        label="softmax FY gradient")


# ------------------------------------------------------------------------------------------------ SPO+
@pytest.mark.parametrize("name", ["argmax5", "top2of5", "rank4", "grid3x3", "match3", "knap5"])
@pytest.mark.parametrize("alpha", [2.0, 1.5])
def test_spo_plus_value_and_subgradient_by_enumeration(name, alpha):
    r"""ℓ(θ) = max_y ⟨αθ − θ̄, y⟩ − ⟨αθ − θ̄, ȳ⟩ with ȳ = argmax ⟨θ̄, y⟩, by enumeration; its gradient (in θ and in
    θ̄, ȳ held fixed) by central differences of that enumerated value (piecewise linear: exact at a generic point)."""
    p = PROBLEMS[name]
    Y = p["Y"]
    theta = p["theta"]
    theta_true = np.asarray(p["v"]) * 0.8 + 0.1
    y_bar = ref.solve(Y, theta_true)

    def value(t, tt):
        ta = alpha * t - tt
        return ref.enumerated_objective_max(Y, ta) - ta @ y_bar

    th = torch.tensor(theta, dtype=DT).reshape(p["shape"]).requires_grad_(True)
    tt = torch.tensor(theta_true, dtype=DT).reshape(p["shape"]).requires_grad_(True)
    got = cl.SPOPlusLoss(p["oracle"](), alpha=alpha)(th, tt)
    (3.0 * got).backward()  # a non-unit upstream gradient
    assert abs(got.detach().item() - value(theta, theta_true)) < 1e-9
    g_theta = ref.central_difference(lambda t: value(t, theta_true), theta)
    g_true = ref.central_difference(lambda t: value(theta, t), theta_true)
    np.testing.assert_allclose(th.grad.numpy().ravel(), 3.0 * g_theta, atol=1e-6)
    np.testing.assert_allclose(tt.grad.numpy().ravel(), 3.0 * g_true, atol=1e-6)
    if np.any(g_theta != 0):
        for c in (2.0, 0.5, -1.0, alpha, 1 / alpha):
            assert not np.allclose(c * th.grad.numpy().ravel(), 3.0 * g_theta, atol=1e-6)


# ------------------------------------------------------------------------------- structured SVM, imitation
@pytest.mark.parametrize("name", ["argmax5", "top2of5", "grid3x3", "match3", "knap5"])
@pytest.mark.parametrize("weight", [1.0, 0.3])
def test_structured_svm_value_and_subgradient_by_enumeration(name, weight):
    r"""ℓ(θ) = max_y w‖y − ȳ‖₁ + ⟨θ, y − ȳ⟩ over the enumerated Y; gradient by central differences."""
    p = PROBLEMS[name]
    Y, theta = p["Y"], p["theta"] * 3.0
    y_bar = ref.solve(Y, np.asarray(p["v"]))

    def value(t):
        return float(np.max(weight * np.abs(Y - y_bar).sum(-1) + Y @ t - t @ y_bar))

    th = torch.tensor(theta, dtype=DT).reshape(p["shape"]).requires_grad_(True)
    got = cl.StructuredSVMLoss(p["oracle"](), margin_weight=weight)(th, torch.tensor(y_bar, dtype=DT).reshape(p["shape"]))
    (2.5 * got).backward()
    assert abs(got.detach().item() - value(theta)) < 1e-9
    want = 2.5 * ref.central_difference(value, theta)
    np.testing.assert_allclose(th.grad.numpy().ravel(), want, atol=1e-6)


@pytest.mark.parametrize("alpha", [1.0, 2.5])
def test_imitation_structured_svm_preset_by_enumeration(alpha):
    r"""ℓ(θ) = max_y ‖y − ȳ‖₁ + α⟨θ, y − ȳ⟩ (the ImitationLoss.structured_svm preset); gradient by differences."""
    p = PROBLEMS["top2of5"]
    Y, theta = p["Y"], p["theta"] * 3.0
    y_bar = ref.solve(Y, np.asarray(p["v"]))

    def value(t):
        return float(np.max(np.abs(Y - y_bar).sum(-1) + alpha * (Y @ t - t @ y_bar)))

    th = torch.tensor(theta, dtype=DT).requires_grad_(True)
    got = cl.ImitationLoss.structured_svm(p["oracle"](), alpha=alpha)(th, torch.tensor(y_bar, dtype=DT))
    got.backward()
    assert abs(got.detach().item() - value(theta)) < 1e-9
    np.testing.assert_allclose(th.grad.numpy(), ref.central_difference(value, theta), atol=1e-6)


# ------------------------------------------------------------------------ straight-through, pushforward
@pytest.mark.parametrize("negative", [False, True])
def test_identity_relaxation_passes_the_upstream_gradient(negative):
    """Straight-through: forward f(θ) (enumerated), backward exactly ±ȳ."""
    p = PROBLEMS["grid3x3"]
    th = torch.tensor(p["theta"], dtype=DT).requires_grad_(True)
    out = cl.IdentityRelaxation(p["oracle"](), negative=negative)(th)
    (out * 1.7 * _v("grid3x3")).sum().backward()
    np.testing.assert_array_equal(out.detach().numpy(), ref.solve(p["Y"], p["theta"]))
    np.testing.assert_allclose(th.grad.numpy(), (-1.7 if negative else 1.7) * np.asarray(p["v"]), rtol=0, atol=1e-15)


@pytest.mark.parametrize(("name", "mult", "S"), [("rank4", False, 4), ("top2of5", True, 3), ("grid3x3", False, 1)])
def test_pushforward_and_experience_loss_gradients(name, mult, S):
    r"""Φ(θ) = E[c(y*(η))] for a linear cost c(y) = ⟨v, y⟩: value ⟨v, μ⟩ and gradient Jᵀv (score identity)."""
    p = PROBLEMS[name]
    eps = 0.5
    cls = cl.PerturbedMultiplicative if mult else cl.PerturbedAdditive
    v = _v(name)
    event_dims = tuple(range(-len(p["shape"]), 0))
    theta_np = p["theta_pos"] if mult else p["theta"]
    jtv = ref.perturbed_vjp(p["Y"], theta_np, p["v"], eps, "normal", mult)
    value_ref = ref.perturbed_mean(p["Y"], theta_np, eps, "normal", mult)
    value_ref = ref.Estimate([value_ref.value @ np.asarray(p["v"])], [np.sqrt((value_ref.se**2) @ np.asarray(p["v"])**2)])
    for which in ("pushforward", "experience"):
        layer = cls(p["oracle"](), epsilon=eps, num_samples=S, seed=29)
        theta = _rows(name, R_DEFAULT, positive=mult)
        if which == "pushforward":
            out = cl.Pushforward(layer, lambda y: (y * v).sum(event_dims))(theta)
        else:
            out = cl.ExperienceLoss(layer, lambda y: (y * v).sum(event_dims), reduction="none")(theta)
        out.sum().backward()
        label = f"{which}({cls.__name__}, S={S}) on {name}"
        ref.assert_mc_close(out.detach().numpy()[:, None], value_ref, n_sigma=6, label=label + " value")
        ref.assert_mc_close(theta.grad.reshape(R_DEFAULT, -1).numpy(), jtv, wrong_factors=_wrong(S=S, epsilon=eps),
                            label=label + " gradient")


# ------------------------------------------------------------------------------------------ sparsemax
def _sparsemax_np(z):
    """Euclidean projection onto the simplex by sorting (Held et al.; Michelot), in numpy."""
    u = np.sort(z)[::-1]
    css = np.cumsum(u) - 1.0
    k = np.nonzero(u - css / np.arange(1, z.size + 1) > 0)[0][-1]
    return np.maximum(z - css[k] / (k + 1), 0.0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_argmax_value_and_jacobian_by_differences(seed):
    z = np.random.default_rng(seed).normal(size=6) * 0.6
    v = np.random.default_rng(seed + 10).normal(size=6)
    th = torch.tensor(z, dtype=DT).requires_grad_(True)
    out = cl.SparseArgmax()(th)
    (out * torch.tensor(v, dtype=DT)).sum().backward()
    np.testing.assert_allclose(out.detach().numpy(), _sparsemax_np(z), atol=1e-12)
    want = ref.central_difference(lambda t: _sparsemax_np(t) @ v, z)
    np.testing.assert_allclose(th.grad.numpy(), want, atol=1e-6)


@pytest.mark.parametrize("temperature", [0.4, 2.5])
def test_regularized_fenchel_young_losses_in_closed_form(temperature):
    r"""SoftArgmax(T): L = T·logsumexp(θ/T) − ⟨θ, ȳ⟩ (one-hot ȳ), ∇ = softmax(θ/T) − ȳ; SparseArgmax: the sparsemax
    loss ⟨θ, μ − ȳ⟩ − ½‖μ‖² + ½‖ȳ‖² with μ = sparsemax(θ) by sorting in numpy, ∇ = μ − ȳ."""
    theta = np.random.default_rng(31).normal(size=(4, 6))
    y_bar = np.eye(6)[[1, 3, 0, 5]]
    t = torch.tensor(theta, dtype=DT).requires_grad_(True)
    value = cl.FenchelYoungLoss(cl.SoftArgmax(temperature=temperature), reduction="none")(t, torch.tensor(y_bar))
    (value * torch.arange(1.0, 5.0, dtype=DT)).sum().backward()
    z = theta / temperature
    lse = temperature * (z.max(-1) + np.log(np.exp(z - z.max(-1, keepdims=True)).sum(-1)))
    np.testing.assert_allclose(value.detach().numpy(), lse - (theta * y_bar).sum(-1), atol=1e-10)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    np.testing.assert_allclose(t.grad.numpy(), np.arange(1.0, 5.0)[:, None] * (p - y_bar), atol=1e-10)
    t2 = torch.tensor(theta, dtype=DT).requires_grad_(True)
    value2 = cl.FenchelYoungLoss(cl.SparseArgmax(), reduction="none")(t2, torch.tensor(y_bar))
    (value2 * torch.arange(1.0, 5.0, dtype=DT)).sum().backward()
    mu = np.array([_sparsemax_np(row) for row in theta])
    want = (theta * (mu - y_bar)).sum(-1) - 0.5 * (mu**2).sum(-1) + 0.5 * (y_bar**2).sum(-1)
    np.testing.assert_allclose(value2.detach().numpy(), want, atol=1e-10)
    np.testing.assert_allclose(t2.grad.numpy(), np.arange(1.0, 5.0)[:, None] * (mu - y_bar), atol=1e-10)
