"""Tests of sam_widget.engine.fast_decoder: FastDecoder vs segment_anything's mask decoder.

Decoder-only: every test feeds a random image embedding (no image encoding), so even the
vit_b-size check is quick. The shared session models (``tiny_sam``, ``padded_sam``) are
only read; tests that change weights build a private model.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import weights_digest
from sam_widget.engine.fast_decoder import DecoderState, FastDecoder
from sam_widget.engine.models import TINY_TEST_CONFIG, random_sam

REL_TOL = 1e-4  # max |logits diff| relative to the logits' max |value|
IOU_TOL = 1e-4
MASK_FRACTION = 1e-3  # at most 0.1 % of thresholded pixels may differ

# A third configuration: wider decoder (64 channels, 4 heads), 3 two-way blocks, 12x12 grid,
# 32 mask-input channels: the fold limit is T <= 8 tokens here (1-3 sparse tokens).
WIDE = dataclasses.replace(
    TINY_TEST_CONFIG,
    img_size=96,
    patch_size=8,
    window_size=4,
    prompt_embed_dim=64,
    decoder_num_heads=4,
    decoder_depth=3,
    decoder_mlp_dim=96,
    mask_in_chans=32,
    iou_head_hidden_dim=48,
)

# name -> (number of points, box?, mask input?)
PROMPTS = {
    "point": (1, False, False),
    "points": (3, False, False),
    "box": (0, True, False),
    "box+points": (2, True, False),
    "mask": (0, False, True),
    "points+mask": (2, False, True),
    "box+mask": (0, True, True),
    "many_points": (14, False, False),  # too many tokens to fold: standard projections
    "many_points+mask": (13, False, True),
}


@pytest.fixture(scope="module")
def wide_sam():
    return random_sam(WIDE, seed=3)


def _model(name):
    return {"tiny": "tiny_sam", "padded": "padded_sam", "wide": "wide_sam"}[name]


def _features(sam, seed=0):
    pe = sam.prompt_encoder
    g = torch.Generator().manual_seed(seed)
    h, w = pe.image_embedding_size
    return torch.randn(1, pe.embed_dim, h, w, generator=g, dtype=pe.no_mask_embed.weight.dtype)


def _prompt(sam, kind, seed=0, batch=1):
    """``(points, boxes, masks)`` arguments of ``PromptEncoder.forward``."""
    n, box, mask = PROMPTS[kind]
    pe = sam.prompt_encoder
    g = torch.Generator().manual_seed(seed)
    H, W = pe.input_image_size
    dt = pe.no_mask_embed.weight.dtype
    points = boxes = masks = None
    if n:
        coords = torch.rand(batch, n, 2, generator=g, dtype=dt) * torch.tensor([W, H], dtype=dt)
        points = (coords, torch.randint(0, 2, (batch, n), generator=g))
    if box:
        a = torch.rand(batch, 2, generator=g, dtype=dt) * (H / 2)
        boxes = torch.cat([a, a + torch.rand(batch, 2, generator=g, dtype=dt) * (H / 2)], dim=1)
    if mask:
        mh, mw = pe.mask_input_size
        masks = torch.randn(batch, 1, mh, mw, generator=g, dtype=dt) * 5
    return points, boxes, masks


@torch.no_grad()
def _reference(sam, features, points, boxes, masks, multimask):
    pe = sam.prompt_encoder
    sparse, dense = pe(points=points, boxes=boxes, masks=masks)
    low, iou = sam.mask_decoder(features, pe.get_dense_pe(), sparse, dense, multimask)
    return sparse, dense, low, iou


def _assert_close(got, ref):
    (low, iou), (rlow, riou) = got, ref
    assert low.shape == rlow.shape and iou.shape == riou.shape
    assert low.dtype == rlow.dtype and iou.dtype == riou.dtype
    scale = rlow.abs().max().item()
    assert (low - rlow).abs().max().item() <= REL_TOL * scale
    assert (iou - riou).abs().max().item() <= IOU_TOL
    differ = ((low > 0) != (rlow > 0)).double().mean().item()
    assert differ <= MASK_FRACTION


# ------------------------------------------------------------------------------ equivalence
@pytest.mark.parametrize("config", ["tiny", "padded", "wide"])
@pytest.mark.parametrize("kind", list(PROMPTS))
@pytest.mark.parametrize("multimask", [True, False])
def test_matches_mask_decoder(request, config, kind, multimask):
    sam = request.getfixturevalue(_model(config))
    dec = FastDecoder(sam)
    features = _features(sam, seed=1)
    state = dec.prepare(features)
    for seed in range(2):
        points, boxes, masks = _prompt(sam, kind, seed=seed)
        sparse, dense, rlow, riou = _reference(sam, features, points, boxes, masks, multimask)
        _assert_close(dec.decode(state, sparse, dense, multimask), (rlow, riou))
        _assert_close(dec.predict(state, points, boxes, masks, multimask), (rlow, riou))


@pytest.mark.parametrize("multimask", [True, False])
def test_no_prompt_at_all(tiny_sam, multimask):
    """No points, box or mask: zero sparse tokens (only the 5 output tokens)."""
    dec = FastDecoder(tiny_sam)
    features = _features(tiny_sam)
    state = dec.prepare(features)
    sparse, dense, rlow, riou = _reference(tiny_sam, features, None, None, None, multimask)
    assert sparse.shape[1] == 0
    _assert_close(dec.decode(state, sparse, dense, multimask), (rlow, riou))
    _assert_close(dec.decode(state, sparse, None, multimask), (rlow, riou))
    _assert_close(dec.predict(state, multimask=multimask), (rlow, riou))


def test_dense_argument_forms(tiny_sam):
    """None, the prompt encoder's expanded no-mask embedding and a materialised copy of it
    (which takes the general path) all give the reference result."""
    dec = FastDecoder(tiny_sam)
    features = _features(tiny_sam)
    state = dec.prepare(features)
    points, _, _ = _prompt(tiny_sam, "points")
    sparse, dense, rlow, riou = _reference(tiny_sam, features, points, None, None, True)
    assert dense.stride()[-1] == 0
    for d in (None, dense, dense.contiguous(), dense[:1].clone()):
        _assert_close(dec.decode(state, sparse, d, True), (rlow, riou))
    # a spatially constant dense embedding that is not no_mask_embed is not mistaken for it
    other = (tiny_sam.prompt_encoder.no_mask_embed.weight + 0.5).reshape(1, -1, 1, 1).expand_as(dense)
    with torch.no_grad():
        ref = tiny_sam.mask_decoder(features, tiny_sam.prompt_encoder.get_dense_pe(), sparse, other, True)
    _assert_close(dec.decode(state, sparse, other, True), ref)


@pytest.mark.parametrize("kind", ["points", "box+mask", "many_points"])
def test_prompt_batch(tiny_sam, kind):
    """B > 1 prompts at once: the same as segment_anything's batched decoder."""
    dec = FastDecoder(tiny_sam)
    features = _features(tiny_sam)
    state = dec.prepare(features)
    points, boxes, masks = _prompt(tiny_sam, kind, batch=3)
    sparse, dense, rlow, riou = _reference(tiny_sam, features, points, boxes, masks, True)
    _assert_close(dec.decode(state, sparse, dense, True), (rlow, riou))
    _assert_close(dec.predict(state, points, boxes, masks, True), (rlow, riou))
    if masks is not None:  # one mask input shared by the batch
        _, _, rlow1, riou1 = _reference(tiny_sam, features, points, boxes, masks[:1].expand(3, -1, -1, -1), True)
        _assert_close(dec.predict(state, points, boxes, masks[:1], True), (rlow1, riou1))


