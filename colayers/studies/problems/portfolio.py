r"""Markowitz portfolio under a risk budget with PyEPO's generator (``pyepo.data.portfolio.genData``)."""

from __future__ import annotations

import numpy as np
import torch

from ..._validation import check_int_at_least
from ...oracles.portfolio import Portfolio
from ..models import LinearModel
from ..registry import register_problem
from .base import Problem, _check_real, _check_seed, _check_sizes, _f32, _solve_and_split

__all__ = ["portfolio_problem", "portfolio_returns"]


def portfolio_returns(
    x: np.ndarray, B: np.ndarray, L: np.ndarray, deg: int, noise_level: float, draws: np.ndarray
) -> np.ndarray:
    r"""PyEPO's expected returns: a polynomial of the features plus factor and residual noise.

    .. math::  r_{ij} = \Bigl(\tfrac{0.05}{\sqrt p}(B x_i)_j + 0.1^{1/\deg}\Bigr)^{\deg} + (L f_i)_j
               + 0.01\,\tau\,e_{ij}

    Args:
        x: features ``(n, p)``.
        B: the 0/1 matrix ``(m, p)``.
        L: the factor loadings ``(m, p)``.
        deg: the polynomial degree (≥ 1).
        noise_level: τ.
        draws: standard normal ``(n, p + m)``: the factors :math:`f_i` then the residuals :math:`e_i`.

    Returns:
        the returns ``(n, m)``, float32 (as PyEPO's).

    Example:
        >>> import numpy as np
        >>> portfolio_returns(np.zeros((1, 1)), np.ones((2, 1)), np.zeros((2, 1)), 2, 1.0, np.zeros((1, 3)))
        array([[0.1, 0.1]], dtype=float32)
    """
    p = x.shape[-1]
    r = (0.05 * (x @ B.T) / np.sqrt(p) + 0.1 ** (1 / deg)) ** deg
    r = r + draws[:, :p] @ L.T + 0.01 * noise_level * draws[:, p:]
    return r.astype(np.float32)


@register_problem("portfolio")
def portfolio_problem(
    *,
    seed: int = 0,
    device: str | torch.device = "cpu",
    n: int = 1000,
    n_test: int = 1000,
    n_val: int = 200,
    p: int = 5,
    num_assets: int = 50,
    deg: int = 4,
    noise_level: float = 1.0,
    gamma: float = 2.25,
) -> Problem:
    r"""Markowitz portfolio with PyEPO's generator (``pyepo.data.portfolio.genData``) and model (``portfolioModel``).

    With :math:`B \in \{0,1\}^{m\times p}` Bernoulli(0.5) and factor loadings
    :math:`L \sim U[-0.0025\tau, 0.0025\tau]^{m\times p}` (shared by all instances), features
    :math:`x_i \sim \mathcal{N}(0, I_p)`, factors :math:`f_i \sim \mathcal{N}(0, I_p)` and residuals
    :math:`e_i \sim \mathcal{N}(0, I_m)`, the expected returns are (:func:`portfolio_returns`)

    .. math::  r_{ij} = \Bigl(\tfrac{0.05}{\sqrt p}(B x_i)_j + 0.1^{1/\deg}\Bigr)^{\deg} + (L f_i)_j
               + 0.01\,\tau\,e_{ij}

    and the covariance is :math:`\Sigma = LL^\top + (0.01\tau)^2 I`. τ is PyEPO's ``noise_level`` (it scales
    the factor loadings and the residuals; this generator has no uniform noise width). The draws follow PyEPO's
    order (B, L, x, then f and e in one ``randn`` call) from ``numpy.random.RandomState(seed)``, so the returns
    and Σ equal PyEPO's ``genData(n + n_test, p, num_assets, deg, noise_level, seed)``; the validation
    instances come from their own stream ``RandomState([seed, 1])`` (same B and L).

    Sign convention: ``sense="max"``, ``theta = r``, ``y`` the allocation maximizing :math:`\langle r, y\rangle`
    subject to :math:`y^\top\Sigma y \le \gamma\bar\Sigma`, :math:`\sum_j y_j = 1`, :math:`0 \le y \le 1`
    (:class:`~colayers.oracles.Portfolio`, PyEPO's ``portfolioModel`` with its default γ = 2.25). The solutions
    are continuous: optimal to the solver's tolerance, and the metrics' exact-match rate means little here
    (use the regret). Default model: :class:`~colayers.studies.LinearModel` ``p -> m`` with bias.
    ``extras["covariance"]`` holds Σ (float32; the oracle keeps it in float64).

    Args:
        seed, device: see :func:`~colayers.studies.make_problem`.
        n, n_test, n_val: training, test and validation sizes.
        p: feature dimension.
        num_assets: the number of assets m.
        deg: polynomial degree (≥ 1).
        noise_level: τ > 0 (τ = 0 makes Σ zero and the risk budget empty of meaning).
        gamma: the risk multiplier γ ≥ 1 of the budget :math:`\gamma\bar\Sigma`.

    Example:
        >>> prob = portfolio_problem(seed=0, n=4, n_test=2, n_val=0, num_assets=6)
        >>> prob.theta_train.shape, prob.sense
        (torch.Size([4, 6]), 'max')
        >>> bool(prob.oracle.contains(prob.y_train).all())  # feasible allocations
        True
    """
    seed = _check_seed(seed)
    _check_sizes(n, n_test, p, n_val)
    m = check_int_at_least("num_assets", num_assets, 1)
    deg = check_int_at_least("deg", deg, 1)
    noise_level = _check_real("noise_level", noise_level, 0.0)
    if noise_level <= 0 or noise_level == float("inf"):
        raise ValueError(f"noise_level must be a finite number > 0 (it scales the covariance); got {noise_level!r}")
    gamma = _check_real("gamma", gamma, 1.0)
    if gamma == float("inf"):
        raise ValueError(f"gamma must be a finite number ≥ 1; got {gamma!r}")
    device = torch.device(device)
    rnd = np.random.RandomState(seed)
    B = rnd.binomial(1, 0.5, (m, p))
    L = rnd.uniform(-2.5e-3 * noise_level, 2.5e-3 * noise_level, (m, p))
    x = rnd.normal(0, 1, (n + n_test, p))
    r = portfolio_returns(x, B, L, deg, noise_level, rnd.randn(n + n_test, p + m))
    cov = L @ L.T + (1e-2 * noise_level) ** 2 * np.eye(m)
    val = None
    if n_val:
        other = np.random.RandomState([seed, 1])
        x_val = other.normal(0, 1, (n_val, p))
        val = (_f32(x_val, device), _f32(portfolio_returns(x_val, B, L, deg, noise_level, other.randn(n_val, p + m)),
                                         device))  # fmt: skip
    return _solve_and_split(
        "portfolio", Portfolio(cov, gamma), _f32(x, device), _f32(r, device), n,
        make_model=lambda: LinearModel(p, m).to(device),
        event_ndim=1,
        sense="max",
        description=f"portfolio of {m} assets under a risk budget (gamma={gamma}), PyEPO generator (deg={deg})",
        params=dict(seed=seed, n=n, n_test=n_test, n_val=n_val, p=p, num_assets=m, deg=deg, noise_level=noise_level,
                    gamma=gamma),
        extras=dict(covariance=_f32(cov, device)),
        val=val,
    )  # fmt: skip
