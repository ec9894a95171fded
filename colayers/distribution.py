r"""A finite distribution over solutions: atoms with weights.

Every method of colayers replaces the oracle's output :math:`f(\theta)` by a distribution
:math:`p(\cdot\mid\theta)` over :math:`\mathcal Y` and works with :math:`\mu(\theta) = \mathbb E_{p}[g(y)]`.
This class is the common currency: perturbed layers return S equally weighted atoms (their samples),
regularized layers the active set of Frank-Wolfe with its convex weights.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ._validation import check_generator, check_int_at_least

__all__ = ["SolutionDistribution"]


class SolutionDistribution:
    r"""Atoms ``(S, *batch, *event)`` with weights ``(S, *batch)`` (uniform when omitted).

    For each batch element the weights over the S atoms are non-negative and sum to one; an instance
    with fewer atoms than S pads with zero-weight atoms.

    Args:
        atoms: the solutions, stacked first: ``(S, *batch, *event)``.
        weights: ``(S, *batch)`` probabilities, or ``None`` for ``1/S`` each.
        event_ndim: the number of trailing dimensions of one solution.

    Example:
        >>> import torch
        >>> atoms = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])  # S=3, event (2,)
        >>> d = SolutionDistribution(atoms)
        >>> d.mean
        tensor([0.6667, 0.3333])
        >>> d.expectation(lambda y: y[..., 0] * 3.0)
        tensor(2.)
    """

    def __init__(self, atoms: torch.Tensor, weights: torch.Tensor | None = None, event_ndim: int = 1) -> None:
        check_int_at_least("event_ndim", event_ndim, 0)
        if atoms.ndim < 1 + event_ndim:
            raise ValueError(
                f"atoms must have shape (S, *batch, *event) with {event_ndim} event dimension(s); "
                f"got shape {tuple(atoms.shape)}"
            )
        if weights is not None:
            expected = tuple(atoms.shape[: atoms.ndim - event_ndim])
            if tuple(weights.shape) != expected:
                raise ValueError(f"weights must have shape (S, *batch) = {expected}; got {tuple(weights.shape)}")
            if weights.device != atoms.device:
                raise ValueError(f"weights must be on the device of atoms ({atoms.device}); got {weights.device}")
        self.atoms = atoms
        self._weights = weights
        self.event_ndim = event_ndim

    @property
    def num_atoms(self) -> int:
        return self.atoms.shape[0]

    @property
    def batch_shape(self) -> torch.Size:
        return self.atoms.shape[1 : self.atoms.ndim - self.event_ndim]

    @property
    def event_shape(self) -> torch.Size:
        return self.atoms.shape[self.atoms.ndim - self.event_ndim :]

    @property
    def weights(self) -> torch.Tensor:
        """Weights ``(S, *batch)`` (materialized as ``1/S`` when uniform)."""
        if self._weights is None:
            shape = self.atoms.shape[: self.atoms.ndim - self.event_ndim]
            return torch.full(shape, 1.0 / self.num_atoms, dtype=self.atoms.dtype, device=self.atoms.device)
        return self._weights

    @property
    def is_uniform(self) -> bool:
        return self._weights is None

    def _expand(self, w: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return w.reshape(w.shape + (1,) * (like.ndim - w.ndim))

    @property
    def mean(self) -> torch.Tensor:
        r""":math:`\mathbb E[y] = \sum_s w_s y_s`, shape ``(*batch, *event)``."""
        if self._weights is None:
            return self.atoms.mean(0)
        return (self._expand(self._weights, self.atoms) * self.atoms).sum(0)

    def expectation(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        r""":math:`\mathbb E[\mathrm{fn}(y)]`; ``fn`` maps atoms ``(S, *batch, *event)`` to ``(S, *batch, ...)``."""
        values = fn(self.atoms)
        if values.shape[: 1 + len(self.batch_shape)] != self.atoms.shape[: 1 + len(self.batch_shape)]:
            raise ValueError(
                "fn must map atoms (S, *batch, *event) to (S, *batch, ...); "
                f"got {tuple(values.shape)} from atoms {tuple(self.atoms.shape)}"
            )
        if self._weights is None:
            return values.mean(0)
        return (self._expand(self._weights, values).to(values.dtype) * values).sum(0)

    def sample(self, num_samples: int = 1, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw atoms by their weights, independently per batch element: ``(num_samples, *batch, *event)``."""
        check_int_at_least("num_samples", num_samples, 1)
        check_generator(generator, self.atoms.device)
        w = self.weights.reshape(self.num_atoms, -1).T  # (B, S)
        idx = torch.multinomial(w, num_samples, replacement=True, generator=generator).T  # (n, B)
        flat = self.atoms.reshape(self.num_atoms, w.shape[0], -1)  # (S, B, E)
        picked = torch.gather(flat, 0, idx.unsqueeze(-1).expand(-1, -1, flat.shape[-1]))
        return picked.reshape((num_samples, *self.batch_shape, *self.event_shape))

    def __repr__(self) -> str:
        kind = "uniform" if self.is_uniform else "weighted"
        return (
            f"SolutionDistribution({self.num_atoms} {kind} atoms, batch_shape={tuple(self.batch_shape)}, "
            f"event_shape={tuple(self.event_shape)})"
        )
