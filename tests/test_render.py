"""render.py: display sizing, resampling, bounding boxes and the RGBA overlay patches."""

from __future__ import annotations

import io
import numpy as np
from PIL import Image
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from scipy import ndimage

import mask_look as look
from sam_widget.render import (
    CURRENT_CHOICES,
    DIM,
    MIN_FILL_DELTA_E,
    OUTLINE_DARK,
    OUTLINE_LIGHT,
    Overlay,
    contrast_ratio,
    contrasting_color,
    fill_delta_e,
    line_color,
    relative_luminance,
    bbox,
    fit_size,
    mask_overlay,
    objects_overlay,
    resize_mask,
    resize_rgb,
    union_rect,
)
from sam_widget.state import object_color


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
def test_mask_overlay_is_cropped_to_the_mask_with_a_dark_and_a_light_line_and_a_fill():
    m = np.zeros((20, 30), bool)
    m[5:12, 8:20] = True  # a 7 x 12 rectangle
    ov = mask_overlay(m, (30, 144, 255), alpha=0.45)
    assert ov is not None
    assert (ov.x, ov.y) == (8, 5) and ov.rgba.shape == (7, 12, 4) and ov.rgba.dtype == np.uint8
    assert ov.rect == bbox(m)
    rgba = ov.rgba
    border = np.ones((7, 12), bool)
    border[1:-1, 1:-1] = False
    assert (rgba[border] == (*OUTLINE_DARK, 255)).all()  # the patch border: the dark line, opaque
    light = np.zeros((7, 12), bool)
    light[1:-1, 1:-1] = True
    light[3:-3, 3:-3] = False
    assert (rgba[light] == (*OUTLINE_LIGHT, 255)).all()  # 2 px of white inside it
    assert (rgba[3:-3, 3:-3] == (30, 144, 255, round(0.45 * 255))).all()  # the fill


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
    ov = mask_overlay(mask, (250, 10, 20), alpha=0.5)
    if not mask.any():
        assert ov is None
        return
    canvas = np.zeros((*mask.shape, 4), np.uint8)
    x0, y0, x1, y1 = ov.rect
    canvas[y0:y1, x0:x1] = ov.rgba
    assert np.array_equal(canvas[..., 3] > 0, mask)  # nothing outside the mask is painted
    # outline and fill where SciPy's erosion puts them
    assert (canvas[look.edge(mask)] == (*OUTLINE_DARK, 255)).all()
    assert (canvas[look.inner_line(mask)] == (*OUTLINE_LIGHT, 255)).all()
    assert (canvas[look.fill(mask)] == (250, 10, 20, 128)).all()


def test_objects_overlay_later_objects_on_top_and_union_rect():
    a = np.zeros((30, 30), bool)
    a[2:14, 2:14] = True
    b = np.zeros((30, 30), bool)
    b[8:22, 8:28] = True
    ov = objects_overlay([a, b], [(255, 0, 0), (0, 0, 255)], alpha=0.35)
    assert ov.rect == (2, 2, 28, 22)
    canvas = np.zeros((30, 30, 4), np.uint8)
    canvas[2:22, 2:28] = ov.rgba
    assert np.array_equal(canvas[..., 3] > 0, a | b)
    # b is drawn after a: all of b looks like b alone
    assert (canvas[look.fill(b)] == (0, 0, 255, round(0.35 * 255))).all()
    assert (canvas[look.edge(b)] == (*OUTLINE_DARK, 255)).all()
    assert (canvas[look.inner_line(b)] == (*line_color((0, 0, 255)), 255)).all()
    # what shows of a
    assert (canvas[look.fill(a) & ~b] == (255, 0, 0, round(0.35 * 255))).all()
    assert (canvas[look.edge(a) & ~b] == (*OUTLINE_DARK, 255)).all()
    assert (canvas[look.inner_line(a) & ~b] == (*line_color((255, 0, 0)), 255)).all()


