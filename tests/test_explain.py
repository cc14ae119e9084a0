"""The explain view: what the model did, from code (``explain()``) and in the panel.

Each test is a user action (a click, the Explain key, moving the threshold slider) and
checks its real effect: numbers against segment_anything's own definitions, mask pixels on
the replayed canvas against the engine's, bytes against what the comm recorded.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image
from sam_widget import SamWidget, Segmenter, Session
from sam_widget.render_explain import diverging_rgb, heatmap_picture
from sam_widget.session.explain import STAGES
from sam_widget.testing import CURRENT, EventInjector, LayerReplay, frontend_click, frontend_update, layer_commands
from sam_widget.ui.controls import SHORTCUTS
from sam_widget.ui.explain_panel import HEATMAP
from widget_driver import blob_sam

IMAGE = make_image(150, 200, seed=3)
IMAGE.setflags(write=False)
CLICK = (120, 70)


@pytest.fixture(scope="module")
def blob():
    """Masks are blobs around the clicks, logits span about +-10: thresholds of +-0.5 make sense."""
    return blob_sam()


@pytest.fixture
def widget(comm, tiny_sam):
    made = []

    def make(image=IMAGE, exact=True, segmenter=None, **kw) -> SamWidget:
        w = SamWidget(image, segmenter=segmenter or Segmenter(tiny_sam, exact=exact), **kw)
        w.wait_ready(60)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


@pytest.fixture
def session(tiny_sam):
    made = []

    def make(exact=True, image=IMAGE, segmenter=None) -> Session:
        s = Session(image, segmenter=segmenter or Segmenter(tiny_sam, exact=exact))
        s.wait_ready(60)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def shown(w, comm) -> np.ndarray:
    """The current-mask layer as a browser shows it (replayed from every recorded command)."""
    return LayerReplay(w._display_hw).apply(layer_commands(w, comm, CURRENT)).covered


def predictor_answer(sam, image, point):
    """SamPredictor's own answer for one click: image-size logits (3, H, W) and low-res logits."""
    from segment_anything import SamPredictor

    p = SamPredictor(sam)
    p.set_image(image)
    logits, _, low = p.predict(point_coords=np.array([point], float), point_labels=np.array([1]), return_logits=True)
    return logits, low


# ============================================================================ explain() from code
def test_candidates_carry_predicted_iou_and_segment_anythings_stability_score(session, tiny_sam):
    """One click: three candidates, each with the predicted IoU and calculate_stability_score of
    SamPredictor's image-size logits (exact: equal; fast: computed from the low-res logits)."""
    from segment_anything.utils.amg import calculate_stability_score

    full, low = predictor_answer(tiny_sam, IMAGE, CLICK)
    expected = calculate_stability_score(torch.from_numpy(full), 0.0, 1.0).numpy()
    s = session(exact=True)
    s.add_point(*CLICK)
    e = s.explain()
    assert list(e.candidates.index) == [1, 2, 3]
    assert np.array_equal(e.scores, s.candidates.scores)
    assert np.array_equal(e.candidates["predicted_iou"].to_numpy(), s.candidates.scores.astype(float))
    assert np.array_equal(e.stability, expected)
    assert np.array_equal(e.candidates["area"].to_numpy(), (full > 0).sum(axis=(1, 2)))
    assert np.array_equal(e.masks, full > 0)
    assert e.chosen == s.selected and e.candidates["chosen"].tolist() == [i == s.selected for i in range(3)]
    assert np.array_equal(e.logits, low[e.chosen])
    assert e.logits_range == (float(low[e.chosen].min()), float(low[e.chosen].max()))
    assert e.mask_input is None  # a first answer: from the prompts alone

    f = session(exact=False)
    f.add_point(*CLICK)
    ef = f.explain()
    fast_full = tiny_sam.postprocess_masks(torch.from_numpy(f.candidates.logits)[None], *_sizes(tiny_sam, IMAGE))[0]
    np.testing.assert_allclose(ef.stability, calculate_stability_score(fast_full, 0.0, 1.0).numpy(), atol=1e-3)


def _sizes(sam, image):
    from segment_anything.utils.transforms import ResizeLongestSide

    H, W = image.shape[:2]
    return ResizeLongestSide.get_preprocess_shape(H, W, sam.image_encoder.img_size), (H, W)


