"""Tests of the benchmark problems: seeded generators, shapes, signs, optimal labels, default models."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers.studies import PROBLEMS, Problem, make_problem
from tests.conftest import DEVICES

SMALL = {
    "shortest_path": dict(n=12, n_test=6, grid=(3, 4)),
    "warcraft": dict(n=4, n_test=3, size=12),
    "topk": dict(n=12, n_test=6, num_items=7, k=3),
    "ranking": dict(n=12, n_test=6, num_items=5),
    "knapsack": dict(n=12, n_test=6, num_items=10),
    "matching": dict(n=12, n_test=6, size=4),
    "tsp": dict(n=12, n_test=6, num_nodes=6),
    "portfolio": dict(n=12, n_test=6, num_assets=6),
}


def _brute_force_dag_paths(h, w, edges):
    """All right/down paths of an h x w grid as 0/1 vectors over ``edges``, by enumerating move sequences."""
    index = {e: k for k, e in enumerate(edges)}
    paths = []
    for downs in itertools.combinations(range(h + w - 2), h - 1):
        y = np.zeros(len(edges))
        v = 0
        for step in range(h + w - 2):
            u = v + w if step in downs else v + 1
            y[index[(v, u)]] = 1
            v = u
        paths.append(y)
    return np.stack(paths)


# ---------------------------------------------------------------------------------------------------------
# registry and generic contract


def test_registry_names():
    assert set(PROBLEMS) == {"shortest_path", "warcraft", "topk", "ranking", "knapsack", "matching", "tsp", "portfolio"}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_same_seed_same_data_other_seed_other_data(name):
    a = make_problem(name, seed=3, **SMALL[name])
    b = make_problem(name, seed=3, **SMALL[name])
    c = make_problem(name, seed=4, **SMALL[name])
    for attr in ("x_train", "theta_train", "y_train", "x_test", "theta_test", "y_test"):
        assert torch.equal(getattr(a, attr), getattr(b, attr)), attr
    assert not torch.equal(a.x_train, c.x_train)
    assert not torch.equal(a.theta_test, c.theta_test)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", sorted(SMALL))
def test_contract_shapes_devices_dtypes_and_labels(name, device):
    prob = make_problem(name, seed=0, device=device, **SMALL[name])
    assert isinstance(prob, Problem) and prob.name == name
    n, n_test = SMALL[name]["n"], SMALL[name]["n_test"]
    assert prob.x_train.shape[0] == prob.theta_train.shape[0] == prob.y_train.shape[0] == n
    assert prob.x_test.shape[0] == prob.theta_test.shape[0] == prob.y_test.shape[0] == n_test
    for attr in ("x_train", "theta_train", "y_train", "x_test", "theta_test", "y_test"):
        t = getattr(prob, attr)
        assert t.dtype == torch.float32, attr
        assert t.device.type == torch.device(device).type, attr
    assert prob.theta_train.shape == prob.y_train.shape
    assert prob.theta_train.ndim == 1 + prob.event_ndim
    assert prob.sense in ("min", "max")
    # labels are the oracle's solutions of the true scores
    assert torch.equal(prob.y_train, prob.oracle(prob.theta_train))
    assert torch.equal(prob.y_test, prob.oracle(prob.theta_test))
    # the default model maps features to scores of the event shape, on the device
    model = prob.make_model()
    out = model(prob.x_train[:4])
    assert out.shape == prob.theta_train[:4].shape and out.device == prob.x_train.device
    assert model is not prob.make_model()  # a fresh model every call
    assert isinstance(prob.params, dict) and prob.params["seed"] == 0


def test_unknown_problem_and_parameter_are_named():
    with pytest.raises(ValueError, match="problem must be one of .*'nope'"):
        make_problem("nope")
    with pytest.raises(TypeError, match="unknown parameter.*'grids'"):
        make_problem("shortest_path", grids=(3, 3))


# ---------------------------------------------------------------------------------------------------------
# shortest path (PyEPO generator)


def _pyepo_index(u, v, w):
    """Column of edge (u, v) in PyEPO's list: per row i, its w-1 right edges then its w down edges."""
    i, j = divmod(u, w)
    return i * (2 * w - 1) + (j if v == u + 1 else w - 1 + j)


