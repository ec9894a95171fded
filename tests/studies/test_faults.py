"""The study runner under faults: killed parents, Ctrl-C, dead workers, torn and malformed lines, a second
study on the same directory. Each test provokes one fault and checks that no process survives and that a
rerun ends with every (trial, epoch) exactly once."""

from __future__ import annotations

import collections
import fcntl
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from colayers.cli import main
from colayers.studies import runner as runner_module
from colayers.studies.config import config_from_dict
from colayers.studies.runner import (
    LOCK_FILE,
    RESULTS_FILE,
    StudyLocked,
    complete_trials,
    read_results,
    run_study,
    study_lock,
)

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

ROOT = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _study_cmd(out: Path, *extra: str, epochs: int = 4) -> list[str]:
    return [
        sys.executable, "-m", "colayers", "study", "--methods", "spo+,fy", "--seeds", "0,1",
        "--epochs", str(epochs), "-P", "n=200", "-P", "n_test=100", "-P", "n_val=50", "--batch-size", "8",
        "-o", str(out), "--no-figures", *extra,
    ]  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")  # a zombie has ended; it only waits to be reaped


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children[ppid].append(int(entry.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _wait_for_lines(path: Path, proc: subprocess.Popen, lines: int = 1, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= lines:
            return
        time.sleep(0.02)
    assert proc.poll() is None, "the study ended before the fault could be injected; make it longer"
    raise AssertionError("no result line appeared in time")


def _wait_gone(pids: set[int], timeout: float = 5.0) -> set[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = {p for p in pids if _alive(p)}
        if not left:
            return set()
        time.sleep(0.05)
    return {p for p in pids if _alive(p)}


def _assert_exactly_once(path: Path, trials: int, epochs: int) -> None:
    rows = read_results(path)
    counts = collections.Counter((r["trial"], r["epoch"]) for r in rows)
    assert len(counts) == trials * epochs and set(counts.values()) == {1}, counts
    assert len(complete_trials(rows)) == trials


def _rerun(cmd: list[str], capsys) -> str:
    """Run the same command again, in this process and serially (to save interpreter starts); return stderr."""
    capsys.readouterr()
    assert cmd[1:4] == ["-m", "colayers", "study"]
    status = main([*cmd[3:], "--workers", "1"])  # one worker is enough to finish (and saves two spawns)
    err = capsys.readouterr().err
    assert status == 0, err
    return err


# ---------------------------------------------------------------------------------------------------------
# worker lifecycle


def test_sigkill_of_the_parent_ends_every_worker_and_the_rerun_writes_each_epoch_once(tmp_path, capsys):
    out = tmp_path / "killed"
    cmd = _study_cmd(out, "--workers", "2", "--no-progress")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env())
    _wait_for_lines(out / RESULTS_FILE, proc)
    workers = _descendants(proc.pid)
    assert len(workers) >= 2  # two trial workers (and possibly multiprocessing's resource tracker)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _wait_gone(workers) == set(), "worker processes outlived their parent"
    rows_after_kill = (out / RESULTS_FILE).read_bytes()
    time.sleep(0.3)
    assert (out / RESULTS_FILE).read_bytes() == rows_after_kill  # nobody writes any more
    err = _rerun(cmd, capsys)
    assert "complete (skipped)" in err
    _assert_exactly_once(out / RESULTS_FILE, trials=4, epochs=4)


def test_a_worker_busy_in_a_long_step_still_dies_with_its_parent(tmp_path):
    """The pipe would end a worker at its next message; a worker inside a long epoch must not wait for it."""
    ready = tmp_path / "ready"
    child = ("import sys, time; from colayers.studies.workers import _die_with_parent; "
             "_die_with_parent(int(sys.argv[1])); open(sys.argv[2], 'w').close(); time.sleep(120)")
    parent = ("import os, subprocess, sys, time; "
              f"p = subprocess.Popen([sys.executable, '-c', {child!r}, str(os.getpid()), {str(ready)!r}]); "
              "print(p.pid, flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", parent], stdout=subprocess.PIPE, text=True, env=_env())
    pid = int(proc.stdout.readline())
    deadline = time.monotonic() + 120
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists() and _alive(pid)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert _wait_gone({pid}, timeout=3.0) == set(), "a busy worker outlived its parent"


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_stops_every_trial_prints_one_line_and_exits_130(tmp_path, capsys, workers):
    out = tmp_path / f"interrupted{workers}"
    cmd = _study_cmd(out, "--workers", str(workers), epochs=6)
    # Ctrl-C in a terminal signals the whole foreground process group: do the same
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
                            start_new_session=True)
    _wait_for_lines(out / RESULTS_FILE, proc)
    workers_pids = _descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 130, stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("colayers: interrupted: ") and "of 4 trials complete" in last
    assert "rerun the same command to resume" in last
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert _wait_gone(workers_pids) == set()
    rows = (out / RESULTS_FILE).read_bytes()
    time.sleep(0.5)
    assert (out / RESULTS_FILE).read_bytes() == rows  # no queued trial runs on after Ctrl-C
    complete = int(last.split("interrupted: ")[1].split(" of")[0])
    assert len(complete_trials(read_results(out / RESULTS_FILE))) == complete
    err = _rerun(cmd, capsys)
    assert f"{complete} complete (skipped)" in err
    _assert_exactly_once(out / RESULTS_FILE, trials=4, epochs=6)


def test_a_dead_worker_is_an_error_naming_its_trial_and_the_rerun_completes(tmp_path, capsys):
    out = tmp_path / "dead-worker"
    cmd = _study_cmd(out, "--workers", "2", "--no-progress", epochs=6)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    _wait_for_lines(out / RESULTS_FILE, proc)
    victims = [p for p in _descendants(proc.pid) if b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes()]
    os.kill(victims[0], signal.SIGKILL)
    _stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    line = stderr.strip().splitlines()[-1]
    assert f"the worker process (pid {victims[0]}) running trial shortest_path / " in line
    assert "died (killed by SIGKILL)" in line and "Traceback" not in stderr
    assert _wait_gone(set(victims)) == set()
    _rerun(cmd, capsys)
    _assert_exactly_once(out / RESULTS_FILE, trials=4, epochs=6)


class _RetryingExecutor:
    """An executor that runs every task twice and reports the second result, as a scheduler that lost the
    first worker after it finished (dask retries such tasks)."""

    def __init__(self):
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(2)

    def submit(self, fn, *args):
        def twice():
            fn(*args)
            return fn(*args)

        return self.pool.submit(twice)


def test_a_retried_remote_trial_writes_nothing_twice(tmp_path):
    cfg = _small(tmp_path, seeds=[0, 1])
    recs = run_study(cfg, executor=_RetryingExecutor(), progress=False, log=lambda m: None)
    _assert_exactly_once(Path(cfg.output) / RESULTS_FILE, trials=4, epochs=2)
    assert len(recs) == 8


# ---------------------------------------------------------------------------------------------------------
# the directory lock


def test_a_second_study_on_the_same_directory_refuses_naming_the_holder(tmp_path, capsys):
    out = tmp_path / "locked"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import fcntl, os, sys, time
            fd = os.open({str(out / LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, f"{{os.getpid()}}\\n".encode())
            print("locked", flush=True)
            time.sleep(60)
        """)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.monotonic()
        assert main(["study", "--preset", "tiny", "-o", str(out), "--no-progress", "--no-figures"]) == 2
        assert time.monotonic() - t0 < 10  # at once, not after waiting
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and f"in use by another study (pid {holder.pid})" in err
        assert not (out / RESULTS_FILE).exists()
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "stale"
    out.mkdir()
    (out / LOCK_FILE).write_text(f"{dead.pid}\n")
    messages = []
    recs = run_study(_small(tmp_path, output=str(out)), progress=False, log=messages.append)
    assert len(recs) == 4
    assert any(f"left by pid {dead.pid}" in m for m in messages)
    with study_lock(out):  # released at the end of the run
        with pytest.raises(StudyLocked, match=f"pid {os.getpid()}"):
            with study_lock(out):
                pass
    fd = os.open(out / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------------
# bad lines, bad paths


def _small(tmp_path: Path, **over):
    data = {
        "name": "small",
        "problems": [{"name": "shortest_path", "params": {"n": 32, "n_test": 32, "n_val": 16}}],
        "methods": ["spo+", "two-stage"],
        "seeds": [0],
        "epochs": 2,
        "batch_size": 16,
        "output": str(tmp_path / "study"),
    }
    data.update(over)
    return config_from_dict(data)


def test_a_malformed_line_is_reported_with_file_and_line_and_its_trial_rerun(tmp_path):
    cfg = _small(tmp_path)
    run_study(cfg, progress=False, log=lambda m: None)
    path = Path(cfg.output) / RESULTS_FILE
    lines = path.read_text().splitlines()
    bad = json.loads(lines[2])
    bad["epoch"] = "x"
    lines[2] = json.dumps(bad)
    path.write_text("\n".join(lines) + "\n")
    messages = []
    recs = run_study(cfg, progress=False, log=messages.append)
    assert any(f"{path}:3: malformed line skipped ('epoch' must be an integer" in m and "re-run" in m
               for m in messages), messages
    assert len(recs) == 4
    _assert_exactly_once(path, trials=2, epochs=2)


def test_a_directory_in_place_of_the_results_file_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "dir"
    (out / RESULTS_FILE).mkdir(parents=True)
    assert main(["study", "--preset", "tiny", "-o", str(out), "--no-progress", "--no-figures"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a directory" in err and RESULTS_FILE in err
    assert main(["report", str(out), "--no-figures"]) == 2


# ---------------------------------------------------------------------------------------------------------
# exactly once, whatever the crash point


class _Crash(Exception):
    pass


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(crashes=st.lists(st.tuples(st.integers(0, 7), st.booleans()), min_size=1, max_size=3))
def test_crashes_at_random_points_then_a_rerun_give_each_trial_epoch_once(tmp_path_factory, crashes):
    """Crash the runner after a random number of appended lines (optionally tearing the next line, as a
    kill in the middle of a write), several times; a final rerun must leave each (trial, epoch) once with
    the metrics of an undisturbed run."""
    base = tmp_path_factory.mktemp("crash")
    cfg = _small(base, seeds=[0, 1], methods=["two-stage", "identity"])
    path = Path(cfg.output) / RESULTS_FILE
    real_append = runner_module.append_jsonl
    for after, torn in crashes:
        count = [0]

        def crashing_append(p, rec, after=after, torn=torn, count=count):
            if count[0] == after:
                if torn:
                    with open(p, "ab") as f:
                        f.write(json.dumps(rec).encode()[: 40])
                raise _Crash
            count[0] += 1
            real_append(p, rec)

        runner_module.append_jsonl = crashing_append
        try:
            run_study(cfg, progress=False, log=lambda m: None)
        except _Crash:
            pass
        finally:
            runner_module.append_jsonl = real_append
    recs = run_study(cfg, progress=False, log=lambda m: None)
    _assert_exactly_once(path, trials=4, epochs=2)
    clean = run_study(_small(base / "clean", seeds=[0, 1], methods=["two-stage", "identity"]), progress=False,
                      log=lambda m: None)
    assert [(r["trial"], r["epoch"], r["normalized_regret"]) for r in recs] == [
        (r["trial"], r["epoch"], r["normalized_regret"]) for r in clean
    ]


def test_rows_of_a_second_attempt_are_ignored_by_readers():
    base = dict(problem="p", method="m", seed=0, settings="h", epochs=2)
    rows = [dict(base, epoch=1, attempt="a", v=1), dict(base, epoch=1, attempt="b", v=2),
            dict(base, epoch=2, attempt="b", v=2), dict(base, epoch=2, attempt="a", v=1)]
    (trial,) = complete_trials(rows).values()
    assert [r["v"] for r in trial] == [1, 1]  # the first complete attempt, never a mix
    partial = [dict(base, epoch=1, attempt="a"), dict(base, epoch=2, attempt="b")]
    assert complete_trials(partial) == {}  # two halves of different attempts are not one trial

