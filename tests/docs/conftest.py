"""One strict build of the documentation site per test session, shared by the docs tests.

Two forms, so that ``pytest`` stays bounded and CI still checks the site as published:

* **plain** ``pytest``: the tutorials' ``python exec="true"`` blocks are shown as code, not run (markdown-exec
  is left out of the build and a plain code fence takes their place). Every page, the navigation and the API
  reference are built and checked, in seconds. (Running the tutorials takes minutes of CPU even in their
  bounded form, most of it the I-MLE path tutorial's training runs.)
* ``pytest --runslow tests/docs`` (a line of its own in ``.ci/run``): the tutorials run in the build
  (markdown-exec): their code, their assertions and the figures they draw; the tests that need them (the
  tutorials' figures, the browser check) are marked ``slow``. ``COLAYERS_DOCS_QUICK=1`` (the default here)
  asks each tutorial for its bounded form (fewer training steps, the same code and checks);
  ``COLAYERS_DOCS_QUICK=0`` runs them in full, as ``mkdocs build`` publishes them.

The build runs in a subprocess with a time limit of its own, ``$COLAYERS_DOCS_TIMEOUT`` seconds (default: 30 s
less than pytest's per-test ``timeout``, so that it is this fixture that says what ran out of time), and writes
its output to ``<site>.log``; a failed or timed-out build fails with a message naming the build and that log.
``$COLAYERS_DOCS_SITE`` names a folder to build into (kept after the run, to be browsed); by default a temporary
one.
"""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]

# The build without the tutorials' code run: mkdocs.yml less markdown-exec, with a plain code fence for the
# ```python exec="true" ... blocks (their options accepted and ignored).
SHOWN_NOT_RUN = r"""
import logging, sys

import yaml
from mkdocs.commands.build import build
from mkdocs.config import load_config
from pymdownx import superfences

logging.basicConfig(level=logging.WARNING, format="%(levelname)s - %(name)s: %(message)s")


class Loader(yaml.SafeLoader):
    pass


Loader.add_multi_constructor("", lambda loader, suffix, node: None)  # tags (!ENV ...) are not needed here
with open("mkdocs.yml") as f:
    raw = yaml.load(f, Loader)


def name(entry):
    return entry if isinstance(entry, str) else next(iter(entry))


def accept(language, inputs, options, attrs, md):
    return True


def code(source, language, class_name, options, md, **kwargs):
    return superfences.fence_code_format(source, language, class_name, {}, md, **kwargs)


plugins = [p for p in raw["plugins"] if name(p) != "markdown-exec"]
fence = {"custom_fences": [{"name": "python", "class": "python", "validator": accept, "format": code}]}
extensions = [e for e in raw["markdown_extensions"] if name(e) != "pymdownx.superfences"]
extensions.append({"pymdownx.superfences": fence})
config = load_config("mkdocs.yml", plugins=plugins, markdown_extensions=extensions, site_dir=sys.argv[1],
                     strict=True)
config.plugins.on_startup(command="build", dirty=False)
try:
    build(config)
finally:
    config.plugins.on_shutdown()
"""


def _build_timeout(config) -> float:
    if os.environ.get("COLAYERS_DOCS_TIMEOUT"):
        return float(os.environ["COLAYERS_DOCS_TIMEOUT"])
    try:  # pytest-timeout's limit (the test extra installs it; pyproject.toml sets it)
        per_test = float(config.getoption("timeout", None) or config.getini("timeout") or 0)
    except ValueError:  # pytest-timeout is not installed
        per_test = 0.0
    return max(per_test - 30, 30) if per_test > 0 else 1800.0


@pytest.fixture(scope="session")
def site(tmp_path_factory, request):
    """The built site's folder (tutorials run under ``--runslow``; shown, not run, otherwise)."""
    where = os.environ.get("COLAYERS_DOCS_SITE")
    out = pathlib.Path(where) if where else tmp_path_factory.mktemp("site")
    quick = os.environ.get("COLAYERS_DOCS_QUICK", "1")
    env = {**os.environ, "COLAYERS_DOCS_QUICK": quick, "MPLBACKEND": "Agg"}
    if request.config.getoption("--runslow"):
        form = f"tutorials run ({'bounded' if quick == '1' else 'full'} form)"
        command = [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)]
    else:
        form = "tutorials shown, not run"
        command = [sys.executable, "-c", SHOWN_NOT_RUN, str(out)]
    log = out.with_name(out.name + ".log")
    limit = _build_timeout(request.config)
    what = f"the docs build (mkdocs build --strict, {form})"
    with open(log, "w") as output:
        try:
            proc = subprocess.run(command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT,
                                  timeout=limit)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{what} did not finish within {limit:g} s ($COLAYERS_DOCS_TIMEOUT); its output so far: "
                        f"{log}", pytrace=False)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        pytest.fail(f"{what} failed (exit status {proc.returncode}); its output: {log}\n{tail}", pytrace=False)
    return out
