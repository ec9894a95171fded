"""Record or check the training trajectory of the default study's methods, bit for bit.

Trains each method of the default study (5x5 shortest path, n = 1000, deg 4, noise 0.5, seed 0) for a few
epochs and writes, per epoch, the training loss and the validation metrics as exact float hex strings. and a
SHA-256 of the final model parameters. ``--check FILE`` compares against a recorded file and exits 1 on any
difference.

    python benchmarks/trajectory_check.py --epochs 2 --out benchmarks/trajectory_main.json
    python benchmarks/trajectory_check.py --epochs 2 --check benchmarks/trajectory_main.json
"""

from __future__ import annotations

import argparse
import json
import sys

import torch

from colayers.studies.config import MethodSpec, ProblemSpec, preset
from colayers.studies.runner import TrialSpec, iter_trial


def run(methods: list[str], epochs: int, n: int) -> dict:
    cfg = preset("default")
    out = {}
    for m in cfg.methods:
        if m.label not in methods:
            continue
        params = dict(cfg.problems[0].params, n=n, deg=4)  # the recorded setting (the default study has deg 6)
        spec = TrialSpec(
            problem=ProblemSpec(cfg.problems[0].name, params),
            method=MethodSpec(m.name, dict(m.params), m.label),
            seed=0,
            epochs=epochs,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
        )
        recs = []
        for rec in iter_trial(spec):
            recs.append({k: float(rec[k]).hex() for k in ("train_loss", "normalized_regret", "hamming")})
        out[m.label] = recs
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="spo+,blackbox,imle,aimle,identity,fy")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--out")
    ap.add_argument("--check")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    got = run(a.methods.split(","), a.epochs, a.n)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(got, f, indent=1, sort_keys=True)
    if a.check:
        with open(a.check) as f:
            ref = json.load(f)
        bad = [k for k in got if ref.get(k) != got[k]]
        for k in got:
            print(f"{k:10s} {'same' if k not in bad else 'DIFFERENT'}")
        return 1 if bad else 0
    print(json.dumps(got, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
