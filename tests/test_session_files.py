"""Never lose work: Session.save / Session.load (a new process restores everything and editing
continues), autosave (every committed change on disk within a second, off the click path, a
kill -9 at any moment leaves a complete file holding a prefix of the commits), and bad files.

Masks come from the shipped ``tiny_shapes`` model on ``shapes_image`` scenes; files are read
back by ``sam_widget.io.read_session`` and pycocotools; nothing here asserts a duration.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

import sam_widget.io as sio
from sam_widget import Session
from sam_widget.data import shapes_image
from sam_widget.io import FormatError
from sam_widget.session import autosave as autosave_mod
from sam_widget.session.autosave import due_at
from sam_widget.session.provenance import replay_logits
from sam_widget.state import Prompts

REPO = Path(__file__).resolve().parents[1]
SIZE = (192, 256)
SCENES = {seed: shapes_image(seed, size=SIZE) for seed in (3, 5, 8)}


@pytest.fixture
def sessions():
    made: list[Session] = []

    def make(*args, **kwargs) -> Session:
        s = Session(*args, **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def inside(mask: np.ndarray, k: int = 0) -> tuple[int, int]:
    """(x, y) of a pixel well inside ``mask`` (its median pixel in scan order, shifted by k)."""
    ys, xs = np.nonzero(mask)
    i = (len(ys) // 2 + k) % len(ys)
    return int(xs[i]), int(ys[i])


def write_scenes(folder: Path, seeds=(3, 5)) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for seed in seeds:
        p = folder / f"scene_{seed}.png"
        Image.fromarray(SCENES[seed][0]).save(p)
        out.append(str(p))
    return out


def child_env() -> dict:
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))


def wait_for(cond, timeout=30.0, what="condition"):
    """Poll ``cond()`` until true (a wait, not a timed assertion: the limit is only a safety net)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {timeout} s")


def saved_labels(path) -> list[list[str]]:
    return [[o.label for o in im.objects] for im in sio.read_session(path).images]


# ============================================================================ save / load
def build_session(sessions, tmp_path) -> tuple[Session, np.ndarray, list[str]]:
    """Two files and one in-memory image, with refined, re-chosen, renamed, deleted and imported objects."""
    paths = write_scenes(tmp_path / "pics")
    arr = SCENES[8][0]
    s = sessions(paths + [arr], model="tiny_shapes")
    s.wait_ready(120)
    m = SCENES[3][1]
    s.add_point(*inside(m[0]))
    s.add_point(*inside(m[0], 7))  # a refinement step: one mask from the first step's logits
    s.commit("cell")
    s.add_point(*inside(m[1]))
    s.select(2)  # another candidate than the best one
    s.commit("other")
    s.add_box(0, 0, 40, 30)
    s.commit("gone")
    s.delete(2)
    s.rename(1, "nucleus ü/2")
    s.next()
    s.add_point(*inside(SCENES[5][1][0]))
    s.commit()
    blob = np.zeros(SIZE, bool)
    blob[10:40, 20:70] = True
    s.add_object(blob, "imported")
    s.next()
    s.add_point(*inside(SCENES[8][1][0]))
    s.commit("in memory")
    s.goto(1)
    return s, arr, paths


