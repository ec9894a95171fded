r"""Evaluation metrics for predicted solutions, in the maximization convention.

**Argument order**, one for every metric, as the losses' ``(theta, target, ...)``: the prediction first, then
the targets — ``metric(y_pred, theta_true, y_target=None, *, oracle=None)`` — where ``theta_true`` are the
true scores (for a cost-minimization problem :math:`\bar\theta = -c`) and ``y_target`` an optimal solution
:math:`y^\star = f(\bar\theta)` (computed by ``oracle`` when omitted). ``oracle`` is anything with an
``objective(theta, y)`` method (and ``__call__`` to compute ``y_target``; its ``event_ndim`` is used too);
without it the objective is :math:`\langle\theta, y\rangle` over the last ``event_ndim`` dimensions.

* regret: :math:`\langle\bar\theta, g(y^\star)\rangle - \langle\bar\theta, g(\hat y)\rangle \ge 0`
  (in costs: :math:`\langle c, \hat y\rangle - \langle c, y^\star\rangle`);
* normalized regret: :math:`\sum_i \mathrm{regret}_i / \sum_i |\langle\bar\theta_i, g(y^\star_i)\rangle|`
  (PyEPO's definition, a ratio of sums over the data set);
* cost ratio: :math:`1 + \mathrm{regret} / |\langle\bar\theta, g(y^\star)\rangle|` — 1 is optimal and larger is
  worse for both senses; for a minimization problem with positive costs it is the predicted cost over the
  optimal cost, :math:`\langle c, \hat y\rangle / \langle c, y^\star\rangle`;
* exact match: whether :math:`\hat y` attains the optimal objective (within ``atol``) — "optimal-cost
  accuracy", which counts a different path of equal cost as a match;
* Hamming distance (0/1 solutions): the mean over the event's entries of :math:`|\hat y - y^\star|`, a
  fraction in [0, 1];
* rank distance (rankings, rank vectors of 1..m): the normalized Spearman footrule
  :math:`\sum_j |\hat r_j - r_j| / \lfloor m^2/2 \rfloor \in [0, 1]` (0: the same order, 1: reversed).

All take batched tensors ``(*batch, *event)`` and return one value per instance ``(*batch)``, except
:func:`normalized_regret`, which reduces over everything. (The former order ``(oracle, theta_true, y_pred,
y_target)`` is still accepted, with a ``DeprecationWarning``.)

Example:
    >>> import torch
    >>> from colayers import ArgmaxOneHot
    >>> from colayers.metrics import regret, exact_match, cost_ratio
    >>> oracle = ArgmaxOneHot()
    >>> theta_true = torch.tensor([[1.0, 3.0, 2.0]])
    >>> y_pred = torch.tensor([[0.0, 0.0, 1.0]])
    >>> regret(y_pred, theta_true, oracle=oracle)
    tensor([1.])
    >>> exact_match(y_pred, theta_true, oracle=oracle)
    tensor([False])
    >>> cost_ratio(y_pred, theta_true, oracle=oracle)  # 1 + 1/3
    tensor([1.3333])
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch

from ._validation import check_same_shape

__all__ = ["regret", "normalized_regret", "cost_ratio", "exact_match", "hamming_distance", "rank_distance"]


def _legacy(name: str, args: tuple) -> tuple:
    """Translate a call in the former order (oracle, theta_true, y_pred, y_target) to the current one."""
    warnings.warn(
        f"{name}(oracle, theta_true, y_pred, ...) is deprecated; call {name}(y_pred, theta_true, y_target, "
        "oracle=oracle)",
        DeprecationWarning,
        stacklevel=3,
    )
    oracle, theta_true, y_pred, *rest = args
    return y_pred, theta_true, (rest[0] if rest else None), oracle


def _args(name: str, y_pred: Any, theta_true: Any, y_target: Any, oracle: Any, extra: tuple) -> tuple:
    if not isinstance(y_pred, torch.Tensor) and hasattr(y_pred, "objective"):
        return _legacy(name, (y_pred, theta_true, y_target, *extra))
    if extra:
        raise TypeError(f"{name} takes (y_pred, theta_true, y_target=None) and keyword arguments; got more")
    return y_pred, theta_true, y_target, oracle


def _event_ndim(oracle: Any, event_ndim: int | None, name: str) -> int:
    if event_ndim is not None:
        return int(event_ndim)
    nd = getattr(oracle, "event_ndim", None)
    if nd is None:
        raise ValueError(f"{name} needs event_ndim= (the number of solution dimensions) or an oracle= that has it")
    return int(nd)


def _objective(oracle: Any, theta: torch.Tensor, y: torch.Tensor, event_ndim: int | None) -> torch.Tensor:
    if oracle is not None and hasattr(oracle, "objective"):
        return oracle.objective(theta, y)
    dims = tuple(range(-_event_ndim(oracle, event_ndim, "the objective"), 0))
    return (theta * y).sum(dim=dims)


def _target(oracle: Any, theta_true: torch.Tensor, y_target: torch.Tensor | None) -> torch.Tensor:
    if y_target is not None:
        return y_target
    if oracle is None or not callable(oracle):
        raise ValueError("y_target is needed (or an oracle= that computes it from theta_true)")
    return oracle(theta_true)


def _regret(y_pred, theta_true, y_target, oracle, event_ndim) -> tuple[torch.Tensor, torch.Tensor]:
    y_target = _target(oracle, theta_true, y_target)
    check_same_shape("y_pred", y_pred, "y_target", y_target)
    best = _objective(oracle, theta_true, y_target, event_ndim)
    return best - _objective(oracle, theta_true, y_pred, event_ndim), best


def regret(
    y_pred: torch.Tensor,
    theta_true: torch.Tensor,
    y_target: torch.Tensor | None = None,
    *extra: Any,
    oracle: Any = None,
    event_ndim: int | None = None,
) -> torch.Tensor:
    r"""Per-instance regret :math:`\langle\bar\theta, y^\star\rangle - \langle\bar\theta, \hat y\rangle`.

    Args:
        y_pred: predicted solutions ``(*batch, *event)``.
        theta_true: true scores (maximization; ``-cost`` for costs).
        y_target: optimal solutions (default ``oracle(theta_true)``).
        oracle: gives ``objective`` (and computes ``y_target``); default objective ⟨θ, y⟩.
        event_ndim: solution dimensions when no oracle gives them.
    """
    y_pred, theta_true, y_target, oracle = _args("regret", y_pred, theta_true, y_target, oracle, extra)
    return _regret(y_pred, theta_true, y_target, oracle, event_ndim)[0]


def normalized_regret(
    y_pred: torch.Tensor,
    theta_true: torch.Tensor,
    y_target: torch.Tensor | None = None,
    *extra: Any,
    oracle: Any = None,
    event_ndim: int | None = None,
) -> torch.Tensor:
    r"""Data-set normalized regret :math:`\sum_i \mathrm{regret}_i / \sum_i |\langle\bar\theta_i, y^\star_i\rangle|`."""
    y_pred, theta_true, y_target, oracle = _args("normalized_regret", y_pred, theta_true, y_target, oracle, extra)
    r, best = _regret(y_pred, theta_true, y_target, oracle, event_ndim)
    den = best.abs().sum()
    if float(den) == 0.0:
        raise ValueError("normalized_regret is undefined: the optimal objectives of theta_true sum to 0")
    return r.sum() / den


def cost_ratio(
    y_pred: torch.Tensor,
    theta_true: torch.Tensor,
    y_target: torch.Tensor | None = None,
    *extra: Any,
    oracle: Any = None,
    event_ndim: int | None = None,
) -> torch.Tensor:
    r"""Per-instance :math:`1 + \mathrm{regret}/|\langle\bar\theta, y^\star\rangle|`: 1 optimal, larger worse.

    For costs (:math:`\bar\theta = -c`, :math:`c > 0`) this is :math:`\langle c,\hat y\rangle/\langle c,y^\star\rangle`;
    for positive values (maximization) it is :math:`2 - \langle v,\hat y\rangle/\langle v,y^\star\rangle`, so that
    the direction is the same in both senses. Infinite where the optimal objective is 0 and the regret is not.
    """
    y_pred, theta_true, y_target, oracle = _args("cost_ratio", y_pred, theta_true, y_target, oracle, extra)
    r, best = _regret(y_pred, theta_true, y_target, oracle, event_ndim)
    return 1.0 + r / best.abs()


def exact_match(
    y_pred: torch.Tensor,
    theta_true: torch.Tensor,
    y_target: torch.Tensor | None = None,
    *extra: Any,
    oracle: Any = None,
    event_ndim: int | None = None,
    rtol: float = 1e-6,
    atol: float = 1e-6,
) -> torch.Tensor:
    """Per-instance boolean: the predicted solution attains the optimal objective (within tolerances)."""
    y_pred, theta_true, y_target, oracle = _args("exact_match", y_pred, theta_true, y_target, oracle, extra)
    r, best = _regret(y_pred, theta_true, y_target, oracle, event_ndim)
    return r.abs() <= atol + rtol * best.abs()


def hamming_distance(
    y_pred: torch.Tensor, y_target: torch.Tensor, event_ndim: int | None = None, *, oracle: Any = None
) -> torch.Tensor:
    r"""Per-instance normalized Hamming distance of 0/1 solutions: the mean of :math:`|\hat y - y|` over the
    event's entries, in [0, 1].

    Args:
        y_pred, y_target: 0/1 solutions ``(*batch, *event)``.
        event_ndim: the number of event dimensions (default: ``oracle.event_ndim``; one of them is needed).
        oracle: any object with ``event_ndim``.

    Raises:
        ValueError: entries other than 0 and 1 (for rank vectors use :func:`rank_distance`).

    Example:
        >>> import torch
        >>> hamming_distance(torch.tensor([[1.0, 0.0, 1.0, 0.0]]), torch.tensor([[1.0, 1.0, 0.0, 0.0]]), 1)
        tensor([0.5000])
    """
    check_same_shape("y_pred", y_pred, "y_target", y_target)
    nd = _event_ndim(oracle, event_ndim, "hamming_distance")
    for name, y in (("y_pred", y_pred), ("y_target", y_target)):
        bad = ~((y == 0) | (y == 1))
        if bool(bad.any()):
            raise ValueError(
                f"hamming_distance needs 0/1 solutions; {name} has {int(bad.sum())} other entries (for rankings "
                "use rank_distance)"
            )
    return (y_pred - y_target).abs().mean(dim=tuple(range(-nd, 0)))


def rank_distance(y_pred: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
    r"""Per-instance normalized Spearman footrule of rank vectors (last dimension, ranks 1..m), in [0, 1].

    :math:`\sum_j |\hat r_j - r_j| / \lfloor m^2/2\rfloor`: 0 for the same order, 1 for the reversed one.

    Example:
        >>> import torch
        >>> rank_distance(torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]), torch.tensor([[1.0, 2.0, 3.0]] * 2))
        tensor([0., 1.])
    """
    check_same_shape("y_pred", y_pred, "y_target", y_target)
    m = y_pred.shape[-1]
    return (y_pred - y_target).abs().sum(dim=-1) / max(1, math.floor(m * m / 2))
