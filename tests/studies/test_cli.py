"""Tests of the ``colayers`` command line: help, a tiny study end to end, config files, errors, report, bars."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from colayers.cli import main
from colayers.studies.config import load_config, preset
from colayers.studies.report import summarize
from colayers.studies.runner import RESULTS_FILE, read_results


def test_no_subcommand_prints_help(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    assert "study" in out and "report" in out


# The study's quality bars in a bounded form, for every method: seed 0, n = 200, 3 epochs of batch 8 (75 steps).
# Measured: spo+ 0.077, fy 0.123, imle 0.093, aimle 0.212, blackbox 0.123, identity 0.339, two-stage 0.191,
# direct 0.117; the untrained linear model scores about 0.67 (computed in the test). Each bar sits well above its
# method's value and below 0.7 x the untrained value, so an untrained method (zero gradient) or a broken one
# (a flipped sign drives the regret up) fails it.
BOUNDED_BARS = {"spo+": 0.12, "fy": 0.18, "imle": 0.15, "aimle": 0.32, "blackbox": 0.18, "identity": 0.45,
                "two-stage": 0.30, "direct": 0.18}


def _untrained_regret(n=200, n_test=200, seed=0):
    import torch

    from colayers.metrics import normalized_regret
    from colayers.studies.problems import make_problem

    prob = make_problem("shortest_path", seed=seed, n=n, n_test=n_test, n_val=0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = prob.make_model()
    with torch.no_grad():
        theta = model(prob.x_test)
    return float(normalized_regret(prob.oracle(theta), prob.theta_test, prob.y_test, oracle=prob.oracle,
                                   reduction="mean"))


def test_tiny_study_end_to_end_meets_bounded_bars_for_every_method_and_report_rebuild(tmp_path, capsys):
    out = tmp_path / "tiny"
    # CI's reduced study: every method, small n, few epochs.
    argv = ["study", "--seeds", "0", "--epochs", "3", "-P", "n=200", "-P", "n_test=200", "-P", "n_val=100",
            "-P", "deg=4", "--batch-size", "8", "--methods", ",".join(BOUNDED_BARS), "-o", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    for m in BOUNDED_BARS:
        assert f" {m} " in printed
    names = {p.name for p in out.iterdir()}
    assert {"results.jsonl", "config.json", "summary.md", "summary.csv", "final_shortest_path.png",
            "regret_epoch_shortest_path.png", "regret_time_shortest_path.png"} <= names
    recs = read_results(out / RESULTS_FILE)
    assert len(recs) == len(BOUNDED_BARS) * 3
    rows = {r["method"]: r for r in summarize(recs)}
    untrained = _untrained_regret()
    assert untrained > 0.6
    for method, bar in BOUNDED_BARS.items():
        assert bar < 0.7 * untrained
        assert rows[method]["normalized_regret"][0] <= bar, (method, rows[method]["normalized_regret"])
    (out / "summary.md").unlink()
    assert main(["report", str(out), "--no-figures"]) == 0
    assert capsys.readouterr().out.strip() == printed.strip()
    assert (out / "summary.md").exists()


def test_python_dash_m_runs_a_config_file(tmp_path):
    cfg = {
        "preset": "tiny",
        "methods": [{"name": "blackbox", "params": {"lambda_": 5.0}, "label": "bb5"}, "two-stage"],
        "epochs": 1,
        "output": str(tmp_path / "from-json"),
    }
    path = tmp_path / "study.json"
    path.write_text(json.dumps(cfg))
    done = subprocess.run([sys.executable, "-m", "colayers", "study", "--config", str(path), "--no-progress",
                           "--no-figures"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "bb5" in done.stdout and "two-stage" in done.stdout
    assert {r["method"] for r in read_results(tmp_path / "from-json" / RESULTS_FILE)} == {"bb5", "two-stage"}


def test_toml_config_and_flags_override(tmp_path):
    path = tmp_path / "study.toml"
    path.write_text(
        'preset = "default"\nepochs = 7\nseeds = [4, 5]\n\n[[methods]]\nname = "fy"\n'
        'params = { epsilon = 0.5, num_samples = 3 }\n\n[[methods]]\nname = "spo+"\n'
    )
    cfg = load_config(path)
    assert cfg.epochs == 7 and cfg.seeds == [4, 5]
    assert [(m.name, m.params) for m in cfg.methods] == [("fy", {"epsilon": 0.5, "num_samples": 3}), ("spo+", {})]
    assert cfg.problems[0].params["deg"] == 6  # from the preset
    from colayers.cli import _study_config, build_parser

    args = build_parser().parse_args(["study", "--config", str(path), "--epochs", "2", "-M", "fy.epsilon=2",
                                      "-P", "n=50", "--methods", "fy"])
    cfg = _study_config(args)
    assert cfg.epochs == 2 and [m.name for m in cfg.methods] == ["fy"]
    assert cfg.methods[0].params == {"epsilon": 2, "num_samples": 3}
    assert cfg.problems[0].params["n"] == 50


@pytest.mark.parametrize(
    "argv, field",
    [
        (["--methods", "spo+,bogus"], "methods[1].name"),
        (["--problems", "nowhere"], "problems[0].name"),
        (["--epochs", "0"], "epochs"),
        (["--lr", "0"], "lr"),
        (["--lr-milestones", "30"], "lr_milestones"),
        (["--seeds", "a,b"], "seeds"),
        (["-M", "imle.lambda_=-1"], "methods[3].params.lambda_"),
        (["--select", "best", "-P", "n_val=0"], "select"),
        (["-M", "nomethod.x=1"], "nomethod"),
        (["-P", "deg=0"], "deg"),
        (["--trial-timeout", "0"], "trial_timeout"),
        (["--trial-timeout", "nan"], "trial_timeout"),
    ],
)
def test_bad_flags_fail_with_the_field_named(tmp_path, capsys, argv, field):
    out = tmp_path / "bad"
    assert main(["study", "-o", str(out), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err
    assert "colayers: error:" in err and field in err.split("colayers: error:", 1)[1]
    assert not (out / RESULTS_FILE).exists()


def test_bad_config_file_fails(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text('{"epochs": 3, "colour": "red", "preset": "tiny"}')
    assert main(["study", "--config", str(path)]) == 2
    assert "colour" in capsys.readouterr().err
    path.write_text("{not json")
    assert main(["study", "--config", str(path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_unwritable_output_fails(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["study", "-o", str(tmp_path / "f" / "sub")]) == 2
    assert "output directory" in capsys.readouterr().err


BARS = {"spo+": 0.095, "fy": 0.095, "imle": 0.105, "blackbox": 0.12, "two-stage": 0.15}


@pytest.mark.slow
def test_default_study_meets_the_bars_and_tells_methods_apart(tmp_path):
    """The full default study (`colayers study`): mean normalized test regret over its 5 seeds, and the paired
    t-test against two-stage (the reference) below 0.05 for the decision-focused methods (measured: p = 0.0008
    spo+, 0.002 fy, 0.006 imle, 0.02 blackbox; docs/studies.md)."""
    from colayers.studies.report import paired_comparisons
    from colayers.studies.runner import run_study

    cfg = preset("default", output=str(tmp_path / "default"))
    recs = run_study(cfg, progress=False)
    rows = {r["method"]: r for r in summarize(recs)}
    for method, bar in BARS.items():
        assert rows[method]["normalized_regret"][0] <= bar, (method, rows[method]["normalized_regret"])
    paired = {r["method"]: r for r in paired_comparisons(recs)}
    for method in ("spo+", "fy", "imle", "blackbox"):
        assert paired[method]["reference"] == "two-stage" and paired[method]["seeds"] == 5
        assert paired[method]["diff"] < 0 and paired[method]["p"] < 0.05, paired[method]


def test_default_preset_is_the_documented_setting():
    cfg = preset("default")
    assert [p.name for p in cfg.problems] == ["shortest_path"]
    assert {k: cfg.problems[0].params[k] for k in ("n", "deg", "noise")} == {"n": 1000, "deg": 6, "noise": 0.5}
    # two-stage first: the reference of the paired comparisons
    assert [m.name for m in cfg.methods] == ["two-stage", "spo+", "fy", "imle", "aimle", "blackbox", "identity"]
    assert cfg.seeds == [0, 1, 2, 3, 4] and cfg.epochs == 20
    assert Path(cfg.output).name == "colayers-study"


def test_warcraft_preset_bounded_form(tmp_path, capsys):
    out = tmp_path / "warcraft"
    argv = ["study", "--preset", "warcraft", "-P", "n=24", "-P", "n_test=8", "--epochs", "1", "--batch-size", "12",
            "--lr-milestones", "", "--workers", "1", "-o", str(out), "--no-progress", "--no-figures"]
    # the preset's step schedule (epochs 15, 20) does not fit one epoch: it is named before any training
    assert main([a for a in argv if a not in ("--lr-milestones", "")]) == 2
    assert "lr_milestones" in capsys.readouterr().err and not (out / RESULTS_FILE).exists()
    assert main(argv) == 0
    recs = {r["method"]: r for r in read_results(out / RESULTS_FILE)}
    assert sorted(recs) == ["blackbox", "direct", "fy", "imle", "two-stage"]
    for r in recs.values():
        # every decoded prediction is a path: its cost is at least the optimal cost
        assert r["cost_ratio"] >= 1.0 - 1e-5 and r["normalized_regret"] >= -1e-6
    assert recs["direct"]["oracle_calls"] == recs["two-stage"]["oracle_calls"] == 0
    assert recs["imle"]["oracle_calls"] == 2 * 2  # 2 batches, forward and finite-difference target each
