"""The session save file (sam_widget.io.write_session / read_session): a COCO file any
reader opens, that restores every image reference, object, colour, prompt and id exactly
in a new process; strict validation on read; atomic writes that survive kill -9."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

import sam_widget.io as sio
from sam_widget.data import shapes_image
from sam_widget.io import FormatError
from sam_widget.state import ObjectRecord, Prompts, object_color

REPO = Path(__file__).resolve().parents[1]


def make_session(tmp_path):
    img, masks = shapes_image(4, (96, 128), 5)
    path = tmp_path / "pics" / "cells.png"
    path.parent.mkdir()
    Image.fromarray(img).save(path)
    arr = np.arange(60 * 80 * 3, dtype=np.uint8).reshape(60, 80, 3)
    objs = [
        ObjectRecord(label=f"cell {i}", color=object_color(i), mask=m, score=0.9 - 0.1 * i,
                     prompts=Prompts(points=((10.0 + i, 20.5),), labels=(1,), box=None), id=i + 1)
        for i, m in enumerate(masks)
    ]
    # one refined object with its candidate and chain, one imported mask (no prompts)
    objs[0] = sio.SessionObject(
        id=1, label="cell 0", color=(1, 2, 3), mask=masks[0], score=0.5,
        prompts={"points": [(3, 4), (9, 9)], "labels": [1, 0], "box": (1, 1, 50, 60), "candidate": 0,
                 "chain": [{"points": [(3, 4)], "labels": [1], "box": None, "candidate": 2}]},
        extra={"note": "refined"},
    )
    imported = np.zeros((60, 80), bool)
    imported[5:20, 10:30] = True
    images = [
        sio.SessionImage(file_name="cells.png", height=96, width=128, path=path, objects=objs, next_object_id=9),
        {"file_name": "array_1", "height": 60, "width": 80, "path": None, "sha256": sio.array_sha256(arr),
         "objects": [{"id": 4, "label": "ünïcode / label", "color": [200, 100, 0], "mask": imported,
                      "score": None, "prompts": Prompts()}], "next_object_id": 5},
        {"file_name": "empty.png", "height": 30, "width": 40, "path": tmp_path / "empty.png"},
    ]
    return images, masks, imported, arr


def test_session_file_is_a_coco_file_for_any_reader(tmp_path):
    images, masks, imported, _ = make_session(tmp_path)
    out = tmp_path / "work.json"
    sio.write_session(out, images, model={"name": "tiny_shapes", "checkpoint": None, "precision": "fp32"})
    api = COCO(str(out))
    assert len(api.imgs) == 3 and len(api.anns) == len(masks) + 1
    for k, m in enumerate(list(masks) + [imported]):
        assert np.array_equal(api.annToMask(api.anns[k + 1]).astype(bool), m)
    ds = sio.read_coco(out)  # our plain COCO reader opens it too
    assert ds.images[1].objects[0].label == "ünïcode / label"


SCRIPT = r"""
import json, sys
import numpy as np
import sam_widget.io as sio
data = sio.read_session(sys.argv[1])
out = {"model": data.model, "index": data.index, "extra": data.extra, "images": []}
for im in data.images:
    out["images"].append({
        "file_name": im.file_name, "size": [im.height, im.width], "path": None if im.path is None else str(im.path),
        "source": im.source, "sha256": im.sha256, "next": im.next_object_id,
        "objects": [{"id": o.id, "label": o.label, "color": list(o.color), "score": o.score,
                     "imported": o.imported, "extra": o.extra,
                     "prompts": None if o.prompts is None else sio.prompts.prompts_to_json(o.prompts),
                     "mask": sio.encode_mask(o.mask)["counts"], "area": int(o.mask.sum())}
                    for o in im.objects]})
