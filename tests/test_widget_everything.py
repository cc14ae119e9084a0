"""SamWidget's *Everything*: button, key, proposals layer, clicks on proposals -- through the real message paths.

Buttons are pressed with their own front-end messages (``frontend_click``), keys and clicks
go in through ipyevents' ``Event._handle_msg`` (``EventInjector``), and what the page shows is
replayed from the canvas messages recorded on ipycanvas' comm (``RecordingComm``,
``LayerReplay``). Runs use the shipped ``tiny_shapes`` model; they are paused mid-way with
:class:`everything_driver.BatchGate` (no sleeps, no timing).
"""

from __future__ import annotations

import numpy as np
import pytest

from sam_widget import SamWidget, Segmenter, load_sam
from sam_widget.data import shapes_image
from sam_widget.render import resize_mask
from sam_widget.session.everything import proposal_key
from sam_widget.testing import OBJECTS, EventInjector, LayerReplay, frontend_click, layer_commands
from sam_widget.ui.canvas_view import PROPOSALS
from sam_widget.ui.comms import widget_tree
from sam_widget.ui.controls import SHORTCUTS

from everything_driver import SHAPES_PARAMS, BatchGate

P = SHAPES_PARAMS
IMAGE, _ = shapes_image(1)


@pytest.fixture(scope="module")
def shapes_sam():
    return load_sam("tiny_shapes")


@pytest.fixture
def make_widget(comm, shapes_sam):
    made: list[SamWidget] = []

    def make(image=IMAGE, **kwargs) -> SamWidget:
        kwargs.setdefault("display_size", 128)  # shown at half size
        w = SamWidget(image, segmenter=Segmenter(shapes_sam), **kwargs)
        w.everything_params = P
        made.append(w)
        return w.wait_ready(60)

    yield make
    for w in made:
        w.close()
        w.session._everything.join(30)


def shown(w, comm, layer) -> np.ndarray:
    """``(h, w)`` bool: what the page shows painted on ``layer``."""
    return LayerReplay(w._view.size_hw).apply(layer_commands(w, comm, layer)).covered


def proposals_shown(props, indices, display_hw) -> np.ndarray:
    out = np.zeros(display_hw, bool)
    for i in indices:
        out |= props[i].mask_at_size(display_hw)
    return out


def free_pixel(ui, props, i) -> tuple[int, int]:
    """An image pixel deep inside proposal ``i`` and outside every smaller proposal, that a
    click at :meth:`EventInjector.css_hitting` lands on exactly."""
    m = props[i].mask.copy()
    for q in props:
        if q.area < props[i].area:
            m &= ~q.mask
    for _ in range(3):  # erode: a CSS pixel covers two image pixels here
        p = np.pad(m, 1)
        m = m & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
    ys, xs = np.nonzero(m)
    assert len(xs), f"proposal {i} has no free interior"
    k = len(xs) // 2
    x, y = int(xs[k]), int(ys[k])
    seen = ui.image_pixel(*ui.css_hitting(x, y))
    assert seen is not None and m[seen[1], seen[0]]
    return seen


def topmost(props) -> list[int]:
    """Proposals with a free interior (a click can reach them), smallest first."""
    out = []
    for i in sorted(range(len(props)), key=lambda i: props[i].area):
        m = props[i].mask.copy()
        for q in props:
            if q.area < props[i].area:
                m &= ~q.mask
        if m.sum() > 200:
            out.append(i)
    return out


# ============================================================================ starting, drawing
def test_the_everything_button_starts_a_run_in_the_background_with_a_progress_bar(make_widget, monkeypatch):
    w = make_widget()
    e = w._everything_panel
    assert e.stop_btn.disabled and e.accept_all_btn.disabled and e.clear_btn.disabled
    gate = BatchGate(monkeypatch, pause_after=2)
    frontend_click(e.run_btn)  # returns while the run goes on: the kernel stays free
    gate.wait_paused()
    run = w.everything_run
    assert run.running and run.params["points_per_side"] == P["points_per_side"]
    assert not e.stop_btn.disabled and e.progress.layout.display == "" and e.progress.value == 0.5
    assert "50 %" in e.info.value and "everything: 50 %" in w._status.value
    gate.release()
    props = run.wait(60)
    assert not e.accept_all_btn.disabled and not e.clear_btn.disabled and e.stop_btn.disabled
    assert e.progress.layout.display == "none" and f"{len(props)} of {len(props)} proposals shown" in e.info.value


def test_the_e_key_starts_a_run_with_the_widgets_parameters(make_widget):
    w = make_widget()
    ui = EventInjector(w)
    ui.key("e")
    props = w.everything_run.wait(60)
    assert w.everything_run.params["pred_iou_thresh"] == P["pred_iou_thresh"] and len(props) >= 5
    keys = [k for k, _ in SHORTCUTS]
    assert "E" in keys and len(keys) == len(set(keys))  # documented in the help, clashing with no other key


