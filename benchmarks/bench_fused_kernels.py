"""Whole training epochs with and without the compiled Fenchel-Young statistics and score-function VJP.

    python benchmarks/bench_fused_kernels.py [--rounds 15]

PyEPO's 5x5 shortest-path loop (n = 1000, deg 4, noise 0.5, Linear(5, 40), Adam lr 0.01, batch 32, one thread,
colayers' default checks on): the floor (MSE to the costs), the perturbed Fenchel-Young loss (PFY) and the perturbed
layer with an MSE (DPO), S = 10, epsilon = 1. Each method runs twice per round, once with the compiled passes
(``colayers.losses._fy_kernel``, ``colayers.layers._score_kernel``) and once with them switched off (the tensor
operations they replace: the loss sees a non-linear objective, the rule no kernel), in one process, epochs
alternating, process CPU time; the table gives the median epoch and its ratio to the median floor epoch.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import torch
from torch import nn

import colayers.layers.rules as rules
import colayers.losses.fenchel_young as fenchel_young
from colayers import FenchelYoungLoss, GridDAGShortestPath, PerturbedAdditive


@contextlib.contextmanager
def kernels_off():
    """The two compiled passes switched off: the tensor operations run instead."""
    linear, on_kernel = fenchel_young.linear_objective, rules._on_kernel
    fenchel_young.linear_objective = lambda oracle: False
    rules._on_kernel = lambda *args: False
    try:
        yield
    finally:
        fenchel_young.linear_objective, rules._on_kernel = linear, on_kernel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    a = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    oracle = GridDAGShortestPath(5, 5)
    n = 1000
    x, cost = torch.randn(n, 5, generator=gen), torch.rand(n, 40, generator=gen) + 0.5
    y = oracle(-cost)

    def make(method: str):
        torch.manual_seed(0)
        model = nn.Linear(5, 40)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        layer = PerturbedAdditive(oracle, epsilon=1.0, num_samples=10, seed=135)
        fy = FenchelYoungLoss(layer)
        losses = {
            "floor": lambda xb, cb, yb: ((model(xb) - cb) ** 2).mean(),
            "PFY": lambda xb, cb, yb: fy(-model(xb), yb),
            "DPO": lambda xb, cb, yb: ((layer(-model(xb)) - yb) ** 2).mean(),
        }
        loss = losses[method]

        def epoch() -> float:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
            start = time.process_time()
            for i in range(0, n, 32):
                idx = order[i : i + 32]
                value = loss(x[idx], cost[idx], y[idx])
                opt.zero_grad()
                value.backward()
                opt.step()
            return time.process_time() - start

        return epoch

    runs = {(m, k): make(m) for m in ("floor", "PFY", "DPO") for k in (True, False) if m != "floor" or k}
    times: dict = {key: [] for key in runs}
    for rnd in range(a.rounds + 1):  # round 0 warms up (and compiles)
        for (method, on), epoch in runs.items():
            with contextlib.nullcontext() if on else kernels_off():
                t = epoch()
            if rnd:
                times[(method, on)].append(t)
    floor = statistics.median(times[("floor", True)])
    print(f"one thread, process CPU time, median of {a.rounds} epochs each, alternating; torch {torch.__version__}")
    print(f"floor: {floor * 1e3:.2f} ms/epoch")
    print(f"{'method':6s} {'kernels':>8s} {'ms/epoch':>9s} {'x floor':>8s}")
    for method in ("PFY", "DPO"):
        for on in (True, False):
            med = statistics.median(times[(method, on)])
            print(f"{method:6s} {'on' if on else 'off':>8s} {med * 1e3:9.2f} {med / floor:8.2f}")


if __name__ == "__main__":
    main()
