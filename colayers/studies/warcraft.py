r"""Procedurally generated Warcraft-like terrain maps: tile types, tile costs, RGB images.

The Warcraft shortest-path benchmark (Vlastelica et al., *Differentiation of Blackbox Combinatorial Solvers*,
ICLR 2020; used by Niepert et al., *Implicit MLE*, NeurIPS 2021) gives a network an RGB image of a k×k terrain
map, 8×8 pixels per tile, and asks for the cheapest 8-neighbour path from the top-left to the bottom-right
tile, where each tile's cost depends on its terrain type. The original data set cannot be downloaded here,
so this module generates maps of the same form:

1. **Terrain** (:func:`generate_terrain`). Two smooth random fields at tile resolution, *elevation* and
   *moisture* (white noise convolved with a Gaussian of width ``smoothness`` tiles, standardized per map),
   are thresholded: high elevation is mountain, low elevation is water, and in between moisture picks
   forest (wet), sand (dry) or grass. Then up to two roads are drawn as random walks across the map, one
   west-east and one north-south, each present with probability ``road_prob`` (roads cross water as
   bridges). Neighbouring tiles therefore share a type far more often than i.i.d. tiles would.
2. **Costs**: each type has a fixed cost (:data:`TERRAINS`): road 0.8, grass 1.2, sand 2.5, forest 5.3,
   mountain 7.7, water 9.2.
3. **Images** (:func:`render_terrain`). Each tile is 8×8 RGB pixels: the type's base colour, times a per-map
   tint and brightness (lighting), plus a per-tile colour jitter, plus one of several random variants of the
   type's own texture pattern, plus per-pixel noise, clipped to [0, 1]. As in the real Warcraft tiles, each
   type has its own look: separated hues (grey road, light green grass, yellow sand, dark green forest,
   brown mountain, blue water) and patterns that differ in orientation and frequency (road: paving joints
   along its axis and a central rut; grass: vertical blades on alternate columns; sand: diagonal ripples of
   period 4; forest: round dark crowns with a lit rim; mountain: a shaded diagonal ridge with coarse rocks;
   water: horizontal waves of period 4 with highlights). The lighting, jitter and noise are small enough that
   the types stay separable per tile (a nearest-class-mean classifier on a tile's mean colour and two texture
   statistics, fitted on other maps, labels more than 99 % of tiles correctly: tested), yet a model still
   has to learn from pixels which appearance goes with which cost.

Everything is vectorised over maps (no Python loop over maps or tiles); randomness comes only from the
``generator`` argument.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .._validation import check_int_at_least, check_positive

__all__ = ["Terrain", "TERRAINS", "WarcraftMaps", "generate_terrain", "render_terrain", "generate_maps"]

TILE = 8  # pixels per tile side


class Terrain(NamedTuple):
    """A terrain type: its name, its tile cost and its base RGB colour in [0, 1]."""

    name: str
    cost: float
    color: tuple[float, float, float]


#: The terrain types, indexed by the integer codes of :func:`generate_terrain`.
TERRAINS: tuple[Terrain, ...] = (
    Terrain("road", 0.8, (0.62, 0.62, 0.64)),
    Terrain("grass", 1.2, (0.34, 0.66, 0.22)),
    Terrain("sand", 2.5, (0.90, 0.78, 0.42)),
    Terrain("forest", 5.3, (0.08, 0.30, 0.10)),
    Terrain("mountain", 7.7, (0.44, 0.30, 0.24)),
    Terrain("water", 9.2, (0.14, 0.28, 0.72)),
)
ROAD, GRASS, SAND, FOREST, MOUNTAIN, WATER = range(len(TERRAINS))


@dataclass
class WarcraftMaps:
    """A batch of generated maps.

    Attributes:
        images: RGB images ``(N, 3, 8k, 8k)``, float32 in [0, 1].
        terrain: terrain codes ``(N, k, k)`` (int64, indices into :data:`TERRAINS`).
        costs: tile costs ``(N, k, k)``, float32, positive.
    """

    images: torch.Tensor
    terrain: torch.Tensor
    costs: torch.Tensor


def _check_generator(generator: torch.Generator) -> torch.Generator:
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator; got {type(generator).__name__}")
    if generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU generator (maps are generated on the CPU); got {generator.device}")
    return generator


def _smooth_fields(num: int, channels: int, size: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """White noise blurred by a Gaussian of std ``sigma`` tiles, standardized per map and channel."""
    radius = max(1, math.ceil(3 * sigma))
    noise = torch.randn(num, channels, size + 2 * radius, size + 2 * radius, generator=generator)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    # separable blur, 'valid' convolutions over the padded noise (no border effects)
    field = F.conv2d(noise, kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    field = F.conv2d(field, kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)
    field = field - field.mean(dim=(2, 3), keepdim=True)
    return field / field.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)


def _random_walk_roads(num: int, size: int, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Boolean masks (N, k, k) of up to two random-walk roads (west-east and north-south)."""
    mask = torch.zeros(num, size, size, dtype=torch.bool)
    for axis in range(2):
        present = torch.rand(num, generator=generator) < prob
        start = torch.randint(1, size - 1, (num, 1), generator=generator) if size > 2 else torch.zeros(num, 1)
        # steps in {-1, 0, 0, 0, +1}: roads mostly run straight and sometimes drift diagonally
        steps = torch.randint(0, 5, (num, size), generator=generator)
        steps = (steps == 4).long() - (steps == 3).long()
        steps[:, 0] = 0
        line = (start.long() + steps.cumsum(dim=1)).clamp(0, size - 1)  # (N, k): row of the road per column
        road = F.one_hot(line, size).bool() & present[:, None, None]  # (N, col, row)
        if axis == 0:
            road = road.transpose(1, 2)  # west-east: the walk gives a row for every column
        mask |= road
    return mask


