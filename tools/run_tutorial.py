"""Run a tutorial page's build-time blocks (```python exec="true" ...) in order, as the docs build would.

    python tools/run_tutorial.py docs/tutorials/imle-path.md [--quick] [--out DIR]

Each block runs in one namespace per markdown-exec session (the ``session="..."`` option), with the project
root as working directory and the Agg backend. ``--quick`` sets ``COLAYERS_DOCS_QUICK=1`` (the bounded form the
test suite builds). The blocks' printed output goes to ``DIR/<page>.md`` (default: a temporary folder), the time
of every block to the terminal. This is a development aid; ``mkdocs build --strict`` is what the tests run.
"""

import argparse
import contextlib
import io
import os
import pathlib
import re
import sys
import tempfile
import time

FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)
SESSION = re.compile(r'session="([^"]*)"')


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=pathlib.Path)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=pathlib.Path, default=None)
    args = parser.parse_args()
    if args.quick:
        os.environ["COLAYERS_DOCS_QUICK"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    text = args.page.read_text()
    sessions: dict[str, dict] = {}
    out = io.StringIO()
    start = time.perf_counter()
    for m in FENCE.finditer(text):
        info = m["info"]
        if not info.strip().startswith("python") or 'exec="true"' not in info:
            continue
        line = text.count("\n", 0, m.start()) + 1
        session = SESSION.search(info)
        namespace = sessions.setdefault(session[1] if session else f"block{line}", {"__name__": "__main__"})
        t = time.perf_counter()
        with contextlib.redirect_stdout(out):
            exec(compile(m["body"], f"{args.page}:{line}", "exec"), namespace)
        print(f"{args.page}:{line}: {time.perf_counter() - t:.1f} s", file=sys.stderr)
    print(f"total {time.perf_counter() - start:.1f} s", file=sys.stderr)
    folder = args.out or pathlib.Path(tempfile.mkdtemp())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / (args.page.stem + ".md")).write_text(out.getvalue())
    print(f"output: {folder / (args.page.stem + '.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
