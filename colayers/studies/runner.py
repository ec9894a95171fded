r"""The study runner: train every (problem, method, seed) trial, evaluate after each epoch, log JSON lines.

A *trial* is one problem × one method × one seed under the study's training settings. It

1. builds the problem's data from the seed (:func:`colayers.studies.problems.make_problem`), the default
   model and the method's objective, with the global RNG forked and seeded by the trial seed (and restored
   afterwards), and the layers' own generators seeded from it too — so a trial's results depend on its
   seed only, not on which process runs it or in which order;
2. trains with Adam on mini-batches (batch order from a generator seeded by the trial seed);
3. after every epoch evaluates on the held-out split — normalized regret, exact match (share of instances
   whose decoded solution has optimal cost), Hamming distance to the optimal solution, cost ratio — and
   appends one JSON line to ``results.jsonl``.

Every line also carries the cumulative training time (``train_time_s``: optimisation steps only), the
total trial time (``wall_time_s``: data generation, model building, training and evaluation), and the
oracle calls and oracle instances solved in training (:class:`CountingOracle`; evaluation calls are not
counted).

**Atomic append.** A line is encoded in full and handed to one ``os.write`` on a file opened with
``O_APPEND``, then ``fsync``-ed: a crash leaves either the whole line or (at worst) a truncated last line,
which readers ignore. Several processes may append to the same file (POSIX ``O_APPEND`` semantics on a
local file system).

**Resume.** Re-running a study in the same directory reads ``results.jsonl`` first. A trial is identified
by ``(problem, method label, seed, settings hash)``, the hash covering every setting that changes its
results (problem and method parameters, epochs, batch size, learning rates). Complete trials (one line
for every epoch) are skipped; the lines of incomplete trials are removed (the file is rewritten to a
temporary file and swapped in with ``os.replace``) and those trials restart from scratch. No trial is
lost or duplicated; a killed run loses at most the epochs of the trials it was running.

**Parallelism.** ``workers > 1`` runs trials on a process pool; any :class:`concurrent.futures.Executor`
can be passed instead (for instance ``dask.distributed.Client(...).get_executor()``, which needs the
output directory on a file system the workers share). Workers append their own lines.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import multiprocessing
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..metrics import cost_ratio, exact_match, hamming_distance, normalized_regret
from ..oracles.counting import CountingOracle
from .config import MethodSpec, ProblemSpec, StudyConfig
from .methods import make_method

__all__ = [
    "CountingOracle",
    "TrialSpec",
    "run_trial",
    "run_study",
    "append_jsonl",
    "read_results",
    "complete_trials",
    "RESULTS_FILE",
]

RESULTS_FILE = "results.jsonl"
METRICS = ("normalized_regret", "exact_match", "hamming", "cost_ratio")


# ----------------------------------------------------------------------------------------------------------
# JSON lines


def append_jsonl(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append ``record`` as one JSON line, atomically: one ``os.write`` with ``O_APPEND``, then ``fsync``.

    Example:
        >>> import tempfile, os
        >>> d = tempfile.mkdtemp()
        >>> append_jsonl(os.path.join(d, "r.jsonl"), {"a": 1})
        >>> read_results(os.path.join(d, "r.jsonl"))
        [{'a': 1}]
    """
    data = (json.dumps(record, sort_keys=True, allow_nan=True) + "\n").encode()
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        written = os.write(fd, data)
        while written < len(data):  # a short write (rare; e.g. a signal): finish the line
            written += os.write(fd, data[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse_lines(path: Path) -> tuple[list[dict[str, Any]], int]:
    """Parsed records and the number of malformed lines (truncated by a crash) that were skipped."""
    if not path.exists():
        return [], 0
    records, bad = [], 0
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    # the last element is b"" when the file ends with a newline; otherwise it is a truncated line
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        if i == len(lines) - 1:  # no trailing newline: the write never finished
            bad += 1
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad += 1
            continue
        if isinstance(rec, dict):
            records.append(rec)
        else:
            bad += 1
    return records, bad


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All well-formed records of a JSON-lines results file (a truncated last line is ignored)."""
    return _parse_lines(Path(path))[0]


def _key(rec: dict[str, Any]) -> tuple:
    return (rec.get("problem"), rec.get("method"), rec.get("seed"), rec.get("settings"))


def complete_trials(records: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Trials with one record for each epoch ``1..epochs`` (keyed by problem, method label, seed, settings).

    The value lists the trial's records in epoch order (the first record of an epoch wins if any repeats).
    """
    groups: dict[tuple, dict[int, dict[str, Any]]] = {}
    for rec in records:
        if "epoch" not in rec or "epochs" not in rec:
            continue
        groups.setdefault(_key(rec), {}).setdefault(int(rec["epoch"]), rec)
    out = {}
    for key, by_epoch in groups.items():
        epochs = int(next(iter(by_epoch.values()))["epochs"])
        if set(by_epoch) == set(range(1, epochs + 1)):
            out[key] = [by_epoch[e] for e in range(1, epochs + 1)]
    return out


def _prune_incomplete(path: Path, keys: set[tuple]) -> set[tuple]:
    """Drop lines of incomplete trials among ``keys`` (and malformed lines); return the complete keys."""
    records, bad = _parse_lines(path)
    complete = complete_trials(records)
    done = {k for k in keys if k in complete}
    keep, dropped = [], bad
    seen: set[tuple] = set()
    for rec in records:
        k = _key(rec)
        if k in keys and k not in done:
            dropped += 1
            continue
        if k in done:  # drop exact repeats of an epoch of a complete trial
            ek = (*k, rec.get("epoch"))
            if ek in seen:
                dropped += 1
                continue
            seen.add(ek)
        keep.append(rec)
    if dropped:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            for rec in keep:
                f.write(json.dumps(rec, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return done


# ----------------------------------------------------------------------------------------------------------
# one trial


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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple:
        return (self.problem.name, self.method.label, self.seed, self.settings)

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
def _evaluate(model, objective, problem, oracle: CountingOracle, chunk: int = 256) -> dict[str, float]:
    was_training = model.training
    model.eval()
    thetas = [model(problem.x_test[i : i + chunk]) for i in range(0, problem.x_test.shape[0], chunk)]
    theta_hat = torch.cat(thetas)
    with oracle.paused():
        y_hat = objective.predict(theta_hat)
    model.train(was_training)
    inner = oracle.oracle
    th, yt = problem.theta_test, problem.y_test
    return {
        "normalized_regret": float(normalized_regret(inner, th, y_hat, yt)),
        "exact_match": float(exact_match(inner, th, y_hat, yt).float().mean()),
        "hamming": float(hamming_distance(y_hat, yt, problem.event_ndim).mean()),
        "cost_ratio": float(cost_ratio(inner, th, y_hat, yt).mean()),
    }


def iter_trial(spec: TrialSpec) -> Iterator[dict[str, Any]]:
    """Run one trial, yielding its record after each epoch (see the module docstring)."""
    t_start = time.perf_counter()
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
            oracle = CountingOracle(problem.oracle)
            objective = make_method(
                spec.method.name, oracle, problem.event_ndim, seed=spec.seed, **spec.method.params
            ).to(device)
            model = objective.wrap_model(problem.make_model(), problem).to(device)
        params = list(model.parameters()) + [p for p in objective.parameters() if p.requires_grad]
        lr = float(spec.method.params.get("lr", spec.lr))
        optimizer = torch.optim.Adam(params, lr=lr, weight_decay=spec.weight_decay)
        schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(spec.lr_milestones), gamma=spec.lr_decay)
        order = torch.Generator().manual_seed(spec.seed)
        n = problem.x_train.shape[0]
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
            metrics = _evaluate(model, objective, problem, oracle)
            yield {
                "study": spec.study,
                "problem": spec.problem.name,
                "method": spec.method.label,
                "method_name": spec.method.name,
                "seed": spec.seed,
                "settings": spec.settings,
                "epoch": epoch,
                "epochs": spec.epochs,
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


# ----------------------------------------------------------------------------------------------------------
# a study


def trial_specs(config: StudyConfig) -> list[TrialSpec]:
    """The study's trials, ordered problem, seed, method (so consecutive trials share generated data)."""
    specs = []
    for prob in config.problems:
        for seed in config.seeds:
            for meth in config.methods:
                specs.append(
                    TrialSpec(
                        problem=prob,
                        method=meth,
                        seed=int(seed),
                        epochs=config.epochs,
                        batch_size=config.batch_size,
                        lr=config.lr,
                        weight_decay=config.weight_decay,
                        lr_milestones=list(config.lr_milestones),
                        lr_decay=config.lr_decay,
                        device=config.device,
                        threads=config.threads,
                        study=config.name,
                        settings=config.settings_hash(prob, meth),
                    )
                )
    return specs


def _progress(progress: bool, **kw):
    if not progress:
        return contextlib.nullcontext(None)
    from tqdm.auto import tqdm

    return tqdm(**kw)


def run_study(
    config: StudyConfig,
    *,
    executor: concurrent.futures.Executor | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run (or resume) a study; return the records of all its trials, in trial order.

    The configuration is validated and every problem is generated once (first seed) before any training,
    so a bad field fails fast with a message naming it.

    Args:
        config: the study (:class:`~colayers.studies.config.StudyConfig`); results go to
            ``config.output/results.jsonl``, the configuration to ``config.output/config.json``.
        executor: run trials on this executor (process pool, dask's ``Client.get_executor()``...). If
            ``None`` and ``config.workers > 1`` a process pool of that size is used; otherwise trials run
            in this process.
        progress: show tqdm progress bars (trials, and epochs when serial).

    Returns:
        the per-epoch records of every trial of this study (complete trials only).
    """
    config.validate()
    for i, prob in enumerate(config.problems):  # fail before training on bad generator parameters
        try:
            _get_problem(prob, int(config.seeds[0]), config.device)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"problems[{i}] ({prob.name!r}) has a bad parameter: {exc}") from exc
    out = Path(config.output)
    path = out / RESULTS_FILE
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2, default=str) + "\n")
    specs = trial_specs(config)
    keys = {s.key for s in specs}
    done = _prune_incomplete(path, keys)
    todo = [s for s in specs if s.key not in done]

    own_pool = None
    if executor is None and config.workers > 1 and len(todo) > 1:
        own_pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=config.workers, mp_context=multiprocessing.get_context("spawn")
        )
        executor = own_pool
    try:
        with _progress(progress, total=len(specs), initial=len(specs) - len(todo), desc="trials", unit="trial") as bar:
            if executor is None:
                for spec in todo:
                    if bar is not None:
                        bar.set_postfix_str(spec.label)
                    with _progress(progress, total=spec.epochs, desc="  epochs", leave=False, unit="ep") as ebar:
                        for rec in iter_trial(spec):
                            append_jsonl(path, rec)
                            if ebar is not None:
                                ebar.set_postfix(regret=f"{rec['normalized_regret']:.4f}")
                                ebar.update()
                    if bar is not None:
                        bar.update()
            else:
                futures = {executor.submit(run_trial, spec, str(path)): spec for spec in todo}
                for fut in concurrent.futures.as_completed(futures):
                    fut.result()  # re-raise a failed trial here
                    if bar is not None:
                        bar.set_postfix_str(futures[fut].label)
                        bar.update()
    finally:
        if own_pool is not None:
            own_pool.shutdown(cancel_futures=True)
    complete = complete_trials(read_results(path))
    return [rec for s in specs if s.key in complete for rec in complete[s.key]]
