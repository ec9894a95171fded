"""Tests of the reproduction configs: their grids, a bounded run of the published cells, the page's table (ours beside
the published numbers with their sources, differences beyond the seed noise flagged), the command line."""

from __future__ import annotations

import json
import math
import statistics

import pytest

from colayers.cli import main
from colayers.studies.reproduce import (
    builtin_reproductions,
    cells,
    load_reproduction,
    reproduction_page,
    reproduction_rows,
    run_reproduction,
)
from colayers.studies.results import RESULTS_FILE, append_jsonl

PUBLISHED = {  # Tang & Khalil 2022 (PyEPO), normalized regret at n = 1000, noise half-width 0.5
    "pyepo_shortest_path": {("n1000-deg4-noise0.5", "spo+"): 0.077, ("n1000-deg4-noise0.5", "dbb"): 0.097,
                            ("n1000-deg4-noise0.5", "2-stage lr"): 0.088, ("n1000-deg6-noise0.5", "spo+"): 0.082,
                            ("n1000-deg6-noise0.5", "dbb"): 0.146},
    "pyepo_knapsack": {("n1000-deg4-noise0.5", "spo+"): 0.092},
    "pyepo_tsp": {("n1000-deg4-noise0.5", "spo+"): 0.068},
}
TINY = {"n": 24, "n_test": 16, "n_val": 8}
SMALLER = {"pyepo_tsp": {"num_nodes": 6}}  # 6 cities instead of 20 (Held-Karp instead of the integer program)


def test_builtin_configs_cover_the_full_grid_and_carry_the_published_numbers():
    assert {"pyepo_shortest_path", "pyepo_knapsack", "pyepo_tsp", "warcraft_12x12"} <= set(builtin_reproductions())
    for name, published in PUBLISHED.items():
        rep = load_reproduction(name)
        names = [c for c, _ in cells(rep)]
        assert len(names) == 2 * 4 * 2 and "n100-deg1-noise0.0" in names and "n1000-deg6-noise0.5" in names
        assert {(f"n{p['cell']['n']}-deg{p['cell']['deg']}-noise{p['cell']['noise']}", p["method"]): p["value"]
                for p in rep.published} == published
        assert all("Tang & Khalil 2022" in p["source"] for p in rep.published)
        labels = [m.label for m in cells(rep)[0][1].methods]
        assert {"spo+", "dbb", "2-stage lr"} <= set(labels)
        cfg = dict(cells(rep))["n1000-deg4-noise0.5"]
        assert cfg.problems[0].params["n"] == 1000 and cfg.problems[0].params["deg"] == 4
        assert cfg.output.endswith("n1000-deg4-noise0.5") and cfg.seeds == [0, 1, 2]


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_bounded_run_of_the_published_cells_gives_a_page_with_both_numbers(tmp_path, name):
    rep = load_reproduction(name)
    times = run_reproduction(rep, published_only=True, output=tmp_path, seeds=[0, 1], epochs=1,
                             problem_params={**TINY, **SMALLER.get(name, {})}, log=lambda m: None)
    published = PUBLISHED[name]
    assert set(times) == {c for c, _ in published} and all(t >= 0 for t in times.values())
    rows = reproduction_rows(rep, tmp_path)
    labels = [m["label"] for m in rep.study["methods"]]
    assert [(r["cell"], r["method"]) for r in rows] == [(c, m) for c in sorted(times) for m in labels]
    for r in rows:
        assert r["seeds"] == 2 and math.isfinite(r["mean"]) and r["std"] >= 0
        assert r["published"] == published.get((r["cell"], r["method"]))
        assert (r["differs"] is None) == (r["published"] is None)
    page = reproduction_page(rep, tmp_path, timing="CPU time: 1 s")
    table = [line for line in page.splitlines() if line.startswith("| ")]
    assert table[0] == "| cell | method | ours | published | differs? | source |"
    assert len(table) == 1 + len(rows)
    for (cell, method), value in published.items():
        (line,) = [t for t in table if t.startswith(f"| {cell} | {method} |")]
        cols = [c.strip() for c in line.strip("|").split("|")]
        assert cols[3] == f"{value:.3f}" and "±" in cols[2] and "Tang & Khalil 2022" in cols[5]
        assert cols[4] in ("**yes**", "no")
    assert "CPU time: 1 s" in page and rep.notes in page


