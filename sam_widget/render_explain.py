"""Pictures of the explain view: candidate thumbnails and the logits heatmap.

NumPy + Pillow only (no torch, no widgets). Arrays are ``(rows, cols)``; pictures are
``h x w x 3`` uint8 RGB. The heatmap uses a diverging colour map centred on logit 0 (blue
below, white at 0, red above, each side scaled to its extreme), so SAM's own threshold is
where the colour turns; the chosen threshold is drawn as a black contour, the prompts as
markers.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from .render import resize_mask, resize_rgb

__all__ = ["diverging_rgb", "heatmap_picture", "thumbnail_picture", "png"]

_BLUE = np.array([33, 102, 172], np.float32)  # the ends of ColorBrewer's RdBu
_WHITE = np.array([247, 247, 247], np.float32)
_RED = np.array([178, 24, 43], np.float32)
POSITIVE = (34, 197, 94)  # the canvas' marker colours (canvas_view.POSITIVE / NEGATIVE)
NEGATIVE = (239, 68, 68)


def diverging_rgb(values: np.ndarray, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """``(h, w)`` numbers -> ``(h, w, 3)`` uint8 on a diverging map centred on 0: blue at
    ``vmin`` (< 0), white at 0, red at ``vmax`` (> 0), linear on each side (matplotlib's
    ``TwoSlopeNorm``), clipped. ``vmin`` / ``vmax`` default to the values' own extremes,
    so both signs use their full colour range however lopsided the logits are."""
    v = np.asarray(values, np.float32)
    lo = float(v.min()) if vmin is None and v.size else (vmin if vmin is not None else -1.0)
    hi = float(v.max()) if vmax is None and v.size else (vmax if vmax is not None else 1.0)
    lo, hi = min(lo, -1e-6), max(hi, 1e-6)
    u = np.where(v >= 0, np.minimum(v / hi, 1.0), -np.minimum(v / lo, 1.0))[..., None]
    out = np.where(u >= 0, _WHITE + (_RED - _WHITE) * u, _WHITE + (_BLUE - _WHITE) * (-u))
    return np.rint(out).astype(np.uint8)


def _edges(m: np.ndarray) -> np.ndarray:
    p = np.pad(m, 1)
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def heatmap_picture(
    logits: np.ndarray,
    threshold: float,
    *,
    valid_hw: tuple[float, float] | None = None,
    markers: list[tuple[float, float, int]] = (),  # type: ignore[assignment]
    box: tuple[float, float, float, float] | None = None,
    side: int = 256,
) -> np.ndarray:
    """The ``(lh, lw)`` logits as a heatmap picture about ``side`` pixels wide (each logit a
    square of ``max(1, side // lw)`` pixels): :func:`diverging_rgb` colours, a black outline
    where the logits exceed ``threshold`` (inside ``valid_hw``), the part outside ``valid_hw``
    (padding, not the image) greyed, and the prompts: ``markers`` ``(x, y, label)`` and ``box`` XYXY in the
    logits' ``(column, row)`` coordinates (pixel centres at integers)."""
    lg = np.asarray(logits, np.float32)
    lh, lw = lg.shape
    k = max(1, side // lw)
    rgb = diverging_rgb(lg).astype(np.float32)
    if valid_hw is not None:
        rows, cols = int(np.ceil(valid_hw[0] - 1e-9)), int(np.ceil(valid_hw[1] - 1e-9))
        pad = np.ones((lh, lw), bool)
        pad[:rows, :cols] = False
        rgb[pad] = rgb[pad] * 0.35 + 160 * 0.65
    big = np.repeat(np.repeat(rgb.astype(np.uint8), k, 0), k, 1)
    above = lg > threshold
    if valid_hw is not None:
        above &= ~pad  # the contour only where the logits cover the image
    inside = np.repeat(np.repeat(above, k, 0), k, 1)
    big[_edges(inside)] = (0, 0, 0)
    im = Image.fromarray(big)
    d = ImageDraw.Draw(im)
    to_px = lambda x, y: ((x + 0.5) * k, (y + 0.5) * k)  # noqa: E731 - logit coords -> picture pixels
    if box is not None:
        (x0, y0), (x1, y1) = to_px(box[0], box[1]), to_px(box[2], box[3])
        d.rectangle([x0, y0, x1, y1], outline=(56, 189, 248), width=2)
    r = max(3, k + 1)
    for x, y, label in markers:
        cx, cy = to_px(x, y)
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=POSITIVE if label == 1 else NEGATIVE, outline=(255, 255, 255), width=1)
    return np.asarray(im)


def thumbnail_picture(image: np.ndarray, mask: np.ndarray, color: tuple[int, int, int] = (30, 144, 255)) -> np.ndarray:
    """``image`` (``h x w x 3``, any size) with ``mask`` (``(h', w')`` bool) tinted in
    ``color``, at the mask's size; outside the mask the image is dimmed."""
    hw = mask.shape
    rgb = resize_rgb(image, hw).astype(np.float32) if image.shape[:2] != hw else image.astype(np.float32)
    m = resize_mask(mask, hw)
    out = rgb * 0.55
    out[m] = rgb[m] * 0.45 + np.array(color, np.float32) * 0.55
    out[_edges(m)] = color
    return np.rint(out).astype(np.uint8)


def png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an ``h x w x 3`` uint8 picture."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG", compress_level=1)
    return buf.getvalue()
