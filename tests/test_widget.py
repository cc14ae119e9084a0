"""SamWidget, driven the way a user drives it: through the real widget message paths.

Browser events go in through ipyevents' ``Event._handle_msg`` with the fields the front end
sends (CSS pixels, a canvas shown larger than its pixel size); drawings come out through a
recording comm in place of ipycanvas' canvas manager, and are decoded and replayed into
pixels. Every mask is compared bit for bit with ``Segmenter(sam, exact=True).predict`` at the
same image coordinates and with the ``mask_input`` SamPredictor's interactive recipe asks for.

Models: ``tiny_sam`` (random weights, conftest) for parity; ``blob_sam()`` (widget_driver)
where a test needs masks that cover a small, known part of the image.
"""

from __future__ import annotations

import gc
import math
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from conftest import make_image
from sam_widget import SamWidget, Segmenter
from sam_widget.render import fit_size, resize_mask, resize_rgb
from sam_widget.state import object_color
from sam_widget.ui.widget import _PREVIEW_COLOR
from sam_widget.testing import (
    CURRENT,
    IMAGE,
    OBJECTS,
    PROMPTS,
    EventInjector,
    LayerReplay,
    frontend_click,
    frontend_update,
    layer_commands,
    prompt_layer,
)
from widget_driver import SlowSegmenter, blob_sam
import mask_look as look
from sam_widget.render import OUTLINE_DARK

ZOOM = 1.37  # the page shows the canvas 1.37x its pixel size (browser zoom): CSS px != canvas px
SMALL = make_image(333, 517, seed=1)  # shown at 200 px: 129 x 200
BIG = make_image(1200, 1600, seed=2)  # shown at 400 px: 300 x 400
SMALL.setflags(write=False)
BIG.setflags(write=False)

SCALES = [
    pytest.param(SMALL, 200, (129, 200), id="517x333-at-200"),
    pytest.param(BIG, 400, (300, 400), id="1600x1200-at-400"),
]


# ============================================================================ fixtures
@pytest.fixture
def make_widget(comm, tiny_sam):
    """``make_widget(image, segmenter=..., **kwargs)``; closes every widget afterwards.

    Without ``segmenter`` a fresh ``Segmenter(tiny_sam, exact=True)`` is used.
    """
    made: list[SamWidget] = []

    def make(image=SMALL, segmenter: Any = "tiny", **kwargs) -> SamWidget:
        if isinstance(segmenter, str) and segmenter == "tiny":
            segmenter = Segmenter(tiny_sam, exact=True)
        w = SamWidget(image, segmenter=segmenter, **kwargs)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def reference(sam, image) -> Segmenter:
    """An independent ``Segmenter`` on the same model and image, for expected answers."""
    ref = Segmenter(sam, exact=True)
    ref.set_image(image)
    return ref


# ============================================================================ helpers
def slot_of(w: SamWidget):
    """The ``PredictionSlot`` of the widget's current state (records the ``mask_input`` used)."""
    return w._history.current.slot


def predict_like(ref: Segmenter, w: SamWidget):
    """``ref.predict`` for the widget's current prompts with the mask_input the widget used."""
    w.candidates  # wait until the widget has answered (the slot records what it used)
    p, slot = w.prompts, slot_of(w)
    return ref.predict(
        points=[list(pt) for pt in p.points] or None,
        labels=list(p.labels) or None,
        box=None if p.box is None else list(p.box),
        mask_input=slot.mask_input,
        multimask=slot.multimask,
    )


def assert_mask_is_reference(w: SamWidget, ref: Segmenter):
    pred = predict_like(ref, w)
    assert np.array_equal(w.candidates.scores, pred.scores)
    assert np.array_equal(w.mask, pred.masks[w.selected]), "the widget's mask is not Segmenter.predict's"
    return pred


def shown_layer(w: SamWidget, comm, layer: int, since: int = 0) -> LayerReplay:
    """The pixels a browser shows on ``layer`` after replaying the recorded commands."""
    return LayerReplay(w._display_hw).apply(layer_commands(w, comm, layer, since))


def bbox_of(mask: np.ndarray):
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def state_of(w: SamWidget) -> dict:
    w.wait_idle()
    return {
        "snapshot": w._history.current,
        "prompts": w.prompts,
        "selected": w.selected,
        "mask": w.mask.copy(),
        "objects": [(o.label, o.color, o.mask.copy(), o.id) for o in w.objects],
        "value": w.value,
        "undo_disabled": w._undo_btn.disabled,
        "redo_disabled": w._redo_btn.disabled,
    }


def assert_same_state(a: dict, b: dict) -> None:
    assert a["snapshot"] is b["snapshot"]
    assert a["prompts"] == b["prompts"] and a["selected"] == b["selected"]
    assert np.array_equal(a["mask"], b["mask"])
    assert len(a["objects"]) == len(b["objects"])
    for (la, ca, ma, ia), (lb, cb, mb, ib) in zip(a["objects"], b["objects"]):
        assert (la, ca, ia) == (lb, cb, ib) and np.array_equal(ma, mb)
    assert a["value"] == b["value"]
    assert (a["undo_disabled"], a["redo_disabled"]) == (b["undo_disabled"], b["redo_disabled"])


# ============================================================================ clicks, drags, keys
@pytest.mark.parametrize("image, display_size, display_hw", SCALES)
def test_click_shift_click_and_right_click_are_points_in_image_pixels(make_widget, tiny_sam, comm, image, display_size, display_hw):
    H, W = image.shape[:2]
    w = make_widget(image, display_size=display_size).wait_ready()
    canvas = w._view.canvas
    assert (canvas.height, canvas.width) == display_hw == fit_size((H, W), display_size)
    assert canvas.layout.width == f"{display_hw[1]}px"  # fixed CSS size: JupyterLab must not stretch it
    ui = EventInjector(w, css_scale=ZOOM)  # ... but the page shows it 1.37x larger anyway (zoom)
    assert ui.css_w != canvas.width
    ref = reference(tiny_sam, image)

    # left click: a positive point, three candidates, the best one chosen
    a = (0.31 * ui.css_w, 0.42 * ui.css_h)
    ui.click(*a)
    w.wait_idle()
    pa = ui.image_pixel(*a)
    assert w.prompts.points == (pa,) and w.prompts.labels == (1,) and w.prompts.box is None
    r1 = ref.predict(points=[pa], labels=[1], multimask=True)
    assert len(w.candidates) == 3 and np.array_equal(w.candidates.scores, r1.scores)
    assert w.selected == r1.best
    assert w.mask.shape == (H, W) and w.mask.dtype == np.bool_
    assert np.array_equal(w.mask, r1.masks[r1.best])

    # shift+click: a negative point, answered with one mask refined from the chosen candidate
    b = (0.77 * ui.css_w, 0.18 * ui.css_h)
    ui.shift_click(*b)
    w.wait_idle()
    pb = ui.image_pixel(*b)
    assert w.prompts.points == (pa, pb) and w.prompts.labels == (1, 0)
    r2 = ref.predict(points=[pa, pb], labels=[1, 0], mask_input=r1.logits[r1.best : r1.best + 1], multimask=False)
    assert len(w.candidates) == 1 and np.array_equal(w.mask, r2.masks[0])

    # right click (mousedown/up with button 2, then contextmenu): negative as well
    c = (0.12 * ui.css_w, 0.88 * ui.css_h)
    ui.right_click(*c)
    w.wait_idle()
    pc = ui.image_pixel(*c)
    assert w.prompts.points == (pa, pb, pc) and w.prompts.labels == (1, 0, 0)
    r3 = ref.predict(points=[pa, pb, pc], labels=[1, 0, 0], mask_input=r2.logits[0:1], multimask=False)
    assert np.array_equal(w.mask, r3.masks[0])

    # the markers are drawn where the user clicked (display pixels), green / red / red
    dh, dw = display_hw
    markers = prompt_layer(w, comm)["markers"]
    assert len(markers) == 3
    for (mx, my, fill), (ix, iy), want in zip(markers, (pa, pb, pc), ("#22c55e", "#ef4444", "#ef4444")):
        assert mx == pytest.approx(ix * dw / W) and my == pytest.approx(iy * dh / H) and fill == want
    assert w._error is None  # nothing went wrong on the way


