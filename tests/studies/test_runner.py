"""Tests of the study runner: counting oracle, atomic JSON lines, resume after a kill, parallel = serial."""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from colayers import ArgmaxOneHot, CountingOracle
from colayers.studies.config import config_from_dict
from colayers.studies.methods import METHODS, make_method, method_defaults
from colayers.studies.runner import (
    RESULTS_FILE,
    append_jsonl,
    complete_trials,
    read_results,
    run_study,
)
from tests.conftest import DEVICES

SMALL_SP = {"n": 64, "n_test": 64, "deg": 4, "noise": 0.5}


def small_config(tmp_path: Path, **over) -> object:
    data = {
        "name": "small",
        "problems": [{"name": "shortest_path", "params": dict(SMALL_SP)}],
        "methods": ["spo+", "two-stage"],
        "seeds": [0, 1],
        "epochs": 2,
        "batch_size": 16,
        "lr": 0.01,
        "output": str(tmp_path / "study"),
    }
    data.update(over)
    return config_from_dict(data)


def test_counting_oracle_counts_calls_and_instances_and_delegates():
    inner = ArgmaxOneHot()
    counted = CountingOracle(inner)
    theta = torch.randn(3, 5, 4, generator=torch.Generator().manual_seed(0))
    y = counted(theta)
    assert torch.equal(y, inner(theta))
    counted(theta[0])
    assert (counted.calls, counted.instances) == (2, 15 + 5)
    with counted.paused():
        counted(theta)
    assert (counted.calls, counted.instances) == (2, 20)
    assert torch.equal(counted.objective(theta, y), inner.objective(theta, y))


def test_counting_oracle_delegates_unknown_attributes():
    from colayers.oracles.grid import GridDAGShortestPath

    counted = CountingOracle(GridDAGShortestPath(3, 3))
    assert counted.num_edges == 12
    assert counted.edges == GridDAGShortestPath(3, 3).edges


def test_append_jsonl_is_atomic_under_concurrent_writers(tmp_path):
    path = tmp_path / "r.jsonl"
    payload = "x" * 5000  # lines longer than a pipe buffer's 4 KiB

    def writer(k):
        for i in range(50):
            append_jsonl(path, {"writer": k, "i": i, "payload": payload})

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 200
    recs = [json.loads(line) for line in lines]  # every line is whole
    assert sorted((r["writer"], r["i"]) for r in recs) == [(k, i) for k in range(4) for i in range(50)]


def test_read_results_ignores_a_truncated_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    append_jsonl(path, {"a": 1})
    append_jsonl(path, {"a": 2})
    with open(path, "a") as f:
        f.write('{"a": 3, "b"')  # a write cut by a crash
    assert read_results(path) == [{"a": 1}, {"a": 2}]


def test_complete_trials_requires_every_epoch():
    base = {"problem": "p", "method": "m", "settings": "h", "epochs": 3}
    recs = [dict(base, seed=0, epoch=e) for e in (1, 2, 3)] + [dict(base, seed=1, epoch=e) for e in (1, 3)]
    done = complete_trials(recs)
    assert list(done) == [("p", "m", 0, "h")]
    assert [r["epoch"] for r in done[("p", "m", 0, "h")]] == [1, 2, 3]


def test_run_study_records_metrics_and_resume_skips_complete_trials(tmp_path):
    cfg = small_config(tmp_path)
    recs = run_study(cfg, progress=False)
    assert len(recs) == 2 * 2 * 2  # methods x seeds x epochs
    for r in recs:
        assert 0.0 <= r["normalized_regret"] and 0.0 <= r["exact_match"] <= 1.0
        assert 0.0 <= r["hamming"] <= 1.0 and r["cost_ratio"] >= 1.0 - 1e-6
        assert r["wall_time_s"] >= r["train_time_s"] > 0
    spo = [r for r in recs if r["method"] == "spo+"]
    # SPO+ calls the oracle once per batch: 64 / 16 = 4 batches an epoch, 16 instances each
    assert [r["oracle_calls"] for r in spo if r["seed"] == 0] == [4, 8]
    assert [r["oracle_instances"] for r in spo if r["seed"] == 0] == [64, 128]
    assert all(r["oracle_calls"] == 0 for r in recs if r["method"] == "two-stage")
    before = (Path(cfg.output) / RESULTS_FILE).read_bytes()
    again = run_study(cfg, progress=False)  # everything complete: nothing re-run, file untouched
    assert (Path(cfg.output) / RESULTS_FILE).read_bytes() == before
    assert again == recs


