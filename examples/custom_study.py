"""A custom comparative study from Python: two settings of one method, side by side, then the report.

Run from the repository root (a few seconds on 2 CPU cores):

    python examples/custom_study.py

It compares perturbed Fenchel-Young with two noise scales and SPO+ on a small shortest-path problem, writes
results.jsonl, summary.md/.csv and PNG figures into runs/example, and prints the table. Re-running it resumes:
complete trials are skipped.
"""

from colayers.studies import build_report, run_study
from colayers.studies.config import config_from_dict

config = config_from_dict(
    {
        "name": "example",
        "problems": [{"name": "shortest_path", "params": {"n": 300, "deg": 4, "noise": 0.5}}],
        "methods": [
            {"name": "spo+"},
            {"name": "fy", "params": {"epsilon": 0.2}, "label": "fy eps=0.2"},
            {"name": "fy", "params": {"epsilon": 2.0}, "label": "fy eps=2"},
        ],
        "seeds": [0, 1],
        "epochs": 5,
        "batch_size": 32,
        "lr": 0.01,
        "output": "runs/example",
    }
)

if __name__ == "__main__":
    run_study(config)
    table, paths = build_report(config.output)
    print(table)