np.savez(sys.argv[2] + ".npz", *[o.mask for im in data.images for o in im.objects])
print(json.dumps(out))
"""


def test_session_round_trip_in_a_new_process_is_identical(tmp_path):
    images, masks, imported, arr = make_session(tmp_path)
    out = tmp_path / "work.json"
    sio.write_session(out, images, model={"name": "vit_b", "checkpoint": "/x/sam.pth", "precision": "bf16"},
                      index=1, extra={"autosave": True})
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-c", SCRIPT, str(out), str(tmp_path / "masks")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["model"] == {"name": "vit_b", "checkpoint": "/x/sam.pth", "precision": "bf16"}
    assert got["index"] == 1 and got["extra"] == {"autosave": True}
    a, b, c = got["images"]
    assert (a["file_name"], a["size"], a["source"], a["next"]) == ("cells.png", [96, 128], "file", 9)
    assert a["path"] == str(tmp_path / "pics" / "cells.png")
    assert (b["source"], b["path"], b["sha256"], b["next"]) == ("array", None, sio.array_sha256(arr), 5)
    assert (c["source"], c["objects"], c["next"]) == ("file", [], 1)
    ids = [o["id"] for o in a["objects"]]
    assert ids == list(range(1, len(masks) + 1))
    assert [o["label"] for o in a["objects"]] == [f"cell {i}" for i in range(len(masks))]
    assert a["objects"][0]["color"] == [1, 2, 3]
    assert [o["color"] for o in a["objects"][1:]] == [list(object_color(i)) for i in range(1, len(masks))]
    assert a["objects"][0]["prompts"] == {
        "points": [[3.0, 4.0], [9.0, 9.0]], "labels": [1, 0], "box": [1.0, 1.0, 50.0, 60.0], "candidate": 0,
        "chain": [{"points": [[3.0, 4.0]], "labels": [1], "box": None, "candidate": 2}]}
    assert a["objects"][1]["prompts"] == {"points": [[11.0, 20.5]], "labels": [1], "box": None}
    assert a["objects"][0]["extra"] == {"note": "refined"} and not a["objects"][0]["imported"]
    assert a["objects"][0]["score"] == 0.5
    assert b["objects"][0]["imported"] and b["objects"][0]["prompts"] is None
    assert b["objects"][0]["label"] == "ünïcode / label" and b["objects"][0]["score"] is None
    saved = np.load(str(tmp_path / "masks") + ".npz")
    back = [saved[f"arr_{k}"] for k in range(len(saved.files))]
    for m, r in zip(list(masks) + [imported], back):
        assert r.dtype == bool and np.array_equal(m, r)


def test_write_read_write_gives_the_same_bytes(tmp_path):
    images, *_ = make_session(tmp_path)
    sio.write_session(tmp_path / "a.json", images, model={"name": "m"})
    data = sio.read_session(tmp_path / "a.json")
    sio.write_session(tmp_path / "b.json", data.images, model=data.model, index=data.index, extra=data.extra)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_a_moved_project_folder_finds_its_images_by_relative_path(tmp_path):
    images, *_ = make_session(tmp_path)
    project = tmp_path
    sio.write_session(project / "work.json", images)
    moved = tmp_path.parent / (tmp_path.name + "_moved")
    os.rename(project, moved)
    try:
        data = sio.read_session(moved / "work.json")
        assert data.images[0].path == moved / "pics" / "cells.png"
    finally:
        os.rename(moved, project)


# --------------------------------------------------------------------------- bad files


def _written(tmp_path):
    images, *_ = make_session(tmp_path)
    out = tmp_path / "work.json"
    sio.write_session(out, images)
    return out, json.loads(out.read_text("utf-8"))


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("sam_widget"), "not a sam_widget session file"),
        (lambda d: d["sam_widget"].update(format="labelme"), "not a sam_widget session file"),
        (lambda d: d["sam_widget"].update(version=99), "written by a newer sam_widget"),
        (lambda d: d["sam_widget"].update(index=7), "'sam_widget.index' 7"),
        (lambda d: d["images"][0].pop("sam_widget"), r"images\[0\] 'cells.png': has no 'sam_widget'"),
        (lambda d: d["images"][0]["sam_widget"].update(next_object_id=2), "not below the image's next_object_id 2"),
        (lambda d: d["annotations"][0]["sam_widget"].update(color=[1, 2]), "'color' must be"),
        (lambda d: d["annotations"][0]["sam_widget"].update(imported="no"), "'imported' must be true or false"),
        (lambda d: d["annotations"][1]["sam_widget"].update(object_id=1), "object id 1 is used twice"),
        (lambda d: d["annotations"][0].update(category_id=99), "'category_id' 99 is not the id"),
        (lambda d: d["annotations"][0]["segmentation"].update(size=[5, 5]), "mask size 5 x 5 differs"),
        (lambda d: d["annotations"][0]["sam_widget"]["prompts"].update(labels=[3, 1]), "must be 1 \\(foreground\\) or 0"),
    ],
)
def test_corrupt_or_foreign_session_files_raise_format_error(tmp_path, edit, message):
    out, data = _written(tmp_path)
    edit(data)
    out.write_text(json.dumps(data))
    before = out.read_bytes()
    with pytest.raises(FormatError, match=message) as info:
        sio.read_session(out)
    assert str(out) in str(info.value)
    assert out.read_bytes() == before  # reading never writes


def test_truncated_session_file(tmp_path):
    out, _ = _written(tmp_path)
    data = out.read_bytes()
    for cut in (1, len(data) // 3, len(data) - 1):
        out.write_bytes(data[:cut])
        with pytest.raises(FormatError, match="truncated|not valid JSON"):
            sio.read_session(out)


def test_a_plain_coco_file_is_not_a_session(tmp_path):
    sio.to_coco([(4, 4)], [np.ones((1, 4, 4), bool)], path=tmp_path / "c.json")
    with pytest.raises(FormatError, match="use read_coco"):
        sio.read_session(tmp_path / "c.json")


def test_write_session_rejects_bad_objects_before_touching_the_file(tmp_path):
    images, masks, *_ = make_session(tmp_path)
    out = tmp_path / "work.json"
    sio.write_session(out, images)
    before = out.read_bytes()
    bad = [
        ({"objects": [{"id": 1, "label": "a", "color": (1, 2, 3), "mask": np.ones((5, 5), bool)}]}, r"mask has shape \(5, 5\)"),
        ({"objects": [{"id": 0, "label": "a", "color": (1, 2, 3), "mask": np.ones((96, 128), bool)}]}, "id must be a whole number >= 1"),
        ({"objects": [{"id": 1, "label": "a", "color": (1, 2, 300), "mask": np.ones((96, 128), bool)}]}, "color must be 3 whole numbers"),
        ({"objects": [{"id": 3, "label": "a", "color": (1, 2, 3), "mask": np.ones((96, 128), bool)}], "next_object_id": 2}, "next_object_id"),
        ({"extra": {"f": object()}}, "must be JSON-serialisable"),
    ]
    for change, message in bad:
        image = {"file_name": "x.png", "height": 96, "width": 128, "path": None, **change}
        with pytest.raises(ValueError, match=message):
            sio.write_session(out, images[:1] + [image])
    with pytest.raises(ValueError, match="index must be"):
        sio.write_session(out, images, index=3)
    assert out.read_bytes() == before


WRITER = r"""
import sys
import numpy as np
import sam_widget.io as sio
path = sys.argv[1]
rng = np.random.default_rng(0)
objects = []
k = 0
while True:
    k += 1
    m = np.zeros((300, 400), bool)
    y, x = rng.integers(0, 250), rng.integers(0, 350)
    m[y:y + 40, x:x + 40] = True
    objects.append({"id": k, "label": f"o{k}", "color": (1, 2, 3), "mask": m, "score": 0.5, "prompts": None})
    sio.write_session(path, [{"file_name": "a.png", "height": 300, "width": 400, "path": None, "objects": objects}])
    if k == 1:
        print("ready", flush=True)
"""


def test_kill_9_during_writes_leaves_a_complete_file(tmp_path):
    out = tmp_path / "auto.json"
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rnd = random.Random(1)
    counts = []
    for _ in range(6):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"ready"
        time.sleep(rnd.uniform(0.0, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        data = sio.read_session(out)  # never torn
        objs = data.images[0].objects
        assert [o.id for o in objs] == list(range(1, len(objs) + 1))  # a prefix of the commits
        counts.append(len(objs))
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "auto.json"]
    # a kill between mkstemp and os.replace may leave a hidden temporary file, never a torn target
    assert all(name.startswith(".auto.json.") and name.endswith(".tmp") for name in leftovers)
    assert max(counts) >= 1
