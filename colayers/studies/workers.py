"""Where a study's trials run: spawned worker processes, or any :class:`concurrent.futures.Executor`.

``workers > 1`` runs trials in that many spawned worker processes (:func:`run_pool`). Workers end when the
parent dies, however it is killed (they poll their parent and, on Linux, ask the kernel for ``SIGKILL`` on
its death); workers ignore SIGINT, so that Ctrl-C reaches the parent, which stops them all; a worker that dies
is reported as a :class:`StudyError` naming its trial. Worker processes send their records to the parent
through a pipe, and only the parent writes them. Any executor can be used instead (:func:`run_executor`; for
instance ``dask.distributed.Client(...).get_executor()``): a remote trial returns its records when it
completes, so a retried task writes nothing twice. Plugin modules and the problems and methods registered in
the parent are carried to every worker (:mod:`colayers.studies.registry`).

Both take the trials to run and the runner's callbacks (:class:`Hooks`): each epoch's record, a completed
trial, a trial past its time limit, a trial's phase. In the pool a trial gets a time limit, counted from when its
worker is ready; past it the worker is killed (and replaced while trials are queued), and the trial is reported
failed while the others go on. An executor gets no limit: it neither says when a task starts nor can stop one.
"""

from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import registry
from .trial import TrialSpec, iter_trial, run_trial

__all__ = ["StudyError", "Hooks", "run_pool", "run_executor"]


class StudyError(RuntimeError):
    """A trial failed or its worker process died; the message names the trial."""


def _install(plugins: list[str], entries: bytes) -> None:
    """Import the plugins, then install the parent's registrations (pickled: they may refer to the plugins)."""
    import pickle

    registry.load_plugins(plugins)
    if entries:
        registry.install_entries(pickle.loads(entries))


