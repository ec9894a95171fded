r"""Functional twins of the layers: one call, no module state (pass a ``generator`` for reproducibility).

:func:`~colayers.layers.core.perturbed` is the composition (oracle + perturbation + VJP rule) as a function.
The twins of the named estimators are not written again: ``imle(theta, oracle, **settings, generator=g)`` is
``IMLE(oracle, **settings)(theta, generator=g)``, so a twin runs the same constructor — it takes and refuses
exactly its layer's settings (keyword-only, the same names, defaults and checks) — and the same forward. Its
signature is the layer's ``__init__`` signature with ``theta`` first and ``generator`` for ``seed``: a layer
that takes no ``seed`` (``blackbox``, ``identity_relaxation``) has a twin that takes no ``generator``, and a
layer whose settings draw no noise (``imle`` with ``epsilon=0`` and no ``target_temperature``) refuses a
generator the way the module does (:func:`~colayers.layers.core.draws_noise`).

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
from .core import Perturbed, perturbed
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


def functional_twin(cls: type[Perturbed], name: str) -> Callable[..., torch.Tensor]:
    """The functional twin of a layer class: ``twin(theta, oracle, *, generator=None, **settings)`` is
    ``cls(oracle, **settings)(theta, generator=generator)``; its signature is derived from ``cls.__init__``.

    Example:
        >>> twin = functional_twin(IMLE, "my_imle")
        >>> list(inspect.signature(twin).parameters)[:5]
        ['theta', 'oracle', 'noise', 'epsilon', 'lambda_']
        >>> "generator" in inspect.signature(functional_twin(Blackbox, "bb")).parameters
        False
    """
    init = inspect.signature(cls.__init__).parameters
    takes_seed = "seed" in init

    def twin(theta: torch.Tensor, oracle: Oracle, *, generator: torch.Generator | None = None,
             **settings: Any) -> torch.Tensor:
        if "seed" in settings:
            raise TypeError(f"{name} got an unexpected keyword argument 'seed' (pass generator=)")
        if generator is not None and not takes_seed:
            raise TypeError(f"{name} draws no noise: it takes no generator; got {generator!r}")
        layer = cls(oracle, **settings)
        return layer(theta, generator=generator) if generator is not None else layer(theta)

    params = [
        inspect.Parameter("theta", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=torch.Tensor),
        inspect.Parameter("oracle", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=Oracle),
    ]
    params += [p for n, p in init.items() if n not in ("self", "oracle", "seed", "validate_args")]
    if takes_seed:
        params.append(inspect.Parameter("generator", inspect.Parameter.KEYWORD_ONLY, default=None))
    params.append(inspect.Parameter("validate_args", inspect.Parameter.KEYWORD_ONLY, default=None))
    twin.__signature__ = inspect.Signature(params)
    twin.__name__ = twin.__qualname__ = name
    twin.__doc__ = (
        f"Functional :class:`~colayers.layers.{cls.__name__}`: the same keyword-only settings, run through the "
        "same constructor and forward (see the module docstring for examples)."
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
