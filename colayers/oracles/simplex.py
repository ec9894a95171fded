r"""Tensor-native oracles over vectors: one-hot argmax, top-k subsets, rankings.

They run batched on any device (CPU or CUDA) with no Python loop over instances, and break ties
deterministically (lowest index first) so that CPU and CUDA agree.
"""

from __future__ import annotations

import torch

from .._validation import check_int_at_least
from . import _membership
from .base import Oracle

__all__ = ["ArgmaxOneHot", "TopKSubset", "Ranking"]


class _VectorOracle(Oracle):
    event_ndim = 1

    def __init__(self, n: int | None = None, *, validate_args: bool | None = None) -> None:
        super().__init__(validate_args=validate_args)
        self.event_shape = None if n is None else (check_int_at_least("n", n, 1),)

    def _batch_shape(self, y: torch.Tensor) -> tuple[int, ...]:
        return _membership.solution_batch_shape(type(self).__name__, y, self.event_shape, 1)

    def _descending_order(self, theta: torch.Tensor) -> torch.Tensor:
        # stable sort of -theta: equal scores keep index order, so the lowest index wins ties
        return torch.sort(-theta, dim=-1, stable=True).indices


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
        idx = self._descending_order(theta)[:, :1]
        return torch.zeros_like(theta).scatter_(-1, idx, 1.0)

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
        idx = self._descending_order(theta)[:, : self.k]
        return torch.zeros_like(theta).scatter_(-1, idx, 1.0)

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
