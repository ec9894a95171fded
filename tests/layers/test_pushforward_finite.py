"""Pushforward with a cost function that returns NaN or inf: a clear error while validating, not a NaN result.

Both paths are covered: the score-function path (a perturbed layer with Normal noise) and the weighted
atoms of a regularized layer's distribution (SoftArgmax). Before the check, both returned NaN silently.
"""

from __future__ import annotations

import pytest
import torch

import colayers
from colayers import ArgmaxOneHot, PerturbedAdditive, Pushforward, SoftArgmax, SparseArgmax, pushforward


def _layers():
    return [PerturbedAdditive(ArgmaxOneHot(), num_samples=4, seed=0), SoftArgmax(), SparseArgmax()]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("layer", _layers(), ids=lambda layer: type(layer).__name__)
def test_a_non_finite_cost_is_refused_by_name(layer, bad):
    cost = torch.tensor([1.0, bad, 2.0])
    theta = torch.zeros(2, 3, requires_grad=True)
    with pytest.raises(ValueError, match=r"the values of cost_fn \(S, \*batch\) must be finite"):
        Pushforward(layer, lambda y: (y * cost).sum(-1))(theta)
    with pytest.raises(ValueError, match="must be finite"):
        pushforward(theta, layer, lambda y: (y * cost).sum(-1))


@pytest.mark.parametrize("layer", _layers(), ids=lambda layer: type(layer).__name__)
def test_finite_costs_pass_and_the_switch_turns_the_check_off(layer):
    theta = torch.zeros(2, 3, requires_grad=True)
    value = Pushforward(layer, lambda y: (y * torch.tensor([1.0, 3.0, 2.0])).sum(-1))(theta)
    assert bool(torch.isfinite(value).all()) and bool(((value >= 1.0) & (value <= 3.0)).all())
    nan_cost = torch.tensor([1.0, float("nan"), 2.0])
    unchecked = Pushforward(layer, lambda y: (y * nan_cost).sum(-1), validate_args=False)(theta)
    assert bool(torch.isnan(unchecked).any())  # what the check prevents when it is on
    before = colayers.get_default_validate_args()
    colayers.set_default_validate_args(False)
    try:
        assert bool(torch.isnan(Pushforward(layer, lambda y: (y * nan_cost).sum(-1))(theta)).any())
    finally:
        colayers.set_default_validate_args(before)
