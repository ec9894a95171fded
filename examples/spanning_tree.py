r"""A study plugin: a minimum-spanning-tree problem and a custom method, used from the command line.

    colayers study --plugin examples/spanning_tree.py --problems spanning_tree \
        --methods perceptron,spo+,two-stage --seeds 0,1 --epochs 5 -o runs/spanning-tree

``--plugin`` imports this file in the command's process and in every worker process (``--workers N``), so
the names it registers are known everywhere. It registers

* ``spanning_tree`` — a minimum spanning tree of the complete graph on ``num_nodes`` vertices whose edge
  costs are Elmachtoub & Grigas' noisy polynomial of features (the generator of the shortest-path problem),
  solved by :class:`colayers.oracles.SpanningTree` (maximization convention: ``theta = -cost``);
* ``perceptron`` — a margin perceptron (structured hinge loss with a Hamming margin ``margin``):
  :math:`\ell(\theta, \bar y) = \langle\theta, \hat y - \bar y\rangle + m\,\|\hat y - \bar y\|_1` with
  :math:`\hat y = f(\theta + m(1 - 2\bar y))`, whose subgradient is :math:`\hat y - \bar y`. It is a method
  written against the :class:`~colayers.studies.TrainingObjective` interface: ``loss`` and ``predict``.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch

from colayers.oracles import SpanningTree
from colayers.studies import LinearModel, Problem, TrainingObjective, register_method, register_problem
from colayers.studies.problems import polynomial_costs


@register_problem("spanning_tree")
def spanning_tree_problem(
    *, seed=0, device="cpu", n=200, n_test=200, n_val=100, p=5, num_nodes=5, deg=4, noise=0.5
) -> Problem:
    """Minimum spanning tree of a complete graph; edge costs a noisy polynomial of features."""
    edges = list(itertools.combinations(range(num_nodes), 2))
    oracle = SpanningTree(num_nodes, edges)
    rnd = np.random.RandomState(seed)
    B = rnd.binomial(1, 0.5, (len(edges), p))
    total = n + n_test + n_val
    x = rnd.normal(0.0, 1.0, (total, p))
    cost = polynomial_costs(x, B, deg, rnd.uniform(1 - noise, 1 + noise, (total, len(edges))))
    x = torch.as_tensor(x, dtype=torch.float32, device=device)
    theta = -torch.as_tensor(cost, dtype=torch.float32, device=device)
    y = oracle(theta)
    tr, te, va = slice(0, n), slice(n, n + n_test), slice(n + n_test, total)
    return Problem(
        name="spanning_tree",
        oracle=oracle,
        x_train=x[tr], theta_train=theta[tr], y_train=y[tr],
        x_test=x[te], theta_test=theta[te], y_test=y[te],
        x_val=x[va] if n_val else None, theta_val=theta[va] if n_val else None, y_val=y[va] if n_val else None,
        make_model=lambda: LinearModel(p, len(edges), negate=True).to(device),
        event_ndim=1,
        sense="min",
        description=f"minimum spanning tree of K{num_nodes}, degree-{deg} polynomial costs",
        params=dict(seed=seed, n=n, n_test=n_test, n_val=n_val, p=p, num_nodes=num_nodes, deg=deg, noise=noise),
    )  # fmt: skip


class MarginPerceptron(TrainingObjective):
    """Structured hinge loss with a Hamming margin; trains from optimal solutions only."""

    def __init__(self, ctx, margin: float) -> None:
        super().__init__(ctx.oracle, ctx.event_ndim)
        self.train_oracle = ctx.training_oracle
        self.margin = margin

    def loss(self, theta, theta_true, y_true):
        with torch.no_grad():
            y_hat = self.train_oracle(theta + self.margin * (1 - 2 * y_true))
        diff = y_hat - y_true
        return ((theta * diff).sum(-1) + self.margin * diff.abs().sum(-1)).mean()


@register_method("perceptron", defaults={"margin": 1.0}, summary="margin perceptron (structured hinge, Hamming margin)")
def build_perceptron(ctx, *, margin):
    return MarginPerceptron(ctx, margin)
