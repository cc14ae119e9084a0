"""Render ``sam_widget/assets/sample.png``: a small, licence-clean, photo-like sample scene.

The scene (640 x 480 RGB) is a sunny landscape with a few clearly separable objects —
sky with clouds, sun, two ranges of hills, a meadow, a house (walls, roof, door, window,
chimney), a tree (trunk and crown) and a red ball — with soft shading, shadows and a
little texture so that it is not flat-coloured. It is drawn from scratch here, so it
carries no third-party rights.

Determinism: only NumPy element-wise arithmetic that IEEE 754 rounds exactly (``+ - * /``,
``sqrt``, ``floor``, comparisons) and a home-made integer hash for noise are used — no
random-number generator, no transcendental functions, no reductions — so the pixels are
identical on every machine and NumPy version. The PNG is written by Pillow without
metadata at a fixed compression level; its bytes are identical wherever Pillow's zlib
is the same.

Usage::

    python scripts/make_sample_image.py            # (re)write sam_widget/assets/sample.png
    python scripts/make_sample_image.py --check    # exit 1 if the file's pixels differ
    python scripts/make_sample_image.py -o out.png

Coordinates below are ``(x, y)`` = (column, row) in pixels, y growing downwards.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 640, 480
DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "sam_widget" / "assets" / "sample.png"

# Object outlines, shared with the docs/tests that want to click on them: (x, y) pixels.
SUN = (548.0, 78.0, 34.0)  # centre x, centre y, radius
HOUSE_WALL = (120.0, 250.0, 300.0, 370.0)  # x0, y0, x1, y1
ROOF = ((104.0, 252.0), (210.0, 168.0), (316.0, 252.0))  # left eave, ridge, right eave
DOOR = (188.0, 300.0, 226.0, 370.0)
WINDOW = (238.0, 276.0, 282.0, 318.0)
CHIMNEY = (254.0, 176.0, 274.0, 222.0)
TRUNK = (444.0, 282.0, 462.0, 392.0)
CROWN = ((453.0, 238.0, 58.0), (418.0, 268.0, 40.0), (490.0, 266.0, 42.0), (453.0, 284.0, 44.0))
BALL = (332.0, 420.0, 30.0)  # centre x, centre y, radius


# ----------------------------------------------------------------------------- helpers


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic pseudo-random value in [0, 1) for integer lattice points."""
    m = np.uint64(0xFFFFFFFF)
    h = (
        ix.astype(np.uint64) * np.uint64(374761393)
        + iy.astype(np.uint64) * np.uint64(668265263)
        + np.uint64(seed) * np.uint64(2246822519)
    ) & m
    h = ((h ^ (h >> np.uint64(13))) * np.uint64(1274126177)) & m
    h = h ^ (h >> np.uint64(16))
    h = (h * np.uint64(2654435761)) & m
    h = h ^ (h >> np.uint64(15))
    return h.astype(np.float64) / 4294967296.0


