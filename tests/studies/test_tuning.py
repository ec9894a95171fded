"""Tests of fair tuning (``tune = N``): Optuna on the validation split, the same budget for every method, the chosen
values recorded in config.json before any trial and reused by later runs without tuning again."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from colayers.studies import tuning
from colayers.studies.config import MethodSpec, ProblemSpec, config_from_dict
from colayers.studies.registry import register_method
from colayers.studies.runner import RESULTS_FILE, StudyInterrupted, read_results, run_study

SP = {"n": 48, "n_test": 32, "n_val": 32, "deg": 4, "noise": 0.5}


def tuned_config(tmp_path: Path, **over):
    data = {"name": "tuned", "problems": [{"name": "shortest_path", "params": dict(SP)}],
            "methods": ["spo+", "blackbox", "two-stage"], "seeds": [0, 1], "epochs": 1, "batch_size": 16,
            "tune": 3, "output": str(tmp_path / "study")}
    data.update(over)
    return config_from_dict(data)


def no_optuna():
    raise AssertionError("Optuna was called although the tuned values are recorded")


def test_tuned_values_are_recorded_used_and_reused_without_tuning_again(tmp_path, monkeypatch):
    cfg = tuned_config(tmp_path)
    recs = run_study(cfg, progress=False, log=lambda m: None)
    data = json.loads((Path(cfg.output) / "config.json").read_text())
    assert set(data["tuned"]) == {"shortest_path / spo+", "shortest_path / blackbox", "shortest_path / two-stage"}
    for key, entry in data["tuned"].items():
        assert entry["trials"] == 3 and math.isfinite(entry["val_normalized_regret"])
        settings = data["trials"][key]["settings"]["method_params"]
        for name, value in entry["params"].items():  # the trials ran with the chosen values
            assert settings[name] == pytest.approx(value)
        assert 1e-3 <= entry["params"]["lr"] <= 1e-1
    assert 1.0 <= data["tuned"]["shortest_path / blackbox"]["params"]["lambda_"] <= 100.0
    # a second run on the same directory reads them back: no Optuna, no trial re-run, the same settings
    monkeypatch.setattr(tuning, "_optuna", no_optuna)
    again = tuned_config(tmp_path)
    recs2 = run_study(again, progress=False, log=lambda m: None)
    assert again.tuned == data["tuned"]
    assert [r["attempt"] for r in recs2] == [r["attempt"] for r in recs]
    assert len(read_results(Path(cfg.output) / RESULTS_FILE)) == len(recs) == 3 * 2


def test_tuning_is_written_before_the_trials_and_a_killed_run_resumes_without_retuning(tmp_path, monkeypatch):
    from colayers.studies import runner

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(runner, "_run_serial", killed)
        with pytest.raises(StudyInterrupted):
            run_study(tuned_config(tmp_path, methods=["spo+", "two-stage"]), progress=False, log=lambda m: None)
    data = json.loads((tmp_path / "study" / "config.json").read_text())
    assert set(data["tuned"]) == {"shortest_path / spo+", "shortest_path / two-stage"}
    assert not (tmp_path / "study" / RESULTS_FILE).exists()
    monkeypatch.setattr(tuning, "_optuna", no_optuna)
    recs = run_study(tuned_config(tmp_path, methods=["spo+", "two-stage"]), progress=False, log=lambda m: None)
    rows = read_results(tmp_path / "study" / RESULTS_FILE)
    keys = [(r["method"], r["seed"], r["epoch"]) for r in rows]
    assert len(keys) == len(set(keys)) == len(recs) == 2 * 2  # every row exactly once


def test_every_method_gets_the_same_budget(tmp_path, monkeypatch):
    calls: dict[str, list[dict]] = {}

    def fake_score(config, problem, method):
        calls.setdefault(method.label, []).append(dict(method.params))
        return abs(math.log10(method.params["lr"]) + 2)  # best at lr = 0.01

    monkeypatch.setattr(tuning, "_validation_score", fake_score)
    cfg = tuned_config(tmp_path, methods=["spo+", "fy", "imle", "two-stage"], tune=5)
    cfg.validate()
    tuning.tune_study(cfg)
    assert {k: len(v) for k, v in calls.items()} == {"spo+": 5, "fy": 5, "imle": 5, "two-stage": 5}
    assert {k for p in calls["imle"] for k in p} == {"lr", "epsilon", "lambda_"}  # the declared space, and lr
    assert {k for p in calls["two-stage"] for k in p} == {"lr"}


def test_the_search_is_deterministic_and_fixed_params_are_not_searched(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "_validation_score", lambda c, p, m: (m.params["epsilon"] - 0.3) ** 2 + m.params["lr"])
    cfg = tuned_config(tmp_path, methods=[{"name": "fy", "params": {"num_samples": 3}}], tune=6)
    a = tuning.tune_pair(cfg, cfg.problems[0], cfg.methods[0])
    b = tuning.tune_pair(cfg, cfg.problems[0], cfg.methods[0])
    assert a == b and set(a["params"]) == {"lr", "epsilon"}
    assert tuning.search_space(MethodSpec("fy", {"lr": 0.1, "epsilon": 1.0})) == {}


def test_a_changed_budget_tunes_again(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "_validation_score", lambda c, p, m: m.params["lr"])
    cfg = tuned_config(tmp_path, methods=["two-stage"], tune=2)
    tuning.tune_study(cfg)
    seen = []
    monkeypatch.setattr(tuning, "tune_pair", lambda c, p, m: seen.append(m.label) or {"params": {}, "trials": 4,
                                                                                       "val_normalized_regret": 0.0})
    tuning.tune_study(tuned_config(tmp_path, methods=["two-stage"], tune=2))
    assert seen == []
    tuning.tune_study(tuned_config(tmp_path, methods=["two-stage"], tune=4))
    assert seen == ["two-stage"]


def test_missing_optuna_and_missing_validation_split_are_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    cfg = tuned_config(tmp_path)
    with pytest.raises(ValueError, match=r"Optuna.*colayers\[tune\]"):
        tuning.tune_pair(cfg, cfg.problems[0], cfg.methods[0])
    monkeypatch.delitem(sys.modules, "optuna")
    cfg = tuned_config(tmp_path, problems=[{"name": "shortest_path", "params": {**SP, "n_val": 0}}])
    with pytest.raises(ValueError, match="validation split"):
        tuning.tune_study(cfg)


def test_bad_tuning_settings_and_search_spaces_are_refused(tmp_path):
    with pytest.raises(ValueError, match="tune must be an integer ≥ 0"):
        tuned_config(tmp_path, tune=-1).validate()
    with pytest.raises(ValueError, match=r"tuned\['shortest_path / fy'\].params.epsilon"):
        tuned_config(tmp_path, methods=["fy"], tuned={"shortest_path / fy": {"params": {"epsilon": -1}}}).validate()
    with pytest.raises(ValueError, match="search_space"):
        register_method("tune_bad_space", defaults={"eps": 1.0}, search_space={"eps": ("log", 0.0, 1.0)})
    with pytest.raises(ValueError, match="names no hyper-parameter"):
        register_method("tune_bad_key", defaults={"eps": 1.0}, search_space={"epsilon": ("log", 0.1, 1.0)})


def test_given_tuned_values_replace_the_defaults_but_not_the_studys_params(tmp_path):
    cfg = tuned_config(tmp_path, methods=[{"name": "blackbox", "params": {"lambda_": 7.0}}],
                       tuned={"shortest_path / blackbox": {"params": {"lambda_": 3.0, "lr": 0.02}}})
    eff = cfg.effective_method(ProblemSpec("shortest_path", SP), cfg.methods[0]).params
    assert eff["lambda_"] == 7.0 and eff["lr"] == 0.02
