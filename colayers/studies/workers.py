"""Where a study's trials run: spawned worker processes, or any :class:`concurrent.futures.Executor`.

``workers > 1`` runs trials in that many spawned worker processes (:func:`run_pool`). Workers end when the
parent dies, however it is killed (they poll their parent and, on Linux, ask the kernel for ``SIGKILL`` on
its death); workers ignore SIGINT, so that Ctrl-C reaches the parent, which stops them all; a worker that dies
is reported as a :class:`StudyError` naming its trial. Worker processes send their records to the parent
through a pipe, and only the parent writes them. Any executor can be used instead (:func:`run_executor`; for
instance ``dask.distributed.Client(...).get_executor()``): a remote trial returns its records when it
completes, so a retried task writes nothing twice. Plugin modules and the problems and methods registered in
the parent are carried to every worker (:mod:`colayers.studies.registry`).

Both take the trials to run and two callbacks from the runner: ``write(record)`` for each epoch's record and
``on_done(spec)`` when a trial completes.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections import deque
from typing import Any

from . import registry
from .trial import TrialSpec, iter_trial, run_trial

__all__ = ["StudyError", "run_pool", "run_executor"]


class StudyError(RuntimeError):
    """A trial failed or its worker process died; the message names the trial."""


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


def run_pool(todo: list[TrialSpec], workers: int, write, on_done, plugins, entries) -> None:
    """Run ``todo`` on ``workers`` spawned processes; the parent ``write``-s each record as it arrives."""
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


def run_executor(executor, todo: list[TrialSpec], write, on_done, plugins, entries) -> None:
    """Run ``todo`` on ``executor``, one task per trial; a trial's records are written when its task completes."""
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
