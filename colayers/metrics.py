r"""Evaluation metrics for predicted solutions, in the maximization convention.

**One convention for every metric**: the prediction first, then the targets, then keyword arguments,
as the losses' ``(theta, target, ...)``::

    metric(y_pred, theta_true, y_target=None, *, oracle=None, event_ndim=None, reduction="none")
    hamming_distance(y_pred, y_target, *, oracle=None, event_ndim=None, reduction="none")
    rank_distance(y_pred, y_target, *, oracle=None, event_ndim=None, reduction="none")
    unambiguous_regret(theta_pred, theta_true, y_target=None, *, oracle, tolerance=1e-5, reduction="none")
    spo_error(theta_pred, theta_true, y_target=None, *, oracle, event_ndim=None, reduction="none")

The two metrics of predicted *scores* (``theta_pred``, the model's output, where the tie set of the decision
matters) decode it with the oracle themselves.

* ``y_pred``: predicted solutions ``(*batch, *event)``;
* ``theta_true``: the true scores (for a cost-minimization problem :math:`\bar\theta = -c`);
* ``y_target``: optimal solutions :math:`y^\star = f(\bar\theta)` (computed by ``oracle`` when omitted);
* ``oracle``: anything with an ``objective(theta, y)`` method (and ``__call__`` to compute ``y_target``;
  its ``event_ndim`` is used too) — duck-typed, this module imports nothing from :mod:`colayers.oracles`;
  without it the objective is :math:`\langle\theta, y\rangle` over the last ``event_ndim`` dimensions;
* ``event_ndim``: the number of trailing solution dimensions; default ``oracle.event_ndim``, else 1;
* ``reduction``: ``"none"`` returns one value per instance, shape ``(*batch)``; ``"mean"`` their mean and
  ``"sum"`` their sum over every batch dimension (a 0-d tensor).

The per-instance values:

* regret: :math:`\langle\bar\theta, g(y^\star)\rangle - \langle\bar\theta, g(\hat y)\rangle \ge 0`
  (in costs: :math:`\langle c, \hat y\rangle - \langle c, y^\star\rangle`);
* normalized regret: :math:`\mathrm{regret}_i / \frac1N\sum_j |\langle\bar\theta_j, g(y^\star_j)\rangle|`,
  the regret over the batch's mean absolute optimal objective, so that ``reduction="mean"`` is PyEPO's
  data-set normalized regret :math:`\sum_i \mathrm{regret}_i / \sum_i |\langle\bar\theta_i, g(y^\star_i)\rangle|`;
* cost ratio: :math:`1 + \mathrm{regret} / |\langle\bar\theta, g(y^\star)\rangle|` — 1 is optimal and larger is
  worse for both senses; for a minimization problem with positive costs it is the predicted cost over the
  optimal cost, :math:`\langle c, \hat y\rangle / \langle c, y^\star\rangle`;
* exact match: whether :math:`\hat y` attains the optimal objective (within ``atol``) — "optimal-cost
  accuracy", which counts a different path of equal cost as a match (``"mean"``: the share of matches);
* Hamming distance (0/1 solutions): the mean over the event's entries of :math:`|\hat y - y^\star|`, a
  fraction in [0, 1];
* rank distance (rankings, rank vectors of 1..m along the last dimension): the normalized Spearman footrule
  :math:`\sum_j |\hat r_j - r_j| / \lfloor m^2/2 \rfloor \in [0, 1]` (0: the same order, 1: reversed);
* unambiguous regret: the regret of the *worst* solution among the maximizers of the predicted scores
  (PyEPO's ``unambRegret``, the SPO loss of Elmachtoub & Grigas);
* SPO error: the normalized regret of the decision :math:`f(\hat\theta)`, whose ``"mean"`` is PyEPO's
  ``SPOError``.

Example:
    >>> import torch
    >>> from colayers import ArgmaxOneHot
    >>> from colayers.metrics import regret, exact_match, cost_ratio, normalized_regret
    >>> oracle = ArgmaxOneHot()
    >>> theta_true = torch.tensor([[1.0, 3.0, 2.0], [4.0, 0.0, 1.0]])
    >>> y_pred = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    >>> regret(y_pred, theta_true, oracle=oracle)
    tensor([1., 0.])
    >>> exact_match(y_pred, theta_true, oracle=oracle)
    tensor([False,  True])
    >>> exact_match(y_pred, theta_true, oracle=oracle, reduction="mean")
    tensor(0.5000)
    >>> cost_ratio(y_pred, theta_true, oracle=oracle)  # 1 + 1/3 and 1 + 0/4
    tensor([1.3333, 1.0000])
    >>> normalized_regret(y_pred, theta_true, oracle=oracle, reduction="mean")  # (1 + 0) / (3 + 4)
    tensor(0.1429)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ._validation import check_int_at_least, check_positive, check_reduction, check_same_shape, reduce

__all__ = [
    "regret",
    "normalized_regret",
    "cost_ratio",
    "exact_match",
    "hamming_distance",
    "rank_distance",
    "unambiguous_regret",
    "spo_error",
]


def _check_tensors(**named: Any) -> None:
    """Require tensors (any dtype) for the named arguments that are given."""
    for name, value in named.items():
        if value is not None and not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor; got {type(value).__name__}")


def _event_ndim(oracle: Any, event_ndim: int | None, y: torch.Tensor) -> int:
    """``event_ndim`` if given, else ``oracle.event_ndim``, else 1; checked against ``y``'s dimensions."""
    if event_ndim is None:
        event_ndim = getattr(oracle, "event_ndim", None)
        event_ndim = 1 if event_ndim is None else event_ndim
    nd = check_int_at_least("event_ndim", event_ndim, 1)
    if nd > y.dim():
        raise ValueError(f"event_ndim must be at most the solutions' dimensions, {y.dim()}; got {nd}")
    return nd


