r"""Default models of the benchmark problems, in plain PyTorch.

Every model maps features ``x`` of shape ``(B, *feat)`` to scores ``theta`` of shape ``(B, *event)`` in the
library's MAXIMIZATION convention: for a cost-minimization problem the model outputs ``theta = -cost``.

* :class:`LinearModel` — an affine map ``p -> prod(event)`` reshaped to the event shape, optionally negated
  (``theta = -(W x + b)``, the linear cost regression of PyEPO's experiments, Tang & Khalil 2022).
* :class:`WarcraftCNN` — a small CNN mapping RGB terrain images ``(B, 3, 8k, 8k)`` to tile scores
  ``(B, k, k)`` with ``theta = -(softplus(z) + floor) < 0`` so that predicted tile costs are positive, as the
  vertex-weighted shortest-path oracle requires.
* :class:`TruncatedResNet18` — the model of the papers on the published Warcraft data: the first block of a
  ResNet-18 (stem and ``layer1``) and an adaptive max-pool to the k×k tiles, ``theta = -cost``.
* :class:`DirectPathCNN` — the no-oracle baseline: the same pixel-to-tile stem followed by tile-level
  convolutions, mapping the image straight to path logits ``(B, k, k)`` (train with a binary cross-entropy
  against the path, threshold at 0 to predict).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_int_at_least, check_positive

__all__ = ["LinearModel", "WarcraftCNN", "TruncatedResNet18", "DirectPathCNN"]


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


class _TileStem(nn.Module):
    """Pixels to tiles: (B, 3, 8k, 8k) in [0, 1] -> (B, hidden, k, k).

    The image is centred, ``(x - 0.5) / 0.25``; a 3×3 convolution extracts local texture features, an 8×8
    convolution of stride 8 aligned with the tiles turns each tile into one feature vector, and a 1×1
    convolution mixes it; each convolution is followed by batch normalization (if ``norm``) and a ReLU.
    """

    def __init__(self, width: int, hidden: int, norm: bool = True) -> None:
        super().__init__()

        def block(conv: nn.Conv2d) -> list[nn.Module]:
            return [conv, nn.BatchNorm2d(conv.out_channels), nn.ReLU()] if norm else [conv, nn.ReLU()]

        self.layers = nn.Sequential(
            *block(nn.Conv2d(3, width, 3, padding=1)),
            *block(nn.Conv2d(width, hidden, 8, stride=8)),
            *block(nn.Conv2d(hidden, hidden, 1)),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers((x - 0.5) / 0.25)


def _check_image(x: torch.Tensor) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x must be a torch.Tensor; got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % 8 or x.shape[3] % 8:
        raise ValueError(f"x must be RGB images of shape (B, 3, 8k, 8k'); got {tuple(x.shape)}")


class WarcraftCNN(nn.Module):
    r"""Tile-cost CNN for Warcraft-like maps: images ``(B, 3, 8k, 8k)`` to scores ``(B, k, k)``.

    The image, centred as :math:`(x - 0.5)/0.25`, goes through a 3×3 convolution (``width`` channels), an 8×8
    convolution of stride 8 aligned with the tiles (``hidden`` channels: one feature vector per tile) and a
    1×1 convolution, each followed by batch normalization (``norm``; as in the ResNet trunk of the papers) and
    a ReLU; a last 1×1 convolution gives one logit :math:`z` per tile and

    .. math::  \theta = -\bigl(\operatorname{softplus}(z) + c_{\min}\bigr) \le -c_{\min} < 0,

    i.e. the predicted tile cost :math:`\operatorname{softplus}(z) + c_{\min}` is positive (the 8-neighbour
    vertex-weighted shortest-path oracle needs positive costs); :math:`c_{\min}` is ``floor`` (default 0.01).
    The last bias starts at :math:`\operatorname{softplus}^{-1}(` ``init_cost`` :math:`)`, so an untrained
    model predicts costs near ``init_cost`` rather than near 0.7. A tile's score depends on its own pixels and
    a one-pixel rim of its neighbours only (and, in training mode, on the batch statistics of the
    normalization). The model is small enough to train on a CPU (about 70 k parameters with the defaults);
    batch normalization makes it learn the tile types several times faster (on the generated maps, regressing
    the true costs reached 94 % optimal paths after 7 epochs with it, 78 % without at a 3x larger learning
    rate). It plays the role of
    the truncated ResNet-18 of Vlastelica et al. (ICLR 2020) and Niepert et al. (NeurIPS 2021).

    Args:
        width: channels of the 3×3 convolution.
        hidden: channels per tile.
        floor: the minimum predicted tile cost :math:`c_{\min} > 0`.
        init_cost: the initial predicted cost (> ``floor``).
        norm: batch normalization after each convolution of the stem.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> model = WarcraftCNN()
        >>> theta = model(torch.rand(2, 3, 96, 96))
        >>> theta.shape, bool((theta < 0).all())
        (torch.Size([2, 12, 12]), True)
    """

    def __init__(
        self, width: int = 16, hidden: int = 64, floor: float = 0.01, init_cost: float = 4.0, *, norm: bool = True
    ):
        super().__init__()
        check_int_at_least("width", width, 1)
        check_int_at_least("hidden", hidden, 1)
        self.floor = check_positive("floor", floor)
        init = check_positive("init_cost", init_cost) - self.floor
        if init <= 0:
            raise ValueError(f"init_cost must be > floor={floor}; got {init_cost}")
        self.stem = _TileStem(width, hidden, bool(norm))
        self.head = nn.Conv2d(hidden, 1, 1)
        with torch.no_grad():
            self.head.bias.fill_(init + math.log(-math.expm1(-init)))  # softplus^{-1}(init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x)
        z = self.head(self.stem(x)).squeeze(1)
        return -(F.softplus(z) + self.floor)


class DirectPathCNN(nn.Module):
    r"""No-oracle baseline for Warcraft-like maps: images ``(B, 3, 8k, 8k)`` to path logits ``(B, k, k)``.

    The pixel-to-tile stem of :class:`WarcraftCNN` (with batch normalization), two coordinate channels (row
    and column in [-1, 1], so the network knows where the start and the target are), then ``depth`` 3×3
    convolutions at tile resolution (each tile sees a ``(2 depth + 1)``-tile neighbourhood: the default 6
    covers a 12×12 map) and a 1×1 convolution to one logit per tile. Train with
    ``F.binary_cross_entropy_with_logits(logits, y)`` against the 0/1 path and predict ``logits > 0``. The
    output is not a path in general (nothing makes it connected or optimal): that is what the baseline
    measures.

    Args:
        width: channels of the stem's 3×3 convolution.
        hidden: channels per tile.
        depth: number of 3×3 convolutions at tile resolution.
        norm: batch normalization in the stem (as in :class:`WarcraftCNN`).

    Example:
        >>> import torch
        >>> model = DirectPathCNN()
        >>> model(torch.rand(2, 3, 96, 96)).shape
        torch.Size([2, 12, 12])
    """

    def __init__(self, width: int = 16, hidden: int = 64, depth: int = 6, *, norm: bool = True):
        super().__init__()
        check_int_at_least("width", width, 1)
        check_int_at_least("hidden", hidden, 1)
        check_int_at_least("depth", depth, 0)
        self.stem = _TileStem(width, hidden, bool(norm))
        layers: list[nn.Module] = []
        for i in range(depth):
            layers += [nn.Conv2d(hidden + 2 if i == 0 else hidden, hidden, 3, padding=1), nn.ReLU()]
        self.context = nn.Sequential(*layers)
        self.head = nn.Conv2d(hidden if depth else hidden + 2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x)
        f = self.stem(x)
        b, _, h, w = f.shape
        rows = torch.linspace(-1, 1, h, device=f.device, dtype=f.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        cols = torch.linspace(-1, 1, w, device=f.device, dtype=f.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        return self.head(self.context(torch.cat([f, rows, cols], dim=1))).squeeze(1)


class _BasicBlock(nn.Module):
    """ResNet's basic block at constant width and stride 1 (torchvision's ``BasicBlock`` without downsampling):
    ``relu(x + bn2(conv2(relu(bn1(conv1(x))))))`` with bias-free 3×3 convolutions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(out)))


