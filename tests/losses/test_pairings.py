"""Every layer × loss pairing that docs/losses.md says works, read from the page's own table.

The table "Which loss for which data" lists, per loss, the layers it works with. This test reads that
table, builds each named layer on a small problem, and checks the pairing end to end: the loss accepts
targets that are solutions in Y (with validation on), the value does not depend on whether the checks run,
and it is finite and of the documented sign; the gradient has θ's shape and, where the layer is
deterministic (or its noise is fixed by a generator), matches central finite differences of the loss
value, a reference the loss's hand-written gradient did not produce. A layer named in the table that this
file cannot build fails the test, so a new pairing in the docs is a new case here.
"""

from __future__ import annotations

import pathlib
import re

import pytest
import torch

import colayers
from colayers import (
    AIMLE,
    IMLE,
    ArgmaxOneHot,
    Blackbox,
    ExperienceLoss,
    FenchelYoungLoss,
    IdentityRelaxation,
    Perturbed,
    PerturbedAdditive,
    PerturbedMultiplicative,
    Ranking,
    RegretLoss,
    RegularizedFrankWolfe,
    SoftArgmax,
    SoftRank,
    SparseArgmax,
    StructuredLoss,
    TopKSubset,
)
from colayers.perturb import Additive, Gumbel

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs" / "losses.md"
N = 5


def documented_pairings() -> list[tuple[str, str]]:
    """(loss, layer) pairs from the 'works with' column of the table whose header starts with '| loss |'."""
    lines = DOCS.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| loss |"))
    names = set(colayers.__all__)
    pairs = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        loss = re.match(r"`(\w+)", cells[0]).group(1)
        works_with = re.sub(r"via `?\w+`?", "", cells[-1])  # "via Pushforward": the mechanism, not a layer
        for name in dict.fromkeys(re.findall(r"\b([A-Z]\w+)\b", works_with)):
            obj = getattr(colayers, name, None) if name in names else None
            if isinstance(obj, type) and issubclass(obj, torch.nn.Module) and not issubclass(obj, StructuredLoss):
                pairs.append((loss, name))
    return pairs


PAIRINGS = documented_pairings()

# name -> (layer factory, solution set: "onehot" | "top2" | "rank", deterministic forward)
LAYERS = {
    "SoftArgmax": (lambda: SoftArgmax(temperature=0.7), "onehot", True),
    "SparseArgmax": (lambda: SparseArgmax(), "onehot", True),
    "RegularizedFrankWolfe": (lambda: RegularizedFrankWolfe(TopKSubset(2)), "top2", True),
    "SoftRank": (lambda: SoftRank(strength=0.5), "rank", True),
    "PerturbedAdditive": (lambda: PerturbedAdditive(TopKSubset(2), epsilon=0.5, num_samples=8), "top2", False),
    "PerturbedMultiplicative": (
        lambda: PerturbedMultiplicative(TopKSubset(2), epsilon=0.5, num_samples=8), "top2", False),
    "Perturbed": (lambda: Perturbed(TopKSubset(2), Additive(Gumbel(), 0.5), num_samples=8), "top2", False),
    "IMLE": (lambda: IMLE(TopKSubset(2), epsilon=0.5, lambda_=3.0), "top2", False),
    "AIMLE": (lambda: AIMLE(TopKSubset(2), epsilon=0.5), "top2", False),
    "Blackbox": (lambda: Blackbox(TopKSubset(2), lambda_=3.0), "top2", False),
    "IdentityRelaxation": (lambda: IdentityRelaxation(TopKSubset(2)), "top2", False),
}
ORACLES = {"onehot": ArgmaxOneHot, "top2": lambda: TopKSubset(2), "rank": Ranking}


def _targets(kind: str, batch: int) -> torch.Tensor:
    """Solutions in Y, one per row, all different where Y allows."""
    rows = []
    for i in range(batch):
        if kind == "rank":
            rows.append(torch.roll(torch.arange(1.0, N + 1), i))
        else:
            y = torch.zeros(N)
            y[i % N] = 1.0
            if kind == "top2":
                y[(i + 2) % N] = 1.0
            rows.append(y)
    return torch.stack(rows).double()