def test_resume_discards_partial_trials_and_reruns_them(tmp_path):
    cfg = small_config(tmp_path, seeds=[0])
    full = run_study(cfg, progress=False)
    path = Path(cfg.output) / RESULTS_FILE
    lines = path.read_text().splitlines()
    # keep spo+'s complete trial and only the first epoch of two-stage, plus a truncated line
    keep = [ln for ln in lines if json.loads(ln)["method"] == "spo+"]
    partial = [ln for ln in lines if json.loads(ln)["method"] == "two-stage"][:1]
    path.write_text("\n".join(keep + partial) + "\n" + '{"trunc')
    again = run_study(cfg, progress=False)
    recs = read_results(path)
    assert len(recs) == len(full) == 4
    # spo+ kept verbatim (same timings), two-stage re-run from scratch with equal metrics
    assert [json.dumps(r, sort_keys=True) for r in recs[:2]] == keep
    for a, b in zip(full, again):
        assert a["normalized_regret"] == b["normalized_regret"]


def test_a_changed_setting_is_refused_naming_it_and_another_label_keeps_both(tmp_path):
    run_study(small_config(tmp_path, seeds=[0], methods=["two-stage"]), progress=False)
    path = Path(tmp_path) / "study" / RESULTS_FILE
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"'shortest_path / two-stage' under other settings \(epochs: 2 -> 3\)"):
        run_study(small_config(tmp_path, seeds=[0], methods=["two-stage"], epochs=3), progress=False)
    assert path.read_bytes() == before  # nothing written
    # adding a method is fine
    run_study(small_config(tmp_path, seeds=[0], methods=["spo+", "two-stage"]), progress=False)
    with pytest.raises(ValueError, match=r"method_params.alpha: 2.0 -> 3.0"):
        run_study(small_config(tmp_path, seeds=[0], methods=[{"name": "spo+", "params": {"alpha": 3.0}}]),
                  progress=False)
    both = run_study(small_config(tmp_path, seeds=[0], epochs=2, methods=[
        "two-stage", {"name": "two-stage", "label": "two-stage-b", "params": {"lr": 0.1}}]), progress=False)
    assert {r["method"] for r in both} == {"two-stage", "two-stage-b"}
    config = json.loads((Path(tmp_path) / "study" / "config.json").read_text())
    # every effective parameter is recorded, the defaults included
    trial = config["trials"]["shortest_path / spo+"]["settings"]
    assert trial["method_params"] == {"alpha": 2.0, "lr": 0.01}
    assert trial["problem_params"]["p"] == 5 and trial["problem_params"]["grid"] == [5, 5]


def test_same_seed_same_results_whatever_the_global_rng_and_global_rng_untouched(tmp_path):
    methods = ["fy", "imle", "aimle"]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = run_study(small_config(tmp_path / "a", seeds=[3], methods=methods), progress=False)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(999)  # a different global state must not matter
    b = run_study(small_config(tmp_path / "b", seeds=[3], methods=methods), progress=False)
    assert [r["normalized_regret"] for r in a] == [r["normalized_regret"] for r in b]
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]
    c = run_study(small_config(tmp_path / "c", seeds=[4], methods=methods), progress=False)
    assert [r["normalized_regret"] for r in a] != [r["normalized_regret"] for r in c]


