r"""One trial of a study: build its data, model and method from the seed, train, evaluate after each epoch.

A *trial* is one problem × one method × one seed under the study's training settings (:class:`TrialSpec`).
:func:`iter_trial`

1. builds the problem's data from the seed (:func:`colayers.studies.problems.make_problem`), the default
   model and the method's objective, with the global RNG forked and seeded by the trial seed (and restored
   afterwards), and the layers' own generators seeded from it too — so a trial's results depend on its
   seed only, not on which process runs it or in which order;
2. trains with the configured optimizer (Adam by default) on mini-batches (batch order from a generator
   seeded by the trial seed);
3. after every epoch evaluates (:func:`evaluate`) on the validation split (``val_*`` columns: the curves,
   and the epoch selection with ``select = "best"``) and on the test split (the final numbers) — normalized
   regret, exact match, cost ratio, and the Hamming distance for 0/1 solutions or the rank distance for
   rankings (:mod:`colayers.metrics`, each averaged over the split) — and yields one record.

Every record also carries the cumulative training time (``train_time_s``: optimisation steps only), the
total trial time (``wall_time_s``), the oracle calls and oracle instances solved in training
(:class:`~colayers.oracles.CountingOracle`; evaluation calls are not counted), and its identity: ``trial``
(problem, method label, seed and the digest of the trial's effective settings), ``epoch`` and ``attempt`` (a
random id drawn each time the trial starts). Writing the records is the runner's part
(:mod:`colayers.studies.runner`).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from ..metrics import cost_ratio, exact_match, hamming_distance, normalized_regret, rank_distance
from ..oracles.counting import CountingOracle
from . import registry
from .config import MethodSpec, ProblemSpec
from .methods import make_method
from .results import append_jsonl

__all__ = ["TrialSpec", "iter_trial", "run_trial", "trial_oracles", "evaluate"]


@dataclass
class TrialSpec:
    """Everything one trial needs (picklable: sent to worker processes)."""

    problem: ProblemSpec
    method: MethodSpec
    seed: int
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    lr_milestones: list[int] = field(default_factory=list)
    lr_decay: float = 0.1
    device: str = "cpu"
    threads: int = 1
    study: str = "study"
    settings: str = ""
    optimizer: str = "Adam"
    optimizer_params: dict[str, Any] = field(default_factory=dict)
    scheduler: str = "MultiStepLR"
    scheduler_params: dict[str, Any] = field(default_factory=dict)
    select: str = "last"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return (self.problem.name, self.method.label, self.seed, self.settings)

    @property
    def trial_id(self) -> str:
        return f"{self.problem.name}/{self.method.label}/{self.seed}/{self.settings}"

    @property
    def label(self) -> str:
        return f"{self.problem.name} / {self.method.label} / seed {self.seed}"


_PROBLEM_CACHE: dict[tuple, Any] = {}
_INIT_LOCK = threading.RLock()


def _get_problem(spec: ProblemSpec, seed: int, device: str):
    from .problems import make_problem

    key = (spec.name, json.dumps(spec.params, sort_keys=True, default=str), seed, str(device))
    if key not in _PROBLEM_CACHE:
        while len(_PROBLEM_CACHE) >= 2:  # keep memory bounded (trials are ordered problem, seed, method)
            _PROBLEM_CACHE.pop(next(iter(_PROBLEM_CACHE)))
        _PROBLEM_CACHE[key] = make_problem(spec.name, seed=seed, device=device, **spec.params)
    return _PROBLEM_CACHE[key]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def evaluate(model, objective, x, theta, y, oracle: CountingOracle, chunk: int = 256) -> dict[str, float]:
    """The test (or validation) columns of a record: the model's predictions on ``x`` against the true scores
    ``theta`` and optimal solutions ``y``, each metric averaged over the split (``reduction="mean"``).

    ``normalized_regret`` is PyEPO's ratio of sums over the split, Σ regret / Σ |optimal objective|; the
    Hamming distance is reported for 0/1 solutions, the rank distance for rank vectors, neither for other
    solutions (continuous allocations). The oracle's
    counter is paused: evaluation calls are not counted.
    """
    was_training = model.training
    model.eval()
    theta_hat = torch.cat([model(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])
    with oracle.paused():
        y_hat = objective.predict(theta_hat)
    model.train(was_training)
    inner = oracle.oracle
    mean = dict(oracle=inner, reduction="mean")
    out = {
        "normalized_regret": float(normalized_regret(y_hat, theta, y, **mean)),
        "exact_match": float(exact_match(y_hat, theta, y, **mean)),
        "cost_ratio": float(cost_ratio(y_hat, theta, y, **mean)),
    }
    binary = bool(((y == 0) | (y == 1)).all()) and bool(((y_hat == 0) | (y_hat == 1)).all())
    if binary:  # 0/1 solutions: the share of entries that differ
        out["hamming"] = float(hamming_distance(y_hat, y, **mean))
    elif _rank_vectors(y) and _rank_vectors(y_hat):  # the normalized Spearman footrule
        out["rank_distance"] = float(rank_distance(y_hat, y, **mean))
    return out  # continuous solutions (a portfolio's allocations): neither


def _rank_vectors(y: torch.Tensor) -> bool:
    """Whether every row of ``y`` (along the last dimension) is a permutation of 1..m."""
    ranks = torch.arange(1, y.shape[-1] + 1, device=y.device, dtype=y.dtype)
    return bool((y.sort(dim=-1).values == ranks).all())


def trial_oracles(problem) -> tuple[CountingOracle, CountingOracle]:
    """The counting evaluation oracle of a trial and its training oracle (``problem.training_oracle`` if set),
    both counted on the first one's counter."""
    counter = CountingOracle(problem.oracle)
    train = getattr(problem, "training_oracle", None)
    return counter, (counter if train is None else CountingOracle(train, counter=counter))