def test_drag_draws_a_box_that_replaces_the_old_box_and_combines_with_points(make_widget, tiny_sam, comm):
    w = make_widget(SMALL, display_size=200).wait_ready()
    H, W = SMALL.shape[:2]
    dh, dw = w._display_hw
    ui = EventInjector(w, css_scale=ZOOM)
    ref = reference(tiny_sam, SMALL)
    css = lambda fx, fy: (fx * ui.css_w, fy * ui.css_h)  # noqa: E731

    ui.click(*css(0.5, 0.5))
    w.wait_idle()
    p = ui.image_pixel(*css(0.5, 0.5))
    r1 = ref.predict(points=[p], labels=[1])

    mark = comm.mark()
    a, b = css(0.2, 0.25), css(0.6, 0.7)
    ui.drag(*a, *b)
    # while dragging, a dashed rubber band followed the pointer
    rubber = [c for c in layer_commands(w, comm, PROMPTS, mark) if c.name == "setLineDash" and c.args and c.args[0]]
    assert rubber, "no rubber band was drawn during the drag"
    w.wait_idle()
    (ax, ay), (bx, by) = ui.image_pixel(*a), ui.image_pixel(*b)
    box1 = (ax, ay, bx, by)
    assert w.prompts.box == box1 and w.prompts.points == (p,) and w.prompts.labels == (1,)
    r2 = ref.predict(points=[p], labels=[1], box=box1, mask_input=r1.logits[r1.best : r1.best + 1], multimask=False)
    assert np.array_equal(w.mask, r2.masks[0])

    # a second drag, up and to the left: it replaces the box, corners sorted to XYXY
    c, d = css(0.9, 0.8), css(0.4, 0.1)
    ui.drag(*c, *d)
    w.wait_idle()
    (cx, cy), (ex, ey) = ui.image_pixel(*c), ui.image_pixel(*d)
    box2 = (min(cx, ex), min(cy, ey), max(cx, ex), max(cy, ey))
    assert w.prompts.box == box2 and w.prompts.points == (p,)
    r3 = ref.predict(points=[p], labels=[1], box=box2, mask_input=r2.logits[0:1], multimask=False)
    assert np.array_equal(w.mask, r3.masks[0])
    # the box is drawn solid at its display position (the rubber band is gone)
    rects = prompt_layer(w, comm)["rects"]
    assert len(rects) == 1
    x, y, rw, rh, dashed = rects[0]
    assert not dashed
    assert (x, y, rw, rh) == pytest.approx((box2[0] * dw / W, box2[1] * dh / H, (box2[2] - box2[0]) * dw / W, (box2[3] - box2[1]) * dh / H))

    # a drag that leaves the canvas is cancelled: no box, no point, no rubber band left
    before = w.prompts
    ui.buttons |= 1
    ui.mouse("mousedown", *css(0.3, 0.3))
    ui.mouse_move(*css(0.1, 0.1))
    ui.mouse_leave()
    ui.buttons &= ~1
    ui.mouse("mouseup", *css(0.1, 0.1))
    assert w.prompts == before
    assert [r[4] for r in prompt_layer(w, comm)["rects"]] == [False]

    # press-move-release by 2 CSS px (< the drag threshold) is a click, not a box
    e = css(0.7, 0.4)
    ui.drag(*e, e[0] + 2, e[1] + 1, steps=2)
    w.wait_idle()
    assert w.prompts.box == box2 and w.prompts.points == (p, ui.image_pixel(*e)) and w.prompts.labels == (1, 1)
    assert_mask_is_reference(w, ref)
    assert slot_of(w).mask_input is not None and np.array_equal(slot_of(w).mask_input, r3.logits[0:1])


def test_keyboard_shortcuts(make_widget, tiny_sam):
    w = make_widget(SMALL, display_size=200).wait_ready()
    ui = EventInjector(w, css_scale=ZOOM)
    ref = reference(tiny_sam, SMALL)
    at = ui.css_of(200, 150)
    ui.click(*at)
    w.wait_idle()
    p = ui.image_pixel(*at)
    r1 = ref.predict(points=[p], labels=[1])

    # 1 / 2 / 3 pick a candidate
    for key, index in (("2", 1), ("3", 2), ("1", 0), ("3", 2)):
        ui.key(key)
        assert w.selected == index and np.array_equal(w.mask, r1.masks[index])
    chosen = r1.masks[2]
    assert chosen.any()

    # Enter commits the chosen mask as "object 1" and clears the prompts
    ui.key("Enter")
    assert [o.label for o in w.objects] == ["object 1"]
    obj = w.objects[0]
    assert obj.color == object_color(0) and np.array_equal(obj.mask, chosen) and obj.prompts.points == (p,)
    assert w.prompts.is_empty and w.candidates is None and not w.mask.any()
    assert np.array_equal(w.labels, chosen.astype(np.int32))

    # Ctrl+Z undoes the commit: the chosen candidate is back, exactly
    ui.key("z", ctrl=True)
    assert w.objects == () and w.prompts.points == (p,) and w.selected == 2 and np.array_equal(w.mask, chosen)
    ui.key("Z", ctrl=True, shift=True)  # Ctrl+Shift+Z redoes
    assert len(w.objects) == 1 and w.prompts.is_empty
    ui.key("z", ctrl=True)
    ui.key("y", ctrl=True)  # Ctrl+Y redoes too
    assert len(w.objects) == 1
    ui.key("z", meta=True)  # Cmd+Z on a Mac
    assert w.objects == () and w.selected == 2

    # Esc clears the prompts; it can be undone
    ui.key("Escape")
    assert w.prompts.is_empty and not w.mask.any()
    ui.key("z", ctrl=True)
    assert w.prompts.points == (p,) and np.array_equal(w.mask, chosen)

    # other Ctrl shortcuts belong to the browser: nothing happens
    before = state_of(w)
    ui.key("c", ctrl=True)
    ui.key("1", ctrl=True)
    assert_same_state(before, state_of(w))

    # N: clicks are negative; P: positive again
    ui.key("n")
    assert w._mode.value == "negative"
    q = ui.css_of(400, 60)
    ui.click(*q)
    w.wait_idle()
    assert w.prompts.labels == (1, 0)
    ui.key("p")
    ui.click(*ui.css_of(50, 300))
    w.wait_idle()
    assert w.prompts.labels == (1, 0, 1)
    assert_mask_is_reference(w, ref)

    # a refined answer has one candidate: "3" is refused with a message, nothing changes
    before = state_of(w)
    ui.key("3")
    assert_same_state(before, state_of(w))
    assert "candidate 2 does not exist" in w._status.value

    # B: a click does nothing (with a hint), a drag draws the box
    ui.key("b")
    assert w._mode.value == "box"
    ui.click(*ui.css_of(100, 100))
    assert len(w.prompts.points) == 3 and "box mode" in w._status.value
    a, b = ui.css_of(100, 100), ui.css_of(300, 250)
    ui.drag(*a, *b)
    w.wait_idle()
    assert w.prompts.box == (*ui.image_pixel(*a), *ui.image_pixel(*b))
    assert_mask_is_reference(w, ref)

    # H toggles the hover preview; ? toggles the help
    assert not w.hover
    ui.key("h")
    assert w.hover
    ui.key("H", shift=True)
    assert not w.hover
    assert w._help.layout.display == "none"
    ui.key("?", shift=True)
    assert w._help.layout.display == "block" and "Ctrl+Z" in w._help.value
    ui.key("?", shift=True)
    assert w._help.layout.display == "none"
    before = state_of(w)
    ui.key("Shift", shift=True)  # a bare modifier key is ignored
    ui.key("Control", ctrl=True)
    assert_same_state(before, state_of(w))