def test_outputs_are_plain_tensors(tiny_sam):
    dec = FastDecoder(tiny_sam)
    state = dec.prepare(_features(tiny_sam))
    low, iou = dec.predict(state, *_prompt(tiny_sam, "point"), multimask=True)
    assert not low.requires_grad and not iou.requires_grad
    assert not low.is_inference() and not iou.is_inference()
    assert low.is_contiguous() and low.shape == (1, 3, 64, 64) and iou.shape == (1, 3)
    low += 1  # writable, not a view of anything of the decoder's


# ------------------------------------------------------------------------------ state
def test_prepare_is_prompt_independent(padded_sam):
    """Many prompts decoded on one state equal a fresh prepare + decode for each, and
    decoding never writes into the state."""
    dec = FastDecoder(padded_sam)
    features = _features(padded_sam, seed=2)
    state = dec.prepare(features)
    snapshot = {f.name: getattr(state, f.name).clone() for f in dataclasses.fields(state)
                if isinstance(getattr(state, f.name), torch.Tensor)}
    features_before = features.clone()
    for i, kind in enumerate(list(PROMPTS) * 2):
        multimask = i % 2 == 0
        points, boxes, masks = _prompt(padded_sam, kind, seed=100 + i)
        got = dec.predict(state, points, boxes, masks, multimask)
        fresh_dec = FastDecoder(padded_sam)
        fresh = fresh_dec.predict(fresh_dec.prepare(features), points, boxes, masks, multimask)
        scale = fresh[0].abs().max().item()
        torch.testing.assert_close(got[0], fresh[0], rtol=0, atol=1e-6 * scale)
        torch.testing.assert_close(got[1], fresh[1], rtol=0, atol=1e-7)
        sparse, dense, _, _ = _reference(padded_sam, features, points, boxes, masks, multimask)
        got2 = dec.decode(state, sparse, dense, multimask)
        torch.testing.assert_close(got2[0], fresh[0], rtol=0, atol=1e-5 * scale)
    for name, before in snapshot.items():
        assert torch.equal(getattr(state, name), before), f"decode modified state.{name}"
    assert torch.equal(features, features_before)