LOAD_CHILD = r"""
import json, os, sys
import numpy as np
import torch
torch.set_num_threads(1)
from sam_widget import Session
from sam_widget.session.provenance import replay_logits
path, arr_path, out, neg, new = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4]), json.loads(sys.argv[5])
s = Session.load(path, images=[np.load(arr_path)])
s.wait_ready(120)
info = {"index": s.index, "status": s.status.text(), "names": list(s.images.names), "can_undo": s.history.can_undo,
        "model": s.segmenter.model_name, "images": []}
arrays = {}
for i in range(len(s.images)):
    r = s.results[i]
    objs = []
    for k, o in enumerate(r.objects):
        arrays[f"mask_{i}_{k}"] = o.mask
        objs.append({"id": o.id, "label": o.label, "color": list(o.color), "score": None if o.score != o.score else o.score,
                     "prompts": [[list(p) for p in o.prompts.points], list(o.prompts.labels), None if o.prompts.box is None else list(o.prompts.box)],
                     "candidate": o.candidate, "chain": [[[list(p) for p in q.points], list(q.labels), c] for q, c in o.chain]})
    info["images"].append({"next": r.next_object_id, "objects": objs})
# the loaded object's logits, replayed from its chain
s.goto(0)
rgb = s.image
seg = s.segmenter
seg.set_image(rgb)
logits = replay_logits(seg.predict, s.objects[0])
info["replayed"] = logits is not None
if logits is not None:
    arrays["logits"] = logits
# editing continues: refine object 0 with a negative point, replace it, add a new object
s.edit(0)
s.add_point(*neg, label=0)
arrays["refined"] = s.mask
s.commit()
s.add_point(*new)
info["new_id"] = s.commit("new").id
np.savez(out, **arrays)
print(json.dumps(info), flush=True)
os._exit(0)
"""


def test_save_then_load_in_a_new_process_restores_everything_and_editing_continues(sessions, tmp_path):
    s, arr, paths = build_session(sessions, tmp_path)
    out = s.save(tmp_path / "work.json")
    assert out == tmp_path / "work.json"
    np.save(tmp_path / "arr.npy", arr)
    neg, new = inside(SCENES[3][1][0], 40), inside(SCENES[3][1][2])
    res = subprocess.run(
        [sys.executable, "-c", LOAD_CHILD, str(out), str(tmp_path / "arr.npy"), str(tmp_path / "child.npz"),
         json.dumps(neg), json.dumps(new)],
        capture_output=True, text=True, env=child_env(), timeout=300,
    )
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    arrays = np.load(tmp_path / "child.npz")
    assert got["index"] == 1 and got["model"] == "tiny_shapes"
    assert got["names"] == ["scene_3.png", "scene_5.png", "image 3"]
    assert "loaded 5 objects on 3 images from work.json" in got["status"]
    assert got["can_undo"] is False  # the undo history starts fresh (documented)
    for i, image in enumerate(got["images"]):
        mine = s.objects_of(i)
        assert image["next"] == s.results[i].next_object_id
        assert [o["id"] for o in image["objects"]] == [o.id for o in mine]
        assert [o["label"] for o in image["objects"]] == [o.label for o in mine]
        assert [tuple(o["color"]) for o in image["objects"]] == [o.color for o in mine]
        for k, (o, ref) in enumerate(zip(image["objects"], mine)):
            assert np.array_equal(arrays[f"mask_{i}_{k}"], ref.mask)
            assert (o["score"] is None) == (ref.score != ref.score)
            if o["score"] is not None:
                assert o["score"] == pytest.approx(ref.score, abs=0)
            assert o["prompts"] == [[list(p) for p in ref.prompts.points], list(ref.prompts.labels),
                                    None if ref.prompts.box is None else list(ref.prompts.box)]
            assert o["candidate"] == ref.candidate
            assert o["chain"] == [[[list(p) for p in q.points], list(q.labels), c] for q, c in ref.chain]
    cell, other = s.objects_of(0)
    assert cell.candidate == 0 and len(cell.chain) == 1 and cell.chain[0][0].points == (tuple(map(float, inside(SCENES[3][1][0]))),)
    assert other.candidate == 2 and other.chain == () and other.label == "nucleus ü/2"
    assert s.objects_of(1)[1].candidate is None and s.objects_of(1)[1].prompts == Prompts()  # imported
    # the replayed logits are the committed ones, bit for bit, so refining goes on exactly as before saving
    assert got["replayed"] and np.array_equal(arrays["logits"], cell.logits)
    s.goto(0)
    s.edit(0)
    s.add_point(*neg, label=0)
    assert np.array_equal(arrays["refined"], s.mask)
    assert got["new_id"] == s.results[0].next_object_id  # ids go on counting


