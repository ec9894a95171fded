"""A griffe extension for the API reference: reST math and roles in docstrings, written for Markdown.

colayers' docstrings are Google style with reST inline markup. Before mkdocstrings renders them, this
extension rewrites

* ``.. math:: formula`` and ``.. math::`` followed by an indented block into a display block ``\\[ ... \\]``
  on lines of its own (pymdownx.arithmatex turns it into a math span that MathJax typesets);
* ``:math:`formula``` into inline math ``\\( ... \\)``;
* an Args entry whose list of grouped names wraps onto a second line into one line;
* a run of doctest lines (``>>>`` and what follows up to a blank line) into a fenced ``pycon`` code block,
  so that the examples render as code and not as nested quotes;
* ``:class:`~a.b.C```, ``:func:``, ``:meth:``, ``:attr:``, ``:mod:``, ``:data:`` roles into inline code
  (``C`` for a ``~``-prefixed target, the full name otherwise).

The docstrings themselves stay reST for ``help()`` and the doctests; only the site's copy changes.
"""

import re

import griffe

ROLE = re.compile(r":(?:class|func|meth|attr|mod|data|obj|exc):`(~?)([^`]+)`")
INLINE_MATH = re.compile(r":math:`([^`]+)`")
DIRECTIVE = re.compile(r"^(?P<indent>[ \t]*)\.\. math::[ \t]*(?P<rest>.*)$")


def _indent(line):
    return len(line) - len(line.lstrip())


def _join_wrapped_names(lines):
    """Join an Args entry whose list of names wraps (``a, b,`` then, indented deeper, ``c: text``)."""
    out = []
    for line in lines:
        prev = out[-1] if out else ""
        if (prev.rstrip().endswith(",") and ":" not in prev and line.strip()
                and _indent(line) > _indent(prev) and ":" in line):
            out[-1] = prev.rstrip() + " " + line.strip()
        else:
            out.append(line)
    return out


def convert(text):
    """The Markdown form of one reST docstring (see the module docstring)."""
    lines, out, i = _join_wrapped_names(text.splitlines()), [], 0
    while i < len(lines):
        m = DIRECTIVE.match(lines[i])
        if not m:
            out.append(lines[i])
            i += 1
            continue
        indent, body = m["indent"], [m["rest"]] if m["rest"].strip() else []
        i += 1
        # The directive's content: the following lines indented deeper than the directive (blank lines inside).
        while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > len(indent)):
            if lines[i].strip() and m["rest"].strip() and not body:
                break
            body.append(lines[i].strip())
            i += 1
        while body and not body[-1]:
            body.pop()
        while body and not body[0]:
            body.pop(0)
        if out and out[-1].strip():
            out.append("")
        out += [indent + "\\[", *(indent + b for b in body if b), indent + "\\]", ""]
    out = _fence_doctests(out)
    text = "\n".join(out)
    text = INLINE_MATH.sub(lambda m: "\\(" + m[1] + "\\)", text)
    return ROLE.sub(lambda m: "`" + (m[2].rsplit(".", 1)[-1] if m[1] else m[2]) + "`", text)


def _fence_doctests(lines):
    out, i = [], 0
    while i < len(lines):
        if not lines[i].lstrip().startswith(">>>"):
            out.append(lines[i])
            i += 1
            continue
        indent = lines[i][: _indent(lines[i])]
        if out and out[-1].strip() and not out[-1].rstrip().endswith(":"):
            out.append("")
        out.append(indent + "```pycon")
        while i < len(lines) and lines[i].strip():
            out.append(indent + lines[i][len(indent):])
            i += 1
        out += [indent + "```", ""]
    return out


class RstMath(griffe.Extension):
    """Rewrite each docstring once the object tree is built."""

    def on_object(self, *, obj, loader, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = convert(obj.docstring.value)