def test_state_accepts_3d_features_and_is_reusable_by_its_decoder_only(tiny_sam):
    dec = FastDecoder(tiny_sam)
    features = _features(tiny_sam)
    s3 = dec.prepare(features[0])
    assert isinstance(s3, DecoderState)
    prompt = _prompt(tiny_sam, "box")
    a = dec.predict(s3, *prompt)
    b = dec.predict(dec.prepare(features), *prompt)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="another FastDecoder"):
        FastDecoder(tiny_sam).predict(s3, *prompt)


# ------------------------------------------------------------------------------ the model
def test_model_is_not_modified():
    sam = random_sam(TINY_TEST_CONFIG, seed=7)
    features = _features(sam)
    before = weights_digest(sam)
    points, boxes, masks = _prompt(sam, "box+points")
    _, _, rlow, riou = _reference(sam, features, points, boxes, masks, True)
    ref_mask = _reference(sam, features, *_prompt(sam, "points+mask"), False)
    dec = FastDecoder(sam)
    state = dec.prepare(features)
    for kind in PROMPTS:
        dec.predict(state, *_prompt(sam, kind), multimask=True)
        sparse, dense, _, _ = _reference(sam, features, *_prompt(sam, kind), False)
        dec.decode(state, sparse, dense, False)
    assert weights_digest(sam) == before
    assert all(p.grad is None for p in sam.parameters())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in sam.modules())
    # the model's own forward is unchanged (bit-identical)
    _, _, low, iou = _reference(sam, features, points, boxes, masks, True)
    assert torch.equal(low, rlow) and torch.equal(iou, riou)
    again = _reference(sam, features, *_prompt(sam, "points+mask"), False)
    assert torch.equal(again[2], ref_mask[2]) and torch.equal(again[3], ref_mask[3])


