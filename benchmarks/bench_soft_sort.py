"""Batched PAV (colayers.soft_rank) against a per-row loop, forward + backward, in one run.

For each (B, n) the script times, interleaved repetition by repetition so that both see the same machine
load: (a) ``soft_rank`` on the whole (B, n) batch, forward and backward; (b) the same computation as a
Python loop over the B rows (``soft_rank`` on each row, then ``torch.stack``), forward and backward; (c)
the forward alone as a per-row loop of ``scipy.optimize.isotonic_regression`` (a compiled PAV; no
gradient). It prints the minimum time over repetitions (median in brackets) and the ratios loop / batched.

    python benchmarks/bench_soft_sort.py --reps 5 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from scipy.optimize import isotonic_regression

from colayers import soft_rank


def _time(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--strength", type=float, default=0.1)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"threads={args.threads} device={device} torch={torch.__version__} strength={args.strength} (l2)")
    print(f"{'B':>6} {'n':>6} {'batched ms':>16} {'row loop ms':>16} {'scipy loop ms':>16} {'loop/batched':>13}")
    for b, n in [(1, 100), (32, 100), (256, 100), (32, 1000), (1024, 20)]:
        theta = torch.randn(b, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).to(device)
        theta.requires_grad_(True)

        def batched():
            soft_rank(theta, strength=args.strength).square().sum().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()

        def loop():
            torch.stack([soft_rank(row, strength=args.strength) for row in theta]).square().sum().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()

        rows = (theta.detach().cpu().numpy() / args.strength).copy()
        rho = np.arange(n, 0, -1, dtype=np.float64)

        def scipy_loop():
            for row in rows:
                z = -np.sort(-row)
                isotonic_regression(z - rho, increasing=False)

        batched(), loop(), scipy_loop()  # warm up
        tb, tl, ts = [], [], []
        for _ in range(args.reps):
            tb.append(_time(batched))
            tl.append(_time(loop))
            ts.append(_time(scipy_loop))
        ratio = statistics.median(a / c for a, c in zip(tl, tb))
        print(
            f"{b:>6} {n:>6} {1e3 * min(tb):>8.3f} [{1e3 * statistics.median(tb):>6.3f}]"
            f" {1e3 * min(tl):>8.3f} [{1e3 * statistics.median(tl):>6.3f}]"
            f" {1e3 * min(ts):>8.3f} [{1e3 * statistics.median(ts):>6.3f}] {ratio:>12.1f}x"
        )


if __name__ == "__main__":
    main()
