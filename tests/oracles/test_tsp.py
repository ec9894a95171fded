"""TravelingSalesman: exact against an enumeration of every tour, the two methods against each other, membership,
determinism of ties, PyEPO's edge order and bad inputs."""

import concurrent.futures
import itertools

import numpy as np
import pytest
import torch

from colayers.oracles import OracleError, TravelingSalesman
from tests.conftest import DEVICES

METHODS = ["dynamic program", "integer program"]
# the dynamic program is tensor code on every device; the integer program runs on the host (SolverOracle's moves)
METHOD_DEVICES = [
    *[pytest.param("dynamic program", d.values[0], id=f"dp-{d.id}", marks=d.marks) for d in DEVICES],
    pytest.param("integer program", "cpu", id="ip-cpu"),
]


def all_tours(n: int) -> torch.Tensor:
    """Every tour of the complete graph on n cities as a 0/1 vector over combinations(range(n), 2), by listing
    the orders of cities 1..n-1 after city 0 (one direction of each cycle): (n-1)!/2 tours."""
    index = {e: k for k, e in enumerate(itertools.combinations(range(n), 2))}
    tours = []
    for order in itertools.permutations(range(1, n)):
        if order[0] > order[-1]:
            continue
        cycle = [0, *order]
        y = torch.zeros(len(index), dtype=torch.float64)
        for a, b in zip(cycle, cycle[1:] + [0]):
            y[index[(min(a, b), max(a, b))]] = 1.0
        tours.append(y)
    return torch.stack(tours)