def test_weight_changes_are_picked_up():
    """Weights changed in place after construction and after prepare: the derived data
    and the state are rebuilt, results follow the new weights."""
    sam = random_sam(TINY_TEST_CONFIG, seed=8)
    features = _features(sam)
    dec = FastDecoder(sam)
    state = dec.prepare(features)
    with torch.no_grad():
        sam.mask_decoder.transformer.layers[0].cross_attn_token_to_image.k_proj.weight.mul_(1.5)
        sam.mask_decoder.output_upscaling[0].bias.add_(0.3)
        sam.prompt_encoder.no_mask_embed.weight.add_(0.2)
        sam.prompt_encoder.mask_downscaling[0].weight.mul_(-1)
    for kind in ("points", "points+mask"):
        points, boxes, masks = _prompt(sam, kind)
        sparse, dense, rlow, riou = _reference(sam, features, points, boxes, masks, True)
        _assert_close(dec.predict(state, points, boxes, masks, True), (rlow, riou))
        _assert_close(dec.decode(state, sparse, dense, True), (rlow, riou))
    refreshed = state.refreshed
    assert refreshed is not None  # the state was re-prepared once, then reused
    dec.predict(state, *_prompt(sam, "box"))
    assert state.refreshed is refreshed


def test_refresh_after_replacing_a_module():
    sam = random_sam(TINY_TEST_CONFIG, seed=10)
    features = _features(sam)
    dec = FastDecoder(sam)
    other = random_sam(TINY_TEST_CONFIG, seed=11)
    sam.mask_decoder.output_upscaling = other.mask_decoder.output_upscaling  # new parameter objects
    dec.refresh()
    state = dec.prepare(features)
    points, boxes, masks = _prompt(sam, "box+points")
    _, _, rlow, riou = _reference(sam, features, points, boxes, masks, True)
    _assert_close(dec.predict(state, points, boxes, masks, True), (rlow, riou))


def test_unknown_mask_downscaling_structure_falls_back():
    """A prompt encoder whose mask_downscaling is not the segment_anything stack is run as
    is (mask inputs then take the general path)."""
    sam = random_sam(TINY_TEST_CONFIG, seed=9)
    md = sam.prompt_encoder.mask_downscaling
    sam.prompt_encoder.mask_downscaling = torch.nn.Sequential(*md, torch.nn.Tanh())
    dec = FastDecoder(sam)
    assert dec._weights()[1].mask_embed is None
    features = _features(sam)
    state = dec.prepare(features)
    for kind in ("mask", "points+mask", "many_points+mask"):
        points, boxes, masks = _prompt(sam, kind)
        sparse, dense, rlow, riou = _reference(sam, features, points, boxes, masks, True)
        _assert_close(dec.predict(state, points, boxes, masks, True), (rlow, riou))
        _assert_close(dec.decode(state, sparse, dense, True), (rlow, riou))


