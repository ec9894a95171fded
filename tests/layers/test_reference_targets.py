r"""I-MLE's target options against their exact expectation over the enumerated Y (tests/references.py).

The rule with target :math:`\alpha\theta - \lambda\bar y` and target noise temperature τ' (torch-imle's
``TargetDistribution(alpha, beta)`` and ``target_noise_temperature``) has the exact expectation
:math:`\mathbb E_Z[(y^*(\theta + \varepsilon Z) - y^*(\alpha\theta - \lambda v + \tau' Z))/\lambda]`; averaging M
target solutions (the first with Z_s, the others with fresh noise) leaves it unchanged. Tolerances: 5 standard
errors of the replicate mean plus the reference's own error, and the wrong constants must be rejected.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch

import colayers as cl
from colayers.perturb import Normal

from .. import references as ref
from .test_exact_references import PROBLEMS, _run, _wrong

if "alpha" not in inspect.signature(cl.IMLE).parameters:  # pragma: no cover - older API
    pytest.skip("this IMLE has no target options", allow_module_level=True)


@pytest.mark.parametrize(
    ("name", "alpha", "tau", "m", "two_sided"),
    [
        ("top2of5", 0.0, None, 1, False),  # torch-imle's path example: alpha = 0
        ("rank4", 0.5, 0.3, 1, False),
        ("argmax5", 1.0, 0.2, 3, False),
        ("grid3x3", 0.7, None, 2, True),
    ],
)
def test_imle_target_alpha_temperature_and_samples_match_their_expectation(name, alpha, tau, m, two_sided):
    p = PROBLEMS[name]
    eps, lam, s = 0.6, 1.8, 2
    layer = cl.IMLE(p["oracle"](), noise=Normal(), epsilon=eps, lambda_=lam, num_samples=s, two_sided=two_sided,
                    alpha=alpha, target_temperature=tau, num_target_samples=m, output="samples", seed=41)
    _, vjp = _run(layer, name, samples_output=True)
    fd = ref.finite_difference_expectation(p["Y"], p["theta"], p["v"], eps, lam, "normal", two_sided=two_sided,
                                           alpha=alpha, target_temperature=tau)
    ref.assert_mc_close(vjp, fd, wrong_factors=_wrong(S=s, epsilon=eps, lambda_=lam),
                        label=f"IMLE(alpha={alpha}, tau={tau}, M={m}, two_sided={two_sided}) on {name}")


@pytest.mark.parametrize(("name", "tau", "m"), [("argmax5", 0.8, 1), ("top2of5", 1.3, 3)])
def test_imle_without_input_noise_perturbs_the_target_side_alone(name, tau, m):
    # torch-imle's input_noise_temperature = 0 with a target noise temperature: the forward is f(theta) (no
    # noise), the target side alpha*theta - lambda*v + tau'*Z has its own draws. Reference: the exact
    # expectation E_Z[(y*(theta) - y*(theta - lambda v + tau' Z)) / lambda] by enumeration.
    p = PROBLEMS[name]
    lam, s = 1.7, 3
    layer = cl.IMLE(p["oracle"](), noise=Normal(), epsilon=0.0, lambda_=lam, num_samples=s,
                    target_temperature=tau, num_target_samples=m, output="samples", seed=43)
    assert not layer.deterministic  # it draws noise, so it takes a seed
    fwd, vjp = _run(layer, name, samples_output=True)
    plain = ref.solve(p["Y"], np.asarray(p["theta"], dtype=float).ravel())
    assert (fwd == plain).all()  # the forward is the unperturbed solution
    fd = ref.finite_difference_expectation(p["Y"], p["theta"], p["v"], 0.0, lam, "normal", target_temperature=tau)
    ref.assert_mc_close(vjp, fd, wrong_factors=_wrong(S=s, epsilon=tau, lambda_=lam),
                        label=f"IMLE(epsilon=0, tau={tau}, M={m}) on {name}")


def test_imle_without_any_noise_still_refuses_a_seed_and_extra_target_samples():
    with pytest.raises(TypeError, match="no target noise"):
        cl.IMLE(cl.ArgmaxOneHot(), epsilon=0.0, seed=0)
    with pytest.raises(ValueError, match="num_target_samples > 1 needs noise on the target side"):
        cl.IMLE(cl.ArgmaxOneHot(), epsilon=0.0, num_target_samples=2)
    cl.IMLE(cl.ArgmaxOneHot(), epsilon=0.0, target_temperature=0.5, num_target_samples=2, seed=0)  # accepted


def test_imle_target_noise_alone_replays_with_its_seed():
    # the target-side draws come from the layer's seeded generator: the same seed replays the gradient exactly
    def grad(seed):
        layer = cl.IMLE(cl.ArgmaxOneHot(), noise=Normal(), epsilon=0.0, lambda_=0.5, target_temperature=1.0,
                        num_samples=8, seed=seed)
        theta = torch.tensor([[0.3, 0.0, -0.2, 0.1]], requires_grad=True)
        (layer(theta) * torch.tensor([0.0, 1.0, 0.0, 0.0])).sum().backward()
        return theta.grad

    assert torch.equal(grad(5), grad(5))
    assert not torch.equal(grad(5), grad(6))