def test_the_session_file_is_a_coco_file_pycocotools_opens(sessions, tmp_path):
    s, _arr, paths = build_session(sessions, tmp_path)
    s.save(tmp_path / "work.json")
    api = COCO(str(tmp_path / "work.json"))
    assert [api.imgs[i]["file_name"] for i in sorted(api.imgs)] == ["scene_3.png", "scene_5.png", "image 3"]
    masks = [o.mask for i in range(3) for o in s.objects_of(i)]
    assert len(api.anns) == len(masks)
    for k, m in enumerate(masks):
        assert np.array_equal(api.annToMask(api.anns[k + 1]).astype(bool), m)
    ext = json.loads((tmp_path / "work.json").read_text())["images"][2]["sam_widget"]
    assert ext["source"] == "array" and ext["path"] is None and ext["sha256"] == sio.array_sha256(SCENES[8][0])


def test_in_memory_images_must_be_given_again_and_are_checked(sessions, tmp_path, shapes_seg):
    s, arr, _ = build_session(sessions, tmp_path)
    s.save(tmp_path / "work.json")
    with pytest.raises(ValueError, match=r"1 image\(s\) that were given in memory \(image 3 \('image 3'\), 192 x 256\).*images="):
        Session.load(tmp_path / "work.json", segmenter=shapes_seg)
    other = arr.copy()
    other[0, 0] ^= 1
    with pytest.raises(ValueError, match=r"image 3 \('image 3'\) is not the one saved: its pixels differ"):
        Session.load(tmp_path / "work.json", images=[other], segmenter=shapes_seg)
    with pytest.raises(ValueError, match="give one entry per image"):
        Session.load(tmp_path / "work.json", images=[arr, arr], segmenter=shapes_seg)
    # one entry per image (None: as saved) and {name: array} work too
    for images in ([None, None, arr], {"image 3": arr}, {2: arr}):
        loaded = Session.load(tmp_path / "work.json", images=images, segmenter=shapes_seg)
        try:
            assert [o.label for o in loaded.objects_of(2)] == ["in memory"]
        finally:
            loaded.close()


def test_a_single_image_comes_back_as_a_single_image(sessions, tmp_path, shapes_seg):
    path = write_scenes(tmp_path, seeds=(3,))[0]
    s = sessions(path, segmenter=shapes_seg)
    s.add_point(*inside(SCENES[3][1][0]))
    s.commit("one")
    s.save(tmp_path / "one.json")
    loaded = Session.load(tmp_path / "one.json", segmenter=shapes_seg)
    try:
        assert loaded.single and loaded.images.path(0) == path
        assert [o.label for o in loaded.objects] == ["one"]
    finally:
        loaded.close()


