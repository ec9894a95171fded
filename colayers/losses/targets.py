r"""Robust training targets: the kNN-smoothed solutions of Schutte et al. (IJCAI 2024; PyEPO's ``optDatasetKNN``)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .._validation import check_event_shape, check_finite, check_int_in_range, check_tensor, resolve_validate_args
from ._common import check_oracle

__all__ = ["KNNTargets", "knn_targets"]


class KNNTargets(NamedTuple):
    """The kNN-robust targets of :func:`knn_targets`, one row per instance."""

    solutions: torch.Tensor  # (n, *event): the mean of the k solutions, in conv(Y)
    scores: torch.Tensor  # (n, *event): the mean smoothed scores
    objectives: torch.Tensor  # (n,): the mean objective of each solution under its smoothed scores


def _check_weight(weight: object) -> float:
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise TypeError(f"weight must be a real number in [0, 1]; got {type(weight).__name__} {weight!r}")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must be in [0, 1]; got {weight!r}")
    return float(weight)


def knn_targets(
    x: torch.Tensor,
    theta_true: torch.Tensor,
    oracle: object,
    k: int = 10,
    weight: float = 0.5,
    *,
    validate_args: bool | None = None,
) -> KNNTargets:
    r"""kNN-robust targets: each instance's target is the mean solution over its k nearest neighbours in feature
    space (Schutte et al. 2024; PyEPO's ``optDatasetKNN``).

    For instance i with features :math:`x_i` and true scores :math:`\bar\theta_i`, let :math:`N_k(i)` be the k
    instances nearest to i in Euclidean distance between features, i itself excluded. With the self-weight
    :math:`\omega` (``weight``), each neighbour j gives the smoothed scores
    :math:`\bar\theta_{ij} = \omega\,\bar\theta_i + (1-\omega)\,\bar\theta_j` and the target is

    .. math::  \bar y_i = \frac1k \sum_{j\in N_k(i)} f(\bar\theta_{ij}) \in \operatorname{conv}\mathcal Y,
        \qquad \tilde\theta_i = \frac1k\sum_{j\in N_k(i)} \bar\theta_{ij}
        = \omega\,\bar\theta_i + (1-\omega)\,\frac1k\sum_{j\in N_k(i)}\bar\theta_j,

    with the mean objective :math:`\frac1k\sum_j \operatorname{objective}(\bar\theta_{ij}, f(\bar\theta_{ij}))`.
    ω = 1 gives back :math:`f(\bar\theta_i)` (no smoothing). The oracle is called once, on the whole
    ``(n, k, *event)`` batch of smoothed scores; everything stays on θ̄'s device and dtype; nothing is
    differentiated (the targets are constants). The distances form an ``(n, n)`` matrix.

    Mapping to PyEPO (``optDatasetKNN(model, feats, costs, k=10, weight=0.5)``, which minimizes costs
    :math:`c = -\bar\theta`): ``feats`` ↦ ``x``, ``costs`` ↦ ``-theta_true``, ``k`` ↦ ``k`` (both require
    1 ≤ k < n), ``weight`` ↦ ``weight`` (the same self-weight ω, same default 0.5); its ``sols`` are ``solutions``,
    its ``costs`` are ``-scores`` and its ``objs`` are ``-objectives``. The targets are meant for the losses that
    take relaxed targets (e.g. :class:`~colayers.losses.FenchelYoungLoss` or SPO+ with
    ``allow_relaxed_targets=True``) and the smoothed scores for the losses that take true scores. Two neighbours
    at exactly the same distance may be chosen differently by the two libraries.

    Args:
        x: features ``(n, d)`` (floating, finite).
        theta_true: true scores ``(n, *event)`` of the oracle's event shape.
        oracle: a colayers :class:`~colayers.oracles.Oracle` (maximization convention).
        k: the number of neighbours, 1 ≤ k < n.
        weight: the self-weight ω ∈ [0, 1] of the convex combination.
        validate_args: check that ``x`` and ``theta_true`` are finite (``None``: the global default).

    Returns:
        :class:`KNNTargets` ``(solutions, scores, objectives)``.

    Reference: N. Schutte, K. Postek, N. Yorke-Smith, "Robust Losses for Decision-Focused Learning", IJCAI 2024.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> x = torch.tensor([[0.0], [1.0], [3.0]])
        >>> theta = torch.tensor([[1.0, 0.0], [0.0, 3.0], [4.0, 0.0]])
        >>> knn_targets(x, theta, ArgmaxOneHot(), k=1, weight=0.5).solutions  # neighbours: 1, 0, 1
        tensor([[0., 1.],
                [0., 1.],
                [1., 0.]])
    """
    oracle = check_oracle("oracle", oracle)
    validate = resolve_validate_args(validate_args)
    check_tensor("x", x)
    check_tensor("theta_true", theta_true)
    batch = check_event_shape("theta_true", theta_true, oracle.event_shape, oracle.event_ndim)
    if x.ndim != 2:
        raise ValueError(f"x must be a tensor of features (n, d); got shape {tuple(x.shape)}")
    n = x.shape[0]
    if tuple(batch) != (n,):
        raise ValueError(
            f"theta_true must have one row per row of x, (n, *event) with n = {n}; got shape {tuple(theta_true.shape)}"
        )
    if x.device != theta_true.device:
        raise ValueError(f"x must be on theta_true's device ({theta_true.device}); got {x.device}")
    if validate:
        check_finite("x", x)
        check_finite("theta_true", theta_true)
    if n < 2:
        raise ValueError(f"knn_targets needs at least 2 instances (k < n); got n = {n}")
    k = check_int_in_range("k", k, 1, n - 1)
    weight = _check_weight(weight)
    with torch.no_grad():
        dist = torch.cdist(x, x, compute_mode="donot_use_mm_for_euclid_dist")
        dist.fill_diagonal_(float("inf"))  # the instance itself is not one of its neighbours
        idx = dist.topk(k, dim=1, largest=False).indices  # (n, k)
        smoothed = weight * theta_true.unsqueeze(1) + (1.0 - weight) * theta_true[idx]  # (n, k, *event)
        y = oracle(smoothed)
        obj = oracle.objective(smoothed, y)  # (n, k)
        return KNNTargets(y.mean(dim=1), smoothed.mean(dim=1), obj.mean(dim=1))