def test_shortest_path_costs_match_independent_pyepo_recomputation():
    n, n_test, p, h, w, deg, noise, seed = 3, 2, 4, 3, 3, 3, 0.25, 11
    prob = make_problem("shortest_path", seed=seed, n=n, n_test=n_test, p=p, grid=(h, w), deg=deg, noise=noise)
    d = (h - 1) * w + (w - 1) * h
    rnd = np.random.RandomState(seed)  # PyEPO's genData draws B, then x, then the noise
    B = rnd.binomial(1, 0.5, (d, p))
    x = rnd.normal(0, 1, (n + n_test, p))
    eps = rnd.uniform(1 - noise, 1 + noise, (n + n_test, d))
    cost = np.empty((n + n_test, d))
    for i in range(n + n_test):
        for j in range(d):
            s = sum(B[j, k] * x[i, k] for k in range(p)) / math.sqrt(p)
            cost[i, j] = ((s + 3) ** deg + 1) / 3.5**deg * eps[i, j]
    cols = [_pyepo_index(u, v, w) for u, v in prob.oracle.edges]
    np.testing.assert_allclose(prob.x_train.numpy(), x[:n], rtol=1e-6)
    np.testing.assert_allclose(prob.x_test.numpy(), x[n:], rtol=1e-6)
    np.testing.assert_allclose(-prob.theta_train.numpy(), cost[:n, cols], rtol=1e-5)
    np.testing.assert_allclose(-prob.theta_test.numpy(), cost[n:, cols], rtol=1e-5)


def test_shortest_path_labels_are_optimal_paths_and_costs_positive():
    h, w = 3, 4
    prob = make_problem("shortest_path", seed=5, n=30, n_test=10, grid=(h, w), deg=2, noise=0.5)
    assert prob.sense == "min" and prob.oracle.num_edges == (h - 1) * w + (w - 1) * h
    assert bool((prob.theta_train < 0).all()) and bool((prob.theta_test < 0).all())
    paths = torch.tensor(_brute_force_dag_paths(h, w, prob.oracle.edges), dtype=torch.float32)
    assert len(paths) == math.comb(h + w - 2, h - 1)
    best = (prob.theta_train @ paths.T).max(dim=1).values
    torch.testing.assert_close(prob.oracle.objective(prob.theta_train, prob.y_train), best)
    # each label is one of the paths
    assert bool(((prob.y_train[:, None, :] == paths[None]).all(-1)).any(-1).all())


def test_shortest_path_default_grid_size_and_model_sign():
    prob = make_problem("shortest_path", seed=0, n=5, n_test=5)
    assert prob.oracle.num_edges == 40 and prob.x_train.shape == (5, 5)
    model = prob.make_model()
    # the model is -(W x + b): its output is minus the linear layer's
    lin = model.linear(prob.x_train)
    torch.testing.assert_close(model(prob.x_train), -lin)


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(noise=1.0), "noise"),
        (dict(noise=-0.1), "noise"),
        (dict(deg=0), "deg"),
        (dict(grid=(1, 5)), "grid"),
        (dict(n=0), "n must"),
        (dict(p=0), "p must"),
    ],
)
def test_shortest_path_bad_parameters(params, match):
    with pytest.raises(ValueError, match=match):
        make_problem("shortest_path", **params)


def test_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        make_problem("shortest_path", seed=-1)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_sign_convention(name):
    prob = make_problem(name, seed=1, **SMALL[name])
    if prob.sense == "min":  # theta = -cost with positive costs
        assert bool((prob.theta_train < 0).all()) and bool((prob.theta_test < 0).all())
    else:  # values to maximize, positive for every generator here
        assert bool((prob.theta_train > 0).all()) and bool((prob.theta_test > 0).all())


# ---------------------------------------------------------------------------------------------------------
# top-k, ranking, matching: labels against brute force


def test_topk_labels_select_the_k_largest():
    prob = make_problem("topk", seed=2, n=40, n_test=5, num_items=9, k=4)
    y, theta = prob.y_train, prob.theta_train
    assert bool((y.sum(dim=1) == 4).all())
    chosen_min = torch.where(y > 0, theta, torch.inf).min(dim=1).values
    other_max = torch.where(y > 0, -torch.inf, theta).max(dim=1).values
    assert bool((chosen_min >= other_max).all())


def test_ranking_and_matching_labels_are_optimal_by_enumeration():
    perms = torch.tensor(list(itertools.permutations(range(4))))  # all 24 permutations of 4 items
    prob = make_problem("ranking", seed=3, n=30, n_test=5, num_items=4)
    ranks = (perms + 1).float()
    best = (prob.theta_train @ ranks.T).max(dim=1).values
    torch.testing.assert_close(prob.oracle.objective(prob.theta_train, prob.y_train), best)
    assert bool((prob.y_train.sort(dim=1).values == torch.arange(1.0, 5.0)).all())

    prob = make_problem("matching", seed=3, n=30, n_test=5, size=4)
    mats = torch.zeros(len(perms), 4, 4)
    mats[torch.arange(len(perms))[:, None], torch.arange(4), perms] = 1
    best = torch.einsum("nij,pij->np", prob.theta_train, mats).max(dim=1).values
    torch.testing.assert_close(prob.oracle.objective(prob.theta_train, prob.y_train), best)
    assert bool((prob.y_train.sum(dim=1) == 1).all() and (prob.y_train.sum(dim=2) == 1).all())


