"""Procedural synthetic images of overlapping shapes, with exact per-object masks.

Used to train and evaluate the offline ``tiny_shapes`` model, and handy for demos that
must run without network or image files::

    from sam_widget.data import shapes_image
    image, masks = shapes_image(seed=7)            # (256, 256, 3) uint8, (N, 256, 256) bool

Conventions
-----------
* Images are ``(H, W, 3)`` ``uint8`` RGB arrays, row-major: ``image[row, col]``.
* Masks are ``(N, H, W)`` ``bool`` arrays, one per object, in painting order (object 0 was
  painted first, i.e. is at the back; object ``N - 1`` is in front).
* A mask is the *visible* part of its object: pixels covered by objects painted later are
  removed, and so is the hole of a ring (the hole shows what lies beneath). Masks of
  different objects therefore never overlap.
* Every returned mask has at least ``max(64, 0.004 * H * W)`` pixels and keeps at least 40 %
  of its object's full (in-frame) area, so every object stays clickable.
* Point coordinates elsewhere in the package are ``(x, y) = (column, row)`` in these pixels.

The same ``(seed, size)`` always produces the same arrays (bit-identical), on any machine:
only NumPy's ``PCG64`` generator and Pillow's polygon rasteriser are used.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["SHAPE_KINDS", "ShapesScene", "shapes_scene", "shapes_image", "EVAL_SEED_OFFSET"]

EVAL_SEED_OFFSET = 1_000_000_000
"""Image seeds at or above this are reserved for evaluation (``benchmarks/evaluate.py``); training
(``scripts/train_tiny_sam.py``) stays below it."""

SHAPE_KINDS: tuple[str, ...] = ("ellipse", "rectangle", "polygon", "ring", "blob")
"""The kinds of object :func:`shapes_scene` draws."""

_MIN_SIDE = 32
_MAX_SIDE = 4096


@dataclass(frozen=True)
class ShapesScene:
    """One synthetic scene.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        masks: ``(N, H, W)`` bool, visible part of each object, back to front.
        kinds: ``N`` names from :data:`SHAPE_KINDS`, one per mask.
        colors: ``(N, 3)`` uint8, the base RGB colour of each object.
    """

    image: np.ndarray
    masks: np.ndarray
    kinds: tuple[str, ...]
    colors: np.ndarray


def _check_args(seed: object, size: object, max_shapes: object) -> tuple[int, int, int, int]:
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, not {type(seed).__name__}.")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}.")
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise TypeError(f"size must be a (height, width) tuple of two ints, got {size!r}.")
    for side in size:
        if isinstance(side, bool) or not isinstance(side, numbers.Integral):
            raise TypeError(f"size must be a (height, width) tuple of two ints, got {size!r}.")
        if not _MIN_SIDE <= side <= _MAX_SIDE:
            raise ValueError(
                f"each side of size must be in [{_MIN_SIDE}, {_MAX_SIDE}] pixels, got {size!r}."
            )
    if isinstance(max_shapes, bool) or not isinstance(max_shapes, numbers.Integral):
        raise TypeError(f"max_shapes must be an int, not {type(max_shapes).__name__}.")
    if not 1 <= max_shapes <= 32:
        raise ValueError(f"max_shapes must be in [1, 32], got {max_shapes}.")
    return int(seed), int(size[0]), int(size[1]), int(max_shapes)


# ----------------------------------------------------------------------------- textures


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Values in [0, 1], smooth over about ``max(h, w) / cells`` pixels (bilinear upsampling)."""
    ch = max(2, round(cells * h / max(h, w)))
    cw = max(2, round(cells * w / max(h, w)))
    low = rng.random((ch, cw)).astype(np.float32)
    img = Image.fromarray(low, mode="F").resize((w, h), Image.Resampling.BILINEAR)
    out = np.asarray(img, dtype=np.float32)
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / (hi - lo + 1e-6)


