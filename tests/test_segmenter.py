"""The engine's contract: ``Segmenter`` answers prompts exactly like ``SamPredictor``.

Parity is checked with seeded random weights (no official checkpoints needed): with
``exact=True`` the masks, scores and logits are bit-identical to SamPredictor's; the default
path may differ by at most 0.1 % of mask pixels and 1e-3 in scores.
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from segment_anything import SamPredictor

from sam_widget import Prediction, Segmenter
from sam_widget.engine.models import random_sam

from conftest import make_image

MAX_MASK_PIXEL_FRACTION = 1e-3  # default path: at most 0.1 % of mask pixels may differ
MAX_SCORE_DIFF = 1e-3  # default path: predicted IoU within 1e-3


# ---------------------------------------------------------------------- helpers
def reference_predict(predictor: SamPredictor, points=None, labels=None, box=None, mask_input=None, multimask=True):
    """SamPredictor.predict with the Segmenter's argument names."""
    return predictor.predict(
        point_coords=None if points is None else np.asarray(points, dtype=np.float64),
        point_labels=None if labels is None else np.asarray(labels),
        box=None if box is None else np.asarray(box, dtype=np.float64),
        mask_input=mask_input,
        multimask_output=multimask,
    )


def assert_well_formed(pred: Prediction, image_size, low_res, multimask=True):
    c = 3 if multimask else 1
    H, W = image_size
    assert isinstance(pred, Prediction)
    assert pred.masks.shape == (c, H, W) and pred.masks.dtype == np.bool_
    assert pred.scores.shape == (c,) and pred.scores.dtype == np.float32
    assert pred.logits.shape == (c, *low_res) and pred.logits.dtype == np.float32


def assert_exact(pred: Prediction, ref):
    masks, scores, logits = ref
    assert pred.masks.dtype == masks.dtype and pred.scores.dtype == scores.dtype
    assert np.array_equal(pred.scores, scores), (pred.scores, scores)
    assert np.array_equal(pred.logits, logits), np.abs(pred.logits - logits).max()
    assert np.array_equal(pred.masks, masks), f"{(pred.masks != masks).sum()} mask pixels differ"


def assert_close(pred: Prediction, ref):
    masks, scores, logits = ref
    assert pred.masks.shape == masks.shape and pred.logits.shape == logits.shape
    differing = float(np.mean(pred.masks != masks))
    assert differing <= MAX_MASK_PIXEL_FRACTION, f"{differing:.3%} of mask pixels differ"
    assert np.abs(pred.scores - scores).max() <= MAX_SCORE_DIFF, (pred.scores, scores)


def prompt_cases(H: int, W: int) -> dict[str, dict]:
    """Prompts with non-integer pixel coordinates, including the image's far corner."""
    box = [0.11 * W, 0.23 * H, 0.81 * W, 0.87 * H]
    return {
        "one_point": dict(points=[[0.31 * W, 0.62 * H]], labels=[1]),
        "points_fg_bg": dict(points=[[0.31 * W, 0.62 * H], [0.72 * W, 0.19 * H], [W, H]], labels=[1, 0, 1]),
        "box": dict(box=box),
        "box_and_points": dict(box=box, points=[[0.5 * W, 0.5 * H], [0.15 * W, 0.3 * H]], labels=[1, 0]),
        "points_single_mask": dict(points=[[0.31 * W, 0.62 * H], [0.2 * W, 0.4 * H]], labels=[1, 1], multimask=False),
        "box_single_mask": dict(box=box, multimask=False),
    }


# ------------------------------------------------------- parity on two small models
IMAGE_CASES = [
    ("tiny", (333, 517)),
    ("tiny", (517, 333)),
    ("padded", (333, 517)),
    ("padded", (517, 333)),
]


@pytest.fixture(scope="module", params=IMAGE_CASES, ids=[f"{m}-{h}x{w}" for m, (h, w) in IMAGE_CASES])
def encoded(request, tiny_sam, padded_sam):
    """One odd-sized image set on an exact Segmenter, a default Segmenter and SamPredictor."""
    name, (H, W) = request.param
    sam = tiny_sam if name == "tiny" else padded_sam
    rgb = make_image(H, W, seed=H)
    exact, fast, ref = Segmenter(sam, exact=True), Segmenter(sam, precision="fp32"), SamPredictor(sam)
    for s in (exact, fast):
        s.set_image(rgb)
    ref.set_image(rgb)
    return SimpleNamespace(sam=sam, rgb=rgb, H=H, W=W, exact=exact, fast=fast, ref=ref)


