"""Pixels of the "segment everything" proposals layer: many translucent masks in one patch.

NumPy only (no torch, no widgets). Proposals come as pieces cut to their bounding boxes,
``(x0, y0, mask)`` with ``mask`` ``(h, w)`` bool in display pixels, so the cost of a
redraw grows with the proposals' own areas, not with ``number of proposals x canvas``.
"""

from __future__ import annotations

import numpy as np

from .render import Overlay

__all__ = ["proposals_overlay", "PROPOSAL_ALPHA"]

PROPOSAL_ALPHA = 0.3
"""Fill opacity of a proposal (objects use 0.35); outlines are drawn at 0.9."""


def _outline(m: np.ndarray) -> np.ndarray:
    """Pixels of ``m`` with a 4-neighbour outside it (a 1-px outline; the piece's border counts
    as outside, which is right for a piece cut to its mask's bounding box)."""
    p = np.pad(m, 1)
    return m & ~(p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:])


def proposals_overlay(
    pieces: list[tuple[int, int, np.ndarray]],
    colors: list[tuple[int, int, int]],
    alpha: float = PROPOSAL_ALPHA,
    outline_alpha: float = 0.9,
) -> Overlay | None:
    """All ``pieces`` (``(x0, y0, mask)``, display pixels) composited into one patch, later
    pieces on top, each filled with its colour at ``alpha`` and outlined at ``outline_alpha``.

    Returns None when there is nothing to draw. Raises ``ValueError`` when the lists differ
    in length.
    """
    if len(pieces) != len(colors):
        raise ValueError(f"pieces and colors must have the same length, got {len(pieces)} and {len(colors)}.")
    pieces = [(int(x), int(y), m) for x, y, m in pieces if m.size and m.any()]
    if not pieces:
        return None
    x0 = min(x for x, _, _ in pieces)
    y0 = min(y for _, y, _ in pieces)
    x1 = max(x + m.shape[1] for x, _, m in pieces)
    y1 = max(y + m.shape[0] for _, y, m in pieces)
    n = len(pieces)
    index = np.zeros((y1 - y0, x1 - x0), np.uint8 if 2 * n + 1 <= 256 else np.uint16)
    palette = np.zeros((2 * n + 1, 4), np.uint8)
    for k, ((x, y, m), c) in enumerate(zip(pieces, colors)):
        h, w = m.shape
        sub = index[y - y0 : y - y0 + h, x - x0 : x - x0 + w]
        sub[m] = 2 * k + 1
        sub[_outline(m)] = 2 * k + 2
        palette[2 * k + 1] = (*c, round(alpha * 255))
        palette[2 * k + 2] = (*c, round(outline_alpha * 255))
    return Overlay(index, palette, x0, y0)
