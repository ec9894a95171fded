r"""The study runner: run every (problem, method, seed) trial of a study, log JSON lines, resume.

:func:`run_study` validates the configuration, takes the output directory's lock, skips the trials that are
complete, runs the others — one after the other in this process, in worker processes or on an executor
(:mod:`colayers.studies.workers`) — and appends each epoch's record of each trial
(:func:`colayers.studies.trial.iter_trial`: training, then the test and validation metrics of
:mod:`colayers.metrics`) as one JSON line to ``results.jsonl``.

**Exactly once.** Only the parent process writes ``results.jsonl``, while it holds an OS lock on the output
directory (:func:`study_lock`: a second study on the same directory refuses at once, naming the holder's
PID; a lock left by a dead process is free, the OS released it). Worker processes send their records to the
parent through a pipe; remote executors (dask) return a trial's records when it completes, so a retried task
writes nothing twice. A line is encoded in full and handed to one ``os.write`` on a file opened with
``O_APPEND``, then ``fsync``-ed: a crash leaves either the whole line or a torn last line.

**Resume.** Re-running a study in the same directory reads ``results.jsonl`` first. A trial is complete when
one of its attempts has a line for every epoch; readers keep that attempt's lines, one per (trial, epoch),
and ignore other attempts. The lines of incomplete trials, of other attempts and malformed lines (reported
with ``file:line``) are removed (the file is rewritten to a temporary file and swapped in with
``os.replace``) and those trials restart from scratch. A killed run loses at most the epochs of the trials it
was running.

**Interruptions.** Ctrl-C stops every trial at once and raises :class:`StudyInterrupted`; a failed trial or
a dead worker raises :class:`StudyError` naming the trial (see :mod:`colayers.studies.workers`).

**Time limits.** A trial gets ``config.trial_timeout`` seconds; past it, it is stopped (its worker process
killed and replaced, or ``SIGALRM`` in this process), recorded with the reason in ``failures.jsonl``, and the
other trials go on; :class:`StudyError` names the failed trials at the end and a rerun retries them. Every
``status_every`` seconds a line through ``log`` (stderr by default) names the trials running, their phase and
for how long.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import math
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from . import registry
from .config import StudyConfig
from .results import (
    RESULTS_FILE,
    _check_results_path,
    _chosen_attempts,
    _key,
    append_jsonl,
    complete_trials,
    read_results,
    scan_results,
)
from .tensorboard import open_curves
from .trial import TrialSpec, _get_problem, iter_trial
from .workers import Hooks, StudyError, run_executor, run_pool

__all__ = [
    "TrialSpec",
    "iter_trial",
    "trial_specs",
    "run_study",
    "append_jsonl",
    "read_results",
    "scan_results",
    "complete_trials",
    "study_lock",
    "StudyError",
    "StudyInterrupted",
    "StudyLocked",
    "RESULTS_FILE",
    "FAILURES_FILE",
    "LOCK_FILE",
]

LOCK_FILE = ".colayers.lock"
#: One JSON line per trial that ran past its time limit (kept as history; a later complete run supersedes it).
FAILURES_FILE = "failures.jsonl"


class StudyLocked(ValueError):
    """Another study holds the output directory's lock; the message names its PID."""


class StudyInterrupted(KeyboardInterrupt):
    """The study was interrupted (Ctrl-C); ``complete`` of ``total`` trials are complete and saved."""

    def __init__(self, complete: int, total: int) -> None:
        super().__init__(complete, total)
        self.complete, self.total = complete, total

    def __str__(self) -> str:
        return (
            f"interrupted: {self.complete} of {self.total} trials complete; "
            "rerun the same command to resume"
        )


# ----------------------------------------------------------------------------------------------------------
# JSON lines


