"""One training epoch of the default study's 5x5 shortest path (n = 1000, deg 4, noise 0.5, batch 32, seed 0)
per method, from the study runner; prints each method's training time (the epoch without evaluation).

    python benchmarks/bench_epoch.py spo+ blackbox imle

Compare two trees of the code with the same script, e.g. ``PYTHONPATH=<tree> python benchmarks/bench_epoch.py``.
"""

from __future__ import annotations

import sys

import torch

from colayers.studies.config import MethodSpec, ProblemSpec, preset
from colayers.studies.runner import TrialSpec, iter_trial


def main(methods: list[str]) -> None:
    torch.set_num_threads(1)
    cfg = preset("default")
    by_label = {m.label: m for m in cfg.methods}
    for label in methods:
        m = by_label[label]
        spec = TrialSpec(
            problem=ProblemSpec(cfg.problems[0].name, dict(cfg.problems[0].params)),
            method=MethodSpec(m.name, dict(m.params), m.label),
            seed=0,
            epochs=1,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
        )
        (rec,) = list(iter_trial(spec))
        print(f"{label} train_time_s {rec['train_time_s']:.4f}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["spo+", "blackbox", "imle"])
