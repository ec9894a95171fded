r"""The symmetric travelling salesman problem with PyEPO's generator (``pyepo.data.tsp.genData``)."""

from __future__ import annotations

import numbers

import numpy as np
import torch

from ..._validation import check_int_at_least
from ...oracles.tsp import TravelingSalesman
from ..models import LinearModel
from ..registry import register_problem
from .base import Problem, _check_seed, _check_sizes, _f32, _solve_and_split

__all__ = ["tsp_problem", "tsp_costs"]


def tsp_costs(x: np.ndarray, distance: np.ndarray, B: np.ndarray, deg: int, noise: np.ndarray) -> np.ndarray:
    r"""PyEPO's TSP edge costs: the Euclidean distance plus a polynomial of the features, rounded to 4 decimals.

    .. math::  c_{ie} = \Bigl[\, d_e + \frac{\bigl(\tfrac{1}{\sqrt p}(B x_i)_e + 3\bigr)^{\deg}}{3^{\deg - 1}}\,
               \varepsilon_{ie} \Bigr]_{10^{-4}}

    Args:
        x: features ``(n, p)``.
        distance: the ``E`` distances between the cities, in the edge order (``scipy.spatial.distance.pdist``).
        B: the ``(E, p)`` matrix (Bernoulli(0.5) times U[-2, 2] entries).
        deg: the polynomial degree (≥ 1).
        noise: the multiplicative noise ``(n, E)``.

    Returns:
        the costs ``(n, E)``, float32 (as PyEPO's).

    Example:
        >>> import numpy as np
        >>> tsp_costs(np.zeros((1, 2)), np.array([1.0]), np.zeros((1, 2)), 2, np.ones((1, 1)))  # 1 + 3²/3
        array([[4.]], dtype=float32)
    """
    p = x.shape[-1]
    feature_cost = (x @ B.T / np.sqrt(p) + 3.0) ** deg / 3.0 ** (deg - 1)
    return np.around(distance + feature_cost * noise, decimals=4).astype(np.float32)


def _check_noise(noise: float) -> float:
    if isinstance(noise, bool) or not isinstance(noise, numbers.Real):
        raise TypeError(f"noise must be a real number; got {type(noise).__name__} {noise!r}")
    if not (0.0 <= noise < float("inf")):
        raise ValueError(f"noise must be a finite number ≥ 0 (the multiplicative noise's half-width); got {noise!r}")
    return float(noise)


