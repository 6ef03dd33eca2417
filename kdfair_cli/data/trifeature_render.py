"""Procedural rendering of one Trifeature image (Hermann & Lampinen 2020; docs/trifeature.md).

An image is a shape (the label) filled with a texture in a colour on a grey background:
pixel = mask*texture*colour + (1 - mask*texture)*background, on a 224 x 224 canvas.
Because the background is a constant, this equals background + alpha*(colour - background)
with alpha = mask*texture, and resampling is linear, so we render the single-channel alpha at
224 px, area-average it down to the output size and only then apply the colour. That is the
same picture as colouring at 224 px first, at a third of the cost, and it makes colour twins
(same pose and texture) share alpha exactly.

All geometry is drawn once per shape/texture (masks, texture tiles); per image we rotate one
mask with PIL and gather texture values with numpy, with no Python loop over pixels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

CANVAS = 224
SHAPE_SIZE = 128
PERIOD = 10.0  # texture period in canvas pixels
BACKGROUND = 0.5
ANGLE_RANGE = (-45, 45)  # whole degrees, high end excluded; shapes and textures alike
NOISE_CELL = 2.0  # side of one noise cell in canvas pixels
NOISE_CELLS = 168  # noise field side in cells: 336 px, more than the canvas diagonal

SHAPES: tuple[str, ...] = (
    "triangle", "square", "plus", "circle", "tee",
    "rhombus", "pentagon", "star", "fivesquare", "trapezoid",
)
COLORS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
    "yellow": (1.0, 1.0, 0.0),
    "pink": (1.0, 0.4, 1.0),
    "cyan": (0.0, 1.0, 1.0),
    "purple": (0.3, 0.0, 0.5),
    "ocean": (0.1, 0.4, 0.5),
    "orange": (1.0, 0.6, 0.0),
    "white": (1.0, 1.0, 1.0),
}
COLOR_NAMES: tuple[str, ...] = tuple(COLORS)
TEXTURES: tuple[str, ...] = (
    "solid", "stripes", "grid", "hexgrid", "dots",
    "noise", "triangles", "zigzags", "rain", "pluses",
)


@dataclass(frozen=True)
class Pose:
    """Everything random about an image except its shape, colour and texture.

    Positions and offsets are fractions in [0, 1) so that one pose fits any shape: the pixel
    position is that fraction of the free room left by the rotated mask, the texture offset
    that fraction of the texture's period.
    """

    angle: int
    pos_y: float
    pos_x: float
    texture_angle: int
    offset_u: float
    offset_v: float
    noise_seed: int


def draw_poses(rng: np.random.Generator, n: int) -> list[Pose]:
    """Draw n independent poses (vectorised, so the stream depends only on rng and n)."""
    lo, hi = ANGLE_RANGE
    angle = rng.integers(lo, hi, size=n)
    pos = rng.random((n, 2))
    texture_angle = rng.integers(lo, hi, size=n)
    offset = rng.random((n, 2))
    noise_seed = rng.integers(0, 2**63 - 1, size=n)
    return [
        Pose(int(angle[i]), float(pos[i, 0]), float(pos[i, 1]), int(texture_angle[i]),
             float(offset[i, 0]), float(offset[i, 1]), int(noise_seed[i]))
        for i in range(n)
    ]


# ---- shapes ---------------------------------------------------------------------------------

def _regular_polygon(n: int, radius: float, phase: float = -math.pi / 2) -> list[tuple[float, float]]:
    return [(math.cos(phase + 2 * math.pi * k / n) * radius, math.sin(phase + 2 * math.pi * k / n) * radius)
            for k in range(n)]


def _star(outer: float, inner: float) -> list[tuple[float, float]]:
    points = []
    for k in range(10):
        r = outer if k % 2 == 0 else inner
        a = -math.pi / 2 + math.pi * k / 5
        points.append((math.cos(a) * r, math.sin(a) * r))
    return points


def _shape_polygons(name: str) -> list[list[tuple[float, float]]]:
    """Polygons of a shape in unit coordinates, centred on 0, spanning at most [-1, 1]."""
    third = 1 / 3
    if name == "triangle":
        h = math.sqrt(3) / 2 * 2  # equilateral, side 2
        return [[(-1, h / 2), (1, h / 2), (0, -h / 2)]]
    if name == "square":
        return [[(-1, -1), (1, -1), (1, 1), (-1, 1)]]
    if name == "plus":
        return [[(-third, -1), (third, -1), (third, 1), (-third, 1)],
                [(-1, -third), (1, -third), (1, third), (-1, third)]]
    if name == "circle":
        return [_regular_polygon(256, 1.0)]
    if name == "tee":
        return [[(-1, -1), (1, -1), (1, -third), (-1, -third)],
                [(-third, -third), (third, -third), (third, 1), (-third, 1)]]
    if name == "rhombus":  # diagonals 2 and 1.2: never a rotated square
        return [[(0, -1), (0.6, 0), (0, 1), (-0.6, 0)]]
    if name == "pentagon":
        return [_regular_polygon(5, 1.0)]
    if name == "star":
        return [_star(1.0, 0.4)]
    if name == "fivesquare":  # the five of a die: four corner squares and the centre one
        cells = [(-1, -1), (1, -1), (0, 0), (-1, 1), (1, 1)]
        return [[(cx * 2 * third + dx * third, cy * 2 * third + dy * third)
                 for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1))] for cx, cy in cells]
    if name == "trapezoid":
        return [[(-1, 0.6), (1, 0.6), (0.5, -0.6), (-0.5, -0.6)]]
    raise KeyError(name)


@functools.lru_cache(maxsize=None)
def shape_mask(shape: int) -> np.ndarray:
    """The 128 px antialiased mask of a shape, float32 in [0, 1] (drawn at 4x, box-averaged)."""
    scale = 4
    side = SHAPE_SIZE * scale
    half = side / 2 - 2 * scale  # a 2 px margin keeps the antialiased edge inside
    image = Image.new("L", (side, side), 0)
    draw = ImageDraw.Draw(image)
    for polygon in _shape_polygons(SHAPES[shape]):
        draw.polygon([(side / 2 + x * half, side / 2 + y * half) for x, y in polygon], fill=255)
    small = image.resize((SHAPE_SIZE, SHAPE_SIZE), Image.Resampling.BOX)
    mask = np.asarray(small, dtype=np.float32) / 255.0
    mask.setflags(write=False)
    return mask


def rotated_mask(shape: int, angle: int) -> np.ndarray:
    """The shape mask rotated by `angle` degrees (counter-clockwise), cropped to its bounding box."""
    image = Image.fromarray(shape_mask(shape), mode="F")
    rotated = np.asarray(image.rotate(angle, resample=Image.Resampling.BILINEAR, expand=True))
    rows = np.flatnonzero(rotated.max(axis=1) > 0)
    cols = np.flatnonzero(rotated.max(axis=0) > 0)
    return np.clip(rotated[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1], 0.0, 1.0)


# ---- textures -------------------------------------------------------------------------------

TILE_SCALE = 4  # texture tile samples per canvas pixel
_TILE_SUPERSAMPLE = 4  # fine samples per tile sample, averaged for antialiasing


def _segment_distance(u: np.ndarray, v: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    du, dv = b[0] - a[0], b[1] - a[1]
    t = np.clip(((u - a[0]) * du + (v - a[1]) * dv) / (du * du + dv * dv), 0.0, 1.0)
    return np.hypot(u - a[0] - t * du, v - a[1] - t * dv)


def _hexgrid(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Honeycomb lines: points nearly equidistant from their two nearest hexagon centres."""
    row = PERIOD * math.sqrt(3) / 2
    centres = np.array([(i * PERIOD + (j % 2) * PERIOD / 2, j * row)
                        for j in range(-1, 4) for i in range(-1, 3)])
    d = np.sqrt((u[..., None] - centres[:, 0]) ** 2 + (v[..., None] - centres[:, 1]) ** 2)
    d.sort(axis=-1)
    return d[..., 1] - d[..., 0] < 3.0


