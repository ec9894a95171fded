r"""Independent references for gradient tests: enumerated solution sets and large Monte Carlo expectations.

Nothing here imports colayers. Every solution set Y is enumerated from its definition (one-hot vectors,
k-subsets, rank vectors, monotone grid paths, permutation matrices, feasible knapsack packings), the
maximizer is ``Y[argmax(eta @ Y.T)]``, and every expectation is one large fixed-seed numpy sample:

* the perturbed mean :math:`\mu(\theta) = \mathbb E[y^*(\eta)]` for additive :math:`\eta = \theta + \varepsilon Z`
  or multiplicative :math:`\eta = \theta\odot e^{\varepsilon Z - \varepsilon^2/2}`;
* its VJP by the score identity :math:`J^\top v = \mathbb E[(\langle y^*(\eta), v\rangle - \langle\mu, v\rangle)
  \,\nabla_\theta\log p(\eta\mid\theta)]`, with the score derived from the noise density
  (Normal: :math:`Z/\varepsilon`; Gumbel, :math:`\rho(z) = e^{-z - e^{-z}}`: :math:`(1 - e^{-Z})/\varepsilon`;
  divided by θ for the multiplicative case);
* the exact expectation of a finite-difference rule at a given λ,
  :math:`\mathbb E_Z[(y^*(\theta + \varepsilon Z) - y^*(\theta - \lambda v + \varepsilon Z))/\lambda]`
  (and its central form), with common random numbers;
* closed forms: Gumbel argmax :math:`\mathrm{softmax}(\theta/\varepsilon)` with Jacobian
  :math:`(\mathrm{diag}\,p - pp^\top)/\varepsilon`; Normal argmax over two items :math:`\Phi`.

Each Monte Carlo reference comes with its standard error (the sample standard deviation over
:math:`\sqrt N`), so that a test's tolerance can add the reference's own error to the estimator's.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

EULER_GAMMA = 0.5772156649015329
N_REF = 200_000  # reference Monte Carlo draws


# --------------------------------------------------------------------------------------------- solution sets
def argmax_set(n: int) -> np.ndarray:
    """The n one-hot vectors, ``(n, n)``."""
    return np.eye(n)


def topk_set(n: int, k: int) -> np.ndarray:
    """The k-subsets of n items as 0/1 vectors, ``(C(n, k), n)``."""
    rows = []
    for subset in itertools.combinations(range(n), k):
        y = np.zeros(n)
        y[list(subset)] = 1.0
        rows.append(y)
    return np.array(rows)


def ranking_set(n: int) -> np.ndarray:
    """The rank vectors: every permutation of (1, ..., n), ``(n!, n)``."""
    return np.array(list(itertools.permutations(range(1, n + 1))), dtype=float)


def grid_edges(height: int, width: int) -> list[tuple[int, int]]:
    """Edges of the grid DAG in PyEPO's order: row by row, the right edges, then the down edges."""
    edges = []
    for r in range(height):
        for c in range(width - 1):
            edges.append((r * width + c, r * width + c + 1))
        if r < height - 1:
            for c in range(width):
                edges.append((r * width + c, (r + 1) * width + c))
    return edges


def grid_path_set(height: int, width: int) -> np.ndarray:
    """Every monotone (right/down) path from the top-left to the bottom-right vertex as an edge indicator."""
    edges = grid_edges(height, width)
    index = {e: i for i, e in enumerate(edges)}
    paths = []

    def walk(r, c, used):
        if (r, c) == (height - 1, width - 1):
            y = np.zeros(len(edges))
            y[used] = 1.0
            paths.append(y)
            return
        v = r * width + c
        if c + 1 < width:
            walk(r, c + 1, used + [index[(v, v + 1)]])
        if r + 1 < height:
            walk(r + 1, c, used + [index[(v, v + width)]])

    walk(0, 0, [])
    return np.array(paths)


def matching_set(n: int) -> np.ndarray:
    """The n! permutation matrices, flattened row-major, ``(n!, n*n)``."""
    rows = []
    for perm in itertools.permutations(range(n)):
        y = np.zeros((n, n))
        y[np.arange(n), perm] = 1.0
        rows.append(y.ravel())
    return np.array(rows)