def test_a_highlighted_object_is_on_top_with_a_thicker_outline_and_the_others_dim():
    a = np.zeros((40, 40), bool)
    a[2:30, 2:30] = True
    b = np.zeros((40, 40), bool)
    b[10:38, 10:38] = True  # drawn after a, overlapping it
    ca, cb = (255, 0, 0), (0, 0, 255)
    plain = objects_overlay([a, b], [ca, cb], alpha=0.4)
    ov = objects_overlay([a, b], [ca, cb], alpha=0.4, highlight=0)
    assert ov.rect == plain.rect == (2, 2, 38, 38)
    canvas = np.zeros((40, 40, 4), np.uint8)
    canvas[2:38, 2:38] = ov.rgba
    # a (highlighted) comes on top of b: dark line, 2 px white, 2 px its light colour, fill boosted
    assert (canvas[look.edge(a)] == (*OUTLINE_DARK, 255)).all()
    assert (canvas[look.inner_line(a)] == (*OUTLINE_LIGHT, 255)).all()
    assert (canvas[look.eroded(a, 3) & ~look.eroded(a, 5)] == (*line_color(ca), 255)).all()
    assert (canvas[look.fill(a, 5)] == (*ca, round(0.6 * 255))).all()
    # b is dimmed: a faint fill and fainter 1-px lines
    rest = b & ~a
    assert (canvas[look.fill(b, 2) & rest] == (*cb, round(0.4 * DIM * 255))).all()
    assert (canvas[look.edge(b) & rest][:, 3] < 128).all()
    # without highlight nobody is dimmed; dim=True alone dims everyone (an object is being edited)
    flat = np.zeros((40, 40, 4), np.uint8)
    flat[2:38, 2:38] = plain.rgba
    assert (flat[look.fill(b)] == (*cb, round(0.4 * 255))).all()
    dimmed = objects_overlay([a, b], [ca, cb], alpha=0.4, dim=True)
    assert dimmed.rgba[..., 3].max() <= 140


# ---------------------------------------------------------------------------- readable on any image
def _composited(image: np.ndarray, ov) -> np.ndarray:
    from sam_widget.render_static import composite

    return composite(image, [ov]).astype(np.float64)


def _unreadable_outline(image: np.ndarray, mask: np.ndarray, ov, inner_width: int = 2) -> int:
    """Edge pixels where neither the dark line nor an inner-line pixel within 2 pixels reaches
    a WCAG contrast of 3:1 (the minimum for a graphical object) against the image under them.

    Edge pixels with no inner line next to them (where the mask is under 3 pixels wide: the
    tip of a triangle) have only the dark line; they are left out, and must be few."""
    out = _composited(image, ov)
    ratio = contrast_ratio(out, image.astype(np.float64))
    e, i = look.edge(mask), look.inner_line(mask, inner_width)
    near = np.ones((3, 3), bool)
    good_inner = ndimage.binary_dilation(i & (ratio >= 3.0), np.ones((5, 5), bool))
    checked = e & ndimage.binary_dilation(i, near)
    assert (e & ~checked).sum() <= max(4, 0.03 * e.sum()), "too many edge pixels without an inner line"
    return int((checked & (ratio < 3.0) & ~good_inner).sum())


def _disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _backgrounds():
    """Uniform images of 216 colours (every channel 0, 51, ..., 255), the offline demo's image
    and the sample photo, each with masks to outline."""
    from sam_widget.data import shapes_image
    from sam_widget.images import load_image, sample_image_path

    disc = _disc(40, 40, 20, 20, 14)
    levels = range(0, 256, 51)
    for r in levels:
        for g in levels:
            for b in levels:
                yield f"uniform {(r, g, b)}", np.full((40, 40, 3), (r, g, b), np.uint8), disc
    demo, masks = shapes_image(7, size=(384, 512))
    for k, m in enumerate(masks):
        yield f"demo shape {k}", demo, m
    photo = load_image(sample_image_path())  # 640 x 480: sky, clouds, sun, house, tree, grass, ball
    H, W = photo.shape[:2]
    yy, xx = np.mgrid[:H, :W]
    yield "photo: sky", photo, ((xx - 200) / 160) ** 2 + ((yy - 40) / 40) ** 2 < 1
    yield "photo: ball", photo, _disc(H, W, 420, 332, 30)
    yield "photo: sun", photo, _disc(H, W, 78, 548, 34)
    yield "photo: house", photo, (yy >= 250) & (yy < 370) & (xx >= 120) & (xx < 300)
    yield "photo: tree", photo, _disc(H, W, 250, 455, 70)


def test_the_current_masks_outline_contrasts_with_any_image_under_it():
    bad = {}
    for name, image, mask in _backgrounds():
        color = contrasting_color(image, mask)
        n = _unreadable_outline(image, mask, mask_overlay(mask, color))
        if n:
            bad[name] = n
    assert bad == {}, f"edge pixels without a 3:1 outline: {bad}"


