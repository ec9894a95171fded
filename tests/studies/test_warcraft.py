"""Tests of the Warcraft-like map generator, its problem, and the CNNs."""

import numpy as np
import pytest
import torch
from scipy.sparse.csgraph import dijkstra

from colayers.studies import (
    TERRAINS,
    DirectPathCNN,
    WarcraftCNN,
    generate_maps,
    generate_terrain,
    make_problem,
    render_terrain,
)
from tests.conftest import DEVICES

from ._grid_graph import eight_neighbour_graph


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _dijkstra_cost(cost: np.ndarray) -> float:
    """Independent least path cost, 8 neighbours, vertex weights counted at both ends (scipy Dijkstra)."""
    h, w = cost.shape
    graph = eight_neighbour_graph(cost)
    return float(dijkstra(graph, indices=0)[h * w - 1] + cost[0, 0])


def test_terrain_types_and_costs():
    assert len(TERRAINS) >= 5
    costs = [t.cost for t in TERRAINS]
    assert len(set(costs)) == len(costs) and min(costs) > 0
    terrain = generate_terrain(100, 12, generator=_gen(0))
    counts = torch.bincount(terrain.flatten(), minlength=len(TERRAINS))
    assert bool((counts > 0).all())  # every type occurs
    assert int(counts.max()) < 0.5 * terrain.numel()  # no type dominates


@pytest.mark.parametrize("size", [12, 18])
def test_terrain_is_spatially_coherent(size):
    terrain = generate_terrain(200, size, generator=_gen(1))
    freq = torch.bincount(terrain.flatten(), minlength=len(TERRAINS)).double() / terrain.numel()
    iid_rate = float((freq**2).sum())  # P(two independent tiles share a type) under the same frequencies
    same = torch.cat(
        [(terrain[:, 1:, :] == terrain[:, :-1, :]).flatten(), (terrain[:, :, 1:] == terrain[:, :, :-1]).flatten()]
    )
    rate = float(same.double().mean())
    # with ~ 200 * 2 * k * (k-1) ≥ 52,800 neighbour pairs the standard error of `rate` is < 0.003
    assert rate > iid_rate + 0.2, (rate, iid_rate)


def test_generation_is_seeded():
    a = generate_maps(5, 12, generator=_gen(3))
    b = generate_maps(5, 12, generator=_gen(3))
    c = generate_maps(5, 12, generator=_gen(4))
    assert torch.equal(a.images, b.images) and torch.equal(a.terrain, b.terrain)
    assert not torch.equal(a.terrain, c.terrain) and not torch.equal(a.images, c.images)


def test_images_shape_range_and_per_type_colour_statistics_differ():
    maps = generate_maps(60, 12, generator=_gen(5))
    n, k = 60, 12
    assert maps.images.shape == (n, 3, 8 * k, 8 * k) and maps.images.dtype == torch.float32
    assert float(maps.images.min()) >= 0 and float(maps.images.max()) <= 1
    tiles = maps.images.reshape(n, 3, k, 8, k, 8).permute(0, 2, 4, 1, 3, 5).reshape(n, k, k, 3, 64)
    mean_color = tiles.mean(dim=-1)  # (n, k, k, 3)
    texture = tiles.std(dim=-1).mean(dim=-1)  # within-tile variation
    assert float(texture.min()) > 0.01  # every tile is textured, not flat
    stats = []
    for t in range(len(TERRAINS)):
        sel = maps.terrain == t
        stats.append((mean_color[sel].mean(0), mean_color[sel].std(0), int(sel.sum())))
    # every pair of types differs in mean colour by far more than the standard error of the means (> 5 SE)
    for a in range(len(TERRAINS)):
        for b in range(a + 1, len(TERRAINS)):
            (ma, sa, na), (mb, sb, nb) = stats[a], stats[b]
            se = torch.sqrt(sa**2 / na + sb**2 / nb)
            assert float(((ma - mb).abs() / se).max()) > 5, (TERRAINS[a].name, TERRAINS[b].name)
    # costs are the type costs
    table = torch.tensor([t.cost for t in TERRAINS])
    assert torch.equal(maps.costs, table[maps.terrain])