def _theta(seed: int = 0) -> torch.Tensor:
    return torch.randn(3, N, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _build(loss_name: str, layer_name: str, validate: bool):
    make, kind, deterministic = LAYERS[layer_name]
    layer = make()
    if loss_name == "FenchelYoungLoss":
        return FenchelYoungLoss(layer, reduction="sum", validate_args=validate), kind, deterministic
    if loss_name == "RegretLoss":
        oracle = None if hasattr(layer, "oracle") else ORACLES[kind]()
        return RegretLoss(layer, reduction="sum", oracle=oracle, validate_args=validate), kind, deterministic
    if loss_name == "ExperienceLoss":
        return ExperienceLoss(layer, lambda y, cost: (y * cost).sum(-1), reduction="sum"), kind, deterministic
    raise AssertionError(f"docs/losses.md pairs {layer_name} with {loss_name}, which this test cannot call")


def _call(loss, loss_name, theta, kind, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = _targets(kind, theta.shape[0])
    if loss_name == "FenchelYoungLoss":
        return loss(theta, y, generator=None if _no_generator(loss.layer) else gen)
    if loss_name == "RegretLoss":
        theta_true = _theta(seed=7)
        return loss(theta, theta_true, generator=None if _no_generator(loss.layer) else gen)
    return loss(theta, _theta(seed=8), generator=gen)


def _no_generator(layer) -> bool:
    """Deterministic layers refuse a generator (SoftArgmax, Blackbox, ...): ask the layer, not its class."""
    return bool(getattr(layer, "deterministic", True))


def test_the_docs_table_names_pairings_and_every_named_layer_is_built_here():
    losses = {loss for loss, _ in PAIRINGS}
    assert {"FenchelYoungLoss", "RegretLoss", "ExperienceLoss"} <= losses, PAIRINGS
    assert ("FenchelYoungLoss", "SoftRank") in PAIRINGS
    missing = sorted({layer for _, layer in PAIRINGS} - set(LAYERS))
    assert not missing, f"docs/losses.md names layers this test does not build: {missing}"


@pytest.mark.parametrize("loss_name, layer_name", PAIRINGS, ids=[f"{a}-{b}" for a, b in PAIRINGS])
def test_documented_pairing_works(loss_name, layer_name):
    loss, kind, deterministic = _build(loss_name, layer_name, validate=True)
    unchecked, _, _ = _build(loss_name, layer_name, validate=False)
    theta = _theta().requires_grad_(True)
    value = _call(loss, loss_name, theta, kind)  # targets in Y are accepted with validation on
    assert torch.isfinite(value), value
    assert torch.allclose(value, _call(unchecked, loss_name, theta.detach(), kind), rtol=1e-12, atol=1e-12)
    if loss_name != "ExperienceLoss":  # FY and regret are >= 0 (Monte Carlo FY: sample-wise for targets in Y)
        assert value >= -1e-9
    (grad,) = torch.autograd.grad(value, theta)
    assert grad.shape == theta.shape and bool(torch.isfinite(grad).all())
    # the gradient is the derivative of the value at fixed noise: deterministic layers, and FY with additive noise
    # (with multiplicative noise FY's value uses F(eta_s, y) for <theta, y> and its gradient y: they agree only in
    # expectation, as documented)
    pathwise = loss_name == "FenchelYoungLoss" and layer_name != "PerturbedMultiplicative"
    if pathwise or deterministic:
        direction = torch.randn(theta.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        h = 1e-6
        with torch.no_grad():
            plus = _call(unchecked, loss_name, theta.detach() + h * direction, kind)
            minus = _call(unchecked, loss_name, theta.detach() - h * direction, kind)
        numeric = float((plus - minus) / (2 * h))
        assert abs(float((grad * direction).sum()) - numeric) <= 1e-5 * (1 + abs(numeric)), (numeric, grad)


@pytest.mark.parametrize("layer_name", ["SoftArgmax", "SparseArgmax", "RegularizedFrankWolfe", "SoftRank"])
def test_fenchel_young_on_a_regularized_layer_is_zero_where_the_target_is_the_prediction(layer_name):
    """For ȳ = μ(θ) (relaxed target) the loss is 0 and its gradient μ − ȳ vanishes: a loss that refused ȳ or
    mixed up Ω would not be."""
    layer = LAYERS[layer_name][0]()
    theta = _theta(seed=3).requires_grad_(True)
    target = layer(theta.detach())
    value = FenchelYoungLoss(layer, reduction="sum", allow_relaxed_targets=True)(theta, target)
    (grad,) = torch.autograd.grad(value, theta)
    assert abs(float(value.detach())) <= 1e-9 and float(grad.abs().max()) <= 1e-9


def test_soft_rank_fenchel_young_equals_the_frank_wolfe_version_and_refuses_non_ranks():
    from colayers import NegativeEntropy, SquaredNorm

    theta = _theta(seed=4)
    y = _targets("rank", 3)
    for reg, fw in (("l2", SquaredNorm(0.5)), ("kl", NegativeEntropy(0.5))):
        soft = FenchelYoungLoss(SoftRank(strength=0.5, regularization=reg), reduction="none")(theta, y)
        ref = FenchelYoungLoss(RegularizedFrankWolfe(Ranking(), regularizer=fw), reduction="none")(theta, y)
        assert torch.allclose(soft, ref, rtol=1e-7, atol=1e-9), (reg, soft, ref)
    with pytest.raises(ValueError, match="y_target must be a solution in Y of SoftRank"):
        FenchelYoungLoss(SoftRank())(theta, y.clone().fill_(1.0))