def _prune(path: Path, keys: set[tuple], log: Callable[[str], None]) -> tuple[set[tuple], int]:
    """Keep one row per (trial, epoch) of complete trials, drop the rest for ``keys``; (done keys, partial)."""
    rows, bad = scan_results(path)
    for msg in bad:
        log(f"colayers: {msg}; its trial will be re-run")
    chosen = _chosen_attempts(rows)
    done = {k for k in keys if k in chosen}
    partial = {_key(r) for r in rows if _key(r) in keys and _key(r) not in done}
    keep: list[dict[str, Any]] = []
    seen: set[tuple] = set()
    for rec in rows:
        k = _key(rec)
        if k in chosen:
            ek = (k, rec.get("epoch"))
            if rec.get("attempt") != chosen[k][0] or ek in seen:
                continue  # another attempt of a complete trial, or a repeated epoch
            seen.add(ek)
        elif k in keys:
            continue  # an incomplete trial of this study: re-run from scratch
        keep.append(rec)
    if bad or len(keep) != len(rows):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".results-", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            for rec in keep:
                f.write(json.dumps(rec, sort_keys=True, allow_nan=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return done, len(partial)


# ----------------------------------------------------------------------------------------------------------
# the output directory's lock


@contextlib.contextmanager
def study_lock(directory: str | os.PathLike, log: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold an exclusive OS lock (``fcntl.flock``) on ``directory/.colayers.lock`` while the block runs.

    The lock file holds the holder's PID. A second holder fails at once with :class:`StudyLocked` naming that
    PID. The OS releases the lock when its holder dies, however it dies: a lock file left behind by a dead
    process is taken over (and said so through ``log``). Where ``fcntl`` is missing (Windows) no lock is taken.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    path = Path(directory) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            raise StudyLocked(
                f"output directory {str(directory)!r} is in use by another study (pid {holder}); wait for it to "
                "end or choose another output directory"
            ) from None
        previous = os.pread(fd, 64, 0).decode(errors="replace").strip()
        if previous and log is not None:
            log(f"colayers: took over the lock of {str(directory)!r} left by pid {previous}, which no longer holds it")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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
                        method=config.effective_method(prob, meth),
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
                        optimizer=config.optimizer,
                        optimizer_params=dict(config.optimizer_params),
                        scheduler=config.scheduler,
                        scheduler_params=dict(config.scheduler_params),
                        select=config.select,
                    )
                )
    return specs


def _progress(progress: bool, **kw):
    if not progress:
        return contextlib.nullcontext(None)
    from tqdm.auto import tqdm

    return tqdm(**kw)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------------
# time limits and the status line


class _Status:
    """The trials running now (with their phase and since when), and a thread that says so every ``every``
    seconds through ``emit``: ``colayers: 3 of 12 trials complete; running: <trial> (running, epoch 2 of 20
    done, 41 s); ...``."""

    def __init__(self, emit: Callable[[str], None], every: float, total: int, finished: list[int]) -> None:
        self.emit, self.every, self.total, self.finished = emit, every, total, finished
        self.running: dict[tuple, list] = {}  # key -> [spec, phase, since, last epoch]
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None

    def phase(self, spec: TrialSpec, text: str) -> None:
        with self.lock:
            self.running[spec.key] = [spec, text, time.monotonic(), self.running.get(spec.key, [0, 0, 0, 0])[3]]

    def epoch(self, rec: dict[str, Any]) -> None:
        with self.lock:
            if _key(rec) in self.running:
                self.running[_key(rec)][3] = rec.get("epoch", 0)

    def end(self, spec: TrialSpec) -> None:
        with self.lock:
            self.running.pop(spec.key, None)

    def line(self) -> str:
        now = time.monotonic()
        with self.lock:
            items = [list(v) for v in self.running.values()]
        parts = [
            f"{spec.label} ({text}{f', epoch {ep} of {spec.epochs} done' if ep else ''}, {now - since:.0f} s)"
            for spec, text, since, ep in items
        ]
        return f"colayers: {self.finished[0]} of {self.total} trials complete; running: {'; '.join(parts) or 'none'}"

    def __enter__(self) -> _Status:
        if 0 < self.every < math.inf:
            self.thread = threading.Thread(target=self._loop, name="colayers-status", daemon=True)
            self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.stopped.wait(self.every):
            self.emit(self.line())

    def __exit__(self, *exc: Any) -> None:
        self.stopped.set()
        if self.thread is not None:
            self.thread.join()


class _TrialTimeout(BaseException):
    """Raised in the main thread when an in-process trial runs past its limit (a BaseException, so that a
    method's ``except Exception`` cannot swallow it)."""


@contextlib.contextmanager
def _time_limit(seconds: float) -> Iterator[bool]:
    """Raise :class:`_TrialTimeout` in the block after ``seconds`` (``SIGALRM``); yields whether it can: only in
    the main thread of a POSIX process, and only where the trial's code gets back to the interpreter."""
    if not math.isfinite(seconds) or threading.current_thread() is not threading.main_thread() or not hasattr(
            signal, "setitimer"):  # fmt: skip
        yield False
        return

    def alarm(signum, frame):
        raise _TrialTimeout

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield True
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _run_serial(todo: list[TrialSpec], hooks: Hooks, limit: float, progress: bool, log) -> None:
    """The trials one after the other in this process, each within ``limit`` seconds (see :func:`_time_limit`)."""
    for spec in todo:
        hooks.phase(spec, "running")
        last = 0
        try:
            with _time_limit(limit) as limited, _progress(
                    progress, total=spec.epochs, desc="  epochs", leave=False, unit="ep") as eb:  # fmt: skip
                if not limited and math.isfinite(limit) and spec is todo[0]:
                    log("colayers: trial_timeout is not enforced here (in-process trials outside the main thread); "
                        "use workers > 1 for a time limit")
                for rec in iter_trial(spec):
                    hooks.write(rec)
                    last = rec["epoch"]
                    if eb is not None:
                        eb.set_postfix(regret=f"{rec['normalized_regret']:.4f}")
                        eb.update()
        except _TrialTimeout:
            hooks.failed(spec, f"it did not finish within its time limit of {limit:g} s (trial_timeout; epoch "
                               f"{last} of {spec.epochs} was the last complete)")
            continue
        hooks.done(spec)


def _failed_message(failures: list[tuple[TrialSpec, str]], total: int, out: Path) -> str:
    shown = "; ".join(f"{spec.label}: {why}" for spec, why in failures[:3])
    more = f"; and {len(failures) - 3} more" if len(failures) > 3 else ""
    return (
        f"{len(failures)} of {total} trials failed ({shown}{more}; all listed in {out / FAILURES_FILE}); the other "
        "trials are complete and saved: rerun the same command to retry the failed ones (with a longer "
        "trial_timeout, --trial-timeout, if they were just slow)"
    )


# ----------------------------------------------------------------------------------------------------------
# a study


def _check_problems(config: StudyConfig) -> None:
    """Generate every problem once (first seed) before any training, so a bad parameter fails fast."""
    for i, prob in enumerate(config.problems):
        try:
            built = _get_problem(prob, int(config.seeds[0]), config.device)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"problems[{i}] ({prob.name!r}) has a bad parameter: {exc}") from exc
        if config.select == "best" and getattr(built, "x_val", None) is None:
            raise ValueError(f"select = 'best' needs a validation split; problems[{i}] ({prob.name!r}) has none "
                             "(n_val = 0)")