@register_problem("tsp")
def tsp_problem(
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n: int = 1000,
    n_test: int = 1000,
    n_val: int = 200,
    p: int = 10,
    num_nodes: int = 20,
    deg: int = 4,
    noise: float = 0.5,
) -> Problem:
    r"""Symmetric travelling salesman on ``num_nodes`` cities with PyEPO's generator (``pyepo.data.tsp.genData``).

    City coordinates are drawn once: the first :math:`\lfloor n_c/2 \rfloor` from :math:`U[-2, 2]^2`, the others
    from :math:`\mathcal{N}(0, I_2)`; :math:`d_e` is the Euclidean length of edge e. With
    :math:`B = (b_{ep}\,u_{ep})`, :math:`b \sim` Bernoulli(0.5), :math:`u \sim U[-2, 2]` (shared by all instances),
    features :math:`x_i \sim \mathcal{N}(0, I_p)` and noise :math:`\varepsilon_{ie} \sim U[1-\bar\varepsilon,
    1+\bar\varepsilon]`, the edge costs are (:func:`tsp_costs`)

    .. math::  c_{ie} = d_e + \frac{\bigl(\tfrac{1}{\sqrt p}(B x_i)_e + 3\bigr)^{\deg}}{3^{\deg - 1}}\;
               \varepsilon_{ie}, \quad \text{rounded to 4 decimals (float32).}

    The draws follow PyEPO's order (coordinates, B, x, ε) from ``numpy.random.RandomState(seed)``, so the
    ``n + n_test`` instances equal PyEPO's ``genData(n + n_test, p, num_nodes, deg, noise, seed)``, edge for edge:
    the edges are ``itertools.combinations(range(num_nodes), 2)`` (PyEPO's ``tspModel.edges``, and
    :class:`~colayers.oracles.TravelingSalesman`'s ``edges``). The validation instances come from their own stream
    ``RandomState([seed, 1])`` (same cities and B). Unlike the other polynomial generators the costs are not all
    positive for odd degrees (:math:`Bx` has either sign) and ``noise`` may exceed 1, as in PyEPO; the oracle is
    exact for costs of any sign. Defaults: the 20-city TSP of PyEPO's and CaVE's experiments (p = 10, deg 4,
    noise 0.5).

    Sign convention: ``sense="min"``, ``theta = -c``, ``y`` the 0/1 edge indicator of the shortest tour
    (``num_nodes`` edges), solved exactly by :class:`~colayers.oracles.TravelingSalesman` (Held–Karp up to 12
    cities, a HiGHS integer program with subtour cuts above). Default model: PyEPO's linear regression,
    :class:`~colayers.studies.LinearModel` ``p -> E`` with bias, negated. ``extras["coordinates"]`` holds the
    cities ``(num_nodes, 2)``.

    Args:
        seed, device: see :func:`~colayers.studies.make_problem`.
        n, n_test, n_val: training, test and validation sizes.
        p: feature dimension.
        num_nodes: the number of cities (≥ 3).
        deg: polynomial degree (≥ 1).
        noise: half-width :math:`\bar\varepsilon \ge 0` of the multiplicative noise.

    Example:
        >>> prob = tsp_problem(seed=0, n=4, n_test=2, n_val=0, num_nodes=6)
        >>> prob.theta_train.shape, prob.y_train.sum(dim=1).tolist()  # 15 edges, 6 on every tour
        (torch.Size([4, 15]), [6.0, 6.0, 6.0, 6.0])
        >>> bool(prob.oracle.contains(prob.y_test).all())
        True
    """
    from scipy.spatial import distance

    seed = _check_seed(seed)
    _check_sizes(n, n_test, p, n_val)
    num_nodes = check_int_at_least("num_nodes", num_nodes, 3)
    deg = check_int_at_least("deg", deg, 1)
    noise = _check_noise(noise)
    device = torch.device(device)
    num_edges = num_nodes * (num_nodes - 1) // 2
    rnd = np.random.RandomState(seed)
    half = num_nodes // 2
    coords = np.concatenate((rnd.uniform(-2, 2, (half, 2)), rnd.normal(0, 1, (num_nodes - half, 2))))
    dist = distance.pdist(coords, "euclidean")
    B = rnd.binomial(1, 0.5, (num_edges, p)) * rnd.uniform(-2, 2, (num_edges, p))
    x = rnd.normal(0, 1, (n + n_test, p))
    c = tsp_costs(x, dist, B, deg, rnd.uniform(1 - noise, 1 + noise, (n + n_test, num_edges)))
    val = None
    if n_val:
        other = np.random.RandomState([seed, 1])
        x_val = other.normal(0, 1, (n_val, p))
        c_val = tsp_costs(x_val, dist, B, deg, other.uniform(1 - noise, 1 + noise, (n_val, num_edges)))
        val = (_f32(x_val, device), -_f32(c_val, device))
    return _solve_and_split(
        "tsp", TravelingSalesman(num_nodes), _f32(x, device), -_f32(c, device), n,
        make_model=lambda: LinearModel(p, num_edges, negate=True).to(device),
        event_ndim=1,
        sense="min",
        description=f"TSP on {num_nodes} cities, PyEPO generator (p={p}, deg={deg}, noise={noise})",
        params=dict(seed=seed, n=n, n_test=n_test, n_val=n_val, p=p, num_nodes=num_nodes, deg=deg, noise=noise),
        extras=dict(coordinates=_f32(coords, device)),
        val=val,
    )  # fmt: skip