def test_proposals_are_drawn_batch_by_batch_from_display_size_masks(make_widget, comm, monkeypatch):
    w = make_widget()
    disp = w._display_hw
    assert disp == (128, 128)

    def look(props):  # right after a batch's proposals were handed to the session
        draws = len(layer_commands(w, comm, PROPOSALS, name="putImageData"))
        return draws, frozenset(proposal_key(p) for p in props)

    gate = BatchGate(monkeypatch, pause_after=None, hook=look)
    props = w.segment_everything(**dict(P, points_per_batch=8))
    batches = [b for b in gate.batches if b[0] == 1]
    assert len(batches) == props.stats["batches"] == 8
    draws, keys, same = 0, frozenset(), 0
    for _, _, n, (now, new_keys) in batches:  # one overlay for every batch that changed the proposals
        assert now == draws + (new_keys != keys and bool(new_keys))
        same += new_keys == keys
        draws, keys = now, new_keys
    assert same >= 1  # (a batch that found nothing new sent nothing)
    assert sum(1 for b in batches if b[2]) >= 2 and draws >= 2  # on the page before the run ended
    assert np.array_equal(shown(w, comm, PROPOSALS), proposals_shown(props, range(len(props)), disp))
    puts = layer_commands(w, comm, PROPOSALS, name="putImageData")
    assert all(c.image.shape[0] <= disp[0] and c.image.shape[1] <= disp[1] for c in puts)


def test_each_batch_shows_exactly_the_proposals_found_so_far(make_widget, comm, monkeypatch):
    w = make_widget()
    disp = w._display_hw
    seen = []

    def look(props):
        seen.append((shown(w, comm, PROPOSALS).copy(), proposals_shown(props, range(len(props)), disp), [proposal_key(p) for p in props]))

    BatchGate(monkeypatch, pause_after=None, hook=look)
    w.segment_everything(**P)
    assert len(seen) >= 3 and sum(1 for _, _, keys in seen if keys) >= 2
    for page, want, _ in seen:
        assert np.array_equal(page, want)


# ============================================================================ clicks on proposals
def test_a_click_on_a_proposal_accepts_it_and_shift_click_rejects_another(make_widget, comm):
    w = make_widget()
    ui = EventInjector(w)
    props = w.segment_everything(**P)
    disp = w._display_hw
    a, b = topmost(props)[:2]
    ui.click_image(*free_pixel(ui, props, a))
    assert len(w.objects) == 1 and np.array_equal(w.objects[0].mask, props[a].mask) and w.prompts.is_empty
    assert np.array_equal(shown(w, comm, OBJECTS), resize_mask(props[a].mask, disp))
    rest = [i for i in range(len(props)) if i != a]
    assert np.array_equal(shown(w, comm, PROPOSALS), proposals_shown(props, rest, disp))
    ui.click_image(*free_pixel(ui, props, b), shift=True)
    assert len(w.objects) == 1 and w.prompts.is_empty and b not in w.pending_proposals
    rest.remove(b)
    assert np.array_equal(shown(w, comm, PROPOSALS), proposals_shown(props, rest, disp))
    ui.key("z", ctrl=True)  # undo the rejection, then the acceptance
    ui.key("z", ctrl=True)
    assert w.objects == () and not shown(w, comm, OBJECTS).any()
    assert np.array_equal(shown(w, comm, PROPOSALS), proposals_shown(props, range(len(props)), disp))


