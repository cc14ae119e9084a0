"""What the widget shows, driven through the real widget message paths (issue #13, item 2).

* The candidate buttons always match the kernel's candidates (after Enter, Esc, Undo, Redo).
* Selecting an object in the list highlights it on the canvas (the others dim); editing an
  object selects it; Esc, a new object's first click, deleting it clear the selection.
* ``w.opacity`` / the toolbar's opacity slider set the fill opacity of every mask.
* The current mask's fill avoids the image's colour under it (blue on a blue image is not blue).
* The status line shows milliseconds below one second; the help table keeps keys on one line.

Every canvas check replays the drawing commands the widget sent (what a browser paints), and
the static picture (``w.snapshot()``) is compared with it pixel for pixel.
"""

from __future__ import annotations

import numpy as np
import pytest

import mask_look as look
from conftest import make_image
from sam_widget import SamWidget, Segmenter
from sam_widget.render import CURRENT_CHOICES, DEFAULT_OPACITY, DIM, OUTLINE_DARK, OUTLINE_LIGHT, line_color, resize_mask
from sam_widget.session.status import SessionStatus, duration
from sam_widget.ui.controls import SHORTCUTS
from sam_widget.testing import CURRENT, OBJECTS, EventInjector, LayerReplay, RecordingComm, frontend_click, frontend_update, layer_commands
from test_static_picture import browser_view, marker_zone
from widget_driver import blob_sam

ZOOM = 1.37
IMG = make_image(150, 200, seed=31)  # shown at full size (display_size=200)


@pytest.fixture
def make_widget(comm):
    made: list[SamWidget] = []

    def make(image=IMG, **kwargs) -> SamWidget:
        kwargs.setdefault("segmenter", Segmenter(blob_sam(), exact=True))
        kwargs.setdefault("display_size", 200)
        w = SamWidget(image, **kwargs).wait_ready()
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


def shown(w: SamWidget, comm: RecordingComm, layer: int) -> LayerReplay:
    return LayerReplay(w._view.size_hw).apply(layer_commands(w, comm, layer))


def assert_picture_is_the_canvas(w: SamWidget, comm: RecordingComm) -> None:
    keep = ~marker_zone(w)
    assert np.array_equal(browser_view(w, comm)[keep], w.snapshot()[keep])


def candidates_shown(w: SamWidget) -> int:
    """How many candidate buttons the page shows (0 when the button group is hidden)."""
    c = w._controls
    if c.cand.layout.display == "none":
        assert c.cand_hint.layout.display != "none", "neither candidates nor the hint are shown"
        return 0
    assert c.cand_hint.layout.display == "none"
    return len(c.cand.options)


def candidates_in_kernel(w: SamWidget) -> int:
    pred = w.candidates
    return 0 if pred is None else len(pred)


# ============================================================================ candidate buttons
def test_candidate_buttons_always_match_the_kernels_candidates(make_widget):
    w = make_widget()
    ui = EventInjector(w, css_scale=ZOOM)
    c = w._controls
    assert candidates_shown(w) == candidates_in_kernel(w) == 0

    ui.click_image(60, 50)
    w.wait_idle()
    assert candidates_shown(w) == candidates_in_kernel(w) == 3 and c.cand.value == w.selected
    ui.key("2")
    assert w.selected == 1 and c.cand.value == 1

    steps = [("Enter", {}), ("z", {"ctrl": True}), ("Escape", {}), ("z", {"ctrl": True}), ("Z", {"ctrl": True, "shift": True}),
             ("z", {"ctrl": True})]
    seen = []
    for key, mods in steps:
        ui.key(key, **mods)
        w.wait_idle()
        assert candidates_shown(w) == candidates_in_kernel(w), f"after {key} {mods}"
        if candidates_in_kernel(w):
            assert c.cand.value == w.selected
        seen.append(candidates_shown(w))
    assert seen == [0, 3, 0, 3, 0, 3]  # Enter, undo, Esc, undo, redo (the Esc again), undo
    assert w.selected == 1  # the chosen candidate came back with the undo

    ui.click_image(120, 100)  # a second prompt refines: one candidate
    w.wait_idle()
    assert candidates_shown(w) == candidates_in_kernel(w) == 1
    frontend_click(c.clear_btn)  # the toolbar's Clear
    assert candidates_shown(w) == candidates_in_kernel(w) == 0
    frontend_click(c.undo_btn)
    assert candidates_shown(w) == candidates_in_kernel(w) == 1
    # a candidate button clicked in the page selects in the kernel
    frontend_click(c.undo_btn)
    assert candidates_shown(w) == 3
    frontend_update(c.cand, index=2)
    assert w.selected == 2


# ============================================================================ highlight
def _two_objects(w: SamWidget):
    ui = EventInjector(w, css_scale=ZOOM)
    ui.click_image(60, 50)
    w.wait_idle()
    ui.key("Enter")
    ui.click_image(140, 100)
    w.wait_idle()
    ui.key("Enter")
    a, b = w.objects
    assert not (a.mask & b.mask).any()
    return ui, a, b


