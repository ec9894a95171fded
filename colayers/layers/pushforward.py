r"""Pushforward ("learning by experience"): the expected cost of a perturbed layer's solutions."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .perturbed import LazyScoreFunctionMean, Perturbed

__all__ = ["Pushforward"]


class Pushforward(torch.nn.Module):
    r"""Expectation of a (non-differentiable) function of the solutions under a perturbed layer's law.

    .. math::  \Phi(\theta) = \mathbb E_{\eta\sim p(\cdot\mid\theta)}[\varphi(f(\eta))]
               \approx \frac1S\sum_s\varphi(y_s),\qquad
               \nabla_\theta\Phi \approx \frac1S\sum_s(\varphi(y_s) - b_s)\,\nabla_\theta\log p(\eta_s\mid\theta)

    with the leave-one-out baseline :math:`b_s` when the layer's ``baseline`` is true (InferOpt.jl's
    ``Pushforward``; Dalle et al. 2022). φ is never differentiated, so it may be any black-box cost
    (e.g. a simulator or a regret).

    Args:
        layer: a :class:`~colayers.layers.Perturbed` layer (its perturbation needs a score).
        cost_fn: maps atoms ``(S, *batch, *solution)`` to values ``(S, *batch)``.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot, PerturbedAdditive
        >>> cost = torch.tensor([3.0, 1.0, 2.0])
        >>> push = Pushforward(PerturbedAdditive(ArgmaxOneHot(), num_samples=200, seed=0), lambda y: (y * cost).sum(-1))
        >>> theta = torch.zeros(3, requires_grad=True)
        >>> push(theta).backward()
        >>> int(theta.grad.argmin())  # lowering the expected cost means raising theta on the cheapest item
        1
    """

    def __init__(self, layer: Perturbed, cost_fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        if not isinstance(layer, Perturbed):
            raise TypeError(f"layer must be a colayers.layers.Perturbed layer; got {type(layer).__name__}")
        if not callable(cost_fn):
            raise TypeError(f"cost_fn must be callable; got {type(cost_fn).__name__}")
        self.layer = layer
        self.cost_fn = cost_fn

    def forward(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        sample, atoms = self.layer.sample(theta, generator)
        batch = theta.shape[: theta.ndim - self.layer.oracle.event_ndim]
        with torch.no_grad():
            values = self.cost_fn(atoms)
            if not isinstance(values, torch.Tensor) or tuple(values.shape) != (atoms.shape[0], *batch):
                got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
                raise ValueError(
                    f"cost_fn must map atoms {tuple(atoms.shape)} to values of shape (S, *batch) = "
                    f"{(atoms.shape[0], *batch)}; got {got}"
                )
        return LazyScoreFunctionMean.apply(
            theta, values.to(theta.dtype), sample, self.layer.perturbation, 0, self.layer.baseline
        )
