"""Tests of study reports: summary statistics, Markdown/CSV tables, PNG figures, rebuild from a results file."""

from __future__ import annotations

import csv
import math
import statistics

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers.studies.report import build_report, final_records, format_table, plot_results, summarize, write_table
from colayers.studies.runner import RESULTS_FILE, append_jsonl


def record(method, seed, epoch, epochs=2, regret=0.1, settings="h", problem="p", **kw):
    rec = dict(
        problem=problem, method=method, seed=seed, settings=settings, epoch=epoch, epochs=epochs,
        normalized_regret=regret, exact_match=0.5, hamming=0.2, cost_ratio=1.1, train_time_s=1.0 * epoch,
        wall_time_s=2.0 * epoch, oracle_calls=10 * epoch, oracle_instances=100 * epoch,
    )
    rec.update(kw)
    return rec


def synthetic():
    recs = []
    for seed, final in ((0, 0.1), (1, 0.2), (2, 0.6)):
        recs += [record("a", seed, 1, regret=0.9), record("a", seed, 2, regret=final, exact_match=final)]
    recs += [record("b", 0, 1, regret=0.5), record("b", 0, 2, regret=0.4)]
    recs += [record("c", 0, 1, regret=0.3)]  # incomplete trial: never reported
    return recs


def test_summary_is_mean_and_sample_std_of_final_epochs():
    rows = summarize(synthetic())
    assert [r["method"] for r in rows] == ["a", "b"]
    a = rows[0]
    assert a["seeds"] == 3
    mean, std = a["normalized_regret"]
    assert mean == pytest.approx(0.3)
    assert std == pytest.approx(math.sqrt(((0.1 - 0.3) ** 2 + (0.2 - 0.3) ** 2 + (0.6 - 0.3) ** 2) / 2))
    assert a["oracle_calls"] == (20.0, 0.0)  # the final epoch's cumulative count
    assert rows[1]["normalized_regret"] == (pytest.approx(0.4), 0.0)


def test_last_written_settings_win_for_a_trial():
    recs = [record("a", 0, e, regret=0.5, settings="old") for e in (1, 2)]
    recs += [record("a", 0, e, regret=0.25, settings="new") for e in (1, 2)]
    finals = final_records(recs)
    assert len(finals) == 1 and finals[0]["settings"] == "new"


def test_tables_markdown_and_csv(tmp_path):
    rows = summarize(synthetic())
    text = format_table(rows)
    assert "0.3000 ± " in text and "50.0" in text.splitlines()[3]  # exact match in percent for b
    md, path = write_table(rows, tmp_path)
    md_lines = md.read_text().strip().splitlines()
    assert len(md_lines) == 2 + 2 + 2 and md_lines[2].startswith("| p | a | 3 |")  # + the note on n = 1
    with path.open() as f:
        table = list(csv.DictReader(f))
    assert [r["method"] for r in table] == ["a", "b"]
    assert float(table[0]["normalized_regret_mean"]) == pytest.approx(0.3)
    assert float(table[1]["exact_match_mean"]) == pytest.approx(0.5)


def test_figures_are_png_files(tmp_path):
    paths = plot_results(synthetic(), tmp_path)
    assert sorted(p.name for p in paths) == ["final_p.png", "regret_epoch_p.png", "regret_time_p.png"]
    for p in paths:
        data = p.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 1000


def test_build_report_rebuilds_from_the_results_file(tmp_path):
    for rec in synthetic():
        append_jsonl(tmp_path / RESULTS_FILE, rec)
    table, paths = build_report(tmp_path)
    assert table == format_table(summarize(synthetic()))
    assert {p.name for p in paths} >= {"summary.md", "summary.csv", "final_p.png"}


def test_build_report_errors(tmp_path):
    with pytest.raises(ValueError, match="no results file"):
        build_report(tmp_path)
    append_jsonl(tmp_path / RESULTS_FILE, record("c", 0, 1))  # only an incomplete trial
    with pytest.raises(ValueError, match="no complete trial"):
        build_report(tmp_path)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.0, 1.0, allow_nan=False), min_size=1, max_size=6))
def test_summary_matches_statistics_module(values):
    recs = [
        record("m", seed, e, epochs=2, regret=v if e == 2 else 1.0) for seed, v in enumerate(values) for e in (1, 2)
    ]
    mean, std = summarize(recs)[0]["normalized_regret"]
    assert mean == pytest.approx(statistics.fmean(values), abs=1e-12)
    assert std == pytest.approx(statistics.stdev(values) if len(values) > 1 else 0.0, abs=1e-9)


