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

``--frank-wolfe`` times instead the same ``"kl"`` soft ranks computed two ways, B = 32 rows of n scores
(2 × standard normal): ``RegularizedFrankWolfe(Ranking(), regularizer=NegativeEntropy(ε))`` (defaults:
max_iter = 100, tol = 1e-9) against ``SoftRank(strength=ε, regularization="kl")``, forward + backward, with the
number of oracle calls of one Frank-Wolfe forward and the largest difference of the two answers:

    python benchmarks/bench_soft_sort.py --frank-wolfe --reps 2 --threads 1
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


def frank_wolfe_rows(reps: int) -> None:
    from colayers import NegativeEntropy, Ranking, RegularizedFrankWolfe, SoftRank

    calls = [0]

    class CountedRanking(Ranking):
        def __call__(self, theta):
            calls[0] += 1
            return super().__call__(theta)

    print(f"{'n':>4} {'eps':>5} {'Frank-Wolfe ms':>16} {'SoftRank ms':>14} {'FW/SoftRank':>12} {'oracle calls':>13} "
          f"{'max diff':>9}")
    for n in (5, 10, 20, 50):
        for strength in (0.3, 1.0, 3.0):
            theta = 2 * torch.randn(32, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
            layers = {"fw": RegularizedFrankWolfe(CountedRanking(), regularizer=NegativeEntropy(strength)),
                      "sr": SoftRank(strength=strength, regularization="kl")}

            def run(layer, theta=theta):
                t = theta.clone().requires_grad_(True)
                out = layer(t)
                out.square().sum().backward()
                return out.detach()

            calls[0] = 0
            diff = float((run(layers["fw"]) - run(layers["sr"])).abs().max())
            n_calls = calls[0]
            times = {k: [] for k in layers}
            for _ in range(reps):
                for k, layer in layers.items():
                    times[k].append(_cpu_time(lambda layer=layer: run(layer)))
            ratio = statistics.median(a / b for a, b in zip(times["fw"], times["sr"]))
            print(f"{n:>4} {strength:>5g} {1e3 * min(times['fw']):>16.1f} {1e3 * min(times['sr']):>14.2f} "
                  f"{ratio:>11.0f}x {n_calls:>13} {diff:>9.1e}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.1, 1.0])
    parser.add_argument("--regularizations", nargs="+", default=["l2", "kl"], choices=["l2", "kl"])
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frank-wolfe", action="store_true", help="entropic Frank-Wolfe against SoftRank(kl)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.frank_wolfe:
        print(f"threads={args.threads} torch={torch.__version__} float64 B=32, process CPU time, fwd + bwd, ms (min)")
        frank_wolfe_rows(args.reps)
        return
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
