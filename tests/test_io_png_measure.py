"""Label PNGs and per-object masks (sam_widget.io.export_png / read_label_image), read
back by Pillow; measurements (sam_widget.io.measurements) against shapes with known
geometry."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

import sam_widget.io as sio
from sam_widget.data import shapes_image
from sam_widget.io import FormatError


def disk(shape, cx, cy, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


# ----------------------------------------------------------------------------------- PNG


def test_label_png_read_back_by_pillow_equals_the_label_image(tmp_path):
    img, masks = shapes_image(1, (80, 100), 6)  # 5 objects
    overlap = masks.copy()
    overlap[0] |= masks[1]  # object 1 lies under object 2 there: the later one wins
    labels = [f"shape {i}" for i in range(len(masks))]
    written = sio.export_png(tmp_path / "out", [tmp_path / "photo.v2.jpg"], [overlap], labels=[labels])
    assert written == [tmp_path / "out" / "photo.v2_labels.png"]
    with Image.open(written[0]) as im:
        assert im.mode == "L"
        got = np.asarray(im)
    expected = np.zeros((80, 100), np.int32)
    for i, m in enumerate(overlap, start=1):
        expected[m] = i
    assert np.array_equal(got, expected)
    assert np.array_equal(sio.label_image(overlap), expected)
    objs = sio.read_label_image(written[0], shape=(80, 100))
    assert [o.value for o in objs] == list(range(1, len(masks) + 1))
    assert [o.label for o in objs] == labels
    for o in objs:
        assert np.array_equal(o.mask, expected == o.value)


def test_more_than_255_objects_give_a_16_bit_png(tmp_path):
    masks = np.zeros((300, 20, 15), bool)
    for i in range(300):
        masks[i].flat[i] = True
    (path,) = sio.export_png(tmp_path, [{"file_name": "many.tif", "height": 20, "width": 15}], [masks])
    with Image.open(path) as im:
        assert im.mode == "I;16"
        got = np.asarray(im)
    assert got.max() == 300 and np.array_equal(got.ravel()[:300], np.arange(1, 301))
    assert len(sio.read_label_image(path)) == 300


def test_per_object_masks_have_safe_names_for_any_label(tmp_path):
    m = np.zeros((4, 10, 12), bool)
    for i in range(4):
        m[i, i : i + 3, 2 * i : 2 * i + 4] = True
    labels = ["a cat/dog", "..", "", "größe ✓ 細胞"]
    out = tmp_path / "o"
    written = sio.export_png(out, ["dir/img.png"], [m], labels=[labels], per_object=True, bits=1)
    names = [p.name for p in written]
    assert names == ["img_labels.png", "img_1_a_cat_dog.png", "img_2_object.png", "img_3_object.png",
                     "img_4_größe_細胞.png"]
    assert all(p.parent == out for p in written)
    for i, p in enumerate(written[1:]):
        with Image.open(p) as im:
            assert im.mode == "1"
            assert np.array_equal(np.asarray(im), m[i])
    written8 = sio.export_png(out, ["img.png"], [m], per_object=True, bits=8)
    with Image.open(written8[1]) as im:
        assert im.mode == "L" and set(np.unique(np.asarray(im)).tolist()) == {0, 255}
        assert np.array_equal(np.asarray(im) == 255, m[0])


def test_colliding_stems_get_a_suffix(tmp_path):
    m = np.ones((1, 3, 3), bool)
    written = sio.export_png(tmp_path, [{"file_name": "a/x.png"}, {"file_name": "b/x.jpg"}], [m, m])
    assert [p.name for p in written] == ["x_labels.png", "x_2_labels.png"]


def test_output_directory_that_is_a_file_is_refused_before_writing(tmp_path):
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    m = np.ones((1, 3, 3), bool)
    with pytest.raises(ValueError, match="exists and is a file"):
        sio.export_png(blocker, [(3, 3)], [m])
    with pytest.raises(ValueError, match="is a file"):
        sio.export_png(blocker / "sub", [(3, 3)], [m])
    with pytest.raises(ValueError, match=r"masks_per_image\[1\]\[0\] has shape"):
        sio.export_png(tmp_path / "new", [(3, 3), (3, 3)], [m, np.ones((1, 2, 2), bool)])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert blocker.read_text() == "not a folder"


def test_read_label_image_rejects_wrong_shapes_and_non_label_images(tmp_path):
    lab = np.zeros((5, 6), np.uint16)
    lab[1:3, 1:3] = 2
    with pytest.raises(ValueError, match=r"the label image is 5 x 6 but the image is 6 x 5"):
        sio.read_label_image(lab, shape=(6, 5))
    path = tmp_path / "l.png"
    Image.fromarray(lab).save(path)
    with pytest.raises(ValueError, match=r"'.*l.png': the label image is 5 x 6 but the image is 4 x 4"):
        sio.read_label_image(path, shape=(4, 4))
    (o,) = sio.read_label_image(path)
    assert o.value == 2 and o.label is None and o.mask.sum() == 4
    Image.new("RGB", (6, 5)).save(tmp_path / "rgb.png")
    with pytest.raises(FormatError, match="is a RGB image"):
        sio.read_label_image(tmp_path / "rgb.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(FormatError, match="cannot be read as an image"):
        sio.read_label_image(tmp_path / "junk.png")
    with pytest.raises(FormatError, match="does not exist"):
        sio.read_label_image(tmp_path / "none.png")
    with pytest.raises(ValueError, match="whole numbers"):
        sio.read_label_image(lab.astype(float))
    with pytest.raises(ValueError, match="negative"):
        sio.read_label_image(lab.astype(np.int32) - 1)


# -------------------------------------------------------------------------- measurements


def test_measurements_of_a_disk_and_a_rectangle():
    shape = (200, 240)
    r = 40
    d = disk(shape, 100, 90, r)
    rect = np.zeros(shape, bool)
    rect[20:50, 150:230] = True  # 30 rows x 80 columns
    img = np.zeros((*shape, 3), np.uint8)
    img[d] = (200, 10, 0)
    img[rect] = (0, 0, 50)
    df = sio.measurements([img], [[d, rect]], labels=[["disk", "rect"]], scores=[[0.9, None]])
    assert list(df.columns[:16]) == list(sio.MEASUREMENT_COLUMNS)
    a, b = df.to_dict("records")
    assert a["label"] == "disk" and a["object"] == 1 and a["image"] == "image_1" and a["score"] == 0.9
    assert a["area_px"] == int(d.sum())
    assert a["area_px"] == pytest.approx(math.pi * r * r, rel=0.01)
    assert (a["centroid_x"], a["centroid_y"]) == (100.0, 90.0)  # exact: the disk is symmetric
    assert (a["bbox_x0"], a["bbox_y0"], a["bbox_x1"], a["bbox_y1"]) == (60, 50, 141, 131)
    assert a["equivalent_diameter_px"] == pytest.approx(2 * r, rel=0.01)
    assert a["perimeter_px"] == pytest.approx(2 * math.pi * r, rel=0.05)
    assert a["eccentricity"] < 0.05 and a["solidity"] > 0.98
    assert (a["mean_r"], a["mean_g"], a["mean_b"]) == (200.0, 10.0, 0.0)
    assert b["area_px"] == 30 * 80 and math.isnan(b["score"])
    assert (b["centroid_x"], b["centroid_y"]) == (189.5, 34.5)
    assert (b["bbox_x0"], b["bbox_y0"], b["bbox_x1"], b["bbox_y1"]) == (150, 20, 230, 50)
    assert b["solidity"] == 1.0 and b["mean_b"] == 50.0
    # an ellipse with semi-axes 40 and 30 -> eccentricity sqrt(1 - 30^2/40^2) for the rectangle's moments
    assert b["eccentricity"] == pytest.approx(math.sqrt(1 - (30 / 80) ** 2), abs=0.01)


def test_measurements_with_pixel_size_grey_images_files_and_sizes(tmp_path):
    shape = (60, 50)
    d = disk(shape, 25, 30, 10)
    grey = np.full(shape, 7, np.uint8)
    path = tmp_path / "g.png"
    Image.fromarray(grey).save(path)
    df = sio.measurements([path, grey, {"file_name": "n.png", "height": 60, "width": 50}], [[d], [d], [d]],
                          pixel_size=0.5, unit="µm")
    assert list(df["image"]) == ["g.png", "image_2", "n.png"]
    assert list(df["mean_intensity"][:2]) == [7.0, 7.0] and math.isnan(df["mean_intensity"][2])
    assert df["area_um2"][0] == pytest.approx(d.sum() * 0.25)
    assert df["centroid_x_um"][0] == pytest.approx(12.5) and df["centroid_y_um"][0] == pytest.approx(15.0)
    assert df["equivalent_diameter_um"][0] == pytest.approx(df["equivalent_diameter_px"][0] / 2)
    assert df.attrs == {"pixel_size": 0.5, "unit": "µm"}
    with pytest.raises(ValueError, match="pixel_size must be a number > 0"):
        sio.measurements([grey], [[d]], pixel_size=-1)
    with pytest.raises(ValueError, match=r"masks_per_image\[0\]\[0\] has shape \(50, 60\) but image 0 \('image_1'\) is 60 x 50"):
        sio.measurements([grey], [[d.T]])


def test_measurements_of_an_empty_mask_and_no_objects():
    df = sio.measurements([(5, 5), (4, 4)], [[np.zeros((5, 5), bool)], []])
    assert len(df) == 1 and df["area_px"][0] == 0 and math.isnan(df["centroid_x"][0])


# ------------------------------------------------------------- garbage in: one clear error


def test_label_image_of_0_1_integer_masks_equals_that_of_the_bool_masks():
    top = np.array([[1, 1, 0], [0, 0, 0]])
    diagonal = np.array([[0, 1, 0], [1, 0, 1]])
    expected = np.array([[1, 2, 0], [2, 0, 2]], np.int32)
    assert np.array_equal(sio.label_image([top, diagonal]), expected)
    assert np.array_equal(sio.label_image(np.stack([top, diagonal]).astype(np.uint8) * 255), expected)
    assert np.array_equal(sio.label_image([top.tolist(), diagonal.tolist()]), expected)
    assert np.array_equal(sio.label_image([top.astype(bool), diagonal.astype(bool)]), expected)
    assert np.array_equal(sio.label_image([], shape=(2, 3)), np.zeros((2, 3), np.int32))


@pytest.mark.parametrize(
    "masks, kwargs, error, message",
    [
        (np.zeros((2, 3, 4, 5), bool), {}, ValueError, r"masks must be an \(N, H, W\) stack.*\(2, 3, 4, 5\)"),
        ([[0, 1], [1, 0]], {}, ValueError, r"masks\[0\] must be an \(H, W\) mask"),
        ([np.full((2, 2), 0.5)], {}, ValueError, r"masks\[0\] must be a bool mask, got dtype float"),
        ([np.zeros((2, 2), bool), np.array([[0, 2], [1, 0]])], {}, ValueError, r"masks\[1\] holds values other than 0 and 1"),
        ([np.zeros((2, 2), bool), np.zeros((2, 3), bool)], {}, ValueError, r"masks\[1\] has shape \(2, 3\)"),
        ([np.zeros((2, 2), bool)], {"shape": (3, 3)}, ValueError, r"shape=\(3, 3\)"),
        ([], {"shape": (2.0, 3)}, ValueError, r"shape must be \(H, W\)"),
        (7, {}, TypeError, r"masks must be an \(N, H, W\) array or a list"),
    ],
    ids=["4d-stack", "list-of-rows", "float", "label-values", "two-shapes", "wrong-shape", "float-shape", "an-int"],
)
def test_label_image_refuses_masks_it_cannot_label(masks, kwargs, error, message):
    with pytest.raises(error, match=message):
        sio.label_image(masks, **kwargs)


@pytest.mark.parametrize("bits, error", [(True, TypeError), (1.0, TypeError), ("8", TypeError), (2, ValueError)])
def test_export_png_bits_must_be_the_whole_number_1_or_8_and_nothing_is_written(tmp_path, bits, error):
    out = tmp_path / "out"
    with pytest.raises(error, match="bits must be"):
        sio.export_png(out, [(4, 5)], [[np.ones((4, 5), bool)]], per_object=True, bits=bits)
    assert not out.exists()


def test_safe_name_refuses_a_max_bytes_below_one():
    assert sio.safe_name("abc", max_bytes=1) == "a"
    for bad in (0, -1):
        with pytest.raises(ValueError, match=r"max_bytes must be >= 1"):
            sio.safe_name("abc", max_bytes=bad)
    with pytest.raises(TypeError, match="max_bytes"):
        sio.safe_name("abc", max_bytes=2.5)