def test_objects_outlines_contrast_with_any_image_under_them():
    bad = {}
    for name, image, mask in _backgrounds():
        for k in range(12):
            n = _unreadable_outline(image, mask, objects_overlay([mask], [object_color(k)]))
            if n:
                bad[f"{name}, colour {k}"] = n
    assert bad == {}, f"edge pixels without a 3:1 outline: {bad}"


def test_the_old_one_colour_outline_was_unreadable_on_blue_which_the_check_above_catches():
    # what the widget drew before: blue fill with a blue outline (the check is not vacuous)
    from sam_widget.data import shapes_image

    demo, masks = shapes_image(7, size=(384, 512))
    ellipse = masks[1]  # the blue ellipse of the offline demo
    old = mask_overlay(ellipse, (30, 144, 255), light=(30, 144, 255), dark=(30, 144, 255))
    assert _unreadable_outline(demo, ellipse, old) > 0.5 * look.edge(ellipse).sum()


def test_the_current_fill_avoids_the_images_hue_under_the_mask():
    from sam_widget.data import shapes_image
    from sam_widget.images import load_image, sample_image_path

    blue = CURRENT_CHOICES[0]
    demo, masks = shapes_image(7, size=(384, 512))
    photo = load_image(sample_image_path())
    yy, xx = np.mgrid[:480, :640]
    sky = ((xx - 200) / 160) ** 2 + ((yy - 40) / 40) ** 2 < 1
    # blue on the demo's blue ellipse, its blue-violet ring and the photo's sky barely shows ...
    for image, mask in ((demo, masks[1]), (demo, masks[2]), (photo, sky)):
        assert fill_delta_e(image, mask, blue) < MIN_FILL_DELTA_E
        chosen = contrasting_color(image, mask)
        assert chosen != blue and fill_delta_e(image, mask, chosen) >= MIN_FILL_DELTA_E  # ... another colour does
    # elsewhere the usual blue stays (the colour does not jump around for no reason)
    grass = (yy > 400) & (xx < 250)
    for image, mask in ((demo, masks[3]), (demo, masks[0]), (photo, grass)):
        assert fill_delta_e(image, mask, blue) >= MIN_FILL_DELTA_E and contrasting_color(image, mask) == blue
    # a mask on a colour where every choice is weak still gets the one that shows most
    gray = np.full((20, 20, 3), 128, np.uint8)
    m = np.ones((20, 20), bool)
    strong = max(CURRENT_CHOICES, key=lambda c: fill_delta_e(gray, m, c))
    assert contrasting_color(gray, m, min_delta_e=99.0) == strong
    assert contrasting_color(gray, np.zeros((20, 20), bool)) == blue  # empty mask: the usual colour


def test_one_of_the_two_lines_contrasts_with_every_colour():
    grid = np.stack(np.meshgrid(*[np.arange(0, 256, 5)] * 3), -1).reshape(-1, 3)  # 140608 colours
    dark = contrast_ratio(grid, OUTLINE_DARK)
    assert np.maximum(dark, contrast_ratio(grid, OUTLINE_LIGHT)).min() >= 4.5  # the current mask
    for k in range(24):  # the objects: dark + their light colour
        assert np.maximum(dark, contrast_ratio(grid, line_color(object_color(k)))).min() >= 3.6


def test_contrast_ratio_and_luminance_are_wcags():
    assert contrast_ratio((0, 0, 0), (255, 255, 255)) == pytest.approx(21.0)
    assert contrast_ratio((255, 255, 255), (255, 255, 255)) == pytest.approx(1.0)
    assert relative_luminance((255, 0, 0)) == pytest.approx(0.2126)
    assert contrast_ratio((118, 118, 118), (255, 255, 255)) == pytest.approx(4.54, abs=0.01)  # WCAG's AA gray
    for k in range(24):
        c = object_color(k)
        light = line_color(c)
        assert relative_luminance(light) >= 0.6
        assert np.argmax(light) == np.argmax(c) or max(c) - min(c) < 30  # still the object's hue


def test_objects_overlay_none_when_nothing_to_draw():
    assert objects_overlay([], []) is None
    assert objects_overlay([np.zeros((3, 3), bool)], [(1, 1, 1)]) is None
