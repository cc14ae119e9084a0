"""Pixels for the screen: display sizing, mask overlays and their bounding boxes.

NumPy + Pillow (and scikit-image's CIEDE2000 colour difference); no torch, no widgets.
Arrays are ``(rows, cols)`` = ``(h, w)``; overlays are RGBA uint8 cut to the mask's bounding
box, with the box's top-left corner ``(x0, y0)`` in display pixels. The look of masks (a dark
edge, a light line, a fill; the current mask's colour; highlight and dimming) is decided
here, once, for the canvas and the static picture alike.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .viewport import fit_size

__all__ = [
    "fit_size", "resize_rgb", "resize_mask", "bbox", "Overlay", "mask_overlay", "objects_overlay", "union_rect",
    "mask_rings", "contrasting_color", "fill_delta_e", "line_color", "contrast_ratio", "relative_luminance", "OUTLINE_DARK",
    "OUTLINE_LIGHT", "DEFAULT_OPACITY", "CURRENT_CHOICES", "DIM", "HIGHLIGHT_BOOST", "MIN_FILL_DELTA_E",
]


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


def mask_rings(m: np.ndarray, n: int) -> list[np.ndarray]:
    """The first ``n`` one-pixel rings of ``m`` ((h, w) bool) from its edge inwards.

    Ring 0 is the edge (:func:`_edges`: pixels with a 4-neighbour outside the mask, or on
    the array's border), ring 1 the edge of what is left, and so on; rings are disjoint,
    inside ``m``, and empty once the mask is used up.
    """
    rings, rest = [], m
    for _ in range(n):
        e = _edges(rest)
        rings.append(e)
        rest = rest & ~e
    return rings


# ---------------------------------------------------------------------------- the look of masks
# Every mask is drawn inside its own pixels (nothing outside it is painted): a dark outer line,
# then a light (or coloured) line, then a translucent fill. Against any image one of the two
# lines contrasts (tests/test_render.py measures it), so a mask reads even where its fill
# colour is the image's own (a blue mask on a blue object).
OUTLINE_DARK = (0, 0, 0)  # the outer line of every mask: black
OUTLINE_LIGHT = (255, 255, 255)  # the inner line of the current mask and of a highlighted object
DEFAULT_OPACITY = 0.45  # fill opacity of the current mask and the objects (``SamWidget.opacity``)
DIM = 0.35  # objects other than the highlighted / edited one: this fraction of the fill opacity
HIGHLIGHT_BOOST = 0.2  # the highlighted object's fill: this much more opaque
# The current mask's fill colour: the first that stands out from the image under the mask.
CURRENT_CHOICES: tuple[tuple[int, int, int], ...] = ((30, 144, 255), (249, 115, 22), (236, 72, 153))
MIN_FILL_DELTA_E = 15.0  # CIEDE2000 between an image pixel and the same pixel under the fill


def relative_luminance(rgb) -> np.ndarray:
    """WCAG 2 relative luminance (0 black .. 1 white) of sRGB uint8 colour(s) ``(..., 3)``."""
    c = np.asarray(rgb, np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return lin @ np.array([0.2126, 0.7152, 0.0722])


def contrast_ratio(a, b) -> np.ndarray:
    """WCAG 2 contrast ratio (1 .. 21) between sRGB uint8 colours ``a`` and ``b`` (``(..., 3)``)."""
    la, lb = relative_luminance(a), relative_luminance(b)
    return (np.maximum(la, lb) + 0.05) / (np.minimum(la, lb) + 0.05)


def line_color(color: tuple[int, int, int], min_luminance: float = 0.6) -> tuple[int, int, int]:
    """``color`` mixed with white until its relative luminance is at least ``min_luminance``:
    an object's inner outline, light enough to contrast with any image the dark outer line
    does not (together they keep a WCAG contrast of 3.6 or more against every colour)."""
    c = np.asarray(color, np.float64)
    for t in np.linspace(0.0, 1.0, 41):
        mixed = np.rint(c + t * (255.0 - c))
        if relative_luminance(mixed) >= min_luminance:
            return tuple(int(v) for v in mixed)  # type: ignore[return-value]
    return OUTLINE_LIGHT


def fill_delta_e(rgb: np.ndarray, mask: np.ndarray, color: tuple[int, int, int], alpha: float = DEFAULT_OPACITY,
                 samples: int = 2048) -> float:
    """How much a fill of ``color`` at ``alpha`` changes the pixels of ``rgb`` (h x w x 3 uint8)
    under ``mask`` ((h, w) bool): the median CIEDE2000 colour difference between a pixel and
    the same pixel under the fill (about 2: barely visible; 10+: clearly tinted), over at most
    ``samples`` pixels spread evenly over the mask. NaN for an empty mask."""
    px = _sample(rgb, mask, samples)
    if px is None:
        return float("nan")
    return float(_fill_deltas(px, [color], alpha)[0])


def contrasting_color(
    rgb: np.ndarray,
    mask: np.ndarray,
    choices: tuple[tuple[int, int, int], ...] = CURRENT_CHOICES,
    alpha: float = DEFAULT_OPACITY,
    min_delta_e: float = MIN_FILL_DELTA_E,
    samples: int = 2048,
) -> tuple[int, int, int]:
    """The fill colour for ``mask`` ((h, w) bool) over ``rgb`` (h x w x 3 uint8, same size):
    the first of ``choices`` whose fill at ``alpha`` changes the pixels under the mask by at
    least ``min_delta_e`` (median CIEDE2000, see :func:`fill_delta_e`), otherwise the one that
    changes them most. So the usual colour stays unless the image under the mask has its hue
    (a blue mask on a blue object or the sky becomes orange). ``choices[0]`` for an empty mask."""
    px = _sample(rgb, mask, samples)
    if px is None:
        return tuple(choices[0])  # type: ignore[return-value]
    deltas = _fill_deltas(px, list(choices), alpha)
    for c, d in zip(choices, deltas):
        if d >= min_delta_e:
            return tuple(c)  # type: ignore[return-value]
    return tuple(choices[int(np.argmax(deltas))])  # type: ignore[return-value]


def _sample(rgb: np.ndarray, mask: np.ndarray, samples: int) -> np.ndarray | None:
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return None
    idx = idx[:: max(1, idx.size // samples)]
    return rgb.reshape(-1, 3)[idx]


def _fill_deltas(px: np.ndarray, colors: list, alpha: float) -> np.ndarray:
    from skimage.color import deltaE_ciede2000, rgb2lab

    under = rgb2lab(px[None].astype(np.uint8))
    out = []
    for c in colors:
        filled = np.rint(alpha * np.asarray(c, np.float64) + (1 - alpha) * px).astype(np.uint8)
        out.append(float(np.median(deltaE_ciede2000(under, rgb2lab(filled[None])))))
    return np.array(out)


def mask_overlay(
    mask: np.ndarray,
    color: tuple[int, int, int],
    alpha: float = DEFAULT_OPACITY,
    outline_alpha: float = 1.0,
    *,
    light: tuple[int, int, int] = OUTLINE_LIGHT,
    dark: tuple[int, int, int] = OUTLINE_DARK,
) -> Overlay | None:
    """The current mask's look: ``mask`` ((h, w) bool) with a ``dark`` outer line (its edge
    pixels), a 2-pixel ``light`` line inside it and a fill of ``color`` at ``alpha``; the lines
    at ``outline_alpha``. Cut to the mask's bounding box; nothing outside the mask is painted.

    Returns None for an empty mask.
    """
    box = bbox(mask)
    if box is None:
        return None
    x0, y0, x1, y1 = box
    m = mask[y0:y1, x0:x1]
    edge, inner1, inner2 = mask_rings(m, 3)
    index = m.view(np.uint8).copy()  # 0 outside, 1 fill, 2 dark line, 3 light line
    index[edge] = 2
    index[inner1 | inner2] = 3
    la = round(outline_alpha * 255)
    palette = np.array([(0, 0, 0, 0), (*color, round(alpha * 255)), (*dark, la), (*light, la)], np.uint8)
    return Overlay(index, palette, x0, y0)


def objects_overlay(
    masks: list[np.ndarray],
    colors: list[tuple[int, int, int]],
    alpha: float = DEFAULT_OPACITY,
    *,
    highlight: int | None = None,
    dim: bool | None = None,
) -> Overlay | None:
    """All committed objects composited into one patch, later objects on top.

    ``masks`` are (h, w) bool at display size, one ``(r, g, b)`` of ``colors`` each. Each
    object: a dark outer line, a 2-pixel light line in its colour (:func:`line_color`), a
    fill of its colour at ``alpha``.
    ``highlight``: index of an object to single out (drawn on top of the others, with a
    dark, a 2-pixel white and a 2-pixel coloured line and a fill ``HIGHLIGHT_BOOST`` more
    opaque); ``dim`` (default: whether there is a highlight): draw the other objects faint
    (fill at ``DIM`` of ``alpha``, 1-pixel lines about half transparent). Returns None when every mask is empty.
    """
    rect = None
    boxes = [bbox(m) for m in masks]
    for b in boxes:
        rect = union_rect(rect, b)
    if rect is None:
        return None
    if dim is None:
        dim = highlight is not None
    x0, y0, x1, y1 = rect
    n = len(masks)
    index = np.zeros((y1 - y0, x1 - x0), np.uint8 if 4 * n + 1 <= 256 else np.uint16)
    palette = np.zeros((4 * n + 1, 4), np.uint8)
    order = [k for k in range(n) if k != highlight] + ([highlight] if highlight is not None and 0 <= highlight < n else [])
    for k in order:
        b = boxes[k]
        if b is None:
            continue
        c, base = tuple(colors[k]), 4 * k + 1
        bx0, by0, bx1, by1 = b
        sub = masks[k][by0:by1, bx0:bx1]
        dst = index[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0]
        if k == highlight:
            edge, w1, w2, line1, line2 = mask_rings(sub, 5)
            white, line = w1 | w2, line1 | line2
            palette[base : base + 4] = [(*c, round(min(1.0, alpha + HIGHLIGHT_BOOST) * 255)), (*OUTLINE_DARK, 255),
                                        (*line_color(c), 255), (*OUTLINE_LIGHT, 255)]
        else:
            faint = dim and k != highlight
            edge, *lines = mask_rings(sub, 2 if faint else 3)
            line = lines[0] if faint else lines[0] | lines[1]
            white = None
            palette[base : base + 3] = [(*c, round(alpha * (DIM if faint else 1.0) * 255)),
                                        (*OUTLINE_DARK, 110 if faint else 255), (*line_color(c), 140 if faint else 255)]
        dst[sub] = base
        dst[edge] = base + 1
        dst[line] = base + 2
        if white is not None:
            dst[white] = base + 3
    return Overlay(index, palette, x0, y0)
