"""Top-k / argmax by selection against the stable sort it replaced, and the Sum-of-Gamma sampler, in one run.

Selection: ``TopKSubset(k).solve`` and ``ArgmaxOneHot().solve`` on float32 scores of shape (B, n), against the former
algorithm (stable sort of -theta, first k indices, scattered), which this script keeps. Each output is checked
equal to the former one (random scores, and scores rounded to a few integers: many ties). Sum-of-Gamma: the draws of
one I-MLE step of the 5x5 shortest-path benchmark (``SumOfGamma(k=5, terms=10)``, noise of shape (S=10, B=32, 40
edges): 12,800 entries, 128,000 Gamma(1/5) terms; and a larger (10, 256, 400)) with this tree's sampler and with the
``noise.py`` of a baseline revision (``--baseline``, loaded from git), and Normal noise of the same shape. Process CPU
time (``time.process_time``), interleaved repetition by repetition; minimum over repetitions (median in brackets).

    python benchmarks/bench_selection.py --threads 1 --reps 7 [--baseline REV] [--device cuda]
        [--parts selection sum_of_gamma] [--sog-shapes 10x32x40 10x256x400]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from colayers import ArgmaxOneHot, TopKSubset
from colayers.perturb import Normal, SumOfGamma

ROOT = Path(__file__).resolve().parents[1]


def sort_top_k(theta: torch.Tensor, k: int) -> torch.Tensor:
    """The former algorithm of both oracles: stable sort of -theta, the first k indices."""
    idx = torch.sort(-theta, dim=-1, stable=True).indices[:, :k]
    return torch.zeros_like(theta).scatter_(-1, idx, 1.0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _clock(device: torch.device) -> float:
    return time.perf_counter() if device.type == "cuda" else time.process_time()  # GPU work is not process time


def interleaved(fns: dict, reps: int, inner: int, device: torch.device) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():
        fn()
    for _ in range(reps):
        for name, fn in fns.items():
            _sync(device)
            t0 = _clock(device)
            for _ in range(inner):
                fn()
            _sync(device)
            times[name].append((_clock(device) - t0) / inner)
    return times


def _fmt(ts: list[float]) -> str:
    return f"{min(ts) * 1e3:9.3f} [{statistics.median(ts) * 1e3:9.3f}]"


def selection(args, device: torch.device) -> None:
    print("selection: ms per call, min [median]; speed-up = min sort / min selection")
    print(f"{'oracle':24s} {'B':>4s} {'n':>6s} {'sort ms':>21s} {'selection ms':>21s} {'speed-up':>8s}  same")
    gen = torch.Generator().manual_seed(0)
    for batch in args.batch:
        for n in args.n:
            theta = torch.randn(batch, n, generator=gen).to(device)
            tied = theta.mul(2).round()
            inner = max(1, int(args.work / (batch * n)))
            for k in sorted({1, max(2, n // 100), n // 10}):
                oracle = ArgmaxOneHot() if k == 1 else TopKSubset(k)
                same = all(torch.equal(oracle.solve(t), sort_top_k(t, k)) for t in (theta, tied))
                fns = {"sort": lambda k=k, t=theta: sort_top_k(t, k), "select": lambda o=oracle, t=theta: o.solve(t)}
                ts = interleaved(fns, args.reps, inner, device)
                ratio = min(ts["sort"]) / min(ts["select"])
                print(f"{oracle!r:24s} {batch:4d} {n:6d} {_fmt(ts['sort'])} {_fmt(ts['select'])} {ratio:7.1f}×  "
                      f"{'yes' if same else 'NO'}")


def _baseline_noise(rev: str):
    text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:colayers/perturb/noise.py"], check=True,
                          capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "baseline_noise.py"
    path.write_text(text.replace("from .._validation import", "from colayers._validation import"))
    spec = importlib.util.spec_from_file_location("baseline_noise", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sum_of_gamma(args, device: torch.device) -> None:
    new, normal = SumOfGamma(k=5, terms=10), Normal()
    old = _baseline_noise(args.baseline).SumOfGamma(k=5, terms=10) if args.baseline else None
    for shape in args.sog_shapes:
        entries = shape[0] * shape[1] * shape[2]
        gen_new = torch.Generator(device=device).manual_seed(0)
        gen_old = torch.Generator(device=device).manual_seed(0)
        fns = {"this tree": lambda s=shape, g=gen_new: new.sample(s, generator=g, device=device)}
        if old is not None:
            fns[f"baseline {args.baseline}"] = lambda s=shape, g=gen_old: old.sample(s, generator=g, device=device)
        fns["Normal"] = lambda s=shape, g=gen_new: normal.sample(s, generator=g, device=device)
        ts = interleaved(fns, args.reps, max(1, int(256_000 / (10 * entries))), device)
        print(f"\nSumOfGamma(k=5, terms=10).sample{shape} ({10 * entries:,} Gamma terms): ms per call, min [median]")
        base = min(ts["this tree"])
        for name, t in ts.items():
            print(f"{name:24s} {_fmt(t)}   {name} / this tree: {min(t) / base:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--work", type=float, default=2e5, help="scores per timing (sets the inner loop)")
    parser.add_argument("--baseline", default=None, help="git revision whose noise.py is timed beside this tree's")
    parser.add_argument("--device", default="cpu")
    parts = ["selection", "sum_of_gamma"]
    parser.add_argument("--parts", nargs="+", default=parts, choices=parts)
    parser.add_argument("--sog-shapes", type=lambda text: tuple(int(v) for v in text.split("x")), nargs="+",
                        default=[(10, 32, 40), (10, 256, 400)], help="noise shapes S x B x n for the sampler")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"threads={args.threads} device={device} torch={torch.__version__} python={sys.version.split()[0]}")
    if "selection" in args.parts:
        selection(args, device)
    if "sum_of_gamma" in args.parts:
        sum_of_gamma(args, device)


if __name__ == "__main__":
    main()
