"""Noise laws and perturbations of scores: the randomness behind perturbed layers and I-MLE."""

from . import noise as _noise
from . import perturbation as _perturbation
from .noise import *  # noqa: F403
from .perturbation import *  # noqa: F403

# the public names are declared once, in each module's __all__; the package re-exports them all
__all__: list[str] = [
    *_noise.__all__,
    *_perturbation.__all__,
]
