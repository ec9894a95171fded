"""SoftSort / SoftRank and the batched PAV solver against independent references.

References the code under test did not produce: scipy's isotonic regression (its own PAV), a brute force
over every partition into consecutive blocks (small n), cvxpy projections onto the permutahedron given by
its enumerated vertices, closed forms for n = 2, finite differences (gradcheck) and the hard sort/rank.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import isotonic_regression as scipy_isotonic
from torch.autograd import gradcheck

from colayers import Ranking, SoftRank, SoftSort, soft_rank, soft_sort
from colayers.layers.soft_sort import isotonic_regression

from ..conftest import DEVICES

REGS = ["l2", "kl"]
_TIGHT = {"solver": "CLARABEL", "tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10}


def _randn(*shape, seed=0, dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _brute_isotonic(s, w, reg):
    """Decreasing isotonic regression by enumerating every partition into consecutive blocks (each block at
    its own optimum), keeping the non-increasing ones, and taking the smallest objective."""
    n = len(s)
    best, best_v = math.inf, None
    for cuts in itertools.product([False, True], repeat=n - 1):
        bounds = [0] + [i + 1 for i, c in enumerate(cuts) if c] + [n]
        v = np.empty(n)
        for a, b in zip(bounds[:-1], bounds[1:]):
            if reg == "l2":
                v[a:b] = np.mean(s[a:b] - w[a:b])
            else:
                v[a:b] = np.log(np.sum(np.exp(s[a:b]))) - np.log(np.sum(np.exp(w[a:b])))
        if np.any(np.diff(v) > 1e-12):
            continue
        obj = 0.5 * np.sum((v - (s - w)) ** 2) if reg == "l2" else np.sum(np.exp(s - v) + np.exp(w) * v)
        if obj < best:
            best, best_v = obj, v
    return best_v


def test_isotonic_l2_matches_scipy_batched_with_ties():
    y = _randn(64, 40, seed=1)
    y[:8] = torch.round(y[:8])  # many ties
    y[8:16] = torch.sort(y[8:16], -1).values  # all violating: one block
    y[16:24] = torch.sort(y[16:24], -1, descending=True).values  # already isotonic
    ours = isotonic_regression(y)
    ref = np.stack([scipy_isotonic(row, increasing=False).x for row in y.numpy()])
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-12)


@pytest.mark.parametrize("reg", REGS)
def test_isotonic_matches_brute_force(reg):
    s, w = _randn(30, 6, seed=2) * 2, torch.sort(_randn(30, 6, seed=3), -1, descending=True).values
    ours = isotonic_regression(s, w, regularization=reg)
    for i in range(30):
        np.testing.assert_allclose(ours[i].numpy(), _brute_isotonic(s[i].numpy(), w[i].numpy(), reg), atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=7), st.sampled_from(REGS))
def test_isotonic_property_brute_force(values, reg):
    s = torch.tensor(values, dtype=torch.float64)
    w = torch.linspace(1.0, -1.0, len(values), dtype=torch.float64)
    ours = isotonic_regression(s, w, regularization=reg).numpy()
    assert np.all(np.diff(ours) <= 1e-12)
    np.testing.assert_allclose(ours, _brute_isotonic(s.numpy(), w.numpy(), reg), atol=1e-9)


def _perm_vertices(w):
    return np.array([list(p) for p in itertools.permutations(w)], dtype=np.float64)


def _cvxpy_regularized(c, vertices, reg, eps):
    """argmax over conv(vertices) of <c, mu> - eps * Omega(mu), as a convex program over the vertex weights."""
    import cvxpy as cp

    lam = cp.Variable(len(vertices), nonneg=True)
    mu = vertices.T @ lam
    omega = 0.5 * cp.sum_squares(mu) if reg == "l2" else -cp.sum(cp.entr(mu))
    cp.Problem(cp.Maximize(c @ mu - eps * omega), [cp.sum(lam) == 1]).solve(**_TIGHT)
    return vertices.T @ lam.value


@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("eps", [0.3, 1.7])
def test_soft_rank_is_the_regularized_argmax_over_the_permutahedron(reg, eps):
    theta = _randn(4, 4, seed=4) * 2
    vertices = _perm_vertices([1.0, 2.0, 3.0, 4.0])
    ours = soft_rank(theta, strength=eps, regularization=reg)
    for i in range(4):
        ref = _cvxpy_regularized(theta[i].numpy(), vertices, reg, eps)
        np.testing.assert_allclose(ours[i].numpy(), ref, atol=2e-5)
    desc = soft_rank(theta, strength=eps, regularization=reg, descending=True)
    torch.testing.assert_close(desc, soft_rank(-theta, strength=eps, regularization=reg))


@pytest.mark.parametrize("eps", [0.3, 1.7])
def test_soft_sort_l2_is_the_projection_onto_the_permutahedron_of_theta(eps):
    theta = _randn(4, 4, seed=5) * 2
    ours = soft_sort(theta, strength=eps, descending=True)
    asc = soft_sort(theta, strength=eps)
    rho = np.array([4.0, 3.0, 2.0, 1.0])
    for i in range(4):
        ref = _cvxpy_regularized(rho, _perm_vertices(theta[i].tolist()), "l2", eps)
        np.testing.assert_allclose(ours[i].numpy(), ref, atol=2e-5)
        ref_asc = _cvxpy_regularized(rho[::-1].copy(), _perm_vertices(theta[i].tolist()), "l2", eps)
        np.testing.assert_allclose(asc[i].numpy(), ref_asc, atol=2e-5)


def test_soft_sort_kl_is_the_log_of_the_kl_projection():
    """P_E(rho/eps, theta) = log argmin_{mu in P(e^theta)} KL(mu, e^{rho/eps}) (cvxpy, enumerated vertices)."""
    import cvxpy as cp

    eps = 0.8
    theta = _randn(3, 4, seed=6)
    ours = soft_sort(theta, strength=eps, regularization="kl", descending=True)
    rho = np.array([4.0, 3.0, 2.0, 1.0])
    for i in range(3):
        vertices = _perm_vertices(np.exp(theta[i].numpy()))
        lam = cp.Variable(len(vertices), nonneg=True)
        mu = vertices.T @ lam
        kl = cp.sum(cp.kl_div(mu, np.exp(rho / eps)))
        cp.Problem(cp.Minimize(kl), [cp.sum(lam) == 1]).solve(**_TIGHT)
        np.testing.assert_allclose(ours[i].numpy(), np.log(vertices.T @ lam.value), atol=2e-5)


@pytest.mark.parametrize("eps", [0.25, 0.7, 3.0])
def test_closed_forms_n2(eps):
    theta = torch.tensor([[0.4, -0.2], [-1.0, 2.0], [0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    d = theta[:, 0] - theta[:, 1]
    # L2 ranks: mu_1 = 1.5 + clip(d / (2 eps), -1/2, 1/2); KL ranks: mu_1 = clip(3 sigmoid(d / eps), 1, 2)
    r2 = 1.5 + torch.clamp(d / (2 * eps), -0.5, 0.5)
    rk = torch.clamp(3 * torch.sigmoid(d / eps), 1.0, 2.0)
    torch.testing.assert_close(soft_rank(theta, strength=eps)[:, 0], r2)
    torch.testing.assert_close(soft_rank(theta, strength=eps, regularization="kl")[:, 0], rk)
    # L2 sort (ascending): mean -+ min(1/(2 eps), |d|/2)
    m, t = theta.mean(-1), torch.minimum(torch.full_like(d, 0.5 / eps), d.abs() / 2)
    torch.testing.assert_close(soft_sort(theta, strength=eps), torch.stack([m - t, m + t], -1))
    # Jacobians of the closed forms
    kl_rank = soft_rank(theta, strength=eps, regularization="kl")[:, 0]
    pairs = [(soft_rank(theta, strength=eps)[:, 0], r2), (kl_rank, rk)]
    for ours, ref in pairs:
        g1 = torch.autograd.grad(ours.sum(), theta, retain_graph=True)[0]
        g2 = torch.autograd.grad(ref.sum(), theta, retain_graph=True)[0]
        torch.testing.assert_close(g1[:2], g2[:2])  # row 2 sits at a tie (kink of neither form: d = 0)


@pytest.mark.parametrize("fn", [soft_sort, soft_rank], ids=["sort", "rank"])
@pytest.mark.parametrize("reg", REGS)
@pytest.mark.parametrize("descending", [False, True])
def test_gradcheck(fn, reg, descending):
    theta = (_randn(3, 6, seed=7) * 1.5).requires_grad_(True)
    assert gradcheck(lambda t: fn(t, strength=0.6, regularization=reg, descending=descending), (theta,))


@pytest.mark.parametrize("reg", REGS)
def test_gradcheck_isotonic_both_arguments(reg):
    s = (_randn(4, 7, seed=8) * 2).requires_grad_(True)
    w = _randn(4, 7, seed=9).requires_grad_(True)
    assert gradcheck(lambda a, b: isotonic_regression(a, b, regularization=reg), (s, w))


@pytest.mark.parametrize("reg", REGS)
def test_small_strength_gives_the_hard_sort_and_ranks(reg):
    theta = _randn(20, 9, seed=10)
    torch.testing.assert_close(soft_sort(theta, strength=1e-4, regularization=reg), torch.sort(theta, -1).values)
    torch.testing.assert_close(
        soft_sort(theta, strength=1e-4, regularization=reg, descending=True),
        torch.sort(theta, -1, descending=True).values,
    )
    torch.testing.assert_close(soft_rank(theta, strength=1e-4, regularization=reg), Ranking()(theta))
    torch.testing.assert_close(soft_rank(theta, strength=1e-4, regularization=reg, descending=True), Ranking()(-theta))


def test_large_strength_gives_the_mean():
    theta = _randn(5, 6, seed=11)
    mean = theta.mean(-1, keepdim=True).expand(5, 6)
    torch.testing.assert_close(soft_sort(theta, strength=1e6), mean, atol=1e-5, rtol=0)
    middle = torch.full((5, 6), 3.5, dtype=torch.float64)
    torch.testing.assert_close(soft_rank(theta, strength=1e6), middle, atol=1e-5, rtol=0)


@pytest.mark.parametrize("reg", REGS)
def test_outputs_in_the_permutahedron_and_sorted(reg):
    theta = _randn(50, 8, seed=12) * 3
    r = soft_rank(theta, strength=0.9, regularization=reg)
    # majorization: the k largest entries sum to at most n + ... + (n-k+1), equality at k = n
    top = torch.sort(r, -1, descending=True).values.cumsum(-1)
    bound = torch.arange(8, 0, -1, dtype=torch.float64).cumsum(0)
    assert bool((top <= bound + 1e-9).all())
    torch.testing.assert_close(top[:, -1], torch.full((50,), 36.0, dtype=torch.float64))
    s = soft_sort(theta, strength=0.9, regularization=reg)
    assert bool((s[:, 1:] >= s[:, :-1] - 1e-12).all())
    if reg == "l2":
        torch.testing.assert_close(s.sum(-1), theta.sum(-1))


@pytest.mark.parametrize("reg", REGS)
def test_batched_equals_loop_and_batch_shapes(reg):
    theta = _randn(2, 3, 5, seed=13)
    for fn in (soft_sort, soft_rank):
        batched = fn(theta, strength=0.5, regularization=reg)
        rows = [[fn(theta[i, j], strength=0.5, regularization=reg) for j in range(3)] for i in range(2)]
        loop = torch.stack([torch.stack(r) for r in rows])
        torch.testing.assert_close(batched, loop, rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_device_dtype_and_empty(device, dtype):
    theta = _randn(4, 6, seed=14, dtype=dtype).to(device).requires_grad_(True)
    for layer in (SoftSort(strength=0.5), SoftRank(strength=0.5, regularization="kl")):
        out = layer(theta)
        assert out.dtype == dtype and out.device == theta.device
        (g,) = torch.autograd.grad(out.square().sum(), theta)
        assert g.device == theta.device and g.dtype == dtype and bool(torch.isfinite(g).all())
        assert layer(torch.empty(0, 6, dtype=dtype, device=device)).shape == (0, 6)
        assert layer(torch.empty(3, 0, dtype=dtype, device=device)).shape == (3, 0)


def test_large_magnitudes_stay_finite():
    theta = torch.tensor([[3e30, -1e30, 0.0, 1e29]], dtype=torch.float32)
    for reg in REGS:
        torch.testing.assert_close(soft_rank(theta, strength=1.0, regularization=reg), Ranking()(theta))
        # soft sorts of values this spread are close to their mean: compare with the float64 computation
        ref = soft_sort(theta.double(), strength=1.0, regularization=reg).float()
        torch.testing.assert_close(soft_sort(theta, strength=1.0, regularization=reg), ref)
        tiny = theta * 1e-30
        torch.testing.assert_close(soft_sort(tiny, strength=1e-32, regularization=reg), torch.sort(tiny).values)


def test_omega_and_errors():
    mu = torch.tensor([[1.0, 3.0, 2.0]], dtype=torch.float64)
    torch.testing.assert_close(SoftRank(strength=0.5).omega(mu), torch.tensor([3.5], dtype=torch.float64))
    kl = SoftRank(strength=0.5, regularization="kl").omega(mu)
    torch.testing.assert_close(kl, torch.tensor([0.5 * (3 * math.log(3) + 2 * math.log(2))], dtype=torch.float64))
    assert not hasattr(SoftRank(descending=True), "omega")
    with pytest.raises(ValueError, match="regularization must be one of"):
        SoftSort(regularization="entropy")
    with pytest.raises(ValueError, match="strength must be > 0"):
        SoftRank(strength=0.0)
    with pytest.raises(ValueError, match="strength must be a finite number"):
        soft_rank(torch.zeros(3), strength=math.inf)
    with pytest.raises(TypeError, match="theta must have a floating-point dtype"):
        soft_sort(torch.arange(3))
    with pytest.raises(ValueError, match="theta must be finite"):
        soft_sort(torch.tensor([0.0, math.nan]))
    with pytest.raises(ValueError, match="at least 1 dimension"):
        soft_rank(torch.tensor(1.0))
