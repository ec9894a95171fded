r"""Benchmark problems for comparative studies: seeded data generators, oracles and default models.

A :class:`Problem` bundles a training and a test split of features ``x``, true scores ``theta`` and optimal
solutions ``y = oracle(theta)``, the oracle, and a factory for a fresh default model ``x -> theta``. Every
problem follows the library's MAXIMIZATION convention: for a cost-minimization problem (``sense == "min"``)
the true scores are ``theta = -cost`` and the model outputs ``-predicted cost``.

Problems (:data:`PROBLEMS`, built by :func:`make_problem`):

* ``"shortest_path"`` — Elmachtoub & Grigas' generator on PyEPO's grid DAG (:func:`shortest_path_problem`);
* ``"warcraft"`` — procedurally generated terrain images, 8-neighbour vertex-weighted paths
  (:func:`warcraft_problem`, generator in :mod:`colayers.studies.warcraft`);
* ``"topk"`` and ``"ranking"`` — k-subset selection and ranking of items whose values are a noisy
  polynomial of features (:func:`topk_problem`, :func:`ranking_problem`);
* ``"knapsack"`` — PyEPO's knapsack generator (:func:`knapsack_problem`);
* ``"matching"`` — maximum-weight perfect bipartite matching with feature-dependent edge weights
  (:func:`matching_problem`).

Data are generated on the CPU from the seed alone and then moved to ``device``, so the same seed gives
the same data on every device. All tensors are float32.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .._validation import check_int_at_least
from ..oracles.base import Oracle, SolverOracle
from ..oracles.grid import GridDAGShortestPath, GridVertexShortestPath
from .models import LinearModel

__all__ = [
    "Problem",
    "make_problem",
    "PROBLEMS",
    "shortest_path_problem",
    "warcraft_problem",
    "topk_problem",
    "ranking_problem",
    "knapsack_problem",
    "matching_problem",
    "polynomial_costs",
]


@dataclass
class Problem:
    r"""A benchmark problem: data splits, the oracle, the default model and the sign convention.

    Attributes:
        name: the problem's name in :data:`PROBLEMS`.
        oracle: the maximization oracle; ``y = oracle(theta)``.
        x_train, theta_train, y_train: training features ``(n, *feat)``, true scores ``(n, *event)`` and
            optimal solutions ``(n, *event)``.
        x_test, theta_test, y_test: the held-out split.
        make_model: returns a fresh default model mapping ``x (B, *feat)`` to ``theta (B, *event)``.
        event_ndim: number of trailing dimensions of ``theta`` that form one instance.
        sense: ``"min"`` if the underlying problem minimizes costs (then ``theta = -cost``), else ``"max"``.
        description: a one-line description for reports.
        params: the generator parameters (seed included), for reports.
        extras: problem-specific data beyond the contract (e.g. Warcraft's terrain codes and its direct
            no-oracle model factory ``extras["make_direct_model"]``); empty for most problems.

    Example:
        >>> p = make_problem("shortest_path", seed=0, n=8, n_test=4, grid=(3, 3))
        >>> p.x_train.shape, p.theta_train.shape, p.y_train.shape, p.sense, p.event_shape
        (torch.Size([8, 5]), torch.Size([8, 12]), torch.Size([8, 12]), 'min', (12,))
    """

    name: str
    oracle: Oracle
    x_train: torch.Tensor
    theta_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    theta_test: torch.Tensor
    y_test: torch.Tensor
    make_model: Callable[[], nn.Module]
    event_ndim: int
    sense: str
    description: str
    params: dict = field(default_factory=dict)
    extras: dict = field(default_factory=dict)

    @property
    def event_shape(self) -> tuple[int, ...]:
        """The shape of one instance of ``theta``."""
        return tuple(self.theta_train.shape[self.theta_train.ndim - self.event_ndim :])

    def __repr__(self) -> str:
        return (
            f"Problem({self.name!r}, sense={self.sense!r}, n_train={self.x_train.shape[0]}, "
            f"n_test={self.x_test.shape[0]}, feat={tuple(self.x_train.shape[1:])}, event={self.event_shape}, "
            f"device={self.x_train.device})"
        )


# ------------------------------------------------------------------------------------------------------
# shared helpers


def _check_real(name: str, value: float, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__} {value!r}")
    if not (value >= low and (high is None or value <= high)):
        rng = f"[{low}, {high}]" if high is not None else f"≥ {low}"
        raise ValueError(f"{name} must be in {rng}; got {value!r}")
    return float(value)


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an integer in [0, 2**32); got {seed!r}")
    return int(seed)


def _f32(array: np.ndarray | torch.Tensor, device: torch.device) -> torch.Tensor:
    t = torch.as_tensor(array)
    return t.to(device=device, dtype=torch.float32)


def polynomial_costs(x: np.ndarray, B: np.ndarray, deg: int, noise: np.ndarray) -> np.ndarray:
    r"""Elmachtoub & Grigas' polynomial map from features to costs (PyEPO's ``genData``).

    .. math::  c_{ij} = \frac{\bigl(\tfrac{1}{\sqrt p}(B x_i)_j + 3\bigr)^{\deg} + 1}{3.5^{\deg}}\;\varepsilon_{ij}

    with :math:`B \in \{0,1\}^{d\times p}`, :math:`x_i \in \mathbb{R}^p` and multiplicative noise
    :math:`\varepsilon_{ij}` (PyEPO draws it from :math:`U[1-\bar\varepsilon, 1+\bar\varepsilon]`).

    Args:
        x: features ``(n, p)``.
        B: the 0/1 matrix ``(d, p)``.
        deg: the polynomial degree (≥ 1).
        noise: the multiplicative noise ``(n, d)``.

    Returns:
        costs ``(n, d)`` (float64).

    Example:
        >>> import numpy as np
        >>> polynomial_costs(np.zeros((1, 4)), np.ones((2, 4)), 2, np.ones((1, 2)))  # (3^2 + 1) / 3.5^2
        array([[0.81632653, 0.81632653]])
    """
    p = x.shape[-1]
    return ((x @ B.T / np.sqrt(p) + 3.0) ** deg + 1.0) / 3.5**deg * noise


def _pyepo_features_costs(
    rnd: np.random.RandomState, n: int, p: int, d: int, deg: int, noise: float
) -> tuple[np.ndarray, np.ndarray]:
    """B, x, eps drawn in PyEPO's order (Bernoulli B, then Gaussian x, then uniform noise)."""
    B = rnd.binomial(1, 0.5, (d, p))
    x = rnd.normal(0.0, 1.0, (n, p))
    eps = rnd.uniform(1.0 - noise, 1.0 + noise, (n, d))
    return x, polynomial_costs(x, B, deg, eps)


