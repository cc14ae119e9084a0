"""A still picture of the widget's state: the image, the committed objects, the current mask
and the prompts, composed the way the canvas shows them.

For front ends that cannot run the widget (an nbconvert/HTML export, GitHub's notebook
view, a notebook reopened without its kernel) and for users who want to keep a picture of
their selection (``SamWidget.snapshot()``). NumPy + Pillow only: no widgets, no torch.

The overlays are made by the same functions the canvas layers are drawn from
(:func:`sam_widget.render.objects_overlay`, :func:`sam_widget.render.mask_overlay`) and laid
over the image in the canvas' layer order (image, objects, current mask, prompts), each
with the browser's "source-over" blending, so the picture matches the canvas pixel for
pixel up to rounding (prompt markers are drawn by Pillow, the canvas anti-aliases them).

Conventions: images are ``H x W x 3`` uint8 RGB; masks ``(h, w)`` bool; points ``(x, y)`` =
(column, row) and boxes XYXY ``(x0, y0, x1, y1)``, both in the pixels of ``image``.
"""

from __future__ import annotations

import io
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from .render import DEFAULT_OPACITY, Overlay, mask_overlay, objects_overlay, resize_mask, resize_rgb

__all__ = ["composite", "compose_snapshot", "png_bytes", "CURRENT_COLOR", "POSITIVE", "NEGATIVE", "BOX"]

CURRENT_COLOR = (30, 144, 255)  # the widget's current-mask colour (blue)
POSITIVE = (34, 197, 94)  # "#22c55e": a positive point
NEGATIVE = (239, 68, 68)  # "#ef4444": a negative point
BOX = (56, 189, 248)  # "#38bdf8": the prompt box
_POINT_RADIUS = 5  # display pixels, as on the canvas


def composite(base: np.ndarray, overlays: Iterable[Overlay | None]) -> np.ndarray:
    """Lay each overlay patch over ``base`` (``H x W x 3`` uint8 RGB) in order, with
    "source-over" blending (``out = a * patch + (1 - a) * below``, rounded); a copy is
    returned. ``None`` entries are skipped; parts of a patch outside ``base`` are cut off.
    """
    if not (isinstance(base, np.ndarray) and base.dtype == np.uint8 and base.ndim == 3 and base.shape[2] == 3):
        raise TypeError(f"base must be an H x W x 3 uint8 array, got {getattr(base, 'shape', type(base).__name__)}"
                        f" {getattr(base, 'dtype', '')}.")
    out = base.astype(np.float32)
    H, W = base.shape[:2]
    for ov in overlays:
        if ov is None:
            continue
        if not isinstance(ov, Overlay):
            raise TypeError(f"overlays must be sam_widget.render.Overlay objects or None, not {type(ov).__name__}.")
        x0, y0, x1, y1 = ov.rect
        cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
        if cx0 >= cx1 or cy0 >= cy1:
            continue
        rgba = ov.rgba[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0].astype(np.float32)
        a = rgba[..., 3:4] / 255.0
        region = out[cy0:cy1, cx0:cx1]
        region[...] = a * rgba[..., :3] + (1.0 - a) * region
        np.rint(region, out=region)  # the canvas stores 8 bits per channel after each layer
    return out.astype(np.uint8)


def _as_mask(m: object, what: str, size_hw: tuple[int, int]) -> np.ndarray:
    if not isinstance(m, np.ndarray):
        raise TypeError(f"{what} must be a 2-D bool NumPy array, not {type(m).__name__}.")
    if m.ndim != 2:
        raise ValueError(f"{what} must be 2-D (h, w), got shape {m.shape}.")
    if m.dtype != bool:
        raise TypeError(f"{what} must be a bool array, got dtype {m.dtype}.")
    return m if m.shape == tuple(size_hw) else resize_mask(m, size_hw)


def _as_color(c: object, what: str) -> tuple[int, int, int]:
    try:
        t = tuple(int(v) for v in c)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be an (r, g, b) triple of ints 0-255, got {c!r}.") from None
    if len(t) != 3 or not all(0 <= v <= 255 for v in t):
        raise ValueError(f"{what} must be an (r, g, b) triple of ints 0-255, got {c!r}.")
    return t  # type: ignore[return-value]


