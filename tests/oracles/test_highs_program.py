"""LinearProgram / HighsProgram: the answer is a function of θ alone (ties included), the global validation switch
governs the optimality certificate, a θ of the wrong length is refused, and nothing is written to stdout."""

import concurrent.futures
import itertools
import multiprocessing
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

import colayers
from colayers.oracles import Knapsack, LinearProgram, OracleError
from colayers.oracles.highs import HighsProgram

ROOT = pathlib.Path(__file__).resolve().parents[2]


def at_most_two(n=6, **kw):
    """max ⟨θ, y⟩ s.t. Σ y ≤ 2, 0 ≤ y ≤ 1: with integer θ in {0, 1, 2} most instances have several optimal vertices."""
    return LinearProgram(n, A_ub=[[1.0] * n], b_ub=[2.0], bounds=(0, 1), **kw)


def tied_scores(rows=64, n=6, seed=0):
    return torch.randint(0, 3, (rows, n), generator=torch.Generator().manual_seed(seed)).double()


def fresh_answer(theta):
    """Each θ on a HiGHS model built for it alone: no previous solve can influence it (the reference)."""
    return torch.stack([at_most_two(theta.shape[-1])(t) for t in theta])


def test_a_tie_is_answered_the_same_whatever_was_solved_before():
    # on the warm-started model, [1, 1, 0] gave [0, 1, 0] or [1, 0, 0] depending on the instance solved before it
    lp = LinearProgram(3, A_ub=[[1.0, 1.0, 1.0]], b_ub=[1.0], bounds=(0, 1))
    tie = torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)
    first = lp(tie)
    answers = []
    for before in ([0.0, 1.0, 0.5], [1.0, 0.0, 0.5], [0.0, 0.0, 1.0], [1.0, 1.0, 0.0]):
        lp(torch.tensor(before, dtype=torch.float64))
        answers.append(lp(tie))
    assert all(torch.equal(a, first) for a in answers), answers
    assert first.tolist() in ([1.0, 0.0, 0.0], [0.0, 1.0, 0.0])  # an optimal vertex


def test_ties_are_a_function_of_theta_in_any_order_and_on_any_executor():
    theta = tied_scores()
    reference = fresh_answer(theta)
    ties = sum(int((t == t.max()).sum() > 1 or (t == t.sort().values[-2]).sum() > 1) for t in theta)
    assert ties > 32  # the check has many tied instances to decide
    lp = at_most_two()
    assert torch.equal(lp(theta), reference)
    for seed in range(3):  # the same rows in other orders, on one model that has solved the others before
        order = torch.randperm(len(theta), generator=torch.Generator().manual_seed(seed))
        assert torch.equal(lp(theta[order]), reference[order])
    with concurrent.futures.ThreadPoolExecutor(4) as pool:  # threads: each has its own model and own history
        assert torch.equal(at_most_two(executor=pool)(theta), reference)
    # every answer is optimal: its objective is the sum of the two largest scores (clipped at 0)
    best = theta.clamp(min=0).topk(2, dim=-1).values.sum(-1)
    assert torch.equal((reference * theta).sum(-1), best)


def test_ties_agree_between_a_process_pool_and_a_serial_run():
    theta = tied_scores(rows=16, seed=1)
    with concurrent.futures.ProcessPoolExecutor(2) as pool:
        assert torch.equal(at_most_two(executor=pool)(theta), fresh_answer(theta))


def test_the_global_switch_governs_the_optimality_certificate(monkeypatch):
    # docs/oracles.md: LinearProgram certifies optimality by default; with validate_args=None it follows the switch
    certified = []
    original = HighsProgram._certify

    def spy(self, highs, cost, x):
        certified.append(x.copy())
        return original(self, highs, cost, x)

    monkeypatch.setattr(HighsProgram, "_certify", spy)
    theta = torch.tensor([[3.0, -1.0, 2.0, 0.5, 0.0, 1.0]], dtype=torch.float64)
    lp = at_most_two()  # validate_args=None
    lp(theta)
    assert len(certified) == 1
    try:
        colayers.set_default_validate_args(False)
        lp(theta)
        assert len(certified) == 1  # switched off globally: not certified
        at_most_two(validate_args=True)(theta)
        assert len(certified) == 2  # an explicit True keeps its own setting
    finally:
        colayers.set_default_validate_args(True)
    at_most_two(validate_args=False)(theta)
    assert len(certified) == 2


def test_the_certificate_follows_the_callers_switch_in_a_worker_process(monkeypatch):
    # a worker process has its own global switch (on by default): the caller's setting must travel with each
    # instance. The pool forks after the patch, so a certificate run in a worker raises and the caller sees it.
    def refuse(self, highs, cost, x):
        raise OracleError("the certificate ran")

    monkeypatch.setattr(HighsProgram, "_certify", refuse)
    theta = torch.tensor([[3.0, -1.0, 2.0, 0.5, 0.0, 1.0]], dtype=torch.float64)
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        lp = at_most_two(executor=pool)
        try:
            colayers.set_default_validate_args(False)
            assert lp(theta).tolist() == [[1.0, 0.0, 1.0, 0.0, 0.0, 0.0]]  # not certified in the worker
        finally:
            colayers.set_default_validate_args(True)
        with pytest.raises(OracleError, match="the certificate ran"):
            lp(theta)


