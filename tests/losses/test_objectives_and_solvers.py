"""Losses with an objective <θ, g(y)> + h(y) other than <θ, y>, and with per-instance solver oracles.

Every reference is computed by enumerating Y (no oracle call, no loss code): the value and the (sub)gradient of
SPO+, the structured SVM, Fenchel-Young with frozen noise, and the contrastive losses.
"""

import itertools
import subprocess
import sys
import types

import cvxpy as cp
import networkx as nx
import numpy as np
import pytest
import torch

from colayers import (
    BipartiteMatching,
    CvxpyOracle,
    FenchelYoungLoss,
    Knapsack,
    LinearProgram,
    MAPContrastiveLoss,
    NCELoss,
    Oracle,
    PerturbedAdditive,
    RegretLoss,
    SolutionPool,
    SpanningTree,
    SPOPlusLoss,
    StructuredSVMLoss,
)

DT = torch.float64


class WeightedChoice(Oracle):
    """Y = the one-hot vectors of R^n, objective <θ, w ⊙ y> + <c, y>: g(y) = w ⊙ y, h(y) = <c, y>."""

    def __init__(self, w, c):
        super().__init__()
        self.w, self.c = w, c
        self.event_shape = (w.shape[0],)

    def solve(self, theta):
        best = (theta * self.w + self.c).argmax(-1, keepdim=True)
        return torch.zeros_like(theta).scatter_(-1, best, 1.0)

    def g(self, y):
        return self.w * y

    def h(self, y):
        return (self.c * y).sum(-1)

    def contains(self, y):
        return ((y == 0) | (y == 1)).all(-1) & (y.sum(-1) == 1)


class TableAdditive:
    """η = θ + ε Z with Z read from a fixed table (a perturbation with no RNG, for frozen-noise references)."""

    def __init__(self, table, epsilon):
        self.table, self.epsilon = table, epsilon

    def sample(self, theta, num_samples, generator=None):
        z = self.table[:num_samples]
        return types.SimpleNamespace(eta=self.apply(theta, z), noise=z)

    def apply(self, theta, noise):
        return theta + self.epsilon * noise


class FrozenPerturbed(torch.nn.Module):
    def __init__(self, oracle, table, epsilon):
        super().__init__()
        self.oracle, self.perturbation, self.num_samples = oracle, TableAdditive(table, epsilon), table.shape[0]


def objective_table(theta, Y, g, h):
    """F(θ, y) for every y of the enumerated Y: ``(*batch, |Y|)``."""
    gy = g(Y).reshape(Y.shape[0], -1)
    value = theta.reshape(*theta.shape[: theta.ndim - (Y.ndim - 1)], -1) @ gy.T
    return value if h is None else value + h(Y)


def _weighted():
    g = torch.Generator().manual_seed(0)
    w = 0.5 + torch.rand(5, generator=g, dtype=DT)
    c = torch.randn(5, generator=g, dtype=DT)
    return WeightedChoice(w, c), torch.eye(5, dtype=DT)


def test_spo_plus_with_g_and_h_matches_enumeration():
    oracle, Y = _weighted()
    g = torch.Generator().manual_seed(1)
    theta = torch.randn(6, 5, generator=g, dtype=DT, requires_grad=True)
    theta_true = torch.randn(6, 5, generator=g, dtype=DT)
    alpha = 1.5
    value = SPOPlusLoss(oracle, alpha=alpha, reduction="none")(theta, theta_true)
    value.sum().backward()
    y_bar = Y[objective_table(theta_true, Y, oracle.g, oracle.h).argmax(-1)]
    table = objective_table(alpha * theta.detach() - theta_true, Y, oracle.g, oracle.h)
    y_alpha = Y[table.argmax(-1)]
    expected = table.max(-1).values - (((alpha * theta.detach() - theta_true) * oracle.w * y_bar).sum(-1)
                                        + (oracle.c * y_bar).sum(-1))
    torch.testing.assert_close(value.detach(), expected)
    torch.testing.assert_close(theta.grad, alpha * oracle.w * (y_alpha - y_bar))


def test_fenchel_young_with_g_and_h_matches_enumeration():
    oracle, Y = _weighted()
    g = torch.Generator().manual_seed(2)
    theta = torch.randn(4, 5, generator=g, dtype=DT, requires_grad=True)
    y_target = Y[torch.tensor([0, 3, 1, 4])]
    table = torch.randn(6, 4, 5, generator=g, dtype=DT)
    eps = 0.7
    value = FenchelYoungLoss(FrozenPerturbed(oracle, table, eps), reduction="none")(theta, y_target)
    value.sum().backward()
    eta = theta.detach() + eps * table  # (S, B, n)
    scores = objective_table(eta, Y, oracle.g, oracle.h)  # (S, B, |Y|)
    at_target = (eta * oracle.w * y_target).sum(-1) + (oracle.c * y_target).sum(-1)
    torch.testing.assert_close(value.detach(), (scores.max(-1).values - at_target).mean(0))
    best = Y[scores.argmax(-1)]
    torch.testing.assert_close(theta.grad, (oracle.w * best).mean(0) - oracle.w * y_target)


