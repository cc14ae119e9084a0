"""The proposals layer's pixels: pieces cut to their boxes, striped fill, outline, later on top."""

from __future__ import annotations

import numpy as np
import pytest

from sam_widget.render_proposals import PROPOSAL_ALPHA, proposals_overlay


def disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_pieces_land_where_they_belong_later_ones_on_top():
    a = disc(40, 60, 20, 25, 12)
    b = disc(40, 60, 22, 35, 8)
    cut = lambda m: (int(np.nonzero(m.any(0))[0][0]), int(np.nonzero(m.any(1))[0][0]), m[np.ix_(m.any(1), m.any(0))])
    ov = proposals_overlay([cut(a), cut(b)], [(255, 0, 0), (0, 0, 255)])
    canvas = np.zeros((40, 60, 4), np.uint8)
    x0, y0, x1, y1 = ov.rect
    canvas[y0:y1, x0:x1] = ov.rgba
    assert np.array_equal(canvas[..., 3] > 0, a | b)
    assert (canvas[a & ~b, :3] == (255, 0, 0)).all() and (canvas[b, :3] == (0, 0, 255)).all()
    inner = b.copy()
    for _ in range(1):
        p = np.pad(inner, 1)
        inner = inner & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    alphas = set(np.unique(canvas[inner, 3]).tolist())  # striped: light and strong fill, both present
    assert alphas == {round(PROPOSAL_ALPHA[0] * 255), round(PROPOSAL_ALPHA[1] * 255)}
    assert canvas[22, 35 + 8, 3] == round(0.9 * 255)  # b's right edge: the outline
    assert ov.to_png()[:4] == b"\x89PNG"


def test_many_pieces_and_nothing_to_draw():
    pieces = [(i % 20, i // 20, np.ones((3, 3), bool)) for i in range(100)]  # 301 palette entries
    ov = proposals_overlay(pieces, [(i, 2 * i, 3 * i % 256) for i in range(100)])
    assert ov.index.dtype == np.uint16 and ov.rgba.shape == (*ov.index.shape, 4)
    assert proposals_overlay([], []) is None
    assert proposals_overlay([(0, 0, np.zeros((2, 2), bool))], [(1, 2, 3)]) is None
    with pytest.raises(ValueError, match="same length"):
        proposals_overlay([(0, 0, np.ones((2, 2), bool))], [])
