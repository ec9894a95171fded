"""The tsp and portfolio problems: PyEPO's data draw for draw, optimal labels, bad parameters refused by name."""

import itertools

import numpy as np
import pytest
import torch

from colayers.studies import make_problem


def test_tsp_data_follow_pyepos_law_recomputed_independently():
    # PyEPO's genData, written out: coordinates (uniform half, normal half), B = Bernoulli · U[-2, 2], x, noise
    seed, n, n_test, p, nodes, deg, noise = 5, 6, 4, 3, 7, 3, 0.4
    prob = make_problem("tsp", seed=seed, n=n, n_test=n_test, n_val=0, p=p, num_nodes=nodes, deg=deg, noise=noise)
    rnd = np.random.RandomState(seed)
    coords = np.concatenate((rnd.uniform(-2, 2, (3, 2)), rnd.normal(0, 1, (4, 2))))
    edges = list(itertools.combinations(range(nodes), 2))
    length = np.array([np.hypot(*(coords[a] - coords[b])) for a, b in edges])
    B = rnd.binomial(1, 0.5, (21, p)) * rnd.uniform(-2, 2, (21, p))
    x = rnd.normal(0, 1, (n + n_test, p))
    eps = rnd.uniform(1 - noise, 1 + noise, (n + n_test, 21))
    cost = np.round(length + (x @ B.T / np.sqrt(p) + 3) ** deg / 3 ** (deg - 1) * eps, 4).astype(np.float32)
    assert np.array_equal(torch.cat([prob.x_train, prob.x_test]).numpy(), x.astype(np.float32))
    assert np.array_equal(-torch.cat([prob.theta_train, prob.theta_test]).numpy(), cost)
    assert prob.sense == "min" and prob.oracle.edges == edges
    assert torch.equal(prob.extras["coordinates"], torch.as_tensor(coords, dtype=torch.float32))


def test_tsp_and_portfolio_data_equal_pyepos():
    pytest.importorskip("pyepo")
    from pyepo.data import portfolio, tsp

    x, c = tsp.genData(14, 10, 9, deg=4, noise_width=0.5, seed=2)
    prob = make_problem("tsp", seed=2, n=10, n_test=4, num_nodes=9, n_val=3)
    assert np.array_equal(-torch.cat([prob.theta_train, prob.theta_test]).numpy(), c)
    assert np.array_equal(torch.cat([prob.x_train, prob.x_test]).numpy(), x.astype(np.float32))
    cov, x, r = portfolio.genData(14, 5, 12, deg=2, noise_level=0.5, seed=2)
    prob = make_problem("portfolio", seed=2, n=10, n_test=4, num_assets=12, deg=2, noise_level=0.5, n_val=3)
    assert np.array_equal(torch.cat([prob.theta_train, prob.theta_test]).numpy(), r)
    assert np.array_equal(torch.cat([prob.x_train, prob.x_test]).numpy(), x.astype(np.float32))
    assert np.array_equal(prob.oracle.covariance, cov) and np.isclose(prob.oracle.risk_budget, 2.25 * cov.mean())


def test_portfolio_returns_and_covariance_follow_pyepos_law_recomputed_independently():
    seed, n, n_test, p, m, deg, tau = 3, 5, 3, 4, 6, 3, 0.7
    prob = make_problem("portfolio", seed=seed, n=n, n_test=n_test, n_val=0, p=p, num_assets=m, deg=deg,
                        noise_level=tau)  # fmt: skip
    rnd = np.random.RandomState(seed)
    B = rnd.binomial(1, 0.5, (m, p))
    L = rnd.uniform(-2.5e-3 * tau, 2.5e-3 * tau, (m, p))
    x = rnd.normal(0, 1, (n + n_test, p))
    fe = rnd.randn(n + n_test, p + m)
    r = (0.05 * x @ B.T / np.sqrt(p) + 0.1 ** (1 / deg)) ** deg + fe[:, :p] @ L.T + 0.01 * tau * fe[:, p:]
    np.testing.assert_array_equal(torch.cat([prob.theta_train, prob.theta_test]).numpy(), r.astype(np.float32))
    np.testing.assert_allclose(prob.oracle.covariance, L @ L.T + (0.01 * tau) ** 2 * np.eye(m), rtol=1e-14)
    assert prob.sense == "max"


