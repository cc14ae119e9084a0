"""Segment everything: ``Segmenter.segment_everything`` against ``SamAutomaticMaskGenerator``.

* exact mode: the proposals equal the official generator's records mask for mask (bit-equal
  masks, same predicted IoU, stability, area, box, point, crop box), on random-weight
  models and on the trained ``tiny_shapes`` model (crop layers and small-region removal
  included);
* fast mode: every official mask has a fast proposal with IoU >= 0.95, for >= 98 % of them;
* the run: progress per batch, on_batch, cancel, the embedding cache, threads, bad input.

Random-weight models give noise-like logits of about +-0.03, with predicted IoUs around 0:
the thresholds below (``RANDOM_PARAMS``) are picked so that about a third of the masks pass
the IoU filter and the stability filter removes some of them; their noise masks all have
nearly the whole image as box, so box NMS is turned off there (``box_nms_thresh=1.0``) and
exercised on ``tiny_shapes``, whose masks are objects.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from segment_anything import SamAutomaticMaskGenerator

from sam_widget import Proposals, Segmenter
from sam_widget.data import shapes_image
from sam_widget.engine import everything as everything_mod
from sam_widget.engine.models import random_sam

from conftest import make_image, make_sample_rgb

RANDOM_PARAMS = dict(
    points_per_side=8,
    pred_iou_thresh=0.05,
    stability_score_offset=0.002,
    stability_score_thresh=0.45,
    box_nms_thresh=1.0,
)
SHAPES_PARAMS = dict(points_per_side=16, pred_iou_thresh=0.6, stability_score_thresh=0.8)
AGREEMENT_IOU = 0.95
AGREEMENT_FRACTION = 0.98


@pytest.fixture(scope="module")
def shapes_sam():
    from sam_widget import load_sam

    return load_sam("tiny_shapes")


def random_params(sam, image) -> dict:
    """RANDOM_PARAMS with the stability threshold at the median stability of what passes
    the IoU filter, so that the stability filter keeps about half of those masks."""
    unfiltered = official(sam, image, **dict(RANDOM_PARAMS, stability_score_thresh=0.0))
    assert len(unfiltered) >= 20
    median = float(np.median([r["stability_score"] for r in unfiltered]))
    return dict(RANDOM_PARAMS, stability_score_thresh=median)


def official(sam, image, **params):
    return SamAutomaticMaskGenerator(sam, **params).generate(image)


def ours(sam, image, exact, **params):
    seg = Segmenter(sam, exact=exact)
    seg.set_image(image)
    return seg.segment_everything(progress=False, **params)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def assert_same_as_official(props: Proposals, records: list[dict]) -> None:
    """Mask for mask: the records and the proposals pair up one to one, each pair with the
    same grid point, predicted IoU, mask and numbers."""
    assert not props.partial
    assert len(props) == len(records)
    unmatched = list(props)
    for r in records:
        hits = [
            p
            for p in unmatched
            if p.point == tuple(r["point_coords"][0]) and p.score == r["predicted_iou"]
            and np.array_equal(p.mask, r["segmentation"])
        ]
        assert hits, f"no proposal equals the record with score {r['predicted_iou']}"
        p = hits[0]
        unmatched.remove(p)
        assert p.score == pytest.approx(r["predicted_iou"], abs=0, rel=0)
        assert p.stability == pytest.approx(r["stability_score"], abs=0, rel=0)
        assert p.area == r["area"]
        assert p.point == tuple(r["point_coords"][0])
        x, y, w, h = r["bbox"]  # segment_anything: width - 1, height - 1 (inclusive end)
        assert p.bbox == ((x, y, w + 1, h + 1) if r["area"] else (0, 0, 0, 0))
        cx, cy, cw, ch = r["crop_box"]
        assert p.crop_box == (cx, cy, cx + cw, cy + ch)
    assert [p.score for p in props] == sorted((p.score for p in props), reverse=True)


def agreement(props: Proposals, records: list[dict]) -> list[float]:
    """For each official mask, the best IoU of a proposal."""
    return [max((iou(p.mask, r["segmentation"]) for p in props), default=0.0) for r in records]


# ------------------------------------------------------------------ exact parity
@pytest.mark.parametrize("model", ["tiny_sam", "padded_sam"])
@pytest.mark.parametrize("image_seed", [None, 1])
def test_exact_mode_equals_the_official_generator_on_random_weights(request, model, image_seed):
    sam = request.getfixturevalue(model)
    image = make_sample_rgb() if image_seed is None else make_image(90, 131, seed=image_seed)
    params = random_params(sam, image)
    records = official(sam, image, **params)
    assert 10 <= len(records) < 3 * 64  # the filters kept some masks and dropped others
    assert_same_as_official(ours(sam, image, True, **params), records)


def test_exact_mode_equals_the_official_generator_with_crop_layers(tiny_sam):
    params = dict(RANDOM_PARAMS, points_per_side=4, crop_n_layers=1, crop_nms_thresh=1.0, crop_overlap_ratio=0.25)
    image = make_image(100, 150, seed=2)
    records = official(tiny_sam, image, **params)
    assert len(records) >= 5
    props = ours(tiny_sam, image, True, **params)
    # every crop was encoded and decoded (noise masks touch their crop's edges, so the
    # edge filter drops the crops' masks here; tiny_shapes keeps some, see below)
    assert props.stats["crop_encodes"] == 4 and props.stats["points"] == 5 * 16
    assert_same_as_official(props, records)


def test_exact_mode_equals_the_official_generator_on_tiny_shapes(shapes_sam):
    for seed in (0, 1):
        image, _ = shapes_image(seed)
        records = official(shapes_sam, image, **SHAPES_PARAMS)
        assert len(records) >= 5
        assert_same_as_official(ours(shapes_sam, image, True, **SHAPES_PARAMS), records)


def test_exact_mode_equals_the_official_generator_with_crops_and_small_regions_on_tiny_shapes(shapes_sam):
    image, _ = shapes_image(2)
    params = dict(SHAPES_PARAMS, points_per_side=8, crop_n_layers=1, min_mask_region_area=300)
    records = official(shapes_sam, image, **params)
    assert len(records) >= 3
    assert len({tuple(r["crop_box"]) for r in records}) > 1  # proposals from several crops
    props = ours(shapes_sam, image, True, **params)
    assert_same_as_official(props, records)
    H, W = image.shape[:2]
    for p in props:  # display-size masks of crop proposals land in the right place
        assert iou(p.mask_at_size((H // 2, W // 2)), p.mask[::2, ::2]) > 0.8


def test_exact_mode_with_explicit_point_grids(tiny_sam):
    grid = np.random.default_rng(0).random((40, 2))
    params = dict(RANDOM_PARAMS, points_per_side=None, point_grids=[grid])
    image = make_sample_rgb()
    records = official(tiny_sam, image, **params)
    assert len(records) >= 5
    assert_same_as_official(ours(tiny_sam, image, True, **params), records)


@pytest.mark.parametrize("shape", [(1, 1), (3, 3), (1, 200), (7, 300)])
def test_tiny_and_thin_images_match_the_official_generator(tiny_sam, shape):
    params = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    image = make_image(*shape, seed=0)
    records = official(tiny_sam, image, **params)
    assert len(records) == 48  # nothing filtered: 16 points x 3 masks
    assert_same_as_official(ours(tiny_sam, image, True, **params), records)
    fast = ours(tiny_sam, image, False, **params)
    assert len(fast) == 48 and all(p.area == np.count_nonzero(p.mask) for p in fast)
    assert min(agreement(fast, records)) >= AGREEMENT_IOU


# ------------------------------------------------------------------ fast agreement
def test_fast_mode_finds_every_official_mask_on_tiny_shapes(shapes_sam):
    best = []
    for seed in range(4):
        image, _ = shapes_image(seed)
        records = official(shapes_sam, image, **SHAPES_PARAMS)
        best += agreement(ours(shapes_sam, image, False, **SHAPES_PARAMS), records)
    assert len(best) >= 20
    assert np.mean(np.asarray(best) >= AGREEMENT_IOU) >= AGREEMENT_FRACTION, sorted(best)[:5]


def test_fast_mode_finds_every_official_mask_on_random_weights(tiny_sam):
    image = make_sample_rgb()
    records = official(tiny_sam, image, **RANDOM_PARAMS)
    props = ours(tiny_sam, image, False, **RANDOM_PARAMS)
    best = agreement(props, records)
    assert len(best) >= 10
    assert np.mean(np.asarray(best) >= AGREEMENT_IOU) >= AGREEMENT_FRACTION, sorted(best)[:5]


def test_fast_mode_numbers_describe_its_own_masks(shapes_sam):
    image, _ = shapes_image(0)
    for params in (SHAPES_PARAMS, dict(SHAPES_PARAMS, stability_score_thresh=0.0)):  # decided / lazy
        props = ours(shapes_sam, image, False, **params)
        assert len(props) >= 5
        for p in props:
            assert p.area == np.count_nonzero(p.mask)
            rle = mask_utils.encode(np.asfortranarray(p.mask.astype(np.uint8)))
            assert p.bbox == tuple(int(v) for v in mask_utils.toBbox(rle))
            assert 0.0 <= p.stability <= 1.0


# ------------------------------------------------------------------ the result
def test_proposals_describe_their_masks(shapes_sam):
    image, _ = shapes_image(1)
    props = ours(shapes_sam, image, True, **SHAPES_PARAMS)
    H, W = image.shape[:2]
    assert props.masks.shape == (len(props), H, W) and props.masks.dtype == np.bool_
    labels = props.label_image()
    assert labels.shape == (H, W) and labels.dtype == np.int32
    for i, p in enumerate(props):
        assert p.mask.shape == (H, W) and p.mask.dtype == np.bool_
        x, y, w, h = p.bbox
        assert p.box == (x, y, x + w, y + h)
        rows, cols = np.nonzero(p.mask)
        assert (x, y, x + w - 1, y + h - 1) == (cols.min(), rows.min(), cols.max(), rows.max())
        assert np.array_equal(p.mask_at_size((H, W)), p.mask)
        small = p.mask_at_size((H // 2, W // 2))
        assert small.shape == (H // 2, W // 2)
        assert iou(small, p.mask[::2, ::2]) > 0.8
        # label image: a proposal's pixels carry its label unless a smaller proposal covers them
        smaller = [q.mask for q in props if q.area < p.area]
        free = p.mask & ~np.logical_or.reduce(smaller) if smaller else p.mask
        assert (labels[free] == i + 1).all()
        record = p.to_record()
        assert record["segmentation"] is p.mask and record["predicted_iou"] == p.score
    assert (labels == 0).sum() == (~props.masks.any(0)).sum()
    assert props.mask_at_size((50, 40)).shape == (len(props), 50, 40)


def test_a_flat_image_gives_an_empty_result_not_an_error(shapes_sam):
    props = ours(shapes_sam, np.full((64, 80, 3), 128, np.uint8), False, **SHAPES_PARAMS)
    assert len(props) == 0 and not props.partial
    assert props.masks.shape == (0, 64, 80)
    assert props.label_image().max() == 0


# ------------------------------------------------------------------ progress, callbacks
class RecordingBar:
    """Stands in for tqdm.auto.tqdm: records the calls."""

    made: list["RecordingBar"] = []

    def __init__(self, total=None, disable=False, **kwargs):
        self.total, self.disable, self.updates, self.closed = total, disable, [], False
        RecordingBar.made.append(self)

    def update(self, n=1):
        self.updates.append(n)

    def set_postfix(self, *a, **k):
        pass

    def set_description(self, *a, **k):
        pass

    def close(self):
        self.closed = True


def test_progress_advances_once_per_batch(tiny_sam, monkeypatch):
    monkeypatch.setattr(everything_mod, "tqdm", RecordingBar)
    RecordingBar.made = []
    seg = Segmenter(tiny_sam)
    seg.set_image(make_sample_rgb())
    seg.segment_everything(**dict(RANDOM_PARAMS, points_per_side=6, points_per_batch=10))
    (bar,) = RecordingBar.made
    assert bar.total == 36 and not bar.disable and bar.closed
    assert bar.updates == [10, 10, 10, 6]
    seg.segment_everything(progress=False, **RANDOM_PARAMS)
    assert RecordingBar.made[-1].disable


def test_on_batch_sees_the_proposals_grow(tiny_sam):
    seg = Segmenter(tiny_sam)
    seg.set_image(make_sample_rgb())
    seen = []
    final = seg.segment_everything(
        progress=False, on_batch=lambda p: seen.append((p.partial, p.stats["points"], len(p))),
        **dict(RANDOM_PARAMS, points_per_batch=16),
    )
    assert [s[1] for s in seen] == [16, 32, 48, 64]
    assert all(s[0] for s in seen)  # intermediate results are partial
    assert [s[2] for s in seen] == sorted(s[2] for s in seen) and seen[-1][2] == len(final)
    assert not final.partial


# ------------------------------------------------------------------ cancel
def test_cancel_set_before_the_start_returns_an_empty_partial_result(tiny_sam):
    seg = Segmenter(tiny_sam)
    seg.set_image(make_sample_rgb())
    stop = threading.Event()
    stop.set()
    props = seg.segment_everything(cancel=stop, progress=False, **RANDOM_PARAMS)
    assert len(props) == 0 and props.partial and props.stats["points"] == 0


def test_cancel_stops_within_one_batch_and_keeps_what_was_found(tiny_sam):
    seg = Segmenter(tiny_sam)
    image = make_sample_rgb()
    seg.set_image(image)
    stop = threading.Event()
    params = dict(RANDOM_PARAMS, points_per_batch=16)
    props = seg.segment_everything(cancel=stop, on_batch=lambda p: stop.set(), progress=False, **params)
    assert props.partial and props.stats["points"] == 16
    # what it kept is what the first batch of a full run keeps
    first = []
    seg.segment_everything(on_batch=first.append, progress=False, **params)
    assert len(props) == len(first[0]) > 0
    assert all(np.array_equal(a.mask, b.mask) for a, b in zip(props, first[0]))


def test_cancel_from_another_thread(shapes_sam):
    seg = Segmenter(shapes_sam)
    seg.set_image(shapes_image(0)[0])
    stop = threading.Event()
    batches = []

    def on_batch(p):
        batches.append(p.stats["points"])
        if len(batches) == 2:
            threading.Thread(target=stop.set).start()

    props = seg.segment_everything(cancel=stop, on_batch=on_batch, progress=False, **dict(SHAPES_PARAMS, points_per_batch=8))
    assert props.partial
    assert 2 <= len(batches) <= 3 and props.stats["points"] < props.stats["points_total"]


# ------------------------------------------------------------------ cache and threads
def test_everything_on_the_current_image_costs_no_encode(tiny_sam):
    seg = Segmenter(tiny_sam)
    seg.set_image(make_sample_rgb())
    seg.predict(points=[[50, 60]], labels=[1])
    calls = seg.stats["encoder_calls"]
    seg.segment_everything(progress=False, **RANDOM_PARAMS)
    assert seg.stats["encoder_calls"] == calls
    crops = dict(RANDOM_PARAMS, points_per_side=4, crop_n_layers=1)
    first = seg.segment_everything(progress=False, **crops)
    assert first.stats["crop_encodes"] == 4 and seg.stats["encoder_calls"] == calls + 4
    again = seg.segment_everything(progress=False, **crops)  # crops come from the cache now
    assert again.stats["crop_encodes"] == 0
    assert seg.image is not None and np.array_equal(seg.image, make_sample_rgb())  # still current


def test_no_image_set_is_a_clear_error(tiny_sam):
    with pytest.raises(RuntimeError, match="set_image"):
        Segmenter(tiny_sam).segment_everything(progress=False)


def test_clicks_are_answered_while_everything_runs(tiny_sam):
    """The run does not hold the Segmenter's lock: predict() from another thread completes
    while the run is paused inside a batch callback."""
    seg = Segmenter(tiny_sam)
    seg.set_image(make_sample_rgb())
    clicked = []

    def on_batch(p):
        if not clicked:
            t = threading.Thread(target=lambda: clicked.append(seg.predict(points=[[30, 40]], labels=[1])))
            t.start()
            t.join(timeout=60)
            assert not t.is_alive()

    seg.segment_everything(on_batch=on_batch, progress=False, **RANDOM_PARAMS)
    assert len(clicked) == 1 and clicked[0].masks.shape == (3, 180, 240)


def test_a_second_run_waits_for_the_first(tiny_sam):
    seg = Segmenter(tiny_sam)
    seg.set_image(make_sample_rgb())
    release, first_started = threading.Event(), threading.Event()
    events, results = [], {}

    def first_cb(p):
        events.append("first batch")
        first_started.set()
        release.wait(60)

    def run(name, cb):
        results[name] = seg.segment_everything(on_batch=cb, progress=False, **dict(RANDOM_PARAMS, points_per_batch=64))

    t1 = threading.Thread(target=run, args=("first", first_cb))
    t1.start()
    assert first_started.wait(60)
    t2 = threading.Thread(target=run, args=("second", lambda p: events.append("second batch")))
    t2.start()
    t2.join(timeout=0.5)
    assert t2.is_alive() and events == ["first batch"]  # the second is waiting
    release.set()
    t1.join(60)
    t2.join(60)
    assert events == ["first batch", "second batch"]
    assert [p.score for p in results["first"]] == [p.score for p in results["second"]]


def test_a_waiting_run_honours_its_cancel(tiny_sam):
    seg = Segmenter(tiny_sam)
    seg.set_image(make_sample_rgb())
    release, started, stop = threading.Event(), threading.Event(), threading.Event()
    results = {}

    def first_cb(p):
        started.set()
        release.wait(60)

    t1 = threading.Thread(target=lambda: seg.segment_everything(on_batch=first_cb, progress=False, **RANDOM_PARAMS))
    t1.start()
    assert started.wait(60)
    t2 = threading.Thread(target=lambda: results.setdefault("second", seg.segment_everything(cancel=stop, progress=False, **RANDOM_PARAMS)))
    t2.start()
    stop.set()
    t2.join(60)
    assert not t2.is_alive()
    assert results["second"].partial and len(results["second"]) == 0
    release.set()
    t1.join(60)


def test_set_image_during_a_run_does_not_change_what_it_segments(tiny_sam):
    seg = Segmenter(tiny_sam)
    image, other = make_sample_rgb(), make_image(90, 120, seed=5)
    seg.set_image(image)
    switched = []

    def on_batch(p):
        if not switched:
            seg.set_image(other)
            switched.append(True)

    props = seg.segment_everything(on_batch=on_batch, progress=False, **dict(RANDOM_PARAMS, points_per_batch=16))
    assert props.image_size == (180, 240) and seg.image_size == (90, 120)
    reference = ours(tiny_sam, image, False, **RANDOM_PARAMS)
    assert [p.score for p in props] == [p.score for p in reference]


def test_prepare_sets_the_image_to_segment_as_one_step_with_the_snapshot(tiny_sam):
    seg = Segmenter(tiny_sam)
    image, other = make_sample_rgb(), make_image(90, 120, seed=5)
    seg.set_image(other)
    seen = []

    def prepare(s):
        seen.append(s is seg)
        s.set_image(image)

    props = seg.segment_everything(prepare=prepare, progress=False, **RANDOM_PARAMS)
    assert seen == [True] and props.image_size == (180, 240)
    reference = ours(tiny_sam, image, False, **RANDOM_PARAMS)
    assert [p.score for p in props] == [p.score for p in reference]
    with pytest.raises(TypeError, match="prepare"):
        seg.segment_everything(prepare=3)


def test_a_whole_image_proposals_logits_refine_it_like_a_prediction(shapes_sam):
    image, _ = shapes_image(1)
    seg = Segmenter(shapes_sam)
    seg.set_image(image)
    p = seg.segment_everything(progress=False, points_per_side=8, pred_iou_thresh=0.6, stability_score_thresh=0.8)[0]
    assert p.logits.shape == seg.low_res_size and p.logits.dtype == np.float32 and p.logits is not p.logits
    again = seg.predict(points=[p.point], labels=[1], mask_input=p.logits[None], multimask=False)
    assert again.masks.shape == (1, *image.shape[:2])


# ------------------------------------------------------------------ bad input
BAD = [
    (dict(points_per_side=0), "points_per_side"),
    (dict(points_per_side=10_000), "points_per_side"),
    (dict(points_per_side=8.5), "points_per_side"),
    (dict(points_per_side=None), "points_per_side"),
    (dict(pred_iou_thresh=-0.1), "pred_iou_thresh"),
    (dict(pred_iou_thresh=1.5), "pred_iou_thresh"),
    (dict(pred_iou_thresh=float("nan")), "pred_iou_thresh"),
    (dict(stability_score_thresh=2.0), "stability_score_thresh"),
    (dict(stability_score_thresh=float("nan")), "stability_score_thresh"),
    (dict(box_nms_thresh=-1), "box_nms_thresh"),
    (dict(box_nms_thresh="0.7"), "box_nms_thresh"),
    (dict(crop_nms_thresh=1.01), "crop_nms_thresh"),
    (dict(crop_n_layers=-1), "crop_n_layers"),
    (dict(crop_n_layers=1.5), "crop_n_layers"),
    (dict(crop_n_layers=99), "crop_n_layers"),
    (dict(min_mask_region_area=-5), "min_mask_region_area"),
    (dict(min_mask_region_area=float("nan")), "min_mask_region_area"),
    (dict(points_per_batch=0), "points_per_batch"),
    (dict(stability_score_offset=-1.0), "stability_score_offset"),
    (dict(stability_score_offset=float("inf")), "stability_score_offset"),
    (dict(crop_overlap_ratio=1.0), "crop_overlap_ratio"),
    (dict(crop_n_points_downscale_factor=0), "crop_n_points_downscale_factor"),
    (dict(points_per_side=4, crop_n_layers=2, crop_n_points_downscale_factor=4), "crop_n_points_downscale_factor"),
    (dict(point_grids=[np.zeros((4, 2))]), "points_per_side=None"),
    (dict(points_per_side=None, point_grids=[np.full((4, 2), 2.0)]), r"point_grids\[0\]"),
    (dict(points_per_side=None, point_grids=[np.zeros((4, 3))]), r"point_grids\[0\]"),
    (dict(points_per_side=None, point_grids=[np.zeros((4, 2))], crop_n_layers=1), "point_grids"),
]


@pytest.mark.parametrize("kwargs, name", BAD, ids=[f"{list(k)[0]}={list(k.values())[0]!r}"[:40] for k, _ in BAD])
def test_bad_parameters_are_rejected_naming_them(tiny_sam, kwargs, name):
    seg = Segmenter(tiny_sam)
    image = make_sample_rgb()
    seg.set_image(image)
    calls = seg.stats["decoder_calls"], seg.stats["encoder_calls"]
    with pytest.raises(ValueError, match=name):
        seg.segment_everything(progress=False, **kwargs)
    assert np.array_equal(seg.image, image)  # nothing changed
    assert (seg.stats["decoder_calls"], seg.stats["encoder_calls"]) == calls


def test_bad_arguments_of_the_run_are_type_errors(tiny_sam):
    seg = Segmenter(tiny_sam)
    seg.set_image(make_sample_rgb())
    with pytest.raises(TypeError, match="output_mode"):
        seg.segment_everything(output_mode="coco_rle")
    with pytest.raises(TypeError, match="cancel"):
        seg.segment_everything(cancel=True)
    with pytest.raises(TypeError, match="on_batch"):
        seg.segment_everything(on_batch=3)
    with pytest.raises(TypeError, match="progress"):
        seg.segment_everything(progress="yes")
    props = seg.segment_everything(progress=False, **RANDOM_PARAMS)  # still works afterwards
    assert len(props) > 0


# ------------------------------------------------------------------ the fast decoder's part
def test_decode_selected_computes_only_the_selected_masks(tiny_sam):
    import torch

    seg = Segmenter(tiny_sam)
    seg.set_image(make_sample_rgb())
    dec = seg._fast_decoder
    state = dec.prepare(seg._features)
    coords = torch.tensor([[[20.0, 30.0]], [[90.0, 60.0]]])
    sparse, dense = tiny_sam.prompt_encoder(points=(coords, torch.ones(2, 1, dtype=torch.int)), boxes=None, masks=None)
    full, full_iou = dec.decode(state, sparse, dense, multimask=True)
    picks = iter([torch.tensor([3, 1]), torch.tensor([], dtype=torch.long)])
    out = dec.decode_selected(state, sparse, lambda iou: next(picks))
    (iou0, tok0, lr0), (iou1, tok1, lr1) = out
    assert torch.allclose(iou0[1:], full_iou[0], atol=1e-6) and torch.allclose(iou1[1:], full_iou[1], atol=1e-6)
    assert tok0.tolist() == [3, 1] and torch.allclose(lr0, full[0][[2, 0]], atol=1e-5)
    assert tok1.numel() == 0 and lr1 is None
    # many sparse tokens (10 points): the folded batch path does not apply, one prompt at a time
    many = torch.rand(2, 10, 2) * 100
    sparse, dense = tiny_sam.prompt_encoder(points=(many, torch.ones(2, 10, dtype=torch.int)), boxes=None, masks=None)
    full, full_iou = dec.decode(state, sparse, dense, multimask=True)
    out = dec.decode_selected(state, sparse, lambda iou: torch.tensor([2]))
    for b, (i, tok, lr) in enumerate(out):
        assert torch.allclose(i[1:], full_iou[b], atol=1e-6) and torch.allclose(lr, full[b][[1]], atol=1e-5)


# ------------------------------------------------------------------ vit_b
@pytest.mark.slow
def test_vit_b_exact_parity_and_fast_agreement():
    sam = random_sam("vit_b", seed=0)
    image = make_image(120, 160, seed=3)
    params = dict(points_per_side=6, pred_iou_thresh=0.02, stability_score_thresh=0.0, box_nms_thresh=1.0)
    records = official(sam, image, **params)
    assert len(records) >= 10
    assert_same_as_official(ours(sam, image, True, **params), records)
    best = agreement(ours(sam, image, False, **params), records)
    assert np.mean(np.asarray(best) >= AGREEMENT_IOU) >= AGREEMENT_FRACTION
