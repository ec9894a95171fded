"""The ``colayers`` command line: ``colayers study`` runs a comparative study, ``colayers report`` redraws one.

``colayers study`` with no flags runs the default study (PyEPO's 5×5 shortest path, n = 1000, deg 6,
noise 0.5, a linear model; the two-stage baseline, SPO+, perturbed Fenchel-Young, I-MLE, AIMLE, blackbox and
straight-through; 5 seeds) and prints the summary table and the paired comparisons with two-stage.
``colayers reproduce NAME`` runs a published table's cells (``pyepo_shortest_path``, ``pyepo_knapsack``,
``pyepo_tsp``, ``warcraft_12x12`` with ``--data DIR``).
Plain ``colayers`` prints this help.

Examples::

    colayers study                                     # the default study, into ./colayers-study
    colayers study --preset warcraft --workers 2       # Warcraft-like 12x12 maps
    colayers study --problems warcraft --data DIR      # the published Warcraft maps (DIR: their directory)
    colayers study --methods spo+,fy --seeds 0,1 --epochs 5 -P n=200 -o runs/small
    colayers study --config study.toml --device cuda
    colayers study --tune 20                           # tune each method first, 20 Optuna trials each
    colayers reproduce pyepo_shortest_path --published-only
    colayers reproduce warcraft_12x12 --data DIR       # the published Warcraft maps (a GPU job)
    colayers study -M fy.epsilon=0.5 -M imle.lambda_=20
    colayers study -M imle.lambda_=1,10,100            # a sweep: one method (and table row) per value
    colayers study --plugin examples/spanning_tree.py --problems spanning_tree --methods perceptron,spo+
    colayers study --list                              # problems, methods, presets and their defaults
    colayers report runs/small                         # rebuild table and figures from results.jsonl

Exit status: 0 done; 1 a trial failed, ran past its time limit (--trial-timeout) or its worker died (the trial
is named; the others are saved); 2 a bad option or
configuration (before any training), or an output directory in use by another study; 130 interrupted by
Ctrl-C (the completed trials are saved: rerun the same command to resume).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

__all__ = ["main", "build_parser"]


def _value(text: str) -> Any:
    """Parse a command-line value as JSON when possible (numbers, booleans, lists), else keep the string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(items: list[str], flag: str) -> list[tuple[str, Any]]:
    out = []
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{flag} expects KEY=VALUE; got {item!r}")
        k, v = item.split("=", 1)
        out.append((k.strip(), _value(v)))
    return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``colayers`` command."""
    parser = argparse.ArgumentParser(
        prog="colayers",
        description="colayers: combinatorial-optimization layers for PyTorch. "
        "`colayers study` runs a comparative study (the default one with no flags).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1],
    )
    sub = parser.add_subparsers(dest="command")
    st = sub.add_parser("study", help="run (or resume) a comparative study and print its table")
    st.add_argument("--preset", default=None, help="start from a preset: default (the default), tiny, warcraft")
    st.add_argument("--config", default=None, help="a .toml or .json study file (flags override it)")
    st.add_argument("--problems", default=None, help="comma-separated problem names (e.g. shortest_path)")
    st.add_argument("--methods", default=None, help="comma-separated methods (colayers study --list shows them all): "
                    "spo+,fy,imle,aimle,blackbox,identity,two-stage,direct,pg,cave,ltr-listwise,ltr-pairwise,"
                    "ltr-pointwise")
    st.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2")
    st.add_argument("--epochs", type=int, default=None)
    st.add_argument("--batch-size", type=int, default=None)
    st.add_argument("--lr", type=float, default=None)
    st.add_argument("--lr-milestones", default=None, help="comma-separated epochs after which the lr is decayed")
    st.add_argument("--lr-decay", type=float, default=None, help="lr factor at each milestone (default 0.1)")
    st.add_argument("--device", default=None, help="cpu (default), cuda or cuda:N")
    st.add_argument("--workers", type=int, default=None, help="trials run at once (a process pool when > 1)")
    st.add_argument("--threads", type=int, default=None, help="torch threads per trial (default 1)")
    st.add_argument("--trial-timeout", type=float, default=None, metavar="SECONDS",
                    help="time limit of each trial (default 3600); past it the trial is recorded as failed, the "
                    "others go on, and a rerun retries it")
    st.add_argument("--executor", choices=["process", "dask"], default="process",
                    help="parallel backend when --workers > 1: a process pool or a local dask.distributed cluster")
    st.add_argument("--scheduler", default=None, help="address of a running dask scheduler (implies --executor dask)")
    st.add_argument("-o", "--output", default=None, help="study directory (results.jsonl, tables, figures)")
    st.add_argument("-P", "--problem-param", action="append", metavar="KEY=VALUE",
                    help="set a generator parameter of every problem, e.g. -P n=200 (repeatable)")
    st.add_argument("-M", "--method-param", action="append", metavar="METHOD.KEY=VALUE",
                    help="set a method hyper-parameter, e.g. -M fy.epsilon=0.5 (repeatable)")
    st.add_argument("--plugin", action="append", metavar="MODULE", default=None,
                    help="import MODULE (a dotted name or a .py file) registering problems or methods, in this "
                    "process and every worker (repeatable; adds to the config's plugins)")
    st.add_argument("--optimizer", default=None, help="a torch.optim class name (default Adam)")
    st.add_argument("--select", choices=["last", "best"], default=None,
                    help="report the last epoch (default) or the best one on the validation split")
    st.add_argument("--tensorboard", nargs="?", const=True, default=None, metavar="DIR",
                    help="also write per-epoch curves for TensorBoard, into DIR (default OUTPUT/tensorboard; needs "
                    "the tensorboard extra)")
    st.add_argument("--data", default=None, metavar="DIR", help="the published data set's directory for the problems "
                    "that read one (warcraft: warcraft_shortest_path_oneskin; sets their data_dir)")
    st.add_argument("--tune", type=int, default=None, metavar="N",
                    help="tune every method with N Optuna trials on the validation split first (the 'tune' extra)")
    st.add_argument("--list", action="store_true", help="list problems, methods, presets and their defaults")
    st.add_argument("--no-progress", action="store_true", help="hide the progress bars (shown only on a terminal)")
    st.add_argument("--no-figures", action="store_true", help="write the tables only")
    rp = sub.add_parser("report", help="rebuild the table and figures of a study from its results.jsonl")
    rp.add_argument("directory", help="the study directory")
    rp.add_argument("--no-figures", action="store_true")
    rr = sub.add_parser("reproduce", help="run a reproduction config (a published table's grid) and write its page")
    rr.add_argument("config", help="a built-in reproduction (pyepo_shortest_path, pyepo_knapsack, pyepo_tsp, "
                    "warcraft_12x12) or a .json file")
    rr.add_argument("--published-only", action="store_true", help="run only the cells with a published number")
    rr.add_argument("--seeds", default=None, help="comma-separated seeds (default: the config's)")
    rr.add_argument("--epochs", type=int, default=None)
    rr.add_argument("--lr-milestones", default=None, metavar="E1,E2",
                    help="comma-separated epochs of the lr decay (default: the config's; '' for none, e.g. with "
                    "fewer --epochs)")
    rr.add_argument("-P", "--problem-param", action="append", metavar="KEY=VALUE",
                    help="set a generator parameter of every cell's problems, e.g. -P n_test=200 (repeatable)")
    rr.add_argument("--data", default=None, metavar="DIR", help="the published data set's directory, for the "
                    "reproductions that read one (warcraft_12x12: warcraft_shortest_path_oneskin)")
    rr.add_argument("-o", "--output", default=None, help="parent directory of the cells' study directories")
    rr.add_argument("--page", default=None, help="write the Markdown page here (default <output>/REPRODUCTION.md)")
    return parser


def _study_config(args: argparse.Namespace):
    from .studies.config import config_from_dict, load_config, preset

    if args.config is not None:
        cfg = load_config(args.config)
        if args.preset is not None:
            raise ValueError("give either --preset or --config (a config file may name a preset itself)")
    else:
        cfg = preset(args.preset or "default")
    data = cfg.to_dict()
    if args.problems is not None:
        data["problems"] = [{"name": p.strip(), "params": {}} for p in args.problems.split(",") if p.strip()]
        # keep the parameters of problems that were already configured under the same name
        old = {p["name"]: p["params"] for p in cfg.to_dict()["problems"]}
        for p in data["problems"]:
            p["params"] = dict(old.get(p["name"], {}))
    if args.methods is not None:
        old = {m["label"]: m for m in cfg.to_dict()["methods"]}
        data["methods"] = [old.get(m.strip(), {"name": m.strip()}) for m in args.methods.split(",") if m.strip()]
    data.update(_int_lists(args, "seeds", "lr_milestones"))
    if args.plugin:
        known = list(data.get("plugins") or [])
        data["plugins"] = known + [p for p in args.plugin if p not in known]
    from .studies.registry import load_plugins

    load_plugins(data.get("plugins") or [], where="--plugin" if args.plugin else "plugins")
    for key in ("epochs", "batch_size", "lr", "lr_decay", "device", "workers", "threads", "output", "optimizer",
                "select", "trial_timeout", "tensorboard", "tune"):
        v = getattr(args, key)
        if v is not None:
            data[key] = v
    for k, v in _pairs(args.problem_param, "--problem-param"):
        for p in data["problems"]:
            p["params"][k] = v
    if args.data is not None:
        _set_data_dir(data["problems"], args.data)
    for k, v, text in _pairs_raw(args.method_param, "--method-param"):
        if "." not in k:
            raise ValueError(f"--method-param expects METHOD.KEY=VALUE; got {k!r}")
        label, key = k.split(".", 1)
        hits = [i for i, m in enumerate(data["methods"]) if (m.get("label") or m["name"]) == label]
        if not hits:
            raise ValueError(f"--method-param names method {label!r}, which is not in the study's methods")
        values = _sweep(text) if isinstance(v, str) and "," in text else [v]
        for i in reversed(hits):
            m = data["methods"][i]
            if len(values) == 1:
                m.setdefault("params", {})[key] = values[0]
                continue
            copies = []
            for val in values:  # a sweep: one method per value, labelled by it
                _check_sweep_value(m["name"], key, val, k, [p["name"] for p in data["problems"]])
                c = json.loads(json.dumps(m))
                c.setdefault("params", {})[key] = val
                c["label"] = f"{m.get('label') or m['name']} {key}={text_of(val)}"
                copies.append(c)
            data["methods"][i : i + 1] = copies
    if args.problems is not None or args.methods is not None:
        if data.get("name") in ("default", "tiny", "warcraft"):
            data["name"] = "custom"  # the preset's name no longer describes the study
    return config_from_dict(data)


def _set_data_dir(problems: list[dict[str, Any]], directory: str) -> None:
    """``--data DIR``: set ``data_dir`` on every problem whose builder reads one; refuse if none does."""
    import inspect

    from .studies import problems as _  # noqa: F401  (registers the built-in problems)
    from .studies.registry import PROBLEMS

    readers = [p for p in problems
               if p["name"] in PROBLEMS and "data_dir" in inspect.signature(PROBLEMS[p["name"]]).parameters]
    if not readers:
        raise ValueError(f"--data names the Warcraft data set's directory (or another problem's data_dir); none of "
                         f"the study's problems {[p['name'] for p in problems]} reads one")
    for p in readers:
        p["params"]["data_dir"] = directory


def text_of(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _pairs_raw(items: list[str], flag: str) -> list[tuple[str, Any, str]]:
    out = []
    for item in items or []:
        if "=" not in item:
            raise ValueError(f"{flag} expects KEY=VALUE; got {item!r}")
        k, v = item.split("=", 1)
        out.append((k.strip(), _value(v), v))
    return out


def _int_lists(args: argparse.Namespace, *names: str) -> dict[str, list[int]]:
    """The comma-separated integer flags among ``names`` that were given, parsed (a bad one named)."""
    out = {}
    for name in names:
        text = getattr(args, name)
        if text is not None:
            try:
                out[name] = [int(s) for s in text.split(",") if s.strip()]
            except ValueError:
                raise ValueError(f"{name} must be comma-separated integers; got {text!r}") from None
    return out


def _sweep(text: str) -> list[Any]:
    return [_value(t.strip()) for t in text.split(",")]


def _check_sweep_value(method: str, key: str, value: Any, option: str, problems: list[str]) -> None:
    from .studies.methods import check_method_params

    for prob in problems:
        try:
            check_method_params(method, {key: value}, where=method, problem=prob)
        except ValueError as exc:
            raise ValueError(f"-M {option}: sweep value {value!r} is invalid: {exc}") from None


def _executor(args: argparse.Namespace, workers: int):
    if args.scheduler is None and (args.executor != "dask" or workers <= 1):
        return None, None
    from dask.distributed import Client, LocalCluster

    if args.scheduler is not None:
        client = Client(args.scheduler)
        return client.get_executor(), client
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    return client.get_executor(), client


def _study(args: argparse.Namespace) -> int:
    from .studies.report import build_report
    from .studies.runner import run_study

    if args.list:
        from .studies.listing import listing

        if args.plugin:
            from .studies.registry import load_plugins

            load_plugins(args.plugin, where="--plugin")
        print(listing())
        return 0
    cfg = _study_config(args)
    cfg.validate()
    executor, client = _executor(args, cfg.workers)
    progress = not args.no_progress and sys.stderr.isatty()
    try:
        records = run_study(cfg, executor=executor, progress=progress)
    finally:
        if client is not None:
            client.close()
    table, paths = build_report(cfg.output, records, figures=not args.no_figures)
    print(table)
    print(f"\nwrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from .studies.report import build_report

    table, paths = build_report(args.directory, figures=not args.no_figures)
    print(table)
    print(f"\nwrote {', '.join(str(p) for p in paths)}", file=sys.stderr)
    return 0


def _reproduce(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .studies.reproduce import load_reproduction, reproduction_page, run_reproduction

    rep = load_reproduction(args.config)
    over: dict[str, Any] = {}
    if args.epochs is not None:
        over["epochs"] = args.epochs
    over.update(_int_lists(args, "seeds", "lr_milestones"))
    if args.problem_param:
        over["problem_params"] = dict(_pairs(args.problem_param, "--problem-param"))
    output = args.output or rep.study.get("output", "colayers-reproduce")
    times = run_reproduction(rep, published_only=args.published_only, output=output, data=args.data, **over)
    timing = f"CPU time of this run: {sum(times.values()):.0f} s over {len(times)} cells (process time)."
    page = reproduction_page(rep, output, timing=timing)
    path = Path(args.page or Path(output) / "REPRODUCTION.md")
    path.write_text(page)
    print(page)
    print(f"wrote {path}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``colayers`` console script and ``python -m colayers``; returns the exit status.

    Configuration errors are reported as ``colayers: error: <message>`` with exit status 2, before any
    training.

    Example:
        >>> main(["study", "--methods", "nonsense"])  # stderr: colayers: error: methods[0].name must be one of ...
        2
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from .studies.runner import StudyError, StudyInterrupted

    try:
        if args.command == "reproduce":
            return _reproduce(args)
        return _study(args) if args.command == "study" else _report(args)
    except StudyInterrupted as exc:
        print(f"colayers: {exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("colayers: interrupted before any trial started; rerun the same command to resume", file=sys.stderr)
        return 130
    except StudyError as exc:
        print(f"colayers: error: {exc}", file=sys.stderr)
        return 1
    except SystemExit as exc:  # user code (a plugin's builder) called sys.exit: never end a study in silence
        print(f"colayers: error: the study was stopped by sys.exit({exc.code!r}) in a plugin's code; the trials "
              "completed so far are saved", file=sys.stderr)
        return 1
    except (ValueError, TypeError) as exc:
        print(f"colayers: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