def test_tsp_labels_are_the_shortest_tours_by_enumeration():
    prob = make_problem("tsp", seed=1, n=8, n_test=4, n_val=3, num_nodes=6)
    index = {e: k for k, e in enumerate(itertools.combinations(range(6), 2))}
    tours = []
    for order in itertools.permutations(range(1, 6)):
        cycle = [0, *order]
        y = np.zeros(15)
        for a, b in zip(cycle, cycle[1:] + [0]):
            y[index[(min(a, b), max(a, b))]] = 1
        tours.append(y)
    tours = torch.as_tensor(np.unique(np.stack(tours), axis=0), dtype=torch.float32)
    assert tours.shape[0] == 60  # 5!/2
    for theta, y in [(prob.theta_train, prob.y_train), (prob.theta_test, prob.y_test), (prob.theta_val, prob.y_val)]:
        best = (theta.double() @ tours.double().T).max(dim=1).values
        torch.testing.assert_close((theta.double() * y.double()).sum(dim=1), best)


def test_portfolio_labels_are_feasible_and_at_least_as_good_as_other_allocations():
    prob = make_problem("portfolio", seed=0, n=10, n_test=5, n_val=2, num_assets=8)
    sigma, budget = prob.oracle.covariance, prob.oracle.risk_budget
    y = prob.y_train.double().numpy()
    assert np.all(np.einsum("ni,ij,nj->n", y, sigma, y) <= budget * (1 + 1e-6))
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-6)
    # random feasible allocations (scaled towards the uniform portfolio, whose risk is mean(Σ) < the budget)
    rng = np.random.default_rng(0)
    uniform = np.full(8, 1 / 8)
    for theta, label in zip(prob.theta_train.double().numpy(), y):
        for _ in range(50):
            z = rng.dirichlet(np.ones(8))
            t = 1.0
            while (uniform + t * (z - uniform)) @ sigma @ (uniform + t * (z - uniform)) > budget:
                t /= 2
            other = uniform + t * (z - uniform)
            assert theta @ label >= theta @ other - 1e-7


@pytest.mark.parametrize(
    ("name", "params", "match"),
    [
        ("tsp", dict(num_nodes=2), "num_nodes"),
        ("tsp", dict(num_nodes=5.0), "num_nodes"),
        ("tsp", dict(noise=-0.1), "noise"),
        ("tsp", dict(noise=float("nan")), "noise"),
        ("tsp", dict(noise="0.5"), "noise"),
        ("tsp", dict(deg=0), "deg"),
        ("tsp", dict(p=0), "p"),
        ("tsp", dict(n=0), "n"),
        ("portfolio", dict(num_assets=0), "num_assets"),
        ("portfolio", dict(noise_level=0.0), "noise_level"),
        ("portfolio", dict(noise_level=float("inf")), "noise_level"),
        ("portfolio", dict(gamma=0.5), "gamma"),
        ("portfolio", dict(gamma=float("inf")), "gamma"),
        ("portfolio", dict(deg=0), "deg"),
        ("portfolio", dict(noise=0.5), "noise"),  # PyEPO's portfolio noise is noise_level: an unknown parameter
    ],
)
def test_bad_parameters_are_refused_by_name(name, params, match):
    with pytest.raises((TypeError, ValueError), match=match):
        small = {"tsp": dict(num_nodes=5), "portfolio": dict(num_assets=4)}[name]
        make_problem(name, seed=0, **{**dict(n=3, n_test=2, n_val=0), **small, **params})


def test_a_portfolio_evaluation_reports_no_rank_distance_and_a_ranking_one_does():
    # continuous allocations are neither 0/1 vectors nor rank vectors: no Hamming, no rank distance column
    from colayers.oracles import CountingOracle
    from colayers.studies.trial import evaluate

    for name, expected in (("portfolio", set()), ("ranking", {"rank_distance"}), ("tsp", {"hamming"})):
        small = {"portfolio": dict(num_assets=5), "ranking": dict(num_items=5), "tsp": dict(num_nodes=5)}[name]
        prob = make_problem(name, seed=0, n=6, n_test=4, n_val=0, **small)
        oracle = CountingOracle(prob.oracle)
        model = prob.make_model()

        class Decode:
            predict = staticmethod(oracle)

        out = evaluate(model, Decode(), prob.x_test, prob.theta_test, prob.y_test, oracle)
        assert set(out) & {"hamming", "rank_distance"} == expected, name
