"""``to_rgb_uint8`` / ``load_image``: whatever the user hands over becomes H x W x 3 uint8 RGB."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sam_widget.images import ImageError, load_image, to_rgb_uint8

from conftest import make_image


def assert_rgb(out: np.ndarray, h: int, w: int) -> None:
    assert isinstance(out, np.ndarray)
    assert out.shape == (h, w, 3) and out.dtype == np.uint8
    assert out.flags.c_contiguous and out.flags.writeable


# ---------------------------------------------------------------- arrays
def test_uint8_rgb_is_kept_but_copied(rng_image):
    a = rng_image(7, 9)
    out = to_rgb_uint8(a)
    assert_rgb(out, 7, 9)
    assert np.array_equal(out, a)
    assert not np.shares_memory(out, a), "the caller's array must not be aliased"
    a_view = rng_image(20, 30)[::2, ::3]  # a non-contiguous view
    assert np.array_equal(to_rgb_uint8(a_view), a_view)


@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 1)])
def test_grayscale_is_repeated_into_three_channels(rng_image, shape):
    g = rng_image(6, 5, channels=None if len(shape) == 2 else 1)
    out = to_rgb_uint8(g)
    assert_rgb(out, 6, 5)
    flat = g.reshape(6, 5)
    for c in range(3):
        assert np.array_equal(out[..., c], flat)


def test_rgba_alpha_is_dropped_not_blended(rng_image):
    a = rng_image(4, 6, channels=4)
    a[..., 3] = 0  # fully transparent: colours must still come through unchanged
    out = to_rgb_uint8(a)
    assert_rgb(out, 4, 6)
    assert np.array_equal(out, a[..., :3])


def test_uint16_is_scaled_to_8_bits():
    a = np.array([[0, 257, 32768, 65535], [128, 129, 65278, 65279]], np.uint16)
    out = to_rgb_uint8(a)
    assert out[..., 0].tolist() == [[0, 1, 128, 255], [0, 1, 254, 254]]
    every_8bit = np.arange(256, dtype=np.uint16) * 257  # exact 8 -> 16 bit expansion
    assert np.array_equal(to_rgb_uint8(every_8bit[None])[0, :, 0], np.arange(256))


@pytest.mark.parametrize("values, expected", [([0, 200, 300, 65535], [0, 1, 1, 255]), ([0, 100, 200], [0, 0, 1])])
def test_big_endian_16_bit_is_read_like_little_endian(values, expected):
    little = np.array([values], dtype="<u2")
    big = little.astype(">u2")
    assert to_rgb_uint8(little)[0, :, 0].tolist() == expected
    assert to_rgb_uint8(big)[0, :, 0].tolist() == expected  # a dark 16-bit image stays dark


def test_bool_becomes_0_and_255():
    m = np.array([[True, False], [False, True]])
    out = to_rgb_uint8(m)
    assert_rgb(out, 2, 2)
    assert out[..., 1].tolist() == [[255, 0], [0, 255]]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_in_unit_range_is_scaled_and_rounded(dtype):
    v = np.arange(256) / 255.0
    out = to_rgb_uint8(v.astype(dtype)[None, :, None].repeat(3, axis=2))
    assert_rgb(out, 1, 256)
    assert np.array_equal(out[0, :, 0], np.arange(256))
    assert to_rgb_uint8(np.array([[0.0, 1.0]], dtype))[0, :, 2].tolist() == [0, 255]


def test_int_arrays_from_pil_mode_i_are_read_as_8_or_16_bit():
    assert to_rgb_uint8(np.array([[0, 200]], np.int32))[0, :, 0].tolist() == [0, 200]
    assert to_rgb_uint8(np.array([[0, 65535]], np.int64))[0, :, 0].tolist() == [0, 255]


# ---------------------------------------------------------------- PIL images
def _colour_image(mode: str) -> Image.Image:
    rgb = Image.fromarray(make_image(5, 7, seed=3))
    return rgb.convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "L", "1", "P", "CMYK", "YCbCr", "RGBX", "HSV", "LAB"])
def test_pil_modes_without_alpha_match_pillows_rgb_conversion(mode):
    im = _colour_image(mode) if mode not in ("HSV", "LAB") else Image.new(mode, (7, 5), (10, 20, 30))
    out = to_rgb_uint8(im)
    assert_rgb(out, 5, 7)
    assert np.array_equal(out, np.asarray(im.convert("RGB")))


@pytest.mark.parametrize("mode", ["RGBA", "LA", "PA", "RGBa", "La"])
def test_pil_modes_with_alpha_drop_the_alpha(mode):
    base = Image.fromarray(make_image(5, 7, seed=4))
    if mode in ("LA", "La"):
        base = base.convert("L").convert("RGB")
    rgba = base.convert("RGBA")
    rgba.putalpha(255)  # opaque: premultiplied modes then keep the exact colours
    im = rgba.convert("P").convert("PA") if mode == "PA" else rgba.convert(mode) if mode != "La" else rgba.convert("LA").convert("La")
    out = to_rgb_uint8(im)
    assert_rgb(out, 5, 7)
    expected = np.asarray(im.convert("RGBA") if mode != "La" else im.convert("LA").convert("RGBA"))[..., :3]
    assert np.array_equal(out, expected)


def test_pil_transparent_pixels_keep_their_colour():
    rgba = np.dstack([make_image(3, 4, seed=5), np.zeros((3, 4), np.uint8)])
    out = to_rgb_uint8(Image.fromarray(rgba, "RGBA"))
    assert np.array_equal(out, rgba[..., :3])


def test_pil_palette_with_transparency():
    im = Image.new("P", (4, 3))
    im.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    im.putpixel((1, 1), 1)
    im.info["transparency"] = 0
    out = to_rgb_uint8(im)
    assert_rgb(out, 3, 4)
    assert out[1, 1].tolist() == [200, 100, 50] and out[0, 0].tolist() == [0, 0, 0]


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_pil_16_bit_modes_are_scaled(mode):
    v = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000).astype(">u2" if mode == "I;16B" else "<u2")
    im = Image.frombytes(mode, (4, 3), v.tobytes())
    out = to_rgb_uint8(im)
    assert_rgb(out, 3, 4)
    expected = np.rint(v.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(out[..., 0], expected)


def test_pil_mode_i_and_f():
    g = make_image(3, 4, channels=None, seed=6)
    assert np.array_equal(to_rgb_uint8(Image.fromarray(g.astype(np.int32), "I"))[..., 0], g)
    # "F" on Pillow's 0..255 scale (what convert("F") gives) and in [0, 1]
    assert np.array_equal(to_rgb_uint8(Image.fromarray(g).convert("F"))[..., 0], g)
    unit = Image.fromarray((g / 255.0).astype(np.float32), "F")
    assert np.array_equal(to_rgb_uint8(unit)[..., 0], g)
    with pytest.raises(ImageError, match=r"\[0, 1\]"):
        to_rgb_uint8(Image.fromarray(np.full((2, 2), 1000.0, np.float32), "F"))


def test_pil_result_is_writeable_and_independent():
    im = Image.fromarray(make_image(3, 3, seed=7))
    out = to_rgb_uint8(im)
    out[:] = 0  # must not raise (np.asarray(PIL image) is read-only) ...
    assert np.asarray(im).any()  # ... and must not touch the PIL image


# ---------------------------------------------------------------- files
@pytest.mark.parametrize("ext, mode", [("png", "RGB"), ("png", "RGBA"), ("png", "L"), ("png", "P"), ("jpg", "RGB"), ("jpg", "L"), ("jpg", "CMYK")])
def test_image_files_load_as_pillow_reads_them(tmp_path, ext, mode):
    im = Image.fromarray(make_image(21, 34, seed=8)).convert(mode)
    path = tmp_path / f"picture.{ext}"
    im.save(path)
    with Image.open(path) as reread:
        expected = np.asarray(reread.convert("RGBA" if mode == "RGBA" else "RGB"))[..., :3]
    for given in (path, str(path)):
        out = to_rgb_uint8(given)
        assert_rgb(out, 21, 34)
        assert np.array_equal(out, expected)
    assert np.array_equal(load_image(path), expected)
    if ext == "png" and mode == "RGB":
        assert np.array_equal(out, np.asarray(im))  # lossless round trip


def test_16_bit_png_is_scaled(tmp_path):
    v = (np.arange(20 * 30, dtype=np.uint32).reshape(20, 30) * 100).astype(np.uint16)
    Image.fromarray(v).save(tmp_path / "deep.png")
    out = to_rgb_uint8(tmp_path / "deep.png")
    assert_rgb(out, 20, 30)
    assert np.array_equal(out[..., 0], np.rint(v * (255 / 65535)).astype(np.uint8))


def test_exif_orientation_is_applied(tmp_path):
    a = make_image(10, 30, seed=9)  # landscape pixels...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...stored with "rotate 90 degrees clockwise to display"
    Image.fromarray(a).save(tmp_path / "phone.jpg", exif=exif, quality=100)
    out = load_image(tmp_path / "phone.jpg")
    assert out.shape == (30, 10, 3)  # displayed upright: portrait


# ---------------------------------------------------------------- errors
def _bad_file(tmp_path, name, content: bytes):
    p = tmp_path / name
    p.write_bytes(content)
    return p


def _truncated_png(tmp_path):
    p = tmp_path / "whole.png"
    Image.fromarray(make_image(64, 64, seed=10)).save(p)
    data = p.read_bytes()
    return _bad_file(tmp_path, "cut.png", data[: len(data) // 2])


BAD_INPUTS = {
    "1d": (lambda tmp: np.zeros(5, np.uint8), ImageError, "H x W"),
    "4d": (lambda tmp: np.zeros((1, 2, 2, 3), np.uint8), ImageError, "H x W"),
    "0d": (lambda tmp: np.array(3, np.uint8), ImageError, "H x W"),
    "empty_rows": (lambda tmp: np.zeros((0, 4, 3), np.uint8), ImageError, "empty"),
    "empty_cols": (lambda tmp: np.zeros((4, 0)), ImageError, "empty"),
    "two_channels": (lambda tmp: np.zeros((4, 4, 2), np.uint8), ImageError, "channels"),
    "five_channels": (lambda tmp: np.zeros((4, 4, 5), np.uint8), ImageError, "channels"),
    "nan": (lambda tmp: np.array([[0.5, np.nan]]), ImageError, "NaN"),
    "inf": (lambda tmp: np.array([[0.5, np.inf]], np.float32), ImageError, "infinite"),
    "nan_in_rgb": (lambda tmp: np.full((2, 2, 3), np.nan), ImageError, "NaN"),
    "float_above_1": (lambda tmp: np.array([[0.0, 255.0]]), ImageError, r"\[0, 1\]"),
    "float_below_0": (lambda tmp: np.array([[-0.1, 0.5]]), ImageError, r"\[0, 1\]"),
    "negative_int": (lambda tmp: np.array([[-1, 5]], np.int16), ImageError, "65535"),
    "int_too_big": (lambda tmp: np.array([[0, 70000]], np.int32), ImageError, "65535"),
    "complex": (lambda tmp: np.zeros((2, 2), np.complex64), TypeError, "dtype"),
    "object": (lambda tmp: np.array([["a", "b"]], dtype=object), TypeError, "dtype"),
    "strings": (lambda tmp: np.array([["a", "b"]]), TypeError, "dtype"),
    "list": (lambda tmp: [[0, 1], [2, 3]], TypeError, "NumPy array"),
    "none": (lambda tmp: None, TypeError, "NoneType"),
    "int": (lambda tmp: 7, TypeError, "int"),
    "bytes": (lambda tmp: b"\x89PNG", TypeError, "bytes"),
    "missing_file": (lambda tmp: tmp / "nope.png", ImageError, "does not exist"),
    "missing_str": (lambda tmp: str(tmp / "nope.jpg"), ImageError, "does not exist"),
    "directory": (lambda tmp: tmp, ImageError, "directory"),
    "text_file": (lambda tmp: _bad_file(tmp, "notes.png", b"hello, not an image"), ImageError, "Could not read"),
    "empty_file": (lambda tmp: _bad_file(tmp, "empty.jpg", b""), ImageError, "Could not read"),
    "truncated_png": (_truncated_png, ImageError, "Could not read"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_raises_one_clear_sentence(tmp_path, name):
    make, exc_type, pattern = BAD_INPUTS[name]
    with pytest.raises(exc_type, match=pattern) as info:
        to_rgb_uint8(make(tmp_path))
    message = str(info.value)
    assert "\n" not in message and message.rstrip(")").endswith("."), message
    assert len(message) < 300, message
    if exc_type is ImageError:
        assert isinstance(info.value, ValueError)
