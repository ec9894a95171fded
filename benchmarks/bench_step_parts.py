"""Where a training step of PyEPO's 5x5 benchmark goes: the floor step against the parts of a colayers step.

    python benchmarks/bench_step_parts.py [--rounds 7]

Per step (batch 32, S = 10, one thread, process CPU time, median over rounds, the rows alternating within each
round): the floor step (Linear(5, 40) forward, MSE to the costs, backward, Adam), each method's loss forward and
backward on a fixed θ (32, 40) with colayers' default checks on, and the pieces inside them: the oracle's
compiled kernel on 32 and 320 instances, the noise draws of one step (Normal, Sum-of-Gamma k = 5), and the
checks (θ's finiteness, a target's membership).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from colayers import IMLE, Blackbox, FenchelYoungLoss, GridDAGShortestPath, PerturbedAdditive, SPOPlusLoss
from colayers._validation import check_finite
from colayers.perturb import Normal, SumOfGamma


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--reps", type=int, default=300)
    a = ap.parse_args()
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(0)
    oracle = GridDAGShortestPath(5, 5)
    x, cost = torch.randn(32, 5, generator=gen), torch.rand(32, 40, generator=gen) + 0.5
    theta = (-cost + 0.3 * torch.randn(32, 40, generator=gen)).requires_grad_(True)
    y_true = oracle(-cost)
    model = nn.Linear(5, 40)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    spo = SPOPlusLoss(oracle)
    pert = PerturbedAdditive(oracle, epsilon=1.0, noise=Normal(), num_samples=10, seed=135)
    fy = FenchelYoungLoss(pert)
    dbb = Blackbox(oracle, lambda_=10.0)
    imle = IMLE(oracle, noise=SumOfGamma(k=5), epsilon=1.0, lambda_=10.0, num_samples=10, output="mean", seed=135)
    eta = torch.randn(320, 40, generator=gen)

    def floor():
        loss = ((model(x) - cost) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    rows = {
        "floor step (model, MSE, backward, Adam)": floor,
        "SPO+ loss, forward + backward": lambda: spo(theta, -cost, y_true).backward(),
        "PFY loss, forward + backward": lambda: fy(theta, y_true).backward(),
        "DBB layer + <c, y>, forward + backward": lambda: (dbb(theta) * cost).sum(1).mean().backward(),
        "DPO layer + MSE, forward + backward": lambda: ((pert(theta) - y_true) ** 2).mean().backward(),
        "I-MLE layer + <c, y>, forward + backward": lambda: (imle(theta) * cost).sum(1).mean().backward(),
        "  oracle kernel, 32 instances (solve)": lambda: oracle.solve(theta.detach()),
        "  oracle kernel, 320 instances (solve)": lambda: oracle.solve(eta),
        "  Normal noise (10, 32, 40)": lambda: Normal().sample((10, 32, 40), generator=gen),
        "  Sum-of-Gamma k=5 noise (10, 32, 40)": lambda: SumOfGamma(k=5).sample((10, 32, 40), generator=gen),
        "  check_finite(theta)": lambda: check_finite("theta", theta),
        "  oracle.contains(y_target)": lambda: oracle.contains(y_true),
    }
    times: dict[str, list[float]] = {name: [] for name in rows}
    for fn in rows.values():
        fn()
    for _ in range(a.rounds):
        for name, fn in rows.items():
            start = time.process_time()
            for _ in range(a.reps):
                fn()
            times[name].append((time.process_time() - start) / a.reps)
    theta.grad = None
    floor_time = statistics.median(times[next(iter(rows))])
    print(f"one thread, process CPU time, median of {a.rounds} rounds of {a.reps} calls; torch {torch.__version__}")
    print(f"{'part':44s} {'us/step':>9s} {'/ floor':>8s}")
    for name in rows:
        med = statistics.median(times[name])
        print(f"{name:44s} {med * 1e6:9.1f} {med / floor_time:8.2f}")


if __name__ == "__main__":
    main()
