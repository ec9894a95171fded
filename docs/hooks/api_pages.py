"""mkdocs hook for the API reference: the table of the top-level names of ``colayers``.

``colayers`` re-exports the public names of its subpackages. The page ``api/colayers.md`` holds the marker
``<!-- colayers-reexports -->``; this hook replaces it by a table that links each name of ``colayers.__all__``
to the subpackage page that documents it, so the table follows ``__all__`` as names are added. A name that no
subpackage page documents is rendered on the page itself.
"""

import importlib
import importlib.util
import inspect

MARKER = "<!-- colayers-reexports -->"
SUBPACKAGES = ["layers", "losses", "oracles", "perturb", "metrics", "studies"]


def anchor(sub, name):
    """The id of the heading that documents ``colayers.<sub>.<name>`` on ``api/<sub>.md``.

    A name that is also the name of the submodule defining it (``colayers.layers.soft_sort``, a function of
    the module ``colayers.layers.soft_sort``) is shadowed by that submodule in the static analysis, so the page
    renders it from its own module (see :func:`on_page_markdown`) under the id ``<module>.<name>``.
    """
    obj = getattr(importlib.import_module(f"colayers.{sub}"), name)
    module = getattr(obj, "__module__", None) or ""
    package = importlib.import_module(f"colayers.{sub}")
    has_submodule = hasattr(package, "__path__") and importlib.util.find_spec(f"colayers.{sub}.{name}") is not None
    if not inspect.ismodule(obj) and has_submodule:
        return f"{module}.{name}"  # a submodule of the same name exists (soft_sort, perturbed, pushforward)
    return f"colayers.{sub}.{name}"


def shadowed(sub):
    """The names of ``colayers.<sub>.__all__`` whose anchor is not ``colayers.<sub>.<name>``."""
    names = importlib.import_module(f"colayers.{sub}").__all__
    return [n for n in names if anchor(sub, n) != f"colayers.{sub}.{n}"]


def table():
    colayers = importlib.import_module("colayers")
    homes = {}
    for sub in SUBPACKAGES:
        for name in importlib.import_module(f"colayers.{sub}").__all__:
            homes.setdefault(name, sub)
    rows, own = ["| name | documented in |", "|---|---|"], []
    for name in colayers.__all__:
        if name in SUBPACKAGES:
            rows.append(f"| `colayers.{name}` | [colayers.{name}]({name}.md) |")
        elif name in homes:
            sub = homes[name]
            rows.append(f"| `{name}` | [colayers.{sub}.{name}]({sub}.md#{anchor(sub, name)}) |")
        else:
            own.append(name)
    text = "\n".join(rows)
    for name in own:
        text += f"\n\n::: colayers.{name}\n    options:\n      show_root_heading: true\n      heading_level: 2"
    return text


def on_page_markdown(markdown, page, **kwargs):
    if MARKER in markdown:
        return markdown.replace(MARKER, table())
    sub = page.file.src_uri.removeprefix("api/").removesuffix(".md")
    if page.file.src_uri.startswith("api/") and sub in SUBPACKAGES:
        for name in shadowed(sub):
            target = anchor(sub, name)
            markdown += f"\n\n::: {target}\n    options:\n      show_root_heading: true\n      heading_level: 2\n"
    return markdown
