"""Plugins and registries: your own problems and methods, in this process and in every worker; per-problem
defaults, --list, sweeps, configurable optimizers, and the errors of bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from colayers.cli import main
from colayers.studies import registry
from colayers.studies.config import config_from_dict
from colayers.studies.methods import check_method_params, make_method
from colayers.studies.problems import make_problem
from colayers.studies.runner import RESULTS_FILE, read_results, run_study

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = str(ROOT / "examples" / "spanning_tree.py")


@pytest.fixture
def clean_registry():
    """Undo registrations made by a test."""
    saved = (dict(registry.PROBLEMS), dict(registry.METHODS), dict(registry.TUNED), dict(registry._LOADED))
    yield
    for live, old in zip((registry.PROBLEMS, registry.METHODS, registry.TUNED, registry._LOADED), saved):
        live.clear()
        live.update(old)


def test_the_spanning_tree_example_runs_from_the_cli_in_two_workers(tmp_path, capsys, clean_registry):
    out = tmp_path / "st"
    argv = ["study", "--plugin", EXAMPLE, "--problems", "spanning_tree", "--methods", "perceptron,two-stage",
            "--seeds", "0", "--epochs", "4", "-P", "n=100", "-P", "n_test=60", "-P", "n_val=30", "--lr", "0.05",
            "--workers", "2", "-o", str(out), "--no-progress", "--no-figures"]
    assert main(argv) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "spanning_tree  perceptron" in printed and "spanning_tree  two-stage" in printed
    recs = read_results(out / RESULTS_FILE)
    per = [r for r in recs if r["method"] == "perceptron"]
    assert [r["epoch"] for r in per] == [1, 2, 3, 4]
    assert per[-1]["oracle_calls"] > 0 and 0 <= per[-1]["hamming"] <= 1
    assert per[-1]["val_normalized_regret"] < per[0]["val_normalized_regret"]  # it learns


_MAIN_SCRIPT = """
import sys, torch
from colayers.studies import register_method, register_problem, run_study
from colayers.studies.config import config_from_dict
from colayers.studies.problems import make_problem


def my_problem(*, seed=0, device="cpu", n=40):
    prob = make_problem("topk", seed=seed, device=device, n=n, n_test=20, n_val=10, num_items=6, k=2)
    prob.name = "my_problem"
    return prob


def my_method(ctx, *, scale):
    from colayers.studies.methods import _TwoStage

    return _TwoStage(ctx.oracle, ctx.event_ndim)


if __name__ == "__main__":  # registered here only: the spawned workers must still know both names
    register_problem("my_problem")(my_problem)
    register_method("my_method", defaults={"scale": 1.0})(my_method)
    if sys.argv[2] == "lambda":
        register_problem("anonymous")(lambda **kw: my_problem(**kw))
    cfg = config_from_dict({"problems": ["my_problem"], "methods": ["my_method", "two-stage"], "seeds": [0, 1],
                            "epochs": 2, "workers": 2, "output": sys.argv[1]})
    print(len(run_study(cfg, progress=False)))
