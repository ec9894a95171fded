"""Tests of the published Warcraft data set's loader, its problem, the truncated ResNet-18 and ``--data``.

The data set cannot be downloaded here: the tests write tiny files in its exact format (``uint8`` maps
``(N, 8k, 8k, 3)``, float tile costs ``(N, k, k)`` from the published cost values, 0/1 shortest paths
``(N, k, k)`` computed by scipy's Dijkstra, independent of the library's oracle) and read them back.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.sparse.csgraph import dijkstra

from colayers.cli import main
from colayers.studies import TruncatedResNet18, load_warcraft_split, make_problem
from colayers.studies.warcraft_data import SOURCE, write_warcraft_split

from ._grid_graph import eight_neighbour_graph

K = 4  # tiles per side: 32 x 32 pixel maps
COSTS = np.array([0.8, 1.2, 5.3, 7.7, 9.2], dtype=np.float16)  # the published tile costs, stored in low precision


def _dijkstra_path(cost: np.ndarray) -> np.ndarray:
    """The 0/1 tiles of a least-cost 8-neighbour path, both corner tiles included (scipy, predecessors)."""
    h, w = cost.shape
    graph = eight_neighbour_graph(cost)
    _, pred = dijkstra(graph, indices=0, return_predecessors=True)
    path = np.zeros(h * w, dtype=np.float32)
    v = h * w - 1
    while v >= 0:
        path[v] = 1
        v = pred[v]
    return path.reshape(h, w)


def _split(n: int, seed: int, size: int = K):
    rng = np.random.default_rng(seed)
    maps = rng.integers(0, 256, (n, 8 * size, 8 * size, 3), dtype=np.uint8)
    weights = COSTS[rng.integers(0, len(COSTS), (n, size, size))]
    paths = np.stack([_dijkstra_path(w.astype(np.float64)) for w in weights])
    return maps, weights, paths


@pytest.fixture
def data_root(tmp_path):
    """``root/4x4/{train,val,test}_*.npy`` with 6, 3 and 4 maps, in the published format."""
    for split, n, seed in (("train", 6, 0), ("val", 3, 1), ("test", 4, 2)):
        write_warcraft_split(tmp_path / f"{K}x{K}", split, *_split(n, seed))
    return tmp_path


def test_loader_reads_the_published_format(data_root):
    maps, weights, paths = _split(4, 2)
    for where in (data_root, data_root / f"{K}x{K}"):  # the root, or the size's own directory
        s = load_warcraft_split(where, K, "test")
        assert s.images.dtype == s.weights.dtype == s.paths.dtype == torch.float32
        assert s.images.shape == (4, 3, 8 * K, 8 * K)
        np.testing.assert_array_equal(s.images.permute(0, 2, 3, 1).numpy(), maps.astype(np.float32) / 255)
        np.testing.assert_array_equal(s.weights.numpy(), weights.astype(np.float32))
        np.testing.assert_array_equal(s.paths.numpy(), paths)
    first = load_warcraft_split(data_root, K, "test", n=2, mmap=False)
    np.testing.assert_array_equal(first.paths.numpy(), paths[:2])


def test_loader_joins_split_parts(tmp_path):
    maps, weights, paths = _split(5, 3)
    d = tmp_path / f"{K}x{K}"
    d.mkdir()
    for stem, array in (("maps", maps), ("vertex_weights", weights), ("shortest_paths", paths)):
        for i, part in enumerate((slice(0, 2), slice(2, 5))):
            np.save(d / f"train_{stem}_part{i}.npy", array[part])
    s = load_warcraft_split(tmp_path, K, "train")
    np.testing.assert_array_equal(s.paths.numpy(), paths)
    np.testing.assert_array_equal(s.weights.numpy(), weights.astype(np.float32))


def test_loader_accepts_float_maps_in_unit_range(tmp_path):
    maps, weights, paths = _split(2, 4)
    write_warcraft_split(tmp_path, "val", maps.astype(np.float32) / 255, weights, paths)
    s = load_warcraft_split(tmp_path, K, "val")
    np.testing.assert_allclose(s.images.permute(0, 2, 3, 1).numpy(), maps / 255, rtol=1e-6)


def _broken(tmp_path, **change):
    arrays = dict(zip(("maps", "weights", "paths"), _split(3, 5)))
    arrays.update(change)
    write_warcraft_split(tmp_path, "train", arrays["maps"], arrays["weights"], arrays["paths"])
    return tmp_path


_U8, _F32 = np.uint8, np.float32
_REFUSALS = [
    (dict(maps=np.zeros((3, 32, 32, 3), np.int32)), r"train_maps\.npy must hold uint8 RGB values .* got dtype int32"),
    (dict(maps=np.zeros((3, 32, 32, 4), _U8)), r"maps\.npy must have shape \(N, 32, 32, 3\); got \(3, 32, 32, 4\)"),
    (dict(maps=np.zeros((3, 24, 24, 3), _U8)), r"must have shape \(N, 32, 32, 3\); got \(3, 24, 24, 3\)"),
    (dict(maps=np.full((3, 32, 32, 3), 2.0, _F32)), r"floats, which must lie in \[0, 1\]; got values in \[2.0, 2.0\]"),
    (dict(weights=np.ones((3, 5, 5), _F32)), r"train_vertex_weights\.npy must have shape \(N, 4, 4\); got \(3, 5, 5\)"),
    (dict(weights=np.zeros((3, 4, 4), _F32)), r"train_vertex_weights\.npy must hold finite tile costs > 0; got 48"),
    (dict(weights=np.full((3, 4, 4), np.nan, _F32)), r"finite tile costs > 0"),
    (dict(weights=np.ones((3, 4, 4), "U1")), r"train_vertex_weights\.npy must hold real tile costs; got dtype <U1"),
    (dict(paths=np.full((3, 4, 4), 2.0, _F32)), r"train_shortest_paths\.npy must hold 0/1 entries; got 48"),
    (dict(paths=np.zeros((3, 4), _F32)), r"train_shortest_paths\.npy must have shape \(N, 4, 4\); got \(3, 4\)"),
    (dict(paths=np.zeros((3, 4, 4), _F32)), r"must hold 8-neighbour paths .* 3 of 3 are not, the first at index 0"),
    (dict(maps=np.zeros((2, 32, 32, 3), _U8)),
     r"the files of the 'train' split must hold the same number N of maps; got .*train_maps\.npy: 2, .*: 3"),
]


@pytest.mark.parametrize("change, match", _REFUSALS)
def test_loader_refuses_what_the_published_format_does_not_allow(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        load_warcraft_split(_broken(tmp_path, **change), K, "train")


def test_loader_refuses_missing_files_and_directories(tmp_path, data_root):
    with pytest.raises(ValueError, match=r"is not a directory: download .*edmond\.mpdl\.mpg\.de"):
        load_warcraft_split(tmp_path / "nowhere", K, "train")
    with pytest.raises(ValueError, match=r"holds no 12x12 directory and no \*_maps\.npy files"):
        load_warcraft_split(data_root, 12, "train")
    (data_root / f"{K}x{K}" / "val_vertex_weights.npy").unlink()
    with pytest.raises(ValueError, match=r"val_vertex_weights\.npy is missing .*published layout"):
        load_warcraft_split(data_root, K, "val")
    (data_root / f"{K}x{K}" / "test_maps.npy").write_bytes(b"not an array")
    with pytest.raises(ValueError, match=r"test_maps\.npy cannot be read as a \.npy array"):
        load_warcraft_split(data_root, K, "test")
    with pytest.raises(ValueError, match=r"n \(train maps\) must be at most the 6 maps"):
        load_warcraft_split(data_root, K, "train", n=7)
    assert "doi:10.17617/3.YJCQ5S" in SOURCE


def test_loader_checks_that_paths_are_shortest(tmp_path):
    """A valid path that is not the least-cost one: refused by check_optimal, accepted without it."""
    weights = np.full((1, K, K), COSTS[0])
    weights[0, 1, 1] = COSTS[-1]  # the diagonal's second tile is expensive
    diagonal = np.eye(K, dtype=np.float32)[None]
    best = _dijkstra_path(weights[0].astype(np.float64))[None]
    assert (best * weights).sum() < (diagonal * weights).sum()
    maps = np.zeros((1, 8 * K, 8 * K, 3), np.uint8)
    write_warcraft_split(tmp_path, "test", maps, weights, diagonal)
    with pytest.raises(ValueError, match=r"must hold least-cost paths .* 1 of 1 are not .*check_optimal=False"):
        load_warcraft_split(tmp_path, K, "test")
    s = load_warcraft_split(tmp_path, K, "test", check_optimal=False)
    np.testing.assert_array_equal(s.paths.numpy(), diagonal)


def test_problem_from_the_data_set(data_root):
    prob = make_problem("warcraft", seed=3, data_dir=str(data_root), size=K)
    maps, weights, paths = _split(6, 0)
    assert prob.x_train.shape == (6, 3, 32, 32) and prob.x_val.shape[0] == 3 and prob.x_test.shape[0] == 4
    np.testing.assert_array_equal(prob.theta_train.numpy(), -weights.astype(np.float32))
    np.testing.assert_array_equal(prob.y_train.numpy(), paths)
    assert bool((prob.oracle(prob.theta_train) * prob.theta_train).sum() == (prob.y_train * prob.theta_train).sum())
    assert prob.params["n"] == 6 and prob.params["data_dir"] == str(data_root) and prob.params["model"] == "resnet18"
    assert isinstance(prob.make_model(), TruncatedResNet18) and "published data set" in prob.description
    small = make_problem("warcraft", data_dir=str(data_root), size=K, n=2, n_test=1, n_val=0, model="cnn")
    assert small.x_train.shape[0] == 2 and small.x_val is None and type(small.make_model()).__name__ == "WarcraftCNN"
    with pytest.raises(ValueError, match="model must be 'cnn', 'resnet18' or None"):
        make_problem("warcraft", model="vgg")
    generated = make_problem("warcraft", n=2, n_test=1, size=K)  # no directory: the generator, its own model
    assert generated.params["n_val"] == 100 and type(generated.make_model()).__name__ == "WarcraftCNN"


def test_truncated_resnet18_has_the_blocks_of_torchvision():
    """Parameter counts of torchvision's resnet18 blocks: conv1 7*7*3*64, bn1 2*64, layer1 4 convs 3*3*64*64 and
    4 batch norms 2*64 (no downsampling in layer1)."""
    model = TruncatedResNet18(12)

    def count(module):
        return sum(p.numel() for p in module.parameters())

    assert count(model.conv1) == 7 * 7 * 3 * 64 == 9408
    assert count(model.bn1) == 128
    assert count(model.layer1) == 4 * 3 * 3 * 64 * 64 + 4 * 2 * 64 == 147968
    assert count(model) == 9408 + 128 + 147968
    assert count(TruncatedResNet18(12, head="conv")) == count(model) + 64
    assert [b.training for b in model.modules() if isinstance(b, torch.nn.BatchNorm2d)] == [True] * 5


@pytest.mark.parametrize("size", [12, 18])
def test_truncated_resnet18_shapes_and_heads(size):
    torch.manual_seed(0)
    x = torch.rand(2, 3, 8 * size, 8 * size)
    model = TruncatedResNet18(size).eval()
    features = model.layer1(model.maxpool(F.relu(model.bn1(model.conv1(x)))))
    assert features.shape == (2, 64, 2 * size, 2 * size)  # stride 4: 96 pixels -> 24 x 24
    expected = -(F.adaptive_max_pool2d(features, size).mean(dim=1) + 1e-3)  # max-pool to k x k, channel mean
    torch.testing.assert_close(model(x), expected)
    conv = TruncatedResNet18(size, head="conv", floor=0.5).eval()
    theta = conv(x)
    assert theta.shape == (2, size, size) and bool((theta <= -0.5).all())
    theta.sum().backward()
    assert all(p.grad is not None for p in conv.parameters())
    with pytest.raises(ValueError, match="head must be 'mean' or 'conv'; got 'avg'"):
        TruncatedResNet18(size, head="avg")
    with pytest.raises(ValueError, match=r"x must be RGB images of shape \(B, 3, 8k, 8k'\); got \(2, 1, 96, 96\)"):
        model(torch.rand(2, 1, 96, 96))


def test_cli_data_flag(data_root, tmp_path, capsys):
    out = tmp_path / "study"
    argv = ["study", "--problems", "warcraft", "--data", str(data_root), "-P", f"size={K}", "--methods",
            "two-stage", "--seeds", "0", "--epochs", "1", "--batch-size", "3", "-o", str(out), "--no-progress",
            "--no-figures"]
    assert main(argv) == 0
    assert "warcraft" in capsys.readouterr().out
    import json

    eff = json.loads((out / "config.json").read_text())
    assert eff["problems"][0]["params"]["data_dir"] == str(data_root)
    argv[argv.index("--data") + 1] = str(tmp_path / "missing")
    argv[argv.index("-o") + 1] = str(tmp_path / "other")
    assert main(argv) == 2
    assert "is not a directory: download the Warcraft shortest-path data set" in capsys.readouterr().err
    assert main(["study", "--problems", "shortest_path", "--data", str(data_root)]) == 2
    assert "--data names the Warcraft data set's directory" in capsys.readouterr().err
