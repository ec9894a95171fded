"""mkdocs hook for the API reference: the table of the top-level names of ``colayers``.

``colayers`` re-exports the public names of its subpackages. The page ``api/colayers.md`` holds the marker
``<!-- colayers-reexports -->``; this hook replaces it by a table that links each name of ``colayers.__all__``
to the subpackage page that documents it, so the table follows ``__all__`` as names are added. A name that no
subpackage page documents is rendered on the page itself.
"""

import importlib

MARKER = "<!-- colayers-reexports -->"
SUBPACKAGES = ["layers", "losses", "oracles", "perturb", "metrics", "studies"]


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
            rows.append(f"| `{name}` | [colayers.{sub}.{name}]({sub}.md#colayers.{sub}.{name}) |")
        else:
            own.append(name)
    text = "\n".join(rows)
    for name in own:
        text += f"\n\n::: colayers.{name}\n    options:\n      show_root_heading: true\n      heading_level: 2"
    return text


def on_page_markdown(markdown, page, **kwargs):
    if MARKER in markdown:
        return markdown.replace(MARKER, table())
    return markdown
