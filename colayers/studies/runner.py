r"""The study runner: train every (problem, method, seed) trial, evaluate after each epoch, log JSON lines.

A *trial* is one problem × one method × one seed under the study's training settings. It

1. builds the problem's data from the seed (:func:`colayers.studies.problems.make_problem`), the default
   model and the method's objective, with the global RNG forked and seeded by the trial seed (and restored
   afterwards), and the layers' own generators seeded from it too — so a trial's results depend on its
   seed only, not on which process runs it or in which order;
2. trains with the configured optimizer (Adam by default) on mini-batches (batch order from a generator
   seeded by the trial seed);
3. after every epoch evaluates on the validation split (``val_*`` columns: the curves, and the epoch
   selection with ``select = "best"``) and on the test split (the final numbers) — normalized regret, exact
   match, cost ratio, and the Hamming distance for 0/1 solutions or the rank distance for rankings
   (:mod:`colayers.metrics`) — and appends one JSON line to ``results.jsonl``.

Every line also carries the cumulative training time (``train_time_s``: optimisation steps only), the
total trial time (``wall_time_s``), the oracle calls and oracle instances solved in training
(:class:`CountingOracle`; evaluation calls are not counted), and its identity: ``trial`` (problem, method
label, seed and the digest of the trial's effective settings), ``epoch`` and ``attempt`` (a random id drawn
each time the trial starts).

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

**Workers.** ``workers > 1`` runs trials in that many spawned worker processes. Workers end when the parent
dies, however it is killed (they poll their parent and, on Linux, ask the kernel for ``SIGKILL`` on its
death); Ctrl-C stops every trial at once (workers ignore SIGINT; the parent stops them) and raises
:class:`StudyInterrupted`; a worker that dies is reported as a :class:`StudyError` naming its trial. Any
:class:`concurrent.futures.Executor` can be passed instead (for instance
``dask.distributed.Client(...).get_executor()``). Plugin modules and the problems and methods registered in
the parent are carried to every worker (:mod:`colayers.studies.registry`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..metrics import cost_ratio, exact_match, hamming_distance, normalized_regret, rank_distance
from ..oracles.counting import CountingOracle
from . import registry
from .config import MethodSpec, ProblemSpec, StudyConfig
from .methods import make_method
from .results import (  # noqa: F401  (re-exported: the results file is part of the runner's interface)
    RESULTS_FILE,
    _check_results_path,
    _chosen_attempts,
    _key,
    _row_problem,
    append_jsonl,
    complete_trials,
    read_results,
    scan_results,
)

__all__ = [
    "CountingOracle",
    "TrialSpec",
    "iter_trial",
    "run_trial",
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
    "LOCK_FILE",
]

LOCK_FILE = ".colayers.lock"
METRICS = ("normalized_regret", "exact_match", "hamming", "cost_ratio")


class StudyError(RuntimeError):
    """A trial failed or its worker process died; the message names the trial."""


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
def _evaluate(model, objective, x, theta, y, oracle: CountingOracle, chunk: int = 256) -> dict[str, float]:
    was_training = model.training
    model.eval()
    theta_hat = torch.cat([model(x[i : i + chunk]) for i in range(0, x.shape[0], chunk)])
    with oracle.paused():
        y_hat = objective.predict(theta_hat)
    model.train(was_training)
    inner = oracle.oracle
    out = {
        "normalized_regret": float(normalized_regret(y_hat, theta, y, oracle=inner)),
        "exact_match": float(exact_match(y_hat, theta, y, oracle=inner).float().mean()),
        "cost_ratio": float(cost_ratio(y_hat, theta, y, oracle=inner).mean()),
    }
    binary = bool(((y == 0) | (y == 1)).all()) and bool(((y_hat == 0) | (y_hat == 1)).all())
    if binary:  # 0/1 solutions: the share of entries that differ
        out["hamming"] = float(hamming_distance(y_hat, y, oracle=inner).mean())
    else:  # rank vectors: the normalized Spearman footrule
        out["rank_distance"] = float(rank_distance(y_hat, y).mean())
    return out


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
            metrics = _evaluate(model, objective, problem.x_test, problem.theta_test, problem.y_test, oracle)
            if has_val:
                val = _evaluate(model, objective, problem.x_val, problem.theta_val, problem.y_val, oracle)
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


def _install(plugins: list[str], entries: bytes) -> None:
    """Import the plugins, then install the parent's registrations (pickled: they may refer to the plugins)."""
    import pickle

    registry.load_plugins(plugins)
    if entries:
        registry.install_entries(pickle.loads(entries))