def _split(n: int, *tensors: torch.Tensor) -> list[torch.Tensor]:
    out = []
    for t in tensors:
        out += [t[:n].contiguous(), t[n:].contiguous()]
    return out


def _check_sizes(n: int, n_test: int, p: int) -> None:
    check_int_at_least("n", n, 1)
    check_int_at_least("n_test", n_test, 1)
    check_int_at_least("p", p, 1)


def _feature_values(seed: int, n: int, p: int, num_items: int, deg: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """Features and polynomial values of ``n`` instances from a fresh ``RandomState(seed)`` (PyEPO's order)."""
    rnd = np.random.RandomState(seed)
    return _pyepo_features_costs(rnd, n, p, num_items, deg, noise)


def _check_poly(deg: int, noise: float, what: str = "values") -> tuple[int, float]:
    deg = check_int_at_least("deg", deg, 1)
    noise = _check_real("noise", noise, 0.0, 1.0)
    if noise >= 1.0:
        raise ValueError(f"noise must be in [0, 1) so that {what} stay positive; got {noise!r}")
    return deg, noise


def _solve_and_split(
    name: str,
    oracle: Oracle,
    x: torch.Tensor,
    theta: torch.Tensor,
    n: int,
    *,
    make_model: Callable[[], nn.Module],
    event_ndim: int,
    sense: str,
    description: str,
    params: dict,
    extras: dict | None = None,
) -> Problem:
    """Solve every instance of ``theta`` with ``oracle``; the first ``n`` instances train, the rest test."""
    y = oracle(theta)
    x_tr, x_te, th_tr, th_te, y_tr, y_te = _split(n, x, theta, y)
    return Problem(
        name=name,
        oracle=oracle,
        x_train=x_tr,
        theta_train=th_tr,
        y_train=y_tr,
        x_test=x_te,
        theta_test=th_te,
        y_test=y_te,
        make_model=make_model,
        event_ndim=event_ndim,
        sense=sense,
        description=description,
        params=params,
        extras={} if extras is None else extras,
    )


# ------------------------------------------------------------------------------------------------------
# oracles, with temporary fallbacks while colayers.oracles grows


# ------------------------------------------------------------------------------------------------------
# shortest path on the grid DAG


def shortest_path_problem(
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n: int = 1000,
    n_test: int = 1000,
    p: int = 5,
    grid: Sequence[int] = (5, 5),
    deg: int = 4,
    noise: float = 0.5,
) -> Problem:
    r"""Shortest path on a grid DAG with Elmachtoub & Grigas' cost generator (PyEPO's benchmark).

    The graph is the ``h × w`` grid whose edges go right or down; a path runs from the top-left to the
    bottom-right vertex (``d = (h-1)w + (w-1)h`` edges, 40 for 5×5). With
    :math:`B \in \{0,1\}^{d\times p}` i.i.d. Bernoulli(0.5) (shared by all instances), features
    :math:`x_i \sim \mathcal{N}(0, I_p)` and noise :math:`\varepsilon_{ij} \sim U[1-\bar\varepsilon,
    1+\bar\varepsilon]`, the edge costs are

    .. math::  c_{ij} = \frac{\bigl(\tfrac{1}{\sqrt p}(B x_i)_j + 3\bigr)^{\deg} + 1}{3.5^{\deg}}\;\varepsilon_{ij}

    (Elmachtoub & Grigas, *Smart "Predict, then Optimize"*, Management Science 2022; Tang & Khalil, *PyEPO*,
    2022, ``pyepo.data.shortestpath.genData``). The draws follow PyEPO's order with a
    ``numpy.random.RandomState(seed)``, so the ``n + n_test`` instances equal PyEPO's
    ``genData(n + n_test, p, grid, deg, noise, seed)`` (the first ``n`` form the training split), edge for
    edge: :class:`~colayers.oracles.GridDAGShortestPath` lists its edges (``oracle.edges``) in PyEPO's order
    (row by row, the row's right edges then its down edges), so the cost columns are used as drawn.

    Sign convention: ``sense="min"``, ``theta = -c``, ``y = oracle(theta)`` the 0/1 edge indicator of the
    shortest path (edge order ``oracle.edges``). Default model: :class:`~colayers.studies.LinearModel`
    ``p -> d`` with bias, negated (``theta = -(W x + b)``), PyEPO's linear regression.

    Args:
        seed: the data seed.
        device: where the tensors live.
        n, n_test: training and test sizes.
        p: feature dimension.
        grid: ``(h, w)`` vertices.
        deg: polynomial degree (≥ 1; 1 makes the costs linear in x, larger is more misspecified).
        noise: half-width :math:`\bar\varepsilon \in [0, 1)` of the multiplicative noise.

    Returns:
        the :class:`Problem`.

    Example:
        >>> prob = shortest_path_problem(seed=1, n=10, n_test=5)
        >>> prob.theta_train.shape, prob.y_train.sum(dim=1).unique().tolist()  # 8 edges on every path
        (torch.Size([10, 40]), [8.0])
        >>> bool((prob.theta_train < 0).all())
        True
    """
    seed = _check_seed(seed)
    _check_sizes(n, n_test, p)
    h, w = _grid("grid", grid)
    deg, noise = _check_poly(deg, noise, what="costs")
    device = torch.device(device)
    oracle = GridDAGShortestPath(h, w)
    d = oracle.num_edges
    x, c = _feature_values(seed, n + n_test, p, d, deg, noise)
    # PyEPO's column j is the cost of its j-th edge, which is oracle.edges[j]: no reordering
    return _solve_and_split(
        "shortest_path", oracle, _f32(x, device), -_f32(c, device), n,
        make_model=lambda: LinearModel(p, d, negate=True).to(device),
        event_ndim=1,
        sense="min",
        description=f"shortest path on a {h}x{w} grid DAG, PyEPO generator (p={p}, deg={deg}, noise={noise})",
        params=dict(seed=seed, n=n, n_test=n_test, p=p, grid=(h, w), deg=deg, noise=noise),
    )  # fmt: skip


def _grid(name: str, grid: Sequence[int]) -> tuple[int, int]:
    try:
        h, w = grid
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (height, width) of integers ≥ 2; got {grid!r}") from None
    for v in (h, w):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 2:
            raise ValueError(f"{name} must be a pair (height, width) of integers ≥ 2; got {grid!r}")
    return int(h), int(w)


# ------------------------------------------------------------------------------------------------------
# Warcraft-like maps


def warcraft_problem(
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n: int = 1000,
    n_test: int = 200,
    size: int = 12,
) -> Problem:
    r"""Warcraft-like terrain maps: images to tile costs, 8-neighbour vertex-weighted shortest paths.

    ``n + n_test`` maps of ``size × size`` tiles are generated by :func:`colayers.studies.warcraft.generate_maps`
    from a CPU ``torch.Generator`` seeded with ``seed`` (training maps first): spatially coherent terrain of six
    types with fixed costs (road 0.8, grass 1.2, sand 2.5, forest 5.3, mountain 7.7, water 9.2), rendered as
    RGB images with 8×8 textured pixels per tile. Features ``x`` are the images ``(N, 3, 8k, 8k)`` in [0, 1].

    Sign convention: ``sense="min"``, ``theta = -cost`` of shape ``(N, k, k)`` (negative), ``y`` the 0/1 tiles of
    the shortest path from the top-left to the bottom-right tile (8 neighbours, the cost of a path is the sum
    of its tiles' costs, both ends included), by :class:`~colayers.oracles.GridVertexShortestPath`.
    Default model: :class:`~colayers.studies.WarcraftCNN` (``theta = -(softplus(z) + 0.01)``).
    ``extras`` holds ``terrain_train``/``terrain_test`` (int64 type codes) and ``make_direct_model`` (a fresh
    :class:`~colayers.studies.DirectPathCNN` mapping images to path logits, for the no-oracle baseline).

    Reference: Vlastelica et al., *Differentiation of Blackbox Combinatorial Solvers*, ICLR 2020 (the
    original data set; ours is generated, see the module :mod:`colayers.studies.warcraft`).

    Args:
        seed: the data seed.
        device: where the tensors live.
        n, n_test: numbers of training and test maps.
        size: tiles per side k (the benchmark sizes are 12, 18, 24, 30).

    Returns:
        the :class:`Problem`.

    Example:
        >>> prob = warcraft_problem(seed=0, n=4, n_test=2)
        >>> prob.x_train.shape, prob.theta_train.shape, prob.event_ndim
        (torch.Size([4, 3, 96, 96]), torch.Size([4, 12, 12]), 2)
        >>> bool((prob.y_train[:, 0, 0] == 1).all() and (prob.y_train[:, -1, -1] == 1).all())
        True
    """
    from .models import DirectPathCNN, WarcraftCNN
    from .warcraft import generate_maps

    seed = _check_seed(seed)
    check_int_at_least("n", n, 1)
    check_int_at_least("n_test", n_test, 1)
    size = check_int_at_least("size", size, 2)
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    train = generate_maps(n, size, generator=generator)
    test = generate_maps(n_test, size, generator=generator)
    oracle = GridVertexShortestPath(size, size)
    theta_tr, theta_te = -_f32(train.costs, device), -_f32(test.costs, device)
    return Problem(
        name="warcraft",
        oracle=oracle,
        x_train=_f32(train.images, device),
        theta_train=theta_tr,
        y_train=oracle(theta_tr),
        x_test=_f32(test.images, device),
        theta_test=theta_te,
        y_test=oracle(theta_te),
        make_model=lambda: WarcraftCNN().to(device),
        event_ndim=2,
        sense="min",
        description=f"Warcraft-like {size}x{size} terrain maps, 8-neighbour vertex-weighted shortest path",
        params=dict(seed=seed, n=n, n_test=n_test, size=size),
        extras=dict(
            terrain_train=train.terrain.to(device),
            terrain_test=test.terrain.to(device),
            make_direct_model=lambda: DirectPathCNN().to(device),
        ),
    )


# ------------------------------------------------------------------------------------------------------
# k-subset selection and ranking


def topk_problem(
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n: int = 1000,
    n_test: int = 1000,
    p: int = 5,
    num_items: int = 20,
    k: int = 5,
    deg: int = 4,
    noise: float = 0.5,
) -> Problem:
    r"""k-subset selection: pick the ``k`` items of largest value, values a noisy polynomial of features.

    Item values follow Elmachtoub & Grigas' generator (as in :func:`shortest_path_problem`, with ``d =
    num_items``): :math:`v_{ij} = [(\tfrac{1}{\sqrt p}(B x_i)_j + 3)^{\deg} + 1] / 3.5^{\deg}\,\varepsilon_{ij}`,
    :math:`B \in \{0,1\}^{m\times p}` Bernoulli(0.5), :math:`x_i \sim \mathcal{N}(0, I_p)`,
    :math:`\varepsilon_{ij} \sim U[1-\bar\varepsilon, 1+\bar\varepsilon]` (numpy ``RandomState(seed)``).

    Sign convention: ``sense="max"``, ``theta = v > 0``, ``y = TopKSubset(k)(theta)`` the 0/1 indicator of the
    k most valuable items. Default model: :class:`~colayers.studies.LinearModel` ``p -> num_items`` with bias.

    Args:
        seed, device: see :func:`make_problem`.
        n, n_test: training and test sizes.
        p: feature dimension.
        num_items: number of items m.
        k: subset size, 1 ≤ k ≤ m.
        deg: polynomial degree.
        noise: multiplicative noise half-width in [0, 1).

    Example:
        >>> prob = topk_problem(seed=0, n=6, n_test=3, num_items=8, k=3)
        >>> prob.y_train.sum(dim=1).tolist()
        [3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    """
    from ..oracles import TopKSubset

    seed = _check_seed(seed)
    _check_sizes(n, n_test, p)
    num_items = check_int_at_least("num_items", num_items, 2)
    k = check_int_at_least("k", k, 1)
    if k > num_items:
        raise ValueError(f"k must be an integer in [1, num_items={num_items}]; got {k}")
    deg, noise = _check_poly(deg, noise)
    device = torch.device(device)
    x, v = _feature_values(seed, n + n_test, p, num_items, deg, noise)
    return _solve_and_split(
        "topk", TopKSubset(k, num_items), _f32(x, device), _f32(v, device), n,
        make_model=lambda: LinearModel(p, num_items).to(device),
        event_ndim=1,
        sense="max",
        description=f"top-{k} of {num_items} items, values a degree-{deg} polynomial of {p} features (noise {noise})",
        params=dict(seed=seed, n=n, n_test=n_test, p=p, num_items=num_items, k=k, deg=deg, noise=noise),
    )  # fmt: skip


def ranking_problem(
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n: int = 1000,
    n_test: int = 1000,
    p: int = 5,
    num_items: int = 10,
    deg: int = 4,
    noise: float = 0.5,
) -> Problem:
    r"""Ranking: order items by value, values a noisy polynomial of features (the generator of :func:`topk_problem`).

    Sign convention: ``sense="max"``, ``theta = v > 0``, ``y = Ranking()(theta)`` the rank vector (rank ``m``
    for the most valuable item, 1 for the least; it maximizes :math:`\langle\theta, y\rangle` over the
    permutations of (1, ..., m)). Default model: :class:`~colayers.studies.LinearModel` ``p -> num_items``.

    Args:
        seed, device: see :func:`make_problem`.
        n, n_test: training and test sizes.
        p: feature dimension.
        num_items: number of items m.
        deg: polynomial degree.
        noise: multiplicative noise half-width in [0, 1).

    Example:
        >>> prob = ranking_problem(seed=0, n=2, n_test=1, num_items=4)
        >>> sorted(prob.y_train[0].tolist())
        [1.0, 2.0, 3.0, 4.0]
    """
    from ..oracles import Ranking

    seed = _check_seed(seed)
    _check_sizes(n, n_test, p)
    num_items = check_int_at_least("num_items", num_items, 2)
    deg, noise = _check_poly(deg, noise)
    device = torch.device(device)
    x, v = _feature_values(seed, n + n_test, p, num_items, deg, noise)
    return _solve_and_split(
        "ranking", Ranking(num_items), _f32(x, device), _f32(v, device), n,
        make_model=lambda: LinearModel(p, num_items).to(device),
        event_ndim=1,
        sense="max",
        description=f"ranking of {num_items} items, values a degree-{deg} polynomial of {p} features (noise {noise})",
        params=dict(seed=seed, n=n, n_test=n_test, p=p, num_items=num_items, deg=deg, noise=noise),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------------
# knapsack


def _knapsack_milp(values: np.ndarray, weights: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """One 0/1 multi-dimensional knapsack by scipy's HiGHS MILP: max v·y s.t. W y ≤ cap."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    m = values.shape[0]
    res = milp(
        -np.asarray(values, dtype=np.float64),
        constraints=LinearConstraint(weights, -np.inf, capacity),
        integrality=np.ones(m),
        bounds=Bounds(0, 1),
    )
    if res.x is None:
        raise RuntimeError(f"knapsack MILP failed: {res.message}")
    return np.round(res.x)


def _feasible_packings(weights: np.ndarray, capacity: np.ndarray, limit: int) -> np.ndarray | None:
    """All 0/1 packings y with W y ≤ cap (the empty one included), or None if there are more than ``limit``."""
    dim, m = weights.shape
    # grow subsets item by item, keeping only feasible ones: level j holds subsets whose largest item is < j
    subsets = [np.zeros((1, m), dtype=bool)]
    loads = [np.zeros((1, dim))]
    total = 1
    for item in range(m):
        new_loads = [ld + weights[:, item] for ld in loads]
        keep = [np.all(nl <= capacity + 1e-9, axis=1) for nl in new_loads]
        added = []
        for sub, nl, k in zip(subsets, new_loads, keep):
            if k.any():
                ys = sub[k].copy()
                ys[:, item] = True
                added.append((ys, nl[k]))
        for ys, nl in added:
            subsets.append(ys)
            loads.append(nl)
            total += len(ys)
        if total > limit:
            return None
    return np.concatenate(subsets)


class _PackingOracle(Oracle):
    """Exact 0/1 knapsack by scoring every feasible packing (few when capacities are small): one matmul."""

    event_ndim = 1

    def __init__(self, packings: np.ndarray) -> None:
        super().__init__()
        self.packings = torch.as_tensor(packings, dtype=torch.float32)
        self.event_shape = (self.packings.shape[1],)
        self._cache: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        key = (theta.device, theta.dtype)
        if key not in self._cache:
            self._cache[key] = self.packings.to(device=theta.device, dtype=theta.dtype)
        Y = self._cache[key]
        chunk = max(1, 2**24 // Y.shape[0])  # bound the (chunk, num_packings) score matrix
        best = torch.cat([(t @ Y.T).argmax(dim=1) for t in theta.split(chunk)])
        return Y[best]

    def __repr__(self) -> str:
        return f"PackingOracle(items={self.packings.shape[1]}, feasible_packings={self.packings.shape[0]})"


def _knapsack_oracle(weights: np.ndarray, capacity: np.ndarray) -> Oracle:
    import functools

    scaled = np.round(weights * 100)
    if weights.shape[0] == 1 and np.allclose(scaled, weights * 100) and float(capacity[0] * 100).is_integer():
        # one constraint and weights in hundredths (PyEPO's): the library's batched dynamic program, on
        # integer weights in hundredths (the same feasible set)
        from ..oracles import Knapsack

        return Knapsack(weights=scaled[0], capacity=float(capacity[0] * 100))
    packings = _feasible_packings(weights, capacity, limit=2_000_000)
    if packings is not None:
        return _PackingOracle(packings)
    return SolverOracle(
        functools.partial(_knapsack_milp, weights=weights, capacity=capacity), event_shape=(weights.shape[1],)
    )


def knapsack_problem(
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n: int = 1000,
    n_test: int = 1000,
    p: int = 5,
    num_items: int = 32,
    dim: int = 2,
    capacity: float = 20.0,
    deg: int = 4,
    noise: float = 0.5,
) -> Problem:
    r"""0/1 multi-dimensional knapsack with PyEPO's generator (``pyepo.data.knapsack.genData``).

    Item weights :math:`W \in \{3.00, 3.01, \dots, 7.99\}^{\mathrm{dim}\times m}` are fixed across instances;
    item values are

    .. math::  v_{ij} = \Bigl\lceil 5\,\frac{(\tfrac{1}{\sqrt p}(B x_i)_j + 3)^{\deg} + 1}{3.5^{\deg}}\,
                \varepsilon_{ij} \Bigr\rceil

    with :math:`B \in \{0,1\}^{m\times p}` Bernoulli(0.5), :math:`x_i \sim \mathcal{N}(0, I_p)`,
    :math:`\varepsilon_{ij} \sim U[1-\bar\varepsilon, 1+\bar\varepsilon]`, drawn in PyEPO's order (W, B, x,
    noise) from ``numpy.random.RandomState(seed)``; so the data equal PyEPO's
    ``genData(n + n_test, p, num_items, dim, deg, noise, seed)``. Every dimension has capacity ``capacity``
    (PyEPO's experiments: 32 items, dim 2, capacity 20). Tang & Khalil, *PyEPO*, 2022.

    Sign convention: ``sense="max"``, ``theta = v`` (positive integers), ``y`` the 0/1 packing maximizing
    :math:`\langle v, y\rangle` subject to :math:`W y \le` capacity, solved exactly: with ``dim == 1`` by
    :class:`~colayers.oracles.Knapsack` (a batched dynamic program on the weights in hundredths); with
    several constraints by scoring every feasible packing (enumerated once; 9,366 for the defaults) in one
    matrix product, or by a HiGHS MILP per instance when there are more than two million packings.
    Default model: :class:`~colayers.studies.LinearModel` ``p -> num_items`` with bias.
    ``extras`` holds ``weights`` (dim, m) and ``capacity`` (dim,) as float32 tensors.

    Args:
        seed, device: see :func:`make_problem`.
        n, n_test: training and test sizes.
        p: feature dimension.
        num_items: number of items m.
        dim: number of knapsack constraints.
        capacity: the capacity of every constraint (> 0).
        deg: polynomial degree.
        noise: multiplicative noise half-width in [0, 1).

    Example:
        >>> prob = knapsack_problem(seed=0, n=3, n_test=2, num_items=8)
        >>> W, cap = prob.extras["weights"], prob.extras["capacity"]
        >>> bool(((prob.y_train @ W.T) <= cap).all())
        True
    """
    seed = _check_seed(seed)
    _check_sizes(n, n_test, p)
    num_items = check_int_at_least("num_items", num_items, 1)
    dim = check_int_at_least("dim", dim, 1)
    capacity = _check_real("capacity", capacity, 0.0)
    if capacity <= 0:
        raise ValueError(f"capacity must be > 0; got {capacity!r}")
    deg, noise = _check_poly(deg, noise)
    device = torch.device(device)
    rnd = np.random.RandomState(seed)
    weights = rnd.choice(range(300, 800), size=(dim, num_items)) / 100
    x, v = _pyepo_features_costs(rnd, n + n_test, p, num_items, deg, noise)
    v = np.ceil(5 * v)
    caps = np.full(dim, capacity)
    return _solve_and_split(
        "knapsack", _knapsack_oracle(weights, caps), _f32(x, device), _f32(v, device), n,
        make_model=lambda: LinearModel(p, num_items).to(device),
        event_ndim=1,
        sense="max",
        description=f"{dim}-d 0/1 knapsack, {num_items} items, capacity {capacity}, PyEPO generator (deg={deg})",
        params=dict(seed=seed, n=n, n_test=n_test, p=p, num_items=num_items, dim=dim, capacity=capacity,
                    deg=deg, noise=noise),
        extras=dict(weights=_f32(weights, device), capacity=_f32(caps, device)),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------------
# bipartite matching


def _matching_oracle(size: int) -> Oracle:
    from ..oracles import BipartiteMatching

    return BipartiteMatching(size)


def matching_problem(
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n: int = 1000,
    n_test: int = 1000,
    p: int = 5,
    size: int = 6,
    deg: int = 4,
    noise: float = 0.5,
) -> Problem:
    r"""Maximum-weight perfect bipartite matching of ``size + size`` nodes; edge weights from features.

    The ``size²`` edge weights follow Elmachtoub & Grigas' generator (as in :func:`topk_problem` with
    ``d = size²``, reshaped row-major to ``(size, size)``): :math:`w_{i,(a,b)} = [(\tfrac{1}{\sqrt p}(B x_i)_{ab}
    + 3)^{\deg} + 1] / 3.5^{\deg}\,\varepsilon_{i,ab}`.

    Sign convention: ``sense="max"``, ``theta = w > 0`` of shape ``(size, size)``, ``y`` the permutation matrix
    of the perfect matching maximizing :math:`\langle w, y\rangle` (the assignment problem, solved exactly
    by :class:`~colayers.oracles.BipartiteMatching`).
    Default model: :class:`~colayers.studies.LinearModel` ``p -> (size, size)`` with bias.

    Args:
        seed, device: see :func:`make_problem`.
        n, n_test: training and test sizes.
        p: feature dimension.
        size: nodes per side.
        deg: polynomial degree.
        noise: multiplicative noise half-width in [0, 1).

    Example:
        >>> prob = matching_problem(seed=0, n=3, n_test=2, size=4)
        >>> prob.y_train.sum(dim=1).tolist()[0], prob.y_train.sum(dim=2).tolist()[0]
        ([1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0])
    """
    seed = _check_seed(seed)
    _check_sizes(n, n_test, p)
    size = check_int_at_least("size", size, 2)
    deg, noise = _check_poly(deg, noise)
    device = torch.device(device)
    x, w = _feature_values(seed, n + n_test, p, size * size, deg, noise)
    return _solve_and_split(
        "matching", _matching_oracle(size), _f32(x, device), _f32(w.reshape(-1, size, size), device), n,
        make_model=lambda: LinearModel(p, (size, size)).to(device),
        event_ndim=2,
        sense="max",
        description=f"max-weight perfect bipartite matching {size}x{size}, degree-{deg} polynomial weights",
        params=dict(seed=seed, n=n, n_test=n_test, p=p, size=size, deg=deg, noise=noise),
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------------
# registry


PROBLEMS: dict[str, Callable[..., Problem]] = {
    "shortest_path": shortest_path_problem,
    "warcraft": warcraft_problem,
    "topk": topk_problem,
    "ranking": ranking_problem,
    "knapsack": knapsack_problem,
    "matching": matching_problem,
}


def make_problem(name: str, *, seed: int = 0, device: str | torch.device = "cpu", **params) -> Problem:
    """Build the benchmark problem ``name`` from :data:`PROBLEMS` with generator parameters ``params``.

    Args:
        name: a key of :data:`PROBLEMS`.
        seed: the data seed (same seed, same data, on every device).
        device: where the tensors live.
        **params: the problem's generator parameters (see each builder, e.g. :func:`shortest_path_problem`).

    Returns:
        the :class:`Problem`.

    Raises:
        ValueError: unknown problem name or a bad parameter value; TypeError: an unknown parameter name.

    Example:
        >>> prob = make_problem("shortest_path", seed=0, n=20, n_test=10)
        >>> prob.name, prob.sense, tuple(prob.x_train.shape), prob.oracle.num_edges
        ('shortest_path', 'min', (20, 5), 40)
    """
    if name not in PROBLEMS:
        raise ValueError(f"problem must be one of {sorted(PROBLEMS)}; got {name!r}")
    builder = PROBLEMS[name]
    accepted = [k for k in inspect.signature(builder).parameters if k not in ("seed", "device")]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"unknown parameter(s) {unknown} for problem {name!r}; accepted: {accepted}")
    return builder(seed=seed, device=device, **params)
