r"""Evaluation metrics for predicted solutions, in the maximization convention.

With true scores :math:`\bar\theta` (for a cost-minimization problem :math:`\bar\theta = -c`), a predicted
solution :math:`\hat y` and an optimal one :math:`y^\star = f(\bar\theta)`:

* regret: :math:`\langle\bar\theta, g(y^\star)\rangle - \langle\bar\theta, g(\hat y)\rangle \ge 0`
  (in costs: :math:`\langle c, \hat y\rangle - \langle c, y^\star\rangle`);
* normalized regret: :math:`\sum_i \mathrm{regret}_i / \sum_i |\langle\bar\theta_i, g(y^\star_i)\rangle|`
  (PyEPO's definition, a ratio of sums over the data set);
* cost ratio: :math:`\langle\bar\theta, g(\hat y)\rangle / \langle\bar\theta, g(y^\star)\rangle` (= predicted
  cost over optimal cost for minimization problems, ≥ 1 for positive costs);
* exact match: whether :math:`\hat y` attains the optimal objective (within ``atol``) — "optimal-cost
  accuracy", which counts a different path of equal cost as a match;
* Hamming distance: the mean over entries of :math:`|\hat y - y^\star|` per instance.

All functions take batched tensors ``(*batch, *event)`` and return one value per instance
``(*batch)``, except :func:`normalized_regret`, which reduces over everything.

Example:
    >>> import torch
    >>> from colayers import ArgmaxOneHot
    >>> from colayers.metrics import regret, exact_match
    >>> oracle = ArgmaxOneHot()
    >>> theta_true = torch.tensor([[1.0, 3.0, 2.0]])
    >>> y_hat = torch.tensor([[0.0, 0.0, 1.0]])
    >>> regret(oracle, theta_true, y_hat)
    tensor([1.])
    >>> exact_match(oracle, theta_true, y_hat)
    tensor([False])
"""

from __future__ import annotations

import torch

from ._validation import check_same_shape
from .oracles.base import Oracle

__all__ = ["regret", "normalized_regret", "cost_ratio", "exact_match", "hamming_distance"]


def _optimal(oracle: Oracle, theta_true: torch.Tensor, y_opt: torch.Tensor | None) -> torch.Tensor:
    return oracle(theta_true) if y_opt is None else y_opt


def regret(
    oracle: Oracle, theta_true: torch.Tensor, y_pred: torch.Tensor, y_opt: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Per-instance regret :math:`\langle\bar\theta, y^\star\rangle - \langle\bar\theta, \hat y\rangle`."""
    y_opt = _optimal(oracle, theta_true, y_opt)
    check_same_shape("y_pred", y_pred, "y_opt", y_opt)
    return oracle.objective(theta_true, y_opt) - oracle.objective(theta_true, y_pred)


def normalized_regret(
    oracle: Oracle, theta_true: torch.Tensor, y_pred: torch.Tensor, y_opt: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Data-set normalized regret :math:`\sum_i \mathrm{regret}_i / \sum_i |\langle\bar\theta_i, y^\star_i\rangle|`."""
    y_opt = _optimal(oracle, theta_true, y_opt)
    num = regret(oracle, theta_true, y_pred, y_opt).sum()
    den = oracle.objective(theta_true, y_opt).abs().sum()
    if float(den) == 0.0:
        raise ValueError("normalized_regret is undefined: the optimal objectives of theta_true sum to 0")
    return num / den


def cost_ratio(
    oracle: Oracle, theta_true: torch.Tensor, y_pred: torch.Tensor, y_opt: torch.Tensor | None = None
) -> torch.Tensor:
    r"""Per-instance :math:`\langle\bar\theta, \hat y\rangle / \langle\bar\theta, y^\star\rangle` (pred/opt)."""
    y_opt = _optimal(oracle, theta_true, y_opt)
    check_same_shape("y_pred", y_pred, "y_opt", y_opt)
    return oracle.objective(theta_true, y_pred) / oracle.objective(theta_true, y_opt)


def exact_match(
    oracle: Oracle,
    theta_true: torch.Tensor,
    y_pred: torch.Tensor,
    y_opt: torch.Tensor | None = None,
    *,
    rtol: float = 1e-6,
    atol: float = 1e-6,
) -> torch.Tensor:
    """Per-instance boolean: the predicted solution attains the optimal objective (within tolerances)."""
    y_opt = _optimal(oracle, theta_true, y_opt)
    check_same_shape("y_pred", y_pred, "y_opt", y_opt)
    best = oracle.objective(theta_true, y_opt)
    got = oracle.objective(theta_true, y_pred)
    return (best - got).abs() <= atol + rtol * best.abs()


def hamming_distance(y_pred: torch.Tensor, y_true: torch.Tensor, event_ndim: int = 1) -> torch.Tensor:
    r"""Per-instance mean of :math:`|\hat y - y|` over the event entries (the normalized Hamming distance)."""
    check_same_shape("y_pred", y_pred, "y_true", y_true)
    dims = tuple(range(-event_ndim, 0))
    return (y_pred - y_true).abs().mean(dim=dims)