def generate_terrain(
    num_maps: int,
    size: int = 12,
    *,
    generator: torch.Generator,
    smoothness: float | None = None,
    road_prob: float = 0.75,
) -> torch.Tensor:
    r"""Spatially coherent terrain maps: integer codes ``(num_maps, size, size)`` into :data:`TERRAINS`.

    With elevation :math:`E` and moisture :math:`M` two independent Gaussian random fields (white noise
    blurred by a Gaussian of ``smoothness`` tiles, standardized per map), a tile is

    * mountain if :math:`E > 1`, water if :math:`E < -1`, otherwise
    * forest if :math:`M > 0.5`, sand if :math:`M < -0.9`, grass otherwise;

    then roads (random walks with steps in {-1, 0, 0, 0, +1}, one west-east and one north-south, each present
    with probability ``road_prob``) overwrite the tiles they cross.

    Args:
        num_maps: number of maps N.
        size: the side k of a map in tiles.
        generator: a CPU :class:`torch.Generator` (the only source of randomness).
        smoothness: the Gaussian width in tiles; default ``max(1.5, size / 8)``.
        road_prob: probability of each of the two roads.

    Returns:
        int64 codes ``(N, k, k)``.

    Example:
        >>> import torch
        >>> t = generate_terrain(4, 12, generator=torch.Generator().manual_seed(0))
        >>> t.shape, t.dtype, bool(((t >= 0) & (t < len(TERRAINS))).all())
        (torch.Size([4, 12, 12]), torch.int64, True)
    """
    check_int_at_least("num_maps", num_maps, 0)
    check_int_at_least("size", size, 2)
    _check_generator(generator)
    sigma = max(1.5, size / 8) if smoothness is None else check_positive("smoothness", smoothness)
    if isinstance(road_prob, bool) or not isinstance(road_prob, (int, float)) or not 0 <= road_prob <= 1:
        raise ValueError(f"road_prob must be a probability in [0, 1]; got {road_prob!r}")
    fields = _smooth_fields(num_maps, 2, size, sigma, generator)
    elevation, moisture = fields[:, 0], fields[:, 1]
    terrain = torch.full((num_maps, size, size), GRASS, dtype=torch.long)
    terrain[moisture > 0.5] = FOREST
    terrain[moisture < -0.9] = SAND
    terrain[elevation > 1.0] = MOUNTAIN
    terrain[elevation < -1.0] = WATER
    terrain[_random_walk_roads(num_maps, size, float(road_prob), generator)] = ROAD
    return terrain