def test_a_dask_executor_gives_the_serial_results(tmp_path):
    import distributed
    serial = run_study(small_config(tmp_path / "s", methods=["fy", "blackbox"]), progress=False)
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        remote = run_study(small_config(tmp_path / "d", methods=["fy", "blackbox"]), executor=client.get_executor(),
                           progress=False)
    keys = ("normalized_regret", "exact_match", "train_loss", "oracle_instances")
    assert [[r[k] for k in keys] for r in serial] == [[r[k] for k in keys] for r in remote]


def test_two_workers_give_the_serial_results(tmp_path):
    serial = run_study(small_config(tmp_path / "s", methods=["spo+", "imle"]), progress=False)
    parallel = run_study(small_config(tmp_path / "p", methods=["spo+", "imle"], workers=2), progress=False)
    keys = ("normalized_regret", "exact_match", "hamming", "cost_ratio", "train_loss", "oracle_calls")
    assert len(serial) == len(parallel) == 8
    for a, b in zip(serial, parallel):
        assert (a["method"], a["seed"], a["epoch"]) == (b["method"], b["seed"], b["epoch"])
        assert [a[k] for k in keys] == [b[k] for k in keys]


@pytest.mark.parametrize(
    "override, field",
    [
        ({"methods": ["spo+", "nonsense"]}, "methods[1].name"),
        ({"problems": ["nowhere"]}, "problems[0].name"),
        ({"epochs": 0}, "epochs"),
        ({"lr": -1.0}, "lr"),
        ({"seeds": [0, 0]}, "seeds"),
        ({"methods": [{"name": "imle", "params": {"lambda_": -2.0}}]}, "methods[0].params.lambda_"),
        ({"methods": [{"name": "imle", "params": {"bogus": 1}}]}, "methods[0].params"),
        ({"problems": [{"name": "shortest_path", "params": {"n": -5}}]}, "problems[0]"),
        ({"problems": [{"name": "shortest_path", "params": {"noise": 1.5}}]}, "noise"),
    ],
)
def test_bad_configuration_fails_before_training(tmp_path, override, field):
    cfg = small_config(tmp_path, **override)
    with pytest.raises((ValueError, TypeError)) as info:
        run_study(cfg, progress=False)
    assert field in str(info.value)
    assert not (Path(cfg.output) / RESULTS_FILE).exists()


