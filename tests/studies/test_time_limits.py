"""Trials that hang: a plugin stuck in the workers' set-up, a method stuck in a trial (in worker processes and
in this process). Each is provoked with a limit of a few seconds; the trial is recorded as failed with its
reason, its worker killed (and replaced while trials are queued), the others complete, a status line names the
running trials meanwhile, no process is left running, and a rerun retries the failed trials and ends with each
(trial, epoch) exactly once.

No assertion depends on the machine's speed: the stuck code sleeps for 10 minutes, the tests end within about
a minute, and the trials that must complete take well under a second of their 5 s (a worker's start, which can
take many seconds on a loaded machine, is not counted in a trial's limit)."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from colayers.cli import main
from colayers.studies import registry
from colayers.studies.config import config_from_dict
from colayers.studies.runner import FAILURES_FILE, RESULTS_FILE, StudyError, complete_trials, read_results, run_study
from tests.studies.test_faults import _assert_exactly_once, _wait_gone

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")

LIMIT = 5.0

PLUGIN = '''
import multiprocessing, os, time

import torch

from colayers.studies import register_method
from colayers.studies.methods import TrainingObjective

if os.environ.get("HANG_PIDS"):  # every process that imports the plugin leaves its PID
    open(os.path.join(os.environ["HANG_PIDS"], str(os.getpid())), "w").close()
if os.environ.get("HANG_SETUP") and multiprocessing.parent_process() is not None:
    try:  # the first worker process to import the plugin hangs in its set-up
        os.close(os.open(os.environ["HANG_SETUP"], os.O_CREAT | os.O_EXCL))
        time.sleep(600)
    except FileExistsError:
        pass


class Stuck(TrainingObjective):
    """Two-stage regression that hangs at the first step of epoch 2 while HANG_METHOD=1."""

    uses_oracle_in_training = False

    def __init__(self, ctx, steps_per_epoch):
        super().__init__(ctx.oracle, ctx.event_ndim)
        self.calls, self.steps = 0, steps_per_epoch

    def loss(self, theta, theta_true, y_true):
        self.calls += 1
        if os.environ.get("HANG_METHOD") == "1" and self.calls > self.steps:
            time.sleep(600)
        return torch.nn.functional.mse_loss(theta, theta_true)


@register_method("stuck", defaults={"steps_per_epoch": 2})
def stuck(ctx, *, steps_per_epoch):
    return Stuck(ctx, steps_per_epoch)
'''


@pytest.fixture
def hang(tmp_path, monkeypatch):
    """The plugin's path and its PID folder; registrations and plugin imports are undone afterwards."""
    saved = (dict(registry.PROBLEMS), dict(registry.METHODS), dict(registry.TUNED), dict(registry._LOADED))
    plugin = tmp_path / "hang_plugin.py"
    plugin.write_text(PLUGIN)
    pids = tmp_path / "pids"
    pids.mkdir()
    monkeypatch.setenv("HANG_PIDS", str(pids))  # spawned workers inherit the environment
    yield str(plugin), pids
    for live, old in zip((registry.PROBLEMS, registry.METHODS, registry.TUNED, registry._LOADED), saved):
        live.clear()
        live.update(old)


def _config(tmp_path: Path, plugin: str, **over):
    data = {
        "name": "hangs",
        "problems": [{"name": "shortest_path", "params": {"n": 32, "n_test": 32, "n_val": 16}}],
        "methods": ["stuck", "spo+"],
        "seeds": [0],
        "epochs": 2,
        "batch_size": 16,  # two steps per epoch: `stuck` hangs after the record of epoch 1
        "plugins": [plugin],
        "trial_timeout": LIMIT,
        "output": str(tmp_path / "study"),
    }
    data.update(over)
    return config_from_dict(data)


def _nothing_left_running(pids: Path) -> None:
    others = {int(p.name) for p in pids.iterdir()} - {os.getpid()}  # the workers that imported the plugin
    assert others, "no worker process imported the plugin"
    assert _wait_gone(others) == set(), "worker processes outlived the study"
    assert not [t for t in threading.enumerate() if t.name == "colayers-status"], "the status thread outlived it"


def _failures(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / FAILURES_FILE).read_text().splitlines()]


