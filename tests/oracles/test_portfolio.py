"""Portfolio: optimal against an independent solver (scipy's SLSQP) and by the KKT conditions, feasible, a function
of θ alone, membership within its stated tolerance, solver failures reported, bad inputs refused by name."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from colayers.oracles import OracleError, Portfolio


def pyepo_like(m: int, seed: int, tau: float = 1.0) -> np.ndarray:
    """A covariance of PyEPO's form L Lᵀ + (0.01 τ)² I with L ~ U[-0.0025τ, 0.0025τ]^(m×5)."""
    L = np.random.default_rng(seed).uniform(-2.5e-3 * tau, 2.5e-3 * tau, (m, 5))
    return L @ L.T + (1e-2 * tau) ** 2 * np.eye(m)


def slsqp(theta: np.ndarray, sigma: np.ndarray, budget: float) -> np.ndarray:
    """The same program by scipy's SLSQP from the uniform portfolio, with max|θ| and the risk budget scaled to 1
    (SLSQP's line search fails on the raw scales). Its answer is checked feasible, not trusted to be optimal."""
    m = len(theta)
    scaled, t = sigma / budget, theta / np.abs(theta).max()
    result = minimize(
        lambda x: -t @ x, np.full(m, 1.0 / m), jac=lambda x: -t, method="SLSQP",
        bounds=[(0.0, 1.0)] * m,
        constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1.0, "jac": lambda x: np.ones(m)},
                     {"type": "ineq", "fun": lambda x: 1.0 - x @ scaled @ x, "jac": lambda x: -2 * scaled @ x}],
        options={"ftol": 1e-12, "maxiter": 1000},
    )  # fmt: skip
    x = result.x
    assert x @ scaled @ x <= 1 + 1e-8 and abs(x.sum() - 1) < 1e-10 and (x >= 0).all() and (x <= 1).all()
    return x


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_answer_matches_slsqp(seed):
    m = 6
    sigma = pyepo_like(m, seed)
    oracle = Portfolio(sigma)
    rng = np.random.default_rng(10 + seed)
    theta = rng.uniform(0.02, 0.2, (5, m))
    y = oracle(torch.as_tensor(theta)).numpy()
    for t, x in zip(theta, y):
        ref = slsqp(t, sigma, oracle.risk_budget)
        # as good as the independent solver up to Clarabel's relative gap (1e-8), and the same point: the maximizer
        # is unique, and on the curved risk constraint an objective error δ moves x by about sqrt(δ) (1e-4)
        assert t @ x >= t @ ref - 1e-8 * abs(t @ ref)
        np.testing.assert_allclose(x, ref, atol=1e-4)
    assert np.isclose(oracle.risk_budget, 2.25 * sigma.mean())


def test_the_answer_satisfies_the_kkt_conditions():
    # max θᵀx s.t. xᵀΣx ≤ b, 1ᵀx = 1, x ≥ 0 (x ≤ 1 inactive here): θ = 2λΣx + ν1 - μ, λ ≥ 0, μ ≥ 0, μᵢxᵢ = 0.
    # λ and ν are fitted by least squares on the assets held; the assets at 0 must have μᵢ ≥ 0. Tolerance 1e-4 of
    # max|θ|: the solver stops at a relative duality gap of 1e-8, and on a curved constraint a point whose objective
    # is within δ of the optimum has a stationarity residual of order sqrt(δ) = 1e-4.
    m = 20
    sigma = pyepo_like(m, 7)
    oracle = Portfolio(sigma)
    theta = np.random.default_rng(8).uniform(0.02, 0.2, (4, m))
    for t, x in zip(theta, oracle(torch.as_tensor(theta)).numpy()):
        assert abs(x @ sigma @ x / oracle.risk_budget - 1.0) < 1e-6  # the risk budget binds
        held = x > 1e-6
        gradient = 2 * sigma @ x
        design = np.stack([gradient[held], np.ones(held.sum())], axis=1)
        (lam, nu), *_ = np.linalg.lstsq(design, t[held], rcond=None)
        residual = t[held] - design @ np.array([lam, nu])
        scale = np.abs(t).max()
        assert np.abs(residual).max() < 1e-4 * scale
        assert lam > 0
        mu = lam * gradient[~held] + nu - t[~held]
        assert (mu >= -1e-4 * scale).all() and mu.max() > 1e-3 * scale  # some μᵢ well above 0: a real test
        assert (x[~held] < 1e-6).all() and (x >= -1e-9).all() and abs(x.sum() - 1) < 1e-8


