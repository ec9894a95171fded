r"""A plain batched torch function as an oracle, and as a layer in one call (torch-imle's ``@imle`` decorator).

:class:`FunctionOracle` turns ``fn: (N, *event) -> (N, *event)`` into an :class:`~colayers.oracles.Oracle`
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

from .._validation import boolean, check_args, integer_at_least, optional
from ..oracles.base import Oracle, OracleError, shape
from .core import Perturbed

__all__ = ["FunctionOracle", "oracle_layer"]


class FunctionOracle(Oracle):
    r"""An oracle from a batched function: :math:`f(\theta)` = ``fn(theta)`` on a flat batch.

    ``fn`` receives ``(N, *event)`` scores (a detached copy of the caller's θ, under ``torch.no_grad``) and must
    return the N solutions, one per instance, **with the shape of its input** ``(N, *event)``, on θ's device and
    in its dtype. That is what every layer needs: a layer pairs y with θ (⟨θ, y⟩, the finite-difference targets
    θ − λ·dy, the Fenchel-Young gradient μ − ȳ), so a solution of another shape could not serve one (for a
    per-instance solver whose solution has another shape and a statistic ``g``, use
    :class:`~colayers.oracles.SolverOracle`). It must solve the *maximization* problem
    :math:`\max_y\langle\theta, y\rangle` (for a minimizer, wrap ``lambda t: solve(-t)``).

    ``fn`` gets a copy: an ``fn`` that works in place (``t.neg_()``, ``t.scatter_(...)``) cannot change the
    caller's θ, and the solution it returns never shares memory with θ (the copy costs one pass over θ per call).
    While ``validate_args`` is on, the solution is checked: a tensor of the input's shape, θ's dtype and device,
    and finite — a NaN or inf raises :class:`~colayers.oracles.OracleError` naming the instance, instead of flowing
    into a layer's output and gradient.

    Args:
        fn: the batched solver.
        event_ndim: the number of trailing dimensions of one instance (1 for vectors, 2 for grids), an integer ≥ 0.
        event_shape: the exact event shape (``event_ndim`` integers ≥ 0), or ``None`` for any.
        deterministic: whether equal inputs give equal outputs (enables caching), a bool.
        validate_args: see :class:`~colayers.oracles.Oracle`.

    Example:
        >>> import torch
        >>> oracle = FunctionOracle(lambda t: torch.nn.functional.one_hot(t.argmax(-1), t.shape[-1]).to(t.dtype))
        >>> oracle(torch.tensor([[0.0, 2.0, 1.0], [5.0, 0.0, 0.0]]))
        tensor([[0., 1., 0.],
                [1., 0., 0.]])
        >>> theta = torch.tensor([[1.0, -2.0]])
        >>> FunctionOracle(lambda t: t.clamp_(min=0.0).sign_())(theta), theta  # in place on a copy
        (tensor([[1., 0.]]), tensor([[ 1., -2.]]))
        >>> FunctionOracle(lambda t: t / 0.0)(torch.ones(2, 3))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        colayers.oracles.base.OracleError: fn <lambda> returned 0 NaN and 6 inf entries (first in instance 0 of 2); ...
    """

    arg_constraints = {"event_ndim": integer_at_least(0), "event_shape": optional(shape), "deterministic": boolean}

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
        checked = check_args(self, event_ndim=event_ndim, event_shape=event_shape, deterministic=deterministic)
        self.fn = fn
        self.event_ndim = checked["event_ndim"]
        if checked["event_shape"] is not None and len(checked["event_shape"]) != self.event_ndim:
            raise ValueError(f"event_shape must have event_ndim = {event_ndim} entries; got {event_shape}")
        self.event_shape = checked["event_shape"]
        self.deterministic = checked["deterministic"]

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        y = self.fn(theta.clone())  # fn may work in place: on a copy, never on the caller's θ
        if self.validate_args and isinstance(y, torch.Tensor) and y.is_floating_point() and y.ndim > 0:
            finite = torch.isfinite(y)
            if not bool(finite.all()):
                first = int((~finite).reshape(y.shape[0], -1).any(dim=1).nonzero()[0])
                raise OracleError(
                    f"fn {_name(self.fn)} returned {int(torch.isnan(y).sum())} NaN and {int(torch.isinf(y).sum())} "
                    f"inf entries (first in instance {first} of {y.shape[0]}); a solution must be finite"
                )
        return y

    def __repr__(self) -> str:
        return f"FunctionOracle({_name(self.fn)})"


def _name(fn: Callable) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


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