PROMPT_NAMES = list(prompt_cases(1, 1))


@pytest.mark.parametrize("prompt", PROMPT_NAMES)
def test_exact_mode_is_bit_identical_to_sam_predictor(encoded, prompt):
    kwargs = prompt_cases(encoded.H, encoded.W)[prompt]
    pred = encoded.exact.predict(**kwargs)
    assert_well_formed(pred, (encoded.H, encoded.W), encoded.exact.low_res_size, kwargs.get("multimask", True))
    assert_exact(pred, reference_predict(encoded.ref, **kwargs))


@pytest.mark.parametrize("prompt", PROMPT_NAMES)
def test_default_mode_matches_sam_predictor_within_tolerance(encoded, prompt):
    kwargs = prompt_cases(encoded.H, encoded.W)[prompt]
    pred = encoded.fast.predict(**kwargs)
    assert_well_formed(pred, (encoded.H, encoded.W), encoded.fast.low_res_size, kwargs.get("multimask", True))
    assert_close(pred, reference_predict(encoded.ref, **kwargs))


def test_mask_input_from_previous_prediction_matches_sam_predictor(encoded):
    H, W = encoded.H, encoded.W
    first = dict(points=[[0.4 * W, 0.45 * H]], labels=[1])
    second = dict(points=[[0.4 * W, 0.45 * H], [0.8 * W, 0.8 * H]], labels=[1, 0], multimask=False)

    # exact: each side feeds back its own best logits -> still bit-identical
    pred1 = encoded.exact.predict(**first)
    ref1 = reference_predict(encoded.ref, **first)
    assert_exact(pred1, ref1)
    best = pred1.best
    assert best == int(np.argmax(ref1[1]))
    pred2 = encoded.exact.predict(**second, mask_input=pred1.logits[best : best + 1])
    ref2 = reference_predict(encoded.ref, **second, mask_input=ref1[2][best : best + 1])
    assert_exact(pred2, ref2)
    # the mask prompt matters: without it the answer is different
    assert not np.array_equal(encoded.exact.predict(**second).logits, pred2.logits)
    # a mask_input alone (no points, no box) is a valid prompt, and a 2-D one is accepted too
    alone = encoded.exact.predict(mask_input=pred1.logits[best])
    assert_exact(alone, reference_predict(encoded.ref, mask_input=ref1[2][best : best + 1]))

    # default mode, same mask_input on both sides
    fast2 = encoded.fast.predict(**second, mask_input=ref1[2][best : best + 1])
    assert_close(fast2, ref2)


def test_window_padding_config_really_pads(padded_sam, tiny_sam):
    """Guard for the test matrix: the second model's grid is not a multiple of its window."""
    grid = padded_sam.prompt_encoder.image_embedding_size[0]
    window = padded_sam.image_encoder.blocks[0].window_size
    assert window > 0 and grid % window != 0
    assert padded_sam.image_encoder.img_size != tiny_sam.image_encoder.img_size


# ------------------------------------------------------------- image kinds (parity)
@pytest.mark.parametrize("kind", ["grayscale", "grayscale_hw1", "rgba"])
def test_grayscale_and_rgba_images_match_sam_predictor_on_equivalent_rgb(tiny_sam, kind):
    H, W = 211, 157
    if kind == "grayscale":
        image = make_image(H, W, channels=None, seed=5)
        rgb = np.repeat(image[:, :, None], 3, axis=2)
    elif kind == "grayscale_hw1":
        image = make_image(H, W, channels=1, seed=5)
        rgb = np.repeat(image, 3, axis=2)
    else:
        image = make_image(H, W, channels=4, seed=5)
        rgb = np.ascontiguousarray(image[..., :3])
    seg, ref = Segmenter(tiny_sam, exact=True), SamPredictor(tiny_sam)
    seg.set_image(image)
    ref.set_image(rgb)
    assert np.array_equal(seg.image, rgb)
    for kwargs in prompt_cases(H, W).values():
        assert_exact(seg.predict(**kwargs), reference_predict(ref, **kwargs))


