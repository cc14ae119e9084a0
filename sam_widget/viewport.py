"""Where an image sits on the canvas, and on the page: one coordinate mapping for everyone.

Three coordinate systems, all ``(x, y)`` = (column, row):

* **image pixels** -- of the full image, ``H x W``; prompts and masks are in these. A point
  ``(x, y)`` lies *inside the image* when ``0 <= x <= W`` and ``0 <= y <= H`` (the far edges
  included, as ``Segmenter.predict`` accepts them).
* **canvas pixels** -- of the canvas bitmap, ``canvas_hw = (ch, cw)``. The image is shown
  fitted into ``display_hw = (dh, dw)`` pixels, centred in the canvas (``offset``); for a
  single image the canvas is exactly the image's display size and the offset is ``(0, 0)``.
  Every drawing command is in canvas pixels.
* **CSS pixels** -- of the canvas *element* on the page, whose on-screen size ``css_w x
  css_h`` may differ from the bitmap (browser zoom, page CSS). ipyevents reports pointer
  positions in these (``relativeX/Y`` with ``boundingRectWidth/Height``).

``canvas = css * cw / css_w``; ``image = floor((canvas - offset) * W / dw)``, clamped to the
image. The widget maps events with it, :class:`sam_widget.testing.EventInjector` aims with it
and the benchmark checks what it drew with it. Plain Python (no widgets, no torch).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field

__all__ = ["Viewport", "fit_size"]


def fit_size(image_hw: tuple[int, int], display_size: int | tuple[int, int]) -> tuple[int, int]:
    """``(h, w)`` of the image shown with its longer side at most ``display_size`` pixels
    (or, given a box ``(h, w)``, fitted inside it).

    Images smaller than that are shown at their own size (never enlarged).
    """
    if isinstance(display_size, tuple):
        bh, bw = display_size
    else:
        if isinstance(display_size, bool) or not isinstance(display_size, numbers.Integral):
            raise TypeError(f"display_size must be an int, not {type(display_size).__name__}.")
        if display_size < 16:
            raise ValueError(f"display_size must be at least 16 pixels, got {display_size}.")
        bh = bw = int(display_size)
    H, W = image_hw
    scale = min(1.0, bh / H, bw / W) if isinstance(display_size, tuple) else min(1.0, bh / max(H, W))
    return max(1, round(H * scale)), max(1, round(W * scale))


@dataclass(frozen=True)
class Viewport:
    """One image on one canvas. ``image_hw``: ``(H, W)``; ``display_hw``: ``(dh, dw)`` the image
    is drawn at; ``canvas_hw``: the canvas bitmap (default: ``display_hw``)."""

    image_hw: tuple[int, int]
    display_hw: tuple[int, int]
    canvas_hw: tuple[int, int] = None  # type: ignore[assignment]
    offset: tuple[int, int] = field(init=False)  # (ox, oy) canvas pixel of the image's top-left

    def __post_init__(self) -> None:
        if self.canvas_hw is None:
            object.__setattr__(self, "canvas_hw", tuple(self.display_hw))
        (ch, cw), (dh, dw) = self.canvas_hw, self.display_hw
        object.__setattr__(self, "offset", ((cw - dw) // 2, (ch - dh) // 2))

    @classmethod
    def fit(cls, image_hw: tuple[int, int], display_size: int, canvas_hw: tuple[int, int] | None = None) -> "Viewport":
        """The image fitted to ``display_size`` (longer side), or into ``canvas_hw`` when given."""
        if canvas_hw is None:
            return cls(tuple(image_hw), fit_size(image_hw, display_size))
        return cls(tuple(image_hw), fit_size(image_hw, tuple(canvas_hw)), tuple(canvas_hw))

    # ------------------------------------------------------------------ scales
    @property
    def scale(self) -> tuple[float, float]:
        """``(sx, sy)``: image pixels per canvas pixel."""
        (H, W), (dh, dw) = self.image_hw, self.display_hw
        return W / dw, H / dh

    # ------------------------------------------------------------------ page -> image
    def css_to_canvas(self, x: float, y: float, css_w: float = 0.0, css_h: float = 0.0) -> tuple[float, float]:
        """A position on the element (CSS px, element shown ``css_w x css_h``) in canvas pixels.

        A missing / zero element size means CSS pixels are canvas pixels.
        """
        ch, cw = self.canvas_hw
        return (x * cw / css_w if css_w > 0 else x), (y * ch / css_h if css_h > 0 else y)

    def canvas_to_image(self, cx: float, cy: float) -> tuple[int, int] | None:
        """The image pixel ``(col, row)`` under canvas position ``(cx, cy)``, or None when the
        position lies outside the image's rectangle (in the letterbox around it).

        Positions on the image's far edges (and, for an image filling the canvas, anywhere
        on the canvas) are clamped onto the last row / column.
        """
        (H, W), (dh, dw), (ox, oy) = self.image_hw, self.display_hw, self.offset
        if (ox or oy) and not (ox <= cx <= ox + dw and oy <= cy <= oy + dh):
            return None
        ix = min(W - 1, max(0, math.floor((cx - ox) * (W / dw))))
        iy = min(H - 1, max(0, math.floor((cy - oy) * (H / dh))))
        return ix, iy

    def css_to_image(self, x: float, y: float, css_w: float = 0.0, css_h: float = 0.0) -> tuple[int, int] | None:
        """``canvas_to_image(css_to_canvas(...))``."""
        return self.canvas_to_image(*self.css_to_canvas(x, y, css_w, css_h))

    # ------------------------------------------------------------------ image -> page
    def image_to_canvas(self, x: float, y: float) -> tuple[float, float]:
        """Image position ``(x, y)`` (pixels, may be fractional) in canvas pixels."""
        (H, W), (dh, dw), (ox, oy) = self.image_hw, self.display_hw, self.offset
        return ox + x * dw / W, oy + y * dh / H

    def canvas_to_css(self, cx: float, cy: float, css_w: float, css_h: float) -> tuple[float, float]:
        """Canvas position in CSS pixels of an element shown ``css_w x css_h``."""
        ch, cw = self.canvas_hw
        return cx * css_w / cw, cy * css_h / ch

    def image_to_css(self, x: float, y: float, css_w: float, css_h: float) -> tuple[float, float]:
        """Image position ``(x, y)`` in CSS pixels of an element shown ``css_w x css_h``."""
        return self.canvas_to_css(*self.image_to_canvas(x, y), css_w, css_h)

    # ------------------------------------------------------------------ checks
    def contains(self, x: float, y: float) -> bool:
        """Whether image position ``(x, y)`` is finite and inside the image (edges included)."""
        H, W = self.image_hw
        return math.isfinite(x) and math.isfinite(y) and 0 <= x <= W and 0 <= y <= H

    def check_point(self, x: object, y: object, what: str = "point") -> tuple[float, float]:
        """``(float(x), float(y))`` of a point given in image pixels, or one clear error:
        TypeError for non-numbers, ValueError for NaN / infinity / a point outside the image."""
        if any(isinstance(v, (str, bytes, bool)) for v in (x, y)):
            raise TypeError(f"{what} coordinates must be numbers, got ({x!r}, {y!r}).")
        try:
            xf, yf = float(x), float(y)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise TypeError(f"{what} coordinates must be numbers, got ({x!r}, {y!r}).") from None
        if not (math.isfinite(xf) and math.isfinite(yf)):
            raise ValueError(f"{what} coordinates must be finite, got ({x!r}, {y!r}).")
        if not self.contains(xf, yf):
            H, W = self.image_hw
            raise ValueError(f"{what} ({xf:g}, {yf:g}) lies outside the {W}x{H} (width x height) image.")
        return xf, yf
