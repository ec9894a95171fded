"""Each input tensor of a loss call is checked for finiteness once (a host synchronisation on CUDA), and no tensor
derived from it (the perturbed scores η of shape (S, *batch, *event), θ_α, the loss-augmented scores) is checked
again: neither by the loss, nor by the layer, nor by the oracle it calls."""

from __future__ import annotations

import sys

import pytest
import torch

import colayers._validation as validation
from colayers import (
    FenchelYoungLoss,
    ImitationLoss,
    MAPContrastiveLoss,
    PerturbedAdditive,
    RegretLoss,
    SolutionPool,
    SPOPlusLoss,
    StructuredSVMLoss,
    TopKSubset,
)

B, N, S = 3, 5, 4


@pytest.fixture
def finiteness_checks(monkeypatch):
    """Replace ``check_finite`` everywhere colayers imported it with a recorder of ``(name, tensor)``."""
    original, calls = validation.check_finite, []

    def recorder(name, value):
        calls.append((name, value))
        return original(name, value)

    for module in list(sys.modules.values()):
        if module is not None and module.__name__.startswith("colayers"):
            if getattr(module, "check_finite", None) is original:
                monkeypatch.setattr(module, "check_finite", recorder)
    return calls


def _inputs():
    g = torch.Generator().manual_seed(0)
    theta = torch.randn(B, N, generator=g, requires_grad=True)
    theta_true = torch.randn(B, N, generator=g)
    return theta, theta_true, TopKSubset(2, validate_args=False)(theta_true)  # (not recorded)


def _checked(calls):
    return [name for name, _ in calls]


def test_the_recorder_sees_every_check_of_a_layer_call(finiteness_checks):
    # the fixture is not blind: a plain layer call checks its θ (once: η reaches the oracle unchecked)
    theta, _, _ = _inputs()
    PerturbedAdditive(TopKSubset(2), num_samples=S, seed=0)(theta)
    assert _checked(finiteness_checks) == ["theta"]
    assert finiteness_checks[0][1] is theta


def test_fenchel_young_on_a_perturbed_layer_checks_theta_and_target_once_and_never_eta(finiteness_checks):
    theta, _, y = _inputs()
    loss = FenchelYoungLoss(PerturbedAdditive(TopKSubset(2), num_samples=S, seed=0))
    loss(theta, y).backward()
    assert _checked(finiteness_checks) == ["theta", "y_target"]
    assert finiteness_checks[0][1] is theta and finiteness_checks[1][1] is y
    assert all(value.shape == (B, N) for _, value in finiteness_checks)  # η would be (S, B, N)


def test_spo_plus_checks_theta_theta_true_and_target_once(finiteness_checks):
    theta, theta_true, y = _inputs()
    loss = SPOPlusLoss(TopKSubset(2))
    loss(theta, theta_true, y).backward()
    assert _checked(finiteness_checks) == ["theta", "theta_true", "y_target"]
    assert all(checked is given for (_, checked), given in zip(finiteness_checks, (theta, theta_true, y)))
    finiteness_checks.clear()
    loss(theta, theta_true)  # ȳ = f(θ̄) and θ_α = αθ − θ̄ reach the oracle unchecked
    assert _checked(finiteness_checks) == ["theta", "theta_true"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: StructuredSVMLoss(TopKSubset(2)),
        lambda: ImitationLoss.structured_svm(TopKSubset(2), alpha=0.5),
        lambda: MAPContrastiveLoss(SolutionPool(TopKSubset(2), solve_ratio=1.0, seed=0)),
    ],
    ids=["ssvm", "imitation", "map-contrastive"],
)
def test_target_losses_check_theta_and_target_once(finiteness_checks, make):
    theta, _, y = _inputs()
    make()(theta, y).backward()
    assert _checked(finiteness_checks) == ["theta", "y_target"]


def test_regret_checks_its_inputs_once_and_the_layer_does_not_again(finiteness_checks):
    theta, theta_true, y = _inputs()
    RegretLoss(PerturbedAdditive(TopKSubset(2), num_samples=S, seed=0))(theta, theta_true, y).backward()
    assert _checked(finiteness_checks) == ["theta", "theta_true", "y_target"]


def test_without_validation_nothing_is_checked(finiteness_checks):
    theta, theta_true, y = _inputs()
    layer = PerturbedAdditive(TopKSubset(2, validate_args=False), num_samples=S, seed=0, validate_args=False)
    FenchelYoungLoss(layer, validate_args=False)(theta, y)
    SPOPlusLoss(TopKSubset(2, validate_args=False), validate_args=False)(theta, theta_true, y)
    assert finiteness_checks == []


def test_a_non_finite_input_is_still_caught_by_name():
    theta, theta_true, y = _inputs()
    bad = theta.detach().clone()
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="theta must be finite"):
        FenchelYoungLoss(PerturbedAdditive(TopKSubset(2), num_samples=S, seed=0))(bad, y)
    with pytest.raises(ValueError, match="theta_true must be finite"):
        SPOPlusLoss(TopKSubset(2))(theta, bad, y)
    with pytest.raises(ValueError, match="y_target must be finite"):
        SPOPlusLoss(TopKSubset(2))(theta, theta_true, torch.full_like(y, float("inf")))


@pytest.mark.parametrize(
    "make",
    [
        lambda: __import__("colayers").SoftArgmax(temperature=0.5),
        lambda: __import__("colayers").SparseArgmax(),
        lambda: __import__("colayers").RegularizedFrankWolfe(TopKSubset(2)),
    ],
    ids=["SoftArgmax", "SparseArgmax", "RegularizedFrankWolfe"],
)
def test_fenchel_young_on_a_regularized_layer_checks_theta_once(make, finiteness_checks):
    # the regularized layer, called by the loss on the θ it checked, does not check it a second time
    theta, _, _ = _inputs()
    y = torch.zeros(B, N)
    y[:, 0] = 1.0
    if "Frank" in type(layer := make()).__name__:
        y[:, 1] = 1.0  # a 2-subset
    FenchelYoungLoss(layer)(theta, y).backward()
    assert _checked(finiteness_checks) == ["theta", "y_target"]