def test_select_best_reports_the_best_validation_epoch_on_the_test_split():
    recs = [record("a", 0, e, epochs=3, regret=t, val_normalized_regret=v, select="best")
            for e, t, v in ((1, 0.5, 0.4), (2, 0.3, 0.2), (3, 0.35, 0.25))]
    (final,) = final_records(recs)
    assert final["epoch"] == 2 and final["normalized_regret"] == 0.3  # chosen on validation, reported on test
    assert final["train_time_s"] == 3.0  # the cost of the whole trial
    last = [dict(r, select="last") for r in recs]
    assert final_records(last)[0]["epoch"] == 3


def test_paired_comparisons_match_scipy_and_a_hand_computed_interval():
    from scipy import stats

    from colayers.studies.report import format_paired, paired_comparisons

    ref, other = (0.10, 0.20, 0.30, 0.25), (0.12, 0.26, 0.31, 0.30)
    recs = [record("ref", s, 1, epochs=1, regret=r) for s, r in enumerate(ref)]
    recs += [record("new", s, 1, epochs=1, regret=r) for s, r in enumerate(other)]
    recs += [record("new", 9, 1, epochs=1, regret=5.0)]  # a seed the reference lacks: not paired
    (row,) = paired_comparisons(recs)
    d = [b - a for a, b in zip(ref, other)]
    mean = sum(d) / 4
    sd = statistics.stdev(d)
    half = 3.182446305284263 * sd / 2  # t_{0.975, 3} * sd / sqrt(4)
    assert (row["method"], row["reference"], row["seeds"]) == ("new", "ref", 4)
    assert row["diff"] == pytest.approx(mean)
    assert row["ci"] == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert row["p"] == pytest.approx(stats.ttest_rel(other, ref).pvalue)
    assert "new - ref = +0.0350" in format_paired([row])
    assert paired_comparisons(recs, reference="new")[0]["diff"] == pytest.approx(-mean)


def test_one_seed_rows_show_the_mean_alone_and_say_n_1(tmp_path):
    rows = summarize(synthetic())  # a: 3 seeds, b: 1 seed
    text = format_table(rows)
    line_b = next(l for l in text.splitlines() if l.startswith("p ") and " b " in l)
    assert "±" not in line_b and "0.4000" in line_b
    assert "0.3000 ± " in text and "n = 1" in text
    assert "n = 1" not in format_table(rows[:1])  # every row has seeds: no note
    _md, path = write_table(rows, tmp_path)
    with path.open() as f:
        table = list(csv.DictReader(f))
    assert table[1]["normalized_regret_std"] == "" and float(table[0]["normalized_regret_std"]) > 0


def test_final_figure_shows_each_problems_own_metric_on_a_fitted_axis(tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    from colayers.studies import report

    shown = []
    panel = report._metric_panel

    def spy(ax, prow, key):
        panel(ax, prow, key)
        shown.append((prow[0]["problem"], key, ax.get_ylim()))

    monkeypatch.setattr(report, "_metric_panel", spy)
    recs = []
    for problem in ("ranking", "knapsack", "shortest_path"):
        for m, base in (("a", 0.10), ("b", 0.12)):
            for s in range(3):
                recs.append(record(m, s, 1, epochs=1, problem=problem, regret=base + 0.003 * s, rank_distance=0.2,
                                   cost_ratio=1.1))
    plot_results(recs, tmp_path)
    keys = {(p, k) for p, k, _ in shown}
    assert keys == {("ranking", "normalized_regret"), ("ranking", "rank_distance"), ("knapsack", "normalized_regret"),
                    ("knapsack", "cost_ratio"), ("shortest_path", "normalized_regret"),
                    ("shortest_path", "exact_match")}
    # the regrets lie in [0.10, 0.126]: the axis is fitted to them, not started at 0
    for p, k, (lo, hi) in shown:
        if k == "normalized_regret":
            assert 0.05 < lo < 0.10 and 0.126 < hi < 0.2, (p, lo, hi)
    plt.close("all")


def test_curves_are_drawn_on_a_log_scale(tmp_path, monkeypatch):
    from colayers.studies import report

    scales = []
    real = report._curve_figure

    def spy(plt, trials, problem, x_key, xlabel, path):
        real(plt, trials, problem, x_key, xlabel, path)
        scales.append(plt.gcf().axes)

    import matplotlib.axes

    seen = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_yscale", lambda self, v, **kw: seen.append(v))
    monkeypatch.setattr(report, "_curve_figure", spy)
    plot_results(synthetic(), tmp_path)
    assert seen.count("log") == 2  # epoch and time curves


def test_paired_lines_mark_significance():
    from colayers.studies.report import format_paired

    row = dict(problem="p", method="m", reference="r", metric="normalized_regret", seeds=5, diff=-0.05,
               ci=(-0.07, -0.03), p=0.001)
    text = format_paired([row, dict(row, method="n", p=0.2)])
    assert "p = 0.001 *" in text and "p = 0.2 (" in text and "* p < 0.05" in text
