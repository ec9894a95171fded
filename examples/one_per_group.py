r"""A study plugin: a problem with its own oracle, and a method with its own loss.

    colayers study --plugin examples/one_per_group.py --problems one_per_group \
        --methods softmax-ce,fy,spo+,two-stage --seeds 0,1 --epochs 5 -o runs/one-per-group

The tutorial "A study of your own" (docs/tutorials/own-study.md) runs it. It registers

* ``one_per_group`` — choose one of ``options`` items in each of ``groups`` groups (a menu, an ad slot per
  page, a route per vehicle), to maximize the total value. The values are Elmachtoub & Grigas' noisy
  polynomial of features, the generator of the shortest-path benchmark. The oracle, :class:`OnePerGroup`, is
  written here: an argmax per group, with ``contains``.
* ``softmax-ce`` — the Fenchel-Young loss of the entropy-regularized argmax, computed in closed form. Per
  group, with temperature :math:`\tau`,

  .. math::  \ell(\theta; \bar y) = \tau \log\sum_j e^{\theta_j/\tau} - \langle\theta, \bar y\rangle,
             \qquad \nabla_\theta\ell = \operatorname{softmax}(\theta/\tau) - \bar y .

  This is the perturbed Fenchel-Young loss with Gumbel noise of scale τ, without sampling. The max over one
  group is a Gumbel-max, so the perturbed mean is the softmax exactly. For a one-hot target the loss is τ
  times the cross-entropy of softmax(θ/τ).

The module is imported by ``--plugin`` in the command's process and in every worker process, so the names it
registers are known everywhere.
"""

from __future__ import annotations

import numpy as np
import torch

from colayers import Oracle
from colayers.studies import LinearModel, Problem, TrainingObjective, register_method, register_problem
from colayers.studies.problems import polynomial_costs


class OnePerGroup(Oracle):
    """argmax of <theta, y> over the 0/1 matrices y (groups, options) with one 1 in every row."""

    event_ndim = 2

    def __init__(self, groups: int, options: int) -> None:
        super().__init__()
        self.event_shape = (groups, options)

    def solve(self, theta: torch.Tensor) -> torch.Tensor:
        """One batched argmax over the options of every group: (B, groups, options) -> one-hot rows."""
        best = theta.argmax(dim=-1, keepdim=True)
        return torch.zeros_like(theta).scatter_(-1, best, 1.0)

    def contains(self, y: torch.Tensor) -> torch.Tensor:
        """Whether each (groups, options) matrix of y is 0/1 with one 1 per row."""
        zero_one = ((y == 0) | (y == 1)).all(dim=-1).all(dim=-1)
        return zero_one & (y.sum(dim=-1) == 1).all(dim=-1)


@register_problem("one_per_group")
def one_per_group_problem(
    *, seed=0, device="cpu", n=1000, n_test=1000, n_val=200, p=5, groups=4, options=6, deg=4, noise=0.5
) -> Problem:
    """Choose one of ``options`` items per group; item values a noisy polynomial of features."""
    d = groups * options
    rnd = np.random.RandomState(seed)
    B = rnd.binomial(1, 0.5, (d, p))
    total = n + n_test + n_val
    x = rnd.normal(0.0, 1.0, (total, p))
    value = polynomial_costs(x, B, deg, rnd.uniform(1 - noise, 1 + noise, (total, d)))
    x = torch.as_tensor(x, dtype=torch.float32, device=device)
    theta = torch.as_tensor(value, dtype=torch.float32, device=device).reshape(total, groups, options)
    oracle = OnePerGroup(groups, options)
    y = oracle(theta)
    tr, te, va = slice(0, n), slice(n, n + n_test), slice(n + n_test, total)
    return Problem(
        name="one_per_group",
        oracle=oracle,
        x_train=x[tr], theta_train=theta[tr], y_train=y[tr],
        x_test=x[te], theta_test=theta[te], y_test=y[te],
        x_val=x[va] if n_val else None, theta_val=theta[va] if n_val else None, y_val=y[va] if n_val else None,
        make_model=lambda: LinearModel(p, (groups, options)).to(device),
        event_ndim=2,
        sense="max",
        description=f"one of {options} options in each of {groups} groups, degree-{deg} polynomial values",
        params=dict(seed=seed, n=n, n_test=n_test, n_val=n_val, p=p, groups=groups, options=options, deg=deg,
                    noise=noise),
    )  # fmt: skip


class SoftmaxCrossEntropy(TrainingObjective):
    """The closed-form Fenchel-Young loss of the entropy-regularized argmax of every group (needs no oracle)."""

    uses_oracle_in_training = False

    def __init__(self, ctx, temperature: float) -> None:
        super().__init__(ctx.oracle, ctx.event_ndim)
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0; got {temperature!r}")
        self.temperature = float(temperature)

    def loss(self, theta, theta_true, y_true):
        tau = self.temperature
        per_group = tau * torch.logsumexp(theta / tau, dim=-1) - (theta * y_true).sum(dim=-1)
        return per_group.sum(dim=-1).mean()  # summed over the groups of an instance, averaged over the batch


@register_method(
    "softmax-ce", defaults={"temperature": 1.0}, summary="closed-form Fenchel-Young loss of the softmax per group"
)
def build_softmax_ce(ctx, *, temperature):
    return SoftmaxCrossEntropy(ctx, temperature)