def test_a_loose_budget_gives_the_best_single_asset():
    # γ so large that the risk constraint never binds: the linear program's vertex, the asset of highest return
    oracle = Portfolio(np.diag([1.0, 2.0, 3.0]), gamma=100.0)
    y = oracle(torch.tensor([[0.1, 0.3, 0.2], [0.5, 0.1, 0.2]], dtype=torch.float64))
    torch.testing.assert_close(y, torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64), atol=1e-6,
                               rtol=0)  # fmt: skip


def test_answers_depend_on_theta_alone_and_not_on_its_scale_by_powers_of_two():
    oracle = Portfolio(pyepo_like(8, 3))
    theta = torch.as_tensor(np.random.default_rng(4).uniform(-0.1, 0.2, (6, 8)))
    y = oracle(theta)
    assert torch.equal(y, torch.stack([oracle(t) for t in theta.flip(0)]).flip(0))
    assert torch.equal(oracle(theta * 2.0**-20), y)
    assert bool(oracle.contains(y).all()) and bool(oracle.contains(y.float()).all())  # float32 storage included


def test_contains_is_feasibility_within_the_stated_tolerance():
    oracle = Portfolio(np.eye(2), gamma=2.0)  # budget 2 · mean(I) = 1: every allocation of the simplex is feasible
    y = torch.tensor(
        [[0.5, 0.5], [1.0, 0.0], [0.5 + 5e-7, 0.5], [0.5 + 5e-6, 0.5], [1.0 + 1e-3, -1e-3], [0.6, 0.6],
         [float("nan"), 1.0]], dtype=torch.float64,
    )  # fmt: skip
    assert oracle.contains(y).tolist() == [True, True, True, False, False, False, False]
    assert oracle.contains(y, atol=1e-2).tolist() == [True, True, True, True, True, False, False]
    tight = Portfolio(np.diag([1.0, 3.0]), gamma=1.0)  # budget 1: x₁² + 3x₂² ≤ 1 cuts the simplex
    assert tight.contains(torch.tensor([[0.75, 0.25], [0.0, 1.0]], dtype=torch.float64)).tolist() == [True, False]
    assert oracle.contains(torch.zeros(3, 4, 2)).shape == (3, 4)
    with pytest.raises(ValueError, match="2"):
        oracle.contains(torch.zeros(3))


def test_a_solver_that_stops_early_is_an_oracle_error():
    oracle = Portfolio(pyepo_like(10, 0), solver_options={"max_iter": 1})
    with pytest.raises(OracleError, match="instance 0"):
        oracle(torch.full((2, 10), 0.1, dtype=torch.float64) + torch.arange(10) / 100)


def test_bad_inputs_are_refused_by_name():
    with pytest.raises(ValueError, match="covariance must be a square"):
        Portfolio(np.ones((2, 3)))
    with pytest.raises(ValueError, match="covariance must be symmetric"):
        Portfolio(np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="covariance must be positive semidefinite"):
        Portfolio(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="covariance must be finite"):
        Portfolio(np.array([[np.nan, 0.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="gamma"):
        Portfolio(np.eye(2), gamma=-1.0)
    with pytest.raises(ValueError, match="gamma=0.9 gives the risk budget"):  # least risk 0.5 > 0.9 · 0.5
        Portfolio(np.eye(2), gamma=0.9)
    with pytest.raises(ValueError, match="solver"):
        Portfolio(np.eye(2), solver="ECOS_BB")
    with pytest.raises(TypeError, match="solver_options"):
        Portfolio(np.eye(2), solver_options=[1])
    oracle = Portfolio(np.eye(3))
    with pytest.raises(ValueError, match="theta"):
        oracle(torch.zeros(2, 4))
    assert getattr(oracle, "linear_constraints", None) is None  # a quadratic constraint: CaVE refuses it
