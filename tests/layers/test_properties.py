"""hypothesis properties: Jacobians symmetric PSD, outputs in conv(Y), invariance to shifts Y cannot see."""

from __future__ import annotations

import math

import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from colayers import (
    IMLE,
    ArgmaxOneHot,
    Blackbox,
    IdentityRelaxation,
    PerturbedAdditive,
    PerturbedMultiplicative,
    Ranking,
    RegularizedFrankWolfe,
    SoftArgmax,
    SparseArgmax,
    TopKSubset,
)

from .helpers import jacobian

N = 5
ORACLES = {"argmax": ArgmaxOneHot(), "topk": TopKSubset(2), "ranking": Ranking()}
thetas = st.lists(st.floats(-3, 3, allow_nan=False, width=64), min_size=N, max_size=N).map(
    lambda v: torch.tensor(v, dtype=torch.float64)
)
oracle_names = st.sampled_from(sorted(ORACLES))


def _y_sum_and_range(name: str) -> tuple[float, float, float]:
    if name == "argmax":
        return 1.0, 0.0, 1.0
    if name == "topk":
        return 2.0, 0.0, 1.0
    return N * (N + 1) / 2, 1.0, float(N)


def _regularized_layers(name):
    layers = [RegularizedFrankWolfe(ORACLES[name])]
    if name == "argmax":
        layers += [SoftArgmax(temperature=0.8), SparseArgmax()]
    return layers


@settings(max_examples=25, deadline=None)
@given(theta=thetas, name=oracle_names)
def test_regularized_jacobians_are_symmetric_psd(theta, name):
    for layer in _regularized_layers(name):
        jac = jacobian(layer, theta)
        assert torch.allclose(jac, jac.T, atol=1e-9), type(layer).__name__
        assert torch.linalg.eigvalsh(0.5 * (jac + jac.T)).min() > -1e-9


@settings(max_examples=4, deadline=None)
@given(theta=thetas, name=oracle_names, seed=st.integers(0, 2**16))
def test_score_function_jacobian_is_symmetric_psd_at_large_s(theta, name, seed):
    s, eps = 10000, 1.0
    layer = PerturbedAdditive(ORACLES[name], epsilon=eps, num_samples=s)
    g = torch.Generator().manual_seed(seed)
    jac = jacobian(lambda t: layer(t, generator=g), theta)
    # Normal noise: one term is (y_i - b_i) Z_j / eps with |y_i - b_i| <= c (c = 1, or n - 1 for ranks), so
    # each entry's std is <= c / (eps sqrt(S)). Asymmetry entries: <= 2 * 5 std; the smallest eigenvalue of
    # the symmetric part moves by at most the spectral norm of the error, <= n * 5 std.
    c = 1.0 if name != "ranking" else N - 1.0
    std = c / (eps * math.sqrt(s))
    assert (jac - jac.T).abs().max() < 10 * std
    assert torch.linalg.eigvalsh(0.5 * (jac + jac.T)).min() > -N * 5 * std


def _all_layers(name):
    oracle = ORACLES[name]
    layers = [
        PerturbedAdditive(oracle, num_samples=8, seed=0),
        PerturbedMultiplicative(oracle, num_samples=8, seed=0),
        IMLE(oracle, num_samples=3, output="mean", seed=0),
        Blackbox(oracle),
        IdentityRelaxation(oracle),
    ]
    return layers + _regularized_layers(name)


@settings(max_examples=20, deadline=None)
@given(theta=thetas, name=oracle_names)
def test_outputs_lie_in_conv_y(theta, name):
    total, lo, hi = _y_sum_and_range(name)
    for layer in _all_layers(name):
        mu = layer(theta.unsqueeze(0).expand(3, N))
        assert mu.shape == (3, N)
        assert torch.allclose(mu.sum(-1), torch.full((3,), total, dtype=torch.float64)), type(layer).__name__
        assert (mu >= lo - 1e-9).all() and (mu <= hi + 1e-9).all(), type(layer).__name__
    if name == "ranking":  # permutahedron: the k largest entries sum to at most n + ... + (n - k + 1)
        for layer in _regularized_layers(name):
            top = torch.sort(layer(theta), descending=True).values.cumsum(0)
            bound = torch.arange(N, 0, -1, dtype=torch.float64).cumsum(0)
            assert (top <= bound + 1e-8).all()


@settings(max_examples=20, deadline=None)
@given(theta=thetas, name=oracle_names, shift=st.floats(-5, 5, allow_nan=False))
def test_constant_shift_changes_nothing(theta, name, shift):
    # adding c to every coordinate adds the same c * sum(y) to every solution's score: Y cannot see it.
    # (Not for the multiplicative layer, whose noise scales with theta.)
    # the identity only holds where floating-point addition keeps every pairwise comparison of theta
    # (e.g. 2e-300 + 1 rounds to 1 and ties with 0 + 1): restrict to such shifts
    shifted = theta + shift
    assume(torch.equal(torch.sign(theta[:, None] - theta[None, :]), torch.sign(shifted[:, None] - shifted[None, :])))
    layers_a = [l for l in _all_layers(name) if not isinstance(l, PerturbedMultiplicative)]
    layers_b = [l for l in _all_layers(name) if not isinstance(l, PerturbedMultiplicative)]
    for la, lb in zip(layers_a, layers_b):
        assert torch.allclose(la(theta), lb(shifted), atol=1e-7), type(la).__name__
