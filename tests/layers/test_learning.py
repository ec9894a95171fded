"""Learning checks: every estimator, paired with a suitable loss, trains a linear model from features."""

from __future__ import annotations

import pytest
import torch

from colayers import (
    AIMLE,
    IMLE,
    ArgmaxOneHot,
    Blackbox,
    GridDAGShortestPath,
    IdentityRelaxation,
    PerturbedAdditive,
    PerturbedMultiplicative,
    Pushforward,
    RegularizedFrankWolfe,
    SoftArgmax,
    SparseArgmax,
    TopKSubset,
)

FEATURES, TRAIN, TEST = 5, 100, 100
STEPS, LR = 100, 0.1


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny tensors: intra-op threads only contend on a shared 2-core CI machine (10x slower); restore after
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _problem(name: str):
    g = torch.Generator().manual_seed(0)
    if name == "argmax":
        oracle, n = ArgmaxOneHot(), 5
    elif name == "topk":
        oracle, n = TopKSubset(3), 10
    else:
        oracle = GridDAGShortestPath(5, 5)
        n = oracle.num_edges
    w = torch.randn(FEATURES, n, generator=g)
    x = torch.randn(TRAIN + TEST, FEATURES, generator=g)
    theta = x @ w
    if name == "grid":  # theta = -cost with positive costs
        theta = -(torch.nn.functional.softplus(theta) + 0.1)
    y = oracle(theta)
    return oracle, n, x[:TRAIN], y[:TRAIN], x[TRAIN:], y[TRAIN:]


def _estimators(name, oracle):
    """(name, layer, loss(theta, y_target) -> scalar) pairs."""

    def sq(layer):
        def loss(theta, y):
            out = layer(theta)
            return ((out - y) ** 2).sum(-1).mean()

        return loss

    def push_loss(theta, y):
        layer = PerturbedAdditive(oracle, epsilon=1.0, num_samples=10, seed=None)
        push = Pushforward(layer, lambda atoms: ((atoms - y) ** 2).sum(-1))
        return push(theta, generator=gen).mean()

    gen = torch.Generator().manual_seed(1)
    out = [
        ("perturbed_additive", sq(PerturbedAdditive(oracle, epsilon=1.0, num_samples=10, seed=0))),
        ("perturbed_multiplicative", sq(PerturbedMultiplicative(oracle, epsilon=1.0, num_samples=10, seed=0))),
        ("imle", sq(IMLE(oracle, epsilon=1.0, lambda_=10.0, num_samples=5, seed=0))),
        ("aimle", sq(AIMLE(oracle, epsilon=1.0, num_samples=5, seed=0))),
        ("blackbox", sq(Blackbox(oracle, lambda_=10.0))),
        ("identity", sq(IdentityRelaxation(oracle))),
        ("frank_wolfe", sq(RegularizedFrankWolfe(oracle, max_iter=10))),
        ("pushforward", push_loss),
    ]
    if name == "argmax":
        out += [("soft_argmax", sq(SoftArgmax())), ("sparse_argmax", sq(SparseArgmax()))]
    return out


def _link(problem: str, estimator: str):
    """The model's output map. The multiplicative layer keeps signs and its score is Z / (eps theta), so it is
    paired with a sign-constrained model: theta = softplus(.) > 0 (argmax, top-k: order-preserving), or
    theta = -softplus(.) < 0 (grid: positive costs), as for real cost-prediction models."""
    if estimator != "perturbed_multiplicative":
        return lambda t: t
    sign = -1.0 if problem == "grid" else 1.0
    return lambda t: sign * torch.nn.functional.softplus(t)


def _hamming(oracle, model, x, y):
    with torch.no_grad():
        return float((oracle(model(x)) - y).abs().sum(-1).mean())


CASES = [(p, e) for p in ("argmax", "topk", "grid") for e, _ in _estimators(p, ArgmaxOneHot())]


@pytest.mark.parametrize(("problem", "estimator"), CASES)
def test_estimator_trains_a_linear_model(problem, estimator):
    torch.manual_seed(0)  # the model's initialization (the library itself never touches the global RNG)
    oracle, n, x_tr, y_tr, x_te, y_te = _problem(problem)
    loss_fn = dict(_estimators(problem, oracle))[estimator]
    linear, link = torch.nn.Linear(FEATURES, n), _link(problem, estimator)

    def model(x):
        return link(linear(x))

    initial = _hamming(oracle, model, x_te, y_te)
    opt = torch.optim.Adam(linear.parameters(), lr=LR)
    for _ in range(STEPS):
        opt.zero_grad()
        loss_fn(model(x_tr), y_tr).backward()
        opt.step()
    final = _hamming(oracle, model, x_te, y_te)
    assert final < 0.5 * initial, (initial, final)