def compose_snapshot(
    image: np.ndarray,
    object_masks: Sequence[np.ndarray] = (),
    object_colors: Sequence[tuple[int, int, int]] = (),
    current: np.ndarray | None = None,
    *,
    current_color: tuple[int, int, int] = CURRENT_COLOR,
    points: Sequence[tuple[float, float]] = (),
    labels: Sequence[int] = (),
    box: tuple[float, float, float, float] | None = None,
    size_hw: tuple[int, int] | None = None,
    object_alpha: float = DEFAULT_OPACITY,
    current_alpha: float = DEFAULT_OPACITY,
    highlight: int | None = None,
    dim_objects: bool | None = None,
) -> np.ndarray:
    """The widget's picture: ``image`` with the objects, the current mask and the prompts.

    Args:
      image: ``H x W x 3`` uint8 RGB.
      object_masks: committed objects' masks, ``(h, w)`` bool each (later ones on top),
        with one ``(r, g, b)`` colour each in ``object_colors``.
      current: the current mask ``(h, w)`` bool, or None.
      points, labels: prompt points ``(x, y)`` in ``image`` pixels, labels 1 (positive) / 0.
      box: the prompt box XYXY in ``image`` pixels, or None.
      size_hw: ``(h, w)`` of the picture (default: the image's size). The image is resampled
        to it like the widget's display image, and masks of another size like its masks.
      object_alpha, current_alpha: fill opacity of objects / the current mask (the canvas'
        values by default).
      highlight, dim_objects: the object singled out (index into ``object_masks``) and
        whether the others are drawn faint, as in :func:`sam_widget.render.objects_overlay`.

    Returns:
      ``size_hw`` x 3 uint8 RGB (a new array).
    """
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        raise TypeError(f"image must be an H x W x 3 uint8 array, got {getattr(image, 'shape', type(image).__name__)}"
                        f" {getattr(image, 'dtype', '')}.")
    H, W = image.shape[:2]
    if size_hw is None:
        size_hw = (H, W)
    if (len(tuple(size_hw)) != 2 or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0
                                            for v in size_hw)):
        raise ValueError(f"size_hw must be two positive ints (h, w), got {size_hw!r}.")
    size_hw = (int(size_hw[0]), int(size_hw[1]))
    masks, colors = list(object_masks), list(object_colors)
    if len(masks) != len(colors):
        raise ValueError(f"object_masks and object_colors differ in length ({len(masks)} vs {len(colors)}).")
    masks = [_as_mask(m, f"object_masks[{i}]", size_hw) for i, m in enumerate(masks)]
    colors = [_as_color(c, f"object_colors[{i}]") for i, c in enumerate(colors)]
    cur = None if current is None else _as_mask(current, "current", size_hw)
    ccol = _as_color(current_color, "current_color")
    if highlight is not None:
        if isinstance(highlight, bool) or not isinstance(highlight, (int, np.integer)):
            raise TypeError(f"highlight must be an int index into object_masks or None, not {type(highlight).__name__}.")
        if not 0 <= highlight < len(masks):
            raise ValueError(f"highlight {highlight} is not an index into object_masks (there are {len(masks)}).")
    pts, labs = list(points), list(labels)
    if len(pts) != len(labs):
        raise ValueError(f"points and labels differ in length ({len(pts)} vs {len(labs)}).")

    base = resize_rgb(image, size_hw)
    out = composite(base, [
        objects_overlay(masks, colors, alpha=object_alpha, highlight=highlight, dim=dim_objects) if masks else None,
        mask_overlay(cur, ccol, alpha=current_alpha) if cur is not None else None,
    ])
    if pts or box is not None:
        out = _draw_prompts(out, pts, labs, box, (size_hw[1] / W, size_hw[0] / H))
    return out


def _draw_prompts(rgb: np.ndarray, points: list, labels: list, box, scale_xy: tuple[float, float]) -> np.ndarray:
    """Point markers (green positive, red negative, white ring) and the box, as on the canvas."""
    sx, sy = scale_xy
    im = Image.fromarray(rgb)
    d = ImageDraw.Draw(im)
    if box is not None:
        x0, y0, x1, y1 = (float(v) for v in box)
        d.rectangle([x0 * sx, y0 * sy, x1 * sx, y1 * sy], outline=BOX, width=2)
    r = _POINT_RADIUS
    for (x, y), lab in zip(points, labels):
        cx, cy = float(x) * sx, float(y) * sy
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=POSITIVE if int(lab) == 1 else NEGATIVE,
                  outline=(255, 255, 255), width=1)
    return np.asarray(im).copy()


def png_bytes(rgb: np.ndarray, compress_level: int = 6) -> bytes:
    """``H x W x 3`` uint8 RGB as PNG bytes (lossless: decodes to exactly ``rgb``)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG", compress_level=compress_level)
    return buf.getvalue()