def test_selecting_an_object_in_the_list_highlights_it_and_dims_the_others(make_widget, comm):
    w = make_widget()
    ui, a, b = _two_objects(w)
    hw = w._display_hw
    da, db = resize_mask(a.mask, hw), resize_mask(b.mask, hw)
    assert w.highlighted is None and w._obj_list.value is None
    fill = round(DEFAULT_OPACITY * 255)
    plain = shown(w, comm, OBJECTS).rgba
    assert (plain[look.fill(da)][:, 3] == fill).all() and (plain[look.fill(db)][:, 3] == fill).all()

    frontend_update(w._obj_list, index=0)  # the user clicks "0: object 1" in the list
    assert w.highlighted == 0
    lay = shown(w, comm, OBJECTS).rgba
    assert (lay[look.edge(da)][:, :3] == OUTLINE_DARK).all()
    assert (lay[look.inner_line(da)][:, :3] == OUTLINE_LIGHT).all()  # a white line, then its colour
    assert (lay[look.eroded(da, 3) & ~look.eroded(da, 5)][:, :3] == line_color(a.color)).all()
    assert (lay[look.fill(da, 5)][:, 3] > fill).all()  # more opaque than before
    assert (lay[look.fill(db, 2)][:, 3] == round(DEFAULT_OPACITY * DIM * 255)).all()  # the other one dims
    assert_picture_is_the_canvas(w, comm)

    frontend_update(w._obj_list, index=1)
    assert w.highlighted == 1
    lay = shown(w, comm, OBJECTS).rgba
    assert (lay[look.inner_line(db)][:, :3] == OUTLINE_LIGHT).all()
    assert (lay[look.fill(da, 2)][:, 3] == round(DEFAULT_OPACITY * DIM * 255)).all()
    assert_picture_is_the_canvas(w, comm)

    # Esc drops the highlight: every object as before
    ui.key("Escape")
    assert w.highlighted is None and w._obj_list.value is None
    assert np.array_equal(shown(w, comm, OBJECTS).rgba, plain)

    # from code, with the list following
    w.highlighted = 1
    assert w._obj_list.value == 1 and (shown(w, comm, OBJECTS).rgba[look.inner_line(db)][:, :3] == OUTLINE_LIGHT).all()
    before = shown(w, comm, OBJECTS).rgba.copy()
    for bad, err in ((2, IndexError), (-1, IndexError), ("0", TypeError), (True, TypeError), (1.0, TypeError)):
        with pytest.raises(err, match="object|highlighted"):
            w.highlighted = bad
    assert w.highlighted == 1 and np.array_equal(shown(w, comm, OBJECTS).rgba, before)
    w.highlighted = None
    assert w._obj_list.value is None and np.array_equal(shown(w, comm, OBJECTS).rgba, plain)


def test_edit_selects_the_object_and_a_new_object_delete_or_undo_clear_the_selection(make_widget, comm):
    w = make_widget()
    ui, a, b = _two_objects(w)
    hw = w._display_hw
    da, db = resize_mask(a.mask, hw), resize_mask(b.mask, hw)

    # Alt + click on b: b is edited and selected in the list; it leaves the objects layer (shown
    # as the current mask) and a dims
    ui.click_image(140, 100, alt=True)
    w.wait_idle()
    assert w.editing == 1 and w.highlighted == 1 and w._obj_list.value == 1
    lay = shown(w, comm, OBJECTS)
    assert not (lay.covered & db).any() and (lay.rgba[look.fill(da, 2)][:, 3] == round(DEFAULT_OPACITY * DIM * 255)).all()
    look.assert_current_look(shown(w, comm, CURRENT), db)
    assert_picture_is_the_canvas(w, comm)

    # Enter replaces b: it stays selected and is drawn highlighted
    ui.key("Enter")
    assert w.editing is None and w.highlighted == 1
    assert (shown(w, comm, OBJECTS).rgba[look.inner_line(db)][:, :3] == OUTLINE_LIGHT).all()

    # the Edit button edits the list's selection
    frontend_update(w._obj_list, index=0)
    frontend_click(w._edit_btn)
    assert w.editing == 0 and w.highlighted == 0
    ui.key("Escape")  # stop editing: no highlight
    assert w.editing is None and w.highlighted is None

    # a new object's first click clears the selection
    frontend_update(w._obj_list, index=0)
    ui.click_image(20, 130)
    w.wait_idle()
    assert w.highlighted is None and w._obj_list.value is None
    frontend_click(w._clear_btn)

    # deleting the selected object clears it; undo brings the object back, not the highlight
    frontend_update(w._obj_list, index=1)
    frontend_click(w._delete_btn)
    assert len(w.objects) == 1 and w.highlighted is None and w._obj_list.value is None
    ui.key("z", ctrl=True)
    assert len(w.objects) == 2 and w.highlighted is None
    # the selection follows its object when an earlier one goes
    w.highlighted = 1
    w.delete(0)
    assert w.highlighted == 0 and w.objects[0].id == b.id and w._obj_list.value == 0
    assert_picture_is_the_canvas(w, comm)