"""


def test_registrations_under_main_reach_spawned_workers(tmp_path):
    script = tmp_path / "my_study.py"
    script.write_text(textwrap.dedent(_MAIN_SCRIPT))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "out"), "plain"], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-1] == "8"  # 2 methods x 2 seeds x 2 epochs
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "out2"), "lambda"], capture_output=True,
                          text=True, timeout=300, env=env)
    assert done.returncode != 0
    assert "problem 'anonymous' cannot be sent to worker processes" in done.stderr
    assert "top level of a module" in done.stderr


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--plugin", "no_such_module_xyz"], "--plugin[0]: plugin module 'no_such_module_xyz' cannot be imported"),
        (["--plugin", "missing/file.py"], "--plugin[0]: plugin file 'missing/file.py' does not exist"),
        (["-M", "imle.lambda_=1,-5"], "-M imle.lambda_: sweep value -5 is invalid"),
        (["-M", "imle.task_loss=regret,nope"], "-M imle.task_loss: sweep value 'nope' is invalid"),
        (["-M", "imle.bogus=1"], "unknown hyper-parameter 'bogus' for method 'imle'; valid: ['epsilon', 'lambda_'"),
        (["--optimizer", "Nope"], "optimizer must name a torch.optim optimizer class"),
    ],
)
def test_bad_plugins_sweeps_and_keywords_are_one_line_errors_with_status_2(tmp_path, capsys, clean_registry, argv,
                                                                          needle):
    assert main(["study", "-o", str(tmp_path / "bad"), "--no-progress", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("colayers: error: ")
    assert needle in err, err
    assert not (tmp_path / "bad" / RESULTS_FILE).exists()


def test_a_plugin_registering_a_taken_name_is_refused(tmp_path, capsys, clean_registry):
    plugin = tmp_path / "dup_plugin.py"
    plugin.write_text("from colayers.studies import register_method\n\n"
                      "@register_method('fy', defaults={})\ndef build(ctx):\n    return None\n")
    assert main(["study", "--plugin", str(plugin), "-o", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "--plugin[0]" in err and "method 'fy' is already registered" in err
    # the same builder registered twice (a module imported twice) is fine
    registry.register_problem("twice")(make_problem)
    registry.register_problem("twice")(make_problem)


def test_list_prints_problems_methods_tuned_defaults_and_presets(capsys, clean_registry):
    assert main(["study", "--list", "--plugin", EXAMPLE]) == 0
    out = capsys.readouterr().out
    for needle in ("shortest_path:", "n_val=200", "imle:", "lambda_=10.0", "shortest_path / imle: epsilon=0.5",
                   "lambda_=50.0", "warcraft / blackbox:", "presets:", "default: problems shortest_path",
                   "spanning_tree:", "perceptron:", "margin=1.0"):
        assert needle in out, needle


def test_sweeps_expand_into_one_labelled_method_each(tmp_path):
    from colayers.cli import _study_config, build_parser

    args = build_parser().parse_args(["study", "--methods", "imle,spo+", "-M", "imle.lambda_=1,10,100",
                                      "-M", "spo+.alpha=3", "-o", str(tmp_path)])
    cfg = _study_config(args)
    assert [(m.label, m.params) for m in cfg.methods] == [
        ("imle lambda_=1", {"lambda_": 1}), ("imle lambda_=10", {"lambda_": 10}),
        ("imle lambda_=100", {"lambda_": 100}), ("spo+", {"alpha": 3}),
    ]


def test_tuned_hyper_parameters_belong_to_their_problem():
    # the shortest path's tuned I-MLE settings do not follow the method to another problem
    assert check_method_params("imle", {}, problem="shortest_path")["lambda_"] == 50.0
    assert check_method_params("imle", {}, problem="knapsack") == registry.METHODS["imle"].defaults
    assert check_method_params("imle", {"lambda_": 7.0}, problem="shortest_path")["lambda_"] == 7.0
    cfg = config_from_dict({"preset": "default", "problems": ["knapsack"]})
    eff = cfg.effective_method(cfg.problems[0], next(m for m in cfg.methods if m.name == "imle"))
    assert eff.name == "imle" and eff.params["lambda_"] == 10.0 and eff.params["epsilon"] == 1.0


def test_every_tuned_entry_is_valid_and_the_field_methods_are_tuned_on_the_shortest_path():
    # a tuned value with a typo or out of range would only fail when a study reaches that pair
    for (prob, meth), params in registry.TUNED.items():
        assert prob in registry.PROBLEMS and meth in registry.METHODS, (prob, meth)
        assert check_method_params(meth, {}, problem=prob) == {**registry.METHODS[meth].defaults, **params}
    # chosen on tuning seeds 100-102 (docs/studies.md): PyEPO's one-sided sigma = 0.1 does far worse there
    assert check_method_params("pg", {}, problem="shortest_path") == {"sigma": 2.0, "two_sided": True}
    assert check_method_params("pg", {}, problem="knapsack") == {"sigma": 10.0, "two_sided": True}
    assert check_method_params("pg", {}, problem="tsp") == {"sigma": 0.1, "two_sided": False}  # untuned: generic
    assert check_method_params("cave", {}, problem="knapsack")["projection"] == "exact"
    assert check_method_params("ltr-pointwise", {}, problem="shortest_path") == {"solve_ratio": 0.1}
    for meth in ("ltr-listwise", "ltr-pairwise"):
        assert ("shortest_path", meth) in registry.TUNED


# ---------------------------------------------------------------------------------------------------------
# every configured hyper-parameter reaches the built layer


def _layer(objective):
    return getattr(objective, "layer", None) or getattr(getattr(objective, "fn", None), "layer", None)


def _epsilon(layer):
    pert = getattr(layer, "perturbation", None)
    return getattr(pert, "epsilon", getattr(layer, "epsilon", None))


@pytest.mark.parametrize(
    "name, params, check",
    [
        ("fy", {"epsilon": 0.37, "num_samples": 7, "multiplicative": False},
         lambda o: (_epsilon(_layer(o)), _layer(o).num_samples, type(_layer(o)).__name__)
         == (0.37, 7, "PerturbedAdditive")),
        ("fy", {"epsilon": 0.37, "multiplicative": True},
         lambda o: (_epsilon(_layer(o)), type(_layer(o)).__name__) == (0.37, "PerturbedMultiplicative")),
        ("imle", {"epsilon": 0.23, "lambda_": 17.0, "num_samples": 3, "task_loss": "hamming"},
         lambda o: (_epsilon(_layer(o)), float(_layer(o).lambda_), _layer(o).num_samples, o.task_loss)
         == (0.23, 17.0, 3, "hamming")),
        ("aimle", {"epsilon": 0.23, "num_samples": 2, "task_loss": "hamming"},
         lambda o: (_epsilon(_layer(o)), _layer(o).num_samples, o.task_loss) == (0.23, 2, "hamming")),
        ("blackbox", {"lambda_": 13.0, "task_loss": "hamming"},
         lambda o: (float(_layer(o).lambda_), o.task_loss) == (13.0, "hamming")),
        ("identity", {"task_loss": "hamming"}, lambda o: o.task_loss == "hamming"),
        ("spo+", {"alpha": 3.5}, lambda o: o.fn.alpha == 3.5),
        ("direct", {"decode": "threshold"}, lambda o: o.decode == "threshold"),
    ],
)
def test_every_configured_hyper_parameter_reaches_the_layer(name, params, check):
    from colayers import TopKSubset

    objective = make_method(name, TopKSubset(2), 1, seed=0, **params)
    assert check(objective)


def test_the_optimizer_and_scheduler_are_configurable(tmp_path):
    base = {"problems": [{"name": "shortest_path", "params": {"n": 32, "n_test": 16, "n_val": 8}}],
            "methods": ["two-stage"], "seeds": [0], "epochs": 2, "batch_size": 16}
    adam = run_study(config_from_dict({**base, "output": str(tmp_path / "a")}), progress=False, log=lambda m: None)
    sgd = run_study(config_from_dict({**base, "optimizer": "SGD", "optimizer_params": {"momentum": 0.5},
                                      "output": str(tmp_path / "s")}), progress=False, log=lambda m: None)
    cos = run_study(config_from_dict({**base, "scheduler": "StepLR", "scheduler_params": {"step_size": 1,
                                      "gamma": 0.0}, "output": str(tmp_path / "c")}), progress=False,
                    log=lambda m: None)
    assert adam[0]["train_loss"] != sgd[0]["train_loss"]
    assert cos[0]["train_loss"] == adam[0]["train_loss"]  # the same first epoch, then no step at all (lr 0)
    assert cos[1]["normalized_regret"] == cos[0]["normalized_regret"] != adam[1]["normalized_regret"]
    with pytest.raises(ValueError, match="optimizer/scheduler settings are invalid"):
        run_study(config_from_dict({**base, "optimizer_params": {"bogus": 1}, "output": str(tmp_path / "x")}),
                  progress=False)


def test_progress_bars_only_on_a_terminal(tmp_path, capsys):
    # stderr is not a terminal under pytest: no bars (no carriage returns or escape codes) without --no-progress
    assert main(["study", "--preset", "tiny", "-P", "n=40", "-P", "n_test=20", "-P", "n_val=10",
                 "-o", str(tmp_path / "t"), "--no-figures"]) == 0
    err = capsys.readouterr().err
    assert "\r" not in err and "\x1b" not in err
    assert err.splitlines()[0].startswith("colayers study 'tiny': 2 trials: 0 complete (skipped), 0 incomplete")
    assert torch.get_num_threads() >= 1


_EXITING_PLUGIN = """
import multiprocessing, sys

