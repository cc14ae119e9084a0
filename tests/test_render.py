"""render.py: display sizing, resampling, bounding boxes and the RGBA overlay patches."""

from __future__ import annotations

import io
import numpy as np
from PIL import Image
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sam_widget.render import (
    Overlay,
    bbox,
    fit_size,
    mask_overlay,
    objects_overlay,
    resize_mask,
    resize_rgb,
    union_rect,
)


def reference_bbox(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


# ---------------------------------------------------------------------------- fit_size
@pytest.mark.parametrize(
    "hw, size, expected",
    [
        ((1200, 1600), 400, (300, 400)),  # landscape: width is the long side
        ((1600, 1200), 400, (400, 300)),  # portrait
        ((333, 517), 200, (129, 200)),  # 333 * 200 / 517 = 128.8 -> 129
        ((100, 80), 800, (100, 80)),  # small images are never enlarged
        ((800, 800), 800, (800, 800)),
        ((1, 5000), 100, (1, 100)),  # a 1-pixel-high strip keeps one row
        ((5000, 2), 50, (50, 1)),
    ],
)
def test_fit_size_keeps_aspect_and_bounds_the_long_side(hw, size, expected):
    out = fit_size(hw, size)
    assert out == expected
    assert max(out) <= max(size, 1) and min(out) >= 1


@given(h=st.integers(1, 6000), w=st.integers(1, 6000), size=st.integers(16, 2000))
@settings(max_examples=200, deadline=None)
def test_fit_size_properties(h, w, size):
    dh, dw = fit_size((h, w), size)
    assert max(dh, dw) <= max(size, 1) or (dh, dw) == (h, w)
    assert dh <= h and dw <= w  # never enlarged
    if max(h, w) <= size:
        assert (dh, dw) == (h, w)
    else:
        assert max(dh, dw) == size
        scale = size / max(h, w)  # both sides scaled alike, each rounded (at least 1 pixel)
        assert abs(dh - h * scale) <= 0.5 or dh == 1
        assert abs(dw - w * scale) <= 0.5 or dw == 1


@pytest.mark.parametrize("bad", [0, -5, 15])
def test_fit_size_rejects_tiny_display_sizes(bad):
    with pytest.raises(ValueError, match="display_size"):
        fit_size((100, 100), bad)


@pytest.mark.parametrize("bad", [2.5, "800", None, True, np.float64(400)])
def test_fit_size_rejects_non_integers(bad):
    with pytest.raises(TypeError, match="display_size"):
        fit_size((100, 100), bad)


def test_fit_size_accepts_numpy_integers():
    assert fit_size((1000, 500), np.int64(100)) == (100, 50)


# ---------------------------------------------------------------------------- resampling
def test_resize_rgb_averages_blocks_when_shrinking():
    blocks = np.array([[[10, 20, 30], [200, 100, 0]], [[0, 0, 0], [255, 255, 255]]], np.uint8)
    big = np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)  # 8 x 8, four constant 4x4 blocks
    small = resize_rgb(big, (2, 2))
    assert small.shape == (2, 2, 3) and small.dtype == np.uint8
    assert np.array_equal(small, blocks)


def test_resize_rgb_same_size_is_identity():
    rgb = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    assert resize_rgb(rgb, (7, 9)) is rgb


def test_resize_mask_majority_rule():
    m = np.zeros((4, 4), bool)
    m[0:2, 0:2] = [[1, 1], [1, 0]]  # 3 of 4 on -> on
    m[0:2, 2:4] = [[1, 0], [0, 0]]  # 1 of 4 on -> off
    m[2:4, 0:2] = True  # all on
    out = resize_mask(m, (2, 2))
    assert out.dtype == np.bool_
    assert out.tolist() == [[True, False], [True, False]]


def test_resize_mask_same_size_is_identity_and_empty_stays_empty():
    m = np.zeros((5, 6), bool)
    assert resize_mask(m, (5, 6)) is m
    assert not resize_mask(np.zeros((50, 60), bool), (5, 6)).any()
    assert resize_mask(np.ones((50, 60), bool), (5, 6)).all()


# ---------------------------------------------------------------------------- bbox / rects
def test_bbox_simple_cases():
    m = np.zeros((10, 12), bool)
    assert bbox(m) is None
    m[3, 7] = True
    assert bbox(m) == (7, 3, 8, 4)  # end-exclusive
    m[9, 0] = True
    assert bbox(m) == (0, 3, 8, 10)
    assert bbox(np.ones((4, 5), bool)) == (0, 0, 5, 4)


@given(arrays(np.bool_, st.tuples(st.integers(1, 30), st.integers(1, 30)), elements=st.booleans()))
@settings(max_examples=150, deadline=None)
def test_bbox_matches_nonzero(mask):
    assert bbox(mask) == reference_bbox(mask)


def test_union_rect():
    assert union_rect(None, None) is None
    assert union_rect((1, 2, 3, 4), None) == (1, 2, 3, 4)
    assert union_rect(None, (1, 2, 3, 4)) == (1, 2, 3, 4)
    assert union_rect((0, 5, 3, 9), (2, 1, 8, 6)) == (0, 1, 8, 9)