def knapsack_set(weights, capacity) -> np.ndarray:
    """Every 0/1 packing of total weight at most ``capacity`` (the empty packing included)."""
    w = np.asarray(weights, dtype=float)
    rows = [np.array(bits, dtype=float) for bits in itertools.product((0, 1), repeat=len(w))]
    return np.array([y for y in rows if y @ w <= capacity + 1e-12])


def solve_index(Y: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """The index j of the maximizer ``argmax_j <eta, Y_j>`` for every row of ``eta`` (..., d)."""
    return np.argmax(eta @ Y.T, axis=-1)


def solve(Y: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """The maximizer ``Y[argmax_j <eta, Y_j>]`` for every row of ``eta`` (..., d)."""
    return Y[solve_index(Y, eta)]


# --------------------------------------------------------------------------------------------- noises
def sample_noise(kind: str, shape, rng: np.random.Generator, k: int = 1, terms: int = 10) -> np.ndarray:
    """Standard noise: ``"normal"``, ``"gumbel"`` or ``"sog"`` (I-MLE's Sum-of-Gamma(k, terms), τ = 1:
    :math:`\\frac1k[\\sum_{i\\le s}\\mathrm{Gamma}(1/k, k/i) - \\log s]`)."""
    if kind == "normal":
        return rng.standard_normal(shape)
    if kind == "gumbel":
        return rng.gumbel(size=shape)
    if kind == "sog":
        total = np.zeros(shape)
        for i in range(1, terms + 1):
            total += rng.gamma(1.0 / k, k / i, size=shape)
        return (total - math.log(terms)) / k
    raise ValueError(kind)


def score_of_noise(kind: str, z: np.ndarray) -> np.ndarray:
    r""":math:`-(\log\rho)'(z)`: Normal :math:`z`; Gumbel :math:`1 - e^{-z}`."""
    if kind == "normal":
        return z
    if kind == "gumbel":
        return 1.0 - np.exp(-z)
    raise ValueError(f"no closed-form density for {kind}")


def perturb(theta: np.ndarray, z: np.ndarray, epsilon: float, multiplicative: bool) -> np.ndarray:
    if multiplicative:
        return theta * np.exp(epsilon * z - epsilon**2 / 2)
    return theta + epsilon * z


# --------------------------------------------------------------------------------------------- references
class Estimate:
    """A reference value with its Monte Carlo standard error (0 for a closed form)."""

    def __init__(self, value: np.ndarray, se: np.ndarray | float = 0.0) -> None:
        self.value = np.asarray(value, dtype=float)
        self.se = np.broadcast_to(np.asarray(se, dtype=float), self.value.shape)

    def __repr__(self) -> str:
        return f"Estimate({self.value!r}, se={self.se!r})"


def _cached(fn):
    """Memoize a reference on its arguments (arrays keyed by their bytes): one computation per module run."""
    cache = {}

    def key(a):
        if isinstance(a, np.ndarray):
            return ("array", a.shape, a.dtype.str, a.tobytes())
        if isinstance(a, (list, tuple)):
            return tuple(key(x) for x in a)
        return a

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        k = (tuple(key(a) for a in args), tuple(sorted((n, key(a)) for n, a in kwargs.items())))
        if k not in cache:
            cache[k] = fn(*args, **kwargs)
        return cache[k]

    return wrapper


def _mean_se(x: np.ndarray) -> Estimate:
    n = x.shape[0]
    return Estimate(x.mean(0), x.std(0, ddof=1) / math.sqrt(n))


def _indexed_mean_se(table: np.ndarray, idx: np.ndarray) -> Estimate:
    """Mean and standard error of the rows ``table[idx]`` from the counts of each index (no (N, d) copy)."""
    n = idx.shape[0]
    freq = np.bincount(idx, minlength=table.shape[0]) / n
    mean = freq @ table
    var = np.maximum(freq @ table**2 - mean**2, 0.0) * n / (n - 1)
    return Estimate(mean, np.sqrt(var / n))


@functools.cache
def _noise_cache(kind: str, n: int, d: int, seed: int, k: int) -> np.ndarray:
    return sample_noise(kind, (n, d), np.random.default_rng(seed), k=k)


def noise(kind: str, n: int, d: int, seed: int = 12345, k: int = 1) -> np.ndarray:
    """A cached ``(n, d)`` block of reference noise (read-only)."""
    z = _noise_cache(kind, n, d, seed, k)
    z.flags.writeable = False
    return z


@_cached
def perturbed_mean(Y, theta, epsilon, kind="normal", multiplicative=False, n=N_REF, seed=12345, k=1) -> Estimate:
    """:math:`\\mu(\\theta) = \\mathbb E[y^*(\\eta)]` by Monte Carlo over ``n`` noise draws."""
    theta = np.asarray(theta, dtype=float).ravel()
    z = noise(kind, n, theta.size, seed, k)
    return _indexed_mean_se(Y, solve_index(Y, perturb(theta, z, epsilon, multiplicative)))


@_cached
def perturbed_vjp(Y, theta, v, epsilon, kind="normal", multiplicative=False, n=N_REF, seed=12345) -> Estimate:
    r""":math:`J^\top v` of the perturbed mean by the score identity (baseline :math:`\langle\mu, v\rangle`)."""
    theta = np.asarray(theta, dtype=float).ravel()
    v = np.asarray(v, dtype=float).ravel()
    z = noise(kind, n, theta.size, seed)
    w = (Y @ v)[solve_index(Y, perturb(theta, z, epsilon, multiplicative))]
    w = w - w.mean()
    score = score_of_noise(kind, z) / epsilon
    if multiplicative:
        score = score / theta
    return _mean_se(w[:, None] * score)


@_cached
def perturbed_max(Y, theta, epsilon, kind="normal", multiplicative=False, n=N_REF, seed=12345) -> Estimate:
    """:math:`\\mathbb E[\\max_y\\langle\\eta, y\\rangle]` (the perturbed Ω*)."""
    theta = np.asarray(theta, dtype=float).ravel()
    z = noise(kind, n, theta.size, seed)
    eta = perturb(theta, z, epsilon, multiplicative)
    return _mean_se((eta @ Y.T).max(-1))


@_cached
def multiplicative_fy_gradient(Y, theta, epsilon, kind="normal", n=N_REF, seed=12345) -> Estimate:
    r""":math:`\nabla_\theta\mathbb E[\max_y\langle\theta\odot F, y\rangle] = \mathbb E[F\odot y^*(\theta\odot F)]`
    with :math:`F = e^{\varepsilon Z - \varepsilon^2/2}` (envelope theorem, sample by sample)."""
    theta = np.asarray(theta, dtype=float).ravel()
    z = noise(kind, n, theta.size, seed)
    factor = np.exp(epsilon * z - epsilon**2 / 2)
    return _mean_se(factor * solve(Y, theta * factor))


@_cached
def finite_difference_expectation(
    Y, theta, v, epsilon, lambda_, kind="normal", two_sided=False, k=1, n=N_REF, seed=12345, alpha=1.0,
    target_temperature=None,
) -> Estimate:
    r"""The exact expectation of the finite-difference rule at λ (common random numbers; target side
    :math:`\alpha\theta + \tau' Z` with α = 1 and τ' = ε by default):
    :math:`\mathbb E_Z[(y^*(\theta + \varepsilon Z) - y^*(\theta - \lambda v + \varepsilon Z))/\lambda]`, or the
    central :math:`\mathbb E_Z[(y^*(\theta + \tfrac\lambda2 v + \varepsilon Z) - y^*(\theta - \tfrac\lambda2 v
    + \varepsilon Z))/\lambda]`. With ε = 0 it is the deterministic blackbox rule."""
    theta = np.asarray(theta, dtype=float).ravel()
    v = np.asarray(v, dtype=float).ravel()
    tau = epsilon if target_temperature is None else target_temperature
    z = noise(kind, n, theta.size, seed, k) if (epsilon or tau) else np.zeros((1, theta.size))
    base = theta + epsilon * z  # the input side
    target = alpha * theta + tau * z  # the target side (torch-imle's alpha and target noise temperature)
    if two_sided:
        upper, lower = solve_index(Y, target + 0.5 * lambda_ * v), solve_index(Y, target - 0.5 * lambda_ * v)
    else:
        upper, lower = solve_index(Y, base), solve_index(Y, target - lambda_ * v)
    m = Y.shape[0]
    table = ((Y[:, None, :] - Y[None, :, :]) / lambda_).reshape(m * m, -1)  # row i*m + j: (Y_i - Y_j) / lambda
    pair = upper * m + lower
    return Estimate(table[pair[0]]) if z.shape[0] == 1 else _indexed_mean_se(table, pair)


def softmax_argmax(theta, epsilon) -> tuple[np.ndarray, np.ndarray]:
    """Closed form of the Gumbel-perturbed argmax: ``softmax(theta / eps)`` and its Jacobian."""
    t = np.asarray(theta, dtype=float) / epsilon
    p = np.exp(t - t.max())
    p /= p.sum()
    return p, (np.diag(p) - np.outer(p, p)) / epsilon


def normal_argmax2(theta, epsilon) -> tuple[np.ndarray, np.ndarray]:
    r"""Closed form of the Normal-perturbed argmax over two items: :math:`\mu_1 = \Phi((\theta_1-\theta_2)/(\varepsilon\sqrt2))`."""
    t = np.asarray(theta, dtype=float)
    s = epsilon * math.sqrt(2.0)
    a = (t[0] - t[1]) / s
    p1 = 0.5 * (1.0 + math.erf(a / math.sqrt(2.0)))
    dens = math.exp(-a * a / 2) / math.sqrt(2 * math.pi) / s
    return np.array([p1, 1 - p1]), np.array([[dens, -dens], [-dens, dens]])


def enumerated_objective_max(Y, theta) -> float:
    """:math:`\\max_{y\\in Y}\\langle\\theta, y\\rangle`."""
    return float((Y @ np.asarray(theta, dtype=float).ravel()).max())


def central_difference(fn, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """Central finite differences of a scalar function, entry by entry."""
    x = np.asarray(x, dtype=float)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (fn(x + e) - fn(x - e)) / (2 * h)
    return g


# --------------------------------------------------------------------------------------------- assertions
def assert_mc_close(replicates, reference: Estimate, *, n_sigma: float = 5.0, wrong_factors=(), atol=1e-9, label=""):
    r"""Assert that the mean of R independent estimator replicates matches a reference.

    The tolerance is ``n_sigma`` standard errors of the difference,
    :math:`n_\sigma\sqrt{\hat\sigma^2/R + \mathrm{se}_\mathrm{ref}^2}` entrywise, with :math:`\hat\sigma^2` the
    replicates' sample variance (the estimator's variance at its S). Then, for each factor c in
    ``wrong_factors`` (a missing 1/S, 1/ε, 1/λ, a factor 2, a flipped sign...), assert that the SAME test
    would reject the estimator scaled by c: the check is shown to discriminate the constants, not only to pass.
    """
    reps = np.asarray(replicates, dtype=float)
    reps = reps.reshape(reps.shape[0], -1)
    ref = reference.value.ravel()
    mean = reps.mean(0)
    r = reps.shape[0]
    se = np.sqrt(reps.var(0, ddof=1) / r + reference.se.ravel() ** 2) if r > 1 else reference.se.ravel()
    tol = n_sigma * se + atol
    err = np.abs(mean - ref)
    assert np.all(err <= tol), (
        f"{label}: estimator mean {mean} differs from the reference {ref} by {err} > tolerance {tol} "
        f"({n_sigma} standard errors; R = {r})"
    )
    for c in wrong_factors:
        if c == 1:
            continue
        assert np.any(np.abs(c * mean - ref) > tol), (
            f"{label}: the test cannot tell the estimator from the estimator times {c} (|ref| {np.abs(ref)} vs "
            f"tolerance {tol}); raise R or pick a larger gradient"
        )
    return tol
