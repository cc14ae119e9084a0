"""SamWidget over several images, and editing committed objects -- through the real message paths.

Events go in through ipyevents' ``Event._handle_msg`` and the buttons' own messages
(``EventInjector``, ``frontend_click``); what the page would show comes out of the recorded
canvas messages (``RecordingComm``, ``LayerReplay``). Masks are compared with an independent
``Segmenter(sam, exact=True)``.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_image
from sam_widget import CheckpointError, SamWidget, Segmenter
from sam_widget.render import resize_mask, resize_rgb
from sam_widget.testing import (
    CURRENT,
    IMAGE,
    OBJECTS,
    EventInjector,
    LayerReplay,
    frontend_click,
    frontend_update,
    layer_commands,
    prompt_layer,
)
from widget_driver import blob_sam
import mask_look as look

ZOOM = 1.37
IMGS = [make_image(150, 200, seed=s) for s in (21, 22, 23)]


@pytest.fixture
def make_widget(comm):
    made: list[SamWidget] = []

    def make(images=IMGS, sam=None, **kwargs) -> SamWidget:
        kwargs.setdefault("display_size", 200)
        w = SamWidget(images, segmenter=Segmenter(sam if sam is not None else blob_sam(), exact=True), **kwargs)
        made.append(w)
        return w.wait_ready(30)

    yield make
    for w in made:
        w.close()


def shown(w, comm, layer, since=0) -> LayerReplay:
    return LayerReplay(w._view.size_hw).apply(layer_commands(w, comm, layer, since))


def last_image(w, comm, since=0) -> np.ndarray:
    put = layer_commands(w, comm, IMAGE, since, "putImageData")[-1]
    return put.image[..., :3]


def click_and_commit(w, ui, ix, iy):
    ui.click_image(ix, iy)
    w.wait_idle()
    ui.key("Enter")
    return w.objects[-1]


# ============================================================================ navigation
def test_arrow_keys_and_buttons_move_through_the_images_each_with_its_own_objects(make_widget, comm):
    w = make_widget()
    ui = EventInjector(w, css_scale=ZOOM)
    c = w._controls
    assert c.nav.layout.display == "flex" and "1 / 3" in c.nav_label.value and c.prev_btn.disabled
    a = click_and_commit(w, ui, 60, 50)
    v = w.value

    mark = comm.mark()
    ui.key("ArrowRight")
    assert w.index == 1 and w.value == v + 1 and "2 / 3" in c.nav_label.value and "image 2" in c.nav_label.value
    assert np.array_equal(last_image(w, comm, mark), resize_rgb(IMGS[1], w._display_hw))  # the new image is drawn
    assert not shown(w, comm, OBJECTS).covered.any() and not shown(w, comm, CURRENT).covered.any()
    assert prompt_layer(w, comm)["markers"] == []
    b = click_and_commit(w, ui, 150, 100)
    assert w.objects == (b,) and w.results[0].objects == (a,)

    frontend_click(c.next_btn)
    assert w.index == 2 and c.next_btn.disabled and not c.prev_btn.disabled
    ui.key("ArrowRight")  # already on the last image: nothing happens, no error
    assert w.index == 2 and w._error is None
    ui.click_image(30, 30)
    w.wait_idle()  # a prompt left on image 2

    mark = comm.mark()
    frontend_click(c.prev_btn)
    assert w.index == 1 and w.prompts.is_empty and w.objects == (b,)
    assert np.array_equal(last_image(w, comm, mark), resize_rgb(IMGS[1], w._display_hw))
    objects = shown(w, comm, OBJECTS)
    assert np.array_equal(objects.covered, resize_mask(b.mask, w._display_hw))
    ui.key("ArrowLeft")
    assert w.index == 0 and np.array_equal(shown(w, comm, OBJECTS).covered, resize_mask(a.mask, w._display_hw))
    assert np.array_equal(w.labels, a.mask.astype(np.int32))
    w.goto(2)
    assert w.prompts.points == ((30.0, 30.0),) and shown(w, comm, CURRENT).covered.any()
    assert len(prompt_layer(w, comm)["markers"]) == 1
    assert [len(r.objects) for r in w.results] == [1, 1, 0]


def test_a_single_image_shows_no_navigation(make_widget, comm):
    w = make_widget(IMGS[0])
    assert w._controls.nav.layout.display == "none" and len(w.images) == 1
    EventInjector(w).key("ArrowRight")
    assert w.index == 0 and w._error is None


def test_images_of_other_sizes_sit_centred_and_clicks_map_through_the_margin(make_widget, comm):
    tall = make_image(300, 120, seed=5)
    w = make_widget([IMGS[0], tall])
    w.next()
    w.wait_ready(30)
    vp = w._viewport
    assert w._view.size_hw == (150, 200) and vp.display_hw == (150, 60) and vp.offset == (70, 0)
    put = layer_commands(w, comm, IMAGE, 0, "putImageData")[-1]
    assert put.xy == (70.0, 0.0) and np.array_equal(put.image[..., :3], resize_rgb(tall, (150, 60)))
    ui = EventInjector(w, css_scale=ZOOM)
    ui.click(*ui.display_to_css(20, 70))  # in the grey margin: not on the image
    assert w.prompts.is_empty
    ui.click_image(100, 250)
    w.wait_idle()
    p = ui.image_pixel(*ui.css_hitting(100, 250))  # a CSS pixel spans 1.46 image rows here
    assert abs(p[0] - 100) <= 1 and abs(p[1] - 250) <= 1
    assert w.prompts.points == (p,) and w.mask.shape == (300, 120)
    marker = prompt_layer(w, comm)["markers"][0]
    assert marker[:2] == pytest.approx(vp.image_to_canvas(*p))
    cur = shown(w, comm, CURRENT)
    assert not cur.covered[:, :70].any() and not cur.covered[:, 130:].any()  # drawn on the image only


def test_an_unreadable_image_shows_its_error_and_clicks_do_nothing(make_widget, comm, tmp_path):
    from PIL import Image

    good = tmp_path / "a.png"
    Image.fromarray(IMGS[0]).save(good)
    bad = tmp_path / "b.png"
    bad.write_bytes(b"not a png")
    w = make_widget([str(good), str(bad)])
    ui = EventInjector(w, css_scale=ZOOM)
    ui.key("ArrowRight")
    assert "cannot show this image" in w._status.value and "b.png" in w._status.value
    fills = layer_commands(w, comm, IMAGE, 0, "fillRect")
    assert fills and fills[-1].args[2:4] == [200, 150]  # a grey field instead of the image
    ui.click(50, 50)
    assert w.prompts.is_empty and "b.png" in w._status.value
    ui.key("ArrowLeft")
    assert "cannot show" not in w._status.value and w.index == 0


# ============================================================================ editing
def test_alt_click_edits_an_object_clicks_refine_it_and_enter_replaces_it(make_widget, comm):
    sam = blob_sam()
    w = make_widget(IMGS[0], sam=sam)
    ref = Segmenter(sam, exact=True)
    ref.set_image(IMGS[0])
    ui = EventInjector(w, css_scale=ZOOM)
    a = click_and_commit(w, ui, 60, 50)
    b = click_and_commit(w, ui, 150, 110)
    assert len(w.objects) == 2

    before = w._history.current
    ui.click_image(5, 145, alt=True)  # no object there: a hint, nothing changes
    assert w._history.current is before and "no object under the pointer" in w._status.value

    ui.click_image(60, 50, alt=True)
    assert w.editing == 0 and w.prompts == a.prompts and np.array_equal(w.mask, a.mask)
    assert "editing “object 1”" in w._status.value and w._obj_list.options[0][0].endswith("✎")
    disp = w._display_hw
    objects = shown(w, comm, OBJECTS)  # the edited object leaves the objects layer ...
    assert np.array_equal(objects.covered, resize_mask(b.mask, disp))
    cur = shown(w, comm, CURRENT)  # ... and is shown as the current mask
    assert np.array_equal(cur.covered, resize_mask(a.mask, disp))
    look.assert_current_look(cur, cur.covered)

    ui.click_image(75, 60, shift=True)  # refine it with a negative point
    w.wait_idle()
    slot = w._history.current.slot
    assert np.array_equal(slot.mask_input, a.logits) and slot.multimask is False
    r = ref.predict(points=[[60, 50], [75, 60]], labels=[1, 0], mask_input=a.logits, multimask=False)
    assert np.array_equal(w.mask, r.masks[0])
    ui.key("Enter")
    new = w.objects[0]
    assert (new.id, new.label, new.color) == (a.id, a.label, a.color) and np.array_equal(new.mask, r.masks[0])
    assert w.objects[1] is b and w.editing is None and w.prompts.is_empty
    assert np.array_equal(shown(w, comm, OBJECTS).covered, resize_mask(new.mask, disp) | resize_mask(b.mask, disp))
    ui.key("z", ctrl=True)
    assert w.editing == 0 and len(w.prompts.points) == 2
    ui.key("Escape")  # stop editing: the object is back as it was
    assert w.editing is None and w.objects == (a, b)
    assert np.array_equal(shown(w, comm, OBJECTS).covered, resize_mask(a.mask, disp) | resize_mask(b.mask, disp))


def test_the_edit_button_edits_the_object_chosen_in_the_list(make_widget, comm):
    w = make_widget(IMGS[0])
    ui = EventInjector(w, css_scale=ZOOM)
    click_and_commit(w, ui, 60, 50)
    b = click_and_commit(w, ui, 150, 110)
    frontend_update(w._obj_list, index=1)
    frontend_click(w._edit_btn)
    assert w.editing == 1 and w.prompts == b.prompts
    frontend_update(w._label_text, value="renamed while editing")
    frontend_click(w._add_btn)
    assert w.objects[1].label == "renamed while editing" and w.objects[1].id == b.id and len(w.objects) == 2


def test_masks_brought_in_are_drawn_and_can_be_edited(make_widget, comm):
    w = make_widget(IMGS[0])
    yy, xx = np.mgrid[:150, :200]
    labels = np.where((xx - 50) ** 2 + (yy - 40) ** 2 < 400, 3, 0) + np.where((xx > 120) & (yy > 90), 9, 0)
    objs = w.set_objects(labels.astype(np.int32))
    assert len(objs) == 2
    disp = w._display_hw
    want = resize_mask(labels == 3, disp) | resize_mask(labels == 9, disp)
    assert np.array_equal(shown(w, comm, OBJECTS).covered, want)
    w.edit(0)
    EventInjector(w).click_image(50, 40)
    w.wait_idle()
    assert w._history.current.slot.mask_input is not None and w.candidates is not None
    w.commit()
    assert w.objects[0].id == objs[0].id and w.objects[0].prompts.points == ((50.0, 40.0),)


# ============================================================================ bad model arguments
@pytest.mark.parametrize(
    "kwargs, exc, match",
    [({"model": "vit_q"}, ValueError, "vit_q"), ({"device": "gpu0"}, ValueError, "gpu0"),
     ({"checkpoint": "/no/such/sam_vit_b.pth"}, CheckpointError, "does not exist")],
    ids=["model vit_q", "device gpu0", "missing checkpoint"],
)  # fmt: skip
def test_bad_model_arguments_raise_in_the_widget_constructor(comm, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        SamWidget(IMGS[0], **kwargs)


def test_a_widget_shows_a_session_made_in_a_script_and_leaves_it_open(comm, tiny_sam):
    from sam_widget import Session

    s = Session(IMGS, segmenter=Segmenter(tiny_sam, exact=True)).wait_ready(30)
    try:
        s.add_point(60, 50)
        obj = s.commit("from the script")
        s.next()
        w = SamWidget(s)
        assert w.session is s and w.index == 1 and w.results[0].objects == (obj,)
        assert "2 / 3" in w._controls.nav_label.value
        EventInjector(w).key("ArrowLeft")
        assert s.index == 0 and np.array_equal(shown(w, comm, OBJECTS).covered, resize_mask(obj.mask, w._display_hw))
        w.close()
        s.add_point(100, 100)  # the session goes on without its view
        assert not s.closed and len(s.prompts.points) == 1
    finally:
        s.close()