def _optimizer(spec: TrialSpec, params, lr: float):
    cls = getattr(torch.optim, spec.optimizer)
    return cls(params, lr=lr, weight_decay=spec.weight_decay, **spec.optimizer_params)


def _scheduler(spec: TrialSpec, optimizer):
    if spec.scheduler == "MultiStepLR" and not spec.scheduler_params:
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, list(spec.lr_milestones), gamma=spec.lr_decay)
    return getattr(torch.optim.lr_scheduler, spec.scheduler)(optimizer, **spec.scheduler_params)


def iter_trial(spec: TrialSpec) -> Iterator[dict[str, Any]]:
    """Run one trial, yielding its record after each epoch (see the module docstring)."""
    t_start = time.perf_counter()
    attempt = uuid.uuid4().hex[:12]
    device = torch.device(spec.device)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    old_threads = torch.get_num_threads()
    torch.set_num_threads(spec.threads)
    try:
        # Model initialisation draws from the global RNG: fork it, seed it with the trial seed, restore it after.
        # The lock keeps concurrent trials on a thread executor from seeding each other's draws. Training then
        # uses only explicit generators (batch order below, the layers' own seeded generators).
        with _INIT_LOCK, torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(spec.seed)
            problem = _get_problem(spec.problem, spec.seed, spec.device)
            oracle, training_oracle = trial_oracles(problem)
            objective = make_method(
                spec.method.name, oracle, problem.event_ndim, seed=spec.seed, training_oracle=training_oracle,
                problem=problem, **spec.method.params,
            ).to(device)  # fmt: skip
            model = objective.wrap_model(problem.make_model(), problem).to(device)
        params = list(model.parameters()) + [p for p in objective.parameters() if p.requires_grad]
        lr = float(spec.method.params.get("lr", registry.TUNED.get((spec.problem.name, spec.method.name), {}).get(
            "lr", spec.lr)))
        optimizer = _optimizer(spec, params, lr)
        schedule = _scheduler(spec, optimizer)
        order = torch.Generator().manual_seed(spec.seed)
        n = problem.x_train.shape[0]
        has_val = getattr(problem, "x_val", None) is not None
        train_time = 0.0
        for epoch in range(1, spec.epochs + 1):
            model.train()
            _sync(device)
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=order).to(device)
            total, count = 0.0, 0
            for i in range(0, n, spec.batch_size):
                idx = perm[i : i + spec.batch_size]
                theta = model(problem.x_train[idx])
                loss = objective.loss(theta, problem.theta_train[idx], problem.y_train[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += float(loss.detach()) * idx.shape[0]
                count += idx.shape[0]
            schedule.step()
            _sync(device)
            train_time += time.perf_counter() - t0
            metrics = evaluate(model, objective, problem.x_test, problem.theta_test, problem.y_test, oracle)
            if has_val:
                val = evaluate(model, objective, problem.x_val, problem.theta_val, problem.y_val, oracle)
                metrics.update({f"val_{k}": v for k, v in val.items()})
            yield {
                "study": spec.study,
                "trial": spec.trial_id,
                "attempt": attempt,
                "problem": spec.problem.name,
                "method": spec.method.label,
                "method_name": spec.method.name,
                "seed": spec.seed,
                "settings": spec.settings,
                "epoch": epoch,
                "epochs": spec.epochs,
                "select": spec.select,
                **metrics,
                "train_loss": total / max(count, 1),
                "train_time_s": train_time,
                "wall_time_s": time.perf_counter() - t_start,
                "oracle_calls": oracle.calls,
                "oracle_instances": oracle.instances,
                "device": str(device),
            }
    finally:
        torch.set_num_threads(old_threads)


def run_trial(spec: TrialSpec, results_path: str | None = None) -> list[dict[str, Any]]:
    """Run one trial to the end, appending each epoch's record to ``results_path`` (if given); return them."""
    out = []
    for rec in iter_trial(spec):
        if results_path is not None:
            append_jsonl(results_path, rec)
        out.append(rec)
    return out