def test_every_form_of_the_same_picture_reuses_one_encoding(tiny_sam, tmp_path):
    """uint16, float, HxWx4, non-contiguous, PIL and file inputs of the same pixels: one encode."""
    H, W = 97, 131
    rgb = make_image(H, W, seed=8)
    seg, ref = Segmenter(tiny_sam, exact=True), SamPredictor(tiny_sam)
    seg.set_image(rgb)
    ref.set_image(rgb)
    png = tmp_path / "picture.png"
    Image.fromarray(rgb).save(png)
    forms = {
        "uint16": rgb.astype(np.uint16) * 257,
        "float64": rgb / 255.0,
        "float32": (rgb / 255.0).astype(np.float32),
        "rgba": np.dstack([rgb, np.full((H, W), 7, np.uint8)]),
        "non_contiguous": np.asfortranarray(rgb),
        "pil_rgb": Image.fromarray(rgb),
        "pil_rgba": Image.fromarray(rgb).convert("RGBA"),
        "png_str": str(png),
        "png_path": png,
    }
    kwargs = dict(points=[[40.5, 60.25]], labels=[1])
    expected = reference_predict(ref, **kwargs)
    for name, form in forms.items():
        seg.set_image(form)
        assert seg.stats["encoder_calls"] == 1, f"{name} was not recognised as the same picture"
        assert_exact(seg.predict(**kwargs), expected)
    assert seg.stats["memory_hits"] == len(forms)


def test_bool_image_matches_sam_predictor_on_0_255(tiny_sam):
    mask = make_image(64, 90, channels=None, dtype=bool, seed=3)
    seg, ref = Segmenter(tiny_sam, exact=True), SamPredictor(tiny_sam)
    seg.set_image(mask)
    ref.set_image(np.repeat(mask[:, :, None].astype(np.uint8) * 255, 3, axis=2))
    kwargs = dict(box=[3, 4, 60, 50])
    assert_exact(seg.predict(**kwargs), reference_predict(ref, **kwargs))


def test_bgr_model_matches_sam_predictor(tiny_sam):
    """A model declaring image_format='BGR' gets channels flipped, as SamPredictor does."""
    bgr_sam = random_sam(seed=0)
    bgr_sam.image_format = "BGR"
    rgb = make_image(70, 101, seed=4)
    seg, ref = Segmenter(bgr_sam, exact=True), SamPredictor(bgr_sam)
    seg.set_image(rgb)
    ref.set_image(rgb)  # image_format="RGB": SamPredictor flips to BGR for the model
    kwargs = dict(points=[[30, 20]], labels=[1])
    got = seg.predict(**kwargs)
    assert_exact(got, reference_predict(ref, **kwargs))
    rgb_seg = Segmenter(tiny_sam, exact=True)
    rgb_seg.set_image(rgb)
    assert not np.array_equal(rgb_seg.predict(**kwargs).logits, got.logits)


# ---------------------------------------------------- random prompts (hypothesis)
HYP_H, HYP_W = 333, 517


@pytest.fixture(scope="module")
def hyp_pair(tiny_sam):
    rgb = make_image(HYP_H, HYP_W, seed=21)
    seg, ref = Segmenter(tiny_sam, exact=True), SamPredictor(tiny_sam)
    seg.set_image(rgb)
    ref.set_image(rgb)
    return seg, ref


def _coord(limit):
    return st.one_of(st.integers(0, limit), st.floats(0, limit, allow_nan=False, allow_infinity=False))


@st.composite
def random_prompts(draw):
    n = draw(st.integers(0, 4))
    points = [[draw(_coord(HYP_W)), draw(_coord(HYP_H))] for _ in range(n)]
    labels = [draw(st.sampled_from([0, 1])) for _ in range(n)]
    box = None
    if n == 0 or draw(st.booleans()):
        x0, x1 = sorted([draw(_coord(HYP_W)), draw(_coord(HYP_W))])
        y0, y1 = sorted([draw(_coord(HYP_H)), draw(_coord(HYP_H))])
        box = [x0, y0, x1, y1]
    kwargs = dict(box=box, multimask=draw(st.booleans()))
    if n:
        kwargs.update(points=points, labels=labels)
    return kwargs


@settings(max_examples=25, deadline=None)
@given(kwargs=random_prompts())
def test_any_valid_prompt_is_bit_identical_to_sam_predictor(hyp_pair, kwargs):
    seg, ref = hyp_pair
    assert_exact(seg.predict(**kwargs), reference_predict(ref, **kwargs))


