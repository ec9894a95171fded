r"""A plain batched torch function as an oracle, and as a layer in one call (torch-imle's ``@imle`` decorator).

:class:`FunctionOracle` turns ``fn: (N, *event) -> (N, *solution)`` into an :class:`~colayers.oracles.Oracle`
(batching over any leading shape, validation, no autograd); :func:`oracle_layer` builds a layer on it:

.. code-block:: python

    @oracle_layer(IMLE, epsilon=1.0, lambda_=10.0, num_samples=10)
    def layer(theta):              # a batched maximizer, theta (N, n) -> y (N, n)
        return my_solver(theta)

    y = layer(theta)               # an IMLE module: forward, backward, distribution(...)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch

from .._validation import check_int_at_least
from ..oracles.base import Oracle
from .core import Perturbed

__all__ = ["FunctionOracle", "oracle_layer"]


class FunctionOracle(Oracle):
    r"""An oracle from a batched function: :math:`f(\theta)` = ``fn(theta)`` on a flat batch.

    ``fn`` receives ``(N, *event)`` scores (detached, under ``torch.no_grad``) and must return the N solutions
    ``(N, *solution)`` on θ's device and in its dtype (checked while ``validate_args`` is on). It must solve
    the *maximization* problem :math:`\max_y\langle\theta, y\rangle` (for a minimizer, wrap ``lambda t: solve(-t)``).

    Args:
        fn: the batched solver.
        event_ndim: the number of trailing dimensions of one instance (1 for vectors, 2 for grids).
        event_shape: the exact event shape, or ``None`` for any.
        deterministic: whether equal inputs give equal outputs (enables caching).
        validate_args: see :class:`~colayers.oracles.Oracle`.

    Example:
        >>> import torch
        >>> oracle = FunctionOracle(lambda t: torch.nn.functional.one_hot(t.argmax(-1), t.shape[-1]).to(t.dtype))
        >>> oracle(torch.tensor([[0.0, 2.0, 1.0], [5.0, 0.0, 0.0]]))
        tensor([[0., 1., 0.],
                [1., 0., 0.]])
    """

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        *,
        event_ndim: int = 1,
        event_shape: tuple[int, ...] | None = None,
        deterministic: bool = True,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__(validate_args=validate_args)
        if not callable(fn):
            raise TypeError(f"fn must be callable; got {type(fn).__name__}")
        self.fn = fn
        self.event_ndim = check_int_at_least("event_ndim", event_ndim, 0)
        if event_shape is not None:
            event_shape = tuple(int(d) for d in event_shape)
            if len(event_shape) != self.event_ndim:
                raise ValueError(f"event_shape must have event_ndim = {event_ndim} entries; got {event_shape}")
        self.event_shape = event_shape
        self.deterministic = bool(deterministic)

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        return self.fn(theta)

    def __repr__(self) -> str:
        return f"FunctionOracle({getattr(self.fn, '__name__', type(self.fn).__name__)})"


def oracle_layer(
    layer_cls: type[Perturbed] | Callable[..., torch.nn.Module],
    *,
    event_ndim: int = 1,
    event_shape: tuple[int, ...] | None = None,
    **settings: Any,
) -> Callable[[Callable[[torch.Tensor], torch.Tensor]], torch.nn.Module]:
    r"""A decorator: ``@oracle_layer(IMLE, epsilon=..., lambda_=...)`` over a batched solver function returns
    ``IMLE(FunctionOracle(fn), epsilon=..., lambda_=...)``, a differentiable layer (torch-imle's ``@imle``).

    Args:
        layer_cls: any layer constructor taking an oracle first (IMLE, AIMLE, Blackbox, PerturbedAdditive,
            IdentityRelaxation, RegularizedFrankWolfe, ``functools.partial(Perturbed, perturbation, rule=...)``...).
        event_ndim, event_shape: the event of one instance (see :class:`FunctionOracle`).
        settings: the layer's keyword arguments.

    Example:
        >>> import torch
        >>> from colayers import IMLE
        >>> @oracle_layer(IMLE, epsilon=0.5, lambda_=4.0, num_samples=3, output="samples", seed=0)
        ... def top2(theta):  # (N, n) -> (N, n), the 2 largest entries set to 1
        ...     return torch.zeros_like(theta).scatter_(-1, theta.topk(2, -1).indices, 1.0)
        >>> theta = torch.tensor([[3.0, 0.0, 2.0, 1.0]], requires_grad=True)
        >>> y = top2(theta)
        >>> y.shape, type(top2).__name__
        (torch.Size([3, 1, 4]), 'IMLE')
        >>> (y * torch.tensor([0.0, -1.0, 0.0, -1.0])).sum().backward()  # prefer items 1 and 3
        >>> bool(theta.grad[0, 0] > 0 and theta.grad[0, 1] < 0)  # descent lowers item 0, raises item 1
        True
    """

    def decorate(fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.nn.Module:
        layer = layer_cls(FunctionOracle(fn, event_ndim=event_ndim, event_shape=event_shape), **settings)
        functools.update_wrapper(layer, fn, assigned=("__doc__",), updated=())
        return layer

    return decorate
