r"""The published Warcraft shortest-path data set: read and check its ``.npy`` files.

The data set of Vlastelica et al. (*Differentiation of Blackbox Combinatorial Solvers*, ICLR 2020), used by
Niepert et al. (*Implicit MLE*, NeurIPS 2021) and by PyEPO's Warcraft notebook, is published by the Max
Planck Society's data repository Edmond (:data:`SOURCE`, doi:10.17617/3.YJCQ5S) as ``warcraft_maps.tar.gz``;
it unpacks to ``warcraft_shortest_path_oneskin/{k}x{k}/`` for ``k`` in :data:`SIZES`, each directory holding,
for each split ``train``, ``val`` and ``test``:

====================================  ==================================  ===============================
file                                  contents                            dtype and values
====================================  ==================================  ===============================
``{split}_maps.npy``                  RGB images ``(N, 8k, 8k, 3)``       ``uint8`` (or float in [0, 1])
``{split}_vertex_weights.npy``        tile costs ``(N, k, k)``            float, finite and > 0
``{split}_shortest_paths.npy``        the shortest path ``(N, k, k)``     0/1 (any numeric or bool dtype)
====================================  ==================================  ===============================

with N = 10 000 training and 1 000 validation and test maps. Some copies store a large training split in
parts, ``{split}_maps_part0.npy``, ``{split}_maps_part1.npy``, ...: they are read in that order and joined.
The path is the least-cost 8-neighbour path from the top-left to the bottom-right tile, its cost the sum of
the costs of all its tiles (:class:`~colayers.oracles.GridVertexShortestPath`).

:func:`load_warcraft_split` reads one split and checks everything this table says, refusing with a message
that names the file, what was expected and what came: a missing file, a wrong dtype or shape, values out of
range, splits whose files disagree on N, paths that are not 8-neighbour paths from corner to corner (the
oracle's ``contains``), and, with ``check_optimal`` (the default), paths whose cost is not the least cost for
the file's weights (the oracle solves every map again: about 0.6 s of CPU time for the 10 000 training maps of
12×12, the membership test included). Files are memory-mapped (``np.load(mmap_mode="r")``), so reading the
first ``n`` maps of a split reads only those.

Example:
    >>> import numpy as np, tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = write_warcraft_split(root / "2x2", "test", np.zeros((1, 16, 16, 3), np.uint8),
    ...                          np.ones((1, 2, 2), np.float32), np.eye(2, dtype=np.float32)[None])
    >>> split = load_warcraft_split(root, 2, "test")
    >>> split.images.shape, split.weights.shape, split.paths.tolist()
    (torch.Size([1, 3, 16, 16]), torch.Size([1, 2, 2]), [[[1.0, 0.0], [0.0, 1.0]]])
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._validation import check_int_at_least

__all__ = ["SIZES", "SPLITS", "SOURCE", "WarcraftSplit", "warcraft_directory", "load_warcraft_split",
           "write_warcraft_split"]

#: The map sizes of the published data set (tiles per side).
SIZES = (12, 18, 24, 30)
#: The splits of the published data set.
SPLITS = ("train", "val", "test")
#: Where the data set is published (Edmond, the Max Planck Society's data repository).
SOURCE = "https://edmond.mpdl.mpg.de/dataset.xhtml?persistentId=doi:10.17617/3.YJCQ5S"
_TILE = 8


@dataclass
class WarcraftSplit:
    """One split of the data set, as tensors (float32, on the CPU).

    Attributes:
        images: ``(N, 3, 8k, 8k)`` in [0, 1] (``uint8`` maps divided by 255).
        weights: the tile costs ``(N, k, k)``, positive.
        paths: the published shortest paths ``(N, k, k)``, 0/1.
    """

    images: torch.Tensor
    weights: torch.Tensor
    paths: torch.Tensor


def warcraft_directory(data_dir: str | os.PathLike, size: int) -> Path:
    """The directory of the ``size × size`` maps: ``data_dir/{size}x{size}`` or ``data_dir`` itself.

    Raises:
        ValueError: ``data_dir`` does not exist, or holds neither a ``{size}x{size}`` directory nor the files
            of a split; the message says where the data set is published.
    """
    if not isinstance(data_dir, (str, os.PathLike)) or not str(data_dir):
        raise ValueError(f"data_dir must be a directory path; got {data_dir!r}")
    root = Path(data_dir)
    sub = root / f"{size}x{size}"
    if not root.is_dir():
        raise ValueError(f"data_dir {str(root)!r} is not a directory: download the Warcraft shortest-path data set "
                         f"(warcraft_maps.tar.gz) from {SOURCE}, unpack it and name its "
                         "warcraft_shortest_path_oneskin directory")
    if sub.is_dir():
        return sub
    if any(root.glob("*_maps*.npy")):
        return root
    have = sorted(p.name for p in root.iterdir())[:8]
    raise ValueError(f"data_dir {str(root)!r} holds no {size}x{size} directory and no *_maps.npy files (found "
                     f"{have}); expected the layout of the published data set, {size}x{size}/train_maps.npy ... "
                     f"(see {SOURCE})")


def _part_number(path: Path) -> int:
    return int(re.search(r"_part(\d+)\.npy$", path.name).group(1))


def _read(directory: Path, split: str, stem: str, mmap: bool) -> tuple[np.ndarray, str]:
    """The array of ``{split}_{stem}.npy`` (or of its parts, joined) and the file name(s) for messages."""
    path = directory / f"{split}_{stem}.npy"
    parts = [] if path.is_file() else sorted(directory.glob(f"{split}_{stem}_part*.npy"), key=_part_number)
    files = [path] if path.is_file() else parts
    arrays = []
    for f in files:
        try:
            arrays.append(np.load(f, mmap_mode="r" if mmap else None, allow_pickle=False))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{f} cannot be read as a .npy array: {exc}") from exc
    if len(arrays) == 1:
        return arrays[0], str(path)
    if arrays:
        name = str(directory / f"{split}_{stem}_part*.npy")
        if len({a.shape[1:] for a in arrays}) > 1 or len({a.dtype for a in arrays}) > 1 or arrays[0].ndim == 0:
            raise ValueError(f"the parts {name} must agree in dtype and trailing shape; got shapes "
                             f"{[a.shape for a in arrays]}, dtypes {[str(a.dtype) for a in arrays]}")
        return np.concatenate(arrays), name
    raise ValueError(f"the Warcraft data set file {path} is missing (nor are there {split}_{stem}_part*.npy files); "
                     f"expected the published layout {{k}}x{{k}}/{{split}}_{stem}.npy (see {SOURCE})")


def _check_shape(name: str, array: np.ndarray, expected: tuple) -> None:
    ok = array.ndim == len(expected) and all(e is None or a == e for a, e in zip(array.shape, expected))
    if not ok:
        shown = "(" + ", ".join("N" if e is None else str(e) for e in expected) + ")"
        raise ValueError(f"{name} must have shape {shown}; got {array.shape}")


def _images(name: str, maps: np.ndarray, size: int) -> torch.Tensor:
    _check_shape(name, maps, (None, _TILE * size, _TILE * size, 3))
    if maps.dtype == np.uint8:
        return torch.from_numpy(maps.astype(np.float32)).div_(255.0).permute(0, 3, 1, 2).contiguous()
    if not np.issubdtype(maps.dtype, np.floating):
        raise ValueError(f"{name} must hold uint8 RGB values (or floats in [0, 1]); got dtype {maps.dtype}")
    low, high = (float(maps.min()), float(maps.max())) if maps.size else (0.0, 0.0)
    if not (0.0 <= low and high <= 1.0):  # NaN fails too
        raise ValueError(f"{name} holds floats, which must lie in [0, 1]; got values in [{low}, {high}]")
    return torch.from_numpy(maps.astype(np.float32)).permute(0, 3, 1, 2).contiguous()


def _weights(name: str, weights: np.ndarray, size: int) -> torch.Tensor:
    _check_shape(name, weights, (None, size, size))
    if not (np.issubdtype(weights.dtype, np.floating) or np.issubdtype(weights.dtype, np.integer)):
        raise ValueError(f"{name} must hold real tile costs; got dtype {weights.dtype}")
    w = np.asarray(weights, dtype=np.float64)
    bad = ~(np.isfinite(w) & (w > 0))
    if bad.any():
        i = np.argwhere(bad)[0]
        raise ValueError(f"{name} must hold finite tile costs > 0; got {int(bad.sum())} other entries, the first "
                         f"{w[tuple(i)]!r} at index {tuple(int(v) for v in i)}")
    return torch.from_numpy(w.astype(np.float32))


def _paths(name: str, paths: np.ndarray, size: int) -> torch.Tensor:
    _check_shape(name, paths, (None, size, size))
    if not (paths.dtype == np.bool_ or np.issubdtype(paths.dtype, np.number)):
        raise ValueError(f"{name} must hold 0/1 path indicators; got dtype {paths.dtype}")
    p = np.asarray(paths)
    bad = (p != 0) & (p != 1)
    if bad.any():
        i = np.argwhere(bad)[0]
        raise ValueError(f"{name} must hold 0/1 entries; got {int(bad.sum())} other entries, the first "
                         f"{p[tuple(i)]!r} at index {tuple(int(v) for v in i)}")
    return torch.from_numpy(p.astype(np.float32))


def _check_paths(name: str, weights: torch.Tensor, paths: torch.Tensor, check_optimal: bool, rtol: float) -> None:
    """Every path is an 8-neighbour path from corner to corner and, with ``check_optimal``, a shortest one."""
    from ..oracles.grid import GridVertexShortestPath

    size = weights.shape[-1]
    oracle = GridVertexShortestPath(size, size)
    valid = oracle.contains(paths)
    if not bool(valid.all()):
        idx = torch.nonzero(~valid).flatten()
        raise ValueError(f"{name} must hold 8-neighbour paths from the top-left to the bottom-right tile without "
                         f"shortcuts; {idx.numel()} of {paths.shape[0]} are not, the first at index {int(idx[0])}")
    if not check_optimal:
        return
    cost = (weights.double() * paths.double()).sum(dim=(-2, -1))
    best = (weights.double() * oracle(-weights).double()).sum(dim=(-2, -1))
    off = (cost - best).abs() > rtol * best
    if bool(off.any()):
        i = int(torch.nonzero(off).flatten()[0])
        raise ValueError(f"{name} must hold least-cost paths for the vertex weights; {int(off.sum())} of "
                         f"{paths.shape[0]} are not (the first at index {i}: cost {float(cost[i]):.6g}, least cost "
                         f"{float(best[i]):.6g}); pass check_optimal=False to accept them")


def load_warcraft_split(
    data_dir: str | os.PathLike,
    size: int,
    split: str,
    *,
    n: int | None = None,
    check_optimal: bool = True,
    mmap: bool = True,
    rtol: float = 1e-5,
) -> WarcraftSplit:
    """Read and check one split of the published Warcraft data set (see the module docstring).

    Args:
        data_dir: the ``warcraft_shortest_path_oneskin`` directory (holding ``{size}x{size}/``) or the
            ``{size}x{size}`` directory itself.
        size: tiles per side k (the data set has :data:`SIZES`).
        split: ``"train"``, ``"val"`` or ``"test"``.
        n: read the first ``n`` maps only (``None``: all of them).
        check_optimal: check that every path costs the least cost for its weights (the oracle solves every map;
            ties between paths of equal cost are accepted).
        mmap: memory-map the files, so that only the maps read are loaded.
        rtol: relative tolerance of the optimality check (the published weights are stored in low precision).

    Returns:
        a :class:`WarcraftSplit` (float32 tensors on the CPU).

    Raises:
        ValueError: a missing file, a wrong dtype, shape or value, files that disagree on N, or ``n`` larger
            than the split; the message names the file, what was expected and what came.
    """
    check_int_at_least("size", size, 2)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    directory = warcraft_directory(data_dir, size)
    arrays = {stem: _read(directory, split, stem, mmap) for stem in ("maps", "vertex_weights", "shortest_paths")}
    expected = {"maps": (None, _TILE * size, _TILE * size, 3), "vertex_weights": (None, size, size),
                "shortest_paths": (None, size, size)}
    for stem, (array, name) in arrays.items():
        _check_shape(name, array, expected[stem])
    counts = {name: a.shape[0] for a, name in arrays.values()}
    if len(set(counts.values())) > 1:
        raise ValueError(f"the files of the {split!r} split must hold the same number N of maps; got "
                         + ", ".join(f"{name}: {c}" for name, c in counts.items()))
    total = next(iter(counts.values()))
    if n is not None:
        check_int_at_least(f"n ({split} maps)", n, 1)
        if n > total:
            raise ValueError(f"n ({split} maps) must be at most the {total} maps of {arrays['maps'][1]}; got {n}")
    take = slice(0, total if n is None else n)
    (maps, maps_name), (w, w_name), (p, p_name) = arrays.values()
    images = _images(maps_name, maps[take], size)
    weights = _weights(w_name, w[take], size)
    paths = _paths(p_name, p[take], size)
    _check_paths(p_name, weights, paths, check_optimal, rtol)
    return WarcraftSplit(images=images, weights=weights, paths=paths)


def write_warcraft_split(
    directory: str | os.PathLike, split: str, maps: np.ndarray, weights: np.ndarray, paths: np.ndarray
) -> Path:
    """Write one split in the published layout (``{split}_maps.npy``, ``{split}_vertex_weights.npy``,
    ``{split}_shortest_paths.npy`` in ``directory``, created if needed), unchanged; returns ``directory``.

    For data of one's own in the same format, and for tests of the loader.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}; got {split!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    for stem, array in (("maps", maps), ("vertex_weights", weights), ("shortest_paths", paths)):
        np.save(out / f"{split}_{stem}.npy", np.asarray(array), allow_pickle=False)
    return out