def test_toolbar_and_side_panel_work_from_the_page(make_widget, tiny_sam):
    w = make_widget(SMALL, display_size=200).wait_ready()
    ui = EventInjector(w, css_scale=ZOOM)
    ref = reference(tiny_sam, SMALL)

    frontend_update(w._mode, index=1)  # the user presses "- negative"
    assert w._mode.value == "negative"
    ui.click(*ui.css_of(250, 170))
    w.wait_idle()
    assert w.prompts.labels == (0,)
    r = ref.predict(points=[w.prompts.points[0]], labels=[0])
    assert w._cand.options and len(w._cand.options) == 3
    frontend_update(w._cand, index=2)  # the third candidate button
    assert w.selected == 2 and np.array_equal(w.mask, r.masks[2])

    frontend_update(w._label_text, value="cat")
    frontend_click(w._add_btn)
    assert [o.label for o in w.objects] == ["cat"] and np.array_equal(w.objects[0].mask, r.masks[2])
    assert w._label_text.value == "" and w._label_text.placeholder == "object 2"
    assert w._obj_list.options[0][0].startswith("0: cat")

    frontend_click(w._undo_btn)
    assert w.objects == () and w.selected == 2
    frontend_click(w._redo_btn)
    assert len(w.objects) == 1

    frontend_update(w._obj_list, index=0)
    frontend_update(w._label_text, value="dog")
    frontend_click(w._rename_btn)
    assert w.objects[0].label == "dog"
    frontend_update(w._obj_list, index=0)
    frontend_click(w._delete_btn)
    assert w.objects == () and w._delete_btn.disabled

    frontend_update(w._mode, index=0)
    ui.click(*ui.css_of(100, 100))
    w.wait_idle()
    assert w.prompts.labels == (1,)
    frontend_click(w._clear_btn)
    assert w.prompts.is_empty and not w.mask.any()

    # "Add" with no mask: a message in the status line, no traceback, nothing changes
    before = state_of(w)
    frontend_click(w._add_btn)
    assert_same_state(before, state_of(w))
    assert "no mask to commit" in w._status.value


def test_refine_off_always_asks_for_three_candidates_from_the_prompts_alone(make_widget, tiny_sam):
    w = make_widget(SMALL, display_size=200, refine=False).wait_ready()
    ref = reference(tiny_sam, SMALL)
    assert w.refine is False
    w.add_point(100, 100)
    w.add_point(300, 200, label=0)
    r = ref.predict(points=[[100, 100], [300, 200]], labels=[1, 0], multimask=True)
    assert len(w.candidates) == 3 and w.selected == r.best and np.array_equal(w.mask, r.masks[r.best])
    assert slot_of(w).mask_input is None
    w.select(0)
    # ticking "refine" in the page turns refinement on: the next prompt refines candidate 0
    frontend_update(w._refine_box, value=True)
    assert w.refine is True
    w.add_box(50, 40, 320, 260)
    r2 = ref.predict(points=[[100, 100], [300, 200]], labels=[1, 0], box=[50, 40, 320, 260], mask_input=r.logits[0:1], multimask=False)
    assert len(w.candidates) == 1 and np.array_equal(w.mask, r2.masks[0])


# ============================================================================ bytes on the wire
def test_a_mask_update_sends_a_cropped_png_patch_that_shows_the_mask(make_widget, comm):
    sam = blob_sam()
    ref = reference(sam, SMALL)
    w = make_widget(SMALL, segmenter=Segmenter(sam, exact=True), display_size=200).wait_ready()
    dh, dw = w._display_hw
    ui = EventInjector(w, css_scale=ZOOM)

    mark = comm.mark()
    at = ui.css_of(150, 120)
    ui.click(*at)
    w.wait_idle()
    r = ref.predict(points=[ui.image_pixel(*at)], labels=[1])
    disp = r.mask_at_size(r.best, (dh, dw))
    x0, y0, x1, y1 = bbox_of(disp)

    puts = layer_commands(w, comm, CURRENT, mark, "putImageData")
    assert len(puts) == 1
    patch = puts[0]
    assert patch.image_format == "PNG" and patch.image.shape[2] == 4  # lossless RGBA, not JPEG
    assert patch.args[:2] == [x0, y0] and patch.image.shape[:2] == (y1 - y0, x1 - x0)
    assert patch.image.shape[0] * patch.image.shape[1] < 0.2 * dh * dw, "a full frame was sent, not a patch"
    assert patch.nbytes < 0.05 * dh * dw * 4
    # nothing else was repainted
    assert layer_commands(w, comm, IMAGE, mark) == [] and layer_commands(w, comm, OBJECTS, mark) == []

    # what the page shows: exactly the mask, filled in the current-mask colour inside a black and white outline
    shown = shown_layer(w, comm, CURRENT)
    assert np.array_equal(shown.covered, disp)
    look.assert_current_look(shown, disp)
    # ... which is the full-resolution mask seen at display size
    small = resize_mask(w.mask, (dh, dw))
    assert (small & disp).sum() / (small | disp).sum() > 0.9

    # a click elsewhere: the old patch is cleared, the new one drawn
    mark = comm.mark()
    at2 = ui.css_of(420, 260)
    ui.click(*at2)
    w.wait_idle()
    cmds = layer_commands(w, comm, CURRENT, mark)
    clears = [c for c in cmds if c.name == "clearRect"]
    assert len(clears) == 1
    cx, cy, cw, ch = clears[0].args
    assert cx <= x0 and cy <= y0 and cx + cw >= x1 and cy + ch >= y1
    pred = assert_mask_is_reference(w, ref)
    disp2 = pred.mask_at_size(w.selected, (dh, dw))
    assert np.array_equal(shown_layer(w, comm, CURRENT).covered, disp2)

    # Esc: the patch is cleared, nothing drawn in its place
    mark = comm.mark()
    ui.key("Escape")
    cmds = layer_commands(w, comm, CURRENT, mark)
    assert [c.name for c in cmds] == ["clearRect"]
    assert not shown_layer(w, comm, CURRENT).covered.any()


