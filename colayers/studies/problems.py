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
from ..oracles.base import Oracle
from .models import LinearModel

__all__ = [
    "Problem",
    "make_problem",
    "PROBLEMS",
    "shortest_path_problem",
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


# ------------------------------------------------------------------------------------------------------
# oracles, with temporary fallbacks while colayers.oracles grows


def _grid_oracles():
    try:
        from ..oracles import GridDAGShortestPath, GridVertexShortestPath
    except ImportError:  # not yet re-exported by colayers.oracles
        from ..oracles.grid import GridDAGShortestPath, GridVertexShortestPath
    return GridDAGShortestPath, GridVertexShortestPath


def _pyepo_edge_order(height: int, width: int) -> list[tuple[int, int]]:
    """PyEPO's edge list for the grid DAG: row by row, the row's right edges, then its down edges."""
    edges = []
    for i in range(height):
        edges += [(i * width + j, i * width + j + 1) for j in range(width - 1)]
        if i < height - 1:
            edges += [(i * width + j, (i + 1) * width + j) for j in range(width)]
    return edges


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
    edge (PyEPO lists edges row by row, right edges then down edges; the columns are permuted to the
    oracle's order ``oracle.edges``).

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
    deg = check_int_at_least("deg", deg, 1)
    noise = _check_real("noise", noise, 0.0, 1.0)
    if noise >= 1.0:
        raise ValueError(f"noise must be in [0, 1) so that costs stay positive; got {noise!r}")
    device = torch.device(device)
    oracle = _grid_oracles()[0](h, w)
    d = oracle.num_edges
    rnd = np.random.RandomState(seed)
    x, c = _pyepo_features_costs(rnd, n + n_test, p, d, deg, noise)
    # PyEPO's column j is the cost of its j-th edge; reorder the columns to the oracle's edge order
    pyepo_index = {e: j for j, e in enumerate(_pyepo_edge_order(h, w))}
    c = c[:, [pyepo_index[e] for e in oracle.edges]]
    x_t, theta = _f32(x, device), -_f32(c, device)
    y = oracle(theta)
    x_tr, x_te, th_tr, th_te, y_tr, y_te = _split(n, x_t, theta, y)
    params = dict(seed=seed, n=n, n_test=n_test, p=p, grid=(h, w), deg=deg, noise=noise)
    return Problem(
        name="shortest_path",
        oracle=oracle,
        x_train=x_tr,
        theta_train=th_tr,
        y_train=y_tr,
        x_test=x_te,
        theta_test=th_te,
        y_test=y_te,
        make_model=lambda: LinearModel(p, d, negate=True).to(device),
        event_ndim=1,
        sense="min",
        description=f"shortest path on a {h}x{w} grid DAG, PyEPO generator (p={p}, deg={deg}, noise={noise})",
        params=params,
    )


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
# registry


PROBLEMS: dict[str, Callable[..., Problem]] = {
    "shortest_path": shortest_path_problem,
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