def _pattern(rng: np.random.Generator, h: int, w: int, period_px: float) -> np.ndarray:
    """A random periodic pattern in [0, 1]: stripes or checks, of the given period."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    theta = rng.uniform(0, np.pi)
    u = xx * np.cos(theta) + yy * np.sin(theta)
    v = -xx * np.sin(theta) + yy * np.cos(theta)
    phase = rng.uniform(0, 2 * np.pi)
    if rng.random() < 0.6:
        return 0.5 + 0.5 * np.sin(2 * np.pi * u / period_px + phase)
    return ((np.floor(u / period_px + phase) + np.floor(v / period_px)) % 2).astype(np.float32)


def _random_color(rng: np.random.Generator, avoid: list[np.ndarray], min_dist: float) -> np.ndarray:
    best, best_d = None, -1.0
    for _ in range(30):
        c = rng.uniform(0, 255, size=3).astype(np.float32)
        d = min((float(np.linalg.norm(c - a)) for a in avoid), default=1e9)
        if d >= min_dist:
            return c
        if d > best_d:
            best, best_d = c, d
    return best  # type: ignore[return-value]


def _background(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, list[np.ndarray]]:
    c1 = rng.uniform(0, 255, size=3).astype(np.float32)
    c2 = np.clip(c1 + rng.normal(0, 45, size=3), 0, 255).astype(np.float32)
    kind = rng.integers(4)
    side = max(h, w)
    if kind == 0:  # smooth clouds
        t = _smooth_noise(rng, h, w, int(rng.integers(3, 12)))
    elif kind == 1:  # linear gradient
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        theta = rng.uniform(0, 2 * np.pi)
        t = xx * np.cos(theta) + yy * np.sin(theta)
        t = (t - t.min()) / (t.max() - t.min() + 1e-6)
    elif kind == 2:  # stripes or checks, low contrast
        t = _pattern(rng, h, w, rng.uniform(0.03, 0.12) * side) * rng.uniform(0.3, 0.8)
    else:  # fine grain
        t = _smooth_noise(rng, h, w, int(rng.integers(24, 64)))
    img = c1 + t[..., None] * (c2 - c1)
    return img, [c1, c2]


def _object_texture(
    rng: np.random.Generator, h: int, w: int, color: np.ndarray, scale: float
) -> np.ndarray:
    kind = rng.choice(4, p=[0.4, 0.25, 0.15, 0.2])
    if kind == 0:
        return np.broadcast_to(color, (h, w, 3))
    other = np.clip(color + rng.normal(0, 30, size=3), 0, 255)
    if kind == 1:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        theta = rng.uniform(0, 2 * np.pi)
        t = (xx * np.cos(theta) + yy * np.sin(theta)) / max(scale, 1.0)
        t = np.clip(0.5 + 0.5 * t / 2.0, 0, 1)
    elif kind == 2:
        t = _pattern(rng, h, w, rng.uniform(0.15, 0.5) * max(scale, 4.0)) * 0.8
    else:
        t = _smooth_noise(rng, h, w, int(rng.integers(16, 48)))
    return color + t[..., None] * (other - color)


# ----------------------------------------------------------------------------- shapes


def _shape_mask(rng: np.random.Generator, kind: str, h: int, w: int) -> tuple[np.ndarray, float]:
    """Full (in-frame, before occlusion) mask of a random shape, and its radius in pixels."""
    side = min(h, w)
    r = float(np.exp(rng.uniform(np.log(0.07 * side), np.log(0.3 * side))))
    cx = rng.uniform(0.05 * w, 0.95 * w)
    cy = rng.uniform(0.05 * h, 0.95 * h)
    theta = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dx, dy = xx - cx, yy - cy
    u = dx * np.cos(theta) + dy * np.sin(theta)
    v = -dx * np.sin(theta) + dy * np.cos(theta)
    if kind == "ellipse":
        b = r * rng.uniform(0.45, 1.0)
        mask = (u / r) ** 2 + (v / b) ** 2 <= 1.0
    elif kind == "rectangle":
        b = r * rng.uniform(0.35, 1.0)
        mask = (np.abs(u) <= r) & (np.abs(v) <= b)
    elif kind == "ring":
        r = max(r * 1.3, 0.1 * side)
        b = r * rng.uniform(0.6, 1.0)
        inner = rng.uniform(0.35, 0.65)
        q = (u / r) ** 2 + (v / b) ** 2
        mask = (q <= 1.0) & (q >= inner**2)
    elif kind == "blob":
        ang = np.arctan2(v, u)
        rad = np.ones_like(ang)
        for k in (2, 3, 4, 5):
            rad += rng.uniform(0, 0.22 / k * 2) * np.cos(k * ang + rng.uniform(0, 2 * np.pi))
        mask = np.hypot(u, v) <= r * rad
    elif kind == "polygon":
        n = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, n))
        angles[0] = 0.0 if n == 3 else angles[0]
        radii = r * rng.uniform(0.55, 1.0, n)
        pts = [
            (float(cx + rr * np.cos(a + theta)), float(cy + rr * np.sin(a + theta)))
            for rr, a in zip(radii, angles)
        ]
        canvas = Image.new("L", (w, h), 0)
        ImageDraw.Draw(canvas).polygon(pts, fill=1)
        mask = np.asarray(canvas, dtype=bool)
    else:  # pragma: no cover - kinds are internal
        raise ValueError(kind)
    return mask, r


def shapes_scene(seed: int, size: tuple[int, int] = (256, 256), max_shapes: int = 7) -> ShapesScene:
    """Draw a random scene of 1..``max_shapes`` overlapping objects on a textured background.

    Args:
        seed: any int >= 0; the scene is a pure function of ``(seed, size, max_shapes)``.
        size: ``(height, width)`` in pixels, each in [32, 4096].
        max_shapes: upper bound on the number of objects (>= 1); the scene has between 1 and
            ``max_shapes`` objects (placements that would hide too much of an earlier object
            are dropped).

    Returns:
        A :class:`ShapesScene` (image ``(H, W, 3)`` uint8 RGB, masks ``(N, H, W)`` bool, ...).
        See the module docstring for the mask conventions.

    Raises:
        TypeError: if ``seed``/``max_shapes`` are not ints or ``size`` is not two ints.
        ValueError: if ``seed < 0`` or a size/count is out of range.
    """
    seed, h, w, max_shapes = _check_args(seed, size, max_shapes)
    rng = np.random.default_rng(seed)
    image, bg_colors = _background(rng, h, w)
    min_px = max(64, int(0.004 * h * w))
    n_wanted = int(rng.integers(1, max_shapes + 1))

    full_areas: list[int] = []
    visible: list[np.ndarray] = []
    kinds: list[str] = []
    colors: list[np.ndarray] = []
    attempts = 0
    while not visible or (len(visible) < n_wanted and attempts < 4 * n_wanted + 4):
        attempts += 1
        kind = SHAPE_KINDS[int(rng.integers(len(SHAPE_KINDS)))]
        mask, r = _shape_mask(rng, kind, h, w)
        area = int(mask.sum())
        if area < min_px:
            continue
        if any(
            int((v & ~mask).sum()) < max(min_px, 0.4 * fa) for v, fa in zip(visible, full_areas)
        ):
            continue  # would hide too much of an object already in the scene
        color = _random_color(rng, bg_colors + colors, 90.0)
        tex = _object_texture(rng, h, w, color, r)
        image = np.where(mask[..., None], tex, image)
        visible = [v & ~mask for v in visible]
        visible.append(mask)
        full_areas.append(area)
        kinds.append(kind)
        colors.append(color)

    noise_sigma = rng.uniform(0, 10)
    image = image + rng.normal(0, noise_sigma, size=image.shape)
    image_u8 = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    masks = np.stack(visible) if visible else np.zeros((0, h, w), dtype=bool)
    return ShapesScene(
        image=image_u8,
        masks=masks,
        kinds=tuple(kinds),
        colors=np.clip(np.rint(np.array(colors, dtype=np.float32).reshape(-1, 3)), 0, 255).astype(np.uint8),
    )


def shapes_image(
    seed: int, size: tuple[int, int] = (256, 256), max_shapes: int = 7
) -> tuple[np.ndarray, np.ndarray]:
    """Random image of overlapping shapes and the visible mask of each shape.

    Shorthand for ``scene = shapes_scene(seed, size, max_shapes); (scene.image, scene.masks)``.

    Args:
        seed: int >= 0; same seed and size -> bit-identical output.
        size: ``(height, width)`` in pixels, each in [32, 4096]. Default ``(256, 256)``, the
            input size of the ``tiny_shapes`` model.
        max_shapes: at most this many objects (1..32).

    Returns:
        ``(image, masks)``: image ``(H, W, 3)`` uint8 RGB; masks ``(N, H, W)`` bool with
        ``1 <= N <= max_shapes``, back to front, pairwise disjoint, each the visible part of
        one object (ellipse, rectangle, polygon, ring or blob) after occlusion.

    Raises:
        TypeError, ValueError: on bad arguments (see :func:`shapes_scene`).
    """
    scene = shapes_scene(seed, size, max_shapes)
    return scene.image, scene.masks