def test_unwritable_output_directory_fails_before_training(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cfg = small_config(tmp_path, output=str(blocker / "sub"))
    with pytest.raises(ValueError, match="output directory"):
        run_study(cfg, progress=False)


@pytest.mark.parametrize("device", DEVICES)
def test_trials_run_on_the_configured_device(tmp_path, device):
    recs = run_study(small_config(tmp_path, seeds=[0], methods=["fy", "blackbox"], device=device), progress=False)
    assert len(recs) == 4 and all(r["device"].startswith(device) for r in recs)
    assert all(math.isfinite(r["normalized_regret"]) for r in recs)


# ---------------------------------------------------------------------------------------------------------
# methods


def _sp_batch(n=16, seed=0):
    from colayers.studies.problems import make_problem

    prob = make_problem("shortest_path", seed=seed, n=n, n_test=4)
    return prob, prob.x_train, prob.theta_train, prob.y_train


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_gives_a_finite_loss_with_a_gradient(name):
    prob, x, theta_true, y_true = _sp_batch()
    oracle = CountingOracle(prob.oracle)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        objective = make_method(name, oracle, prob.event_ndim, seed=0)
        model = objective.wrap_model(prob.make_model(), prob)
    loss = objective.loss(model(x), theta_true, y_true)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads
    # AIMLE's adaptive step starts small and may give a zero first gradient; so does PG's one-sided difference at
    # PyEPO's sigma = 0.1, which changes no decision of the untrained model on this batch
    if name not in ("aimle", "pg"):
        assert any(float(g.abs().sum()) > 0 for g in grads)
    assert (oracle.calls > 0) == objective.uses_oracle_in_training == (name not in ("two-stage", "direct", "cave"))
    y_hat = objective.predict(model(x).detach())
    assert y_hat.shape == y_true.shape and bool(((y_hat == 0) | (y_hat == 1)).all())


def test_task_losses_are_regret_and_hamming():
    from colayers.metrics import regret
    from colayers.studies.methods import _task_loss

    prob, _, theta_true, y_true = _sp_batch()
    y_hat = prob.oracle(theta_true.flip(0))  # the optimal paths of other instances
    want = regret(y_hat, theta_true, y_true, oracle=prob.oracle).mean()
    assert torch.allclose(_task_loss("regret", y_hat, theta_true, y_true, 1), want)
    l1 = (y_hat - y_true).abs().sum(dim=1).mean()
    assert torch.allclose(_task_loss("hamming", y_hat, theta_true, y_true, 1), l1)
    # samples stacked first average like the batch
    stacked = torch.stack([y_hat, y_true])
    assert torch.allclose(_task_loss("hamming", stacked, theta_true, y_true, 1), l1 / 2)


def test_method_hyper_parameter_errors_name_the_parameter():
    with pytest.raises(ValueError, match="epsilon"):
        make_method("fy", ArgmaxOneHot(), 1, epsilon=0.0)
    with pytest.raises(ValueError, match="task_loss"):
        make_method("imle", ArgmaxOneHot(), 1, task_loss="cross-entropy")
    with pytest.raises(ValueError, match="num_samples"):
        make_method("fy", ArgmaxOneHot(), 1, num_samples=2.5)
    with pytest.raises(ValueError, match="unknown hyper-parameter 'sigma'"):
        make_method("blackbox", ArgmaxOneHot(), 1, sigma=1.0)
    assert method_defaults("fy") == {"epsilon": 1.0, "num_samples": 10, "multiplicative": False}


def test_evaluation_reports_pyepo_normalized_regret_and_the_means_of_the_other_metrics():
    from colayers.studies.problems import make_problem
    from colayers.studies.trial import evaluate, trial_oracles

    prob = make_problem("shortest_path", seed=3, n=16, n_test=40, n_val=0)
    oracle, training = trial_oracles(prob)
    torch.manual_seed(3)
    objective = make_method("two-stage", oracle, prob.event_ndim, seed=3, training_oracle=training)
    model = objective.wrap_model(prob.make_model(), prob)
    got = evaluate(model, objective, prob.x_test, prob.theta_test, prob.y_test, oracle)
    assert oracle.calls == 0  # evaluation is not counted
    with torch.no_grad():
        y_hat = objective.predict(model(prob.x_test))
    cost = -prob.theta_test  # the problem's positive edge costs
    pred, best = (cost * y_hat).sum(-1), (cost * prob.y_test).sum(-1)
    assert bool((pred > best + 1e-4).any())  # an untrained model: some regret to measure
    # PyEPO's normalized regret of the test set: a ratio of sums, not a mean of per-instance ratios
    pyepo = float((pred - best).sum() / best.abs().sum())
    assert got["normalized_regret"] == pytest.approx(pyepo, rel=1e-6)
    assert got["normalized_regret"] != pytest.approx(float(((pred - best) / best).mean()), rel=1e-3)
    assert got["exact_match"] == pytest.approx(float((pred - best <= 1e-6 + 1e-6 * best).float().mean()))
    assert got["cost_ratio"] == pytest.approx(float((pred / best).mean()), rel=1e-6)
    assert got["hamming"] == pytest.approx(float((y_hat != prob.y_test).float().mean()))
    assert "rank_distance" not in got


def test_negative_domain_oracle_is_clamped_for_finite_differences():
    from colayers.studies.problems import make_problem
    from colayers.studies.trial import trial_oracles

    prob = make_problem("warcraft", seed=0, n=2, n_test=1, n_val=0, size=4)
    oracle, training = trial_oracles(prob)
    objective = make_method("blackbox", oracle, 2, lambda_=100.0, task_loss="hamming", training_oracle=training)
    theta = (-torch.rand(3, 4, 4, generator=torch.Generator().manual_seed(0)) - 0.1).requires_grad_()
    y_true = oracle.oracle(-torch.ones(3, 4, 4))
    objective.loss(theta, -torch.ones(3, 4, 4), y_true).backward()  # θ − λ·dy leaves θ < 0: clamped, no error
    assert theta.grad is not None and torch.isfinite(theta.grad).all()
    assert oracle.calls == 2
    with pytest.raises(ValueError):
        oracle(theta.detach() + 1.0)  # the bare oracle rejects θ ≥ 0


def test_learning_rate_milestones(tmp_path):
    base = run_study(small_config(tmp_path / "a", seeds=[0], methods=["two-stage"]), progress=False)
    same = run_study(small_config(tmp_path / "b", seeds=[0], methods=["two-stage"], lr_milestones=[1], lr_decay=1.0),
                     progress=False)
    slow = run_study(small_config(tmp_path / "c", seeds=[0], methods=["two-stage"], lr_milestones=[1], lr_decay=0.01),
                     progress=False)
    assert [r["train_loss"] for r in same] == [r["train_loss"] for r in base]
    assert slow[0]["train_loss"] == base[0]["train_loss"]  # epoch 1 runs before the milestone
    assert slow[1]["train_loss"] != base[1]["train_loss"]
    with pytest.raises(ValueError, match="lr_milestones"):
        run_study(small_config(tmp_path / "d", lr_milestones=[2]), progress=False)  # epochs = 2
    with pytest.raises(ValueError, match="lr_decay"):
        run_study(small_config(tmp_path / "e", lr_milestones=[1], lr_decay=0.0), progress=False)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.booleans(), min_size=12, max_size=12), st.booleans())
