"""One strict build of the documentation site per test session, shared by the docs tests.

The build runs the tutorials' ``python exec="true"`` blocks (markdown-exec): their code, their assertions and
the figures they draw. ``COLAYERS_DOCS_QUICK=1`` asks each tutorial for its bounded form (fewer training steps,
the same code and checks), which keeps the test suite within CI's time; ``mkdocs build`` without it runs the
tutorials in full, as published. ``$COLAYERS_DOCS_SITE`` names a folder to build into (kept after the run, to be
browsed); by default a temporary one.
"""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    where = os.environ.get("COLAYERS_DOCS_SITE")
    out = pathlib.Path(where) if where else tmp_path_factory.mktemp("site")
    env = {**os.environ, "COLAYERS_DOCS_QUICK": os.environ.get("COLAYERS_DOCS_QUICK", "1"), "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)],
        cwd=ROOT, capture_output=True, text=True, env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out