def _smooth(t: np.ndarray) -> np.ndarray:
    """Cubic smoothstep of ``t`` clipped to [0, 1]."""
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _value_noise(x: np.ndarray, y: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Smooth 2-D value noise in [0, 1) with lattice spacing ``scale`` pixels.

    The lattice values are hashed once per lattice point and then gathered, which is much
    cheaper than hashing per pixel when ``x`` and ``y`` are row/column vectors.
    """
    fx, fy = x / scale + 1000.0, y / scale + 1000.0  # keep lattice indices positive
    ix, iy = np.floor(fx), np.floor(fy)
    tx, ty = _smooth(fx - ix), _smooth(fy - iy)
    ix, iy = ix.astype(np.int64), iy.astype(np.int64)
    x0, y0 = int(ix.min()), int(iy.min())
    lattice_x = np.arange(x0, int(ix.max()) + 2, dtype=np.int64)[None, :]
    lattice_y = np.arange(y0, int(iy.max()) + 2, dtype=np.int64)[:, None]
    table = _hash01(lattice_x, lattice_y, seed)
    jx, jy = ix - x0, iy - y0
    a, b = table[jy, jx], table[jy, jx + 1]
    c, d = table[jy + 1, jx], table[jy + 1, jx + 1]
    top = a + (b - a) * tx
    bottom = c + (d - c) * tx
    return top + (bottom - top) * ty


def _fbm(x: np.ndarray, y: np.ndarray, scale: float, octaves: int, seed: int) -> np.ndarray:
    """Fractal sum of value noise, normalised to about [0, 1)."""
    total = np.zeros(np.broadcast(x, y).shape)
    amp, norm = 1.0, 0.0
    for o in range(octaves):
        total = total + amp * _value_noise(x, y, scale, seed + 17 * o)
        norm += amp
        amp *= 0.5
        scale *= 0.5
    return total / norm


def _coverage(signed_distance: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a shape from its signed distance (negative inside)."""
    return np.clip(0.5 - signed_distance, 0.0, 1.0)


def _box_sd(x: np.ndarray, y: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray:
    x0, y0, x1, y1 = box
    dx = np.maximum(x0 - x, x - x1)
    dy = np.maximum(y0 - y, y - y1)
    outside = np.sqrt(np.maximum(dx, 0.0) ** 2 + np.maximum(dy, 0.0) ** 2)
    return outside + np.minimum(np.maximum(dx, dy), 0.0)


def _circle_sd(x: np.ndarray, y: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    return np.sqrt((x - cx) ** 2 + (y - cy) ** 2) - r


def _half_plane_sd(x, y, p, q) -> np.ndarray:
    """Signed distance to the line p->q; negative on the right-hand side (y down)."""
    (px, py), (qx, qy) = p, q
    nx, ny = qy - py, px - qx
    n = float(np.sqrt(nx * nx + ny * ny))
    return ((x - px) * nx + (y - py) * ny) / n


def _triangle_sd(x, y, tri) -> np.ndarray:
    """Approximate signed distance to a triangle (exact along its edges, negative inside)."""
    a, b, c = tri
    edges = ((a, b), (b, c), (c, a))
    centroid = (np.array((a[0] + b[0] + c[0]) / 3.0), np.array((a[1] + b[1] + c[1]) / 3.0))
    sign = -1.0 if float(_half_plane_sd(*centroid, a, b)) > 0 else 1.0
    d = sign * _half_plane_sd(x, y, *edges[0])
    for p, q in edges[1:]:
        d = np.maximum(d, sign * _half_plane_sd(x, y, p, q))
    return d


def _mix(base: np.ndarray, color, alpha: np.ndarray) -> np.ndarray:
    """Paint ``color`` (RGB in [0, 1], constant or per pixel) over ``base`` with ``alpha``."""
    color = np.asarray(color, dtype=np.float64)
    a = alpha[..., None]
    return base * (1.0 - a) + color * a


def _lerp(c0, c1, t: np.ndarray) -> np.ndarray:
    c0, c1 = np.asarray(c0, dtype=np.float64), np.asarray(c1, dtype=np.float64)
    return c0 + (c1 - c0) * t[..., None]


def _rgb(*v: int) -> tuple[float, float, float]:
    return tuple(c / 255.0 for c in v)  # type: ignore[return-value]


def _ridge(x: np.ndarray, base: float, amplitude: float, scale: float, seed: int) -> np.ndarray:
    """A smooth hill profile y(x) built from 1-D value noise."""
    zero = np.zeros_like(x)
    return base - amplitude * _fbm(x, zero, scale, 3, seed)


# ------------------------------------------------------------------------------ render


def render(width: int = WIDTH, height: int = HEIGHT) -> np.ndarray:
    """Render the scene as an ``(height, width, 3)`` uint8 RGB array (designed at 640x480)."""
    sx, sy = width / WIDTH, height / HEIGHT
    # Row and column vectors: every expression broadcasts to (height, width) only when needed.
    ys = np.arange(height, dtype=np.float64)[:, None]
    xs = np.arange(width, dtype=np.float64)[None, :]
    x = (xs + 0.5) / sx  # design coordinates of pixel centres
    y = (ys + 0.5) / sy

    # Sky: deep blue at the top to hazy pale blue at the horizon, plus soft clouds.
    t = _smooth(y / 300.0)
    img = _lerp(_rgb(52, 110, 190), _rgb(182, 212, 236), t)
    clouds = _fbm(x * 0.6, y * 1.8, 160.0, 4, seed=3)
    cloud_alpha = _smooth((clouds - 0.55) / 0.2) * 0.75 * (1.0 - _smooth((y - 150.0) / 80.0))
    img = _mix(img, _rgb(248, 248, 250), cloud_alpha)

    # Sun with a rational (no exp) glow.
    scx, scy, sr = SUN
    dsun = np.sqrt((x - scx) ** 2 + (y - scy) ** 2)
    glow = 1.0 / (1.0 + ((dsun - sr).clip(0.0) / 40.0) ** 2)
    img = _mix(img, _rgb(255, 240, 200), 0.45 * glow)
    img = _mix(img, _rgb(255, 226, 120), _coverage(dsun - sr))

    # Far hills (bluish, hazy) and near hills (green).
    far = _ridge(x, 252.0, 70.0, 220.0, seed=11)
    far_cov = _coverage(far - y)
    far_col = _lerp(_rgb(112, 146, 150), _rgb(96, 128, 120), _smooth((y - 190.0) / 80.0))
    img = _mix(img, far_col, far_cov)
    near = _ridge(x, 300.0, 60.0, 180.0, seed=23)
    near_cov = _coverage(near - y)
    grass_tex = _fbm(x, y * 2.0, 24.0, 3, seed=31)
    near_col = _lerp(_rgb(78, 132, 58), _rgb(104, 158, 66), grass_tex)
    img = _mix(img, near_col, near_cov)

    # Meadow: brighter towards the front, mottled.
    meadow_top = 330.0 + 8.0 * _fbm(x, np.zeros_like(x), 90.0, 2, seed=41)
    meadow_cov = _coverage(meadow_top - y)
    mottle = _fbm(x * 1.2, y * 2.4, 40.0, 4, seed=43)
    meadow_col = _lerp(
        _rgb(92, 150, 56), _rgb(132, 184, 74), 0.55 * mottle + 0.45 * _smooth((y - 330.0) / 150.0)
    )
    img = _mix(img, meadow_col, meadow_cov)

    # Soft shadows on the ground (sun is upper right, shadows fall to the lower left).
    house_shadow = _coverage(_box_sd(x, y, (96.0, 356.0, 300.0, 384.0)) / 10.0 + 0.5)
    tree_shadow = _coverage(_circle_sd(x * 0.55, y * 1.6, 425.0 * 0.55, 392.0 * 1.6, 30.0) / 10.0 + 0.5)
    bx, by, br = BALL
    ball_shadow = _coverage(
        _circle_sd(x * 0.7, y * 2.2, (bx - 12.0) * 0.7, (by + br - 2.0) * 2.2, 20.0) / 6.0 + 0.5
    )
    shadow = np.maximum(np.maximum(house_shadow, tree_shadow), ball_shadow)
    img = _mix(img, _rgb(34, 62, 26), 0.45 * shadow)

    # House walls: warm plaster, lit from the right, with faint horizontal siding.
    wall_cov = _coverage(_box_sd(x, y, HOUSE_WALL))
    siding = _smooth(((y - 250.0) / 10.0 - np.floor((y - 250.0) / 10.0) - 0.82) / 0.18)
    plaster = _fbm(x * 2.0, y * 2.0, 12.0, 2, seed=51)
    wall_light = 0.86 + 0.14 * _smooth((x - 120.0) / 180.0)
    wall_col = _lerp(_rgb(214, 190, 150), _rgb(232, 212, 176), plaster) * wall_light[..., None]
    wall_col = wall_col * (1.0 - 0.10 * siding)[..., None]
    img = _mix(img, wall_col, wall_cov)
    # Shadow of the eaves on the wall.
    eave_shade = wall_cov * (1.0 - _smooth((y - 252.0) / 14.0))
    img = _mix(img, _rgb(120, 96, 70), 0.45 * eave_shade)

    # Chimney (behind the roof, above it), then the roof with tile rows.
    chim_cov = _coverage(_box_sd(x, y, CHIMNEY))
    img = _mix(img, _lerp(_rgb(150, 70, 52), _rgb(178, 92, 66), _smooth((x - 254.0) / 20.0)), chim_cov)
    roof_cov = _coverage(_triangle_sd(x, y, ROOF))
    rows = (y - 168.0) / 9.0
    tiles = _smooth((rows - np.floor(rows) - 0.75) / 0.25)
    roof_side = _smooth((x - 200.0) / 20.0)  # right slope faces the sun
    roof_col = _lerp(_rgb(124, 44, 36), _rgb(168, 64, 48), roof_side)
    roof_col = roof_col * (1.0 - 0.22 * tiles)[..., None]
    roof_col = roof_col * (0.92 + 0.08 * _fbm(x, y, 8.0, 1, seed=61))[..., None]
    img = _mix(img, roof_col, roof_cov)

    # Door with panels and a knob.
    door_cov = _coverage(_box_sd(x, y, DOOR))
    grain = _fbm(x * 6.0, y * 0.5, 20.0, 2, seed=71)
    door_col = _lerp(_rgb(92, 54, 30), _rgb(116, 70, 40), grain)
    panel = _coverage(_box_sd(x, y, (194.0, 308.0, 220.0, 332.0))) - _coverage(
        _box_sd(x, y, (196.0, 310.0, 218.0, 330.0))
    )
    panel2 = _coverage(_box_sd(x, y, (194.0, 340.0, 220.0, 364.0))) - _coverage(
        _box_sd(x, y, (196.0, 342.0, 218.0, 362.0))
    )
    door_col = door_col * (1.0 - 0.3 * (panel + panel2))[..., None]
    img = _mix(img, door_col, door_cov)
    img = _mix(img, _rgb(214, 180, 90), _coverage(_circle_sd(x, y, 218.0, 338.0, 2.6)))

    # Window: frame, sky reflection, cross bars.
    frame_cov = _coverage(_box_sd(x, y, WINDOW))
    img = _mix(img, _rgb(244, 242, 236), frame_cov)
    glass_box = (WINDOW[0] + 4.0, WINDOW[1] + 4.0, WINDOW[2] - 4.0, WINDOW[3] - 4.0)
    glass_cov = _coverage(_box_sd(x, y, glass_box))
    reflect = _smooth(((x - 238.0) + (318.0 - y)) / 60.0)
    img = _mix(img, _lerp(_rgb(70, 110, 150), _rgb(170, 206, 232), reflect), glass_cov)
    cx, cy = (WINDOW[0] + WINDOW[2]) / 2.0, (WINDOW[1] + WINDOW[3]) / 2.0
    bars = np.maximum(_coverage(np.abs(x - cx) - 1.5), _coverage(np.abs(y - cy) - 1.5))
    img = _mix(img, _rgb(244, 242, 236), bars * glass_cov)

    # Tree: trunk with bark texture, then a leafy crown made of overlapping blobs.
    trunk_cov = _coverage(_box_sd(x, y, TRUNK))
    bark = _fbm(x * 4.0, y * 0.4, 10.0, 3, seed=81)
    trunk_col = _lerp(
        _rgb(70, 46, 28), _rgb(112, 78, 48), 0.6 * bark + 0.4 * _smooth((x - 444.0) / 18.0)
    )
    img = _mix(img, trunk_col, trunk_cov)
    crown_sd = None
    for ccx, ccy, cr in CROWN:
        d = _circle_sd(x, y, ccx, ccy, cr)
        crown_sd = d if crown_sd is None else np.minimum(crown_sd, d)
    leafy_edge = 6.0 * (_fbm(x, y, 9.0, 2, seed=91) - 0.5)
    crown_cov = _coverage(crown_sd + leafy_edge)
    leaves = _fbm(x, y, 14.0, 3, seed=93)
    light = _smooth(((x - 400.0) - (y - 230.0)) / 180.0)  # lit from the upper right
    crown_col = _lerp(_rgb(30, 78, 28), _rgb(92, 150, 54), 0.55 * light + 0.45 * leaves)
    img = _mix(img, crown_col, crown_cov)

    # Ball: red sphere with diffuse shading, a specular highlight and a white stripe.
    dx, dy = (x - bx) / br, (y - by) / br
    r2 = dx * dx + dy * dy
    nz = np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))
    lx, ly, lz = 0.48, -0.56, 0.675  # unit light direction (towards upper right, viewer)
    diffuse = np.clip(dx * lx + dy * ly + nz * lz, 0.0, 1.0)
    ball_col = _rgb(196, 32, 36)
    shade = 0.28 + 0.72 * diffuse
    stripe = _coverage((np.abs(dx * 0.8 + dy * 0.6 - 0.1) - 0.12) * br)
    base = _lerp(ball_col, _rgb(240, 236, 228), stripe) * shade[..., None]
    spec = diffuse * diffuse
    spec = spec * spec
    spec = spec * spec  # diffuse ** 8, by squaring (exact)
    base = _mix(base, (1.0, 1.0, 1.0), 0.6 * spec)
    img = _mix(img, base, _coverage(_circle_sd(x, y, bx, by, br)))

    # Gentle vignette and a touch of film grain, so that nothing is perfectly flat.
    v = ((x - 320.0) / 420.0) ** 2 + ((y - 240.0) / 360.0) ** 2
    img = img * (1.0 - 0.18 * _smooth(v))[..., None]
    grain = _hash01(xs.astype(np.int64), ys.astype(np.int64), seed=7) - 0.5
    img = img + (1.5 / 255.0) * grain[..., None]

    return np.clip(np.floor(img * 255.0 + 0.5), 0, 255).astype(np.uint8)


def save_png(rgb: np.ndarray, path: Path) -> None:
    """Write ``rgb`` as a metadata-free PNG at a fixed compression level."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb, "RGB").save(path, format="PNG", optimize=False, compress_level=9)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT, help="PNG to write")
    parser.add_argument("--check", action="store_true", help="only compare with the existing file")
    args = parser.parse_args(argv)
    rgb = render()
    if args.check:
        try:
            with Image.open(args.output) as im:
                old = np.asarray(im.convert("RGB"))
        except OSError as e:
            print(f"{args.output}: cannot read ({e})", file=sys.stderr)
            return 1
        if old.shape != rgb.shape or not np.array_equal(old, rgb):
            print(f"{args.output} differs from the rendered scene; run without --check", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    save_png(rgb, args.output)
    print(f"wrote {args.output} ({rgb.shape[1]}x{rgb.shape[0]}, {args.output.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