def test_prune_keeps_complete_trials_and_drops_partial_ones(keep_mask, truncated):
    import tempfile

    from colayers.studies.runner import _prune

    base = {"problem": "p", "settings": "h", "epochs": 3}
    lines = [dict(base, method=m, seed=s, epoch=e) for m in ("a", "b") for s in (0, 1) for e in (1, 2, 3)]
    kept = [rec for rec, k in zip(lines, keep_mask) if k]
    other = dict(base, method="z", seed=0, epoch=1, settings="other")  # not part of this study: never touched
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / RESULTS_FILE
        for rec in [*kept, other]:
            append_jsonl(path, rec)
        if truncated:
            with open(path, "a") as f:
                f.write('{"problem": "p", "meth')
        keys = {("p", m, s, "h") for m in ("a", "b") for s in (0, 1)}
        done, _partial = _prune(path, keys, lambda msg: None)
        after = read_results(path)
    expected_done = {
        ("p", m, s, "h") for m in ("a", "b") for s in (0, 1)
        if sum(1 for r in kept if (r["method"], r["seed"]) == (m, s)) == 3
    }
    assert done == expected_done
    assert other in after
    assert all((r["problem"], r["method"], r["seed"], r["settings"]) in done for r in after if r != other)
    assert len(after) == 3 * len(done) + 1


def test_rankings_get_a_rank_distance_in_0_1_and_no_hamming(tmp_path):
    cfg = config_from_dict({"problems": [{"name": "ranking", "params": {"n": 32, "n_test": 32, "n_val": 8,
                                                                           "num_items": 5}}],
                            "methods": ["two-stage"], "seeds": [0], "epochs": 1, "output": str(tmp_path / "r")})
    (rec,) = run_study(cfg, progress=False, log=lambda m: None)
    assert "hamming" not in rec and 0.0 <= rec["rank_distance"] <= 1.0 and rec["cost_ratio"] >= 1.0