def test_overlay_rect():
    ov = Overlay(np.zeros((3, 5), np.uint8), np.zeros((1, 4), np.uint8), 10, 20)
    assert ov.rect == (10, 20, 15, 23)


def test_overlay_png_decodes_to_exactly_its_rgba_and_is_small():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:450, :800]
    disc = (xx - 400) ** 2 + (yy - 220) ** 2 < 150**2
    for m in (disc, rng.random((60, 90)) < 0.4):
        ov = mask_overlay(m, (30, 144, 255))
        png = ov.to_png()
        with Image.open(io.BytesIO(png)) as im:
            assert im.mode == "P"  # indexed: 2 bits a pixel, not 32
            assert np.array_equal(np.asarray(im.convert("RGBA")), ov.rgba)
    assert len(mask_overlay(disc, (1, 2, 3)).to_png()) < 0.01 * disc.size * 4  # < 1 % of raw RGBA
    # many objects: more than 256 palette entries fall back to RGBA, still exact
    masks = [np.zeros((20, 200), bool) for _ in range(140)]
    for k, m in enumerate(masks):
        m[:, k] = True
    ov = objects_overlay(masks, [(k, 255 - k, 7) for k in range(140)])
    with Image.open(io.BytesIO(ov.to_png())) as im:
        assert np.array_equal(np.asarray(im.convert("RGBA")), ov.rgba)


# ---------------------------------------------------------------------------- overlays
def test_mask_overlay_is_cropped_to_the_mask_with_fill_and_outline():
    m = np.zeros((20, 30), bool)
    m[5:12, 8:20] = True  # a 7 x 12 rectangle
    ov = mask_overlay(m, (30, 144, 255), alpha=0.45)
    assert ov is not None
    assert (ov.x, ov.y) == (8, 5) and ov.rgba.shape == (7, 12, 4) and ov.rgba.dtype == np.uint8
    assert ov.rect == bbox(m)
    a = ov.rgba[..., 3]
    # every pixel of the patch is inside the mask here: all coloured
    assert (ov.rgba[..., :3] == (30, 144, 255)).all()
    # outline (the patch border) opaque, interior translucent
    assert (a[0, :] == 255).all() and (a[-1, :] == 255).all() and (a[:, 0] == 255).all() and (a[:, -1] == 255).all()
    assert (a[1:-1, 1:-1] == round(0.45 * 255)).all()


def test_mask_overlay_leaves_pixels_outside_the_mask_transparent():
    m = np.zeros((9, 9), bool)
    m[4, :] = True
    m[:, 4] = True  # a plus sign: its bbox holds many pixels outside the mask
    ov = mask_overlay(m, (1, 2, 3))
    assert ov.rgba.shape == (9, 9, 4)
    assert np.array_equal(ov.rgba[..., 3] > 0, m)
    assert (ov.rgba[~m] == 0).all()


def test_mask_overlay_of_empty_mask_is_none():
    assert mask_overlay(np.zeros((4, 4), bool), (255, 0, 0)) is None


@given(arrays(np.bool_, st.tuples(st.integers(1, 25), st.integers(1, 25)), elements=st.booleans()))
@settings(max_examples=100, deadline=None)
def test_mask_overlay_paints_exactly_the_mask(mask):
    ov = mask_overlay(mask, (250, 10, 20))
    if not mask.any():
        assert ov is None
        return
    canvas = np.zeros((*mask.shape, 4), np.uint8)
    x0, y0, x1, y1 = ov.rect
    canvas[y0:y1, x0:x1] = ov.rgba
    assert np.array_equal(canvas[..., 3] > 0, mask)
    assert (canvas[mask, :3] == (250, 10, 20)).all()


def test_objects_overlay_later_objects_on_top_and_union_rect():
    a = np.zeros((20, 20), bool)
    a[2:10, 2:10] = True
    b = np.zeros((20, 20), bool)
    b[6:15, 6:18] = True
    ov = objects_overlay([a, b], [(255, 0, 0), (0, 0, 255)], alpha=0.35)
    assert ov.rect == (2, 2, 18, 15)
    canvas = np.zeros((20, 20, 4), np.uint8)
    canvas[2:15, 2:18] = ov.rgba
    assert (canvas[a & ~b, :3] == (255, 0, 0)).all()
    assert (canvas[b, :3] == (0, 0, 255)).all()  # b is drawn after a
    assert np.array_equal(canvas[..., 3] > 0, a | b)
    inner = np.zeros_like(b)
    inner[7:14, 7:17] = True
    assert (canvas[inner, 3] == round(0.35 * 255)).all()
    assert canvas[6, 10, 3] == 230  # b's top edge: outline alpha


def test_objects_overlay_none_when_nothing_to_draw():
    assert objects_overlay([], []) is None
    assert objects_overlay([np.zeros((3, 3), bool)], [(1, 1, 1)]) is None
