"""COCO export and import (sam_widget.io.to_coco / read_coco), checked with pycocotools
as the independent reader: the file loads with ``COCO(path)`` and ``annToMask`` gives
back our masks; polygons rasterise back with IoU >= 0.99; files written by hand, as
another tool would, import; bad files give one FormatError naming the file and entry."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

import sam_widget.io as sio
from sam_widget.data import shapes_image
from sam_widget.io import FormatError

# ------------------------------------------------------------------------------ helpers


def disk(shape, cx, cy, r):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r


def ring(shape, cx, cy, r_out, r_in):
    return disk(shape, cx, cy, r_out) & ~disk(shape, cx, cy, r_in)


def iou(a, b):
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else np.logical_and(a, b).sum() / union


def two_images(tmp_path):
    """Two real image files with masks, labels, scores, prompts (one object has none)."""
    img1, m1 = shapes_image(1, (120, 160), 5)
    img2, m2 = shapes_image(2, (90, 100), 4)
    p1, p2 = tmp_path / "first.png", tmp_path / "second image.jpg"
    Image.fromarray(img1).save(p1)
    Image.fromarray(img2).save(p2, quality=95)
    labels = [[f"cell {i % 2}" for i in range(len(m1))], ["nucleus"] * len(m2)]
    scores = [list(np.linspace(0.9, 0.5, len(m1))), [0.75] * len(m2)]
    prompts = [
        [{"points": [(10.5, 20.0), (3, 4)], "labels": [1, 0], "box": None} for _ in m1],
        [{"points": [], "labels": [], "box": (1, 2, 30, 40), "candidate": 2,
          "chain": [{"points": [(5, 5)], "labels": [1], "box": None, "candidate": 0}]}]
        + [None] * (len(m2) - 1),
    ]
    return [p1, p2], [m1, m2], labels, scores, prompts


# ---------------------------------------------------------------------------- export RLE


def test_to_coco_file_opens_in_pycocotools_and_gives_back_every_mask_exactly(tmp_path):
    paths, masks, labels, scores, prompts = two_images(tmp_path)
    out = tmp_path / "ann.json"
    coco = sio.to_coco(paths, masks, labels=labels, scores=scores, prompts=prompts, path=out)
    assert json.loads(out.read_text("utf-8")) == coco

    api = COCO(str(out))
    assert [(im["file_name"], im["height"], im["width"]) for im in api.dataset["images"]] == [
        ("first.png", 120, 160), ("second image.jpg", 90, 100)]
    # one category per distinct label, ids by sorted label text
    assert [(c["id"], c["name"]) for c in api.dataset["categories"]] == [
        (1, "cell 0"), (2, "cell 1"), (3, "nucleus")]
    anns = api.loadAnns(api.getAnnIds())
    assert len(anns) == len(masks[0]) + len(masks[1])
    flat = [(0, j) for j in range(len(masks[0]))] + [(1, j) for j in range(len(masks[1]))]
    for ann, (i, j) in zip(anns, flat):
        m = masks[i][j]
        assert ann["image_id"] == i + 1
        assert np.array_equal(api.annToMask(ann).astype(bool), m)
        assert isinstance(ann["segmentation"]["counts"], str)
        assert ann["iscrowd"] == 0
        assert ann["area"] == int(m.sum())
        ys, xs = np.nonzero(m)
        # COCO's bbox is XYWH
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
        assert list(mask_utils.toBbox(ann["segmentation"])) == ann["bbox"]
        assert ann["score"] == pytest.approx(scores[i][j])
        assert api.cats[ann["category_id"]]["name"] == labels[i][j]
    assert anns[0]["sam_widget"]["prompts"] == {"points": [[10.5, 20.0], [3.0, 4.0]], "labels": [1, 0], "box": None}
    first_of_2 = anns[len(masks[0])]
    assert first_of_2["sam_widget"]["prompts"]["box"] == [1.0, 2.0, 30.0, 40.0]
    assert "sam_widget" not in anns[-1]  # no prompts given for it


def test_read_coco_brings_back_masks_labels_scores_and_prompts(tmp_path):
    paths, masks, labels, scores, prompts = two_images(tmp_path)
    out = tmp_path / "ann.json"
    sio.to_coco(paths, masks, labels=labels, scores=scores, prompts=prompts, path=out)
    ds = sio.read_coco(out)
    assert [im.file_name for im in ds.images] == ["first.png", "second image.jpg"]
    assert [im.path for im in ds.images] == paths  # found next to the COCO file
    for im, m, lab, sc in zip(ds.images, masks, labels, scores):
        assert np.array_equal(im.masks, m)
        assert im.labels == lab
        assert im.scores == pytest.approx(sc)
    p = ds.images[1].objects[0].prompts
    assert p.box == (1.0, 2.0, 30.0, 40.0) and p.candidate == 2
    assert p.chain[0].points == ((5.0, 5.0),) and p.chain[0].candidate == 0
    assert ds.images[0].objects[0].prompts.points == ((10.5, 20.0), (3.0, 4.0))
    assert ds.images[1].objects[1].prompts is None


def test_round_trip_read_then_write_gives_the_same_file(tmp_path):
    paths, masks, labels, scores, prompts = two_images(tmp_path)
    first = sio.to_coco(paths, masks, labels=labels, scores=scores, prompts=prompts, path=tmp_path / "a.json")
    second = sio.read_coco(tmp_path / "a.json").to_coco(tmp_path / "b.json")
    assert second == first
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_round_trip_through_a_new_process_gives_the_same_file(tmp_path):
    import subprocess
    import sys

    paths, masks, labels, scores, prompts = two_images(tmp_path)
    sio.to_coco(paths, masks, labels=labels, scores=scores, prompts=prompts, polygons=True, path=tmp_path / "a.json")
    repo = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = "import sys, sam_widget.io as s; s.read_coco(sys.argv[1]).to_coco(sys.argv[2], polygons=True)"
    res = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.json"), str(tmp_path / "b.json")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "b.json").read_text()) == json.loads((tmp_path / "a.json").read_text())


def test_category_ids_do_not_depend_on_object_order_and_can_be_fixed():
    m = np.zeros((2, 8, 8), bool)
    m[0, 1, 1] = m[1, 5, 5] = True
    a = sio.to_coco([(8, 8)], [m], labels=[["zebra", "ant"]])
    b = sio.to_coco([(8, 8)], [m[::-1]], labels=[["ant", "zebra"]])
    assert a["categories"] == b["categories"] == [{"id": 1, "name": "ant"}, {"id": 2, "name": "zebra"}]
    fixed = sio.to_coco([(8, 8)], [m], labels=[["zebra", "ant"]], categories={"zebra": 7, "ant": 3})
    assert [a["category_id"] for a in fixed["annotations"]] == [7, 3]
    with pytest.raises(ValueError, match="no entry for the label"):
        sio.to_coco([(8, 8)], [m], labels=[["zebra", "ant"]], categories=["zebra"])


def test_images_as_sizes_dicts_and_arrays_and_empty_images():
    m = np.zeros((1, 4, 6), bool)
    m[0, 1:3, 2:5] = True
    coco = sio.to_coco(
        [(4, 6), {"file_name": "x/y.tif", "height": 4, "width": 6, "license": 3}, np.zeros((4, 6, 3), np.uint8)],
        [m, [m[0]], None],
    )
    assert [im["file_name"] for im in coco["images"]] == ["image_1", "x/y.tif", "image_3"]
    assert coco["images"][1]["license"] == 3
    assert [a["image_id"] for a in coco["annotations"]] == [1, 2]
    assert [a["bbox"] for a in coco["annotations"]] == [[2, 1, 3, 2]] * 2
    assert coco["annotations"][0]["category_id"] == 1 and coco["categories"] == [{"id": 1, "name": "object"}]


def test_rle_encoding_is_byte_identical_to_pycocotools_encode():
    rng = np.random.default_rng(5)
    for k in range(300):
        h, w = rng.integers(1, 30, 2)
        m = rng.random((h, w)) < rng.random()
        if k % 4 == 0:
            m[:, :: 2] = True  # runs that go on from one column into the next
        if k % 9 == 0:
            m[:] = k % 2 == 0
        ours = sio.encode_mask(m)
        theirs = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert ours["counts"] == theirs["counts"].decode()
        assert np.array_equal(sio.decode_rle(ours), m)
        assert np.array_equal(sio.decode_rle({"size": [int(h), int(w)], "counts": theirs["counts"]}), mask_utils.decode(theirs))


# ------------------------------------------------------------------------------ polygons


@pytest.mark.parametrize("radius", [12.7, 20.0, 45.3])
def test_polygons_rasterise_back_with_iou_099_for_objects_of_500_px(tmp_path, radius):
    shape = (120, 130)
    m = disk(shape, 60.4, 58.8, radius)
    assert m.sum() >= 500
    out = tmp_path / "poly.json"
    sio.to_coco([shape], [[m]], polygons=True, path=out)
    api = COCO(str(out))
    ann = api.loadAnns(api.getAnnIds())[0]
    assert isinstance(ann["segmentation"], list) and all(len(p) >= 6 for p in ann["segmentation"])
    back = api.annToMask(ann).astype(bool)
    assert iou(back, m) >= 0.99
    # the default tolerance (0.25 px) stays inside the half-pixel margin: exact
    assert np.array_equal(back, m)


def test_polygons_of_shapes_scenes_are_exact_at_default_tolerance_and_close_at_one_pixel():
    for seed in range(6):
        _, masks = shapes_image(seed, (160, 200), 6)
        big = [m for m in masks if m.sum() >= 500]
        for m in big:
            outer, holes = sio.mask_to_polygons(m)
            assert np.array_equal(sio.polygons_to_mask(outer, *m.shape, holes), m)
            coarse, coarse_holes = sio.mask_to_polygons(m, tolerance=1.0)
            assert iou(sio.polygons_to_mask(coarse, *m.shape, coarse_holes), m) >= 0.95
            for p in coarse:
                assert sio.polygon_crossing(p) is None


def test_polygon_vertices_follow_pixel_edges():
    m = np.zeros((10, 10), bool)
    m[2:5, 3:7] = True  # rows 2-4, columns 3-6
    outer, holes = sio.mask_to_polygons(m, tolerance=0)
    pts = np.array(outer[0]).reshape(-1, 2)
    assert sorted(map(tuple, pts.tolist())) == [(3.0, 2.0), (3.0, 5.0), (7.0, 2.0), (7.0, 5.0)]
    assert holes == [[]]


def test_a_mask_with_a_hole_falls_back_to_rle_or_keeps_holes_in_the_extra_field(tmp_path):
    shape = (100, 100)
    m = ring(shape, 50, 50, 30, 12) | disk(shape, 50, 50, 4)  # an island in the hole
    solid = disk(shape, 20, 20, 13)
    coco = sio.to_coco([shape], [[m, solid]], polygons=True, path=tmp_path / "rle.json")
    seg_ring, seg_solid = (a["segmentation"] for a in coco["annotations"])
    assert isinstance(seg_ring, dict) and isinstance(seg_solid, list)
    api = COCO(str(tmp_path / "rle.json"))
    assert np.array_equal(api.annToMask(api.loadAnns([1])[0]).astype(bool), m)

    coco = sio.to_coco([shape], [[m, solid]], polygons=True, holes="extra", path=tmp_path / "extra.json")
    ann = coco["annotations"][0]
    assert isinstance(ann["segmentation"], list) and len(ann["segmentation"]) == 2  # ring + island
    assert [len(h) for h in ann["sam_widget"]["holes"]] in ([1, 0], [0, 1])
    # a standard reader sees the hole filled (the island included) ...
    api = COCO(str(tmp_path / "extra.json"))
    filled = api.annToMask(api.loadAnns([1])[0]).astype(bool)
    assert np.array_equal(filled, disk(shape, 50, 50, 30))
    # ... and read_coco subtracts the holes again
    back = sio.read_coco(tmp_path / "extra.json").images[0].objects[0].mask
    assert np.array_equal(back, m)


def test_empty_mask_is_written_as_rle_even_in_polygon_mode():
    m = np.zeros((1, 5, 5), bool)
    ann = sio.to_coco([(5, 5)], [m], polygons=True)["annotations"][0]
    assert isinstance(ann["segmentation"], dict) and ann["area"] == 0 and ann["bbox"] == [0, 0, 0, 0]


# --------------------------------------------------------------- files from other tools


def test_a_coco_file_written_by_hand_imports(tmp_path):
    """As another tool would write it: polygons, uncompressed RLE, a crowd annotation,
    compressed RLE as produced by pycocotools, string ids for nothing, extra keys."""
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (12, 10)).save(tmp_path / "imgs" / "a.png")
    Image.new("RGB", (12, 10)).save(tmp_path / "imgs" / "b.png")
    rle_b = mask_utils.encode(np.asfortranarray(np.pad(np.ones((2, 3), np.uint8), ((4, 4), (5, 4)))))
    hand = {
        "info": {"description": "labelled elsewhere"},
        "licenses": [],
        "images": [
            {"id": 10, "file_name": "a.png", "height": 10, "width": 12},
            {"id": 20, "file_name": "b.png", "height": 10, "width": 12, "date_captured": "2020"},
        ],
        "categories": [{"id": 5, "name": "leaf", "supercategory": "plant"}, {"id": 9, "name": "stem"}],
        "annotations": [
            # a square from (2, 1) to (6, 4): pixels columns 2-5, rows 1-3
            {"id": 1, "image_id": 10, "category_id": 5, "iscrowd": 0, "area": 12.0, "bbox": [2, 1, 4, 3],
             "segmentation": [[2, 1, 6, 1, 6, 4, 2, 4]], "attributes": {"occluded": False}},
            # uncompressed RLE (as for iscrowd annotations): column-major, starts with zeros
            {"id": 2, "image_id": 10, "category_id": 9, "iscrowd": 1, "area": 3, "bbox": [0, 0, 1, 3],
             "segmentation": {"size": [10, 12], "counts": [0, 3, 117]}},
            {"id": 3, "image_id": 20, "category_id": 5, "iscrowd": 0, "area": 6, "bbox": [5, 4, 3, 2],
             "segmentation": {"size": [10, 12], "counts": rle_b["counts"].decode()}, "score": 0.5},
        ],
    }
    path = tmp_path / "hand.json"
    path.write_text(json.dumps(hand, indent=2))
    ds = sio.read_coco(path, image_dir=tmp_path / "imgs")
    a, b = ds.images
    assert (a.path, b.path) == (tmp_path / "imgs" / "a.png", tmp_path / "imgs" / "b.png")
    sq = np.zeros((10, 12), bool)
    sq[1:4, 2:6] = True
    assert np.array_equal(a.objects[0].mask, sq)
    assert a.objects[0].label == "leaf" and a.objects[0].prompts is None and a.objects[0].score is None
    assert a.objects[0].extra == {"attributes": {"occluded": False}}
    col = np.zeros((10, 12), bool)
    col[:3, 0] = True
    assert np.array_equal(a.objects[1].mask, col) and a.objects[1].iscrowd and a.objects[1].label == "stem"
    assert np.array_equal(b.objects[0].mask, mask_utils.decode(rle_b).astype(bool))
    assert b.objects[0].score == 0.5 and b.extra == {"date_captured": "2020"}
    # every mask equals pycocotools' own reading of the file
    api = COCO(str(path))
    for im in ds.images:
        for o in im.objects:
            assert np.array_equal(o.mask, api.annToMask(api.anns[o.id]).astype(bool))
    # re-export keeps the categories and image ids
    again = ds.to_coco()
    assert again["categories"] == hand["categories"]
    assert [i["id"] for i in again["images"]] == [10, 20]


def test_read_coco_takes_a_dict_and_leaves_paths_unresolved():
    m = np.zeros((1, 6, 6), bool)
    m[0, 2, 2] = True
    ds = sio.read_coco(sio.to_coco(["nowhere/x.png"], [m]))
    assert ds.path is None and ds.images[0].path is None
    assert np.array_equal(ds.images[0].masks, m)


# ------------------------------------------------------------------------------ bad input


def _minimal(**ann):
    base = {"id": 1, "image_id": 1, "category_id": 1, "segmentation": {"size": [4, 5], "counts": [20]}}
    base.update(ann)
    return {
        "images": [{"id": 1, "file_name": "a.png", "height": 4, "width": 5}],
        "categories": [{"id": 1, "name": "x"}],
        "annotations": [base],
    }


@pytest.mark.parametrize(
    "change, message",
    [
        ({"image_id": 7}, r"annotations\[0\] \(id 1\): 'image_id' 7 is not the id of any image"),
        ({"category_id": 3}, r"annotations\[0\] \(id 1\): 'category_id' 3 is not the id of any category"),
        ({"segmentation": {"size": [5, 5], "counts": [25]}}, r"mask size 5 x 5 differs from image 'a.png' \(4 x 5"),
        ({"segmentation": []}, "empty polygon list"),
        ({"segmentation": [[1, 1, 2, 2]]}, "polygon 0 is empty or degenerate"),
        ({"segmentation": [[0, 0, 4, 3, 4, 0, 0, 3]]}, "polygon 0 intersects itself"),
        ({"segmentation": [1, 2, 3, 4, 5, 6]}, "flat list of numbers"),
        ({"segmentation": {"size": [4, 5], "counts": [3, 4]}}, "RLE mask is corrupt"),
        ({"segmentation": {"size": [4, 5], "counts": "!!!"}}, "RLE mask is corrupt"),
        ({"segmentation": None}, "no 'segmentation'"),
        ({"iscrowd": 2}, "'iscrowd' must be 0 or 1"),
        ({"score": "high"}, "'score' must be a finite number"),
        ({"sam_widget": {"prompts": {"points": [[1, 2]], "labels": []}}}, "1 points but 0 labels"),
    ],
)
def test_bad_annotations_raise_one_format_error_naming_file_and_entry(tmp_path, change, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_minimal(**change)))
    with pytest.raises(FormatError, match=message) as info:
        sio.read_coco(path)
    assert str(path) in str(info.value)
    assert info.value.path == str(path)


def test_unknown_image_names_in_image_dir_are_reported(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps(_minimal()))
    (tmp_path / "imgs").mkdir()
    with pytest.raises(FormatError, match=r"image 'a.png' is not in the image directory"):
        sio.read_coco(path, image_dir=tmp_path / "imgs")
    with pytest.raises(ValueError, match="is not a directory"):
        sio.read_coco(path, image_dir=tmp_path / "a.json")


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"images": [{"id": 1, "file_name": "a.png", "hei', "not valid JSON \\(the file is truncated\\)"),
        ("", "the file is empty"),
        ("[1, 2]", "COCO results file"),
        ('{"annotations": []}', "no 'images' list"),
        ('{"images": {}}', "'images' must be a list"),
        ('{"images": [{"id": 1, "file_name": "a.png", "height": 0, "width": 3}]}', "'height' and 'width' must be"),
        ('{"images": [{"id": 1, "file_name": "a", "height": 2, "width": 2}, {"id": 1, "file_name": "b", "height": 2, "width": 2}]}', "image id 1 is used twice"),
    ],
)
def test_truncated_or_foreign_files_raise_format_error(tmp_path, text, message):
    path = tmp_path / "f.json"
    path.write_text(text)
    with pytest.raises(FormatError, match=message):
        sio.read_coco(path)


def test_missing_file_and_binary_file(tmp_path):
    with pytest.raises(FormatError, match="does not exist"):
        sio.read_coco(tmp_path / "none.json")
    (tmp_path / "bin.json").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(FormatError, match="not UTF-8"):
        sio.read_coco(tmp_path / "bin.json")


def test_export_errors_name_the_item_and_write_nothing(tmp_path):
    m = np.zeros((2, 4, 5), bool)
    out = tmp_path / "out.json"
    with pytest.raises(ValueError, match=r"masks_per_image\[1\]\[0\] has shape \(3, 5\) but image 1 \('b.png'\) is 4 x 5"):
        sio.to_coco([{"file_name": "a.png"}, {"file_name": "b.png", "height": 4, "width": 5}],
                    [m, [np.zeros((3, 5), bool)]], path=out)
    with pytest.raises(ValueError, match=r"labels\[0\] has 1 labels but image 0 has 2 masks"):
        sio.to_coco([(4, 5)], [m], labels=[["a"]], path=out)
    with pytest.raises(ValueError, match=r"scores\[0\]\[1\] must be finite"):
        sio.to_coco([(4, 5)], [m], scores=[[0.5, float("nan")]], path=out)
    with pytest.raises(ValueError, match=r"masks_per_image\[0\]\[0\] holds values other than 0 and 1"):
        sio.to_coco([(4, 5)], [[np.arange(20).reshape(4, 5)]], path=out)
    with pytest.raises(ValueError, match=r"must be a bool mask, got dtype float"):
        sio.to_coco([(4, 5)], [[np.zeros((4, 5))]], path=out)
    with pytest.raises(ValueError, match=r"prompts\[0\]\[0\].box"):
        sio.to_coco([(4, 5)], [m], prompts=[[{"points": [], "labels": [], "box": [5, 5, 1, 1]}, None]], path=out)
    with pytest.raises(ValueError, match="same file_name"):
        sio.to_coco(["a/x.png", "b/x.png"], [m, m], path=out)
    with pytest.raises(ValueError, match="is a directory"):
        sio.to_coco([(4, 5)], [m], path=tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        sio.to_coco([(4, 5)], [m], path=tmp_path / "missing" / "x.json")
    assert list(tmp_path.iterdir()) == []


def test_a_path_image_whose_file_size_differs_from_the_masks(tmp_path):
    Image.new("RGB", (8, 6)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match=r"has shape \(4, 5\) but image 0 \('a.png'\) is 6 x 8"):
        sio.to_coco([tmp_path / "a.png"], [np.zeros((1, 4, 5), bool)])


def test_a_failed_write_leaves_the_previous_file(tmp_path, monkeypatch):
    out = tmp_path / "ann.json"
    m = np.ones((1, 3, 3), bool)
    sio.to_coco([(3, 3)], [m], path=out)
    before = out.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        sio.to_coco([(3, 3)], [m], labels=[["other"]], path=out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ann.json"]  # no temporary file left


def test_prompts_as_numpy_arrays_or_state_prompts_are_stored_the_same():
    from sam_widget.state import Prompts

    m = np.zeros((2, 6, 6), bool)
    m[:, 2:4, 2:4] = True
    coco = sio.to_coco([(6, 6)], [m], prompts=[[
        {"points": np.array([[1.5, 2.0]]), "labels": np.array([1]), "box": np.array([0, 0, 5, 5.0])},
        Prompts(points=((1.5, 2.0),), labels=(1,), box=(0.0, 0.0, 5.0, 5.0)),
    ]])
    a, b = (ann["sam_widget"]["prompts"] for ann in coco["annotations"])
    assert a == b == {"points": [[1.5, 2.0]], "labels": [1], "box": [0.0, 0.0, 5.0, 5.0]}
    assert json.loads(json.dumps(coco)) == coco


# ------------------------------------------------------------- garbage in: one clear error


NAN = float("nan")
TRIANGLE = [0, 0, 6, 0, 0, 6]


@pytest.mark.parametrize(
    "polygons, height, width, error, message",
    [
        ([[0, 0, NAN, 1, 3, 3]], 10, 12, ValueError, r"polygons\[0\] holds NaN or infinite"),
        ([TRIANGLE, [0, 0, float("inf"), 1, 3, 3]], 10, 12, ValueError, r"polygons\[1\] holds NaN or infinite"),
        ([[0, 0, 1]], 10, 12, ValueError, r"polygons\[0\] must hold an even number >= 6 .* got 3"),
        ([[0, 0, 5, 5]], 10, 12, ValueError, r"polygons\[0\] must hold an even number >= 6 .* got 4"),
        ([TRIANGLE + [4]], 10, 12, ValueError, r"polygons\[0\] must hold an even number >= 6 .* got 7"),
        (TRIANGLE, 10, 12, ValueError, r"polygons is a flat list of numbers"),
        ([[[0, 0], [6, 0], [0, 6]]], 10, 12, ValueError, r"polygons\[0\] must be a flat list"),
        ([["0", 0, 6, 0, 0, 6]], 10, 12, TypeError, r"polygons\[0\] must hold real numbers"),
        ([[True, 0, 6, 0, 0, 6]], 10, 12, TypeError, r"polygons\[0\] must hold numbers"),
        ([TRIANGLE], -10, 12, ValueError, r"height must be a whole number > 0, got -10"),
        ([TRIANGLE], 10.0, 12, ValueError, r"height must be a whole number > 0, got 10.0"),
        ([TRIANGLE], 10, True, ValueError, r"width must be a whole number > 0, got True"),
        ("abc", 10, 12, TypeError, r"polygons must be a list"),
    ],
    ids=["nan", "inf-in-second", "3-coords", "4-coords", "odd", "flat-list", "nested-pairs", "strings", "bools",
         "negative-height", "float-height", "bool-width", "a-string"],
)
def test_polygons_to_mask_refuses_bad_polygons_and_sizes(polygons, height, width, error, message):
    with pytest.raises(error, match=message):
        sio.polygons_to_mask(polygons, height, width)


def test_polygons_to_mask_checks_holes_and_still_takes_arrays():
    square = [0, 0, 8, 0, 8, 8, 0, 8]
    hole = [2, 2, 6, 2, 6, 6, 2, 6]
    mask = sio.polygons_to_mask([square], 10, 12, [[hole]])
    assert mask.sum() == 64 - 16 and not mask[3:6, 3:6].any()
    assert np.array_equal(sio.polygons_to_mask([np.array(square, np.float32)], np.int64(10), 12, [[hole]]), mask)
    with pytest.raises(ValueError, match=r"holes\[0\]\[0\] holds NaN"):
        sio.polygons_to_mask([square], 10, 12, [[[2, 2, NAN, 2, 6, 6]]])
    with pytest.raises(ValueError, match=r"holes has 2 entries but there are 1 polygons"):
        sio.polygons_to_mask([square], 10, 12, [[hole], []])


def test_encode_mask_and_bbox_take_0_1_integer_masks_like_bool_and_refuse_floats_and_stacks():
    m = np.zeros((5, 6), bool)
    m[1:3, 2:5] = True
    for same in (m.astype(np.int64), m.astype(np.uint8) * 255, m.astype(int).tolist()):
        assert sio.encode_mask(same) == sio.encode_mask(m)
        assert sio.mask_bbox_xyxy(same) == (2, 1, 5, 3)
    half = np.where(m, 0.5, 0.0)  # a probability map: must be thresholded by the user
    for function in (sio.encode_mask, sio.mask_bbox_xyxy, sio.mask_to_polygons):
        with pytest.raises(ValueError, match=r"mask must be a bool mask, got dtype float64"):
            function(half)
        with pytest.raises(ValueError, match=r"mask must be an \(H, W\) mask, got an array of shape \(2, 5, 6\)"):
            function(np.stack([m, m]))
        with pytest.raises(ValueError, match=r"mask holds values other than 0 and 1"):
            function(m.astype(np.int64) * 2 + 1)
    with pytest.raises(ValueError, match=r"bbox \(0, 0, 9, 9\) is not an XYXY end-exclusive box inside"):
        sio.encode_mask(m, (0, 0, 9, 9))


@pytest.mark.parametrize(
    "rle, error, message",
    [
        ([1, 2], TypeError, r"rle must be a COCO RLE dict"),
        ({"size": [2, 3]}, ValueError, r"rle has no 'counts' key"),
        ({"counts": [6]}, ValueError, r"rle has no 'size' key"),
        ({"size": [True, 3], "counts": [3]}, TypeError, r"rle\['size'\] must be \[H, W\]"),
        ({"size": [2.0, 3], "counts": [6]}, TypeError, r"rle\['size'\] must be \[H, W\]"),
        ({"size": [2], "counts": [6]}, TypeError, r"rle\['size'\] must be \[H, W\]"),
        ({"size": [-2, 3], "counts": [6]}, ValueError, r"rle\['size'\] \[-2, 3\] is negative"),
        ({"size": [2, 3], "counts": 6}, TypeError, r"rle\['counts'\] must be a compressed string"),
        ({"size": [2, 3], "counts": [2.5, 3.5]}, TypeError, r"rle\['counts'\]\[0\] must be a whole number"),
        ({"size": [2, 3], "counts": "é"}, ValueError, r"rle\['counts'\] holds a non-ASCII character"),
        ({"size": [2, 3], "counts": [2, 3]}, ValueError, r"runs add up to 5 pixels"),
    ],
    ids=["a-list", "no-counts", "no-size", "bool-height", "float-height", "one-number", "negative", "int-counts",
         "float-runs", "non-ascii", "runs-too-short"],
)
def test_decode_rle_refuses_malformed_rles(rle, error, message):
    with pytest.raises(error, match=message):
        sio.decode_rle(rle)


def test_build_categories_refuses_labels_that_are_not_strings():
    assert sio.build_categories(["dog", "cat", "dog"])[1] == {"cat": 1, "dog": 2}
    with pytest.raises(TypeError, match=r"labels\[0\] must be a string, got 1 \(int\)"):
        sio.build_categories([1, 2])
    with pytest.raises(TypeError, match=r"labels\[1\] must be a string, got None"):
        sio.build_categories(["cat", None])
    with pytest.raises(TypeError, match=r"labels must be a list of label strings, not str"):
        sio.build_categories("cat")
