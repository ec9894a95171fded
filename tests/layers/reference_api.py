"""The forward-mode keyword of the finite-difference layers, for the reference tests.

``IMLE``/``AIMLE`` select their forward with ``output="mean" | "samples"``; the reference tests name the mode
they check explicitly, never the default.
"""

from __future__ import annotations


def imle_output(mean: bool) -> dict:
    """The keyword arguments that make IMLE/AIMLE return the mean (``True``) or the S hard samples."""
    return {"output": "mean" if mean else "samples"}
