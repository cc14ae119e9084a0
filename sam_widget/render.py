"""Pixels for the screen: display sizing, mask overlays and their bounding boxes.

NumPy + Pillow only (no torch, no widgets). Arrays are ``(rows, cols)`` = ``(h, w)``;
overlays are RGBA uint8 cut to the mask's bounding box, with the box's top-left corner
``(x0, y0)`` in display pixels.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .viewport import fit_size

__all__ = ["fit_size", "resize_rgb", "resize_mask", "bbox", "Overlay", "mask_overlay", "objects_overlay", "union_rect"]


def resize_rgb(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resample an ``H x W x 3`` uint8 image to ``size_hw`` (area-averaging when shrinking)."""
    if rgb.shape[:2] == tuple(size_hw):
        return rgb
    im = Image.fromarray(rgb).resize((size_hw[1], size_hw[0]), Image.Resampling.BOX)
    return np.asarray(im)


def resize_mask(mask: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resample an ``(H, W)`` bool mask to ``size_hw``: a display pixel is on when over half of it is."""
    if mask.shape == tuple(size_hw):
        return mask
    im = Image.fromarray(mask.astype(np.uint8) * 255).resize((size_hw[1], size_hw[0]), Image.Resampling.BOX)
    return np.asarray(im) >= 128


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` of the True pixels, end-exclusive, or None for an empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def union_rect(a: tuple[int, int, int, int] | None, b: tuple[int, int, int, int] | None):
    """Smallest XYXY rectangle covering both (either may be None)."""
    if a is None:
        return b
    if b is None:
        return a
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


@dataclass(frozen=True)
class Overlay:
    """A patch to draw at ``(x, y)`` (display pixels), as palette indices.

    ``index``: ``(h, w)`` palette indices (uint8, or uint16 past 256 colours);
    ``palette``: ``(K, 4)`` uint8 RGBA, entry 0 fully transparent.
    """

    index: np.ndarray
    palette: np.ndarray
    x: int
    y: int

    @property
    def rgba(self) -> np.ndarray:
        """The patch as ``(h, w, 4)`` uint8 RGBA."""
        return self.palette[self.index]

    @property
    def rect(self) -> tuple[int, int, int, int]:
        h, w = self.index.shape
        return self.x, self.y, self.x + w, self.y + h

    def to_png(self) -> bytes:
        """PNG bytes: an indexed PNG with per-entry alpha (2 bits a pixel for one mask),
        or RGBA past 256 colours. Decodes to exactly :attr:`rgba`."""
        buf = io.BytesIO()
        if len(self.palette) <= 256:
            im = Image.fromarray(self.index.astype(np.uint8, copy=False), mode="P")
            im.putpalette(self.palette[:, :3].tobytes(), rawmode="RGB")
            im.info["transparency"] = self.palette[:, 3].tobytes()
            bits = next(b for b in (1, 2, 4, 8) if len(self.palette) <= 1 << b)
            im.save(buf, "PNG", bits=bits, transparency=self.palette[:, 3].tobytes(), compress_level=1)
        else:
            Image.fromarray(self.rgba).save(buf, "PNG", compress_level=1)
        return buf.getvalue()


def _edges(m: np.ndarray) -> np.ndarray:
    """Pixels of ``m`` with a 4-neighbour outside ``m`` (the mask's outline, 1 px)."""
    p = np.pad(m, 1)
    inner = p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    return m & ~inner


def mask_overlay(
    mask: np.ndarray, color: tuple[int, int, int], alpha: float = 0.45, outline_alpha: float = 1.0
) -> Overlay | None:
    """Translucent fill plus an opaque outline of ``mask`` ((h, w) bool), cut to its bounding box.

    Returns None for an empty mask.
    """
    box = bbox(mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    m = mask[y0:y1, x0:x1]
    index = m.view(np.uint8) + _edges(m).view(np.uint8)  # 0 outside, 1 fill, 2 outline
    palette = np.array(
        [(0, 0, 0, 0), (*color, round(alpha * 255)), (*color, round(outline_alpha * 255))], np.uint8
    )
    return Overlay(index, palette, x0, y0)


def objects_overlay(
    masks: list[np.ndarray], colors: list[tuple[int, int, int]], alpha: float = 0.35
) -> Overlay | None:
    """All committed objects composited into one patch, later objects on top.

    ``masks`` are (h, w) bool at display size. Returns None when every mask is empty.
    """
    rect = None
    for m in masks:
        rect = union_rect(rect, bbox(m))
    if rect is None:
        return None
    x0, y0, x1, y1 = rect
    n = len(masks)
    index = np.zeros((y1 - y0, x1 - x0), np.uint8 if 2 * n + 1 <= 256 else np.uint16)
    palette = np.zeros((2 * n + 1, 4), np.uint8)
    for k, (m, c) in enumerate(zip(masks, colors)):
        sub = m[y0:y1, x0:x1]
        index[sub] = 2 * k + 1
        index[_edges(sub)] = 2 * k + 2
        palette[2 * k + 1] = (*c, round(alpha * 255))
        palette[2 * k + 2] = (*c, 230)
    return Overlay(index, palette, x0, y0)
