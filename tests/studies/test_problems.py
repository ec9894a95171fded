"""Tests of the benchmark problems: seeded generators, shapes, signs, optimal labels, default models."""

import itertools
import math

import numpy as np
import pytest
import torch

from colayers.studies import PROBLEMS, Problem, make_problem
from tests.conftest import DEVICES

SMALL = {
    "shortest_path": dict(n=12, n_test=6, grid=(3, 4)),
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
    assert {"shortest_path"} <= set(PROBLEMS)


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