def test_differs_means_outside_the_seed_noise(tmp_path):
    rep = load_reproduction("pyepo_knapsack")
    ours = [0.090, 0.095, 0.100]
    (tmp_path / "n1000-deg4-noise0.5").mkdir()
    for seed, value in enumerate(ours):
        append_jsonl(tmp_path / "n1000-deg4-noise0.5" / RESULTS_FILE, dict(
            problem="knapsack", method="spo+", seed=seed, settings="h", epoch=1, epochs=1, normalized_regret=value))
    (row,) = reproduction_rows(rep, tmp_path)
    half = 4.302652729911275 * statistics.stdev(ours) / math.sqrt(3)  # t_{0.975, 2} * s / sqrt(3)
    assert abs(0.095 - 0.092) < half and row["differs"] is False
    assert "Every published number compared here (1) lies within the seed noise" in reproduction_page(rep, tmp_path)
    rep.published[0]["value"] = 0.095 + 1.01 * half
    assert reproduction_rows(rep, tmp_path)[0]["differs"] is True
    page = reproduction_page(rep, tmp_path)
    assert "| n1000-deg4-noise0.5 | spo+ | 0.095 ± 0.005 |" in page and "**yes**" in page
    assert f"**Beyond the seed noise:** n1000-deg4-noise0.5 spo+ (0.095 ± 0.005 vs {0.095 + 1.01 * half:.3f})" in page


def test_bad_reproduction_files_are_refused_by_key(tmp_path):
    with open(load_reproduction("pyepo_knapsack").path) as f:
        good = json.load(f)
    cases = [({"grid": {"n": []}}, "grid must map"), ({"published": [{"cell": {"n": 1000, "deg": 4, "noise": 0.5},
              "method": "nope", "value": 1, "source": "x"}]}, "none of the study's method labels"),
             ({"published": [{"cell": {"n": 5, "deg": 4, "noise": 0.5}, "method": "spo+", "value": 1,
               "source": "x"}]}, "not a cell of the grid"), ({"extra": 1}, "must hold")]
    for change, message in cases:
        path = tmp_path / "bad.json"
        path.write_text(json.dumps({**good, **change}))
        with pytest.raises(ValueError, match=message):
            load_reproduction(path)
    with pytest.raises(ValueError, match="neither a built-in one"):
        load_reproduction("no_such_reproduction")


def test_reproduce_command_writes_the_page(tmp_path, capsys):
    with open(load_reproduction("pyepo_shortest_path").path) as f:
        data = json.load(f)
    data["grid"] = {"n": [1000], "deg": [4], "noise": [0.5]}
    data["study"]["problems"][0]["params"].update(n_test=16, n_val=8)
    data["study"]["methods"] = data["study"]["methods"][:3]
    data["published"] = [p for p in data["published"] if p["cell"]["deg"] == 4]
    path = tmp_path / "small.json"
    path.write_text(json.dumps(data))
    out = tmp_path / "out"
    assert main(["reproduce", str(path), "--seeds", "0", "--epochs", "1", "-o", str(out)]) == 0
    page = (out / "REPRODUCTION.md").read_text()
    assert "| n1000-deg4-noise0.5 | spo+ |" in page and "(n = 1)" in page and "0.077" in page
    assert page in capsys.readouterr().out


def test_tsp_config_holds_pyepo_settings():
    """PyEPO's TSP experiment (config/config_tsp.py, experiments.py): 20 nodes, 10 features, 20 epochs at n = 1000,
    Adam lr 0.01 for SPO+, DBB with the regret loss, λ = 20 and lr 0.05."""
    rep = load_reproduction("pyepo_tsp")
    cfg = dict(cells(rep))["n1000-deg4-noise0.5"]
    (prob,) = cfg.problems
    assert prob.name == "tsp" and prob.params == {"n_test": 1000, "p": 10, "num_nodes": 20, "n": 1000, "deg": 4,
                                                  "noise": 0.5}
    assert (cfg.epochs, cfg.batch_size, cfg.lr) == (20, 32, 0.01)
    dbb = cfg.effective_method(prob, [m for m in cfg.methods if m.label == "dbb"][0]).params
    assert dbb == {"lambda_": 20.0, "task_loss": "regret", "lr": 0.05}
    assert "config_tsp.py" in rep.notes