# ------------------------------------------------------------ Prediction object
def test_prediction_single_masks_and_display_sizes_agree_with_masks(encoded):
    H, W = encoded.H, encoded.W
    pred = encoded.fast.predict(points=[[0.5 * W, 0.5 * H]], labels=[1])
    again = encoded.fast.predict(points=[[0.5 * W, 0.5 * H]], labels=[1])
    # mask(i) before masks is computed on its own, and must equal masks[i]
    singles = [again.mask(i) for i in range(len(again))]
    for i in range(len(pred)):
        assert np.array_equal(singles[i], pred.masks[i])
        assert np.array_equal(pred.mask_at_size(i, (H, W)), pred.masks[i])
        small = pred.mask_at_size(i, (H // 3, W // 3))
        assert small.shape == (H // 3, W // 3) and small.dtype == np.bool_
    assert pred.best == int(np.argmax(pred.scores))
    assert len(pred) == 3 and pred.image_size == (H, W)
    with pytest.raises(IndexError):
        pred.mask(3)
    with pytest.raises(TypeError):
        pred.mask(1.0)


def test_stats_count_encodes_and_decodes(tiny_sam):
    seg = Segmenter(tiny_sam)
    assert seg.stats["encoder_calls"] == 0 and not seg.is_image_set
    seg.set_image(make_image(40, 60, seed=1))
    assert seg.stats["encoder_calls"] == 1 and seg.is_image_set and seg.image_size == (40, 60)
    assert seg.stats["last_encode_s"] > 0
    seg.predict(points=[[1, 2]], labels=[1])
    seg.predict(box=[0, 0, 60, 40])
    assert seg.stats["decoder_calls"] == 2 and seg.stats["last_decode_s"] > 0
    assert seg.stats["encoder_calls"] == 1


def test_segmenter_refuses_something_that_is_not_a_sam():
    with pytest.raises(TypeError, match="Sam"):
        Segmenter(object())


# ------------------------------------------------ the caller's array is left alone
def test_set_image_neither_freezes_nor_aliases_the_callers_array(tiny_sam):
    seg = Segmenter(tiny_sam)
    arr = make_image(30, 40, seed=2)
    original = arr.copy()
    seg.set_image(arr)
    assert arr.flags.writeable, "set_image made the caller's array read-only"
    arr[:] = 0  # the user keeps editing their own array...
    assert np.array_equal(seg.image, original), "...and that must not change the set image"
    with pytest.raises(ValueError):
        seg.image[0, 0, 0] = 1  # the segmenter's copy is read-only


# ---------------------------------------------------------------- bad images
def _unreadable_file(tmp_path: Path) -> str:
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture")
    return str(text)


BAD_IMAGES = {
    "1d": lambda tmp: np.zeros(10, np.uint8),
    "4d": lambda tmp: np.zeros((2, 3, 4, 3), np.uint8),
    "empty": lambda tmp: np.zeros((0, 5, 3), np.uint8),
    "two_channels": lambda tmp: np.zeros((5, 5, 2), np.uint8),
    "nan": lambda tmp: np.full((5, 5), np.nan),
    "inf": lambda tmp: np.full((5, 5, 3), np.inf, np.float32),
    "float_above_1": lambda tmp: np.full((5, 5, 3), 2.0),
    "float_below_0": lambda tmp: np.full((5, 5), -0.5),
    "list": lambda tmp: [[0, 1], [2, 3]],
    "none": lambda tmp: None,
    "int": lambda tmp: 3,
    "missing_file": lambda tmp: tmp / "missing.png",
    "directory": lambda tmp: tmp,
    "unreadable_file": _unreadable_file,
    # the tiny model resizes the longer side to 128 px: a side under 1/256 of the other is 0 px
    "one_row": lambda tmp: np.zeros((1, 5000, 3), np.uint8),
    "three_columns": lambda tmp: np.zeros((5000, 3, 3), np.uint8),
}


@pytest.fixture(scope="module")
def seg_with_image(tiny_sam):
    seg = Segmenter(tiny_sam, exact=True)
    seg.set_image(make_image(45, 61, seed=9))
    return seg


@pytest.mark.parametrize("name", list(BAD_IMAGES))
def test_bad_image_raises_clearly_and_keeps_the_previous_image(seg_with_image, tmp_path, name):
    seg = seg_with_image
    bad = BAD_IMAGES[name](tmp_path)
    kwargs = dict(points=[[20, 30]], labels=[1])
    before = seg.predict(**kwargs)
    image_before, calls = seg.image, dict(seg.stats)
    with pytest.raises((ValueError, TypeError)) as info:
        seg.set_image(bad)
    message = str(info.value)
    assert message and "\n" not in message and len(message) < 300, message
    assert seg.image is image_before and seg.image_size == (45, 61)
    assert seg.stats["encoder_calls"] == calls["encoder_calls"]
    assert seg.stats["memory_hits"] == calls["memory_hits"]
    assert_exact(seg.predict(**kwargs), (before.masks, before.scores, before.logits))


# ---------------------------------------------------------------- bad prompts
def _bad_prompts(low_res):
    h, w = low_res
    return {
        "labels_mismatch": (dict(points=[[1, 2], [3, 4]], labels=[1]), ValueError, "one value per point"),
        "label_2": (dict(points=[[1, 2]], labels=[2]), ValueError, "1 .*or 0"),
        "label_minus_1": (dict(points=[[1, 2]], labels=[-1]), ValueError, "1 .*or 0"),
        "label_text": (dict(points=[[1, 2]], labels=["fg"]), ValueError, "1 .*or 0"),
        "labels_only": (dict(labels=[1]), ValueError, "without points"),
        "points_only": (dict(points=[[1, 2]]), ValueError, "without labels"),
        "point_nan": (dict(points=[[np.nan, 2]], labels=[1]), ValueError, "NaN"),
        "point_inf": (dict(points=[[1, np.inf]], labels=[1]), ValueError, "NaN or infinite"),
        "point_right_of_image": (dict(points=[[61.5, 2]], labels=[1]), ValueError, "outside"),
        "point_below_image": (dict(points=[[1, 45.01]], labels=[1]), ValueError, "outside"),
        "point_negative": (dict(points=[[-1, 2]], labels=[1]), ValueError, "outside"),
        "points_3_columns": (dict(points=[[1, 2, 3]], labels=[1]), ValueError, "N x 2"),
        "points_text": (dict(points="here", labels=[1]), TypeError, "numbers"),
        "box_x1_lt_x0": (dict(box=[30, 5, 10, 20]), ValueError, "x0 <= x1"),
        "box_y1_lt_y0": (dict(box=[5, 30, 10, 20]), ValueError, "y0 <= y1"),
        "box_3_numbers": (dict(box=[1, 2, 3]), ValueError, "4 numbers"),
        "box_5_numbers": (dict(box=[1, 2, 3, 4, 5]), ValueError, "4 numbers"),
        "box_nan": (dict(box=[1, 2, np.nan, 4]), ValueError, "NaN"),
        "box_outside": (dict(box=[1, 2, 62, 4]), ValueError, "outside"),
        "mask_wrong_size": (dict(mask_input=np.zeros((1, h // 2, w // 2), np.float32)), ValueError, "shape"),
        "mask_two_channels": (dict(mask_input=np.zeros((2, h, w), np.float32)), ValueError, "shape"),
        "mask_not_array": (dict(mask_input=[[0.0]]), TypeError, "NumPy array"),
        "mask_nan": (dict(mask_input=np.full((1, h, w), np.nan, np.float32)), ValueError, "NaN"),
        "mask_strings": (dict(mask_input=np.full((1, h, w), "1.0")), TypeError, "dtype <U3"),
        "mask_datetimes": (dict(mask_input=np.zeros((1, h, w), "datetime64[s]")), TypeError, "dtype datetime64"),
        "mask_complex": (dict(mask_input=np.zeros((1, h, w), np.complex64)), TypeError, "dtype complex64"),
        "mask_structured": (dict(mask_input=np.zeros((1, h, w), [("a", "f4"), ("b", "f4")])), TypeError, "dtype \\[\\('a'"),
        "mask_objects": (dict(mask_input=np.zeros((1, h, w), object)), TypeError, "dtype object"),
        "display_size_one_number": (dict(points=[[1, 2]], labels=[1], display_size=100), TypeError, "display_size"),
        "display_size_floats": (dict(points=[[1, 2]], labels=[1], display_size=(10.0, 20.0)), TypeError, "display_size"),
        "display_size_zero": (dict(points=[[1, 2]], labels=[1], display_size=(0, 20)), ValueError, "display_size"),
        "no_prompt": (dict(), ValueError, "at least one prompt"),
        "multimask_not_bool": (dict(points=[[1, 2]], labels=[1], multimask="yes"), TypeError, "multimask"),
    }


BAD_PROMPT_NAMES = list(_bad_prompts((4, 4)))


@pytest.mark.parametrize("name", BAD_PROMPT_NAMES)
def test_bad_prompt_raises_clearly_and_state_stays_intact(seg_with_image, name):
    seg = seg_with_image
    kwargs, exc_type, pattern = _bad_prompts(seg.low_res_size)[name]
    good = dict(box=[2, 3, 50, 40])
    before = seg.predict(**good)
    with pytest.raises(exc_type, match=pattern):
        seg.predict(**kwargs)
    assert seg.image_size == (45, 61)
    assert_exact(seg.predict(**good), (before.masks, before.scores, before.logits))


def test_thin_image_error_names_the_size_and_the_limit(seg_with_image):
    with pytest.raises(ValueError) as info:
        seg_with_image.set_image(np.zeros((1, 5000, 3), np.uint8))
    message = str(info.value)
    assert "1 x 5000 (height x width)" in message and "128 px" in message
    assert "at least 20 px" in message and "it is 1 px" in message


def test_thin_image_within_the_limit_segments_end_to_end(tiny_sam):
    """20 x 5000 is the thinnest the tiny model takes (1/256): it becomes 1 x 128 inside."""
    seg = Segmenter(tiny_sam, precision="fp32")
    ref = SamPredictor(tiny_sam)
    img = make_image(20, 5000, seed=5)
    seg.set_image(img)
    ref.set_image(img)
    kwargs = dict(points=[[2500, 10]], labels=[1])
    pred = seg.predict(**kwargs, display_size=(4, 1000))
    assert pred.masks.shape == (3, 20, 5000) and pred.display_masks.shape == (3, 4, 1000)
    assert_close(pred, reference_predict(ref, **kwargs))


# ------------------------------------------------------------ display-size masks
def test_display_masks_come_from_predict_and_match_mask_at_size(encoded, monkeypatch):
    """predict(display_size=...) computes the overlay masks itself; nothing is left for the UI."""
    H, W = encoded.H, encoded.W
    dh, dw = max(1, round(H * 0.37)), max(1, round(W * 0.37))
    for seg in (encoded.fast, encoded.exact):
        pred = seg.predict(points=[[0.4 * W, 0.6 * H]], labels=[1], display_size=(dh, dw))
        plain = seg.predict(points=[[0.4 * W, 0.6 * H]], labels=[1])
        assert pred.display_size == (dh, dw) and plain.display_size is None
        assert pred.display_masks.shape == (3, dh, dw) and pred.display_masks.dtype == np.bool_
        from sam_widget.engine import segmenter as S

        def no_torch(*a, **k):
            raise AssertionError("display masks must be ready when predict returns")

        with monkeypatch.context() as m:
            m.setattr(S._Upscaler, "to_display", no_torch)
            shown = [pred.display_mask(i) for i in range(3)]
            assert all(np.array_equal(pred.mask_at_size(i, (dh, dw)), shown[i]) for i in range(3))
        for i in range(3):  # the same path as asking afterwards
            assert np.array_equal(shown[i], plain.mask_at_size(i, (dh, dw)))
        with pytest.raises(ValueError, match="display_size"):
            plain.display_mask(0)


def test_display_size_equal_to_the_image_gives_the_full_size_masks(encoded):
    H, W = encoded.H, encoded.W
    for seg in (encoded.fast, encoded.exact):
        pred = seg.predict(box=[0.1 * W, 0.2 * H, 0.7 * W, 0.9 * H], multimask=False, display_size=(H, W))
        ref = seg.predict(box=[0.1 * W, 0.2 * H, 0.7 * W, 0.9 * H], multimask=False)
        assert np.array_equal(pred.display_mask(0), ref.masks[0])
        assert np.array_equal(pred.masks, ref.masks)


def test_predict_before_set_image_raises_runtime_error(tiny_sam):
    seg = Segmenter(tiny_sam)
    with pytest.raises(RuntimeError, match="set_image"):
        seg.predict(points=[[1, 1]], labels=[1])
    seg.set_image(make_image(20, 20, seed=1))
    seg.predict(points=[[1, 1]], labels=[1])
    seg.reset_image()
    with pytest.raises(RuntimeError, match="set_image"):
        seg.predict(points=[[1, 1]], labels=[1])
    seg.set_image(make_image(20, 20, seed=1))  # still cached after reset
    assert seg.stats["encoder_calls"] == 1 and seg.stats["memory_hits"] == 1


# ---------------------------------------------------------------- threads
def test_set_image_in_a_thread_while_predicting_never_mixes_images(tiny_sam):
    a, b = make_image(150, 200, seed=31), make_image(170, 130, seed=32)
    kwargs = dict(points=[[50.5, 60.5]], labels=[1])
    expected = {}
    for img in (a, b):
        ref = SamPredictor(tiny_sam)
        ref.set_image(img)
        expected[img.shape[:2]] = reference_predict(ref, **kwargs)

    # no memory cache: every set_image really encodes, concurrently with the predicts
    seg = Segmenter(tiny_sam, exact=True, memory_cache_bytes=0)
    seg.set_image(a)
    errors: list[BaseException] = []
    switches = 16

    def switcher():
        try:
            for i in range(switches):
                seg.set_image(b if i % 2 == 0 else a)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=switcher)
    seen = {a.shape[:2]: 0, b.shape[:2]: 0}
    thread.start()
    try:
        while thread.is_alive() or sum(seen.values()) < 4:
            pred = seg.predict(**kwargs)
            size = pred.image_size
            assert pred.masks.shape[1:] == size
            assert_exact(pred, expected[size])
            seen[size] += 1
    finally:
        thread.join(timeout=120)
    assert not errors, errors
    assert seg.stats["encoder_calls"] == switches + 1
    assert all(seen.values()), f"predictions never saw one of the images: {seen}"


# ---------------------------------------------------------------- full size
@pytest.mark.slow
def test_vit_b_exact_mode_is_bit_identical_to_sam_predictor():
    sam = random_sam("vit_b", seed=0)
    H, W = 767, 1023
    rgb = make_image(H, W, seed=1024)
    ref = SamPredictor(sam)
    ref.set_image(rgb)
    seg = Segmenter(sam, exact=True)
    seg.set_image(rgb)
    assert seg.stats["encoder_calls"] == 1 and seg.low_res_size == (256, 256)
    cases = prompt_cases(H, W)
    for name in ("one_point", "box_and_points", "points_single_mask"):
        kwargs = cases[name]
        pred = seg.predict(**kwargs)
        assert_well_formed(pred, (H, W), (256, 256), kwargs.get("multimask", True))
        ref_out = reference_predict(ref, **kwargs)
        assert_exact(pred, ref_out)
    best = int(np.argmax(ref_out[1]))
    follow = dict(points=[[0.5 * W, 0.5 * H]], labels=[0], multimask=False)
    assert_exact(
        seg.predict(**follow, mask_input=pred.logits[best : best + 1]),
        reference_predict(ref, **follow, mask_input=ref_out[2][best : best + 1]),
    )


def test_bf16_precision_is_never_exact(tiny_sam):
    with pytest.raises(ValueError, match="exact"):
        Segmenter(tiny_sam, exact=True, precision="bf16")
    with pytest.raises(ValueError, match="precision"):
        Segmenter(tiny_sam, precision="fp16")
    assert Segmenter(tiny_sam, exact=True).precision == "fp32"


def test_exclusive_makes_set_image_and_predict_one_step_against_other_threads(tiny_sam):
    import threading

    seg = Segmenter(tiny_sam, exact=True)
    a, b = make_image(60, 80, seed=1), make_image(70, 50, seed=2)
    seg.set_image(a)
    done = threading.Event()
    with seg.exclusive():
        seg.set_image(b)
        t = threading.Thread(target=lambda: (seg.set_image(a), done.set()))
        t.start()
        assert not done.wait(0.3)  # the other thread waits for us ...
        pred = seg.predict(points=[[10, 10]], labels=[1])
        assert pred.image_size == (70, 50)  # ... so we predicted on our image
    t.join(10)
    assert done.is_set() and seg.image_size == (60, 80)
