"""Every import the documentation shows works, and every public piece is importable from its package.

Collected from ``docs/**/*.md`` and ``README.md``: each ``from colayers... import a, b as c`` (parenthesized over
several lines too), each ``import colayers...``, and each dotted name ``colayers.x.y`` written anywhere (prose,
tables, ``:::`` API directives, code blocks that are not run). A dotted name resolves by importing its longest
module prefix and reading the rest as attributes. File names are not names: a match preceded by ``.``, ``/`` or
``-`` (``.colayers.lock``, ``api/colayers.md``) or ending with a file extension is left out.

The documentation tables list every oracle, layer and loss by its bare name next to the package it belongs to, so
a public piece — a class of a contract kind found by ``tests/conformance`` from the ``__all__`` of a public
submodule — must be in its package's ``__all__`` too (``from colayers.oracles import PyEPOOracle`` used to fail:
the class lived only in ``colayers.oracles.pyepo``).
"""

import importlib
import inspect
import pathlib
import re

import pytest

from tests.conformance import PACKAGES, _public_names, kind_of

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
FROM_IMPORT = re.compile(r"^[ \t>]*from[ \t]+(colayers(?:\.\w+)*)[ \t]+import[ \t]+(\([^)]*\)|[^\n#;]+)", re.M)
IMPORT = re.compile(r"^[ \t>]*import[ \t]+(colayers(?:\.\w+)*)", re.M)
DOTTED = re.compile(r"(?<![\w./-])colayers(?:\.[A-Za-z_]\w*)+")
FILE_EXTENSIONS = {"md", "lock", "py", "toml", "yaml", "yml", "json", "txt", "html", "csv", "log", "pt"}


def documented_names(text):
    """The fully qualified names a page uses: ``module`` or ``module.attribute.attribute...``."""
    names = set()
    for module, imported in FROM_IMPORT.findall(text):
        for item in imported.strip("()").replace("\n", " ").split(","):
            name = item.strip().split(" as ")[0].strip()
            if name:
                names.add(f"{module}.{name}" if name != "*" else module)
    names.update(IMPORT.findall(text))
    for dotted in DOTTED.findall(text):
        if dotted.rsplit(".", 1)[1] not in FILE_EXTENSIONS:
            names.add(dotted)
    return names


def resolve(qualified):
    """Import the longest module prefix of ``qualified``, read the rest as attributes; the error says what failed."""
    parts = qualified.split(".")
    for cut in range(len(parts), 0, -1):
        module_name = ".".join(parts[:cut])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name is not None and not module_name.startswith(exc.name) and exc.name != module_name:
                raise  # the module exists but imports a missing one: a real failure
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)  # AttributeError names the missing attribute
        return obj
    raise ModuleNotFoundError(qualified)


def test_the_collector_reads_every_form():
    text = (
        "```python\nfrom colayers import (\n    IMLE,\n    TopKSubset as K,\n)\nfrom colayers.perturb import Gumbel\n"
        "import colayers.layers.functional as F\n```\n"
        "See `colayers.oracles.highs.HighsProgram`, ::: colayers.losses, api/colayers.md and .colayers.lock.\n"
    )
    assert documented_names(text) == {
        "colayers.IMLE", "colayers.TopKSubset", "colayers.perturb.Gumbel", "colayers.layers.functional",
        "colayers.oracles.highs.HighsProgram", "colayers.losses", "colayers.perturb",
    }
    with pytest.raises(AttributeError, match="NoSuchOracle"):  # the check can fail: a name the package lacks
        resolve("colayers.oracles.NoSuchOracle")
    with pytest.raises(AttributeError, match="no_such_module"):
        resolve("colayers.no_such_module.Thing")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_import_works(page):
    failures = []
    for name in sorted(documented_names(page.read_text())):
        try:
            resolve(name)
        except (ImportError, AttributeError) as exc:
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    assert not failures, f"{page.relative_to(ROOT)} uses names that do not import:\n" + "\n".join(failures)


def test_the_oracle_page_imports_pyepo_oracle_from_the_package():
    # the import the user wrote, now the one docs/oracles.md shows (checked above like every other)
    assert "colayers.oracles.PyEPOOracle" in documented_names((ROOT / "docs" / "oracles.md").read_text())


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_piece_is_importable_from_its_package(package):
    missing = []
    for name, modules in _public_names(package).items():
        obj = getattr(importlib.import_module(modules[0]), name)
        if inspect.isclass(obj) and kind_of(obj, package) and package not in modules:
            missing.append(f"{name} (only in {', '.join(modules)})")
    assert not missing, f"public pieces missing from {package}.__all__: {missing}"
