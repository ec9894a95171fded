r"""k-subset selection and ranking of items whose values are a noisy polynomial of features."""

from __future__ import annotations

import torch

from ..._validation import check_int_at_least
from ..models import LinearModel
from ..registry import register_problem
from .base import Problem, _check_poly, _check_seed, _check_sizes, _f32, _feature_values, _solve_and_split

__all__ = ["topk_problem", "ranking_problem"]


def _val(val, device):
    return None if val is None else (_f32(val[0], device), _f32(val[1], device))



@register_problem("topk")
def topk_problem(
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n: int = 1000,
    n_test: int = 1000,
    n_val: int = 200,
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
        n, n_test, n_val: training, test and validation sizes.
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
    from ...oracles import TopKSubset

    seed = _check_seed(seed)
    _check_sizes(n, n_test, p, n_val)
    num_items = check_int_at_least("num_items", num_items, 2)
    k = check_int_at_least("k", k, 1)
    if k > num_items:
        raise ValueError(f"k must be an integer in [1, num_items={num_items}]; got {k}")
    deg, noise = _check_poly(deg, noise)
    device = torch.device(device)
    x, v, val = _feature_values(seed, n + n_test, p, num_items, deg, noise, n_val)
    return _solve_and_split(
        "topk", TopKSubset(k, num_items), _f32(x, device), _f32(v, device), n,
        make_model=lambda: LinearModel(p, num_items).to(device),
        event_ndim=1,
        sense="max",
        description=f"top-{k} of {num_items} items, values a degree-{deg} polynomial of {p} features (noise {noise})",
        params=dict(seed=seed, n=n, n_test=n_test, n_val=n_val, p=p, num_items=num_items, k=k, deg=deg, noise=noise),
        val=_val(val, device),
    )  # fmt: skip


@register_problem("ranking")
def ranking_problem(
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n: int = 1000,
    n_test: int = 1000,
    n_val: int = 200,
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
        n, n_test, n_val: training, test and validation sizes.
        p: feature dimension.
        num_items: number of items m.
        deg: polynomial degree.
        noise: multiplicative noise half-width in [0, 1).

    Example:
        >>> prob = ranking_problem(seed=0, n=2, n_test=1, num_items=4)
        >>> sorted(prob.y_train[0].tolist())
        [1.0, 2.0, 3.0, 4.0]
    """
    from ...oracles import Ranking

    seed = _check_seed(seed)
    _check_sizes(n, n_test, p, n_val)
    num_items = check_int_at_least("num_items", num_items, 2)
    deg, noise = _check_poly(deg, noise)
    device = torch.device(device)
    x, v, val = _feature_values(seed, n + n_test, p, num_items, deg, noise, n_val)
    return _solve_and_split(
        "ranking", Ranking(num_items), _f32(x, device), _f32(v, device), n,
        make_model=lambda: LinearModel(p, num_items).to(device),
        event_ndim=1,
        sense="max",
        description=f"ranking of {num_items} items, values a degree-{deg} polynomial of {p} features (noise {noise})",
        params=dict(seed=seed, n=n, n_test=n_test, n_val=n_val, p=p, num_items=num_items, deg=deg, noise=noise),
        val=_val(val, device),
    )  # fmt: skip
