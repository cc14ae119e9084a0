"""``sam_widget.render_static``: the still picture of a widget state, checked pixel by pixel
against blending arithmetic written out here and against Pillow."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from sam_widget.render import DEFAULT_OPACITY, OUTLINE_DARK, OUTLINE_LIGHT, Overlay, line_color, objects_overlay
from sam_widget.render_static import BOX, CURRENT_COLOR, NEGATIVE, POSITIVE, composite, compose_snapshot, png_bytes

GRAY = (100, 100, 100)


def gray(h=40, w=60) -> np.ndarray:
    return np.full((h, w, 3), GRAY, np.uint8)


def square(h=40, w=60, y0=10, y1=30, x0=20, x1=45) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def blend(color, alpha8: int, below) -> tuple[int, ...]:
    """One source-over step as a browser canvas does it (8-bit alpha, result rounded)."""
    a = alpha8 / 255
    return tuple(int(np.rint(a * c + (1 - a) * b)) for c, b in zip(color, below))


def test_no_objects_no_mask_is_the_image_itself():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    assert np.array_equal(compose_snapshot(img), img)
    out = compose_snapshot(img, size_hw=(20, 28))  # shown smaller: area-averaged like the display image
    assert np.array_equal(out, np.asarray(Image.fromarray(img).resize((28, 20), Image.Resampling.BOX)))


def test_an_object_is_a_translucent_fill_inside_a_dark_and_a_light_line():
    colour = (200, 50, 0)
    out = compose_snapshot(gray(), [square()], [colour])
    fill = round(DEFAULT_OPACITY * 255)
    assert out[20, 30].tolist() == list(blend(colour, fill, GRAY))  # inside
    assert out[10, 30].tolist() == list(OUTLINE_DARK)  # top edge: the dark line, opaque
    assert out[29, 44].tolist() == list(OUTLINE_DARK)  # bottom-right corner
    assert out[11, 30].tolist() == out[12, 30].tolist() == list(line_color(colour))  # 2 px of light colour
    assert out[13, 30].tolist() == list(blend(colour, fill, GRAY))
    outside = ~square()
    assert (out[outside] == GRAY).all()


def test_the_current_mask_lies_over_the_objects_and_later_objects_over_earlier_ones():
    a, b = square(x0=5, x1=30), square(x0=20, x1=50)
    ca, cb = (255, 0, 0), (0, 255, 0)
    cur = square(y0=16, y1=26, x0=24, x1=36)
    out = compose_snapshot(gray(), [a, b], [ca, cb], cur)
    fill = round(DEFAULT_OPACITY * 255)
    assert out[20, 10].tolist() == list(blend(ca, fill, GRAY))  # only a
    assert out[20, 23].tolist() == list(blend(cb, fill, GRAY))  # a and b: b on top (replaces a in its layer)
    inner = blend(cb, fill, GRAY)
    assert out[21, 30].tolist() == list(blend(CURRENT_COLOR, fill, inner))  # current over b
    assert out[16, 30].tolist() == list(OUTLINE_DARK)  # the current mask's lines are opaque: dark ...
    assert out[17, 30].tolist() == out[18, 30].tolist() == list(OUTLINE_LIGHT)  # ... and 2 px of white


def test_the_highlight_is_drawn_as_objects_overlay_draws_it():
    a, b = square(x0=5, x1=30), square(x0=20, x1=50)
    out = compose_snapshot(gray(), [a, b], [(255, 0, 0), (0, 255, 0)], highlight=0)
    ov = objects_overlay([a, b], [(255, 0, 0), (0, 255, 0)], alpha=DEFAULT_OPACITY, highlight=0)
    assert np.array_equal(out, composite(gray(), [ov]))
    # a's outline runs over b: black, 2 px white, 2 px light red, from its right edge (x = 29) in
    assert [out[20, x].tolist() for x in (29, 28, 27, 26, 25)] == [list(OUTLINE_DARK)] + [list(OUTLINE_LIGHT)] * 2 + [
        list(line_color((255, 0, 0)))] * 2
    with pytest.raises(ValueError, match="highlight"):
        compose_snapshot(gray(), [a], [(1, 2, 3)], highlight=1)
    with pytest.raises(TypeError, match="highlight"):
        compose_snapshot(gray(), [a], [(1, 2, 3)], highlight="0")


def test_opacity_and_current_colour_can_be_chosen():
    out = compose_snapshot(gray(), current=square(), current_color=(0, 0, 255), current_alpha=0.0)
    assert out[20, 30].tolist() == list(GRAY)  # no fill: the outline alone
    assert out[10, 30].tolist() == list(OUTLINE_DARK) and out[11, 30].tolist() == list(OUTLINE_LIGHT)
    out = compose_snapshot(gray(), [square()], [(255, 0, 0)], current=square(), current_color=(0, 0, 255),
                           current_alpha=1.0, object_alpha=0.0)
    assert out[20, 30].tolist() == [0, 0, 255]


def test_prompt_markers_and_box_in_image_pixels_scaled_to_the_picture():
    img = gray(80, 120)
    out = compose_snapshot(img, points=[(20, 40), (100, 60)], labels=[1, 0], box=(10, 10, 110, 70), size_hw=(40, 60))
    assert out[20, 10].tolist() == list(POSITIVE)  # (20, 40) at half size -> (10, 20)
    assert out[30, 50].tolist() == list(NEGATIVE)  # (100, 60) -> (50, 30)
    assert out[20, 10 + 5].tolist() == [255, 255, 255]  # the white ring, radius 5
    assert out[5, 30].tolist() == list(BOX)  # top side of the box at y = 10 / 2
    assert out[12, 30].tolist() == list(GRAY)  # inside the box: untouched


def test_masks_of_another_size_are_resampled_to_the_picture():
    full = square(80, 120, 20, 60, 40, 90)
    out = compose_snapshot(gray(80, 120), [full], [(0, 0, 255)], size_hw=(40, 60))
    small = np.asarray(Image.fromarray(full.astype(np.uint8) * 255).resize((60, 40), Image.Resampling.BOX)) >= 128
    assert np.array_equal((out != GRAY).any(axis=2), small)


def test_png_bytes_decode_to_the_same_pixels():
    rng = np.random.default_rng(1)
    pic = rng.integers(0, 256, (31, 47, 3), dtype=np.uint8)
    back = np.asarray(Image.open(io.BytesIO(png_bytes(pic))))
    assert back.dtype == np.uint8 and np.array_equal(back, pic)


def test_composite_cuts_patches_at_the_border_and_skips_none():
    base = gray(10, 10)
    idx = np.ones((4, 4), np.uint8)
    pal = np.array([(0, 0, 0, 0), (255, 0, 0, 255)], np.uint8)
    out = composite(base, [None, Overlay(idx, pal, 8, -2)])  # hangs over the right and top edges
    assert (out[0:2, 8:10] == (255, 0, 0)).all()
    assert (out[2:, :] == GRAY).all() and (out[:, :8] == GRAY).all()
    assert (base == GRAY).all()  # the input is not changed


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(image=np.zeros((4, 4), np.uint8)), TypeError, "image"),
        (dict(image=np.zeros((4, 4, 3), np.float32)), TypeError, "image"),
        (dict(object_masks=[square()], object_colors=[]), ValueError, "object_colors"),
        (dict(object_masks=[square(), square().astype(np.uint8)], object_colors=[(1, 2, 3)] * 2), TypeError, "object_masks[1]"),
        (dict(object_masks=[np.zeros((2, 3, 4), bool)], object_colors=[(1, 2, 3)]), ValueError, "object_masks[0]"),
        (dict(object_masks=[square()], object_colors=[(300, 0, 0)]), ValueError, "object_colors[0]"),
        (dict(object_masks=[square()], object_colors=["red"]), TypeError, "object_colors[0]"),
        (dict(current=[[True]]), TypeError, "current"),
        (dict(size_hw=(0, 5)), ValueError, "size_hw"),
        (dict(points=[(1, 2)], labels=[]), ValueError, "labels"),
        (dict(current_color=(1, 2)), ValueError, "current_color"),
    ],
)
def test_garbage_is_refused_with_one_clear_error(kwargs, error, words):
    args = dict(image=gray())
    args.update(kwargs)
    with pytest.raises(error, match=__import__("re").escape(words)):
        compose_snapshot(**args)


def test_composite_refuses_what_is_not_an_overlay():
    with pytest.raises(TypeError, match="Overlay"):
        composite(gray(), [np.zeros((2, 2, 4), np.uint8)])
    with pytest.raises(TypeError, match="base"):
        composite(np.zeros((2, 2), np.uint8), [])
