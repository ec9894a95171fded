"""Noise laws and perturbations of scores: the randomness behind perturbed layers and I-MLE."""

from .noise import Gumbel, Noise, Normal, SumOfGamma
from .perturbation import (
    Additive,
    Multiplicative,
    Perturbation,
    PerturbedSample,
    leave_group_out_centered,
    leave_one_out_centered,
)

__all__ = [
    "Noise",
    "Normal",
    "Gumbel",
    "SumOfGamma",
    "Perturbation",
    "PerturbedSample",
    "Additive",
    "Multiplicative",
    "leave_one_out_centered",
    "leave_group_out_centered",
]