def _remote_trial(spec: TrialSpec, plugins: list[str], entries: bytes) -> list[dict[str, Any]]:
    """A trial on a remote executor (dask...): load the plugins and registrations, run, return the records."""
    _install(plugins, entries)
    return run_trial(spec)


# ----------------------------------------------------------------------------------------------------------
# worker processes


def _die_with_parent(parent_pid: int) -> None:
    """End this process as soon as its parent dies (whatever kills it)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # pragma: no cover - no prctl
            pass
    if os.getppid() != parent_pid:  # the parent died before the request was made
        os._exit(1)

    def watch() -> None:  # portable fallback: poll the parent
        while True:
            time.sleep(0.2)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="colayers-parent-watch", daemon=True).start()


def _worker_main(conn, parent_pid: int, plugins: list[str], entries: bytes) -> None:
    """A study worker: receive trial specs from the pipe, send back ("epoch", rec), ("done",) or ("error", msg)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    _die_with_parent(parent_pid)
    try:
        _install(plugins, entries)
    except Exception as exc:
        conn.send(("error", f"worker set-up failed: {exc}"))
        return
    while True:
        try:
            spec = conn.recv()
        except (EOFError, OSError):
            return
        if spec is None:
            return
        try:
            for rec in iter_trial(spec):
                conn.send(("epoch", rec))
            conn.send(("done",))
        except Exception as exc:
            import traceback

            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))


