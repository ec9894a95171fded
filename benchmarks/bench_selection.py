"""Top-k / argmax by selection against the stable sort it replaced, and the Sum-of-Gamma sampler, in one run.

Selection: ``TopKSubset(k).solve`` and ``ArgmaxOneHot().solve`` on float32 scores of shape (B, n), against the former
algorithm (stable sort of -theta, first k indices, scattered), which this script keeps. Each output is checked
equal to the former one (random scores, and scores rounded to a few integers: many ties). Sum-of-Gamma: the draws of
one I-MLE step of the 5x5 shortest-path benchmark (``SumOfGamma(k=5, terms=10)``, noise of shape (S=10, B=32, 40
edges): 12,800 entries, 128,000 Gamma(1/5) terms; and a larger (10, 256, 400)) with this tree's sampler and with the
``noise.py`` of a baseline revision (``--baseline``, loaded from git), and Normal noise of the same shape. Process CPU
time (``time.process_time``), interleaved repetition by repetition; minimum over repetitions (median in brackets).

    python benchmarks/bench_selection.py --threads 1 --reps 7 [--baseline REV] [--device cuda]
        [--parts selection sum_of_gamma imle_epoch] [--sog-shapes 10x32x40 10x256x400] [--sog-k 5]
        [--sog-dtypes float32] [--epochs 5]

``imle_epoch`` (with ``--baseline``): training epochs of bench_pyepo.py's I-MLE (S = 10, SumOfGamma(k=5)) with
this tree's sampler and the baseline's, side by side (see :func:`imle_epoch`).
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
    """The baseline revision's ``colayers/perturb/noise.py`` (and its ``_gamma.py`` where it has one), imported as a
    package of their own from a temporary folder."""
    package = Path(tempfile.mkdtemp()) / "baseline_perturb"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("noise.py", "_gamma.py"):
        shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:colayers/perturb/{name}"],
                               capture_output=True, text=True)
        if shown.returncode == 0:
            text = shown.stdout.replace("from .._validation import", "from colayers._validation import")
            (package / name).write_text(text)
    sys.path.insert(0, str(package.parent))
    module = importlib.import_module("baseline_perturb.noise")
    return module


def sum_of_gamma(args, device: torch.device) -> None:
    baseline = _baseline_noise(args.baseline) if args.baseline else None
    for k in args.sog_k:
        for dtype in (getattr(torch, name) for name in args.sog_dtypes):
            new, normal = SumOfGamma(k=k, terms=10), Normal()
            old = baseline.SumOfGamma(k=k, terms=10) if baseline else None
            for shape in args.sog_shapes:
                _time_sampler(args, device, new, old, normal, shape, dtype)


def _time_sampler(args, device, new, old, normal, shape, dtype) -> None:
    entries = shape[0] * shape[1] * shape[2]
    gen_new = torch.Generator(device=device).manual_seed(0)
    gen_old = torch.Generator(device=device).manual_seed(0)
    kw = dict(device=device, dtype=dtype)
    fns = {"this tree": lambda g=gen_new: new.sample(shape, generator=g, **kw)}
    if old is not None:
        fns[f"baseline {args.baseline}"] = lambda g=gen_old: old.sample(shape, generator=g, **kw)
    fns["Normal"] = lambda g=gen_new: normal.sample(shape, generator=g, **kw)
    ts = interleaved(fns, args.reps, max(1, int(256_000 / (10 * entries))), device)
    print(f"\n{new!r}.sample{shape}, {dtype} ({10 * entries:,} Gamma terms): ms per call, min [median]")
    base = min(ts["this tree"])
    for name, t in ts.items():
        print(f"{name:24s} {_fmt(t)}   {name} / this tree: {min(t) / base:.2f}")


def imle_epoch(args) -> None:
    """Training epochs of bench_pyepo.py's I-MLE on the 5x5 shortest path (IMLE(noise=SumOfGamma(k=5), epsilon=1,
    lambda_=10, num_samples=10, output="mean"), loss <c, y>, nn.Linear(5, 40), Adam lr 0.01, batch 32, n = 1000,
    deg 4, noise 0.5, seed 0) with this tree's sampler and with the baseline's (its ``SumOfGamma.sample`` put on the
    layer's noise), each oracle of bench_pyepo.py, side by side epoch by epoch; process CPU time per epoch."""
    from torch import nn

    from colayers import IMLE

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_pyepo

    setup = bench_pyepo.shortest_path_setup(argparse.Namespace(seed=0, n=1000, deg=4, noise=0.5, no_validate=False))
    prob, sign = setup["prob"], setup["sign"]
    x, c = prob.x_train.float(), (sign * prob.theta_train).float()
    old_sample = _baseline_noise(args.baseline).SumOfGamma(k=5, terms=10).sample
    torch.manual_seed(0)
    init = nn.Linear(5, 40).state_dict()
    orders = [torch.randperm(1000, generator=torch.Generator().manual_seed(e)) for e in range(args.epochs)]
    print("\nI-MLE epoch (bench_pyepo.py's, S = 10, SumOfGamma(k=5)): s of process CPU per epoch, min [median]")
    for oracle_name, oracle in setup["oracles"].items():
        runs = {}
        for side in ("this tree", f"baseline {args.baseline}"):
            noise = SumOfGamma(k=5, terms=10)
            if side != "this tree":
                noise.sample = old_sample  # the baseline's sampler on the same layer
            layer = IMLE(oracle, noise=noise, epsilon=1.0, lambda_=10.0, num_samples=10, output="mean", seed=135,
                         validate_args=False)
            model = nn.Linear(5, 40)
            model.load_state_dict(init)
            runs[side] = (model, torch.optim.Adam(model.parameters(), lr=1e-2), layer)
        times = {side: [] for side in runs}
        for order in orders:
            for side, (model, optimizer, layer) in runs.items():
                t0 = time.process_time()
                for i in range(0, 1000, 32):
                    idx = order[i : i + 32]
                    loss = -(layer(sign * model(x[idx])) * sign * c[idx]).sum(1).mean()
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                times[side].append(time.process_time() - t0)
        base = min(times["this tree"])
        for side, t in times.items():
            print(f"{oracle_name:24s} {side:20s} {min(t):7.4f} [{statistics.median(t):7.4f}]   "
                  f"{side} / this tree: {min(t) / base:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--n", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--work", type=float, default=2e5, help="scores per timing (sets the inner loop)")
    parser.add_argument("--baseline", default=None, help="git revision whose noise.py is timed beside this tree's")
    parser.add_argument("--device", default="cpu")
    parts = ["selection", "sum_of_gamma", "imle_epoch"]
    parser.add_argument("--parts", nargs="+", default=parts[:2], choices=parts)
    parser.add_argument("--epochs", type=int, default=5, help="I-MLE epochs per side (imle_epoch, needs --baseline)")
    parser.add_argument("--sog-shapes", type=lambda text: tuple(int(v) for v in text.split("x")), nargs="+",
                        default=[(10, 32, 40), (10, 256, 400)], help="noise shapes S x B x n for the sampler")
    parser.add_argument("--sog-k", type=float, nargs="+", default=[5.0], help="k of the sampler's SumOfGamma(k, 10)")
    parser.add_argument("--sog-dtypes", nargs="+", default=["float32"], help="dtypes of the sampler's draws")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"threads={args.threads} device={device} torch={torch.__version__} python={sys.version.split()[0]}")
    if "selection" in args.parts:
        selection(args, device)
    if "sum_of_gamma" in args.parts:
        sum_of_gamma(args, device)
    if "imle_epoch" in args.parts:
        imle_epoch(args)


if __name__ == "__main__":
    main()