def best_by_enumeration(theta: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    tours = all_tours(n).to(theta.device)
    values = theta.to(torch.float64) @ tours.T
    return tours[values.argmax(dim=-1)], values.max(dim=-1).values


@pytest.mark.parametrize(("method", "device"), METHOD_DEVICES)
@pytest.mark.parametrize("n", [3, 4, 5, 6, 7])
def test_the_best_tour_equals_the_enumeration(n, method, device):
    theta = torch.randn(40, n * (n - 1) // 2, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    theta = theta.to(device)
    oracle = TravelingSalesman(n, method=method)
    y = oracle(theta)
    expected, _ = best_by_enumeration(theta, n)  # gaussian scores: a unique best tour almost surely
    assert torch.equal(y, expected)
    assert y.device.type == device and bool(oracle.contains(y).all())


@pytest.mark.parametrize("method", METHODS)
def test_costs_are_minimized_with_theta_minus_cost_and_float32_is_served(method):
    n = 6
    cost = torch.rand(25, n * (n - 1) // 2, generator=torch.Generator().manual_seed(1))
    y = TravelingSalesman(n, method=method)(-cost)
    assert y.dtype == torch.float32
    tours = all_tours(n).float()
    shortest = (cost @ tours.T).min(dim=1).values
    torch.testing.assert_close((cost * y).sum(dim=1), shortest)


@pytest.mark.parametrize("n", [8, 9, 10])
def test_dynamic_program_and_integer_program_agree(n):
    gen = torch.Generator().manual_seed(10 + n)
    theta = torch.randn(30, n * (n - 1) // 2, generator=gen, dtype=torch.float64)
    dp = TravelingSalesman(n, method="dynamic program")(theta)
    ip = TravelingSalesman(n, method="integer program")(theta)
    assert torch.equal(dp, ip)
    assert bool(TravelingSalesman(n).contains(dp).all())


@pytest.mark.parametrize("method", METHODS)
def test_ties_give_an_optimal_tour_that_depends_on_theta_alone(method):
    n = 6
    oracle = TravelingSalesman(n, method=method)
    gen = torch.Generator().manual_seed(3)
    tied = torch.randint(0, 2, (12, 15), generator=gen).double()  # 0/1 scores: many optimal tours
    y = oracle(tied)
    _, best = best_by_enumeration(tied, n)
    torch.testing.assert_close((tied * y).sum(dim=1), best, rtol=0, atol=1e-12)
    assert bool(oracle.contains(y).all())
    # batch = loop, and the answer does not depend on what was solved before
    assert torch.equal(y, torch.stack([oracle(t) for t in tied]))
    oracle(torch.randn(5, 15, generator=gen, dtype=torch.float64))
    assert torch.equal(oracle(tied.flip(0)).flip(0), y)


def test_the_dynamic_program_breaks_ties_toward_the_lowest_cities():
    # all scores equal: every tour is optimal; the documented rule (lowest predecessor, lowest last city)
    # walks back 0 <- 1 <- 2 <- ... : the tour 0-1-2-...-(n-1)-0
    n = 5
    y = TravelingSalesman(n, method="dynamic program")(torch.zeros(10))
    edges = TravelingSalesman(n).edges
    expected = torch.zeros(10)
    for a, b in [(0, 1), (1, 2), (2, 3), (3, 4), (0, 4)]:
        expected[edges.index((a, b))] = 1
    assert torch.equal(y, expected)


def test_integer_program_on_an_executor_and_with_the_certificate_equals_serial():
    n = 14
    theta = torch.randn(6, n * (n - 1) // 2, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    serial = TravelingSalesman(n, validate_args=False)(theta)
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        threaded = TravelingSalesman(n, executor=pool, validate_args=True)(theta)
    assert TravelingSalesman(n).method == "integer program"
    assert torch.equal(serial, threaded)
    assert bool(TravelingSalesman(n).contains(serial).all())


def test_integer_program_answers_a_clustered_instance_that_needs_subtour_cuts():
    # two far-apart clusters of 5 cities: the degree-2 program without cuts returns two 5-cycles
    n = 10
    coords = np.concatenate([np.random.default_rng(0).normal(0, 0.1, (5, 2)), 100 + np.zeros((5, 2))])
    coords[5:] += np.random.default_rng(1).normal(0, 0.1, (5, 2))
    cost = np.array([np.linalg.norm(coords[a] - coords[b]) for a, b in itertools.combinations(range(n), 2)])
    theta = -torch.as_tensor(cost)
    ip = TravelingSalesman(n, method="integer program")(theta)
    dp = TravelingSalesman(n, method="dynamic program")(theta)
    assert bool(TravelingSalesman(n).contains(ip)) and torch.equal(ip, dp)


@pytest.mark.parametrize("device", DEVICES)
def test_contains_accepts_tours_only(device):
    n = 6
    oracle = TravelingSalesman(n)
    tours = all_tours(n).to(device)
    assert bool(oracle.contains(tours).all()) and oracle.contains(tours).device.type == device
    edges = oracle.edges

    def vector(pairs):
        y = torch.zeros(15, device=device)
        for a, b in pairs:
            y[edges.index((min(a, b), max(a, b)))] = 1
        return y

    two_triangles = vector([(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (5, 3)])
    path = vector([(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)])
    half = tours[0] * 0.5
    nan = tours[0].clone()
    nan[0] = float("nan")
    extra = tours[0].clone()
    extra[(tours[0] == 0).nonzero()[0]] = 1  # 7 edges
    got = oracle.contains(torch.stack([two_triangles, path, half, nan, extra]))
    assert not bool(got.any())
    assert oracle.contains(torch.zeros(2, 3, 15, device=device)).shape == (2, 3)
    with pytest.raises(ValueError, match="15"):
        oracle.contains(torch.zeros(14, device=device))


def test_edges_are_pyepos_order_and_pyepos_solutions_line_up():
    pytest.importorskip("pyepo")
    pytest.importorskip("gurobipy")
    from pyepo.data import tsp
    from pyepo.model.grb import tspDFJModel

    n = 7
    model = tspDFJModel(n)
    assert TravelingSalesman(n).edges == [tuple(e) for e in model.edges]
    _, c = tsp.genData(5, 4, n, deg=2, noise_width=0.5, seed=4)
    y = TravelingSalesman(n)(-torch.as_tensor(c, dtype=torch.float64))
    for i in range(len(c)):
        model.setObj(c[i])
        solution, value = model.solve()
        assert np.isclose(float((c[i].astype(np.float64) * y[i].numpy()).sum()), value, rtol=1e-6)
        assert np.array_equal(y[i].numpy(), np.asarray(solution, dtype=np.float64))


def test_bad_inputs_are_refused_by_name():
    for bad in (2, 0, 3.0, True):
        with pytest.raises((TypeError, ValueError), match="num_nodes"):
            TravelingSalesman(bad)
    with pytest.raises(ValueError, match="method"):
        TravelingSalesman(5, method="held-karp")
    with pytest.raises(ValueError, match="num_nodes ≤ 16"):
        TravelingSalesman(17, method="dynamic program")
    oracle = TravelingSalesman(5)
    with pytest.raises(ValueError, match="theta"):
        oracle(torch.zeros(3, 9))
    with pytest.raises(ValueError, match="theta"):
        oracle(torch.full((10,), float("nan")))
    assert getattr(oracle, "linear_constraints", None) is None  # so CaVE refuses it


def test_a_failing_instance_of_the_integer_program_is_an_oracle_error():
    oracle = TravelingSalesman(13, method="integer program")
    oracle._milp.solver.options["time_limit"] = 0.0  # stops before any solution: HiGHS' status says so
    oracle._milp.solver._local.__dict__.clear()
    with pytest.raises(OracleError, match="instance 0"):
        oracle(torch.randn(2, 78))
