"""Pixels of the "segment everything" proposals layer: many translucent masks in one patch.

NumPy only (no torch, no widgets). Proposals come as pieces cut to their bounding boxes,
``(x0, y0, mask)`` with ``mask`` ``(h, w)`` bool in display pixels, so the cost of a
redraw grows with the proposals' own areas, not with ``number of proposals x canvas``.
"""

from __future__ import annotations

import numpy as np

from .render import Overlay

__all__ = ["proposals_overlay", "proposal_alpha", "PROPOSAL_ALPHA"]

PROPOSAL_ALPHA = (0.15, 0.5)
"""Fill opacity of a proposal: light and strong diagonal stripes (so proposals do not look
like objects, which are filled evenly); outlines are drawn at 0.9."""

STRIPE = 4  # display pixels per stripe


def proposal_alpha(opacity: float) -> tuple[float, float]:
    """The stripes' opacity (light, strong) for the widget's fill ``opacity`` (0 to 1): the
    default :data:`PROPOSAL_ALPHA` at the default opacity, scaled with it (0: outlines
    only, as for objects), the strong stripes never above 1."""
    from .render import DEFAULT_OPACITY

    k = max(0.0, float(opacity)) / DEFAULT_OPACITY
    light, strong = PROPOSAL_ALPHA
    return (min(1.0, light * k), min(1.0, strong * k))


def proposals_overlay(
    pieces: list[tuple[int, int, np.ndarray]],
    colors: list[tuple[int, int, int]],
    alpha: tuple[float, float] = PROPOSAL_ALPHA,
    outline_alpha: float = 0.9,
) -> Overlay | None:
    """All ``pieces`` (``(x0, y0, mask)``, display pixels) composited into one patch, later
    pieces on top, each filled with its colour in diagonal stripes (``alpha`` = the light and
    the strong stripes' opacity, stripes aligned on the canvas) and outlined at
    ``outline_alpha`` along the edges of its visible part (where another proposal covers it,
    that one's outline is drawn).

    One masked write per piece plus a constant number of passes over the patch, so many
    large, overlapping proposals (random-weight SAM gives hundreds of image-size noise
    masks) stay cheap. Returns None when there is nothing to draw. Raises ``ValueError``
    when the lists differ in length.
    """
    if len(pieces) != len(colors):
        raise ValueError(f"pieces and colors must have the same length, got {len(pieces)} and {len(colors)}.")
    kept = [((int(x), int(y), m), c) for (x, y, m), c in zip(pieces, colors) if m.size and m.any()]
    if not kept:
        return None
    x0 = min(x for (x, _, _), _ in kept)
    y0 = min(y for (_, y, _), _ in kept)
    x1 = max(x + m.shape[1] for (x, _, m), _ in kept)
    y1 = max(y + m.shape[0] for (_, y, m), _ in kept)
    n = len(kept)
    top = np.zeros((y1 - y0, x1 - x0), np.int32)  # 1 + the piece shown at each pixel, 0: none
    for k, ((x, y, m), _) in enumerate(kept):
        h, w = m.shape
        np.copyto(top[y - y0 : y - y0 + h, x - x0 : x - x0 + w], k + 1, where=m)
    shown = top > 0
    p = np.pad(top, 1)
    edge = shown & ((p[:-2, 1:-1] != top) | (p[2:, 1:-1] != top) | (p[1:-1, :-2] != top) | (p[1:-1, 2:] != top))
    yy, xx = np.ogrid[y0:y1, x0:x1]
    strong = ((xx + yy) // STRIPE) % 2 == 0  # diagonal stripes in canvas coordinates
    index = 3 * (top - 1) + 1 + strong  # light / strong fill of the piece on top
    index[edge] = 3 * top[edge]  # its outline
    index[~shown] = 0
    palette = np.zeros((3 * n + 1, 4), np.uint8)
    light, heavy = alpha
    for k, (_, c) in enumerate(kept):
        palette[3 * k + 1] = (*c, round(light * 255))
        palette[3 * k + 2] = (*c, round(heavy * 255))
        palette[3 * k + 3] = (*c, round(outline_alpha * 255))
    return Overlay(index.astype(np.uint8 if 3 * n + 1 <= 256 else np.uint16), palette, x0, y0)