def test_bad_save_paths_and_bad_files_raise_one_clear_error_and_touch_nothing(sessions, tmp_path, shapes_seg):
    paths = write_scenes(tmp_path)
    s = sessions(paths, segmenter=shapes_seg)
    s.add_point(*inside(SCENES[3][1][0]))
    s.commit()
    with pytest.raises(ValueError, match="directory .*missing.* does not exist"):
        s.save(tmp_path / "missing" / "work.json")
    assert not (tmp_path / "missing").exists()
    with pytest.raises(ValueError, match="is a directory"):
        s.save(tmp_path)
    with pytest.raises(TypeError):
        s.save(42)
    with pytest.raises(ValueError, match="needs a path"):
        s.save()
    good = s.save(tmp_path / "work.json")
    before = good.read_bytes()
    cases = {
        "truncated.json": before[: len(before) // 2],
        "empty.json": b"",
        "not_json.json": b"\x89PNG...",
        "plain_coco.json": json.dumps(sio.to_coco([SIZE], [np.ones((1, *SIZE), bool)])).encode(),
        "list.json": b"[1, 2]",
    }
    for name, data in cases.items():
        f = tmp_path / name
        f.write_bytes(data)
        with pytest.raises(FormatError) as info:
            Session.load(f, segmenter=shapes_seg)
        assert str(f) in str(info.value)
        assert f.read_bytes() == data
    with pytest.raises(FormatError, match="does not exist"):
        Session.load(tmp_path / "nope.json", segmenter=shapes_seg)
    assert good.read_bytes() == before


def test_an_image_file_that_changed_size_since_saving_is_refused(sessions, tmp_path, shapes_seg):
    paths = write_scenes(tmp_path)
    s = sessions(paths, segmenter=shapes_seg)
    s.add_point(*inside(SCENES[3][1][0]))
    s.commit()
    s.save(tmp_path / "work.json")
    Image.fromarray(np.zeros((50, 60, 3), np.uint8)).save(paths[0])
    with pytest.raises(ValueError, match=r"scene_3.png'\) is 50 x 60 but its saved masks are 192 x 256"):
        Session.load(tmp_path / "work.json", segmenter=shapes_seg)


def test_a_missing_image_file_keeps_its_objects_and_shows_its_error(sessions, tmp_path, shapes_seg):
    paths = write_scenes(tmp_path)
    s = sessions(paths, segmenter=shapes_seg)
    s.add_point(*inside(SCENES[3][1][0]))
    s.commit("kept")
    s.save(tmp_path / "work.json")
    os.remove(paths[0])
    loaded = Session.load(tmp_path / "work.json", segmenter=shapes_seg)
    try:
        assert loaded.status.phase == "unreadable" and "scene_3.png" in loaded.status.text()
        assert [o.label for o in loaded.objects_of(0)] == ["kept"]
        assert loaded.results[0].labels.shape == SIZE
        loaded.save(tmp_path / "again.json")  # the reference and the objects stay in the file
        assert saved_labels(tmp_path / "again.json") == [["kept"], []]
    finally:
        loaded.close()


def test_the_refinement_chain_and_candidate_of_edits(sessions, shapes_seg):
    img, masks = SCENES[3]
    s = sessions(img, segmenter=shapes_seg)
    s.add_point(*inside(masks[0]))
    s.commit("a")
    a = s.objects[0]
    assert a.chain == () and a.candidate is not None
    s.edit(0)
    s.add_point(*inside(masks[0], 30))
    s.commit()
    refined = s.objects[0]
    # its chain: the object's own first step, then the refinement
    assert refined.candidate == 0 and [(p.points, c) for p, c in refined.chain] == [(a.prompts.points, a.candidate)]
    s.edit(0)
    s.commit()  # committed again without new prompts: unchanged provenance
    assert s.objects[0].candidate == refined.candidate and s.objects[0].chain == refined.chain
    s.edit(0)
    s.add_point(*inside(masks[0], 60))
    s.commit()
    twice = s.objects[0]
    assert len(twice.chain) == 2
    seg = s.segmenter
    with seg.exclusive():
        seg.set_image(img)
        assert np.array_equal(replay_logits(seg.predict, twice), twice.logits)


# ============================================================================ autosave
def test_due_at_debounces_a_burst_and_bounds_the_delay():
    assert due_at(first=10.0, last=10.0, quiet_s=0.25, max_delay_s=0.75) == 10.25
    assert due_at(first=10.0, last=10.2, quiet_s=0.25, max_delay_s=0.75) == 10.45  # still quiet-bound
    assert due_at(first=10.0, last=10.6, quiet_s=0.25, max_delay_s=0.75) == 10.75  # a stream: at most 0.75 s late


def test_autosave_writes_every_committed_change_on_its_own_thread(sessions, tmp_path, shapes_seg, monkeypatch):
    threads = []
    from sam_widget.session import persist

    original = persist.save_session

    def recording(session, path):
        threads.append(threading.current_thread().name)
        return original(session, path)

    monkeypatch.setattr(persist, "save_session", recording)  # the autosaver looks it up at each write
    paths = write_scenes(tmp_path)
    work = tmp_path / "work.json"
    s = sessions(paths, segmenter=shapes_seg, autosave=work)
    s.wait_ready(60)
    assert s.autosave == work and not work.exists()
    m = SCENES[3][1]

    def on_disk(expected):
        wait_for(lambda: work.exists() and saved_labels(work) == expected, what=f"file holding {expected}")

    s.add_point(*inside(m[0]))
    assert not work.exists() or saved_labels(work) == [[], []]  # prompts are not committed changes
    s.commit("a")
    on_disk([["a"], []])
    s.undo()
    on_disk([[], []])
    s.redo()
    on_disk([["a"], []])
    s.rename(0, "b")
    on_disk([["b"], []])
    s.add_object(m[1].copy(), "added")
    on_disk([["b", "added"], []])
    s.set_objects(np.where(m[2], 3, 0))
    on_disk([["object 3"], []])
    s.delete(0)
    on_disk([[], []])
    s.next()
    wait_for(lambda: sio.read_session(work).index == 1, what="index 1 on disk")
    s.add_point(*inside(SCENES[5][1][0]))
    s.commit("on b")
    on_disk([[], ["on b"]])
    s.edit(0)
    s.add_point(*inside(SCENES[5][1][0], 20), label=1)
    s.commit()
    wait_for(lambda: sio.read_session(work).images[1].objects[0].prompts.chain, what="edit on disk")
    assert threads and set(threads) == {"SamWidget-autosave"}  # never the caller's (click) thread


def test_a_burst_of_changes_gives_one_write(sessions, tmp_path, shapes_seg, monkeypatch):
    monkeypatch.setattr(autosave_mod, "QUIET_S", 60.0)  # nothing is written by the thread during this test
    monkeypatch.setattr(autosave_mod, "MAX_DELAY_S", 120.0)
    work = tmp_path / "work.json"
    s = sessions(SCENES[3][0], segmenter=shapes_seg, autosave=work)
    for k in range(20):
        blob = np.zeros(SIZE, bool)
        blob[k : k + 5, 10:20] = True
        s.add_object(blob, f"o{k}")
    saver = s._files.autosaver
    assert saver.pending and saver.writes == 0 and not work.exists()
    assert s.save() == work  # save(): write the autosave file now
    assert saver.writes == 1 and not saver.pending
    assert saved_labels(work) == [[f"o{k}" for k in range(20)]]


def test_closing_writes_what_is_pending(tmp_path, shapes_seg, monkeypatch):
    monkeypatch.setattr(autosave_mod, "QUIET_S", 60.0)
    monkeypatch.setattr(autosave_mod, "MAX_DELAY_S", 120.0)
    work = tmp_path / "work.json"
    s = Session(SCENES[3][0], segmenter=shapes_seg, autosave=work)
    s.add_object(SCENES[3][1][0].copy(), "late")
    s.close()
    assert saved_labels(work) == [["late"]]


def test_a_new_session_restores_the_autosave_file_and_says_so(sessions, tmp_path, shapes_seg):
    paths = write_scenes(tmp_path)
    arr = SCENES[8][0]
    work = tmp_path / "work.json"
    s = Session(paths + [arr], segmenter=shapes_seg, autosave=work)
    for i, (seed, label) in enumerate([(3, "x"), (5, "y"), (8, "z")]):
        s.goto(i)
        s.add_point(*inside(SCENES[seed][1][0]))
        s.commit(label)
    s.add_point(*inside(SCENES[8][1][1]))
    s.commit("z2")
    s.goto(1)
    s.close()
    # the same images in another order (files matched by path, the array by its pixels)
    t = sessions([arr, paths[1], paths[0]], segmenter=shapes_seg, autosave=work)
    assert [[o.label for o in t.objects_of(i)] for i in range(3)] == [["z", "z2"], ["y"], ["x"]]
    assert t.index == 1
    assert "restored 4 objects on 3 images from work.json" in t.status.text()
    assert t.results[0].next_object_id == 3
    t.add_point(*inside(SCENES[5][1][1]))
    t.commit("more")
    assert t.notice is None and "restored" not in t.status.text()  # until the first change
    wait_for(lambda: saved_labels(work) == [["z", "z2"], ["y", "more"], ["x"]], what="the new work on disk")


def test_a_corrupt_or_foreign_autosave_file_is_refused_and_never_overwritten(tmp_path, shapes_seg):
    paths = write_scenes(tmp_path)
    work = tmp_path / "work.json"
    for data in (b'{"images": [', b"garbage", json.dumps(sio.to_coco([SIZE], [None])).encode()):
        work.write_bytes(data)
        with pytest.raises(FormatError, match="autosave file cannot be restored.*not changed; move it aside") as info:
            Session(paths, segmenter=shapes_seg, autosave=work)
        assert str(work) in str(info.value)
        assert work.read_bytes() == data
    # objects on images that are not in the new session: refused too (writing would lose them)
    s = Session(paths, segmenter=shapes_seg, autosave=work.with_name("w2.json"))
    s.add_point(*inside(SCENES[3][1][0]))
    s.commit()
    s.close()
    before = work.with_name("w2.json").read_bytes()
    with pytest.raises(ValueError, match=r"objects on 1 image\(s\) that are not in this session: scene_3.png \(1 object\)"):
        Session(paths[1:], segmenter=shapes_seg, autosave=work.with_name("w2.json"))
    assert work.with_name("w2.json").read_bytes() == before


def test_bad_autosave_arguments_raise_in_the_constructor(tmp_path, shapes_seg):
    with pytest.raises(ValueError, match="autosave file .* directory .* does not exist"):
        Session(SCENES[3][0], segmenter=shapes_seg, autosave=tmp_path / "no" / "work.json")
    with pytest.raises(ValueError, match="is a directory"):
        Session(SCENES[3][0], segmenter=shapes_seg, autosave=tmp_path)
    with pytest.raises(TypeError, match="autosave must be a file path"):
        Session(SCENES[3][0], segmenter=shapes_seg, autosave=True)
    other = tmp_path / "other.json"
    Session(SCENES[3][0], segmenter=shapes_seg).close()
    s = Session(SCENES[3][0], segmenter=shapes_seg)
    s.add_object(SCENES[3][1][0].copy())
    s.to_coco(tmp_path / "a_coco.json")
    s.save(other)
    s.close()
    before = other.read_bytes()
    with pytest.raises(ValueError, match="exists and holds other work"):
        Session.from_coco(tmp_path / "a_coco.json", images=[SCENES[3][0]], segmenter=shapes_seg, autosave=other)
    with pytest.raises(TypeError, match="autosave must be True or False"):
        Session.load(other, images=[SCENES[3][0]], segmenter=shapes_seg, autosave=str(other))
    assert other.read_bytes() == before


def test_a_failed_autosave_write_is_reported_and_retried(sessions, tmp_path, shapes_seg):
    folder = tmp_path / "out"
    folder.mkdir()
    work = folder / "work.json"
    s = sessions(SCENES[3][0], segmenter=shapes_seg, autosave=work)
    folder.rmdir()
    s.add_object(SCENES[3][1][0].copy(), "first")
    wait_for(lambda: "autosave to" in s.status.text(), what="the error in the status line")
    assert "failed" in s.status.text()
    folder.mkdir()
    s.add_object(SCENES[3][1][1].copy(), "second")
    wait_for(lambda: work.exists() and saved_labels(work) == [["first", "second"]], what="the retried write")
    wait_for(lambda: "autosave" not in s.status.text(), what="the error cleared")


def test_load_with_autosave_keeps_saving_into_the_file(tmp_path, shapes_seg):
    path = write_scenes(tmp_path, seeds=(3,))[0]
    s = Session(path, segmenter=shapes_seg)
    s.add_object(SCENES[3][1][0].copy(), "a")
    s.save(tmp_path / "work.json")
    s.close()
    t = Session.load(tmp_path / "work.json", segmenter=shapes_seg, autosave=True)
    try:
        t.add_object(SCENES[3][1][1].copy(), "b")
        wait_for(lambda: saved_labels(tmp_path / "work.json") == [["a", "b"]], what="the change on disk")
    finally:
        t.close()


KILL_CHILD = r"""
import json, sys
import torch
torch.set_num_threads(1)
from sam_widget import Session
paths, work, points = sys.argv[1:3], sys.argv[3], json.loads(sys.argv[4])
s = Session(paths, model="tiny_shapes", autosave=work, prefetch=False)
s.wait_ready(120)
n = len(s.objects_of(0))
print("ready", n, flush=True)
tries = n
while True:
    x, y = points[tries % len(points)]
    tries += 1
    s.add_point(x, y)
    try:
        s.commit(f"c{n + 1}")
    except ValueError:  # an empty mask: try the next point
        s.clear()
        continue
    n += 1
"""


def test_kill_9_at_random_moments_leaves_a_file_holding_a_prefix_of_the_commits(tmp_path):
    """A subprocess commits in a loop with autosave on and is killed with SIGKILL, 20 times.
    Every time the file loads, and holds the commits c1..cK in order (K never goes back);
    each new process restores exactly what is on disk and goes on from there."""
    paths = write_scenes(tmp_path / "pics")
    work = tmp_path / "work.json"
    points = [inside(m, k) for m in SCENES[3][1] for k in (0, 25)]
    rnd = random.Random(14)
    done = 0
    kept = []
    for _ in range(20):
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_CHILD, *paths, str(work), json.dumps(points)],
            stdout=subprocess.PIPE, env=child_env(),
        )
        try:
            line = proc.stdout.readline().decode().split()
            assert line[:1] == ["ready"], line
            assert int(line[1]) == done  # the new process restored exactly what was on disk
            time.sleep(rnd.uniform(0.0, 1.5))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        if not work.exists():
            assert done == 0
            continue
        data = sio.read_session(work)  # never torn
        objs = data.images[0].objects
        k = len(objs)
        assert k >= done
        assert [o.label for o in objs] == [f"c{j}" for j in range(1, k + 1)]
        assert [o.id for o in objs] == list(range(1, k + 1))
        assert all(o.mask.any() and o.prompts is not None and len(o.prompts.points) == 1 for o in objs)
        assert data.images[1].objects == []
        done = k
        kept.append(k)
    assert done > 0 and len(set(kept)) > 1  # commits reached the disk, across several kills
    leftovers = [p.name for p in tmp_path.iterdir() if p.name not in ("work.json", "pics")]
    assert all(n.startswith(".work.json.") and n.endswith(".tmp") for n in leftovers)  # never a torn target