def test_objects_layer_shows_objects_in_their_colours_and_is_not_resent_by_prompt_undo(make_widget, comm):
    sam = blob_sam()
    w = make_widget(SMALL, segmenter=Segmenter(sam, exact=True), display_size=200).wait_ready()
    H, W = SMALL.shape[:2]
    dh, dw = w._display_hw
    ui = EventInjector(w, css_scale=ZOOM)

    mark = comm.mark()
    ui.click(*ui.css_of(150, 120))
    w.wait_idle()
    ui.key("Enter")
    ui.click(*ui.css_of(175, 130))  # overlaps the first object
    w.wait_idle()
    ui.key("Enter")
    a, b = w.objects
    assert (a.label, b.label) == ("object 1", "object 2") and a.color != b.color
    assert (a.mask & b.mask).any() and (a.mask & ~b.mask).any()
    assert len(layer_commands(w, comm, OBJECTS, mark, "putImageData")) == 2  # one patch per commit

    # the objects layer: each object in its colour, the later one on top
    da, db = resize_mask(a.mask, (dh, dw)), resize_mask(b.mask, (dh, dw))
    shown = shown_layer(w, comm, OBJECTS)
    assert np.array_equal(shown.covered, da | db)
    assert (shown.rgba[look.fill(db)][:, :3] == b.color).all() and (shown.rgba[look.edge(db)][:, :3] == OUTLINE_DARK).all()
    assert (shown.rgba[look.fill(da) & ~db][:, :3] == a.color).all()
    # the arrays say the same: label image with the later object on top
    expected_labels = np.zeros((H, W), np.int32)
    expected_labels[a.mask] = 1
    expected_labels[b.mask] = 2
    assert np.array_equal(w.labels, expected_labels) and w.labels.dtype == np.int32
    assert w.masks.shape == (2, H, W) and np.array_equal(w.masks[1], b.mask)

    # prompt edits, candidate choice and their undo/redo leave the objects layer alone
    ui.click(*ui.css_of(400, 250))
    w.wait_idle()
    assert w.selected != 0
    mark = comm.mark()
    ui.key("z", ctrl=True)  # the point
    ui.key("Z", ctrl=True, shift=True)
    w.wait_idle()
    ui.key("1")  # another candidate
    ui.key("z", ctrl=True)
    ui.key("Escape")
    ui.key("z", ctrl=True)
    w.wait_idle()
    assert len(w.objects) == 2 and len(w.prompts.points) == 1
    assert layer_commands(w, comm, OBJECTS, mark) == []
    assert layer_commands(w, comm, CURRENT, mark, "putImageData"), "the current mask should have been redrawn"

    # undoing the second commit repaints the objects layer: only the first object is left
    ui.key("z", ctrl=True)  # the point
    ui.key("z", ctrl=True)  # commit 2
    assert len(w.objects) == 1
    shown = shown_layer(w, comm, OBJECTS)
    assert np.array_equal(shown.covered, da) and (shown.rgba[look.fill(da)][:, :3] == a.color).all()


def test_undo_covers_renames_and_deletes_and_restores_the_exact_masks(make_widget, tiny_sam):
    w = make_widget(SMALL, display_size=200).wait_ready()
    ref = reference(tiny_sam, SMALL)
    w.add_point(120, 90)
    w.commit("a")
    w.add_point(400, 260)
    w.select(0)
    w.commit("b")
    ra = ref.predict(points=[[120, 90]], labels=[1])
    rb = ref.predict(points=[[400, 260]], labels=[1])
    masks, labels = w.masks.copy(), w.labels.copy()
    assert np.array_equal(masks[0], ra.masks[ra.best]) and np.array_equal(masks[1], rb.masks[0])

    w.rename(0, "first")
    w.delete(1)
    assert [o.label for o in w.objects] == ["first"] and np.array_equal(w.labels, masks[0].astype(np.int32))
    assert w.undo() and [o.label for o in w.objects] == ["first", "b"]
    assert w.undo() and [o.label for o in w.objects] == ["a", "b"]
    assert np.array_equal(w.masks, masks) and np.array_equal(w.labels, labels)
    assert w.undo() and w.objects[-1].label == "a" and w.selected == 0  # back before commit "b"
    assert np.array_equal(w.mask, rb.masks[0])
    assert w.redo() and w.redo() and w.redo()
    assert [o.label for o in w.objects] == ["first"] and w.redo() is False
    # the colours stay with the objects: "b" was object 2, a new object is number 3
    w.add_point(300, 60)
    o = w.commit()
    assert o.label == "object 3" and o.color == object_color(2) and w.objects[0].color == object_color(0)


# ============================================================================ background encoding
def test_clicks_during_encoding_are_kept_and_answered_once_ready(make_widget, tiny_sam, comm):
    seg = SlowSegmenter(tiny_sam, gated=True)
    w = make_widget(SMALL, segmenter=seg, display_size=200)
    ref = reference(tiny_sam, SMALL)
    # the image is on the page at once, before any encoding
    assert layer_commands(w, comm, IMAGE, 0, "putImageData")
    with pytest.raises(TimeoutError):
        w.wait_ready(timeout=0.01)
    assert "encoding" in w._status.value

    ui = EventInjector(w, css_scale=ZOOM)
    a, b, c = ui.css_of(100, 80), ui.css_of(300, 200), ui.css_of(450, 300)
    t0 = time.perf_counter()
    ui.click(*a)
    ui.shift_click(*b)
    ui.click(*c)
    spent = time.perf_counter() - t0
    assert spent < 1.0, f"event handling blocked the kernel for {spent:.2f} s"
    pts = (ui.image_pixel(*a), ui.image_pixel(*b), ui.image_pixel(*c))
    assert w.prompts.points == pts and w.prompts.labels == (1, 0, 1)  # kept
    assert len(prompt_layer(w, comm)["markers"]) == 3  # and shown
    with pytest.raises(TimeoutError):
        w.wait_ready(timeout=0.01)
    assert seg.predict_calls == 0 and w.value == 0

    seg.gate.set()
    w.wait_idle(timeout=60)
    assert seg.set_image_threads == ["SamWidget-worker"]  # never on the kernel's thread
    # nothing was answered before: three candidates from the three points
    r = ref.predict(points=list(pts), labels=[1, 0, 1], multimask=True)
    assert np.array_equal(w.candidates.scores, r.scores) and np.array_equal(w.mask, r.masks[r.best])
    assert seg.predict_calls == 1  # only the newest state was computed
    assert "encode" in w._status.value and "encoding…" not in w._status.value


def test_python_calls_made_before_ready_wait_for_the_encoding(make_widget, tiny_sam):
    seg = SlowSegmenter(tiny_sam, gated=True)
    w = make_widget(SMALL, segmenter=seg, display_size=200)
    ref = reference(tiny_sam, SMALL)
    threading.Timer(0.2, seg.gate.set).start()
    t0 = time.perf_counter()
    w.add_point(210, 130)
    assert time.perf_counter() - t0 >= 0.15
    r = ref.predict(points=[[210, 130]], labels=[1])
    assert np.array_equal(w.mask, r.masks[r.best])


# ============================================================================ coalescing
def test_a_moving_pointer_sees_previews_follow_it_not_only_when_it_stops(make_widget, comm):
    sam = blob_sam()
    seg = SlowSegmenter(sam, predict_delay=0.03)
    w = make_widget(SMALL, segmenter=seg, display_size=200, hover=True).wait_ready()
    ui = EventInjector(w, css_scale=ZOOM)
    since = len(comm.messages)
    for t in np.linspace(0, 1, 40):  # a pointer moving for ~0.4 s, faster than predictions
        ui.mouse_move(ui.css_w * (0.1 + 0.8 * t), ui.css_h * 0.5)
        time.sleep(0.01)
    w.wait_idle()
    drawn = layer_commands(w, comm, CURRENT, since, name="putImageData")
    assert w.stats["previews"] < 40  # coalesced ...
    assert len(drawn) == w.stats["previews"] >= 3  # ... and every computed preview was shown


