r"""A user's own noise law plugs into ``Perturbed`` with the score-function rule (InferOpt.jl's ``PerturbedOracle``
with any distribution), checked against a closed form: Laplace noise on the argmax over 2 items.

With i.i.d. standard Laplace entries (density :math:`\rho(z) = \tfrac12 e^{-|z|}`, score
:math:`\nabla\log\rho(z) = -\operatorname{sign} z`) and :math:`\eta = \theta + \varepsilon Z`, item 1 wins when
:math:`W = Z_2 - Z_1 < d/\varepsilon`, :math:`d = \theta_1 - \theta_2`. W has density
:math:`f_W(w) = \tfrac14(1 + |w|)e^{-|w|}` and tail :math:`P(W > t) = \tfrac14(2 + t)e^{-t}` for t ≥ 0, so with
:math:`s = d/\varepsilon`

.. math::

    \mu_1(\theta) = 1 - \tfrac14(2 + s)e^{-s} \;(s \ge 0), \qquad
    \partial\mu_1/\partial\theta_1 = -\partial\mu_1/\partial\theta_2 = f_W(s)/\varepsilon.

The Normal law, for comparison, gives :math:`\mu_1 = \Phi(s/\sqrt2)`: the test tells the laws apart.
"""

import math

import torch

from colayers import ArgmaxOneHot
from colayers.layers import Perturbed, ScoreFunctionRule
from colayers.perturb import Additive, Noise

DT = torch.float64


class Laplace(Noise):
    """The user's noise: standard Laplace, written outside the package (sample, score, antithetic mirror)."""

    mean = 0.0
    variance = 2.0

    def sample(self, shape, *, generator=None, device=None, dtype=torch.float32):
        u = torch.rand(shape, generator=generator, device=device, dtype=dtype) - 0.5  # inverse CDF
        return -torch.sign(u) * torch.log1p(-2.0 * u.abs().clamp(max=0.5 - torch.finfo(dtype).eps))

    def grad_log_density(self, z):
        return -torch.sign(z)

    def mirror(self, z):
        return -z


def _closed_form(d, eps):
    s = abs(d) / eps
    tail = 0.25 * (2.0 + s) * math.exp(-s)
    mu1 = 1.0 - tail if d >= 0 else tail
    return mu1, 0.25 * (1.0 + s) * math.exp(-s) / eps


def test_laplace_noise_in_perturbed_with_the_score_function_rule_matches_its_closed_form():
    eps, theta1, theta2 = 0.5, 0.8, 0.5  # s = 0.6
    rows, samples = 20000, 10
    layer = Perturbed(
        ArgmaxOneHot(), Additive(Laplace(), epsilon=eps), rule=ScoreFunctionRule(), num_samples=samples, seed=3
    )
    theta = torch.tensor([[theta1, theta2]], dtype=DT).expand(rows, 2).clone().requires_grad_(True)
    mu = layer(theta)  # (rows, 2): each row an independent estimate from `samples` draws
    mu[:, 0].sum().backward()  # the VJP with v = e_1 per row: an estimate of the gradient of mu_1
    mu1, dmu1 = _closed_form(theta1 - theta2, eps)

    # Monte Carlo tolerance: 5 standard errors of the mean of the `rows` independent row estimates
    def check(estimates, exact, what):
        se = estimates.std() / math.sqrt(rows)
        assert abs(float(estimates.mean()) - exact) < 5 * float(se), (what, float(estimates.mean()), exact, float(se))
        return float(se)

    check(mu[:, 0].detach(), mu1, "mean")
    se = check(theta.grad[:, 0], dmu1, "d mu1 / d theta1")
    check(theta.grad[:, 1], -dmu1, "d mu1 / d theta2")
    # the closed form of Normal noise differs by many standard errors: the layer uses the user's law
    s = (theta1 - theta2) / eps
    normal_dmu1 = math.exp(-s * s / 4) / math.sqrt(4 * math.pi) / eps
    assert abs(normal_dmu1 - dmu1) > 10 * se


def test_laplace_closed_form_against_numerical_integration():
    """The closed form itself, independently of the layer: f_W as the convolution of two Laplace densities,
    mu_1 as its integral (Riemann sums) and the derivative as a central difference of mu_1."""
    eps, z = 0.7, torch.linspace(-40, 40, 400001, dtype=DT)
    dz = float(z[1] - z[0])
    for w in (-1.3, 0.0, 2.1):
        conv = float((0.5 * torch.exp(-z.abs()) * 0.5 * torch.exp(-(z + w).abs())).sum()) * dz
        assert abs(conv - 0.25 * (1 + abs(w)) * math.exp(-abs(w))) < 1e-6
    f_w = 0.25 * (1 + z.abs()) * torch.exp(-z.abs())
    for d in (-0.9, 0.2, 1.4):
        mu1, dmu1 = _closed_form(d, eps)
        assert abs(float((f_w * (z < d / eps)).sum()) * dz - mu1) < 1e-3
        h = 1e-5
        assert abs((_closed_form(d + h, eps)[0] - _closed_form(d - h, eps)[0]) / (2 * h) - dmu1) < 1e-8