# ---------------------------------------------------------------------------------------------------------
# knapsack


def test_knapsack_values_match_independent_pyepo_recomputation():
    n, n_test, p, m, dim, deg, noise, seed = 3, 2, 4, 6, 2, 2, 0.3, 7
    prob = make_problem(
        "knapsack", seed=seed, n=n, n_test=n_test, p=p, num_items=m, dim=dim, deg=deg, noise=noise, capacity=12
    )
    rnd = np.random.RandomState(seed)  # PyEPO's knapsack genData: weights, B, x, noise, in this order
    W = rnd.choice(range(300, 800), size=(dim, m)) / 100
    B = rnd.binomial(1, 0.5, (m, p))
    x = rnd.normal(0, 1, (n + n_test, p))
    eps = rnd.uniform(1 - noise, 1 + noise, (n + n_test, m))
    vals = np.array(
        [[math.ceil(5 * ((B[j] @ x[i] / math.sqrt(p) + 3) ** deg + 1) / 3.5**deg * eps[i, j]) for j in range(m)]
         for i in range(n + n_test)]
    )  # fmt: skip
    np.testing.assert_allclose(prob.extras["weights"].numpy(), W, rtol=1e-6)
    np.testing.assert_array_equal(prob.theta_train.numpy(), vals[:n])
    np.testing.assert_array_equal(prob.theta_test.numpy(), vals[n:])


@pytest.mark.parametrize("dim", [1, 2])
def test_knapsack_oracle_is_optimal_and_feasible_for_any_sign_of_scores(dim):
    prob = make_problem("knapsack", seed=4, n=20, n_test=5, num_items=10, capacity=15, dim=dim)
    W, cap = prob.extras["weights"].double(), prob.extras["capacity"].double()
    subsets = torch.tensor(list(itertools.product([0.0, 1.0], repeat=10)), dtype=torch.float64)  # all 1024
    feasible = subsets[((subsets @ W.T) <= cap + 1e-9).all(dim=1)]
    # labels of the true (positive) values, and predictions for mixed-sign scores, as a model may output
    g = torch.Generator().manual_seed(0)
    for theta in (prob.theta_train, torch.randn(30, 10, generator=g)):
        y = prob.oracle(theta)
        assert bool(((y.double() @ W.T) <= cap + 1e-9).all())
        best = (theta.double() @ feasible.T).max(dim=1).values
        torch.testing.assert_close(prob.oracle.objective(theta, y).double(), best, rtol=1e-6, atol=1e-5)


def test_bad_parameters_of_other_problems_are_named():
    with pytest.raises(ValueError, match="k must"):
        make_problem("topk", num_items=5, k=6)
    with pytest.raises(ValueError, match="capacity"):
        make_problem("knapsack", capacity=0.0)
    with pytest.raises(ValueError, match="size"):
        make_problem("matching", size=1)
    with pytest.raises(ValueError, match="size"):
        make_problem("warcraft", size=1)
    with pytest.raises(ValueError, match="noise"):
        make_problem("ranking", noise=2.0)


# ---------------------------------------------------------------------------------------------------------
# instances lie in the stated ranges, for any seed and parameters


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    deg=st.integers(1, 6),
    noise=st.floats(0.0, 0.9),
    p=st.integers(1, 6),
)
def test_polynomial_generators_stay_in_their_stated_ranges(seed, deg, noise, p):
    # For even deg, (s + 3)^deg + 1 ≥ 1, so c ≥ (1 - noise) / 3.5^deg > 0 exactly. For odd deg, as in PyEPO,
    # c < 0 is possible but needs s = (Bx)_j / sqrt(p) < -4, with s ~ N(0, ≤ 1): only finiteness is asserted.
    sp = make_problem("shortest_path", seed=seed, n=4, n_test=2, p=p, grid=(3, 3), deg=deg, noise=noise)
    cost = -torch.cat([sp.theta_train, sp.theta_test])
    if deg % 2 == 0:
        assert bool((cost >= (1 - noise) / 3.5**deg * (1 - 1e-6)).all())
    assert bool(torch.isfinite(cost).all())
    ks = make_problem("knapsack", seed=seed, n=4, n_test=2, p=p, num_items=8, deg=deg, noise=noise)
    vals = torch.cat([ks.theta_train, ks.theta_test])
    assert bool((vals == vals.round()).all())  # integer values (PyEPO rounds up)
    W, cap = ks.extras["weights"], ks.extras["capacity"]
    assert bool(((W >= 3.0) & (W <= 7.99 + 1e-6)).all())
    assert bool(((torch.cat([ks.y_train, ks.y_test]) @ W.T) <= cap + 1e-5).all())
