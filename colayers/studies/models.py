r"""Default models of the benchmark problems, in plain PyTorch.

Every model maps features ``x`` of shape ``(B, *feat)`` to scores ``theta`` of shape ``(B, *event)`` in the
library's MAXIMIZATION convention: for a cost-minimization problem the model outputs ``theta = -cost``.

* :class:`LinearModel` — an affine map ``p -> prod(event)`` reshaped to the event shape, optionally negated
  (``theta = -(W x + b)``, the linear cost regression of PyEPO's experiments, Tang & Khalil 2022).
* :class:`WarcraftCNN` — a small CNN mapping RGB terrain images ``(B, 3, 8k, 8k)`` to tile scores
  ``(B, k, k)`` with ``theta = -(softplus(z) + floor) < 0`` so that predicted tile costs are positive, as the
  vertex-weighted shortest-path oracle requires.
* :class:`DirectPathCNN` — the no-oracle baseline: the same kind of trunk mapping the image straight to path
  logits ``(B, k, k)`` (train with a binary cross-entropy against the path, threshold at 0 to predict).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_int_at_least, check_positive

__all__ = ["LinearModel", "WarcraftCNN", "DirectPathCNN"]


def _shape(name: str, value: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    try:
        shape = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of ints; got {type(value).__name__}") from None
    for d in shape:
        check_int_at_least(name, d, 1)
    if not shape:
        raise ValueError(f"{name} must have at least one dimension; got {shape}")
    return shape


class LinearModel(nn.Module):
    r"""Affine scores :math:`\theta = s\,(W x + b)` reshaped to ``out_shape``, with :math:`s = -1` if ``negate``.

    With ``negate=True`` the affine part is a predicted *cost* and the output is ``theta = -cost`` (for
    minimization problems such as the grid shortest path); PyEPO's linear model (``nn.Linear`` with bias,
    Tang & Khalil, *PyEPO*, 2022) is the affine part.

    Args:
        in_features: the feature dimension p.
        out_shape: the event shape of theta (an int or a tuple).
        negate: output ``-(W x + b)`` instead of ``W x + b``.
        bias: include the offset b.

    Example:
        >>> import torch
        >>> model = LinearModel(5, 40, negate=True)
        >>> model(torch.zeros(3, 5)).shape
        torch.Size([3, 40])
        >>> model = LinearModel(4, (3, 3))
        >>> model(torch.zeros(2, 4)).shape
        torch.Size([2, 3, 3])
    """

    def __init__(self, in_features: int, out_shape: int | Sequence[int], *, negate: bool = False, bias: bool = True):
        super().__init__()
        check_int_at_least("in_features", in_features, 1)
        self.out_shape = _shape("out_shape", out_shape)
        self.negate = bool(negate)
        self.linear = nn.Linear(in_features, math.prod(self.out_shape), bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.linear(x).reshape(*x.shape[:-1], *self.out_shape)
        return -out if self.negate else out


def _trunk(width: int) -> nn.Sequential:
    """Pixel trunk: (B, 3, 8k, 8k) -> (B, 2*width, k, k); two stride-2 stages and a 2x2 max pool."""
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),  # 8k -> 4k
        nn.ReLU(),
        nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1),  # 4k -> 2k
        nn.ReLU(),
        nn.MaxPool2d(2),  # 2k -> k: one cell per tile
    )


def _check_image(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % 8 or x.shape[3] % 8:
        raise ValueError(f"x must be RGB images of shape (B, 3, 8k, 8k'); got {tuple(x.shape)}")


class WarcraftCNN(nn.Module):
    r"""Tile-cost CNN for Warcraft-like maps: images ``(B, 3, 8k, 8k)`` to scores ``(B, k, k)``.

    A convolutional trunk brings the image to tile resolution (two stride-2 3×3 convolutions and a 2×2 max
    pool: 8 pixels per tile become one cell), then per-tile 1×1 convolutions give a logit :math:`z` and

    .. math::  \theta = -\bigl(\operatorname{softplus}(z) + c_{\min}\bigr) \le -c_{\min} < 0,

    i.e. the predicted tile cost :math:`\operatorname{softplus}(z) + c_{\min}` is positive (the 8-neighbour
    vertex-weighted shortest-path oracle needs positive costs). ``c_min`` is ``floor`` (default 0.01).
    The model is small enough to train on a CPU (about 25 k parameters at ``width=16``); it plays the role of
    the truncated ResNet-18 of Vlastelica et al. (ICLR 2020) and Niepert et al. (NeurIPS 2021).

    Args:
        width: channels of the first convolution (later stages use ``2 * width``).
        floor: the minimum predicted tile cost :math:`c_{\min} > 0`.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> model = WarcraftCNN()
        >>> theta = model(torch.rand(2, 3, 96, 96))
        >>> theta.shape, bool((theta < 0).all())
        (torch.Size([2, 12, 12]), True)
    """

    def __init__(self, width: int = 16, floor: float = 0.01):
        super().__init__()
        check_int_at_least("width", width, 1)
        self.floor = check_positive("floor", floor)
        self.trunk = _trunk(width)
        self.head = nn.Sequential(nn.Conv2d(2 * width, 2 * width, 1), nn.ReLU(), nn.Conv2d(2 * width, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x)
        z = self.head(self.trunk(x)).squeeze(1)
        return -(F.softplus(z) + self.floor)


class DirectPathCNN(nn.Module):
    r"""No-oracle baseline for Warcraft-like maps: images ``(B, 3, 8k, 8k)`` to path logits ``(B, k, k)``.

    The same pixel trunk as :class:`WarcraftCNN`, followed by ``depth`` 3×3 convolutions at tile resolution
    (so each tile sees a ``2*depth + 1`` tile neighbourhood) and a 1×1 convolution to one logit per tile.
    Train with ``F.binary_cross_entropy_with_logits(logits, y)`` against the 0/1 path; predict
    ``logits > 0``. The output is not a path in general (nothing makes it connected): that is the point of
    the baseline.

    Args:
        width: channels of the first convolution (later stages use ``2 * width``).
        depth: number of 3×3 convolutions at tile resolution.

    Example:
        >>> import torch
        >>> model = DirectPathCNN()
        >>> model(torch.rand(2, 3, 96, 96)).shape
        torch.Size([2, 12, 12])
    """

    def __init__(self, width: int = 16, depth: int = 4):
        super().__init__()
        check_int_at_least("width", width, 1)
        check_int_at_least("depth", depth, 0)
        c = 2 * width
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers += [nn.Conv2d(c, c, 3, padding=1), nn.ReLU()]
        self.trunk = _trunk(width)
        self.context = nn.Sequential(*layers)
        self.head = nn.Conv2d(c, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x)
        return self.head(self.context(self.trunk(x))).squeeze(1)
