"""Overhead of the estimator machinery over the oracle calls it makes.

For each estimator and oracle, measures in one run the median wall time of ``forward + backward`` on a batch
θ of shape (B, *event), and the median wall time of the SAME oracle calls made directly (same number of
calls, same numbers of instances, through ``Oracle.__call__``), and prints

    overhead = (estimator time - raw oracle time) / raw oracle time.

Oracles: tensor-native ArgmaxOneHot(n) and TopKSubset(k, n), and a scipy-backed SolverOracle
(``scipy.optimize.linear_sum_assignment`` on an m × m assignment). Target: ≤ 15% at S = 10, B = 32.

Usage:  python benchmarks/bench_estimators.py [--batch 32] [--samples 10] [--n 100] [--reps 100] [--threads 1]
        [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import scipy.optimize
import torch

from colayers import (
    AIMLE,
    IMLE,
    ArgmaxOneHot,
    Blackbox,
    IdentityRelaxation,
    Oracle,
    PerturbedAdditive,
    PerturbedMultiplicative,
    Pushforward,
    RegularizedFrankWolfe,
    SolverOracle,
    TopKSubset,
)
from colayers.perturb import Gumbel


def assignment(theta: np.ndarray) -> np.ndarray:
    """Maximum-weight perfect matching (permutation matrix) of one m x m score matrix."""
    rows, cols = scipy.optimize.linear_sum_assignment(theta, maximize=True)
    y = np.zeros_like(theta)
    y[rows, cols] = 1.0
    return y


class Recorder(Oracle):
    """Records the batch shapes of the calls an estimator makes (to replay them raw)."""

    def __init__(self, inner: Oracle) -> None:
        super().__init__(validate_args=False)
        self.inner = inner
        self.event_ndim = inner.event_ndim
        self.event_shape = inner.event_shape
        self.shapes: list[tuple[int, ...]] = []

    def solve(self, theta):
        self.shapes.append(tuple(theta.shape))
        return self.inner(theta)


def paired_times(fn_a, fn_b, reps: int, warmup: int = 3, sync=lambda: None) -> tuple[list[float], list[float]]:
    """Time ``fn_a`` and ``fn_b`` alternately (so both see the same machine load) ``reps`` times each.

    ``sync`` waits for queued device work (``torch.cuda.synchronize`` on CUDA) before each clock reading.
    """
    for _ in range(warmup):
        fn_a()
        fn_b()
    ta, tb = [], []
    for _ in range(reps):
        sync()
        t0 = time.perf_counter()
        fn_a()
        sync()
        t1 = time.perf_counter()
        fn_b()
        sync()
        t2 = time.perf_counter()
        ta.append(t1 - t0)
        tb.append(t2 - t1)
    return ta, tb


def estimators(oracle: Oracle, s: int):
    return {
        "PerturbedAdditive": PerturbedAdditive(oracle, num_samples=s, seed=0),
        "PerturbedMultiplicative": PerturbedMultiplicative(oracle, num_samples=s, seed=0),
        "Pushforward": Pushforward(PerturbedAdditive(oracle, num_samples=s, seed=0), lambda y: y.flatten(2).sum(-1)),
        "IMLE": IMLE(oracle, num_samples=s, seed=0),
        "IMLE (Gumbel noise)": IMLE(oracle, noise=Gumbel(), num_samples=s, seed=0),
        "IMLE two-sided": IMLE(oracle, num_samples=s, two_sided=True, seed=0),
        "AIMLE": AIMLE(oracle, num_samples=s, seed=0),
        "Blackbox": Blackbox(oracle),
        "IdentityRelaxation": IdentityRelaxation(oracle),
        "RegularizedFrankWolfe": RegularizedFrankWolfe(oracle, max_iter=20),
    }


def run_one(name: str, layer, oracle: Oracle, theta: torch.Tensor, reps: int):
    dy_holder = {}

    def step():
        t = theta.detach().requires_grad_(True)
        out = layer(t)
        if "dy" not in dy_holder or dy_holder["dy"].shape != out.shape:
            dy_holder["dy"] = torch.randn_like(out)
        (out * dy_holder["dy"]).sum().backward()

    # record the oracle calls of one step, then replay the same calls raw
    rec = Recorder(oracle)
    saved = _swap_oracle(layer, rec)
    step()
    _swap_oracle(layer, saved)
    inputs = [torch.randn(shape, dtype=theta.dtype, device=theta.device) for shape in rec.shapes]

    def raw():
        for x in inputs:
            oracle(x)

    sync = (lambda: torch.cuda.synchronize(theta.device)) if theta.device.type == "cuda" else (lambda: None)
    t_est, t_raw = paired_times(step, raw, reps, sync=sync)
    return t_est, t_raw, len(rec.shapes)


def _swap_oracle(layer, new):
    target = layer.layer if isinstance(layer, Pushforward) else layer
    old = target.oracle
    target.oracle = new
    return old


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--n", type=int, default=100, help="event size of the tensor-native oracles")
    parser.add_argument("--k", type=int, default=10, help="subset size of TopKSubset")
    parser.add_argument("--m", type=int, default=10, help="side of the scipy assignment problem")
    parser.add_argument("--reps", type=int, default=100)
    parser.add_argument("--scipy-reps", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="device of θ: cpu, cuda or cuda:N (timings synchronize it)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    cases = [
        (f"ArgmaxOneHot(n={args.n})", ArgmaxOneHot(), (args.n,), args.reps),
        (f"TopKSubset(k={args.k}, n={args.n})", TopKSubset(args.k), (args.n,), args.reps),
        (
            f"scipy assignment {args.m}x{args.m}",
            SolverOracle(assignment, (args.m, args.m)),
            (args.m, args.m),
            args.scipy_reps,
        ),
    ]
    print(f"B={args.batch} S={args.samples} threads={args.threads} device={args.device} torch={torch.__version__}")
    print("times: minimum over reps (median in brackets); overhead = min estimator / min raw - 1,")
    print("       [median over reps of the paired ratio estimator / raw - 1]")
    head = f"{'oracle':<28} {'estimator':<24} {'calls':>5} {'estimator ms':>20} {'raw oracle ms':>20} {'overhead':>18}"
    print(head)
    for oname, oracle, event, reps in cases:
        theta = torch.randn(args.batch, *event, generator=g).to(args.device)
        for ename, layer in estimators(oracle, args.samples).items():
            if ename == "RegularizedFrankWolfe" and oname.startswith("scipy"):
                reps_here = max(3, reps // 3)
            else:
                reps_here = reps
            t_est, t_raw, calls = run_one(ename, layer, oracle, theta, reps_here)
            over = min(t_est) / min(t_raw) - 1
            paired = statistics.median(a / b - 1 for a, b in zip(t_est, t_raw))
            est = f"{1e3 * min(t_est):.3f} [{1e3 * statistics.median(t_est):.3f}]"
            raw = f"{1e3 * min(t_raw):.3f} [{1e3 * statistics.median(t_raw):.3f}]"
            print(f"{oname:<28} {ename:<24} {calls:>5} {est:>20} {raw:>20} {100 * over:>7.1f}% [{100 * paired:>6.1f}%]")


if __name__ == "__main__":
    main()