def _objective(oracle: Any, theta: torch.Tensor, y: torch.Tensor, event_ndim: int | None) -> torch.Tensor:
    if oracle is not None and hasattr(oracle, "objective"):
        return oracle.objective(theta, y)
    dims = tuple(range(-_event_ndim(oracle, event_ndim, y), 0))
    return (theta * y).sum(dim=dims)


def _target(oracle: Any, theta_true: torch.Tensor, y_target: torch.Tensor | None) -> torch.Tensor:
    if y_target is not None:
        return y_target
    if oracle is None or not callable(oracle):
        raise ValueError("y_target is needed (or an oracle= that computes it from theta_true)")
    return oracle(theta_true)


def _regret(y_pred, theta_true, y_target, oracle, event_ndim, reduction) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-instance (regret, optimal objective), after checking the reduction and the shapes."""
    check_reduction(reduction)
    _check_tensors(y_pred=y_pred, theta_true=theta_true, y_target=y_target)
    y_target = _target(oracle, theta_true, y_target)
    check_same_shape("y_pred", y_pred, "y_target", y_target)
    best = _objective(oracle, theta_true, y_target, event_ndim)
    return best - _objective(oracle, theta_true, y_pred, event_ndim), best


def regret(
    y_pred: torch.Tensor,
    theta_true: torch.Tensor,
    y_target: torch.Tensor | None = None,
    *,
    oracle: Any = None,
    event_ndim: int | None = None,
    reduction: str = "none",
) -> torch.Tensor:
    r"""Regret :math:`\langle\bar\theta, y^\star\rangle - \langle\bar\theta, \hat y\rangle \ge 0` per instance.

    Args:
        y_pred: predicted solutions ``(*batch, *event)``.
        theta_true: true scores (maximization; ``-cost`` for costs).
        y_target: optimal solutions (default ``oracle(theta_true)``).
        oracle: gives ``objective`` (and computes ``y_target``); default objective ⟨θ, y⟩.
        event_ndim: solution dimensions when no oracle gives them (default 1).
        reduction: ``"none"`` (one value per instance, ``(*batch)``), ``"mean"`` or ``"sum"``.

    Example:
        >>> import torch
        >>> regret(torch.tensor([[0.0, 1.0]]), torch.tensor([[3.0, 1.0]]), torch.tensor([[1.0, 0.0]]))
        tensor([2.])
    """
    return reduce(_regret(y_pred, theta_true, y_target, oracle, event_ndim, reduction)[0], reduction)


def normalized_regret(
    y_pred: torch.Tensor,
    theta_true: torch.Tensor,
    y_target: torch.Tensor | None = None,
    *,
    oracle: Any = None,
    event_ndim: int | None = None,
    reduction: str = "none",
) -> torch.Tensor:
    r"""Regret over the batch's mean absolute optimal objective; its mean is PyEPO's normalized regret.

    With :math:`N` instances, optimal objectives :math:`o_j = \langle\bar\theta_j, g(y^\star_j)\rangle` and
    :math:`\bar o = \frac1N \sum_j |o_j|`:

    * ``"none"``: :math:`\mathrm{regret}_i / \bar o`, shape ``(*batch)``; the normalizer is a statistic of the
      whole batch, so an instance's value depends on the instances evaluated with it (for one instance it is
      :math:`\mathrm{regret} / |o|`);
    * ``"mean"``: :math:`\sum_i \mathrm{regret}_i / \sum_i |o_i|` — **PyEPO's data-set normalized regret**
      (``pyepo.metric.regret``), computed as that ratio of sums; pass the whole evaluation set in one call;
    * ``"sum"``: :math:`N \sum_i \mathrm{regret}_i / \sum_i |o_i|`.

    For a per-instance ratio with its own optimum, :math:`\mathrm{regret}_i / |o_i|`, use
    :func:`cost_ratio` minus 1.

    Args: as :func:`regret`.

    Raises:
        ValueError: the optimal objectives are all 0 (the ratio is undefined).

    Example:
        >>> import torch
        >>> theta = torch.tensor([[3.0, 1.0], [1.0, 0.0]])  # optimal objectives 3 and 1, mean 2
        >>> y_pred, y_best = torch.tensor([[0.0, 1.0], [1.0, 0.0]]), torch.tensor([[1.0, 0.0], [1.0, 0.0]])
        >>> normalized_regret(y_pred, theta, y_best)  # regrets 2 and 0, over 2
        tensor([1., 0.])
        >>> normalized_regret(y_pred, theta, y_best, reduction="mean")  # (2 + 0) / (3 + 1)
        tensor(0.5000)
    """
    r, best = _regret(y_pred, theta_true, y_target, oracle, event_ndim, reduction)
    den = best.abs().sum()
    if float(den) == 0.0:
        raise ValueError("normalized_regret is undefined: the optimal objectives of theta_true are all 0")
    if reduction == "mean":
        return r.sum() / den
    if reduction == "sum":
        return r.sum() / den * r.numel()
    return r / (den / r.numel())


def cost_ratio(
    y_pred: torch.Tensor,
    theta_true: torch.Tensor,
    y_target: torch.Tensor | None = None,
    *,
    oracle: Any = None,
    event_ndim: int | None = None,
    reduction: str = "none",
) -> torch.Tensor:
    r"""Per-instance :math:`1 + \mathrm{regret}/|\langle\bar\theta, y^\star\rangle|`: 1 optimal, larger worse.

    For costs (:math:`\bar\theta = -c`, :math:`c > 0`) this is :math:`\langle c,\hat y\rangle/\langle c,y^\star\rangle`;
    for positive values (maximization) it is :math:`2 - \langle v,\hat y\rangle/\langle v,y^\star\rangle`, so that
    the direction is the same in both senses. Infinite where the optimal objective is 0 and the regret is not.
    ``"mean"`` and ``"sum"`` reduce these per-instance ratios.

    Args: as :func:`regret`.
    """
    r, best = _regret(y_pred, theta_true, y_target, oracle, event_ndim, reduction)
    return reduce(1.0 + r / best.abs(), reduction)


def exact_match(
    y_pred: torch.Tensor,
    theta_true: torch.Tensor,
    y_target: torch.Tensor | None = None,
    *,
    oracle: Any = None,
    event_ndim: int | None = None,
    reduction: str = "none",
    rtol: float = 1e-6,
    atol: float = 1e-6,
) -> torch.Tensor:
    """Whether the predicted solution attains the optimal objective: ``|regret| <= atol + rtol * |optimum|``.

    Args: as :func:`regret`, and the tolerances ``rtol``, ``atol``. ``reduction="none"`` gives a boolean per
    instance; ``"mean"`` the share of matches and ``"sum"`` their number, in the objective's dtype.
    """
    r, best = _regret(y_pred, theta_true, y_target, oracle, event_ndim, reduction)
    match = r.abs() <= atol + rtol * best.abs()
    return match if reduction == "none" else reduce(match.to(r.dtype), reduction)


def hamming_distance(
    y_pred: torch.Tensor,
    y_target: torch.Tensor,
    *,
    oracle: Any = None,
    event_ndim: int | None = None,
    reduction: str = "none",
) -> torch.Tensor:
    r"""Normalized Hamming distance of 0/1 solutions: the mean of :math:`|\hat y - y|` over the event's
    entries, in [0, 1], per instance.

    Args:
        y_pred, y_target: 0/1 solutions ``(*batch, *event)``.
        oracle: any object with ``event_ndim`` (used when ``event_ndim`` is not given).
        event_ndim: the number of event dimensions; default ``oracle.event_ndim``, else 1 (vectors; give 2 for
            matrix solutions such as matchings, or the oracle).
        reduction: ``"none"`` (one value per instance, ``(*batch)``), ``"mean"`` or ``"sum"``.

    Raises:
        ValueError: entries other than 0 and 1 (for rank vectors use :func:`rank_distance`).

    Example:
        >>> import torch
        >>> hamming_distance(torch.tensor([[1.0, 0.0, 1.0, 0.0]]), torch.tensor([[1.0, 1.0, 0.0, 0.0]]))
        tensor([0.5000])
    """
    check_reduction(reduction)
    _check_tensors(y_pred=y_pred, y_target=y_target)
    check_same_shape("y_pred", y_pred, "y_target", y_target)
    nd = _event_ndim(oracle, event_ndim, y_pred)
    for name, y in (("y_pred", y_pred), ("y_target", y_target)):
        bad = ~((y == 0) | (y == 1))
        if bool(bad.any()):
            raise ValueError(
                f"hamming_distance needs 0/1 solutions; {name} has {int(bad.sum())} other entries (for rankings "
                "use rank_distance)"
            )
    return reduce((y_pred - y_target).abs().mean(dim=tuple(range(-nd, 0))), reduction)


def rank_distance(
    y_pred: torch.Tensor,
    y_target: torch.Tensor,
    *,
    oracle: Any = None,
    event_ndim: int | None = None,
    reduction: str = "none",
) -> torch.Tensor:
    r"""Normalized Spearman footrule of rank vectors (ranks 1..m along the last dimension), in [0, 1].

    :math:`\sum_j |\hat r_j - r_j| / \lfloor m^2/2\rfloor`: 0 for the same order, 1 for the reversed one. With
    ``event_ndim`` > 1 (several rankings per instance) an instance's value is the mean over its rankings.

    Args:
        y_pred, y_target: rank vectors ``(*batch, *event)``.
        oracle: any object with ``event_ndim`` (used when ``event_ndim`` is not given).
        event_ndim: the number of event dimensions; default ``oracle.event_ndim``, else 1.
        reduction: ``"none"`` (one value per instance, ``(*batch)``), ``"mean"`` or ``"sum"``.

    Example:
        >>> import torch
        >>> rank_distance(torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0]]), torch.tensor([[1.0, 2.0, 3.0]] * 2))
        tensor([0., 1.])
    """
    check_reduction(reduction)
    _check_tensors(y_pred=y_pred, y_target=y_target)
    check_same_shape("y_pred", y_pred, "y_target", y_target)
    nd = _event_ndim(oracle, event_ndim, y_pred)
    m = y_pred.shape[-1]
    per_ranking = (y_pred - y_target).abs().sum(dim=-1) / max(1, math.floor(m * m / 2))
    per_instance = per_ranking.mean(dim=tuple(range(-(nd - 1), 0))) if nd > 1 else per_ranking
    return reduce(per_instance, reduction)


def unambiguous_regret(
    theta_pred: torch.Tensor,
    theta_true: torch.Tensor,
    y_target: torch.Tensor | None = None,
    *,
    oracle: Any,
    tolerance: float = 1e-5,
    event_ndim: int | None = None,
    reduction: str = "none",
) -> torch.Tensor:
    r"""Tie-aware ("unambiguous") regret: the worst regret over the maximizers of the predicted scores.

    .. math::

        \max_{y \in Y^\star(\hat\theta)} \langle\bar\theta, g(y^\star)\rangle - \langle\bar\theta, g(y)\rangle,
        \qquad Y^\star(\hat\theta) = \operatorname{argmax}_{y\in\mathcal Y} \langle\hat\theta, g(y)\rangle + h(y),

    which is :func:`regret` of :math:`f(\hat\theta)` whatever tie the oracle breaks to (the SPO loss of
    Elmachtoub & Grigas; a model that predicts :math:`\hat\theta = 0` gets the worst regret, not a lucky one).
    The worst tie is found with one more oracle call, at :math:`\hat\theta - \delta\bar\theta` with
    :math:`\delta = \mathrm{tolerance} / \|\bar\theta\|_1` (per instance): among exact ties it maximizes
    :math:`-\langle\bar\theta, g(y)\rangle`, and for 0/1 solutions it cannot leave the ties by more than
    ``tolerance`` in objective. The solution found is checked: it must attain the optimum of
    :math:`\hat\theta` within ``tolerance`` (else a ``ValueError`` asks for a smaller one), and the step must
    change every entry of :math:`\hat\theta` it touches (else float64 cannot resolve it: a ``ValueError``
    asks for a larger tolerance). Solutions within ``tolerance`` of the optimum count as ties. This tie step
    runs in float64 whatever θ's dtype (float32 cannot resolve a step of 10⁻⁵/‖θ̄‖₁ on scores of size 1), so the
    oracle must accept float64 scores on θ's device; the regret is then computed in θ̄'s dtype.

    **PyEPO** (``pyepo.metric.calUnambRegret(optmodel, pred_cost, true_cost, true_obj, tolerance)``, costs
    minimized): with :math:`\hat\theta = -\hat c` and :math:`\bar\theta = -c` the per-instance values are equal;
    ``unambRegret``'s data-set value is the ``"sum"`` of these over :math:`\sum_i |z^*(c_i)|`.

    Args:
        theta_pred: predicted scores ``(*batch, *event)`` (maximization; ``-cost`` for costs).
        theta_true: true scores, same shape.
        y_target: optimal solutions for ``theta_true`` (default ``oracle(theta_true)``).
        oracle: the maximization oracle (needed to find the ties): called on scores, gives ``objective``.
        tolerance: the objective gap under which two solutions tie, > 0 (PyEPO's default 10⁻⁵).
        event_ndim, reduction: as :func:`regret`.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> theta_true = torch.tensor([[3.0, 1.0, 2.0]])
        >>> unambiguous_regret(torch.tensor([[1.0, 1.0, 0.0]]), theta_true, oracle=ArgmaxOneHot())  # ties 0, 1
        tensor([2.])
        >>> regret(ArgmaxOneHot()(torch.tensor([[1.0, 1.0, 0.0]])), theta_true, oracle=ArgmaxOneHot())
        tensor([0.])
    """
    check_reduction(reduction)
    _check_tensors(theta_pred=theta_pred, theta_true=theta_true, y_target=y_target)
    if oracle is None or not callable(oracle):
        raise ValueError("unambiguous_regret needs oracle= (a callable oracle finds the ties of theta_pred)")
    tolerance = check_positive("tolerance", tolerance)
    check_same_shape("theta_pred", theta_pred, "theta_true", theta_true)
    dims = tuple(range(-_event_ndim(oracle, event_ndim, theta_true), 0))
    pred, true = theta_pred.double(), theta_true.double()  # the tie step, in float64 (see the docstring)
    l1 = true.abs().sum(dim=dims, keepdim=True)
    delta = torch.where(l1 > 0, tolerance / l1.clamp_min(torch.finfo(l1.dtype).tiny), torch.zeros_like(l1))
    lowered = pred - delta * true
    if bool(((lowered == pred) & (true != 0)).any()):
        raise ValueError(
            f"unambiguous_regret: tolerance={tolerance} is too small for theta_pred's magnitude (theta_pred - "
            "tolerance * theta_true / |theta_true|_1 rounds back to theta_pred in float64); give a larger tolerance"
        )
    y_worst = oracle(lowered)
    gap = _objective(oracle, pred, oracle(pred), event_ndim) - _objective(oracle, pred, y_worst, event_ndim)
    if bool((gap > tolerance).any()):
        raise ValueError(
            f"unambiguous_regret: the worst tie found is {float(gap.max()):.3g} below the optimum of theta_pred, "
            f"more than tolerance={tolerance}; give a smaller tolerance"
        )
    y_worst = y_worst.to(theta_true.dtype)
    return reduce(_regret(y_worst, theta_true, y_target, oracle, event_ndim, reduction)[0], reduction)


def spo_error(
    theta_pred: torch.Tensor,
    theta_true: torch.Tensor,
    y_target: torch.Tensor | None = None,
    *,
    oracle: Any,
    event_ndim: int | None = None,
    reduction: str = "none",
) -> torch.Tensor:
    r""":func:`normalized_regret` of the decision :math:`f(\hat\theta)` of the predicted scores.

    ``reduction="mean"`` is :math:`\sum_i \mathrm{regret}_i / \sum_i |\langle\bar\theta_i, g(y^\star_i)\rangle|`,
    PyEPO's ``SPOError(pred_cost, true_cost, optmodel)`` with :math:`\hat\theta = -\hat c`, :math:`\bar\theta = -c`
    (pass the whole evaluation set in one call). The decision is the oracle's tie-break; for the worst tie, see
    :func:`unambiguous_regret`.

    Args: as :func:`unambiguous_regret` (``oracle`` required), without ``tolerance``.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> theta_pred = torch.tensor([[0.0, 1.0], [2.0, 1.0]])
        >>> spo_error(theta_pred, torch.tensor([[3.0, 1.0], [1.0, 0.0]]), oracle=ArgmaxOneHot(), reduction="mean")
        tensor(0.5000)
    """
    _check_tensors(theta_pred=theta_pred, theta_true=theta_true)
    if oracle is None or not callable(oracle):
        raise ValueError("spo_error needs oracle= (a callable oracle decodes theta_pred)")
    check_same_shape("theta_pred", theta_pred, "theta_true", theta_true)
    y_pred = oracle(theta_pred)
    return normalized_regret(y_pred, theta_true, y_target, oracle=oracle, event_ndim=event_ndim, reduction=reduction)