def test_structured_svm_with_g_and_h():
    oracle, Y = _weighted()
    g = torch.Generator().manual_seed(3)
    theta = torch.randn(4, 5, generator=g, dtype=DT, requires_grad=True)
    y_target = Y[torch.tensor([2, 2, 0, 1])]
    with pytest.raises(ValueError, match="Hamming margin needs an oracle whose statistic g is the identity"):
        StructuredSVMLoss(oracle)(theta, y_target)

    def margin(y, yt):  # the 0/1 loss: 1 unless y = ȳ
        return 1.0 - (y * yt).sum(-1)

    def augmented(th, yt):  # by enumeration, as a user would supply it
        table = objective_table(th, Y, oracle.g, oracle.h) + 1.0 - yt @ Y.T
        return Y[table.argmax(-1)]

    loss = StructuredSVMLoss(oracle, margin=margin, loss_augmented_oracle=augmented, reduction="none")
    value = loss(theta, y_target)
    value.sum().backward()
    table = objective_table(theta.detach(), Y, oracle.g, oracle.h)
    at_target = (table * (y_target @ Y.T)).sum(-1)
    augmented_table = table + 1.0 - y_target @ Y.T
    torch.testing.assert_close(value.detach(), augmented_table.max(-1).values - at_target)
    y_hat = Y[augmented_table.argmax(-1)]
    torch.testing.assert_close(theta.grad, oracle.w * (y_hat - y_target))


def test_contrastive_losses_with_g_and_h():
    oracle, Y = _weighted()
    g = torch.Generator().manual_seed(4)
    theta = torch.randn(3, 5, generator=g, dtype=DT, requires_grad=True)
    y_target = Y[torch.tensor([0, 1, 1])]
    members = Y[[0, 1, 3]]
    pool = SolutionPool(oracle, members, solve_ratio=0.0)
    nce = NCELoss(pool, reduction="none")(theta, y_target)
    cmap = MAPContrastiveLoss(pool, reduction="none")(theta, y_target)

    def reference(th):
        table = objective_table(th, members, oracle.g, oracle.h)  # (B, |Γ|)
        target = (th * oracle.w * y_target).sum(-1) + (oracle.c * y_target).sum(-1)
        return table.mean(-1) - target, table.max(-1).values - target

    ref_nce, ref_cmap = reference(theta.detach())
    torch.testing.assert_close(nce.detach(), ref_nce)
    torch.testing.assert_close(cmap.detach(), ref_cmap)
    (grad,) = torch.autograd.grad(nce.sum() + cmap.sum(), theta)
    t = theta.detach().requires_grad_()
    (expected,) = torch.autograd.grad(sum(r.sum() for r in reference(t)), t)
    torch.testing.assert_close(grad, expected)


def test_regret_refuses_an_objective_other_than_the_inner_product():
    oracle, _ = _weighted()
    theta = torch.randn(2, 5, dtype=DT)
    with pytest.raises(ValueError, match="RegretLoss needs an oracle whose objective is <theta, y>.*ExperienceLoss"):
        RegretLoss(PerturbedAdditive(oracle, num_samples=2, seed=0))(theta, theta)


# -- per-instance solver oracles ----------------------------------------------------------------------------


def _permutation_matrices(n):
    out = []
    for perm in itertools.permutations(range(n)):
        y = torch.zeros(n, n, dtype=DT)
        y[range(n), perm] = 1.0
        out.append(y)
    return torch.stack(out)


def _trees_of_k4():
    edges = list(itertools.combinations(range(4), 2))
    trees = []
    for mask in itertools.product([0.0, 1.0], repeat=6):
        graph = nx.Graph([e for e, b in zip(edges, mask) if b])
        graph.add_nodes_from(range(4))
        if nx.is_tree(graph):
            trees.append(mask)
    return SpanningTree(4, edges), torch.tensor(trees, dtype=DT)


def _knapsack():
    weights, capacity = [1.5, 2.25, 0.7, 3.1, 1.2], 3.0
    cube = torch.tensor(list(itertools.product([0.0, 1.0], repeat=5)), dtype=DT)
    return Knapsack(weights, capacity), cube[cube @ torch.tensor(weights, dtype=DT) <= capacity]


def _assignment_lp():
    a_rows = np.kron(np.eye(3), np.ones((1, 3)))  # Σ_j y_ij = 1
    a_cols = np.kron(np.ones((1, 3)), np.eye(3))  # Σ_i y_ij = 1
    lp = LinearProgram(9, A_eq=np.vstack([a_rows, a_cols]), b_eq=np.ones(6), bounds=(0, 1))
    return lp, _permutation_matrices(3).reshape(-1, 9)  # Birkhoff: the vertices are the permutations