def _tile_features(maps):
    """Per-tile mean colour (3), texture energy dh + dv and anisotropy |dh - dv| (2), with dh and dv the mean
    absolute horizontal and vertical grey-level differences within the tile."""
    n, k = maps.terrain.shape[:2]
    tiles = maps.images.reshape(n, 3, k, 8, k, 8).permute(0, 2, 4, 1, 3, 5)  # (n, k, k, 3, 8, 8)
    grey = tiles.mean(dim=3)
    dh = (grey[..., :, 1:] - grey[..., :, :-1]).abs().mean(dim=(-1, -2))
    dv = (grey[..., 1:, :] - grey[..., :-1, :]).abs().mean(dim=(-1, -2))
    texture = torch.stack([dh + dv, (dh - dv).abs()], -1)
    return torch.cat([tiles.mean(dim=(-1, -2)), texture], -1).reshape(-1, 5)


def test_terrain_types_are_separable_by_a_simple_per_tile_classifier_fitted_on_other_maps():
    # nearest class mean (features standardized) fitted on one seed's maps, tested on another seed's maps
    fit, test = generate_maps(40, 12, generator=_gen(10)), generate_maps(40, 12, generator=_gen(11))
    x_fit, y_fit = _tile_features(fit), fit.terrain.reshape(-1)
    x_test, y_test = _tile_features(test), test.terrain.reshape(-1)
    means = torch.stack([x_fit[y_fit == t].mean(0) for t in range(len(TERRAINS))])
    scale = x_fit.std(0)
    pred = (((x_test[:, None] - means) / scale) ** 2).sum(-1).argmin(1)
    # 5760 test tiles: a 1 % error rate is 58 tiles, far above the sampling error of the rate (< 0.2 %)
    assert float((pred == y_test).double().mean()) > 0.99
    # the texture statistics alone (no colour) also tell the types apart far above chance (1/6)
    means_t = means[:, 3:]
    pred_t = (((x_test[:, None, 3:] - means_t) / scale[3:]) ** 2).sum(-1).argmin(1)
    assert float((pred_t == y_test).double().mean()) > 0.5


def test_texture_orientation_differs_between_types():
    # grass blades are vertical (large horizontal differences), water waves horizontal (large vertical ones)
    maps = generate_maps(40, 12, generator=_gen(12))
    n, k = maps.terrain.shape[:2]
    grey = maps.images.mean(1).reshape(n, k, 8, k, 8).permute(0, 1, 3, 2, 4)  # (n, k, k, 8, 8)
    dh = (grey[..., :, 1:] - grey[..., :, :-1]).abs().mean(dim=(-1, -2))
    dv = (grey[..., 1:, :] - grey[..., :-1, :]).abs().mean(dim=(-1, -2))
    grass, water = maps.terrain == 1, maps.terrain == 5
    assert float(dh[grass].mean()) > 1.5 * float(dv[grass].mean())
    assert float(dv[water].mean()) > 1.5 * float(dh[water].mean())


def test_rendering_is_a_function_of_terrain_and_generator_only():
    terrain = generate_terrain(3, 12, generator=_gen(6))
    img1 = render_terrain(terrain, generator=_gen(7))
    img2 = render_terrain(terrain, generator=_gen(7))
    assert torch.equal(img1, img2)
    flat = render_terrain(terrain, generator=_gen(7), variants=1, pixel_noise=0, tile_jitter=0, lighting=0)
    # without noise, all tiles of one type in one map look the same
    tiles = flat.reshape(3, 3, 12, 8, 12, 8).permute(0, 2, 4, 1, 3, 5)
    for t in terrain[0].unique():
        sel = tiles[0][terrain[0] == t]
        assert torch.allclose(sel, sel[0].expand_as(sel))


def test_labels_are_optimal_paths():
    prob = make_problem("warcraft", seed=2, n=6, n_test=2, size=12)
    assert prob.sense == "min" and prob.event_ndim == 2
    cost = -prob.theta_train
    assert bool((cost > 0).all())
    path_cost = (cost * prob.y_train).sum(dim=(1, 2))
    for i in range(6):
        assert abs(float(path_cost[i]) - _dijkstra_cost(cost[i].double().numpy())) < 1e-4
    assert bool((prob.y_train[:, 0, 0] == 1).all() and (prob.y_train[:, -1, -1] == 1).all())
    table = torch.tensor([t.cost for t in TERRAINS])
    assert torch.equal(-prob.theta_train, table[prob.extras["terrain_train"]])