class TruncatedResNet18(nn.Module):
    r"""The truncated ResNet-18 of the Warcraft papers: images ``(B, 3, 8k, 8k)`` to tile scores ``(B, k, k)``.

    The first block of a ResNet-18 (He et al., 2016), as Vlastelica et al. (ICLR 2020, ``CombResnet18``),
    Niepert et al. (I-MLE, NeurIPS 2021) and PyEPO's Warcraft notebook use it: ``conv1`` (7×7, stride 2, 64
    channels, no bias), ``bn1``, ReLU, ``maxpool`` (3×3, stride 2) and ``layer1`` (two basic blocks of two 3×3
    convolutions with batch normalization and an identity shortcut), so a 96×96 map becomes 64 × 24 × 24
    features; then a head to one value per tile, a predicted tile cost :math:`r`:

    * ``head="mean"`` (Vlastelica et al., I-MLE): an adaptive max-pool to k×k, then the mean over the 64
      channels; :math:`r \ge 0`, as the features follow a ReLU;
    * ``head="conv"`` (PyEPO's notebook): a bias-free 1×1 convolution to one channel (with PyEPO's padding of
      one pixel), then an adaptive max-pool to k×k; :math:`r` of either sign.

    The output is

    .. math::  \theta = -\bigl(\max(r, 0) + c_{\min}\bigr) \le -c_{\min} < 0,

    the scores of tile costs :math:`\max(r, 0) + c_{\min}` (``floor``): the vertex-path oracle needs positive
    costs. For ``head="mean"`` the max with 0 changes nothing; for ``head="conv"`` it cuts the negative
    costs that PyEPO's linear program accepts and our oracle does not.

    Written in plain torch (no torchvision); the weights are initialized as torchvision initializes a
    ResNet (Kaiming-normal convolutions, fan-out; unit batch-norm scales), never downloaded or pre-trained.
    The trunk has the parameters of torchvision's blocks: ``conv1`` 9 408, ``bn1`` 128, ``layer1`` 147 968
    (batch normalization included), 157 504 in all; the ``"conv"`` head adds 64. It expects images in [0, 1]
    (the published ``uint8`` maps divided by 255, as PyEPO reads them); its first batch normalization makes
    it insensitive to an affine rescaling of the input channels.

    Args:
        size: tiles per side k (the output is ``(B, k, k)``; the image must be at least as large after
            the stride-4 trunk, i.e. ``8k`` pixels per side for the published maps).
        head: ``"mean"`` or ``"conv"`` (see above).
        floor: the minimum predicted tile cost :math:`c_{\min} > 0`.

    Example:
        >>> import torch
        >>> _ = torch.manual_seed(0)
        >>> model = TruncatedResNet18(12)
        >>> theta = model(torch.rand(2, 3, 96, 96))
        >>> theta.shape, bool((theta < 0).all()), sum(p.numel() for p in model.parameters())
        (torch.Size([2, 12, 12]), True, 157504)
    """

    def __init__(self, size: int, *, head: str = "mean", floor: float = 1e-3) -> None:
        super().__init__()
        self.size = check_int_at_least("size", size, 1)
        if head not in ("mean", "conv"):
            raise ValueError(f"head must be 'mean' or 'conv'; got {head!r}")
        self.head = head
        self.floor = check_positive("floor", floor)
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(_BasicBlock(64), _BasicBlock(64))
        self.conv2 = nn.Conv2d(64, 1, 1, padding=1, bias=False) if head == "conv" else None
        self.pool = nn.AdaptiveMaxPool2d((self.size, self.size))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_image(x)
        h = self.layer1(self.maxpool(F.relu(self.bn1(self.conv1(x)))))
        r = self.pool(self.conv2(h)).squeeze(1) if self.conv2 is not None else self.pool(h).mean(dim=1)
        return -(F.relu(r) + self.floor)
