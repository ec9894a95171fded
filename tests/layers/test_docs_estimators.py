"""The python blocks of docs/estimators.md run, in order, in one namespace (the page's examples stay true)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

PAGE = Path(__file__).resolve().parents[2] / "docs" / "estimators.md"


def test_estimators_page_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)
    assert len(blocks) >= 8
    torch.manual_seed(0)  # the blocks draw from the global RNG (torch.randn) like a user's script
    namespace: dict = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{PAGE.name}[block {i}]", "exec"), namespace)  # noqa: S102
    assert namespace["z"].shape == (10, 16, 20) and namespace["weights"].grad.shape == (16, 20)
