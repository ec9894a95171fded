r"""Functional twins of the layers: one call, no module state (pass a ``generator`` for reproducibility).

The function is primary: :func:`~colayers.layers.core.perturbed` runs the core (oracle + perturbation + VJP
rule) and every module calls it. The twins of the named estimators are derived from the presets, not
written again: ``imle(theta, oracle, **settings)`` is
``perturbed(theta, oracle, **IMLE.pieces(oracle, **settings))``, so a twin takes exactly its layer's
settings (keyword-only, the same names, defaults and checks) and builds no module. A deterministic
layer's twin (``blackbox``, ``identity_relaxation``) takes no ``generator``.

Example:
    >>> import torch
    >>> from colayers import TopKSubset
    >>> g = torch.Generator().manual_seed(0)
    >>> imle(torch.tensor([9.0, 0.0, 8.0]), TopKSubset(2), epsilon=0.1, generator=g)
    tensor([1., 0., 1.])
    >>> blackbox(torch.tensor([0.0, 2.0, 1.0]), TopKSubset(1), lambda_=5.0)
    tensor([0., 1., 0.])
    >>> identity_relaxation(torch.tensor([0.0, 2.0, 1.0]), TopKSubset(1))
    tensor([0., 1., 0.])
    >>> perturbed_additive(torch.tensor([0.0, 5.0]), TopKSubset(1), epsilon=0.1, generator=g)
    tensor([0., 1.])
    >>> perturbed_multiplicative(torch.tensor([1.0, 5.0]), TopKSubset(1), epsilon=0.1, generator=g)
    tensor([0., 1.])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch

from ..oracles.base import Oracle
from .core import Preset, perturbed
from .identity import IdentityRelaxation
from .imle import IMLE, Blackbox
from .perturbed import PerturbedAdditive, PerturbedMultiplicative
from .pushforward import pushforward
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
    "functional_twin",
]


def functional_twin(cls: type[Preset], name: str) -> Callable[..., torch.Tensor]:
    """The functional twin of a preset layer: ``twin(theta, oracle, *, generator=None, validate_args=None,
    **settings)`` runs :func:`~colayers.layers.core.perturbed` on ``cls.pieces(oracle, **settings)``.

    Example:
        >>> twin = functional_twin(IMLE, "my_imle")
        >>> list(inspect.signature(twin).parameters)[:5]
        ['theta', 'oracle', 'noise', 'epsilon', 'lambda_']
    """

    def twin(theta: torch.Tensor, oracle: Oracle, *, generator: torch.Generator | None = None,
             validate_args: bool | None = None, **settings: Any) -> torch.Tensor:
        pieces = cls.build_pieces(oracle, settings)
        if generator is not None and pieces["perturbation"].epsilon == 0:
            raise TypeError(f"{name} draws no noise (epsilon = 0): it takes no generator; got {generator!r}")
        return perturbed(theta, oracle, generator=generator, validate_args=validate_args, **pieces)

    params = [
        inspect.Parameter("theta", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=torch.Tensor),
        inspect.Parameter("oracle", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Oracle),
    ]
    params += [p for n, p in inspect.signature(cls.pieces).parameters.items() if n != "oracle"]
    if not cls.deterministic_preset:
        params.append(inspect.Parameter("generator", inspect.Parameter.KEYWORD_ONLY, default=None))
    params.append(inspect.Parameter("validate_args", inspect.Parameter.KEYWORD_ONLY, default=None))
    twin.__signature__ = inspect.Signature(params)
    twin.__name__ = twin.__qualname__ = name
    twin.__doc__ = (
        f"Functional :class:`~colayers.layers.{cls.__name__}`: the same keyword-only settings, no module "
        "(see the module docstring for examples)."
    )
    return twin


perturbed_additive = functional_twin(PerturbedAdditive, "perturbed_additive")
perturbed_multiplicative = functional_twin(PerturbedMultiplicative, "perturbed_multiplicative")
imle = functional_twin(IMLE, "imle")
blackbox = functional_twin(Blackbox, "blackbox")
identity_relaxation = functional_twin(IdentityRelaxation, "identity_relaxation")


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
