r"""0/1 multi-dimensional knapsack with PyEPO's generator."""

from __future__ import annotations

import numpy as np
import torch

from ..._validation import check_int_at_least
from ...oracles.base import Oracle, SolverOracle
from ...oracles.packing import PackingOracle, feasible_packings
from ..models import LinearModel
from ..registry import register_problem
from .base import (
    Problem,
    _check_poly,
    _check_real,
    _check_seed,
    _check_sizes,
    _f32,
    _pyepo_features_costs,
    _solve_and_split,
    _validation_features_costs,
)

__all__ = ["knapsack_problem"]


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


def _knapsack_oracle(weights: np.ndarray, capacity: np.ndarray) -> Oracle:
    import functools

    scaled = np.round(weights * 100)
    if weights.shape[0] == 1 and np.allclose(scaled, weights * 100) and float(capacity[0] * 100).is_integer():
        # one constraint and weights in hundredths (PyEPO's): the library's batched dynamic program, on
        # integer weights in hundredths (the same feasible set)
        from ...oracles import Knapsack

        return Knapsack(weights=scaled[0], capacity=float(capacity[0] * 100))
    packings = feasible_packings(weights, capacity, limit=2_000_000)
    if packings is not None:
        return PackingOracle(packings, weights=weights, capacity=capacity)
    return SolverOracle(
        functools.partial(_knapsack_milp, weights=weights, capacity=capacity), event_shape=(weights.shape[1],)
    )


@register_problem("knapsack")
def knapsack_problem(
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n: int = 1000,
    n_test: int = 1000,
    n_val: int = 200,
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
        n, n_test, n_val: training, test and validation sizes (validation values from their own stream).
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
    _check_sizes(n, n_test, p, n_val)
    num_items = check_int_at_least("num_items", num_items, 1)
    dim = check_int_at_least("dim", dim, 1)
    capacity = _check_real("capacity", capacity, 0.0)
    if capacity <= 0:
        raise ValueError(f"capacity must be > 0; got {capacity!r}")
    deg, noise = _check_poly(deg, noise)
    device = torch.device(device)
    rnd = np.random.RandomState(seed)
    weights = rnd.choice(range(300, 800), size=(dim, num_items)) / 100
    x, v, B = _pyepo_features_costs(rnd, n + n_test, p, num_items, deg, noise)
    v = np.ceil(5 * v)
    val = None
    if n_val:
        x_val, v_val = _validation_features_costs(seed, B, n_val, deg, noise)
        val = (_f32(x_val, device), _f32(np.ceil(5 * v_val), device))
    caps = np.full(dim, capacity)
    return _solve_and_split(
        "knapsack", _knapsack_oracle(weights, caps), _f32(x, device), _f32(v, device), n,
        make_model=lambda: LinearModel(p, num_items).to(device),
        event_ndim=1,
        sense="max",
        description=f"{dim}-d 0/1 knapsack, {num_items} items, capacity {capacity}, PyEPO generator (deg={deg})",
        params=dict(seed=seed, n=n, n_test=n_test, n_val=n_val, p=p, num_items=num_items, dim=dim, capacity=capacity,
                    deg=deg, noise=noise),
        extras=dict(weights=_f32(weights, device), capacity=_f32(caps, device)),
        val=val,
    )  # fmt: skip
