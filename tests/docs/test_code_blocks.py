"""Every ```python block of the documentation runs.

The blocks of one page run in order in one namespace (a page may build on its earlier blocks), in a
temporary working directory. A block whose info string is ``python no-run`` is shown but not run (for
fragments that need a GPU or an outside service). The tutorials' ``python exec="true"`` blocks are not run here:
markdown-exec runs them when the site is built with them executed (``mkdocs build``, and the CI line
``pytest --runslow tests/docs/test_site.py``; tests/docs/conftest.py), and an exception or a failed assertion in
one fails that strict build. ``NOT_RUN`` below names the few blocks that are not run,
each with the reason and the test that covers what it shows.
"""

import importlib.util
import os
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)


BUILD_TIME = 'exec="true"'  # markdown-exec's marker: the block runs when the site is built


def python_blocks(text):
    """The (line number, source) of each ```python block of a Markdown text, dedented."""
    blocks = []
    for m in FENCE.finditer(text):
        info = m["info"].strip().split()
        if info[:1] != ["python"] or "no-run" in info or BUILD_TIME in info:
            continue
        indent = len(m["indent"])
        body = "\n".join(line[indent:] for line in m["body"].splitlines())
        blocks.append((text.count("\n", 0, m.start()) + 2, body))
    return blocks


# (page, a string the block contains) -> why it is not run here.
NOT_RUN = {
    ("oracles.md", "LocalCluster(n_workers=8"): "starts an 8-process dask cluster; the dask executor path runs in "
    "tests/oracles (a LocalCluster of 2 workers, a killed worker, a timeout)",
}

# (page, a string the block contains) -> the optional module it needs; the block runs where it is installed.
NEEDS = {("oracles.md", "from pyepo"): "pyepo"}


def runnable(page, source):
    if any(p == page.name and marker in source for (p, marker) in NOT_RUN):
        return False
    return all(importlib.util.find_spec(module) is not None
               for (p, marker), module in NEEDS.items() if p == page.name and marker in source)


PAGES = [p for p in sorted(DOCS.rglob("*.md")) if python_blocks(p.read_text())]


def test_fences_are_found():
    text = "a\n\n```python\nx = 1\n```\n\n```bash\nls\n```\n\n  ```python\n  y = x + 1\n  ```\n"
    assert python_blocks(text) == [(4, "x = 1"), (12, "y = x + 1")]
    assert python_blocks('```python exec="true" session="t"\nz = 2\n```\n') == []  # run by the build
    for page, marker in [*NOT_RUN, *NEEDS]:
        assert any(marker in src for _, src in python_blocks((DOCS / page).read_text())), (page, marker)


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(DOCS).as_posix() for p in PAGES])
def test_page_code_blocks_run(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": "__docs__"}
    for line, source in python_blocks(page.read_text()):
        if not runnable(page, source):
            continue
        code = compile(source, f"{page.relative_to(DOCS)}:{line}", "exec")
        try:
            exec(code, namespace)
        except Exception as exc:  # report the page and line of the failing block
            pytest.fail(f"{page.name}, block at line {line}: {type(exc).__name__}: {exc}\n{source}")
    assert os.getcwd() == str(tmp_path)