def _warm_up() -> None:
    """Import what every trial needs: the built-in problems, and the part of torch that building an optimizer
    imports (seconds on a loaded machine), so that a time limit measures the trial, not the worker's start."""
    import torch

    from . import problems  # noqa: F401  (registers the built-in problems)

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def _remote_trial(spec: TrialSpec, plugins: list[str], entries: bytes) -> list[dict[str, Any]]:
    """A trial on a remote executor (dask...): load the plugins and registrations, run, return the records."""
    _install(plugins, entries)
    return run_trial(spec)


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
    """A study worker: start (:func:`_warm_up`), say ("alive",), import the plugins, say ("ready",); then
    receive trial specs from the pipe and send back ("epoch", rec), ("done",) or ("error", msg)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the parent decides
    _die_with_parent(parent_pid)
    _warm_up()
    conn.send(("alive",))
    try:
        _install(plugins, entries)
    except Exception as exc:
        conn.send(("error", f"worker set-up failed: {exc}"))
        return
    conn.send(("ready",))
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


@dataclass
class Hooks:
    """What the runner does with the news of a pool or an executor.

    ``write(record)``: an epoch's record arrived; ``done(spec)``: a trial completed; ``failed(spec, reason)``:
    a trial ran past its time limit (its worker was killed, the others go on); ``phase(spec, text)``: a trial
    entered a phase (``"starting a worker"``, ``"importing the plugins"``, ``"running"``: the clock of the
    status line restarts).
    """

    write: Callable[[dict[str, Any]], None]
    done: Callable[[TrialSpec], None]
    failed: Callable[[TrialSpec, str], None] = lambda spec, reason: None
    phase: Callable[[TrialSpec, str], None] = lambda spec, text: None


#: A worker process gets at least this long to start (an interpreter and torch, on a loaded machine) before
#: the trial limit applies to its set-up and then to its trial.
START_LIMIT = 300.0


class _Worker:
    def __init__(self, ctx, plugins: list[str], entries: bytes) -> None:
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(
            target=_worker_main, args=(child, os.getpid(), plugins, entries), daemon=True, name="colayers-worker"
        )
        self.process.start()
        child.close()
        self.spec: TrialSpec | None = None
        self.state = "starting a worker"  # then "importing the plugins", then "running"
        self.since = time.monotonic()  # the start of the current state (or of the current trial)
        self.epoch = 0

    def deadline(self, limit: float) -> float:
        return self.since + (max(limit, START_LIMIT) if self.state == "starting a worker" else limit)

    def why(self, limit: float, plugins: list[str]) -> str:
        if self.state == "starting a worker":
            return f"its worker process did not start within {max(limit, START_LIMIT):g} s"
        if self.state == "importing the plugins":
            return f"its worker's set-up (importing the plugins {plugins}) did not finish within {limit:g} s"
        return (f"it did not finish within its time limit of {limit:g} s (trial_timeout; epoch {self.epoch} of "
                f"{self.spec.epochs} was the last complete)")

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


class _Pool:
    """The spawned worker processes of :func:`run_pool` and the parent's side of their pipes."""

    def __init__(self, todo, workers, hooks: Hooks, plugins, entries, limit: float) -> None:
        self.ctx = multiprocessing.get_context("spawn")
        self.queue = deque(todo)
        self.hooks, self.plugins, self.entries, self.limit = hooks, plugins, entries, limit
        self.workers = workers
        self.pool: list[_Worker] = []

    def start(self) -> None:
        for _ in range(min(self.workers, len(self.queue))):
            self._spawn()

    def _spawn(self) -> None:
        w = _Worker(self.ctx, self.plugins, self.entries)
        self.pool.append(w)
        self._next(w)

    def _next(self, w: _Worker) -> None:
        """Give ``w`` the next trial (``None``: it ends)."""
        w.spec = self.queue.popleft() if self.queue else None
        w.epoch = 0
        if w.state == "running":
            w.since = time.monotonic()
        if w.spec is not None:
            self.hooks.phase(w.spec, w.state)
        w.conn.send(w.spec)

    def _drain(self, w: _Worker, assign: bool = True) -> bool:
        """Handle every message ``w`` has sent; ``False`` if its end of the pipe closed (it died). With
        ``assign=False`` (a killed worker) a completed trial is not followed by another."""
        while w.spec is not None and w.conn.poll():
            try:
                msg = w.conn.recv()
            except (EOFError, OSError):
                return False
            if msg[0] in ("alive", "ready"):
                w.state = "importing the plugins" if msg[0] == "alive" else "running"
                w.since = time.monotonic()
                self.hooks.phase(w.spec, w.state)
            elif msg[0] == "epoch":
                w.epoch = msg[1]["epoch"]
                self.hooks.write(msg[1])
            elif msg[0] == "done":
                self.hooks.done(w.spec)
                if not assign:
                    w.spec = None
                    break
                try:
                    self._next(w)
                except OSError:  # it died right after its trial
                    return False
            elif assign:
                raise StudyError(f"trial {w.spec.label} failed: {msg[1]}")
        return True

    def _expire(self, w: _Worker) -> None:
        """``w`` ran past its limit: kill it, keep what it sent before, record its trial failed, replace it."""
        why = w.why(self.limit, self.plugins)
        w.process.kill()
        w.process.join(timeout=5)
        self._drain(w, assign=False)  # what it sent before it was killed (nothing can come after)
        w.conn.close()
        self.pool.remove(w)
        if w.spec is not None:
            self.hooks.failed(w.spec, why)
        if self.queue:
            self._spawn()

    def run(self) -> None:
        while True:
            busy = [w for w in self.pool if w.spec is not None]
            if not busy:
                return
            wait = max(0.0, min(w.deadline(self.limit) for w in busy) - time.monotonic())
            ready = multiprocessing.connection.wait(
                [w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=min(wait, 3600.0)
            )
            for w in busy:
                alive = self._drain(w)
                if w.spec is not None and (not alive or (w.process.sentinel in ready and not w.process.is_alive())):
                    w.process.join(timeout=5)
                    raise StudyError(
                        f"the worker process (pid {w.process.pid}) running trial {w.spec.label} died "
                        f"({_describe_exit(w.process.exitcode)}); the trials completed so far are saved: rerun "
                        "the same command to resume"
                    )
            now = time.monotonic()
            for w in busy:
                if w.spec is not None and now >= w.deadline(self.limit):
                    self._expire(w)

    def stop(self) -> None:
        for w in self.pool:
            w.stop()


def run_pool(todo: list[TrialSpec], workers: int, hooks: Hooks, plugins, entries, limit: float = math.inf) -> None:
    """Run ``todo`` on ``workers`` spawned processes; the parent ``write``-s each record as it arrives.

    A trial gets ``limit`` seconds, counted from when its worker is ready (its plugins imported); a worker's
    set-up gets ``limit`` seconds too, after its interpreter started (which gets at least :data:`START_LIMIT`).
    Past it, the worker is killed (and replaced while trials are queued) and ``hooks.failed`` says why.
    """
    pool = _Pool(todo, workers, hooks, plugins, entries, limit)
    try:
        pool.start()
        pool.run()
    finally:
        pool.stop()


def run_executor(executor, todo: list[TrialSpec], hooks: Hooks, plugins, entries) -> None:
    """Run ``todo`` on ``executor``, one task per trial; a trial's records are written when its task completes.

    No time limit applies here: an executor neither says when a task starts nor can stop a running one.
    """
    futures = {executor.submit(_remote_trial, spec, plugins, entries): spec for spec in todo}
    for spec in todo:
        hooks.phase(spec, "submitted to the executor")
    try:
        for fut in concurrent.futures.as_completed(futures):
            spec = futures[fut]
            try:
                records = fut.result()
            except Exception as exc:
                raise StudyError(f"trial {spec.label} failed: {type(exc).__name__}: {exc}") from exc
            for rec in records:
                hooks.write(rec)
            hooks.done(spec)
    finally:
        for fut in futures:
            fut.cancel()
