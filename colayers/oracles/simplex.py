r"""Tensor-native oracles over vectors: one-hot argmax, top-k subsets, rankings.

They run batched on any device (CPU or CUDA) with no Python loop over instances, and break ties
deterministically (lowest index first) so that CPU and CUDA agree. With validation switched off, a NaN score
ranks below every number, ``-inf`` included.

:class:`ArgmaxOneHot` and :class:`TopKSubset` *select* rather than sort (``torch.max``, ``torch.topk``: linear
time instead of a full sort, 4–30× faster from a few thousand scores on; ``benchmarks/bench_selection.py``);
small inputs, where a sort costs less than the few extra tensor operations, keep the stable sort. Both give the
same outputs.
"""

from __future__ import annotations

import math

import torch

from .._validation import check_int_at_least
from . import _membership
from .base import Oracle

__all__ = ["ArgmaxOneHot", "TopKSubset", "Ranking"]


# Below this many scores (all rows together) the stable sort is faster than selection on the CPU (its few tensor
# operations cost less than selection's checks): measured, 320 scores sort faster, 1,000 select faster
SORT_BELOW = 1000


def _ties_settled(flags: torch.Tensor) -> bool:
    """Whether no row is flagged, read on the CPU only: on another device the exact fix-up runs unconditionally
    (masked by the flags), so that no value is read back to the host."""
    return flags.device.type == "cpu" and not bool(flags.any())


def _selection_key(theta: torch.Tensor) -> torch.Tensor:
    # topk and max rank NaN above everything; the oracles rank it below everything, so it becomes -inf here and the
    # rows where that matters (the k-th largest key is -inf) are settled from theta itself
    return torch.nan_to_num(theta, nan=-math.inf, posinf=math.inf, neginf=-math.inf)


def _argmax_indicator(theta: torch.Tensor) -> torch.Tensor:
    """One-hot of the first maximum of each row (``torch.max`` returns the first maximal index), NaN lowest."""
    best, idx = _selection_key(theta).max(-1, keepdim=True)
    only_neg_inf = best == -math.inf  # a row of -inf and NaN: the first -inf wins, else (all NaN) index 0
    if not _ties_settled(only_neg_inf):
        first_neg_inf = (theta == -math.inf).to(torch.uint8).argmax(-1, keepdim=True)
        idx = torch.where(only_neg_inf, first_neg_inf, idx)
    return torch.zeros_like(theta).scatter_(-1, idx, 1.0)


def _top_k_indicator(theta: torch.Tensor, k: int) -> torch.Tensor:
    r"""Indicator of the k largest scores by selection, exactly the stable sort's choice.

    With :math:`v` the k-th largest score (``torch.topk``), a row with exactly k entries :math:`\ge v` has its
    answer. Otherwise entries tie at :math:`v` and ``topk``'s choice among them is unspecified, so the row is
    rebuilt: every entry :math:`> v`, then the entries :math:`= v` in index order (a cumulative count) up to k,
    then, where :math:`v = -\infty` and that is not enough, the NaN entries in index order.
    """
    key = _selection_key(theta)
    kth = torch.topk(key, k, dim=-1, sorted=False).values.amin(-1, keepdim=True)
    at_least = key >= kth
    crowded = at_least.sum(-1, keepdim=True) > k
    y = at_least.to(theta.dtype)
    if _ties_settled(crowded):
        return y
    above, tied = theta > kth, theta == kth  # NaN is neither
    need = k - above.sum(-1, keepdim=True)
    tied_rank = tied.cumsum(-1)
    chosen = above | (tied & (tied_rank <= need))
    nan = torch.isnan(theta)
    chosen |= nan & (nan.cumsum(-1) <= need - tied_rank[:, -1:])
    return torch.where(crowded, chosen.to(theta.dtype), y)


class _VectorOracle(Oracle):
    event_ndim = 1

    def __init__(self, n: int | None = None, *, validate_args: bool | None = None) -> None:
        super().__init__(validate_args=validate_args)
        self.event_shape = None if n is None else (check_int_at_least("n", n, 1),)

    def _batch_shape(self, y: torch.Tensor) -> tuple[int, ...]:
        return _membership.solution_batch_shape(type(self).__name__, y, self.event_shape, 1)

    def _descending_order(self, theta: torch.Tensor) -> torch.Tensor:
        # stable sort of -theta: equal scores keep index order, so the lowest index wins ties (-NaN is NaN, which
        # the sort puts last: NaN ranks below -inf)
        return torch.sort(-theta, dim=-1, stable=True).indices

    def _top_k(self, theta: torch.Tensor, k: int) -> torch.Tensor:
        """The 0/1 indicator of the k largest scores of each row, lowest index first among equal scores."""
        if theta.numel() < SORT_BELOW or theta.shape[-1] == 0:  # the stable sort costs less than selection here
            idx = self._descending_order(theta)[:, :k]
            return torch.zeros_like(theta).scatter_(-1, idx, 1.0)
        return _argmax_indicator(theta) if k == 1 else _top_k_indicator(theta, k)


