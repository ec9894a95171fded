"""FenchelYoungLoss over regularized layers on an empty batch: torch's conventions, forward and backward.

'none' gives an empty tensor of the batch shape, 'sum' 0, 'mean' NaN (as torch.nn.functional.mse_loss on
empty tensors); the gradient is a zero-size tensor of θ's shape. Before the fix, RegularizedFrankWolfe's
omega raised "cannot reshape tensor of 0 elements into shape [0, -1]".
"""

from __future__ import annotations

import math

import pytest
import torch

from colayers import (
    ArgmaxOneHot,
    FenchelYoungLoss,
    NegativeEntropy,
    RegularizedFrankWolfe,
    SoftArgmax,
    SoftRank,
    SparseArgmax,
    SquaredNorm,
    TopKSubset,
)

LAYERS = {
    "RegularizedFrankWolfe-SquaredNorm": lambda: RegularizedFrankWolfe(TopKSubset(2), regularizer=SquaredNorm(0.5)),
    "RegularizedFrankWolfe-NegativeEntropy": lambda: RegularizedFrankWolfe(
        ArgmaxOneHot(), regularizer=NegativeEntropy()
    ),
    "SoftArgmax": SoftArgmax,
    "SparseArgmax": SparseArgmax,
    "SoftRank": SoftRank,
}


@pytest.mark.parametrize("batch", [(0,), (3, 0), (0, 2)])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_fenchel_young_on_an_empty_batch(name, reduction, batch):
    theta = torch.zeros(*batch, 4, dtype=torch.float64, requires_grad=True)
    value = FenchelYoungLoss(LAYERS[name](), reduction=reduction)(theta, torch.zeros(*batch, 4, dtype=torch.float64))
    if reduction == "none":
        assert value.shape == batch
    elif reduction == "sum":
        assert value.shape == () and float(value.detach()) == 0.0
    else:
        assert value.shape == () and math.isnan(float(value.detach()))
    value.sum().backward()
    assert theta.grad is not None and theta.grad.shape == theta.shape


@pytest.mark.parametrize("name", ["RegularizedFrankWolfe-SquaredNorm", "RegularizedFrankWolfe-NegativeEntropy"])
def test_omega_of_an_empty_batch_is_empty(name):
    layer = LAYERS[name]()
    assert layer.omega(torch.zeros(0, 4)).shape == (0,)
    assert layer.omega(torch.zeros(2, 0, 4)).shape == (2, 0)
