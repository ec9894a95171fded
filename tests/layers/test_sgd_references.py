r"""Training checks with plain SGD at a stated learning rate, against reference trajectories.

A linear model :math:`\theta = XW` (W starts at 0: no unseeded initialisation) is trained by
:math:`W \leftarrow W - \eta\,\nabla_W L` with the library's gradient, and the same T steps are replayed in numpy
with the exact gradient (a closed form or an enumeration of Y). Adam would hide a wrong scale of the gradient;
plain SGD does not: each test also replays the reference with the gradient times a wrong constant (×S, ×ε,
×λ, ×2, ½) and asserts that trajectory ends farther from the library's than the tolerance.

Tolerance for a stochastic gradient: after T steps the weights differ from the exact trajectory by
:math:`\eta\sum_t \xi_t` (the map is contracting near the path, which only shrinks this), so
:math:`|W_T - W_T^{\rm ref}| \le n_\sigma\,\eta\sqrt T\,\sigma_g` entrywise, with :math:`\sigma_g` the
standard deviation of one gradient estimate, bounded or estimated as stated in each test.
"""

from __future__ import annotations

import math

import numpy as np
import torch

import colayers as cl
from colayers.perturb import Gumbel

from .. import references as ref

DT = torch.float64
N_SIGMA = 5.0


def _data(n=48, p=3, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p))
    w_true = rng.normal(size=(p, d)) * 2.0
    return x, w_true


