"""The forward-mode keyword of the finite-difference layers, for the reference tests.

``IMLE``/``AIMLE`` select their forward with ``output="mean" | "samples"`` (older releases:
``return_mean=True | False``); the reference tests name the mode they check explicitly, never the default.
"""

from __future__ import annotations

import inspect

import colayers as cl


def imle_output(mean: bool) -> dict:
    """The keyword arguments that make IMLE/AIMLE return the mean (``True``) or the S hard samples."""
    if "output" in inspect.signature(cl.IMLE).parameters:
        return {"output": "mean" if mean else "samples"}
    return {"return_mean": mean}
