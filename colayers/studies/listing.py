"""``colayers study --list``: the registered problems, methods, tuned hyper-parameters and presets."""

from __future__ import annotations

import inspect
import json

__all__ = ["listing"]


def _fmt(params: dict) -> str:
    return ", ".join(f"{k}={json.dumps(v) if not isinstance(v, tuple) else list(v)}" for k, v in params.items()) or "-"


def listing() -> str:
    """The text printed by ``colayers study --list``.

    Example:
        >>> text = listing()
        >>> "shortest_path" in text and "imle" in text and "presets:" in text
        True
    """
    from . import problems as _  # noqa: F401  (registers the built-in problems)
    from .config import PRESETS
    from .registry import METHODS, PROBLEMS, TUNED

    lines = ["problems (parameters and their defaults):"]
    for name in sorted(PROBLEMS):
        fn = PROBLEMS[name]
        sig = inspect.signature(fn)
        params = {k: p.default for k, p in sig.parameters.items() if k not in ("seed", "device")}
        doc = (fn.__doc__ or "").strip().split("\n")[0]
        lines += [f"  {name}: {doc}", f"      {_fmt(params)}"]
    lines.append("methods (generic hyper-parameter defaults; every method also takes lr):")
    for name in sorted(METHODS):
        info = METHODS[name]
        lines += [f"  {name}: {info.summary}", f"      {_fmt(info.defaults)}"]
    lines.append("tuned for a (problem, method) pair (replace the generic defaults on that problem):")
    for (prob, meth), params in sorted(TUNED.items()):
        lines.append(f"  {prob} / {meth}: {_fmt(params)}")
    lines.append("presets:")
    for name, p in PRESETS.items():
        probs = ", ".join(q["name"] if isinstance(q, dict) else str(q) for q in p["problems"])
        meths = ", ".join(m["name"] if isinstance(m, dict) else str(m) for m in p["methods"])
        settings = {k: p[k] for k in ("seeds", "epochs", "batch_size", "lr") if k in p}
        lines.append(f"  {name}: problems {probs}; methods {meths}; {_fmt(settings)}")
    return "\n".join(lines)