def test_rapid_clicks_are_coalesced_and_the_last_state_wins(make_widget, tiny_sam, comm):
    seg = SlowSegmenter(tiny_sam, predict_delay=0.05)
    w = make_widget(SMALL, segmenter=seg, display_size=200).wait_ready()
    ref = reference(tiny_sam, SMALL)
    ui = EventInjector(w, css_scale=ZOOM)
    rng = np.random.default_rng(7)
    pts, labels = [], []
    t0 = time.perf_counter()
    for i in range(100):
        x, y = rng.uniform(0.02, 0.98) * ui.css_w, rng.uniform(0.02, 0.98) * ui.css_h
        if i % 2:
            ui.right_click(x, y)
        else:
            ui.click(x, y)
        pts.append(ui.image_pixel(x, y))
        labels.append(1 if i % 2 == 0 else 0)
    spent = time.perf_counter() - t0
    w.wait_idle(timeout=60)

    assert ui.sent == 250 and w.stats["events"] == 250
    assert spent < 100 * seg.predict_delay, "event handling waited for predictions"
    assert seg.predict_threads == {"SamWidget-worker"}
    assert 1 <= seg.predict_calls <= 25, f"{seg.predict_calls} predictions for 100 clicks: no coalescing"
    assert w.stats["predictions"] == seg.predict_calls
    assert w.prompts.points == tuple(pts) and w.prompts.labels == tuple(labels)
    pred = assert_mask_is_reference(w, ref)
    # the page shows the final mask, not an older one
    assert np.array_equal(shown_layer(w, comm, CURRENT).covered, pred.mask_at_size(w.selected, w._display_hw))
    # undo steps back through states that were never computed: they are computed on demand
    w.undo()
    assert w.prompts.points == tuple(pts[:-1])
    assert_mask_is_reference(w, ref)
    w.wait_idle()
    pred = predict_like(ref, w)
    assert np.array_equal(shown_layer(w, comm, CURRENT).covered, pred.mask_at_size(w.selected, w._display_hw))


def test_hover_previews_are_coalesced_and_follow_the_pointer(make_widget, comm):
    sam = blob_sam()
    seg = SlowSegmenter(sam, predict_delay=0.03)
    ref = reference(sam, SMALL)
    w = make_widget(SMALL, segmenter=seg, display_size=200).wait_ready()
    ui = EventInjector(w, css_scale=ZOOM)
    ui.key("h")
    assert w.hover
    seen = []
    w.on_change(lambda _: seen.append(1))
    v0 = w.value

    path = [(ui.css_w * (0.1 + 0.8 * t), ui.css_h * (0.2 + 0.6 * t)) for t in np.linspace(0, 1, 200)]
    t0 = time.perf_counter()
    for x, y in path:
        ui.mouse_move(x, y)
    spent = time.perf_counter() - t0
    w.wait_idle()
    assert spent < 200 * seg.predict_delay
    assert 1 <= w.stats["previews"] <= 40, f"{w.stats['previews']} previews for 200 moves"
    last = ui.image_pixel(*path[-1])
    r = ref.predict(points=[last], labels=[1])
    shown = shown_layer(w, comm, CURRENT)
    assert np.array_equal(shown.covered, r.mask_at_size(r.best, w._display_hw))
    assert (shown.rgba[look.fill(shown.covered)][:, :3] == _PREVIEW_COLOR).all()
    assert (shown.rgba[look.inner_line(shown.covered)][:, :3] == _PREVIEW_COLOR).all()  # no white line: not a mask yet
    # a preview is not a prompt nor a mask
    assert w.prompts.is_empty and not w.mask.any() and w.value == v0 and seen == []

    # leaving the canvas removes the preview
    ui.mouse_leave()
    assert not shown_layer(w, comm, CURRENT).covered.any()
    assert w.value == v0 and seen == []

    # back in, a click replaces the preview with the real mask
    ui.mouse_move(*ui.css_of(300, 200))
    ui.click(*ui.css_of(300, 200))
    w.wait_idle()
    pred = assert_mask_is_reference(w, ref)
    shown = shown_layer(w, comm, CURRENT)
    assert np.array_equal(shown.covered, pred.mask_at_size(w.selected, w._display_hw))
    look.assert_current_look(shown, shown.covered)
    # no previews once there are prompts
    n = w.stats["previews"]
    ui.mouse_move(*ui.css_of(100, 100))
    w.wait_idle()
    assert w.stats["previews"] == n


def test_the_mask_is_drawn_when_objects_change_while_a_prediction_runs(make_widget, comm):
    sam = blob_sam()
    seg = SlowSegmenter(sam)
    ref = reference(sam, SMALL)
    w = make_widget(SMALL, segmenter=seg, display_size=200).wait_ready()
    ui = EventInjector(w, css_scale=ZOOM)
    w.add_point(120, 100)
    w.commit("first")
    seg.predict_delay = 0.4
    at = ui.css_of(400, 250)
    ui.click(*at)  # the worker is now busy for 0.4 s ...
    w.rename(0, "renamed")  # ... while the user renames an object
    w.wait_idle()
    r = ref.predict(points=[ui.image_pixel(*at)], labels=[1])
    assert w.objects[0].label == "renamed" and np.array_equal(w.mask, r.masks[r.best])
    assert np.array_equal(shown_layer(w, comm, CURRENT).covered, r.mask_at_size(r.best, w._display_hw))


def test_a_late_answer_never_paints_over_a_newer_state(make_widget, comm):
    """The worker finishes click B while the kernel is drawing the user's undo back to A."""
    sam = blob_sam()
    seg = SlowSegmenter(sam)
    ref = reference(sam, SMALL)
    w = make_widget(SMALL, segmenter=seg, display_size=200).wait_ready()
    ui = EventInjector(w, css_scale=ZOOM)
    w.add_point(120, 100)
    ra = ref.predict(points=[[120, 100]], labels=[1])
    seg.predict_delay = 0.3
    ui.click(*ui.css_of(420, 250))
    slot_b = slot_of(w)
    with w._render_lock:  # the kernel thread is busy drawing ...
        slot_b.wait(10)  # ... when the worker has B's answer and wants to draw it,
        time.sleep(0.1)
        assert w.undo()  # and the user's Ctrl+Z (back to A) is drawn first
    w.wait_idle()
    assert w.prompts.points == ((120, 100),) and np.array_equal(w.mask, ra.masks[ra.best])
    assert np.array_equal(shown_layer(w, comm, CURRENT).covered, ra.mask_at_size(ra.best, w._display_hw))


# ============================================================================ several widgets, re-display
def test_two_widgets_sharing_one_segmenter_each_segment_their_own_image(make_widget, tiny_sam, comm):
    seg = Segmenter(tiny_sam, exact=True)  # load the model once, use it twice
    other = make_image(150, 260, seed=5)
    w1 = make_widget(SMALL, segmenter=seg, display_size=200)
    w2 = make_widget(other, segmenter=seg, display_size=120)
    w1.wait_ready()
    w2.wait_ready()
    ref1, ref2 = reference(tiny_sam, SMALL), reference(tiny_sam, other)
    ui1, ui2 = EventInjector(w1, css_scale=ZOOM), EventInjector(w2, css_size=(180, 104))
    ui1.click(*ui1.css_of(200, 100))
    ui2.click(*ui2.css_of(50, 60))
    ui1.shift_click(*ui1.css_of(400, 300))
    w1.wait_idle()
    w2.wait_idle()
    assert w1.mask.shape == (333, 517) and w2.mask.shape == (150, 260)
    assert_mask_is_reference(w1, ref1)
    assert_mask_is_reference(w2, ref2)
    w2.add_point(200, 100, label=0)
    w1.add_box(10, 10, 300, 200)
    assert_mask_is_reference(w1, ref1)
    assert_mask_is_reference(w2, ref2)
    # each page shows its own mask on its own canvas
    for w, ref in ((w1, ref1), (w2, ref2)):
        pred = predict_like(ref, w)
        assert np.array_equal(shown_layer(w, comm, CURRENT).covered, pred.mask_at_size(w.selected, w._display_hw))