def test_a_trial_stuck_in_a_worker_is_killed_recorded_failed_and_retried_by_a_rerun(tmp_path, monkeypatch, hang,
                                                                                    capsys):
    plugin, pids = hang
    monkeypatch.setenv("HANG_METHOD", "1")
    # trials in order: stuck/0, spo+/0, stuck/1, spo+/1 on two workers: both workers get stuck, and spo+/1 runs on
    # the worker that replaces the first one killed
    cfg = _config(tmp_path, plugin, seeds=[0, 1], workers=2)
    messages: list[str] = []
    with pytest.raises(StudyError) as info:
        run_study(cfg, progress=False, log=messages.append, status_every=0.5)
    out = Path(cfg.output)
    _nothing_left_running(pids)
    why = f"it did not finish within its time limit of {LIMIT:g} s (trial_timeout; epoch 1 of 2 was the last complete)"
    text = str(info.value)
    assert text.startswith("2 of 4 trials failed (shortest_path / stuck / seed ") and why in text, text
    assert "rerun the same command to retry the failed ones" in text
    failed = _failures(out)
    assert sorted((f["method"], f["seed"]) for f in failed) == [("stuck", 0), ("stuck", 1)]
    assert all(f["reason"] == why and f["trial_timeout_s"] == LIMIT for f in failed)
    rows = read_results(out / RESULTS_FILE)
    assert sorted(k[:3] for k in complete_trials(rows)) == [("shortest_path", "spo+", 0), ("shortest_path", "spo+", 1)]
    assert sorted((r["method"], r["seed"], r["epoch"]) for r in rows if r["method"] == "stuck") == [
        ("stuck", 0, 1), ("stuck", 1, 1)]  # fmt: skip  (epoch 1 of each, once; epoch 2 never came)
    for seed in (0, 1):
        assert f"colayers: trial shortest_path / stuck / seed {seed} failed: {why}; the other trials go on" in messages
    running = [m for m in messages if "running: " in m and "shortest_path / stuck / seed 0 (running, epoch 1 of 2" in m]
    assert running, messages  # the status line named the stuck trial while it hung
    assert capsys.readouterr().out == ""  # nothing on stdout

    monkeypatch.delenv("HANG_METHOD")  # the rerun (serial, to save two worker starts) retries the failed trials
    messages.clear()
    assert len(run_study(_config(tmp_path, plugin, seeds=[0, 1]), progress=False, log=messages.append)) == 8
    assert "4 trials: 2 complete (skipped), 2 incomplete (restarted), 0 new" in messages[0]
    _assert_exactly_once(out / RESULTS_FILE, trials=4, epochs=2)
    assert len(_failures(out)) == 2  # the history of the failed attempts is kept


def test_a_plugin_stuck_in_a_worker_set_up_fails_its_trial_with_the_plugin_named(tmp_path, monkeypatch, hang, capsys):
    plugin, pids = hang
    monkeypatch.setenv("HANG_SETUP", str(tmp_path / "hung-once"))  # only the first worker to import it hangs
    out = tmp_path / "setup"
    argv = ["study", "--plugin", plugin, "--methods", "spo+,two-stage", "--seeds", "0", "--epochs", "2",
            "--batch-size", "16", "-P", "n=32", "-P", "n_test=32", "-P", "n_val=16", "--workers", "2",
            "--trial-timeout", f"{LIMIT:g}", "-o", str(out), "--no-progress", "--no-figures"]
    assert main(argv) == 1
    _nothing_left_running(pids)
    captured = capsys.readouterr()
    assert captured.out == ""
    last = captured.err.strip().splitlines()[-1]
    why = f"its worker's set-up (importing the plugins [{plugin!r}]) did not finish within {LIMIT:g} s"
    assert last.startswith("colayers: error: 1 of 2 trials failed (shortest_path / ") and why in last, last
    (failed,) = _failures(out)
    assert failed["reason"] == why
    assert len(complete_trials(read_results(out / RESULTS_FILE))) == 1  # the other trial went on

    argv[argv.index("--workers") + 1] = "1"
    assert main(argv) == 0  # the rerun (serial, to save two worker starts) retries it
    assert "2 trials: 1 complete (skipped), 0 incomplete (restarted), 1 new" in capsys.readouterr().err
    _assert_exactly_once(out / RESULTS_FILE, trials=2, epochs=2)


def test_a_trial_stuck_in_this_process_is_interrupted_and_the_others_go_on(tmp_path, monkeypatch, hang, capsys):
    plugin, _pids = hang
    monkeypatch.setenv("HANG_METHOD", "1")
    handler = signal.getsignal(signal.SIGALRM)
    cfg = _config(tmp_path, plugin)  # workers = 1: in this process, under SIGALRM
    with pytest.raises(StudyError, match=r"^1 of 2 trials failed \(shortest_path / stuck / seed 0: it did not finish"):
        run_study(cfg, progress=False, status_every=0.5)  # the default log: stderr
    assert signal.getsignal(signal.SIGALRM) is handler and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "running: shortest_path / stuck / seed 0 (running, epoch 1 of 2 done, " in captured.err
    assert "trial shortest_path / stuck / seed 0 failed: it did not finish within its time limit" in captured.err
    rows = read_results(Path(cfg.output) / RESULTS_FILE)
    assert list(complete_trials(rows)) == [("shortest_path", "spo+", 0, rows[-1]["settings"])]
    monkeypatch.delenv("HANG_METHOD")
    assert len(run_study(cfg, progress=False, log=lambda m: None)) == 4
    _assert_exactly_once(Path(cfg.output) / RESULTS_FILE, trials=2, epochs=2)


@pytest.mark.parametrize("value", [0, -1.0, math.nan, True, "60"])
def test_trial_timeout_must_be_a_positive_number(tmp_path, value):
    cfg = config_from_dict({"preset": "tiny", "trial_timeout": value, "output": str(tmp_path / "t")})
    with pytest.raises(ValueError, match=r"^trial_timeout must be a number of seconds > 0 \(inf: no limit\); got "):
        cfg.validate()


def test_trial_timeout_is_not_a_trial_setting(tmp_path):
    base = {"preset": "tiny", "output": str(tmp_path / "t")}
    a, b = config_from_dict(base), config_from_dict({**base, "trial_timeout": math.inf})
    assert b.validate().trial_timeout == math.inf and a.trial_timeout == 3600.0
    assert a.effective()["trials"] == b.effective()["trials"]  # a rerun with another limit resumes the same trials
