"""The README's layout table holds in the code: each floor imports only from the floors below it."""

import ast
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "colayers"


def readme_floors():
    """{module or package path relative to colayers/ -> floor}, read from the README's layout table."""
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## Layout") :].split("\n\n")[1]
    floors = {}
    for row in table.splitlines()[2:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        for path in re.findall(r"`colayers/([^`]+)`", cells[1]):
            floors[path.rstrip("/").removesuffix(".py")] = int(cells[0])
    return floors


FLOORS = readme_floors()


def unit_of(module: str) -> str | None:
    """The README unit ('oracles', 'metrics', ...) that the dotted module colayers.<...> belongs to."""
    parts = module.split(".")[1:]
    for n in range(len(parts), 0, -1):
        key = "/".join(parts[:n])
        if key in FLOORS:
            return key
    return None


def imports_of(dotted: str, source: str, is_package: bool = False) -> set[str]:
    """Every colayers module that ``source`` (the module ``dotted``) imports, at top level or inside functions."""
    package = dotted.split(".") if is_package else dotted.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "colayers"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                mod = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
                found |= {mod} if node.module else {f"{mod}.{a.name}" for a in node.names}
            elif node.module and node.module.split(".")[0] == "colayers":
                found.add(node.module)
    return found


def upward_imports(dotted: str, source: str, is_package: bool = False) -> list[str]:
    unit = unit_of(dotted)
    bad = []
    for imported in sorted(imports_of(dotted, source, is_package)):
        if imported == "colayers":
            bad.append(f"{dotted} imports the package face colayers; import the module it needs")
            continue
        other = unit_of(imported)
        if other is not None and other != unit and FLOORS[other] >= FLOORS[unit]:
            bad.append(f"{dotted} (floor {FLOORS[unit]}, {unit}) imports {imported} (floor {FLOORS[other]}, {other})")
    return bad


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == PACKAGE / "__init__.py":
            continue  # the package's face re-exports every floor
        yield path


def test_the_table_names_every_module():
    for path in modules():
        dotted = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        assert unit_of(dotted) is not None, f"{path.relative_to(ROOT)} is in no row of the README's layout table"


def dotted_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", list(modules()), ids=lambda p: str(p.relative_to(ROOT)))
def test_each_floor_imports_only_from_below(path):
    bad = upward_imports(dotted_name(path), path.read_text(), is_package=path.name == "__init__.py")
    assert not bad, "the README's layout table allows imports from lower floors only: " + "; ".join(bad)


def test_the_checker_catches_upward_and_same_floor_imports():
    assert upward_imports("colayers.oracles.grid", "from ..layers import core\n") != []
    assert upward_imports("colayers.oracles.grid", "def f():\n    import colayers.losses.spo\n") != []
    assert upward_imports("colayers.perturb.noise", "from ..oracles.base import Oracle\n") != []  # same floor
    assert upward_imports("colayers.layers.imle", "from ..oracles.base import Oracle\nfrom .core import x\n") == []


def _function_lengths(source: str):
    """(name, first line, lines without the docstring) of every function in ``source``."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            doc = 0
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(
                body[0].value.value, str
            ):
                doc = body[0].end_lineno - body[0].lineno + 1
            yield node.name, node.lineno, node.end_lineno - node.lineno + 1 - doc


def test_no_module_above_600_lines_and_no_function_above_80():
    # one concern per module, one idea per function: the limits the package keeps (docstrings not counted in functions)
    too_long = []
    for path in modules():
        source = path.read_text()
        n = len(source.splitlines())
        if n > 600:
            too_long.append(f"{path.relative_to(ROOT)}: {n} lines")
        for name, line, length in _function_lengths(source):
            if length > 80:
                too_long.append(f"{path.relative_to(ROOT)}:{line} {name}: {length} lines")
    assert not too_long, "\n".join(too_long)


def test_the_length_check_counts_a_long_function():
    body = "\n".join(f"    x{i} = {i}" for i in range(81))
    # the def line and 81 statements; the three docstring lines are not counted
    assert [length for *_, length in _function_lengths(f'def f():\n    """doc\n    more"""\n{body}\n')] == [82]


@pytest.mark.parametrize("package", ["oracles", "perturb", "layers", "losses"])
def test_each_public_name_is_declared_once_and_reaches_the_package(package):
    # a module's __all__ is the one declaration of its public names: the subpackage re-exports every public
    # module's __all__ (a new module that is not re-exported fails here, naming it), and nothing else
    import importlib
    import pkgutil

    face = importlib.import_module(f"colayers.{package}")
    declared = []
    for info in pkgutil.iter_modules(face.__path__):
        if info.name.startswith("_") or info.name == "functional":  # colayers.layers.functional stays a namespace
            continue
        module = importlib.import_module(f"colayers.{package}.{info.name}")
        names = getattr(module, "__all__", None)
        assert names is not None, f"colayers.{package}.{info.name} declares no __all__"
        missing = [n for n in names if n not in face.__all__]
        assert not missing, f"colayers.{package} does not re-export {missing} of its module {info.name}"
        declared += names
    assert sorted(face.__all__) == sorted(declared)
    assert len(set(declared)) == len(declared), "a public name is declared by two modules"