def _texture_bank(variants: int, generator: torch.Generator) -> torch.Tensor:
    """Additive texture patterns (types, variants, 8, 8, 3) for the tiles of each terrain type.

    Each type has its own kind of pattern, with a random phase, position or orientation per variant, so that
    the types differ in their spatial statistics (orientation and frequency of the pattern), not only in
    colour: road — two-pixel-wide bright stripes along the road's axis; grass — thin vertical blades
    (high horizontal frequency); sand — diagonal ripples of period 4; forest — dark round crowns;
    mountain — a lit/shaded ridge with coarse rocks; water — horizontal waves of period 4 with highlights.
    """
    v, s = variants, TILE
    r = torch.arange(s, dtype=torch.float32).view(1, s, 1)
    c = torch.arange(s, dtype=torch.float32).view(1, 1, s)
    ones = torch.ones(3)

    def u(*shape):
        return torch.rand(*shape, generator=generator)

    bank = torch.zeros(len(TERRAINS), v, s, s, 3)
    # road: paving stones, light joints every 4 pixels along one axis and a central dark rut along the other
    vertical = (u(v, 1, 1) < 0.5).float()
    along, across = c * (1 - vertical) + r * vertical, r * (1 - vertical) + c * vertical
    joints = 0.12 * (((along + (u(v, 1, 1) * 4).floor()) % 4) == 0).float()
    rut = -0.12 * ((across - 3.5).abs() < 1).float()
    bank[ROAD] = (joints + rut)[..., None] * ones
    # grass: thin bright vertical blades on every other column (random parity), a few dark speckles
    parity = (u(v, 1, 1) < 0.5).float()
    blades = 0.12 * (((c + parity) % 2) == 0).float() * (u(v, 1, s) < 0.85).float()
    bank[GRASS] = blades[..., None] * torch.tensor([0.4, 1.0, 0.2]) - 0.08 * (u(v, s, s) < 0.06).float()[..., None]
    # sand: diagonal ripples of period 4 and random phase
    phase = u(v, 1, 1) * 2 * math.pi
    ripple = 0.10 * torch.sin(2 * math.pi * (r + c) / 4 + phase)
    bank[SAND] = ripple[..., None] * torch.tensor([1.0, 0.9, 0.6])
    # forest: 2 to 3 dark round tree crowns with a light rim on their upper-left side
    crowns = torch.zeros(v, s, s)
    for _ in range(3):
        cy, cx = 1 + u(v, 1, 1) * 5, 1 + u(v, 1, 1) * 5
        rad = 1.6 + 0.6 * u(v, 1, 1)
        d2 = (r - cy) ** 2 + (c - cx) ** 2
        rim = 0.14 * ((r - cy + 1) ** 2 + (c - cx + 1) ** 2 < 1).float()
        crowns = torch.minimum(crowns, -0.14 * (d2 < rad**2).float() + rim)
    bank[FOREST] = (crowns + 0.07)[..., None] * torch.tensor([0.6, 1.0, 0.6])
    # mountain: a diagonal ridge, lit on one side and shaded on the other, with coarse (2x2) rocks
    ridge = u(v, 1, 1) * 4 + 2
    side = torch.tanh((c + 0.5 * r - ridge - 2) * 1.5)
    rocks = 0.16 * (u(v, s // 2, s // 2) - 0.5).repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)
    bank[MOUNTAIN] = (-0.14 * side + rocks)[..., None] * ones
    # water: horizontal waves of period 4 and random phase, highlights on the crests
    phase = u(v, 1, 1) * 2 * math.pi
    wave = torch.sin(2 * math.pi * r / 4 + 0.3 * c + phase)
    bank[WATER] = (0.08 * wave + 0.08 * (wave > 0.9).float())[..., None] * torch.tensor([0.6, 0.8, 1.0])
    return bank


def render_terrain(
    terrain: torch.Tensor,
    *,
    generator: torch.Generator,
    variants: int = 16,
    pixel_noise: float = 0.05,
    tile_jitter: float = 0.04,
    lighting: float = 0.06,
) -> torch.Tensor:
    r"""Render terrain codes ``(N, k, k)`` as RGB images ``(N, 3, 8k, 8k)`` in [0, 1].

    Pixel value = clip( base colour of the type × (1 + per-map brightness + per-map per-channel tint)
    + per-tile colour jitter + texture variant of the type + per-pixel noise ), with the brightness, tint,
    jitter and noise Gaussian of standard deviations ``lighting``, ``lighting / 2``, ``tile_jitter`` and
    ``pixel_noise``, and the texture drawn uniformly among ``variants`` random patterns per type.

    Args:
        terrain: int64 codes into :data:`TERRAINS`, shape ``(N, k, k)``.
        generator: a CPU :class:`torch.Generator`.
        variants: texture patterns per type.
        pixel_noise, tile_jitter, lighting: the noise scales above (≥ 0).

    Returns:
        float32 images ``(N, 3, 8k, 8k)``.

    Example:
        >>> import torch
        >>> g = torch.Generator().manual_seed(0)
        >>> img = render_terrain(generate_terrain(2, 12, generator=g), generator=g)
        >>> img.shape, bool(((img >= 0) & (img <= 1)).all())
        (torch.Size([2, 3, 96, 96]), True)
    """
    if not isinstance(terrain, torch.Tensor) or terrain.dtype != torch.long or terrain.ndim != 3:
        got = tuple(terrain.shape) if isinstance(terrain, torch.Tensor) else type(terrain).__name__
        raise ValueError(f"terrain must be an int64 tensor of shape (N, k, k'); got {got}")
    if terrain.numel() and (int(terrain.min()) < 0 or int(terrain.max()) >= len(TERRAINS)):
        raise ValueError(f"terrain codes must lie in [0, {len(TERRAINS) - 1}]; got values outside")
    _check_generator(generator)
    check_int_at_least("variants", variants, 1)
    for name, val in (("pixel_noise", pixel_noise), ("tile_jitter", tile_jitter), ("lighting", lighting)):
        check_positive(name, val, allow_zero=True)
    terrain = terrain.cpu()
    n, h, w = terrain.shape
    colors = torch.tensor([t.color for t in TERRAINS])
    light = 1 + lighting * torch.randn(n, 1, 1, 1, generator=generator)
    light = light + 0.5 * lighting * torch.randn(n, 1, 1, 3, generator=generator)
    base = colors[terrain] * light + tile_jitter * torch.randn(n, h, w, 3, generator=generator)  # (N, k, k, 3)
    bank = _texture_bank(variants, generator)
    which = torch.randint(0, variants, (n, h, w), generator=generator)
    tiles = base[:, :, :, None, None, :] + bank[terrain, which]  # (N, k, k, 8, 8, 3)
    img = tiles.permute(0, 5, 1, 3, 2, 4).reshape(n, 3, h * TILE, w * TILE)
    img = img + pixel_noise * torch.randn(img.shape, generator=generator)
    return img.clamp_(0.0, 1.0)


def generate_maps(num_maps: int, size: int = 12, *, generator: torch.Generator, **render) -> WarcraftMaps:
    """Generate ``num_maps`` maps of ``size × size`` tiles: terrain, tile costs and rendered images.

    Args:
        num_maps: number of maps.
        size: tiles per side (the benchmark uses 12, 18, 24 or 30).
        generator: a CPU :class:`torch.Generator`.
        **render: keyword arguments of :func:`render_terrain`.

    Returns:
        :class:`WarcraftMaps` on the CPU.

    Example:
        >>> import torch
        >>> maps = generate_maps(3, 12, generator=torch.Generator().manual_seed(1))
        >>> maps.images.shape, maps.costs.shape, bool((maps.costs > 0).all())
        (torch.Size([3, 3, 96, 96]), torch.Size([3, 12, 12]), True)
    """
    terrain = generate_terrain(num_maps, size, generator=generator)
    costs = torch.tensor([t.cost for t in TERRAINS])[terrain]
    return WarcraftMaps(images=render_terrain(terrain, generator=generator, **render), terrain=terrain, costs=costs)