def test_clicks_off_the_proposals_or_while_making_a_mask_are_prompts(make_widget):
    w = make_widget()
    ui = EventInjector(w)
    props = w.segment_everything(**P)
    bg = ~np.any(props.masks, axis=0)
    ys, xs = np.nonzero(bg)
    ui.click_image(int(xs[len(xs) // 2]), int(ys[len(ys) // 2]))
    assert len(w.prompts.points) == 1 and w.objects == ()
    a = topmost(props)[0]
    ui.click_image(*free_pixel(ui, props, a))  # prompts are given: this click refines the mask
    assert len(w.prompts.points) == 2 and w.objects == () and a in w.pending_proposals


def test_accept_all_and_clear_proposals_buttons(make_widget, comm):
    w = make_widget()
    e = w._everything_panel
    props = w.segment_everything(**P)
    w.reject(0)
    frontend_click(e.accept_all_btn)
    assert len(w.objects) == len(props) - 1 and not shown(w, comm, PROPOSALS).any() and e.accept_all_btn.disabled
    w.undo()
    frontend_click(e.clear_btn)
    assert w.proposals is None and not shown(w, comm, PROPOSALS).any() and e.clear_btn.disabled
    w.undo()
    assert shown(w, comm, PROPOSALS).any() and w.pending_proposals == tuple(range(1, len(props)))


def test_the_stop_button_keeps_the_partial_result(make_widget, comm, monkeypatch):
    w = make_widget()
    e = w._everything_panel
    gate = BatchGate(monkeypatch, pause_after=2)
    frontend_click(e.run_btn)
    gate.wait_paused()
    frontend_click(e.stop_btn)
    gate.release()
    props = w.everything_run.wait(60)
    assert props.partial and props.stats["batches"] == 2
    assert e.progress.layout.display == "" and e.progress.bar_style == "warning" and e.progress.value == 0.5
    assert "stopped at 50 %" in w._status.value
    assert np.array_equal(shown(w, comm, PROPOSALS), proposals_shown(props, range(len(props)), w._display_hw))


def test_a_flat_image_says_no_proposals_in_the_status_line_not_an_error(make_widget):
    w = make_widget(np.full((100, 140, 3), 90, np.uint8))
    frontend_click(w._everything_panel.run_btn)
    w.everything_run.wait(60)
    assert "no proposals" in w._status.value and "#dc2626" not in w._status.value
    assert "no proposals" in w._everything_panel.info.value


def test_a_bad_parameter_from_the_button_goes_to_the_status_line(make_widget):
    w = make_widget()
    with pytest.raises(ValueError, match="pred_iou_thresh"):
        w.everything_params = dict(pred_iou_thresh=2.0)
    w._everything_params = dict(pred_iou_thresh=2.0)  # (as if it got through)
    frontend_click(w._everything_panel.run_btn)
    assert "pred_iou_thresh" in w._status.value and "#dc2626" in w._status.value and w.everything_run is None


def test_a_large_image_gives_full_resolution_objects_and_display_size_overlays(make_widget, comm):
    big, _ = shapes_image(1, size=(1024, 1280))
    w = make_widget(big, display_size=200)
    ui = EventInjector(w)
    props = w.segment_everything(**P)
    assert len(props) >= 3 and w._display_hw == (160, 200)
    a = topmost(props)[0]
    ui.click_image(*free_pixel(ui, props, a))
    assert w.objects[0].mask.shape == (1024, 1280) and np.array_equal(w.objects[0].mask, props[a].mask)
    puts = layer_commands(w, comm, PROPOSALS, name="putImageData")
    assert puts and all(c.image.shape[0] <= 160 and c.image.shape[1] <= 200 for c in puts)


def test_the_new_controls_skip_execute_hooks_off_the_main_thread(make_widget):
    w = make_widget()
    tree = list(widget_tree(w, w._events))
    for x in (w._everything_panel.run_btn, w._everything_panel.progress, w._everything_panel.stop_btn):
        assert x in tree and getattr(x.comm, "_sam_widget_hookless", False)


def test_the_snapshot_shows_the_proposals_like_the_canvas(make_widget, comm):
    w = make_widget()
    props = w.segment_everything(**P)
    w.accept(topmost(props)[0])
    base = w._painter.picture()
    pic = w.snapshot()
    layer = LayerReplay(w._view.size_hw).apply(layer_commands(w, comm, PROPOSALS)).rgba
    a = layer[..., 3:4] / 255.0
    want = np.rint(a * layer[..., :3] + (1 - a) * base).astype(np.uint8)  # the proposals layer over the rest
    assert np.abs(pic.astype(int) - want).max() <= 1 and (pic != base).any()
    full = w.snapshot(full_size=True)
    assert full.shape == (*IMAGE.shape[:2], 3)
    pending = np.any([props[i].mask for i in w.pending_proposals], axis=0)
    assert (full[pending] != w._painter.picture(full_size=True)[pending]).any(axis=1).mean() > 0.3
    w.clear_proposals()
    assert np.array_equal(w.snapshot(), base)


def test_the_opacity_slider_fades_the_proposals_like_the_objects(make_widget, comm):
    w = make_widget()
    w.segment_everything(**P)
    assert w.pending_proposals

    def layer():
        return LayerReplay(w._view.size_hw).apply(layer_commands(w, comm, PROPOSALS)).rgba

    at_default = layer()
    painted = at_default[..., 3] > 0
    outline = at_default[..., 3] == round(0.9 * 255)
    fill = painted & ~outline
    assert fill.sum() > 100
    w._controls.opacity_slider.value = 0.9  # the user drags the slider (the kernel side of the message)
    strong = layer()
    assert strong[fill, 3].mean() > 1.8 * at_default[fill, 3].mean()
    assert np.array_equal(strong[outline, 3], at_default[outline, 3])  # outlines stay as they are
    w.opacity = 0.0
    faded = layer()
    assert not faded[fill, 3].any() and (faded[outline, 3] > 0).all()  # outlines only, as for objects
    base = w._painter.picture()
    assert np.array_equal(w.snapshot()[fill], base[fill])  # the still picture agrees with the canvas
    w.opacity = 0.45
    assert np.array_equal(layer(), at_default)
