"""Training epochs of the default study's 5x5 shortest path (n = 1000, deg 4, noise 0.5, batch 32, Adam lr 0.01,
seed 0) through the study's own methods, without evaluation: the cost of a training epoch per method.

    python benchmarks/bench_epoch.py --epochs 3 spo+ blackbox imle
    python benchmarks/bench_epoch.py --preset warcraft --epochs 1 imle blackbox fy

prints each method's training time, wall and process CPU time (``time.process_time()``: the figure to compare
on a loaded machine). Under an outside timer (whole process, start-up included) compare two trees of the code
with the same script: ``PYTHONPATH=<tree> python benchmarks/bench_epoch.py ...``.
"""

from __future__ import annotations

import argparse
import time

import torch

from colayers.oracles import CountingOracle
from colayers.studies.config import preset
from colayers.studies.methods import make_method
from colayers.studies.problems import make_problem


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("methods", nargs="*", default=["spo+", "blackbox", "imle"])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--preset", default="default", help="the study preset whose first problem is trained (warcraft...)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    cfg = preset(a.preset)
    by_label = {m.label: m for m in cfg.methods}
    spec = cfg.problems[0]
    torch.manual_seed(0)
    problem = make_problem(spec.name, seed=0, **spec.params)
    for label in a.methods:
        m = by_label[label]
        torch.manual_seed(0)
        oracle = CountingOracle(problem.training_oracle or problem.oracle)
        objective = make_method(m.name, oracle, problem.event_ndim, seed=0, **m.params)
        model = objective.wrap_model(problem.make_model(), problem)
        params = list(model.parameters()) + [p for p in objective.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=cfg.lr)
        order = torch.Generator().manual_seed(0)
        n = problem.x_train.shape[0]
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(a.epochs):
            perm = torch.randperm(n, generator=order)
            for i in range(0, n, cfg.batch_size):
                idx = perm[i : i + cfg.batch_size]
                loss = objective.loss(model(problem.x_train[idx]), problem.theta_train[idx], problem.y_train[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"{label} {a.epochs} epoch(s) {wall:.4f} s, cpu {cpu:.4f} s, oracle calls {oracle.calls}")


if __name__ == "__main__":
    main()