class _Worker:
    def __init__(self, ctx, plugins: list[str], entries: bytes) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_main, args=(child, os.getpid(), plugins, entries), daemon=True, name="colayers-worker"
        )
        self.process.start()
        child.close()
        self.spec: TrialSpec | None = None

    def stop(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(timeout=5)
        self.conn.close()


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:  # pragma: no cover
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _run_pool(todo: list[TrialSpec], workers: int, write, on_done, plugins, entries) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue = deque(todo)
    pool: list[_Worker] = []
    try:
        for _ in range(min(workers, len(todo))):
            pool.append(_Worker(ctx, plugins, entries))
        for w in pool:
            w.spec = queue.popleft()
            w.conn.send(w.spec)
        while any(w.spec is not None for w in pool):
            busy = [w for w in pool if w.spec is not None]
            ready = multiprocessing.connection.wait([w.conn for w in busy] + [w.process.sentinel for w in busy])
            for w in busy:
                dead = False
                while w.spec is not None and w.conn.poll():
                    try:
                        msg = w.conn.recv()
                    except (EOFError, OSError):  # the worker's end of the pipe closed: it died
                        dead = True
                        break
                    if msg[0] == "epoch":
                        write(msg[1])
                    elif msg[0] == "done":
                        on_done(w.spec)
                        w.spec = queue.popleft() if queue else None
                        try:
                            w.conn.send(w.spec)
                        except OSError:  # it died right after its trial
                            dead = True
                            break
                    else:
                        raise StudyError(f"trial {w.spec.label} failed: {msg[1]}")
                if w.spec is not None and (dead or (w.process.sentinel in ready and not w.process.is_alive())):
                    w.process.join(timeout=5)
                    raise StudyError(
                        f"the worker process (pid {w.process.pid}) running trial {w.spec.label} died "
                        f"({_describe_exit(w.process.exitcode)}); the trials completed so far are saved: rerun "
                        "the same command to resume"
                    )
    finally:
        for w in pool:
            w.stop()


def _run_executor(executor, todo: list[TrialSpec], write, on_done, plugins, entries) -> None:
    futures = {executor.submit(_remote_trial, spec, plugins, entries): spec for spec in todo}
    try:
        for fut in concurrent.futures.as_completed(futures):
            spec = futures[fut]
            try:
                records = fut.result()
            except Exception as exc:
                raise StudyError(f"trial {spec.label} failed: {type(exc).__name__}: {exc}") from exc
            for rec in records:
                write(rec)
            on_done(spec)
    finally:
        for fut in futures:
            fut.cancel()


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


def run_study(
    config: StudyConfig,
    *,
    executor: concurrent.futures.Executor | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """Run (or resume) a study; return the records of all its trials, in trial order.

    The configuration is validated, its plugins imported and every problem generated once (first seed)
    before any training, so a bad field fails fast with a message naming it.

    Args:
        config: the study (:class:`~colayers.studies.config.StudyConfig`); results go to
            ``config.output/results.jsonl``, the effective configuration to ``config.output/config.json``.
        executor: run trials on this executor (dask's ``Client.get_executor()``...). If ``None`` and
            ``config.workers > 1``, that many worker processes; otherwise trials run in this process.
        progress: show tqdm progress bars (trials, and epochs when serial).
        log: where one-line messages go (the start summary, skipped malformed lines); default stderr.

    Returns:
        the per-epoch records of every trial of this study (complete trials only).

    Raises:
        ValueError: a bad configuration, a changed setting in an existing study directory, or
            :class:`StudyLocked`; :class:`StudyError`: a trial failed or its worker died;
            :class:`StudyInterrupted`: Ctrl-C (the completed trials are saved).
    """
    log = _stderr if log is None else log
    config.validate()
    for i, prob in enumerate(config.problems):  # fail before training on bad generator parameters
        try:
            built = _get_problem(prob, int(config.seeds[0]), config.device)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"problems[{i}] ({prob.name!r}) has a bad parameter: {exc}") from exc
        if config.select == "best" and getattr(built, "x_val", None) is None:
            raise ValueError(f"select = 'best' needs a validation split; problems[{i}] ({prob.name!r}) has none "
                             "(n_val = 0)")
    entries_blob = b""
    if executor is not None or config.workers > 1:  # carry the registrations to the workers
        import pickle

        entries = registry.user_entries()
        registry.check_picklable(entries)
        entries_blob = pickle.dumps(entries)
    out = Path(config.output)
    path = out / RESULTS_FILE
    _check_results_path(path)
    specs = trial_specs(config)
    with study_lock(out, log):
        config.write_effective(out)  # refuses changed settings of existing trials (ValueError naming them)
        done, partial = _prune(path, {s.key for s in specs}, log)
        todo = [s for s in specs if s.key not in done]
        log(
            f"colayers study {config.name!r}: {len(specs)} trials: {len(done)} complete (skipped), {partial} "
            f"incomplete (restarted), {len(todo) - partial} new -> {out}"
        )
        finished = [len(done)]
        with _progress(progress, total=len(specs), initial=len(done), desc="trials", unit="trial") as bar:

            def write(rec: dict[str, Any]) -> None:
                append_jsonl(path, rec)

            def on_done(spec: TrialSpec) -> None:
                finished[0] += 1
                if bar is not None:
                    bar.set_postfix_str(spec.label)
                    bar.update()

            try:
                if executor is not None:
                    _run_executor(executor, todo, write, on_done, config.plugins, entries_blob)
                elif config.workers > 1 and len(todo) > 1:
                    _run_pool(todo, config.workers, write, on_done, config.plugins, entries_blob)
                else:
                    for spec in todo:
                        with _progress(progress, total=spec.epochs, desc="  epochs", leave=False, unit="ep") as eb:
                            for rec in iter_trial(spec):
                                write(rec)
                                if eb is not None:
                                    eb.set_postfix(regret=f"{rec['normalized_regret']:.4f}")
                                    eb.update()
                        on_done(spec)
            except KeyboardInterrupt:
                raise StudyInterrupted(finished[0], len(specs)) from None
    complete = complete_trials(read_results(path))
    return [rec for s in specs if s.key in complete for rec in complete[s.key]]