if {where} == "everywhere" or multiprocessing.parent_process() is not None:
    sys.exit({code})
"""


@pytest.mark.parametrize("code", ["", "0", "3", "'bye'"])
def test_a_plugin_calling_sys_exit_on_import_is_an_error_naming_it(tmp_path, capsys, clean_registry, code):
    plugin = tmp_path / "exiting_plugin.py"
    plugin.write_text(_EXITING_PLUGIN.format(where="'everywhere'", code=code))
    assert main(["study", "--plugin", str(plugin), "-o", str(tmp_path / "o"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("colayers: error: --plugin[0]: "), err
    assert f"plugin {str(plugin)!r} called sys.exit(" in err
    assert not (tmp_path / "o" / RESULTS_FILE).exists()


def test_the_command_does_not_exit_0_in_silence_when_a_plugin_exits(tmp_path):
    plugin = tmp_path / "exiting_plugin.py"
    plugin.write_text(_EXITING_PLUGIN.format(where="'everywhere'", code="0"))
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-m", "colayers", "study", "--plugin", str(plugin), "--preset", "tiny",
                           "-o", str(tmp_path / "o"), "--no-progress"], capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 2 and done.stdout == ""
    assert "exiting_plugin.py' called sys.exit(0) on import" in done.stderr


def test_a_plugin_exiting_only_in_the_workers_is_an_error_naming_it(tmp_path, capsys, clean_registry):
    plugin = tmp_path / "worker_exit_plugin.py"
    plugin.write_text(_EXITING_PLUGIN.format(where="'workers'", code="0"))
    argv = ["study", "--plugin", str(plugin), "--preset", "tiny", "-P", "n=40", "-P", "n_test=20", "-P", "n_val=10",
            "--workers", "2", "-o", str(tmp_path / "o"), "--no-progress", "--no-figures"]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("colayers: error: trial shortest_path / ") and "worker set-up failed" in err, err
    assert f"plugin {str(plugin)!r} called sys.exit(0) on import" in err


def test_a_builder_calling_sys_exit_during_the_study_is_an_error(tmp_path, capsys, clean_registry):
    plugin = tmp_path / "exiting_builder.py"
    plugin.write_text("import sys\nfrom colayers.studies import register_problem\n\n"
                      "@register_problem('quits')\ndef quits(*, seed=0, device='cpu'):\n    sys.exit(0)\n")
    assert main(["study", "--plugin", str(plugin), "--problems", "quits", "--methods", "spo+",
                 "-o", str(tmp_path / "o"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("colayers: error: the study was stopped by sys.exit(0) in a plugin's code"), err