def test_redisplay_redraws_every_layer_without_counting_a_change(make_widget, comm):
    sam = blob_sam()
    w = make_widget(SMALL, segmenter=Segmenter(sam, exact=True), display_size=200).wait_ready()
    ref = reference(sam, SMALL)
    dh, dw = w._display_hw
    ui = EventInjector(w, css_scale=ZOOM)
    w.add_point(150, 120)
    w.commit()
    w.add_point(400, 250)
    w.add_point(380, 200, label=0)
    w.wait_idle()
    calls = []
    w.on_change(calls.append)
    values = []
    w.observe(lambda ch: values.append(ch["new"]), names="value")

    mark = comm.mark()
    ui.reconnect()  # the notebook is reloaded: a fresh page with blank canvases
    w.wait_idle()
    cmds = comm.commands(start=mark)
    assert cmds and all(c.canvas is not None for c in cmds), "a batch did not start with switchCanvas"
    image = layer_commands(w, comm, IMAGE, mark, "putImageData")
    assert len(image) == 1 and image[0].image.shape == (dh, dw, 4)
    assert np.array_equal(image[0].image[..., :3], resize_rgb(SMALL, (dh, dw)))
    obj = shown_layer(w, comm, OBJECTS, mark)
    assert np.array_equal(obj.covered, resize_mask(w.objects[0].mask, (dh, dw)))
    cur = shown_layer(w, comm, CURRENT, mark)
    pred = predict_like(ref, w)
    assert np.array_equal(cur.covered, pred.mask_at_size(w.selected, (dh, dw)))
    assert len(prompt_layer(w, comm, mark)["markers"]) == 2
    # nothing changed for the user's code
    assert calls == [] and values == []


def test_on_change_and_value_observers_run_once_per_change_with_the_new_state(make_widget, tiny_sam):
    w = make_widget(SMALL, display_size=200).wait_ready()
    ref = reference(tiny_sam, SMALL)
    seen: list[tuple] = []
    w.on_change(lambda ww: seen.append((ww.value, ww.mask.copy(), len(ww.objects))))
    values: list[int] = []
    w.observe(lambda ch: values.append(ch["new"]), names="value")

    w.add_point(200, 120)
    r = ref.predict(points=[[200, 120]], labels=[1])
    # add_point returned: the callbacks have already run, with the new mask
    assert values == [1] and len(seen) == 1
    assert seen[0][0] == 1 and np.array_equal(seen[0][1], r.masks[r.best])
    other = (r.best + 1) % 3
    w.select(other)
    assert values == [1, 2] and np.array_equal(seen[-1][1], r.masks[other])
    w.commit()
    assert values[-1] == 3 and seen[-1][2] == 1 and not seen[-1][1].any()
    with pytest.raises(ValueError):
        w.add_point(-5, 3)
    assert w.undo() is True
    assert values == [1, 2, 3, 4] and seen[-1][2] == 0 and np.array_equal(seen[-1][1], r.masks[other])
    assert w.redo() is True
    assert values[-1] == 5 and len(seen) == 5

    # a click in the page: the callback runs (on the worker thread) with the new mask
    ui = EventInjector(w, css_scale=ZOOM)
    ui.click(*ui.css_of(300, 200))
    w.wait_idle()
    assert values[-1] == 6 and len(seen) == 6
    assert np.array_equal(seen[-1][1], w.mask) and w.mask.any()

    # a callback that raises does not break the widget; the message shows in the status line
    def broken(_):
        raise KeyError("oops")

    w.on_change(broken)
    w.add_point(100, 100)
    assert "on_change callback failed" in w._status.value and len(seen) == 7
    w.on_change(broken, remove=True)
    w.on_change(seen.append, remove=True)  # not registered: a no-op
    w.clear()
    assert values[-1] == 8 and len(seen) == 8


# ============================================================================ load failure
@pytest.mark.parametrize(
    "model, content, message",
    [
        ("vit_b", b"this is not a checkpoint", "not a checkpoint"),
        (None, b"", "it is empty"),
    ],
    ids=["text file as vit_b", "empty file, type inferred"],
)
def test_model_load_failure_is_reported_and_nothing_crashes(comm, tmp_path, model, content, message):
    """A checkpoint that exists but cannot be loaded is only found out when loading (in the background)."""
    checkpoint = tmp_path / "sam_vit_b.pth"
    checkpoint.write_bytes(content)
    w = SamWidget(SMALL, model=model, checkpoint=str(checkpoint), display_size=200)
    try:
        with pytest.raises(RuntimeError, match="could not get ready") as err:
            w.wait_ready(timeout=60)
        assert message in str(err.value)
        assert "not ready" in w._status.value and message in w._status.value
        assert layer_commands(w, comm, IMAGE, 0, "putImageData")  # the image is still shown
        ui = EventInjector(w, css_scale=ZOOM)
        ui.click(*ui.css_of(100, 100))
        ui.key("Enter")
        ui.key("z", ctrl=True)
        assert w.prompts.is_empty and w.objects == () and not w.mask.any()
        with pytest.raises(RuntimeError, match="could not get ready"):
            w.add_point(10, 10)
        assert w.prompts.is_empty
        with pytest.raises(RuntimeError):
            w.wait_idle(timeout=5)
    finally:
        w.close()


# ============================================================================ bad input
@pytest.fixture
def busy_widget(make_widget):
    """A widget with one committed object and one point prompt (3 candidates)."""
    w = make_widget(SMALL, display_size=200).wait_ready()
    w.add_point(200, 120)
    w.commit("first")
    w.add_point(300, 200)
    return w


H_, W_ = SMALL.shape[:2]
BAD_CALLS = [
    ("point left of the image", lambda w: w.add_point(-1, 5), ValueError, "outside"),
    ("point right of the image", lambda w: w.add_point(W_ + 1, 5), ValueError, "outside"),
    ("point below the image", lambda w: w.add_point(5, H_ + 0.5), ValueError, "outside"),
    ("NaN point", lambda w: w.add_point(math.nan, 5), ValueError, "finite"),
    ("infinite point", lambda w: w.add_point(5, math.inf), ValueError, "finite"),
    ("label 2", lambda w: w.add_point(5, 5, label=2), ValueError, "label"),
    ("label -1", lambda w: w.add_point(5, 5, label=-1), ValueError, "label"),
    ("label True", lambda w: w.add_point(5, 5, label=True), ValueError, "label"),
    ("label '1'", lambda w: w.add_point(5, 5, label="1"), ValueError, "label"),
    ("text coordinates", lambda w: w.add_point("a", 5), TypeError, "numbers"),
    ("numeric text coordinates", lambda w: w.add_point("5", "6"), TypeError, "numbers"),
    ("None coordinate", lambda w: w.add_point(None, 5), TypeError, "numbers"),
    ("list coordinate", lambda w: w.add_point([1, 2], 5), TypeError, "numbers"),
    ("box x1 < x0", lambda w: w.add_box(50, 10, 20, 40), ValueError, "x0 <= x1"),
    ("box y1 < y0", lambda w: w.add_box(10, 50, 40, 20), ValueError, "x0 <= x1"),
    ("box outside", lambda w: w.add_box(-3, 0, 20, 20), ValueError, "outside"),
    ("box too wide", lambda w: w.add_box(0, 0, W_ + 10, 20), ValueError, "outside"),
    ("NaN box", lambda w: w.add_box(0, 0, math.nan, 20), ValueError, "finite"),
    ("text box", lambda w: w.add_box("0", 0, 5, 5), TypeError, "numbers"),
    ("candidate 3", lambda w: w.select(3), IndexError, "does not exist"),
    ("candidate -1", lambda w: w.select(-1), IndexError, "does not exist"),
    ("candidate 1.0", lambda w: w.select(1.0), TypeError, "int"),
    ("candidate '1'", lambda w: w.select("1"), TypeError, "int"),
    ("candidate True", lambda w: w.select(True), TypeError, "int"),
    ("commit label 3", lambda w: w.commit(3), TypeError, "string"),
    ("delete 1 of 1", lambda w: w.delete(1), IndexError, "does not exist"),
    ("delete -1", lambda w: w.delete(-1), IndexError, "does not exist"),
    ("delete '0'", lambda w: w.delete("0"), TypeError, "int"),
    ("delete 0.0", lambda w: w.delete(0.0), TypeError, "int"),
    ("rename missing", lambda w: w.rename(4, "x"), IndexError, "does not exist"),
    ("rename to empty", lambda w: w.rename(0, ""), ValueError, "non-empty"),
    ("rename to spaces", lambda w: w.rename(0, "   "), ValueError, "non-empty"),
    ("rename to a number", lambda w: w.rename(0, 5), (TypeError, ValueError), "string"),
    ("on_change(42)", lambda w: w.on_change(42), TypeError, "callable"),
]