# ============================================================================ opacity
def test_the_opacity_slider_and_w_opacity_set_the_fill_of_every_mask(make_widget, comm):
    w = make_widget()
    ui = EventInjector(w, css_scale=ZOOM)
    ui.click_image(60, 50)
    w.wait_idle()
    ui.key("Enter")
    ui.click_image(140, 100)
    w.wait_idle()
    hw = w._display_hw
    da, cur = resize_mask(w.objects[0].mask, hw), w._session.display_mask()
    slider = w._controls.opacity_slider
    assert w.opacity == DEFAULT_OPACITY == slider.value

    frontend_update(slider, value=0.8)  # the user drags the toolbar slider
    assert w.opacity == 0.8
    assert (shown(w, comm, OBJECTS).rgba[look.fill(da)][:, 3] == round(0.8 * 255)).all()
    assert (shown(w, comm, CURRENT).rgba[look.fill(cur)][:, 3] == round(0.8 * 255)).all()
    assert_picture_is_the_canvas(w, comm)

    w.opacity = 0  # outlines only
    assert slider.value == 0.0
    obj, now = shown(w, comm, OBJECTS).rgba, shown(w, comm, CURRENT).rgba
    assert (obj[look.fill(da)][:, 3] == 0).all() and (now[look.fill(cur)][:, 3] == 0).all()
    assert (obj[look.edge(da)][:, 3] == 255).all() and (now[look.edge(cur)][:, 3] == 255).all()
    assert_picture_is_the_canvas(w, comm)

    for bad, err in ((1.5, ValueError), (-0.1, ValueError), (float("nan"), ValueError), ("0.5", TypeError), (None, TypeError)):
        with pytest.raises(err, match="opacity"):
            w.opacity = bad
    assert w.opacity == 0.0


# ============================================================================ the current mask's colour
def test_the_current_mask_is_not_blue_on_a_blue_image(make_widget, comm):
    rng = np.random.default_rng(5)
    sky = np.clip(rng.normal((60, 120, 215), 6, (150, 200, 3)), 0, 255).astype(np.uint8)  # a blue sky
    w = make_widget(sky)
    EventInjector(w, css_scale=ZOOM).click_image(100, 75)
    w.wait_idle()
    m = w._session.display_mask()
    lay = shown(w, comm, CURRENT)
    fill = lay.rgba[look.fill(m)][:, :3]
    assert (fill == fill[0]).all() and tuple(fill[0]) in CURRENT_CHOICES[1:]  # not the usual blue
    look.assert_current_look(lay, m, tuple(int(v) for v in fill[0]))
    assert_picture_is_the_canvas(w, comm)

    g = make_widget(np.full((150, 200, 3), (90, 160, 70), np.uint8))  # on green the usual blue stays
    EventInjector(g, css_scale=ZOOM).click_image(100, 75)
    g.wait_idle()
    look.assert_current_look(shown(g, comm, CURRENT), g._session.display_mask(), CURRENT_CHOICES[0])


# ============================================================================ status line and help
def test_durations_below_one_second_are_shown_in_milliseconds():
    assert [duration(s) for s in (0.0, 0.0004, 0.012, 0.4, 0.9994, 0.9996, 1.0, 12.34)] == [
        "0 ms", "0 ms", "12 ms", "400 ms", "999 ms", "1.0 s", "1.0 s", "12.3 s"]
    base = dict(model="tiny_shapes", device="cpu", image_hw=(384, 512), phase="ready", elapsed_s=0.0, problem=None,
                prefetched=False, message=None, index=0, count=1, name="image", editing=None)
    text = SessionStatus(encode_s=0.043, decode_s=0.0081, **base).text()
    assert "encode 43 ms" in text and "last decode 8 ms" in text and "0.0 s" not in text
    assert "encode 2.5 s" in SessionStatus(encode_s=2.5, decode_s=None, **base).text()
    assert "embedding cached" in SessionStatus(encode_s=None, decode_s=None, **base).text()
    loading = SessionStatus(encode_s=None, decode_s=None, **{**base, "phase": "encoding", "elapsed_s": 0.25}).text()
    assert "encoding… 250 ms" in loading


def test_the_widgets_status_line_never_says_zero_seconds(make_widget):
    w = make_widget()
    s = w._session.status
    assert s.encode_s is not None  # this image was encoded here
    assert f"encode {duration(s.encode_s)}" in w._status.value and " 0.0 s" not in w._status.value


def test_the_help_table_keeps_each_key_on_one_line_apart_from_its_description(make_widget):
    w = make_widget()
    html = w._help.value
    assert html.count("<tr>") == len(SHORTCUTS)
    for row in html.split("<tr>")[1:]:
        key_cell = row.split("</td>")[0]
        assert "white-space:nowrap" in key_cell and "padding:1px 16px 1px 0" in key_cell
    assert "Right click / Shift + click" in html
