"""ExperienceLoss with a NaN target or cost: a ValueError naming the argument while validating."""

from __future__ import annotations

import pytest
import torch

from colayers import ArgmaxOneHot, ExperienceLoss, PerturbedAdditive


def _loss(**kwargs):
    return ExperienceLoss(PerturbedAdditive(ArgmaxOneHot(), num_samples=4, seed=0), lambda y, c: (y * c).sum(-1),
                          **kwargs)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_non_finite_extra_tensor_is_refused_by_name(bad):
    theta = torch.zeros(2, 3, requires_grad=True)
    costs = torch.tensor([[1.0, bad, 2.0], [1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match=r"args\[0\] \(the extra tensors passed to cost_fn\) must be finite"):
        _loss()(theta, costs)


def test_a_cost_function_returning_nan_is_refused():
    theta = torch.zeros(2, 3, requires_grad=True)
    loss = ExperienceLoss(PerturbedAdditive(ArgmaxOneHot(), num_samples=4, seed=0), lambda y: y.sum(-1) * float("nan"))
    with pytest.raises(ValueError, match="the values of cost_fn"):
        loss(theta)


def test_finite_costs_pass_and_validate_args_false_skips_the_check():
    theta = torch.zeros(2, 3, requires_grad=True)
    costs = torch.tensor([[1.0, 3.0, 2.0], [1.0, 2.0, 3.0]])
    value = _loss()(theta, costs)
    assert 1.0 <= float(value.detach()) <= 3.0
    value.backward()
    assert bool(torch.isfinite(theta.grad).all())
    unchecked = _loss(validate_args=False)(theta, costs.clone().fill_(float("nan")))
    assert bool(torch.isnan(unchecked))