#: texture name -> (coverage function on in-tile coordinates in canvas pixels, tile height).
#: Every tile is PERIOD wide; hexgrid's is taller so that the honeycomb repeats.
_TILES: dict[str, tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], float]] = {
    "solid": (lambda u, v: np.ones_like(u, dtype=bool), PERIOD),
    "stripes": (lambda u, v: v < PERIOD / 2, PERIOD),
    "grid": (lambda u, v: (u < 3) | (v < 3), PERIOD),
    "hexgrid": (_hexgrid, PERIOD * math.sqrt(3)),
    "dots": (lambda u, v: (u - 5) ** 2 + (v - 5) ** 2 < 3.2**2, PERIOD),
    "triangles": (lambda u, v: (v < 8.5) & (v > 1.5 + 1.75 * np.abs(u - 5)), PERIOD),
    "zigzags": (lambda u, v: np.abs(np.mod(v - 2.5 - np.abs(u - 5) + 5, PERIOD) - 5) < 1.5, PERIOD),
    "rain": (lambda u, v: _segment_distance(u, v, (3.0, 1.5), (6.5, 8.5)) < 1.2, PERIOD),
    "pluses": (lambda u, v: ((np.abs(u - 5) < 1.2) & (np.abs(v - 5) < 4))
               | ((np.abs(v - 5) < 1.2) & (np.abs(u - 5) < 4)), PERIOD),
}