def test_a_refinement_shows_the_logits_it_refined_and_the_prompts_on_the_logits(session, tiny_sam):
    s = session()
    s.add_point(*CLICK)
    first = s.explain()
    s.add_point(30, 40, label=0)
    e = s.explain()
    assert len(e.scores) == 1 and e.chosen == 0
    assert np.array_equal(e.mask_input, first.logits)  # the chosen candidate's logits came back as mask_input
    # markers: the low-res cell under each marker is the one whose area holds the clicked pixel
    img, lr = tiny_sam.image_encoder.img_size, e.logits.shape[0]
    H, W = IMAGE.shape[:2]
    scale = img / max(H, W)
    for (x, y), (mx, my, lab) in zip(s.prompts.points, e.markers):
        col, row = int(x * scale * lr / img), int(y * scale * lr / img)
        assert (math.floor(mx + 0.5), math.floor(my + 0.5)) == (col, row)
        assert lab in (0, 1)
    assert [m[2] for m in e.markers] == [1, 0]
    assert e.valid_hw == (H * scale * lr / img, W * scale * lr / img)


def test_without_prompts_explain_has_no_candidates_but_the_totals(session):
    s = session()
    e = s.explain()
    assert e.candidates.empty and e.logits is None and e.mask is None and e.chosen is None
    assert e.totals["encoder_calls"] == 1 and e.totals["predictions"] == 0
    assert list(e.timings.index) == list(STAGES)


def test_timings_name_how_the_embedding_was_had(session, tiny_sam, tmp_path):
    seg = Segmenter(tiny_sam, exact=True, cache_dir=tmp_path)
    s = session(segmenter=seg)
    s.add_point(*CLICK)
    t = s.explain().timings
    assert "encoder ran" in t.loc["image encoder", "detail"]
    assert t.loc["preprocessing", "seconds"] > 0 and t.loc["image encoder", "seconds"] > 0
    assert "3 candidates" in t.loc["prompt encoder + mask decoder", "detail"]
    assert t.loc["prompt encoder + mask decoder", "seconds"] > 0
    assert t.loc["bytes sent", "detail"] == "no view (headless session)" and math.isnan(t.loc["bytes sent", "bytes"])
    s.add_point(30, 40, label=0)
    assert "refining the previous logits" in s.explain().timings.loc["prompt encoder + mask decoder", "detail"]

    again = session(segmenter=seg)  # the same image in a second session: the memory cache
    again.add_point(*CLICK)
    assert "memory cache hit" in again.explain().timings.loc["image encoder", "detail"]
    fresh = session(segmenter=Segmenter(tiny_sam, exact=True, cache_dir=tmp_path))  # a new process's view: disk
    fresh.add_point(*CLICK)
    e = fresh.explain()
    assert "disk cache hit" in e.timings.loc["image encoder", "detail"]
    assert e.timings.loc["preprocessing", "seconds"] == 0.0
    assert e.totals == {
        "encoder_calls": 0, "memory_hits": 0, "disk_hits": 1, "decoder_calls": 1, "predictions": 1,
    }


# ============================================================================ the threshold
def test_the_threshold_cuts_the_mask_through_the_engine(session, blob):
    """w.threshold: the mask is where SamPredictor's image-size logits exceed it."""
    full, _ = predictor_answer(blob, IMAGE, CLICK)
    s = session(segmenter=Segmenter(blob, exact=True))
    s.add_point(*CLICK)
    k = s.selected
    lo, hi = s.explain().logits_range
    base = s.mask
    assert s.threshold == 0.0 and np.array_equal(base, full[k] > 0)
    for t in (0.5, -0.5, hi, lo):
        s.threshold = t
        assert s.threshold == t
        assert np.array_equal(s.mask, full[k] > t), t
        assert np.array_equal(s.explain().mask, full[k] > t)
    s.threshold = 0.5
    assert s.mask.sum() <= base.sum() and not (s.mask & ~base).any()  # a higher threshold only removes pixels
    obj = s.commit()
    assert np.array_equal(obj.mask, full[k] > 0.5) and obj.threshold == 0.5 and obj.extra == {"threshold": 0.5}
    s.threshold = 0.0  # back to SAM's: the default path again
    s.add_point(*CLICK)
    assert s.commit().threshold is None


def test_a_bad_threshold_is_refused_and_changes_nothing(session, blob):
    s = session(segmenter=Segmenter(blob, exact=True))
    s.add_point(*CLICK)
    s.threshold = 0.25
    before, lo, hi = s.mask, *s.explain().logits_range
    for bad, err in [(float("nan"), ValueError), (hi + 1.0, ValueError), (lo - 0.01, ValueError), (math.inf, ValueError),
                     ("0.5", TypeError), (True, TypeError), (None, TypeError)]:
        with pytest.raises(err, match="threshold"):
            s.threshold = bad
        assert s.threshold == 0.25 and np.array_equal(s.mask, before)