def test_the_save_load_benchmark_runs_end_to_end():
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "session_files_bench.py"), "--size", "200x300", "--objects", "6",
         "--images", "2", "--reps", "1"],
        capture_output=True, text=True, env=child_env(), timeout=600,
    )
    assert res.returncode == 0, res.stderr
    assert "Session save / load: 6 objects on 2 image(s) of 200x300" in res.stdout
    for what in ("| save (", "| load, new process: `Session.load` returns", "| load, same process"):
        assert what in res.stdout


EXIT_CHILD = r"""
import sys
import numpy as np
from sam_widget.session import autosave
autosave.QUIET_S, autosave.MAX_DELAY_S = 600.0, 600.0   # the thread would not write before the end
from sam_widget import Session
s = Session(np.zeros((40, 50, 3), np.uint8), model="tiny_shapes", autosave=sys.argv[1], prefetch=False)
m = np.zeros((40, 50), bool); m[5:9, 5:9] = True
s.add_object(m, "at exit")
print("added", flush=True)
"""


def test_the_end_of_the_process_writes_what_autosave_has_pending(tmp_path):
    work = tmp_path / "work.json"
    res = subprocess.run([sys.executable, "-c", EXIT_CHILD, str(work)], capture_output=True, text=True,
                         env=child_env(), timeout=300)
    assert "added" in res.stdout, res.stderr
    assert saved_labels(work) == [["at exit"]]  # written by the atexit hook (no close() was called)
