"""GridDAGShortestPath: the compiled kernel (backend="kernel") against the tensor dynamic program (backend="tensor")
on the CPU, per call and per instance, over grid sizes and batch sizes; both give the same paths (checked here).

    python benchmarks/bench_grid_dag.py [--sizes 5x5,12x12,30x30] [--batches 1,32,320,4096,32768] [--threads 1]

Process CPU time (``time.process_time()``), the two backends alternating rep by rep, median over reps; the ratio
tensor / kernel is the figure that decides the CPU dispatch of backend="auto".
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from colayers import GridDAGShortestPath


def timed(fn, theta, reps: int) -> float:
    start = time.process_time()
    for _ in range(reps):
        fn(theta)
    return (time.process_time() - start) / reps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="5x5,12x12,30x30")
    ap.add_argument("--batches", default="1,32,320,4096,32768")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"threads={a.threads}, torch {torch.__version__}, float32, median of {a.rounds} rounds")
    print(f"{'grid':>6s} {'B':>6s} {'kernel us/call':>15s} {'tensor us/call':>15s} {'kernel us/inst':>15s} "
          f"{'tensor/kernel':>14s}")
    for size in a.sizes.split(","):
        h, w = (int(v) for v in size.split("x"))
        kernel = GridDAGShortestPath(h, w, backend="kernel", validate_args=False)
        tensor = GridDAGShortestPath(h, w, backend="tensor", validate_args=False)
        for b in (int(v) for v in a.batches.split(",")):
            theta = torch.randn(b, kernel.num_edges, generator=torch.Generator().manual_seed(0))
            if not torch.equal(kernel(theta), tensor(theta)):
                raise SystemExit(f"{size} B={b}: the backends disagree")
            reps = max(1, 20_000 // (b * h * w // 25 + 1))
            tk, tt = [], []
            for _ in range(a.rounds):  # alternating: both see the same load
                tk.append(timed(kernel, theta, reps))
                tt.append(timed(tensor, theta, max(1, reps // 4)))
            k, t = statistics.median(tk), statistics.median(tt)
            print(f"{size:>6s} {b:6d} {k * 1e6:15.1f} {t * 1e6:15.1f} {k / b * 1e6:15.3f} {t / k:14.1f}")


if __name__ == "__main__":
    main()