# ------------------------------------------------------------------------------ bad input
def test_bad_inputs_raise(tiny_sam):
    dec = FastDecoder(tiny_sam)
    features = _features(tiny_sam)
    state = dec.prepare(features)
    points, _, masks = _prompt(tiny_sam, "points+mask")
    sparse, dense, _, _ = _reference(tiny_sam, features, points, None, masks, True)
    C = tiny_sam.prompt_encoder.embed_dim

    with pytest.raises(TypeError):
        FastDecoder(object())
    # prepare
    with pytest.raises(TypeError):
        dec.prepare(features.numpy())
    for bad in (features[:, :-1], features[..., :-1], torch.cat([features, features]), features[0, 0]):
        with pytest.raises(ValueError):
            dec.prepare(bad)
    with pytest.raises(ValueError):
        dec.prepare(features.double())
    # decode
    with pytest.raises(TypeError):
        dec.decode("state", sparse, dense, True)
    with pytest.raises(TypeError):
        dec.decode(state, sparse.numpy(), dense, True)
    with pytest.raises(TypeError):
        dec.decode(state, sparse, dense.numpy(), True)
    with pytest.raises(TypeError):
        dec.decode(state, sparse, dense, 1)
    with pytest.raises(TypeError):
        dec.decode(state, sparse, dense, "yes")
    for bad_sparse in (sparse[0], sparse[..., :-1], torch.zeros(0, 2, C), sparse.double()):
        with pytest.raises(ValueError):
            dec.decode(state, bad_sparse, dense, True)
    for bad_dense in (dense[0], dense[:, :-1], dense[..., :-1], dense.expand(2, -1, -1, -1), dense.double()):
        with pytest.raises(ValueError):
            dec.decode(state, sparse, bad_dense, True)
    # predict
    with pytest.raises(TypeError):
        dec.predict(state, points, None, masks.numpy())
    for bad_mask in (masks[0], masks[..., :-1], masks.expand(2, 2, -1, -1), masks.double()):
        with pytest.raises(ValueError):
            dec.predict(state, points, None, bad_mask)
    with pytest.raises(ValueError):  # mask batch 2 vs points batch 1
        dec.predict(state, points, None, masks.expand(2, -1, -1, -1))
    with pytest.raises(TypeError):
        dec.predict(state, points, None, masks, multimask=None)
    # numpy bools are accepted as multimask
    assert dec.decode(state, sparse, dense, np.bool_(False))[0].shape[1] == 1


# ------------------------------------------------------------------------------ vit_b size
@pytest.mark.slow
def test_vit_b_size_decoder():
    """The official decoder size (256 channels, 8 heads, 64x64 grid -> 256x256 logits),
    random weights and a random embedding (no image encoding: quick)."""
    sam = random_sam("vit_b", seed=0)
    features = _features(sam, seed=4)
    dec = FastDecoder(sam)
    state = dec.prepare(features)
    for i, kind in enumerate(PROMPTS):
        for multimask in (True, False):
            points, boxes, masks = _prompt(sam, kind, seed=i)
            sparse, dense, rlow, riou = _reference(sam, features, points, boxes, masks, multimask)
            assert rlow.shape[-2:] == (256, 256)
            _assert_close(dec.predict(state, points, boxes, masks, multimask), (rlow, riou))
            _assert_close(dec.decode(state, sparse, dense, multimask), (rlow, riou))


# ------------------------------------------------------------------------------ bf16 image side
@pytest.mark.parametrize("config", ["tiny", "wide"])
def test_bf16_image_side_agrees_with_the_mask_decoder(request, config):
    """``image_dtype=torch.bfloat16``: logits stay fp32 tensors, scores move by < 0.01 and
    thresholded masks agree to IoU >= 0.98 per mask, on every prompt path (folded, too many
    tokens to fold, mask inputs, the ``decode`` drop-in)."""
    sam = request.getfixturevalue(_model(config))
    dec = FastDecoder(sam, image_dtype=torch.bfloat16)
    features = _features(sam, seed=2)
    state = dec.prepare(features)
    for i, kind in enumerate(["point", "box+points", "points+mask", "many_points", "many_points+mask"]):
        points, boxes, masks = _prompt(sam, kind, seed=i)
        sparse, dense, rlow, riou = _reference(sam, features, points, boxes, masks, True)
        for low, iou in (dec.predict(state, points, boxes, masks, True), dec.decode(state, sparse, dense, True)):
            assert low.dtype == torch.float32 and low.shape == rlow.shape and iou.dtype == torch.float32
            assert (iou - riou).abs().max().item() <= 1e-2
            a, b = low > 0, rlow > 0
            inter = (a & b).flatten(2).sum(-1).double()
            union = (a | b).flatten(2).sum(-1).double().clamp(min=1)
            assert (inter / union).min().item() >= 0.98, (kind, inter / union)
            assert not torch.equal(low, rlow)  # it really ran in bf16


def test_bad_image_dtype(tiny_sam):
    with pytest.raises(ValueError, match="image_dtype"):
        FastDecoder(tiny_sam, image_dtype=torch.int8)
