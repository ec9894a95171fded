"""soft_rank forward + backward: the compiled CPU PAV against the batched PAV rounds and torchsort, in one run.

For each regularization, strength ε and (B, n) the script times, interleaved repetition by repetition so that
all see the same machine load, in process CPU time: (a) ``soft_rank`` as shipped (on the CPU: the compiled
linear-time PAV of ``colayers.layers._pav``); (b) the same call with the batched PAV rounds
(``colayers.layers.soft_sort._pav_rounds``, the solver CUDA tensors use) swapped in; (c) ``torchsort.soft_rank``
(Blondel et al.'s own C++ isotonic regression), when torchsort imports, else the column reads ``-``. Each is
forward and backward of ``soft_rank(theta).square().sum()``. It prints the minimum over repetitions [median]
and the ratios rounds / compiled and compiled / torchsort (medians of per-repetition ratios), and checks that
the three agree (largest absolute difference of the ranks).

    python benchmarks/bench_soft_sort.py --reps 3 --threads 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

import colayers.layers.soft_sort  # noqa: F401  (the module; colayers.layers.soft_sort is also a function)
from colayers import soft_rank

SS = sys.modules["colayers.layers.soft_sort"]
SIZES = [(1, 100), (32, 100), (256, 100), (32, 1000), (1024, 20), (8, 10_000)]

try:
    import torchsort
except ImportError:  # not a dependency: the column is left empty
    torchsort = None


def _cpu_time(fn) -> float:
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def _row(theta, reg: str, strength: float, reps: int, device: torch.device) -> str:
    def call(kind):
        def run():
            t = theta.detach().clone().requires_grad_(True)
            if kind == "torchsort":
                out = torchsort.soft_rank(t, regularization=reg, regularization_strength=strength)
            else:
                saved = SS._pav
                SS._pav = SS._pav_rounds if kind == "rounds" else saved
                try:
                    out = soft_rank(t, strength=strength, regularization=reg)
                finally:
                    SS._pav = saved
            out.square().sum().backward()
            if device.type == "cuda":
                torch.cuda.synchronize()
            return out.detach()

        return run

    kinds = ["compiled", "rounds"] + (["torchsort"] if torchsort is not None and device.type == "cpu" else [])
    outs = {k: call(k)() for k in kinds}  # warm up (numba's cache, torchsort's extension) and check agreement
    diff = max(float((outs[k] - outs["compiled"]).abs().max()) for k in kinds)
    times = {k: [] for k in kinds}
    for _ in range(reps):
        for k in kinds:
            times[k].append(_cpu_time(call(k)))
    cells = []
    for k in ("compiled", "rounds", "torchsort"):
        ts = times.get(k)
        cells.append(f"{1e3 * min(ts):>9.2f} [{1e3 * statistics.median(ts):>8.2f}]" if ts else f"{'-':>20}")
    ratio = statistics.median(a / c for a, c in zip(times["rounds"], times["compiled"]))
    ts_ratio = "-"
    if "torchsort" in times:
        ts_ratio = f"{statistics.median(c / t for c, t in zip(times['compiled'], times['torchsort'])):.2f}x"
    return " ".join(cells) + f" {ratio:>10.1f}x {ts_ratio:>10} {diff:>9.1e}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--regularizations", nargs="+", default=["l2", "kl"], choices=["l2", "kl"])
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    version = getattr(torchsort, "__version__", "present") if torchsort is not None else "absent"
    print(f"threads={args.threads} device={device} dtype={args.dtype} torch={torch.__version__} torchsort={version}")
    print("process CPU time per forward + backward, ms: min [median] over repetitions")
    head = f"{'reg':>3} {'eps':>5} {'B':>5} {'n':>6} {'compiled':>20} {'rounds':>20} {'torchsort':>20}"
    print(head + f" {'rounds/comp':>11} {'comp/tsort':>10} {'max diff':>9}")
    for reg in args.regularizations:
        for strength in args.strengths:
            for b, n in SIZES:
                gen = torch.Generator().manual_seed(0)
                theta = torch.randn(b, n, dtype=dtype, generator=gen).to(device)
                row = _row(theta, reg, strength, args.reps, device)
                print(f"{reg:>3} {strength:>5g} {b:>5} {n:>6} {row}", flush=True)


if __name__ == "__main__":
    main()
