r"""Pushforward ("learning by experience"): the expected cost of a layer's solutions, for any layer with a
``distribution``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._validation import ValidateArgs, check_finite, check_validate_args, resolve_validate_args
from ..perturb import Perturbation
from .rules import score_function_vjp

__all__ = ["Pushforward", "pushforward"]


class _ScoreFunctionValue(torch.autograd.Function):
    """``apply(theta, values, sample, perturbation, baseline)``: ``values.mean(0)`` forward, the score function
    (:func:`~colayers.layers.rules.score_function_vjp` with ``value_ndim = 0``) backward."""

    @staticmethod
    def forward(theta, values, sample, perturbation, baseline):
        return values.mean(0)

    @staticmethod
    def setup_context(ctx, inputs, output):
        theta, values, sample, perturbation, baseline = inputs
        ctx.save_for_backward(theta, values)
        ctx.sample, ctx.perturbation, ctx.baseline = sample, perturbation, baseline

    @staticmethod
    def backward(ctx, grad_output):
        theta, values = ctx.saved_tensors
        grad = score_function_vjp(
            theta.detach(), values, ctx.sample, ctx.perturbation, grad_output, 0, baseline=ctx.baseline
        )
        return grad, None, None, None, None


def _check_values(values: object, atoms: torch.Tensor, batch: tuple[int, ...], validate: bool) -> torch.Tensor:
    if not isinstance(values, torch.Tensor) or tuple(values.shape) != (atoms.shape[0], *batch):
        got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(
            f"cost_fn must map atoms {tuple(atoms.shape)} to values of shape (S, *batch) = "
            f"{(atoms.shape[0], *batch)}; got {got}"
        )
    if validate:  # a NaN or inf cost would make the expectation and its gradient NaN without a word
        check_finite("the values of cost_fn (S, *batch)", values)
    return values


def _check_layer(layer: object) -> None:
    if not callable(getattr(layer, "distribution", None)):
        raise TypeError(
            "layer must have a distribution(theta) method (a Perturbed layer, e.g. PerturbedAdditive, IMLE, Blackbox, "
            f"or a regularized layer with one); got {type(layer).__name__}"
        )


def pushforward(
    theta: torch.Tensor,
    layer: torch.nn.Module,
    cost_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    generator: torch.Generator | None = None,
    validate_args: bool | None = None,
) -> torch.Tensor:
    r"""The expectation :math:`\mathbb E_{y\sim p(\cdot\mid\theta)}[\varphi(y)]` under ``layer``'s distribution.

    How it is differentiated depends on what the layer can do (capabilities, not classes):

    * a layer with a ``perturbation`` that has a score (ε > 0, Normal or Gumbel noise) and a ``sample``
      method: the score function, :math:`\frac1S\sum_s(\varphi(y_s) - b_s)\nabla_\theta\log p(\eta_s\mid\theta)`
      with the layer's baseline (``layer.baseline``);
    * any other layer: :math:`\sum_j w_j(\theta)\varphi(a_j)` over the atoms and weights of
      ``layer.distribution(theta)``, differentiated through the weights (regularized layers). A layer whose
      distribution does not depend differentiably on θ (a Dirac, as Blackbox's, or Sum-of-Gamma noise) gives
      the value and, when θ requires a gradient, a ValueError saying so.

    Args:
        theta: the scores.
        layer: any layer with ``distribution(theta, *, generator=None)``.
        cost_fn: maps atoms ``(S, *batch, *solution)`` to values ``(S, *batch)``; never differentiated.
        generator: the random generator of a stochastic layer.
        validate_args: check that cost_fn's values are finite (a NaN or inf cost raises a ValueError
            instead of a NaN expectation and gradient); ``None`` follows
            :func:`~colayers.set_default_validate_args`.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot, PerturbedAdditive
        >>> layer = PerturbedAdditive(ArgmaxOneHot(), epsilon=0.01, num_samples=4)
        >>> g = torch.Generator().manual_seed(0)
        >>> pushforward(torch.tensor([0.0, 1.0]), layer, lambda y: y[..., 1] * 3.0, generator=g)
        tensor(3.)
    """
    _check_layer(layer)
    if not callable(cost_fn):
        raise TypeError(f"cost_fn must be callable; got {type(cost_fn).__name__}")
    validate = resolve_validate_args(check_validate_args(validate_args))
    pert = getattr(layer, "perturbation", None)
    if isinstance(pert, Perturbation) and pert.has_score and callable(getattr(layer, "sample", None)):
        sample, atoms = layer.sample(theta, generator)
        batch = theta.shape[: theta.ndim - layer.oracle.event_ndim]
        with torch.no_grad():
            values = _check_values(cost_fn(atoms), atoms, batch, validate)
        return _ScoreFunctionValue.apply(theta, values.to(theta.dtype), sample, pert, bool(layer.baseline))
    dist = layer.distribution(theta) if generator is None else layer.distribution(theta, generator=generator)
    atoms = dist.atoms.detach()
    with torch.no_grad():
        values = _check_values(cost_fn(atoms), atoms, tuple(dist.batch_shape), validate)
    weights = dist.weights
    result = (weights.to(theta.dtype) * values.to(theta.dtype)).sum(0)
    if torch.is_grad_enabled() and theta.requires_grad and not result.requires_grad:
        raise ValueError(
            f"the distribution of {type(layer).__name__} does not depend differentiably on theta (a Dirac or a "
            "perturbation without a score), so its expected cost has no gradient; use a perturbed layer with "
            "Normal or Gumbel noise (e.g. PerturbedAdditive), or SoftArgmax / SparseArgmax (differentiable weights)"
        )
    return result


class Pushforward(torch.nn.Module):
    r"""Expectation of a (non-differentiable) function of the solutions under a layer's law.

    .. math::  \Phi(\theta) = \mathbb E_{y\sim p(\cdot\mid\theta)}[\varphi(y)]
               \approx \frac1S\sum_s\varphi(y_s),\qquad
               \nabla_\theta\Phi \approx \frac1S\sum_s(\varphi(y_s) - b_s)\,\nabla_\theta\log p(\eta_s\mid\theta)

    for a perturbed layer (with the leave-one-out baseline :math:`b_s` when the layer's ``baseline`` is
    true), or :math:`\sum_j w_j(\theta)\varphi(a_j)` over the weighted atoms of a regularized layer's
    distribution (see :func:`pushforward`; InferOpt.jl's ``Pushforward``; Dalle et al. 2022). φ is never
    differentiated, so it may be any black-box cost (e.g. a simulator or a regret).

    Args:
        layer: any layer with a ``distribution(theta)`` method.
        cost_fn: maps atoms ``(S, *batch, *solution)`` to values ``(S, *batch)``.
        validate_args: check that cost_fn's values are finite (see :func:`pushforward`); ``None`` follows
            :func:`~colayers.set_default_validate_args`.

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

    validate_args = ValidateArgs()  # None follows set_default_validate_args

    def __init__(
        self,
        layer: torch.nn.Module,
        cost_fn: Callable[[torch.Tensor], torch.Tensor],
        *,
        validate_args: bool | None = None,
    ) -> None:
        super().__init__()
        _check_layer(layer)
        if not callable(cost_fn):
            raise TypeError(f"cost_fn must be callable; got {type(cost_fn).__name__}")
        self.layer = layer
        self.cost_fn = cost_fn
        self.validate_args = validate_args

    def forward(self, theta: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return pushforward(theta, self.layer, self.cost_fn, generator=generator, validate_args=self.validate_args)