def _warcraft_root(tmp_path, size=12):
    from colayers.studies.warcraft_data import write_warcraft_split
    from tests.studies.test_warcraft_data import _split

    for split, n, seed in (("train", 4, 0), ("val", 2, 1), ("test", 3, 2)):
        write_warcraft_split(tmp_path / "data" / f"{size}x{size}", split, *_split(n, seed, size=size))
    return tmp_path / "data"


def test_warcraft_config_carries_the_papers_settings_and_both_measures():
    rep = load_reproduction("warcraft_12x12")
    ((name, cfg),) = cells(rep)
    assert name == "size12" and rep.metric == "exact_match" and rep.requires_data
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.lr_milestones, cfg.lr_decay) == (50, 70, 0.0005, [30, 40], 0.1)
    assert [m.name for m in cfg.methods] == ["imle", "blackbox", "fy", "dpo", "spo+", "two-stage"]
    assert cfg.problems[0].params == {"model": "resnet18", "size": 12}
    published = sorted((p["method"], p["value"]) for p in rep.published)
    assert published == [("blackbox", 26.5), ("blackbox", 95.2), ("dpo", 7.2), ("fy", 79.9), ("fy", 94.8),
                         ("imle", 97.2), ("spo+", 75.6), ("two-stage", 78.2)]
    assert all(("I-MLE" in p["source"]) == (p["value"] > 90) for p in rep.published)
    page = reproduction_page(rep, "/nonexistent")
    table = [line for line in page.splitlines() if line.startswith("| size12 |")]
    assert len(table) == 8 and all("| not run yet: needs the data | " in line for line in table)
    assert "| size12 | imle | not run yet: needs the data | 97.2 |" in page and "optimal-cost solutions (%)" in page


def test_warcraft_reproduction_refuses_without_data(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "warcraft_12x12", "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "give its directory with --data DIR" in err and "doi:10.17617/3.YJCQ5S" in err
    assert not (tmp_path / "out").exists()
    assert main(["reproduce", "warcraft_12x12", "--data", str(tmp_path / "missing"), "-o", str(tmp_path / "o")]) == 2
    assert "is not a directory: download the Warcraft shortest-path data set" in capsys.readouterr().err
    assert not (tmp_path / "o" / "size12" / RESULTS_FILE).exists()
    with pytest.raises(ValueError, match="none of the study's problems"):
        cells(load_reproduction("pyepo_knapsack"), data=tmp_path)


def test_warcraft_reproduction_runs_on_files_in_the_published_format(tmp_path, capsys):
    root = _warcraft_root(tmp_path)
    out = tmp_path / "out"
    argv = ["reproduce", "warcraft_12x12", "--data", str(root), "--seeds", "0", "--epochs", "1", "-o", str(out)]
    assert main(argv) == 2  # the config's lr decay after epochs 30 and 40 does not fit one epoch
    assert "lr_milestones must list epochs in [1, epochs)" in capsys.readouterr().err
    assert main(argv + ["--lr-milestones", ""]) == 0
    page = (out / "REPRODUCTION.md").read_text()
    rows = reproduction_rows(load_reproduction("warcraft_12x12"), out)
    assert len(rows) == 8 and all(r["seeds"] == 1 and 0 <= r["mean"] <= 100 for r in rows)
    eff = json.loads((out / "size12" / "config.json").read_text())
    assert eff["problems"][0]["params"]["data_dir"] == str(root) and (eff["epochs"], eff["lr_milestones"]) == (1, [])
    # ours in %: the share of the 3 test maps whose predicted path has optimal cost, a multiple of 100 / 3
    assert all(abs(r["mean"] * 3 / 100 - round(r["mean"] * 3 / 100)) < 1e-9 for r in rows)
    assert "| size12 | imle | " in page and "(n = 1) | 97.2 |" in page and page in capsys.readouterr().out