# ============================================================================ the panel
def test_key_x_opens_the_panel_and_the_slider_moves_the_mask_on_the_canvas(widget, comm, blob):
    full, _ = predictor_answer(blob, IMAGE, CLICK)
    w = widget(display_size=200, segmenter=Segmenter(blob, exact=True))  # shown at the image's size: canvas pixels are image pixels
    keys = [tok.strip().upper() for k, _ in SHORTCUTS for part in k.split(" / ") for tok in part.split("+")]
    assert keys.count("X") == 1  # the explain key clashes with no other shortcut
    inj = EventInjector(w)
    assert w._explain.box.layout.display == "none"
    inj.key("x")
    assert w._explain.visible and w._explain.box.layout.display == "flex"
    assert "no prompts yet" in w._explain.title.value
    inj.click_image(*CLICK)
    w.wait_idle()
    k = w.selected
    panel = w._explain
    assert [c.layout.display for c in panel.cards] == ["flex"] * 3
    assert f"IoU {w.candidates.scores[0]:.3f}" in panel.captions[0].value and "stability" in panel.captions[0].value
    assert np.array_equal(shown(w, comm), full[k] > 0)
    lo, hi = w.explain().logits_range
    assert lo <= panel.slider.min < lo + 0.01 and hi - 0.01 < panel.slider.max <= hi and panel.slider.value == 0.0

    frontend_update(panel.slider, value=0.75)  # the user drags the slider
    w.wait_idle()
    assert w.threshold == 0.75
    assert np.array_equal(shown(w, comm), full[k] > 0.75)  # the canvas followed, pixel for pixel
    assert np.array_equal(w.mask, full[k] > 0.75)
    frontend_click(panel.presets[0])  # "-0.5"
    assert w.threshold == -0.5 and np.array_equal(shown(w, comm), full[k] > -0.5)
    frontend_update(panel.slider, value=-0.5000000001)  # the page echoes it, snapped to its steps
    assert w.threshold == -0.5
    frontend_click(panel.presets[1])  # "0 (SAM)"
    assert w.threshold == 0.0 and np.array_equal(shown(w, comm), full[k] > 0)

    heat = np.asarray(Image.open(io.BytesIO(panel.heatmap.value)).convert("RGB"))
    lr = w.candidates.logits.shape[-1]
    assert heat.shape[:2] == (lr * (HEATMAP // lr),) * 2
    inj.key("X")
    assert not w._explain.visible and w._explain.box.layout.display == "none"


def test_widget_explain_counts_the_overlay_and_the_bytes_the_comm_sent(widget, comm):
    w = widget(display_size=120)
    start = comm.mark()
    w.add_point(*CLICK)
    w.wait_idle()
    e = w.explain()
    cur = w._view.canvas[CURRENT]
    msg = [m for m in comm.since(start) if m.touches(cur, "putImageData")][-1]
    assert e.bytes_sent == msg.nbytes
    assert e.timings.loc["overlay encoding", "seconds"] > 0
    assert "display mask 120×90" in e.timings.loc["upscaling", "detail"]
    assert e.masks.shape == (3, 150, 200) and w.explain(size=(30, 40)).masks.shape == (3, 30, 40)


def test_a_bad_slider_value_goes_to_the_status_line(widget):
    w = widget()
    w.add_point(*CLICK)
    w._explain.show(True)
    w._ui_call(setattr, w, "threshold", float("nan"))
    assert "threshold must be a finite number" in w._controls.status.value
    assert w.threshold == 0.0


# ============================================================================ pictures
def test_the_heatmap_is_diverging_with_zero_at_the_centre():
    v = np.array([[-4.0, -2.0, 0.0, 1.0, 2.0]])
    rgb = diverging_rgb(v)
    assert tuple(rgb[0, 2]) == (247, 247, 247)  # 0: white
    assert rgb[0, 0, 2] > rgb[0, 0, 0] and rgb[0, 4, 0] > rgb[0, 4, 2]  # blue below, red above
    assert tuple(rgb[0, 1]) == tuple(diverging_rgb(np.array([[-1.0]]), vmin=-2.0)[0, 0])  # half way to its end
    logits = np.full((8, 8), -3.0, np.float32)
    logits[2:5, 2:5] = 3.0
    pic = heatmap_picture(logits, 0.0, markers=[(3.0, 3.0, 1)], side=64)
    assert pic.shape == (64, 64, 3)
    assert (pic == 0).all(axis=2).any()  # the threshold contour
    assert (pic == (34, 197, 94)).all(axis=2).any()  # the positive marker
