"""Per-epoch curves for TensorBoard: the event files, read back by TensorBoard's own reader, hold the study's
per-epoch records; one writer per trial in the parent process, also with worker processes; stale attempts."""

import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from colayers.cli import main
from colayers.studies import read_results, run_study
from colayers.studies.config import config_from_dict
from colayers.studies.tensorboard import TensorBoardLog, scalars_of

SMALL_SP = {"n": 48, "n_test": 32, "n_val": 16, "deg": 4, "noise": 0.5}


def _config(tmp_path: Path, **over):
    data = {"name": "tb", "problems": [{"name": "shortest_path", "params": dict(SMALL_SP)}],
            "methods": ["spo+", "two-stage"], "seeds": [0, 1], "epochs": 3, "batch_size": 16, "lr": 0.01,
            "output": str(tmp_path / "study"), "tensorboard": True}
    data.update(over)
    return config_from_dict(data)


def _curves(run: Path) -> dict[str, list[tuple[int, float]]]:
    acc = EventAccumulator(str(run))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _check_curves_equal_records(tb_dir: Path, records: list[dict]) -> None:
    trials = {(r["problem"], r["method"], r["seed"]) for r in records}
    assert sorted(str(p.relative_to(tb_dir)) for p in tb_dir.glob("*/*/seed_*")) == sorted(
        f"{p}/{m}/seed_{s}" for p, m, s in trials)
    for problem, method, seed in trials:
        rows = sorted((r for r in records if (r["problem"], r["method"], r["seed"]) == (problem, method, seed)),
                      key=lambda r: r["epoch"])
        curves = _curves(tb_dir / problem / method / f"seed_{seed}")
        expected_tags = set().union(*(scalars_of(r) for r in rows))
        assert {"train/loss", "val/normalized_regret", "test/exact_match", "oracle/calls"} <= expected_tags
        assert set(curves) == expected_tags
        for tag, points in curves.items():
            assert [step for step, _ in points] == [r["epoch"] for r in rows]  # one point per epoch, no stale one
            for (_, value), row in zip(points, rows):
                # TensorBoard stores scalars as float32: relative error at most 2^-24
                assert value == pytest.approx(scalars_of(row)[tag], rel=2**-23, abs=1e-30)


def test_curves_equal_the_study_records(tmp_path):
    config = _config(tmp_path)
    stale = tmp_path / "study" / "tensorboard" / "shortest_path" / "spo+" / "seed_0"
    with SummaryWriter(log_dir=str(stale)) as w:  # an earlier, incomplete attempt of that trial
        w.add_scalar("train/loss", 123.0, 7)
    records = run_study(config, progress=False, log=lambda m: None)
    assert records == read_results(tmp_path / "study" / "results.jsonl")
    _check_curves_equal_records(tmp_path / "study" / "tensorboard", records)
    # a rerun skips the complete trials and writes nothing more
    before = sorted(p.stat().st_size for p in (tmp_path / "study" / "tensorboard").rglob("events.out.*"))
    run_study(config, progress=False, log=lambda m: None)
    assert sorted(p.stat().st_size for p in (tmp_path / "study" / "tensorboard").rglob("events.out.*")) == before


def test_curves_with_worker_processes_and_the_cli(tmp_path, capsys):
    out, tb = tmp_path / "study", tmp_path / "curves"
    argv = ["study", "--preset", "tiny", "-P", "n=40", "-P", "n_val=16", "--seeds", "0,1", "--epochs", "2",
            "--workers", "2", "-o", str(out), "--tensorboard", str(tb), "--no-progress", "--no-figures"]
    assert main(argv) == 0
    capsys.readouterr()
    records = read_results(out / "results.jsonl")
    assert len(records) == 2 * 2 * 2
    _check_curves_equal_records(tb, records)
    assert not (out / "tensorboard").exists()


def test_tensorboard_setting_and_missing_package(tmp_path, monkeypatch):
    assert _config(tmp_path, tensorboard=False).tensorboard_dir() is None
    assert _config(tmp_path, tensorboard="x/y").tensorboard_dir() == Path("x/y")
    with pytest.raises(ValueError, match="tensorboard must be true, false or a directory path; got 3"):
        _config(tmp_path, tensorboard=3).validate()
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if the extra were not installed
    with pytest.raises(ValueError, match=r"needs the 'tensorboard' package.*pip install 'colayers\[tensorboard\]'"):
        TensorBoardLog(tmp_path)
    with pytest.raises(ValueError, match="needs the 'tensorboard' package"):
        run_study(_config(tmp_path), progress=False, log=lambda m: None)
    assert not (tmp_path / "study" / "results.jsonl").exists()  # refused before any training


def test_run_dirs_are_safe_path_components(tmp_path):
    log = TensorBoardLog(tmp_path)
    rec = {"problem": "p", "method": "fy epsilon=0.5/x", "seed": 3, "settings": "s", "attempt": "a", "epoch": 1,
           "train_loss": 1.5, "exact_match": True}
    assert log.run_dir(rec) == tmp_path / "p" / "fy_epsilon=0.5_x" / "seed_3"
    log.write(rec)
    log.close_all()
    assert _curves(log.run_dir(rec)) == {"train/loss": [(1, 1.5)]}  # booleans are not scalars