@pytest.mark.parametrize("call, exc, match", [pytest.param(c, e, m, id=i) for i, c, e, m in BAD_CALLS])
def test_bad_input_raises_a_clear_error_and_changes_nothing(busy_widget, call, exc, match):
    w = busy_widget
    before = state_of(w)
    with pytest.raises(exc, match=match):
        call(w)
    assert_same_state(before, state_of(w))


def test_documented_no_ops_and_errors_on_an_empty_widget(make_widget):
    w = make_widget(SMALL, display_size=200).wait_ready()
    before = state_of(w)
    assert w.undo() is False and w.redo() is False
    w.clear()  # nothing to clear
    with pytest.raises(ValueError, match="no mask to commit"):
        w.commit()
    with pytest.raises(IndexError, match="no candidates"):
        w.select(0)
    with pytest.raises(IndexError):
        w.delete(0)
    with pytest.raises(IndexError):
        w.rename(0, "x")
    assert_same_state(before, state_of(w))
    assert w.undo() is False  # none of the above left a history entry
    assert w.candidates is None and w.selected == 0 and w.masks.shape == (0, 333, 517)
    assert not w.labels.any() and w.labels.dtype == np.int32
    # choosing the candidate that is already chosen is a no-op too (no history entry)
    w.add_point(10, 10)
    v = w.value
    w.select(w.selected)
    assert w.value == v
    assert w.undo() and w.prompts.is_empty and w.undo() is False


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"image": np.zeros(10, np.uint8)}, ValueError, ""),
        ({"image": np.zeros((0, 5, 3), np.uint8)}, ValueError, ""),
        ({"image": None}, (TypeError, ValueError), ""),
        ({"image": "not/an/image.png"}, ValueError, "does not exist"),
        ({"display_size": 0}, ValueError, "display_size"),
        ({"display_size": 15}, ValueError, "display_size"),
        ({"display_size": 2.5}, TypeError, "display_size"),
        ({"display_size": "800"}, TypeError, "display_size"),
        ({"segmenter": "sam"}, TypeError, "Segmenter"),
        ({"segmenter": object()}, TypeError, "Segmenter"),
        ({"model": 3}, TypeError, "model"),
    ],
    ids=["1-D image", "empty image", "None image", "missing file", "display_size=0", "display_size=15",
         "display_size=2.5", "display_size='800'", "segmenter str", "segmenter object", "model int"],
)
def test_bad_constructor_arguments_raise_before_anything_starts(comm, kwargs, exc, match):
    kwargs = {"image": SMALL, "display_size": 200, **kwargs}
    threads = threading.active_count()
    unraisable: list = []
    old_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        with pytest.raises(exc, match=match or None) as err:
            SamWidget(kwargs.pop("image"), **kwargs)
        del err  # its traceback holds the half-built widget
        gc.collect()
    finally:
        sys.unraisablehook = old_hook
    assert threading.active_count() <= threads  # no worker thread was left behind
    # the half-built widget is collected quietly (no "Exception ignored in __del__")
    assert [str(u.exc_value) for u in unraisable] == []


def test_a_closed_widget_refuses_new_prompts_instead_of_hanging(make_widget):
    w = make_widget(SMALL, display_size=200).wait_ready()
    w.add_point(10, 10)
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        w.add_point(20, 20)
    assert w.prompts.points == ((10, 10),) and w.mask.any()


def test_returned_arrays_cannot_corrupt_the_widget(busy_widget):
    w = busy_widget
    mask = w.mask.copy()
    obj_mask = w.objects[0].mask.copy()
    m = w.mask
    m[:] = ~m  # the user scribbles on the array they got
    assert np.array_equal(w.mask, mask)
    with pytest.raises(ValueError):
        w.objects[0].mask[0, 0] = True  # committed masks are read-only
    w.masks[:] = False
    w.labels[:] = 7
    assert np.array_equal(w.masks[0], obj_mask) and w.labels.max() == 1
    with pytest.raises(ValueError):
        w.image[0, 0, 0] = 1
    w.commit()
    assert np.array_equal(w.objects[1].mask, mask)


# ============================================================================ random action sequences
PROP_IMAGE = make_image(72, 100, seed=3)
PH, PW = PROP_IMAGE.shape[:2]

_xs = st.one_of(st.integers(0, PW), st.floats(0, PW))
_ys = st.one_of(st.integers(0, PH), st.floats(0, PH))
_bad_x = st.sampled_from([-1.0, PW + 1.0, math.nan, math.inf])
_bad_y = st.sampled_from([-0.5, PH + 2.0, math.nan])
_point = st.tuples(st.just("point"), _xs, _ys, st.sampled_from([1, 1, 0]))
_bad_point = st.one_of(
    st.tuples(st.just("point"), _bad_x, _ys, st.just(1)),
    st.tuples(st.just("point"), _xs, _bad_y, st.just(0)),
    st.tuples(st.just("point"), _xs, _ys, st.sampled_from([2, -1])),
)