def _registrations(to_workers: bool) -> bytes:
    """The user's problem and method registrations, pickled to carry to worker processes (``b""``: none needed)."""
    if not to_workers:
        return b""
    import pickle

    entries = registry.user_entries()
    registry.check_picklable(entries)
    return pickle.dumps(entries)


def run_study(
    config: StudyConfig,
    *,
    executor: concurrent.futures.Executor | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    status_every: float = 60.0,
) -> list[dict[str, Any]]:
    """Run (or resume) a study; return the records of all its trials, in trial order.

    The configuration is validated, its plugins imported and every problem generated once (first seed)
    before any training, so a bad field fails fast with a message naming it.

    Each trial gets ``config.trial_timeout`` seconds. In worker processes (``config.workers > 1``) a trial past
    it has its worker killed (and replaced); in this process (``workers = 1``) it is interrupted by
    ``SIGALRM`` (main thread only; code that never returns to the interpreter cannot be interrupted there).
    Either way the trial is recorded as failed, with the reason, in ``failures.jsonl``, the other trials go
    on, and :class:`StudyError` is raised at the end; a rerun retries it. On an ``executor`` no limit applies.

    Args:
        config: the study (:class:`~colayers.studies.config.StudyConfig`); results go to
            ``config.output/results.jsonl``, the effective configuration to ``config.output/config.json``.
        executor: run trials on this executor (dask's ``Client.get_executor()``...). If ``None`` and
            ``config.workers > 1``, that many worker processes; otherwise trials run in this process.
        progress: show tqdm progress bars (trials, and epochs when serial).
        log: where one-line messages go (the start summary, skipped malformed lines, failed trials, the status
            line); default stderr (nothing is written to stdout).
        status_every: every this many seconds, a line through ``log`` names the trials running, their phase
            and for how long (``inf``: never).

    With ``config.tensorboard``, each epoch's record is also written for TensorBoard (one writer per trial, in
    this process only; :mod:`colayers.studies.tensorboard`).

    Returns:
        the per-epoch records of every trial of this study (complete trials only).

    Raises:
        ValueError: a bad configuration, a changed setting in an existing study directory, or
            :class:`StudyLocked`; :class:`StudyError`: a trial failed, ran past its time limit, or its worker
            died; :class:`StudyInterrupted`: Ctrl-C (the completed trials are saved).
    """
    log = _stderr if log is None else log
    config.validate()
    _check_problems(config)
    entries_blob = _registrations(executor is not None or config.workers > 1)
    out = Path(config.output)
    path = out / RESULTS_FILE
    _check_results_path(path)
    specs = trial_specs(config)
    failures: list[tuple[TrialSpec, str]] = []
    curves = open_curves(config.tensorboard_dir())  # a no-op without tensorboard; closes its writers on exit
    with study_lock(out, log), curves:
        if config.tune:  # tuned values, read back from config.json or chosen now, are written before any trial
            from .tuning import tune_study

            tune_study(config, log=log)
            specs = trial_specs(config)
        config.write_effective(out)  # refuses changed settings of existing trials (ValueError naming them)
        done, partial = _prune(path, {s.key for s in specs}, log)
        todo = [s for s in specs if s.key not in done]
        log(
            f"colayers study {config.name!r}: {len(specs)} trials: {len(done)} complete (skipped), {partial} "
            f"incomplete (restarted), {len(todo) - partial} new -> {out}"
        )
        finished = [len(done)]
        with _progress(progress, total=len(specs), initial=len(done), desc="trials", unit="trial") as bar:
            emit = log if bar is None or log is not _stderr else (lambda m: bar.write(m, file=sys.stderr))
            status = _Status(emit, status_every, len(specs), finished)

            def write(rec: dict[str, Any]) -> None:
                append_jsonl(path, rec)
                status.epoch(rec)
                curves.write(rec)

            def on_done(spec: TrialSpec) -> None:
                finished[0] += 1
                status.end(spec)
                curves.close(spec.key)
                if bar is not None:
                    bar.set_postfix_str(spec.label)
                    bar.update()

            def on_fail(spec: TrialSpec, why: str) -> None:
                failures.append((spec, why))
                status.end(spec)
                curves.close(spec.key)
                append_jsonl(out / FAILURES_FILE, {
                    "study": spec.study, "trial": spec.trial_id, "problem": spec.problem.name,
                    "method": spec.method.label, "seed": spec.seed, "settings": spec.settings, "reason": why,
                    "trial_timeout_s": config.trial_timeout, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                })  # fmt: skip
                emit(f"colayers: trial {spec.label} failed: {why}; the other trials go on")

            hooks = Hooks(write, on_done, on_fail, status.phase)
            try:
                with status:
                    if executor is not None:
                        if math.isfinite(config.trial_timeout):
                            log("colayers: trial_timeout is not enforced on an executor (it cannot stop a task)")
                        run_executor(executor, todo, hooks, config.plugins, entries_blob)
                    elif config.workers > 1 and todo:
                        run_pool(todo, config.workers, hooks, config.plugins, entries_blob, config.trial_timeout)
                    else:
                        _run_serial(todo, hooks, config.trial_timeout, progress, log)
            except KeyboardInterrupt:
                raise StudyInterrupted(finished[0], len(specs)) from None
    if failures:
        raise StudyError(_failed_message(failures, len(specs), out))
    complete = complete_trials(read_results(path))
    return [rec for s in specs if s.key in complete for rec in complete[s.key]]