def _cvxpy_knapsack():
    theta, y = cp.Parameter(4), cp.Variable(4, boolean=True)
    weights = np.array([2.0, 3.0, 1.5, 2.5])
    oracle = CvxpyOracle(cp.Problem(cp.Maximize(theta @ y), [weights @ y <= 5.0]), theta, y)
    cube = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=DT)
    return oracle, cube[cube @ torch.tensor(weights, dtype=DT) <= 5.0]


SOLVERS = {
    "linear_program": _assignment_lp,
    "knapsack_milp": _knapsack,
    "bipartite_matching": lambda: (BipartiteMatching(3), _permutation_matrices(3)),
    "spanning_tree": _trees_of_k4,
    "cvxpy": _cvxpy_knapsack,
}


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_losses_with_per_instance_solvers_match_enumeration(name):
    oracle, Y = SOLVERS[name]()
    event = tuple(Y.shape[1:])
    g = torch.Generator().manual_seed(5)
    theta = torch.randn(3, *event, generator=g, dtype=DT, requires_grad=True)
    theta_true = torch.randn(3, *event, generator=g, dtype=DT)
    true_table = objective_table(theta_true, Y, lambda y: y, None)
    y_bar = Y[true_table.argmax(-1)]
    torch.testing.assert_close(oracle(theta_true), y_bar)  # the solver agrees with the enumeration
    dims = tuple(range(-len(event), 0))

    # SPO+ (α = 2): value max_y <θ_2, y> − <θ_2, ȳ>, subgradient 2 (y_2 − ȳ)
    spo = SPOPlusLoss(oracle, reduction="none")(theta, theta_true)
    (grad,) = torch.autograd.grad(spo.sum(), theta)
    theta_2 = 2 * theta.detach() - theta_true
    table = objective_table(theta_2, Y, lambda y: y, None)
    torch.testing.assert_close(spo.detach(), table.max(-1).values - (theta_2 * y_bar).sum(dims))
    torch.testing.assert_close(grad, 2 * (Y[table.argmax(-1)] - y_bar))

    # structured SVM with the Hamming margin, loss-augmented maximizer by enumeration
    ssvm = StructuredSVMLoss(oracle, margin_weight=0.5, reduction="none")(theta, y_bar)
    (grad,) = torch.autograd.grad(ssvm.sum(), theta)
    flat_y, flat_bar = Y.reshape(Y.shape[0], -1), y_bar.reshape(3, -1)
    hamming = 0.5 * (flat_bar.sum(-1, keepdim=True) + flat_y.sum(-1) - 2 * flat_bar @ flat_y.T)  # (B, |Y|)
    aug = objective_table(theta.detach(), Y, lambda y: y, None) + hamming
    at_target = (theta.detach() * y_bar).sum(dims)
    torch.testing.assert_close(ssvm.detach(), aug.max(-1).values - at_target)
    torch.testing.assert_close(grad, Y[aug.argmax(-1)] - y_bar)

    # Fenchel-Young with frozen additive noise: mean_s max_y <η_s, y> − <η_s, ȳ>, gradient mean_s y*_s − ȳ
    noise = torch.randn(4, 3, *event, generator=g, dtype=DT)
    fy = FenchelYoungLoss(FrozenPerturbed(oracle, noise, 0.3), reduction="none")(theta, y_bar)
    (grad,) = torch.autograd.grad(fy.sum(), theta)
    eta = theta.detach() + 0.3 * noise
    scores = objective_table(eta, Y, lambda y: y, None)
    torch.testing.assert_close(fy.detach(), (scores.max(-1).values - (eta * y_bar).sum(dims)).mean(0))
    torch.testing.assert_close(grad, Y[scores.argmax(-1)].mean(0) - y_bar)

    # MAP-contrastive over a pool holding Y: the same value as the structured perceptron max_y <θ, y − ȳ>
    cmap = MAPContrastiveLoss(SolutionPool(oracle, Y, solve_ratio=0.0), reduction="none")(theta, y_bar)
    plain = objective_table(theta.detach(), Y, lambda y: y, None)
    torch.testing.assert_close(cmap.detach(), plain.max(-1).values - at_target)


def test_linear_program_runs_after_another_highs_user_started_its_thread_pool():
    # cvxpy's HIGHS interface starts HiGHS' process-wide thread pool with its default size; a LinearProgram
    # built afterwards (threads=1) used to fail every instance with "HiGHS model status 0 (Not Set)". A fresh
    # process, so that nothing in this test session started the pool first.
    script = (
        "import cvxpy as cp, numpy as np, torch\n"
        "from colayers import CvxpyOracle, LinearProgram\n"
        "t, y = cp.Parameter(3), cp.Variable(3, boolean=True)\n"
        "CvxpyOracle(cp.Problem(cp.Maximize(t @ y), [np.ones(3) @ y <= 2]), t, y)(torch.ones(1, 3))\n"
        "lp = LinearProgram(3, A_ub=[[1.0, 1.0, 1.0]], b_ub=[2.0], bounds=(0, 1))\n"
        "print(lp(torch.tensor([[3.0, -1.0, 2.0]])).tolist())\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[[1.0, 0.0, 1.0]]"