def _box_corners(a):
    """Boxes drawn in any direction, corners sorted to XYXY."""
    _, x0, y0, x1, y1 = a
    return ("box", min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


_box = st.tuples(st.just("box"), _xs, _ys, _xs, _ys).map(_box_corners)
_bad_box = st.one_of(
    st.tuples(st.just("box"), _xs, _ys, _xs, _ys).filter(lambda a: a[3] < a[1] or a[4] < a[2]),  # x1 < x0 / y1 < y0
    st.tuples(st.just("box"), _bad_x, _ys, _xs, _ys),
    st.tuples(st.just("box"), _xs, _ys, _xs, _bad_y),
)
_select = st.tuples(st.just("select"), st.integers(-1, 3))
_commit = st.tuples(st.just("commit"), st.sampled_from([None, "cat", "  "]))
_undo, _redo = st.tuples(st.just("undo")), st.tuples(st.just("redo"))
ACTIONS = st.sampled_from(  # weights: prompts most often, then choosing, committing, undoing
    [_point] * 4
    + [_bad_point, _box, _bad_box, _select, _select, _commit, _commit, _undo, _undo, _redo]
    + [
        st.tuples(st.just("delete"), st.integers(-1, 2)),
        st.tuples(st.just("rename"), st.integers(-1, 2), st.sampled_from(["dog", "dog", ""])),
        st.tuples(st.just("clear")),
    ]
).flatmap(lambda strategy: strategy)


@dataclass(frozen=True)
class Expected:
    """What the widget must show, computed from the user's actions alone."""

    points: tuple = ()
    labels: tuple = ()
    box: tuple | None = None
    pred: Any = None  # the reference Prediction for these prompts
    mask_input: Any = None
    selected: int = 0
    objects: tuple = ()  # (label, colour, mask)
    next_id: int = 1


class Model:
    """Undo history and SamPredictor's interactive recipe, written out plainly."""

    def __init__(self, ref: Segmenter) -> None:
        self.ref = ref
        self.past: list[Expected] = []
        self.now = Expected()
        self.future: list[Expected] = []

    def push(self, e: Expected) -> None:
        self.past.append(self.now)
        self.now, self.future = e, []

    def prompt(self, points, labels, box) -> Expected:
        cur = self.now
        if cur.pred is not None:  # refine the chosen candidate
            mi, multi = cur.pred.logits[cur.selected : cur.selected + 1], False
        else:
            mi, multi = None, True
        pred = self.ref.predict(points=list(points) or None, labels=list(labels) or None, box=box, mask_input=mi, multimask=multi)
        return Expected(points, labels, box, pred, mi, pred.best, cur.objects, cur.next_id)

    def apply(self, action) -> tuple[type | None, bool]:
        """Returns (expected exception, whether the history moved)."""
        kind, *args = action
        cur = self.now
        inside = lambda x, y: all(map(math.isfinite, (x, y))) and 0 <= x <= PW and 0 <= y <= PH  # noqa: E731
        if kind == "point":
            x, y, label = args
            if not inside(x, y) or label not in (0, 1):
                return ValueError, False
            self.push(self.prompt(cur.points + ((x, y),), cur.labels + (label,), cur.box))
        elif kind == "box":
            x0, y0, x1, y1 = args
            if not (inside(x0, y0) and inside(x1, y1)) or x1 < x0 or y1 < y0:
                return ValueError, False
            self.push(self.prompt(cur.points, cur.labels, (x0, y0, x1, y1)))
        elif kind == "select":
            (i,) = args
            if cur.pred is None or not 0 <= i < len(cur.pred):
                return IndexError, False
            if i == cur.selected:
                return None, False
            self.push(Expected(cur.points, cur.labels, cur.box, cur.pred, cur.mask_input, i, cur.objects, cur.next_id))
        elif kind == "commit":
            (label,) = args
            if cur.pred is None or not cur.pred.masks[cur.selected].any():
                return ValueError, False
            name = (label or "").strip() or f"object {cur.next_id}"
            obj = (name, object_color(cur.next_id - 1), cur.pred.masks[cur.selected].copy())
            self.push(Expected(objects=cur.objects + (obj,), next_id=cur.next_id + 1))
        elif kind == "delete":
            (i,) = args
            if not 0 <= i < len(cur.objects):
                return IndexError, False
            self.push(Expected(cur.points, cur.labels, cur.box, cur.pred, cur.mask_input, cur.selected, cur.objects[:i] + cur.objects[i + 1 :], cur.next_id))
        elif kind == "rename":
            i, label = args
            if not label.strip():
                return ValueError, False
            if not 0 <= i < len(cur.objects):
                return IndexError, False
            objs = list(cur.objects)
            objs[i] = (label, objs[i][1], objs[i][2])
            self.push(Expected(cur.points, cur.labels, cur.box, cur.pred, cur.mask_input, cur.selected, tuple(objs), cur.next_id))
        elif kind == "undo":
            if not self.past:
                return None, False
            self.future.append(self.now)
            self.now = self.past.pop()
            return None, True
        elif kind == "redo":
            if not self.future:
                return None, False
            self.past.append(self.now)
            self.now = self.future.pop()
            return None, True
        elif kind == "clear":
            if not cur.points and cur.box is None:
                return None, False
            self.push(Expected(objects=cur.objects, next_id=cur.next_id))
        return None, True


def do(w: SamWidget, action):
    kind, *args = action
    if kind == "point":
        return w.add_point(args[0], args[1], label=args[2])
    if kind == "box":
        return w.add_box(*args)
    return {"select": w.select, "commit": w.commit, "delete": w.delete, "rename": w.rename,
            "undo": w.undo, "redo": w.redo, "clear": w.clear}[kind](*args)


def check(w: SamWidget, e: Expected) -> None:
    assert w.prompts.points == e.points and w.prompts.labels == e.labels and w.prompts.box == e.box
    if e.pred is None:
        assert w.candidates is None and w.selected == 0 and not w.mask.any()
    else:
        assert np.array_equal(w.candidates.scores, e.pred.scores)
        assert w.selected == e.selected
        assert np.array_equal(w.mask, e.pred.masks[e.selected])
        slot = slot_of(w)
        assert slot.multimask == (e.mask_input is None)
        assert (slot.mask_input is None) == (e.mask_input is None)
        if e.mask_input is not None:
            assert np.array_equal(slot.mask_input, e.mask_input)
    assert [(o.label, o.color) for o in w.objects] == [(lab, col) for lab, col, _ in e.objects]
    for o, (_, _, m) in zip(w.objects, e.objects):
        assert np.array_equal(o.mask, m)
    labels = np.zeros((PH, PW), np.int32)
    for i, (_, _, m) in enumerate(e.objects, start=1):
        labels[m] = i
    assert np.array_equal(w.labels, labels)
    assert w.masks.shape == (len(e.objects), PH, PW)


@pytest.fixture(scope="module")
def prop_models(tiny_sam):
    return Segmenter(tiny_sam, exact=True), reference(tiny_sam, PROP_IMAGE)


@given(actions=st.lists(ACTIONS, min_size=2, max_size=20))
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
def test_random_action_sequences_match_the_model_and_undo_redo_is_identity(comm, prop_models, actions):
    seg, ref = prop_models
    w = SamWidget(PROP_IMAGE, segmenter=seg, display_size=40)
    try:
        w.wait_ready()
        model = Model(ref)
        for action in actions:
            w.wait_idle()
            v = w.value
            exc, moved = model.apply(action)
            event(f"{action[0]}: {exc.__name__ if exc else 'moved' if moved else 'no-op'}")
            if exc is not None:
                with pytest.raises(exc):
                    do(w, action)
            else:
                do(w, action)
            w.wait_idle()
            check(w, model.now)
            assert w.value == v + (1 if moved else 0), f"value after {action}"
            if moved and action[0] != "undo" and model.past:
                # undo restores exactly the earlier state; redo brings this one back
                assert w.undo() is True
                check(w, model.past[-1])
                assert w.redo() is True
                check(w, model.now)
                w.wait_idle()
                assert w.value == v + 3
    finally:
        w.close()


def test_a_callback_may_add_prompts_after_a_browser_click_without_deadlock(make_widget, tiny_sam):
    w = make_widget(SMALL, display_size=200).wait_ready()
    added = []

    def add_negative_once(ww):
        if not added and len(ww.prompts.points) == 1:
            added.append(True)
            ww.add_point(10, 10, label=0)  # runs on the worker thread: answered inline

    w.on_change(add_negative_once)
    ui = EventInjector(w, css_scale=ZOOM)
    ui.click(*ui.css_of(300, 200))
    w.wait_idle(timeout=30)
    assert added == [True]
    assert w.prompts.labels == (1, 0)
    ref = reference(tiny_sam, SMALL)
    slot = w._history.current.slot
    r = ref.predict(**w.prompts.as_arrays(), mask_input=slot.mask_input, multimask=slot.multimask)
    assert np.array_equal(w.mask, r.masks[w.selected])
