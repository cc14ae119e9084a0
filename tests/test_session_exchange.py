"""A session's objects out as COCO / label PNGs / measurements, and COCO files back in.

Independent readers check every file: pycocotools (``COCO``, ``annToMask``) for COCO, Pillow
for PNGs, NumPy for the measured intensities. Masks come from the shipped ``tiny_shapes``
model on ``shapes_image`` scenes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sam_widget import Session
from sam_widget.data import shapes_image
from sam_widget.io import FormatError

REPO = Path(__file__).resolve().parents[1]
SIZE = (192, 256)
SCENES = {seed: shapes_image(seed, size=SIZE) for seed in (3, 5, 8)}


@pytest.fixture
def sessions(shapes_seg):
    made: list[Session] = []

    def make(*args, **kwargs) -> Session:
        kwargs.setdefault("segmenter", shapes_seg)
        s = Session(*args, **kwargs)
        made.append(s)
        return s

    def keep(s: Session) -> Session:
        made.append(s)
        return s

    make.keep = keep
    yield make
    for s in made:
        s.close()


def inside(mask, k=0):
    ys, xs = np.nonzero(mask)
    i = (len(ys) // 2 + k) % len(ys)
    return int(xs[i]), int(ys[i])


def write_scenes(folder: Path, seeds=(3, 5, 8)) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for seed in seeds:
        p = folder / f"scene_{seed}.png"
        Image.fromarray(SCENES[seed][0]).save(p)
        out.append(str(p))
    return out


def annotated(sessions, tmp_path, extra=()) -> tuple[Session, list[str]]:
    """Three images (and ``extra`` ones): two objects (one refined), none, one object plus a mask brought in."""
    paths = write_scenes(tmp_path / "pics")
    s = sessions([*paths, *extra])
    s.wait_ready(60)
    m = SCENES[3][1]
    s.add_point(*inside(m[0]))
    s.add_point(*inside(m[0], 9))
    s.commit("cell")
    s.add_point(*inside(m[1]))
    s.commit("debris")
    s.goto(2)
    s.add_point(*inside(SCENES[8][1][0]))
    s.commit("cell")
    blob = np.zeros(SIZE, bool)
    blob[20:60, 30:90] = True
    blob[35:45, 50:60] = False  # a hole
    s.add_object(blob, "ring")
    return s, paths


def all_masks(s: Session) -> list[np.ndarray]:
    return [o.mask for i in range(len(s.images)) for o in s.objects_of(i)]


# ============================================================================ COCO out
def test_to_coco_has_every_image_and_pycocotools_gives_the_masks_back(sessions, tmp_path):
    s, paths = annotated(sessions, tmp_path)
    coco = s.to_coco(tmp_path / "ann.json")
    api = COCO(str(tmp_path / "ann.json"))
    assert [api.imgs[i]["file_name"] for i in sorted(api.imgs)] == ["scene_3.png", "scene_5.png", "scene_8.png"]
    assert all((api.imgs[i]["height"], api.imgs[i]["width"]) == SIZE for i in api.imgs)
    masks = all_masks(s)
    assert len(api.anns) == len(masks) == 4
    for k, m in enumerate(masks):
        ann = api.anns[k + 1]
        assert np.array_equal(api.annToMask(ann).astype(bool), m)
        ys, xs = np.nonzero(m)
        assert ann["bbox"] == [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]  # XYWH
    names = {c["id"]: c["name"] for c in api.loadCats(api.getCatIds())}
    assert [names[api.anns[k]["category_id"]] for k in (1, 2, 3, 4)] == ["cell", "debris", "cell", "ring"]
    first = coco["annotations"][0]
    assert first["sam_widget"]["prompts"]["candidate"] == 0 and len(first["sam_widget"]["prompts"]["chain"]) == 1
    assert "prompts" not in coco["annotations"][3].get("sam_widget", {})  # the mask brought in has none
    assert first["score"] == pytest.approx(s.objects_of(0)[0].score)


def test_to_coco_polygons_rasterise_back_to_the_masks(sessions, tmp_path):
    s, _ = annotated(sessions, tmp_path)
    coco = s.to_coco(tmp_path / "poly.json", polygons=True)
    api = COCO(str(tmp_path / "poly.json"))
    for k, m in enumerate(all_masks(s)):
        ann = api.anns[k + 1]
        back = api.annToMask(ann).astype(bool)
        iou = (back & m).sum() / (back | m).sum()
        assert iou >= 0.99
    ring = coco["annotations"][3]
    assert isinstance(ring["segmentation"], dict)  # holes="rle": the mask with a hole stays exact
    assert isinstance(coco["annotations"][0]["segmentation"], list)


ROUND_TRIP_CHILD = r"""
import json, os, sys
import numpy as np
import torch
torch.set_num_threads(1)
from sam_widget import Session
ann, out, image_dir = sys.argv[1], sys.argv[2], sys.argv[3]
s = Session.from_coco(ann, image_dir=image_dir, images={"image 4": np.load(sys.argv[4])}, model="tiny_shapes", prefetch=False)
s.to_coco(out)
print(s.status.text(), flush=True)
os._exit(0)
"""


def test_session_to_coco_to_a_new_process_to_coco_gives_the_same_file(sessions, tmp_path):
    arr = SCENES[5][0][::-1].copy()  # an image given in memory as well
    s, paths = annotated(sessions, tmp_path, extra=[arr])
    s.goto(3)
    s.add_point(*inside(SCENES[5][1][0][::-1]))
    s.commit("flipped")
    a = s.to_coco(tmp_path / "a.json")
    np.save(tmp_path / "arr.npy", arr)
    res = subprocess.run(
        [sys.executable, "-c", ROUND_TRIP_CHILD, str(tmp_path / "a.json"), str(tmp_path / "b.json"),
         str(tmp_path / "pics"), str(tmp_path / "arr.npy")],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")),
    )
    assert res.returncode == 0, res.stderr
    assert "imported 5 objects on 3 images from a.json" in res.stdout
    b = json.loads((tmp_path / "b.json").read_text())
    assert b == json.loads((tmp_path / "a.json").read_text()) == json.loads(json.dumps(a))  # dicts: key order aside
    api_a, api_b = COCO(str(tmp_path / "a.json")), COCO(str(tmp_path / "b.json"))
    for k in api_a.anns:
        assert np.array_equal(api_a.annToMask(api_a.anns[k]), api_b.annToMask(api_b.anns[k]))


# ============================================================================ PNG and measurements
def test_label_pngs_read_by_pillow_equal_the_label_images_and_come_back_with_their_labels(sessions, tmp_path):
    s, _ = annotated(sessions, tmp_path)
    s.goto(0)
    s.add_object(np.pad(np.ones((50, 50), bool), ((0, SIZE[0] - 50), (0, SIZE[1] - 50))), "overlap / top")
    written = s.export_png(tmp_path / "out", per_object=True)
    names = sorted(p.name for p in written)
    assert "scene_3_labels.png" in names and "scene_3_3_overlap_top.png" in names
    for i, stem in enumerate(["scene_3", "scene_5", "scene_8"]):
        with Image.open(tmp_path / "out" / f"{stem}_labels.png") as im:
            assert np.array_equal(np.asarray(im).astype(np.int32), s.results[i].labels)
    with Image.open(tmp_path / "out" / "scene_3_1_cell.png") as im:
        assert np.array_equal(np.asarray(im) > 0, s.objects_of(0)[0].mask)
    # a label PNG comes back as objects with their labels
    s.goto(1)
    s.set_objects(tmp_path / "out" / "scene_8_labels.png")
    assert [o.label for o in s.objects] == ["cell", "ring"]
    assert np.array_equal(s.results[1].labels, s.results[2].labels)
    # 256 objects: a 16-bit label image
    many = sessions(SCENES[3][0])
    lab = np.arange(SIZE[0] * SIZE[1]).reshape(SIZE) % 300 + 1
    many.set_objects(lab)
    many.export_png(tmp_path / "many")
    with Image.open(tmp_path / "many" / "image_1_labels.png") as im:
        assert im.mode.startswith("I") and np.array_equal(np.asarray(im).astype(np.int64), lab)


def test_measurements_cover_every_image_with_the_pixels(sessions, tmp_path):
    s, _ = annotated(sessions, tmp_path)
    arr = (np.arange(SIZE[0] * SIZE[1] * 3) % 251).reshape(*SIZE, 3).astype(np.uint16) * 200  # 16-bit, in memory
    t = sessions([s.images.path(0), arr])
    t.add_object(s.objects_of(0)[0].mask.copy(), "cell")
    t.next()
    disk = np.zeros(SIZE, bool)
    yy, xx = np.mgrid[: SIZE[0], : SIZE[1]]
    disk[(yy - 90) ** 2 + (xx - 120) ** 2 <= 40**2] = True
    t.add_object(disk, "disk")
    df = t.measurements(pixel_size=0.5)
    assert list(df["image"]) == ["scene_3.png", "image 2"] and list(df["label"]) == ["cell", "disk"]
    assert list(df["image_index"]) == [0, 1]
    row = df.iloc[1]
    assert row["area_px"] == disk.sum() and abs(row["area_px"] - np.pi * 40**2) < 0.02 * np.pi * 40**2
    assert (row["centroid_x"], row["centroid_y"]) == (120.0, 90.0)
    assert row["area_um2"] == pytest.approx(disk.sum() * 0.25)
    assert row["mean_r"] == pytest.approx(arr[disk][:, 0].mean())  # the pixels as given (16-bit)
    first = df.iloc[0]
    rgb = SCENES[3][0]
    m = s.objects_of(0)[0].mask
    assert first["mean_g"] == pytest.approx(rgb[m][:, 1].mean())
    assert np.isnan(first["score"])  # a mask brought in has no predicted IoU
    df2 = s.measurements()
    assert len(df2) == 4 and df2["score"].iloc[0] == pytest.approx(s.objects_of(0)[0].score)


# ============================================================================ COCO in
def other_tool_coco(tmp_path) -> tuple[Path, dict]:
    """A COCO file as another tool writes it: polygons, uncompressed and compressed RLE, a crowd
    annotation, category ids 7 and 3, image ids 101 / 205, extra keys, no sam_widget fields."""
    write_scenes(tmp_path / "imgs", seeds=(3, 5))
    h, w = SIZE
    square = [[10.0, 10.0, 60.0, 10.0, 60.0, 50.0, 10.0, 50.0]]
    m = np.zeros(SIZE, bool)
    m[100:150, 120:200] = True
    unc = {"size": [h, w], "counts": []}
    flat = m.flatten(order="F")
    run, val = 0, False
    for v in flat:
        if v == val:
            run += 1
        else:
            unc["counts"].append(run)
            run, val = 1, v
    unc["counts"].append(run)
    rle = mask_utils.encode(np.asfortranarray(SCENES[5][1][0].astype(np.uint8)))
    rle["counts"] = rle["counts"].decode()
    coco = {
        "info": {"description": "labelled elsewhere"},
        "licenses": [{"id": 1, "name": "CC"}],
        "images": [{"id": 101, "file_name": "scene_3.png", "height": h, "width": w, "license": 1},
                   {"id": 205, "file_name": "scene_5.png", "height": h, "width": w}],
        "categories": [{"id": 7, "name": "tumour", "supercategory": "tissue"}, {"id": 3, "name": "vessel"}],
        "annotations": [
            {"id": 11, "image_id": 101, "category_id": 7, "segmentation": square, "area": 2000, "bbox": [10, 10, 50, 40], "iscrowd": 0},
            {"id": 12, "image_id": 101, "category_id": 3, "segmentation": unc, "area": int(m.sum()), "bbox": [120, 100, 80, 50], "iscrowd": 1},
            {"id": 13, "image_id": 205, "category_id": 7, "segmentation": rle, "area": 1, "bbox": [0, 0, 1, 1], "iscrowd": 0,
             "attributes": {"occluded": False}},
        ],
    }
    path = tmp_path / "imgs" / "other.json"
    path.write_text(json.dumps(coco))
    return path, coco


def test_a_coco_file_from_another_tool_opens_as_editable_objects(sessions, tmp_path, shapes_seg):
    path, coco = other_tool_coco(tmp_path)
    api = COCO(str(path))
    s = sessions.keep(Session.from_coco(path, segmenter=shapes_seg))
    assert s.images.names == ["scene_3.png", "scene_5.png"]
    assert [o.label for o in s.objects_of(0)] == ["tumour", "vessel"] and [o.label for o in s.objects_of(1)] == ["tumour"]
    for o, ann_id in zip([*s.objects_of(0), *s.objects_of(1)], (11, 12, 13)):
        assert np.array_equal(o.mask, api.annToMask(api.anns[ann_id]).astype(bool))
        assert o.prompts.is_empty and np.isnan(o.score)
    assert "imported 3 objects on 2 images from other.json" in s.status.text()
    # editable: refining the polygon object starts from its mask
    s.wait_ready(60)
    s.edit(0)
    s.add_point(35, 30)
    s.commit()
    assert s.objects_of(0)[0].label == "tumour" and s.objects_of(0)[0].prompts.points == ((35.0, 30.0),)
    # written again: the other tool's category and image ids (and keys) are kept
    out = s.to_coco(tmp_path / "again.json")
    assert out["categories"] == coco["categories"]
    assert [(im["id"], im.get("license")) for im in out["images"]] == [(101, 1), (205, None)]
    assert [a["category_id"] for a in out["annotations"]] == [7, 3, 7]
    s.rename(1, "new label")
    out = s.to_coco()
    assert out["categories"][-1] == {"id": 8, "name": "new label"}


def test_load_coco_adds_objects_to_the_matching_images_undoably(sessions, tmp_path):
    path, _ = other_tool_coco(tmp_path)
    paths = [str(tmp_path / "imgs" / "scene_5.png"), str(tmp_path / "imgs" / "scene_3.png")]
    s = sessions(paths)
    s.add_object(SCENES[5][1][1].copy(), "mine")
    assert s.load_coco(path) == 3
    assert [o.label for o in s.objects] == ["mine", "tumour"]
    assert [o.label for o in s.objects_of(1)] == ["tumour", "vessel"]
    assert [o.id for o in s.objects] == [1, 2]
    s.undo()  # one undo step on the current image
    assert [o.label for o in s.objects] == ["mine"]


def test_bad_coco_input_raises_one_clear_error_and_changes_nothing(sessions, tmp_path):
    path, coco = other_tool_coco(tmp_path)
    s = sessions([str(tmp_path / "imgs" / "scene_3.png")])
    s.add_object(SCENES[3][1][0].copy(), "kept")
    cases = [
        ("unknown_image", {**coco, "images": coco["images"] + [{"id": 9, "file_name": "nope.png", "height": 5, "width": 5}]},
         ValueError, r"names 2 image\(s\) that are not in this session: scene_5.png, nope.png"),
        ("bad_category", {**coco, "annotations": [{**coco["annotations"][0], "category_id": 99}]},
         FormatError, r"'category_id' 99 is not the id of any category"),
        ("other_size", {**coco, "images": [{**coco["images"][0], "height": 100}], "annotations": coco["annotations"][:1]},
         ValueError, r"scene_3.png' is 100 x 256 there but image 1 of the session"),
    ]
    for name, data, exc, match in cases:
        f = tmp_path / f"{name}.json"
        f.write_text(json.dumps(data))
        with pytest.raises(exc, match=match):
            s.load_coco(f)
        assert [o.label for o in s.objects] == ["kept"] and not s.history.can_redo
    truncated = tmp_path / "truncated.json"
    truncated.write_text(json.dumps(coco)[:200])
    with pytest.raises(FormatError, match="truncated") as info:
        s.load_coco(truncated)
    assert str(truncated) in str(info.value)
    with pytest.raises(FormatError, match="truncated"):
        Session.from_coco(truncated)
    with pytest.raises(ValueError, match=r"1 image file\(s\) not found next to .*nope.png.*image_dir="):
        f = tmp_path / "imgs" / "missing.json"
        f.write_text(json.dumps({**coco, "images": [{"id": 101, "file_name": "nope.png", "height": 5, "width": 5}], "annotations": []}))
        Session.from_coco(f)
    with pytest.raises(ValueError, match=r"2 image file\(s\) not found in .*scene_3.png, scene_5.png"):
        Session.from_coco(path, image_dir=tmp_path)
    # outputs that cannot be written: nothing half-written
    with pytest.raises(ValueError, match="does not exist"):
        s.to_coco(tmp_path / "no" / "ann.json")
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="exists and is a file"):
        s.export_png(tmp_path / "afile")
    assert (tmp_path / "afile").read_text() == "x" and not (tmp_path / "no").exists()
    with pytest.raises(ValueError, match="pixel_size"):
        s.measurements(pixel_size=-1)