def _softmax(t):
    e = np.exp(t - t.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _sgd(grad_fn, w0, lr, steps):
    w = w0.copy()
    for _ in range(steps):
        w = w - lr * grad_fn(w)
    return w


def test_fenchel_young_gumbel_sgd_follows_the_softmax_trajectory():
    """FY loss of PerturbedAdditive(Gumbel, ε) on argmax = ε·CE(θ/ε): exact gradient Xᵀ(softmax(XW/ε) − Y)/n.
    σ_g bound: each entry of ŷ − μ has variance ≤ 1/(4S), so σ_g ≤ sqrt(Σ_i x_ij² / (4 S n²))."""
    x, w_true = _data()
    n, p = x.shape
    d, eps, S, lr, T = 5, 0.5, 128, 2.0, 12
    Y = ref.argmax_set(d)
    y = ref.solve(Y, x @ w_true)
    loss_fn = cl.FenchelYoungLoss(cl.PerturbedAdditive(cl.ArgmaxOneHot(), epsilon=eps, num_samples=S, noise=Gumbel(),
                                                       seed=0))
    X, Yt = torch.tensor(x, dtype=DT), torch.tensor(y, dtype=DT)
    w = torch.zeros(p, d, dtype=DT, requires_grad=True)
    opt = torch.optim.SGD([w], lr=lr)
    for _ in range(T):
        opt.zero_grad()
        loss_fn(X @ w, Yt).backward()
        opt.step()

    def exact(c=1.0):
        return lambda W: c * x.T @ (_softmax(x @ W / eps) - y) / n

    w_ref = _sgd(exact(), np.zeros((p, d)), lr, T)
    sigma_g = np.sqrt((x**2).sum(0) / (4 * S * n**2))[:, None]
    tol = N_SIGMA * lr * math.sqrt(T) * sigma_g
    got = w.detach().numpy()
    assert np.all(np.abs(got - w_ref) <= tol), (np.abs(got - w_ref).max(), tol.min())
    for c in (S, eps, 1 / eps, 2.0, 0.5):
        assert np.any(np.abs(_sgd(exact(c), np.zeros((p, d)), lr, T) - got) > tol), c
    # and it learned: training accuracy of the argmax well above chance
    assert (np.argmax(x @ got, -1) == np.argmax(y, -1)).mean() > 0.8


def test_perturbed_layer_sgd_through_the_score_function_follows_the_softmax_trajectory():
    """MSE through PerturbedAdditive(Gumbel, ε) on argmax, μ = softmax(θ/ε): the layer's score-function VJP
    against the exact chain rule. σ_g is estimated from 40 replicate gradients of the layer at W = 0 (stated)."""
    x, w_true = _data(n=32, seed=1)
    n, p = x.shape
    d, eps, S, lr, T = 5, 0.4, 1024, 2.0, 20
    y = ref.solve(ref.argmax_set(d), x @ w_true)
    X, Yt = torch.tensor(x, dtype=DT), torch.tensor(y, dtype=DT)
    layer = cl.PerturbedAdditive(cl.ArgmaxOneHot(), epsilon=eps, num_samples=S, noise=Gumbel(), seed=1)

    def loss(th):
        return ((layer(th) - Yt) ** 2).sum() / n

    w = torch.zeros(p, d, dtype=DT, requires_grad=True)
    opt = torch.optim.SGD([w], lr=lr)
    for _ in range(T):
        opt.zero_grad()
        loss(X @ w).backward()
        opt.step()

    def exact(c=1.0):
        def grad(W):
            mu = _softmax(x @ W / eps)
            g_mu = 2 * (mu - y) / n
            g_theta = (mu * g_mu - mu * (mu * g_mu).sum(-1, keepdims=True)) / eps  # (diag mu - mu mu^T)/eps
            return c * x.T @ g_theta

        return grad

    # sigma_g: the standard deviation of 40 replicate gradients of the layer at W = 0, times 1.3 to cover the
    # sampling error of a 40-sample standard deviation (its relative SE is about 1/sqrt(2*39) = 0.11)
    w0 = torch.zeros(p, d, dtype=DT, requires_grad=True)
    samples = []
    for _ in range(40):
        w0.grad = None
        loss(X @ w0).backward()
        samples.append(w0.grad.numpy().copy())
    sigma_g = np.std(samples, axis=0, ddof=1) * 1.3 + 1e-12
    w_ref = _sgd(exact(), np.zeros((p, d)), lr, T)
    tol = N_SIGMA * lr * math.sqrt(T) * sigma_g
    got = w.detach().numpy()
    assert np.all(np.abs(got - w_ref) <= tol), (np.abs(got - w_ref) / tol).max()
    for c in (S, eps, 1 / eps, 2.0, 0.5, -1.0):
        assert np.any(np.abs(_sgd(exact(c), np.zeros((p, d)), lr, T) - got) > tol), c


def test_blackbox_sgd_replays_the_enumerated_trajectory_exactly():
    """Blackbox (λ ≠ 1) on top-2 of 5 with loss ‖y − ȳ‖²: the trajectory of the interpolation rule computed by
    enumeration, step for step (deterministic: tolerance 1e-9)."""
    x, w_true = _data(n=24, seed=2)
    n, p = x.shape
    d, lam, lr, T = 5, 3.0, 0.2, 25
    Y = ref.topk_set(d, 2)
    y = ref.solve(Y, x @ w_true)
    layer = cl.Blackbox(cl.TopKSubset(2), lambda_=lam)
    X, Yt = torch.tensor(x, dtype=DT), torch.tensor(y, dtype=DT)
    w = torch.full((p, d), 0.01, dtype=DT).requires_grad_(True)
    opt = torch.optim.SGD([w], lr=lr)
    losses = []
    for _ in range(T):
        opt.zero_grad()
        out = layer(X @ w)
        loss = ((out - Yt) ** 2).sum() / n
        losses.append(loss.detach().item())
        loss.backward()
        opt.step()

    def exact(c=1.0):
        def grad(W):
            theta = x @ W
            yh = ref.solve(Y, theta)
            dy = 2 * (yh - y) / n
            return c * x.T @ ((yh - ref.solve(Y, theta - lam * dy)) / lam)

        return grad

    w0 = np.full((p, d), 0.01)
    got = w.detach().numpy()
    np.testing.assert_allclose(got, _sgd(exact(), w0, lr, T), atol=1e-9)
    for c in (lam, 1 / lam, 2.0, 0.5):
        assert not np.allclose(_sgd(exact(c), w0, lr, T), got, atol=1e-6), c
    assert losses[-1] < losses[0]
