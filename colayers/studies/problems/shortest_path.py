r"""Shortest path on a grid DAG with Elmachtoub & Grigas' cost generator (PyEPO's benchmark)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ...oracles.grid import GridDAGShortestPath
from ..models import LinearModel
from ..registry import register_problem
from .base import Problem, _check_poly, _check_seed, _check_sizes, _f32, _feature_values, _grid, _solve_and_split

__all__ = ["shortest_path_problem"]


@register_problem("shortest_path")
def shortest_path_problem(
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n: int = 1000,
    n_test: int = 1000,
    n_val: int = 200,
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
        n_val: validation size (instances from a separate stream of the same generator; 0 for none).
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
    _check_sizes(n, n_test, p, n_val)
    h, w = _grid("grid", grid)
    deg, noise = _check_poly(deg, noise, what="costs")
    device = torch.device(device)
    oracle = GridDAGShortestPath(h, w)
    d = oracle.num_edges
    x, c, val = _feature_values(seed, n + n_test, p, d, deg, noise, n_val)
    # PyEPO's column j is the cost of its j-th edge, which is oracle.edges[j]: no reordering
    return _solve_and_split(
        "shortest_path", oracle, _f32(x, device), -_f32(c, device), n,
        make_model=lambda: LinearModel(p, d, negate=True).to(device),
        event_ndim=1,
        sense="min",
        description=f"shortest path on a {h}x{w} grid DAG, PyEPO generator (p={p}, deg={deg}, noise={noise})",
        params=dict(seed=seed, n=n, n_test=n_test, n_val=n_val, p=p, grid=(h, w), deg=deg, noise=noise),
        val=None if val is None else (_f32(val[0], device), -_f32(val[1], device)),
    )  # fmt: skip
