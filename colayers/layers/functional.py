r"""Functional twins of the layers: one call, no module state (pass a ``generator`` for reproducibility).

Each function builds the corresponding preset on the shared core and applies it once; see the module
classes for the math. As in the classes, everything after ``theta`` and the oracle (or the perturbation,
layer and cost function where those are required) is keyword-only.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..oracles.base import Oracle
from ..perturb import Noise, Perturbation
from .identity import IdentityRelaxation
from .imle import IMLE, Blackbox
from .perturbed import Perturbed, PerturbedAdditive, PerturbedMultiplicative
from .pushforward import Pushforward
from .regularized import RegularizedFrankWolfe, SoftArgmax, Sparsemax, _check_vector_theta

__all__ = [
    "perturbed",
    "perturbed_additive",
    "perturbed_multiplicative",
    "imle",
    "blackbox",
    "identity_relaxation",
    "soft_argmax",
    "sparse_argmax",
    "regularized_frank_wolfe",
    "pushforward",
]


def perturbed(
    theta: torch.Tensor,
    oracle: Oracle,
    perturbation: Perturbation,
    *,
    num_samples: int = 10,
    baseline: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Functional :class:`~colayers.layers.Perturbed`.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> from colayers.perturb import Additive
        >>> g = torch.Generator().manual_seed(0)
        >>> perturbed(torch.tensor([0.0, 5.0]), ArgmaxOneHot(), Additive(epsilon=0.1), generator=g)
        tensor([0., 1.])
    """
    return Perturbed(oracle, perturbation, num_samples=num_samples, baseline=baseline)(theta, generator)


def perturbed_additive(
    theta: torch.Tensor,
    oracle: Oracle,
    *,
    epsilon: float = 1.0,
    num_samples: int = 10,
    noise: Noise | None = None,
    baseline: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Functional :class:`~colayers.layers.PerturbedAdditive`.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> g = torch.Generator().manual_seed(0)
        >>> perturbed_additive(torch.tensor([0.0, 5.0]), ArgmaxOneHot(), epsilon=0.1, generator=g)
        tensor([0., 1.])
    """
    layer = PerturbedAdditive(oracle, epsilon=epsilon, num_samples=num_samples, noise=noise, baseline=baseline)
    return layer(theta, generator)


def perturbed_multiplicative(
    theta: torch.Tensor,
    oracle: Oracle,
    *,
    epsilon: float = 1.0,
    num_samples: int = 10,
    noise: Noise | None = None,
    baseline: bool = True,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Functional :class:`~colayers.layers.PerturbedMultiplicative`.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> g = torch.Generator().manual_seed(0)
        >>> perturbed_multiplicative(torch.tensor([1.0, 5.0]), ArgmaxOneHot(), epsilon=0.1, generator=g)
        tensor([0., 1.])
    """
    layer = PerturbedMultiplicative(oracle, epsilon=epsilon, num_samples=num_samples, noise=noise, baseline=baseline)
    return layer(theta, generator)


def imle(
    theta: torch.Tensor,
    oracle: Oracle,
    *,
    noise: Noise | None = None,
    epsilon: float = 1.0,
    lambda_: float = 10.0,
    num_samples: int = 1,
    two_sided: bool = False,
    return_mean: bool = False,
    k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Functional :class:`~colayers.layers.IMLE` (hard samples ``(S, *batch, *event)``).

    Example:
        >>> import torch
        >>> from colayers import TopKSubset
        >>> g = torch.Generator().manual_seed(0)
        >>> imle(torch.tensor([9.0, 0.0, 8.0]), TopKSubset(2), epsilon=0.1, generator=g)
        tensor([[1., 0., 1.]])
    """
    layer = IMLE(
        oracle,
        noise=noise,
        epsilon=epsilon,
        lambda_=lambda_,
        num_samples=num_samples,
        two_sided=two_sided,
        return_mean=return_mean,
        k=k,
    )
    return layer(theta, generator)


def blackbox(theta: torch.Tensor, oracle: Oracle, *, lambda_: float = 10.0) -> torch.Tensor:
    """Functional :class:`~colayers.layers.Blackbox`.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> blackbox(torch.tensor([0.0, 2.0, 1.0]), ArgmaxOneHot())
        tensor([0., 1., 0.])
    """
    return Blackbox(oracle, lambda_=lambda_)(theta)


def identity_relaxation(theta: torch.Tensor, oracle: Oracle, *, negative: bool = False) -> torch.Tensor:
    """Functional :class:`~colayers.layers.IdentityRelaxation`.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot
        >>> identity_relaxation(torch.tensor([0.0, 2.0, 1.0]), ArgmaxOneHot())
        tensor([0., 1., 0.])
    """
    return IdentityRelaxation(oracle, negative=negative)(theta)


def soft_argmax(theta: torch.Tensor, *, temperature: float = 1.0) -> torch.Tensor:
    """Functional :class:`~colayers.layers.SoftArgmax`: softmax(θ/T) on the last dimension.

    Example:
        >>> import torch
        >>> soft_argmax(torch.tensor([0.0, 0.0]))
        tensor([0.5000, 0.5000])
    """
    return SoftArgmax(temperature=temperature)(theta)


def sparse_argmax(theta: torch.Tensor) -> torch.Tensor:
    """Functional :class:`~colayers.layers.SparseArgmax` (sparsemax on the last dimension).

    Example:
        >>> import torch
        >>> sparse_argmax(torch.tensor([0.0, 3.0]))
        tensor([0., 1.])
    """
    _check_vector_theta(theta, True)
    return Sparsemax.apply(theta)


def regularized_frank_wolfe(
    theta: torch.Tensor, oracle: Oracle, *, max_iter: int = 100, tol: float = 1e-9
) -> torch.Tensor:
    """Functional :class:`~colayers.layers.RegularizedFrankWolfe`: the projection of θ onto conv(Y).

    Example:
        >>> import torch
        >>> from colayers import TopKSubset
        >>> regularized_frank_wolfe(torch.tensor([0.0, 1.0, 0.5, 0.5], dtype=torch.float64), TopKSubset(2))
        tensor([0.0000, 1.0000, 0.5000, 0.5000], dtype=torch.float64)
    """
    return RegularizedFrankWolfe(oracle, max_iter=max_iter, tol=tol)(theta)


def pushforward(
    theta: torch.Tensor,
    layer: Perturbed,
    cost_fn: Callable[[torch.Tensor], torch.Tensor],
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Functional :class:`~colayers.layers.Pushforward`: E[cost_fn(y)] with the score-function gradient.

    Example:
        >>> import torch
        >>> from colayers import ArgmaxOneHot, PerturbedAdditive
        >>> layer = PerturbedAdditive(ArgmaxOneHot(), epsilon=0.01, num_samples=4)
        >>> g = torch.Generator().manual_seed(0)
        >>> pushforward(torch.tensor([0.0, 1.0]), layer, lambda y: y[..., 1] * 3.0, generator=g)
        tensor(3.)
    """
    return Pushforward(layer, cost_fn)(theta, generator)