@functools.lru_cache(maxsize=None)
def texture_tile(texture: int) -> tuple[np.ndarray, float, float]:
    """(tile, tile height, tile width) in canvas pixels; the tile holds coverage in [0, 1].

    Drawn by point sampling at TILE_SCALE * _TILE_SUPERSAMPLE per pixel and block-averaging,
    so edges are antialiased. Noise has no tile (it is drawn per image).
    """
    func, height = _TILES[TEXTURES[texture]]
    rows, cols = round(height * TILE_SCALE), round(PERIOD * TILE_SCALE)
    k = _TILE_SUPERSAMPLE
    v = (np.arange(rows * k) + 0.5) * height / (rows * k)
    u = (np.arange(cols * k) + 0.5) * PERIOD / (cols * k)
    fine = func(*np.meshgrid(u, v)).astype(np.float32)
    tile = fine.reshape(rows, k, cols, k).mean(axis=(1, 3))
    tile.setflags(write=False)
    return tile, height, PERIOD


def texture_values(texture: int, pose: Pose, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Texture coverage at canvas pixel centres (ys, xs measured from the canvas centre).

    The pattern is rotated by pose.texture_angle about the canvas centre and shifted by the
    pose's offset; sampling is a nearest lookup in the antialiased tile.
    """
    theta = math.radians(pose.texture_angle)
    cos, sin = math.cos(theta), math.sin(theta)
    u = cos * xs + sin * ys
    v = cos * ys - sin * xs
    if TEXTURES[texture] == "noise":
        field = np.random.default_rng(pose.noise_seed).random((NOISE_CELLS, NOISE_CELLS)) < 0.5
        iu = np.floor(u / NOISE_CELL + pose.offset_u).astype(np.int64) % NOISE_CELLS
        iv = np.floor(v / NOISE_CELL + pose.offset_v).astype(np.int64) % NOISE_CELLS
        return field[iv, iu].astype(np.float32)
    tile, height, width = texture_tile(texture)
    rows, cols = tile.shape
    iu = np.floor(np.mod(u + pose.offset_u * width, width) * (cols / width)).astype(np.int64)
    iv = np.floor(np.mod(v + pose.offset_v * height, height) * (rows / height)).astype(np.int64)
    return tile[np.minimum(iv, rows - 1), np.minimum(iu, cols - 1)]


# ---- composition ----------------------------------------------------------------------------

_CENTRES = np.arange(CANVAS, dtype=np.float32) + 0.5 - CANVAS / 2


def _placement(shape: int, pose: Pose) -> tuple[np.ndarray, int, int]:
    """The rotated mask and its top-left corner on the canvas (always fully inside)."""
    mask = rotated_mask(shape, pose.angle)
    h, w = mask.shape
    top = int(pose.pos_y * (CANVAS - h + 1))
    left = int(pose.pos_x * (CANVAS - w + 1))
    return mask, top, left


def render_alpha(shape: int, texture: int, pose: Pose) -> np.ndarray:
    """mask*texture on the 224 px canvas (float32); texture is evaluated under the mask only."""
    mask, top, left = _placement(shape, pose)
    h, w = mask.shape
    ys = _CENTRES[top:top + h, None]
    xs = _CENTRES[None, left:left + w]
    ys, xs = np.broadcast_arrays(ys, xs)
    alpha = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    alpha[top:top + h, left:left + w] = mask * texture_values(texture, pose, ys, xs)
    return alpha


def render_layers(shape: int, texture: int, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """The full-canvas mask and texture layers, for inspection and tests (slower path)."""
    mask, top, left = _placement(shape, pose)
    canvas_mask = np.zeros((CANVAS, CANVAS), dtype=np.float32)
    canvas_mask[top:top + mask.shape[0], left:left + mask.shape[1]] = mask
    ys, xs = np.broadcast_arrays(_CENTRES[:, None], _CENTRES[None, :])
    return canvas_mask, texture_values(texture, pose, ys, xs)


def downsample(alpha: np.ndarray, size: int) -> np.ndarray:
    """Area-average a 224 px layer down to size x size (exact block mean when size divides 224)."""
    if size == CANVAS:
        return alpha
    if CANVAS % size == 0:
        f = CANVAS // size
        return alpha.reshape(size, f, size, f).mean(axis=(1, 3), dtype=np.float32)
    image = Image.fromarray(alpha, mode="F").resize((size, size), Image.Resampling.BOX)
    return np.asarray(image, dtype=np.float32)


def colorize(alpha: np.ndarray, color: int) -> np.ndarray:
    """background + alpha*(colour - background), quantised to uint8 [3, H, W]."""
    rgb = np.asarray(COLORS[COLOR_NAMES[color]], dtype=np.float32)[:, None, None]
    pixels = BACKGROUND + alpha[None] * (rgb - BACKGROUND)
    return np.floor(np.clip(pixels, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_image(shape: int, color: int, texture: int, pose: Pose, size: int) -> np.ndarray:
    """One Trifeature image as uint8 [3, size, size]."""
    return colorize(downsample(render_alpha(shape, texture, pose), size), color)