@pytest.mark.parametrize("shape", [(7,), (5,), (2, 3), (1, 6)])
def test_highs_program_refuses_a_theta_of_the_wrong_shape(shape):
    program = at_most_two().solver
    with pytest.raises(ValueError, match=r"theta must have shape \(6,\) \(one score per variable\); got shape"):
        program(np.ones(shape))
    assert program(np.arange(6.0)).tolist() == [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]


def test_linear_program_and_cvxpy_oracle_write_nothing_to_stdout():
    # HiGHS prints a two-line banner from C++ when its first model is made with logging on; a fresh interpreter
    # (the banner is printed once per process) whose file descriptor 1 is captured sees every byte written
    code = (
        "import torch\n"
        "from colayers import LinearProgram\n"
        "lp = LinearProgram(3, A_ub=[[1.0, 1.0, 1.0]], b_ub=[2.0], bounds=(0, 1))\n"
        "y = lp(torch.tensor([[3.0, -1.0, 2.0]]))\n"
        "knap = LinearProgram(3, A_ub=[[2.0, 3.0, 4.0]], b_ub=[5.0], bounds=(0, 1), integrality=True)\n"
        "z = knap(torch.tensor([[3.0, 4.0, 5.0]]))\n"
        "assert y.tolist() == [[1.0, 0.0, 1.0]] and z.tolist() == [[1.0, 1.0, 0.0]]\n"
    )
    cvxpy = (  # cvxpy's HIGHS interface builds its own highspy model, which printed the banner too
        "import cvxpy as cp, torch\n"
        "from colayers import CvxpyOracle\n"
        "theta, y = cp.Parameter(3), cp.Variable(3, boolean=True)\n"
        "oracle = CvxpyOracle(cp.Problem(cp.Maximize(theta @ y), [[2, 3, 4] @ y <= 5]), theta, y)\n"
        "assert oracle.solver.solver == 'HIGHS'\n"
        "assert oracle(torch.tensor([[3.0, 4.0, 5.0]])).tolist() == [[1.0, 1.0, 0.0]]\n"
    )
    for program in (code, cvxpy):
        proc = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == ""
        assert "HiGHS" not in proc.stderr


def test_linear_program_writes_nothing_to_the_file_descriptors_in_this_process(capfd):
    lp = LinearProgram(4, A_ub=[[1.0] * 4], b_ub=[1.0], bounds=(0, 1), integrality=[1, 0, 1, 0])
    assert lp(torch.tensor([[0.0, 2.0, 1.0, 0.5]])).tolist() == [[0.0, 1.0, 0.0, 0.0]]
    HighsProgram(np.ones((1, 2)), [-np.inf], [1.0], [0.0, 0.0], [1.0, 1.0])(np.array([1.0, 2.0]))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_every_tie_of_a_small_program_is_reproduced_by_a_fresh_model():
    # exhaustive over θ ∈ {0, 1}^4 for "at most 2 of 4": every θ solved after every other θ gives the fresh answer
    thetas = torch.tensor(list(itertools.product([0.0, 1.0], repeat=4)), dtype=torch.float64)
    lp = at_most_two(4)
    reference = fresh_answer(thetas)
    for a, b in itertools.product(range(len(thetas)), repeat=2):
        pair = torch.stack([thetas[a], thetas[b]])
        assert torch.equal(lp(pair), reference[[a, b]])
    with pytest.raises(OracleError, match="Unbounded"):  # an unbounded instance is still an error, not a vertex
        LinearProgram(2, A_ub=[[1.0, -1.0]], b_ub=[1.0])(torch.tensor([1.0, 1.0]))


def test_the_knapsack_milp_certificate_follows_the_knapsacks_switch(monkeypatch):
    # non-integer weights: the knapsack solves a MILP on HiGHS, certified like any LinearProgram while validating
    certified = []
    original = HighsProgram._certify
    monkeypatch.setattr(HighsProgram, "_certify", lambda self, *a: (certified.append(1), original(self, *a))[1])
    theta = torch.tensor([[3.0, 4.0, 5.0]], dtype=torch.float64)
    assert Knapsack([1.5, 2.5, 3.0], 4.0)(theta).tolist() == [[1.0, 1.0, 0.0]]  # 7 > 5 (item 3 alone) > 3
    assert len(certified) == 1
    Knapsack([1.5, 2.5, 3.0], 4.0, validate_args=False)(theta)
    assert len(certified) == 1