def test_bad_arguments():
    with pytest.raises(TypeError, match="generator"):
        generate_terrain(2, 12, generator=0)
    with pytest.raises(ValueError, match="size"):
        generate_terrain(2, 1, generator=_gen(0))
    with pytest.raises(ValueError, match="road_prob"):
        generate_terrain(2, 12, generator=_gen(0), road_prob=1.5)
    with pytest.raises(ValueError, match="terrain codes"):
        render_terrain(torch.full((1, 4, 4), 99), generator=_gen(0))
    with pytest.raises(ValueError, match="x must be RGB images"):
        WarcraftCNN()(torch.zeros(1, 3, 10, 10))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("size", [12, 18])
def test_cnn_maps_images_to_negative_scores_and_is_trainable(size, device):
    torch.manual_seed(0)
    model = WarcraftCNN(width=4).to(device)
    x = torch.rand(2, 3, 8 * size, 8 * size, device=device)
    theta = model(x)
    assert theta.shape == (2, size, size) and theta.device == x.device
    assert bool((theta <= -model.floor).all())
    (theta * torch.randn_like(theta)).sum().backward()
    for name, param in model.named_parameters():
        assert param.grad is not None and bool((param.grad != 0).any()), name


def test_cnn_normalization_option_and_eval_mode_is_per_image():
    torch.manual_seed(0)
    with_norm, without = WarcraftCNN(width=4, hidden=8), WarcraftCNN(width=4, hidden=8, norm=False)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in with_norm.modules()) == 3
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in without.modules())
    x = torch.rand(3, 3, 32, 32)
    with_norm(x)  # one training-mode pass updates the running statistics
    with_norm.eval()
    with torch.no_grad():  # in eval mode an image's scores do not depend on the rest of the batch
        assert torch.allclose(with_norm(x)[:1], with_norm(x[:1]), atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_direct_model_shapes_and_gradients(device):
    torch.manual_seed(0)
    prob = make_problem("warcraft", seed=0, n=2, n_test=1, device=device)
    model = prob.make_direct_model()
    assert isinstance(model, DirectPathCNN)
    logits = model(prob.x_train)
    assert logits.shape == prob.y_train.shape and logits.device == prob.x_train.device
    loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, prob.y_train)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert isinstance(prob.make_model(), WarcraftCNN)


@pytest.mark.parametrize("name", ["blackbox", "imle", "fy"])
def test_training_oracle_clamps_tile_costs_counts_calls_and_evaluation_stays_exact(name):
    from colayers.oracles import GridVertexShortestPath
    from colayers.studies.methods import make_method
    from colayers.studies.problems.warcraft import MIN_TILE_COST
    from colayers.studies.trial import trial_oracles

    prob = make_problem("warcraft", seed=0, n=2, n_test=1, n_val=0, size=4)
    # the problem declares its training oracle: the same path oracle with tile costs raised to MIN_TILE_COST
    assert isinstance(prob.training_oracle, GridVertexShortestPath) and prob.training_oracle.min_cost == MIN_TILE_COST
    assert prob.oracle.min_cost is None
    counter, training = trial_oracles(prob)
    params = {"fy": {"epsilon": 1.0, "num_samples": 3}}.get(name, {"task_loss": "hamming", "lambda_": 50.0})
    method = make_method(name, counter, 2, seed=0, training_oracle=training, problem=prob, **params)
    y_true = GridVertexShortestPath(4, 4).shortest_path(torch.ones(2, 4, 4))
    # scores near 0: perturbations and the λ-step leave θ < 0; the exact oracle would raise on them
    theta = torch.full((2, 4, 4), -0.01, requires_grad=True)
    loss = method.loss(theta, -torch.ones(2, 4, 4), y_true)
    loss.backward()
    assert torch.isfinite(theta.grad).all()
    assert counter.calls >= 1 and counter.instances >= 2  # the clamped training oracle's calls are counted
    calls = counter.calls
    with pytest.raises(ValueError, match="min_cost"):  # evaluation decodes with the exact oracle
        method.predict(torch.full((1, 4, 4), 0.5))
    assert counter.calls == calls + 1
    layer_oracle = getattr(method, "layer", None) or method.fn.layer
    assert layer_oracle.oracle is training
