"""SamWidget's files: autosave of clicks made in the page, restore on start (drawn, and said in
the status line), SamWidget.load, and export / import forwarded to the session.

Events go in through ipyevents' message path (``EventInjector``); what the page shows comes
out of the recorded canvas messages (``RecordingComm``, ``LayerReplay``).
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

import sam_widget.io as sio
from sam_widget import SamWidget, Session
from sam_widget.data import shapes_image
from sam_widget.render import resize_mask
from sam_widget.testing import OBJECTS, EventInjector, LayerReplay, layer_commands

SIZE = (150, 200)
SCENES = [shapes_image(seed, size=SIZE) for seed in (3, 5)]


@pytest.fixture
def paths(tmp_path):
    out = []
    for k, (img, _) in enumerate(SCENES):
        p = tmp_path / f"scene_{k}.png"
        Image.fromarray(img).save(p)
        out.append(str(p))
    return out


def inside(mask, k=0):
    ys, xs = np.nonzero(mask)
    i = (len(ys) // 2 + k) % len(ys)
    return int(xs[i]), int(ys[i])


def covered(w, comm) -> np.ndarray:
    return LayerReplay(w._view.size_hw).apply(layer_commands(w, comm, OBJECTS)).covered


def wait_for(cond, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("not reached")


def test_clicks_in_the_page_are_autosaved_and_a_new_widget_restores_and_draws_them(comm, shapes_seg, paths, tmp_path):
    work = tmp_path / "work.json"
    w = SamWidget(paths, segmenter=shapes_seg, display_size=200, autosave=work).wait_ready(60)
    try:
        ui = EventInjector(w)
        ui.click_image(*inside(SCENES[0][1][0]))
        w.wait_idle()
        ui.key("Enter")
        first = w.objects[0]
        ui.key("ArrowRight")
        ui.click_image(*inside(SCENES[1][1][0]))
        w.wait_idle()
        ui.key("Enter")
        wait_for(lambda: work.exists() and [len(im.objects) for im in sio.read_session(work).images] == [1, 1])
    finally:
        w.close()
    v = SamWidget(paths, segmenter=shapes_seg, display_size=200, autosave=work).wait_ready(60)
    try:
        assert v.index == 1 and v.results[0].objects[0].label == first.label
        assert np.array_equal(v.results[0].objects[0].mask, first.mask)
        assert "restored 2 objects on 2 images from work.json" in v._controls.status.value
        assert np.array_equal(covered(v, comm), resize_mask(v.objects[0].mask, v._display_hw))  # drawn
        EventInjector(v).key("ArrowLeft")
        assert np.array_equal(covered(v, comm), resize_mask(first.mask, v._display_hw))
    finally:
        v.close()


def test_save_and_load_a_widget(comm, shapes_seg, paths, tmp_path):
    w = SamWidget(paths, segmenter=shapes_seg, display_size=200).wait_ready(60)
    try:
        w.add_point(*inside(SCENES[0][1][1]))
        obj = w.commit("saved")
        assert w.save(tmp_path / "s.json") == tmp_path / "s.json"
    finally:
        w.close()
    v = SamWidget.load(tmp_path / "s.json", segmenter=shapes_seg, display_size=200)
    assert v.objects[0].label == "saved" and np.array_equal(v.objects[0].mask, obj.mask)
    assert "loaded 1 object on 1 image from s.json" in v._controls.status.value
    session = v.session
    v.close()
    assert session.closed  # a widget made by load owns its session
    s = Session(paths, segmenter=shapes_seg)
    try:
        with pytest.raises(ValueError, match="autosave belongs to the session"):
            SamWidget(s, autosave=tmp_path / "x.json")
    finally:
        s.close()


def test_export_and_import_from_the_widget(comm, shapes_seg, paths, tmp_path):
    w = SamWidget(paths, segmenter=shapes_seg, display_size=200).wait_ready(60)
    try:
        w.add_point(*inside(SCENES[0][1][0]))
        w.commit("a")
        w.next()
        w.add_point(*inside(SCENES[1][1][0]))
        w.commit("b")
        coco = w.to_coco(tmp_path / "ann.json", polygons=True)
        assert len(coco["images"]) == 2 and len(COCO(str(tmp_path / "ann.json")).anns) == 2
        w.export_png(tmp_path / "png")
        with Image.open(tmp_path / "png" / "scene_1_labels.png") as im:
            assert np.array_equal(np.asarray(im).astype(np.int32), w.labels)
        df = w.measurements()
        assert list(df["label"]) == ["a", "b"] and list(df["image"]) == ["scene_0.png", "scene_1.png"]
        w.to_coco(tmp_path / "rle.json")
    finally:
        w.close()
    v = SamWidget.from_coco(tmp_path / "rle.json", segmenter=shapes_seg, display_size=200)
    try:
        assert [len(r.objects) for r in v.results] == [1, 1] and v.results[1].objects[0].label == "b"
        assert v.load_coco(tmp_path / "rle.json") == 2
        assert [o.label for o in v.objects] == ["a", "a"]
        assert np.array_equal(covered(v, comm), resize_mask(v.objects[0].mask, v._display_hw))
    finally:
        v.close()