class ArgmaxOneHot(_VectorOracle):
    r"""One-hot argmax: :math:`f(\theta) = \operatorname*{argmax}_{y \in \{e_1,\dots,e_n\}} \langle\theta, y\rangle`.

    :math:`\mathcal{Y}` is the set of one-hot vectors (the vertices of the probability simplex). Ties go to
    the lowest index.

    Args:
        n: the dimension, or ``None`` to accept any last dimension.

    Example:
        >>> import torch
        >>> ArgmaxOneHot()(torch.tensor([1.0, 3.0, 3.0]))
        tensor([0., 1., 0.])
    """

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        return self._top_k(theta, 1)

    def contains(self, y: torch.Tensor) -> torch.Tensor:
        """One-hot vectors: 0/1 entries summing to 1 (see :meth:`~colayers.oracles.Oracle.contains`).

        Example:
            >>> import torch
            >>> ArgmaxOneHot().contains(torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
            tensor([ True, False])
        """
        self._batch_shape(y)
        return _membership.k_subset(y, 1)

    def __repr__(self) -> str:
        return f"ArgmaxOneHot(n={None if self.event_shape is None else self.event_shape[0]})"


class TopKSubset(_VectorOracle):
    r"""Top-k subset: :math:`\operatorname*{argmax}_{y \in \{0,1\}^n,\ \sum_i y_i = k} \langle\theta,y\rangle`.

    Selects the k largest scores; among equal scores the lowest indices win.

    Args:
        k: the subset size, 1 ≤ k ≤ n.
        n: the dimension, or ``None`` to accept any last dimension ≥ k.

    Example:
        >>> import torch
        >>> TopKSubset(2)(torch.tensor([0.5, -1.0, 2.0, 0.5]))
        tensor([1., 0., 1., 0.])
    """

    def __init__(self, k: int, n: int | None = None, *, validate_args: bool | None = None) -> None:
        super().__init__(n, validate_args=validate_args)
        self.k = check_int_at_least("k", k, 1)
        if n is not None and k > n:
            raise ValueError(f"k must be an integer in [1, n={n}]; got {k}")

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        n = theta.shape[-1]
        if self.k > n:
            raise ValueError(f"k must be an integer in [1, {n}] for theta with last dimension {n}; got {self.k}")
        return self._top_k(theta, self.k)

    def contains(self, y: torch.Tensor) -> torch.Tensor:
        """0/1 vectors with exactly k ones (see :meth:`~colayers.oracles.Oracle.contains`).

        Example:
            >>> import torch
            >>> TopKSubset(2).contains(torch.tensor([[0.0, 1.0, 1.0], [0.0, 2.0, 0.0]]))
            tensor([ True, False])
        """
        self._batch_shape(y)
        return _membership.k_subset(y, self.k)

    def __repr__(self) -> str:
        return f"TopKSubset(k={self.k})"


class Ranking(_VectorOracle):
    r"""Ranking as a permutation of ranks: :math:`\operatorname*{argmax}_{y \in \mathcal{P}} \langle\theta, y\rangle`.

    :math:`\mathcal{P}` is the set of permutations of :math:`(1, 2, \dots, n)` (the vertices of the
    permutahedron). By the rearrangement inequality the maximizer gives rank ``n`` to the largest score
    and rank ``1`` to the smallest: :math:`y_i = 1 + \#\{j : \theta_j < \theta_i\}` up to ties, which go to
    the lowest index (among equal scores the lower index gets the *higher* rank).

    Example:
        >>> import torch
        >>> Ranking()(torch.tensor([0.3, -2.0, 5.0, 0.3]))
        tensor([3., 1., 4., 2.])
    """

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        n = theta.shape[-1]
        order = self._descending_order(theta)  # order[:, 0] gets rank n
        ranks = torch.arange(n, 0, -1, device=theta.device, dtype=theta.dtype).expand_as(theta)
        return torch.empty_like(theta).scatter_(-1, order, ranks)

    def contains(self, y: torch.Tensor) -> torch.Tensor:
        """Permutations of the ranks ``(1, ..., n)`` (see :meth:`~colayers.oracles.Oracle.contains`).

        Example:
            >>> import torch
            >>> Ranking().contains(torch.tensor([[2.0, 3.0, 1.0], [1.0, 1.0, 3.0]]))
            tensor([ True, False])
        """
        self._batch_shape(y)
        return _membership.permutation_of_ranks(y)

    def __repr__(self) -> str:
        return "Ranking()"
