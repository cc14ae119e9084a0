"""Tests of sam_widget.engine.fast: the accelerated image encoder.

Every model here is private (``random_sam``): ``accelerate`` modifies the model it is given,
so the shared session fixtures must not be used.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import pickle
import warnings

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor
from segment_anything.modeling import ImageEncoderViT
from segment_anything.modeling.image_encoder import Block

from sam_widget.engine import fast
from sam_widget.engine.fast import (
    AcceleratedImageEncoderViT,
    accelerate,
    deaccelerate,
    fast_encoder_forward,
    is_accelerated,
)
from sam_widget.engine.models import TINY_TEST_CONFIG, random_sam

# 14x14 grid, 5x5 windows: windowed blocks pad 14 -> 15 (like the official 64 -> 70).
PADDED = dataclasses.replace(TINY_TEST_CONFIG, img_size=112, patch_size=8, window_size=5)
# 15x15 grid (odd), 4x4 windows (pad 15 -> 16), 4 heads, global block in the middle.
ODD = dataclasses.replace(
    TINY_TEST_CONFIG,
    img_size=120,
    patch_size=8,
    window_size=4,
    encoder_num_heads=4,
    encoder_depth=3,
    encoder_global_attn_indexes=(1,),
)
# 16x16 grid with 7x7 windows: 3 windows per side, 5 rows/cols of padding.
WIDE_PAD = dataclasses.replace(
    TINY_TEST_CONFIG, window_size=7, encoder_depth=3, encoder_global_attn_indexes=(0,)
)
CONFIGS = {"tiny": TINY_TEST_CONFIG, "padded": PADDED, "odd": ODD, "wide_pad": WIDE_PAD}

REL_TOL = 1e-4  # max abs embedding difference relative to the embedding's max abs value
MASK_FRACTION = 1e-3  # at most 0.1 % of mask pixels may differ
SCORE_TOL = 1e-3


def _input(cfg, batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, cfg.img_size, cfg.img_size, generator=g) * 50


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _assert_close_embedding(a, b):
    assert a.shape == b.shape and a.dtype == b.dtype
    scale = a.abs().max().item()
    diff = (a - b).abs().max().item()
    assert diff <= REL_TOL * scale, f"embedding differs by {diff} (scale {scale})"


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("batch", [1, 2])
def test_fast_forward_matches_reference(name, batch):
    cfg = CONFIGS[name]
    sam = random_sam(cfg, seed=1)
    x = _input(cfg, batch)
    with torch.no_grad():
        ref = sam.image_encoder(x)
        out = fast_encoder_forward(sam.image_encoder, x)
    _assert_close_embedding(ref, out)
    assert not is_accelerated(sam)  # the functional form does not patch anything


@pytest.mark.parametrize(
    "budget, queries, mlp_tokens",
    [
        (1, 1, 7),  # one query row of one head per kernel call, MLP in 7-token chunks
        (6000, 16, 64),  # head groups and row chunks
        (3 * 2**20, 1024, 10**6),  # whole windows batched, several windows per call
    ],
)
def test_chunked_paths_match_reference(monkeypatch, budget, queries, mlp_tokens):
    monkeypatch.setattr(fast, "MASK_BUDGET_BYTES", budget)
    monkeypatch.setattr(fast, "QUERY_CHUNK", queries)
    monkeypatch.setattr(fast, "MLP_CHUNK_TOKENS", mlp_tokens)
    for cfg in (ODD, WIDE_PAD):
        sam = random_sam(cfg, seed=2)
        x = _input(cfg, batch=3)
        with torch.no_grad():
            _assert_close_embedding(sam.image_encoder(x), fast_encoder_forward(sam.image_encoder, x))


@pytest.mark.parametrize("name", ["tiny", "padded", "odd"])
def test_predictor_masks_and_scores_within_tolerance(name):
    cfg = CONFIGS[name]
    ref_sam = random_sam(cfg, seed=0)
    fast_sam = random_sam(cfg, seed=0)
    report = accelerate(fast_sam)
    assert report.accelerated and report.fast_blocks == report.total_blocks == cfg.encoder_depth
    assert not report.compile  # "auto" means eager on every device
    ref, acc = SamPredictor(ref_sam), SamPredictor(fast_sam)
    for h, w in [(97, 133), (150, 61)]:
        img = _image(h, w, seed=h)
        ref.set_image(img)
        acc.set_image(img)
        _assert_close_embedding(ref.features, acc.features)
        prompts = [
            dict(point_coords=np.array([[w * 0.5, h * 0.5]]), point_labels=np.array([1])),
            dict(point_coords=np.array([[3.0, 4.0], [w - 5.0, h - 2.0]]), point_labels=np.array([1, 0])),
            dict(box=np.array([w * 0.1, h * 0.2, w * 0.8, h * 0.9])),
        ]
        for kw in prompts:
            m1, s1, l1 = ref.predict(multimask_output=True, **kw)
            m2, s2, l2 = acc.predict(multimask_output=True, **kw)
            assert m1.shape == m2.shape == (3, h, w)
            assert (m1 != m2).mean() <= MASK_FRACTION
            assert np.abs(s1 - s2).max() <= SCORE_TOL


def test_deaccelerate_restores_bit_identical_outputs():
    sam = random_sam(PADDED, seed=0)
    pristine = random_sam(PADDED, seed=0)
    before = {k: v.clone() for k, v in sam.state_dict().items()}
    x = _input(PADDED)
    with torch.no_grad():
        ref = pristine.image_encoder(x)
        report = accelerate(sam)
        assert is_accelerated(sam) and type(sam.image_encoder) is AcceleratedImageEncoderViT
        assert isinstance(sam.image_encoder, ImageEncoderViT)
        # state_dict keys and values are untouched while accelerated
        sd = sam.state_dict()
        assert list(sd) == list(before) and all(torch.equal(sd[k], before[k]) for k in sd)
        _assert_close_embedding(ref, sam.image_encoder(x))
        assert deaccelerate(sam) is True
        assert type(sam.image_encoder) is ImageEncoderViT and not is_accelerated(sam)
        assert torch.equal(sam.image_encoder(x), ref)
        assert deaccelerate(sam) is False  # idempotent
        # report.undo() works too
        report = accelerate(sam)
        assert report.undo() is True and not report.accelerated
        assert torch.equal(sam.image_encoder(x), ref)
    # exact mode through SamPredictor: bit-identical to a never-accelerated model
    img = _image(90, 70)
    p1, p2 = SamPredictor(sam), SamPredictor(pristine)
    p1.set_image(img)
    p2.set_image(img)
    assert torch.equal(p1.features, p2.features)
    kw = dict(point_coords=np.array([[30.0, 40.0]]), point_labels=np.array([1]))
    (m1, s1, l1), (m2, s2, l2) = p1.predict(**kw), p2.predict(**kw)
    assert np.array_equal(m1, m2) and np.array_equal(s1, s2) and np.array_equal(l1, l2)


def test_accelerate_only_touches_the_given_instance():
    a, b = random_sam(TINY_TEST_CONFIG, seed=0), random_sam(TINY_TEST_CONFIG, seed=0)
    accelerate(a)
    assert is_accelerated(a) and not is_accelerated(b)
    assert ImageEncoderViT.forward is not AcceleratedImageEncoderViT.forward
    assert type(b.image_encoder) is ImageEncoderViT
    x = _input(TINY_TEST_CONFIG)
    with torch.no_grad():
        assert torch.equal(b.image_encoder(x), ImageEncoderViT.forward(b.image_encoder, x))


def test_accelerate_twice_and_copies():
    sam = random_sam(ODD, seed=0)
    ref = random_sam(ODD, seed=3)  # different weights
    accelerate(sam)
    accelerate(sam)  # again: fine, still accelerated
    assert is_accelerated(sam)
    # a deep copy stays accelerated and computes with its own weights
    other = copy.deepcopy(sam)
    other.load_state_dict(ref.state_dict())
    assert is_accelerated(other)
    x = _input(ODD)
    with torch.no_grad():
        _assert_close_embedding(ref.image_encoder(x), other.image_encoder(x))
        # the original still uses the original weights
        _assert_close_embedding(random_sam(ODD, seed=0).image_encoder(x), sam.image_encoder(x))
    # pickling works (e.g. torch.save of the whole model)
    clone = pickle.loads(pickle.dumps(sam))
    assert is_accelerated(clone)
    with torch.no_grad():
        _assert_close_embedding(sam.image_encoder(x), clone.image_encoder(x))


def test_weights_changed_in_place_are_used():
    """The cached relative-position tables follow in-place parameter updates."""
    sam = random_sam(PADDED, seed=0)
    accelerate(sam)
    x = _input(PADDED)
    with torch.no_grad():
        sam.image_encoder(x)  # fill caches
        for blk in sam.image_encoder.blocks:
            blk.attn.rel_pos_h.mul_(3.0).add_(0.05)
            blk.attn.rel_pos_w.add_(-0.07)
        fast_out = sam.image_encoder(x)
        ref_out = ImageEncoderViT.forward(sam.image_encoder, x)
    _assert_close_embedding(ref_out, fast_out)


def test_grad_mode_uses_reference_and_backpropagates():
    sam = random_sam(TINY_TEST_CONFIG, seed=0)
    accelerate(sam)
    x = _input(TINY_TEST_CONFIG)
    out = sam.image_encoder(x)  # grad enabled and parameters require grad
    assert out.requires_grad
    assert torch.equal(out.detach(), ImageEncoderViT.forward(sam.image_encoder, x).detach())
    out.sum().backward()
    assert sam.image_encoder.blocks[0].attn.rel_pos_h.grad is not None


def test_inference_mode_and_no_grad_take_the_fast_path(monkeypatch):
    sam = random_sam(TINY_TEST_CONFIG, seed=0)
    accelerate(sam)
    calls = []
    real = fast._fast_block
    monkeypatch.setattr(fast, "_fast_block", lambda blk, x, *a: calls.append(1) or real(blk, x, *a))
    x = _input(TINY_TEST_CONFIG)
    with torch.inference_mode():
        sam.image_encoder(x)
    with torch.no_grad():
        sam.image_encoder(x)
    assert len(calls) == 2 * TINY_TEST_CONFIG.encoder_depth


def test_blocks_with_hooks_or_foreign_classes_use_their_own_forward():
    sam = random_sam(ODD, seed=0)
    accelerate(sam)
    seen = []
    handle = sam.image_encoder.blocks[1].register_forward_hook(lambda m, i, o: seen.append(o.shape))

    class MyBlock(Block):
        pass

    blk0 = sam.image_encoder.blocks[0]
    sam.image_encoder.blocks[0].__class__ = MyBlock
    x = _input(ODD)
    with torch.no_grad():
        out = sam.image_encoder(x)
        ref = ImageEncoderViT.forward(sam.image_encoder, x)
    handle.remove()
    blk0.__class__ = Block
    assert len(seen) == 2
    _assert_close_embedding(ref, out)


def test_encoder_variants_without_rel_pos_or_windows():
    torch.manual_seed(0)
    for kw in (
        dict(use_rel_pos=False, window_size=4, global_attn_indexes=(1,)),
        dict(use_rel_pos=True, window_size=0),
        dict(use_rel_pos=True, window_size=3, global_attn_indexes=()),
        dict(use_rel_pos=False, use_abs_pos=False, window_size=0),
    ):
        enc = ImageEncoderViT(
            img_size=64, patch_size=8, embed_dim=24, depth=2, num_heads=3, out_chans=16, **kw
        ).eval()
        with torch.no_grad():
            for p in enc.parameters():
                p.add_(torch.randn_like(p) * 0.02)
            x = torch.randn(1, 3, 64, 64)
            _assert_close_embedding(enc(x), fast_encoder_forward(enc, x))


def test_foreign_encoder_is_left_alone():
    sam = random_sam(TINY_TEST_CONFIG, seed=0)

    class MyEncoder(ImageEncoderViT):
        pass

    sam.image_encoder.__class__ = MyEncoder
    report = accelerate(sam)
    assert not report.accelerated and "MyEncoder" in report.reason
    assert type(sam.image_encoder) is MyEncoder


def test_bad_arguments():
    sam = random_sam(TINY_TEST_CONFIG, seed=0)
    with pytest.raises(TypeError):
        accelerate(sam.image_encoder)
    with pytest.raises(ValueError):
        accelerate(sam, compile="sometimes")
    with pytest.raises(ValueError):
        accelerate(sam, precision="fp8")
    with pytest.raises(TypeError):
        accelerate(sam, compile=1)
    assert not is_accelerated(sam)


def _native(monkeypatch, native: bool) -> None:
    from sam_widget.engine import precision

    monkeypatch.setattr(precision, "cpu_bf16_support", lambda: (native, "mocked"))


def _param_bytes(module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def test_bf16_converts_linear_weights_once_and_halves_their_memory(monkeypatch):
    _native(monkeypatch, True)
    sam = random_sam(PADDED, seed=0)
    ref = random_sam(PADDED, seed=0)
    enc = sam.image_encoder
    linear_bytes = sum(_param_bytes(m) for m in enc.modules() if isinstance(m, torch.nn.Linear))
    before = _param_bytes(enc)
    report = accelerate(sam, precision="bf16")
    assert report.accelerated and report.precision == "bf16"
    assert any("converted to bf16" in n for n in report.notes)
    assert _param_bytes(enc) == before - linear_bytes // 2
    for name, p in enc.named_parameters():  # only the blocks' linear layers change
        is_linear = name.startswith("blocks.") and any(f".{k}." in name for k in ("qkv", "proj", "lin1", "lin2"))
        assert p.dtype == (torch.bfloat16 if is_linear else torch.float32), name
    x = _input(PADDED)
    with torch.no_grad():
        out = enc(x)
        exact = ref.image_encoder(x)
    assert out.dtype == torch.float32
    scale = exact.abs().max().item()
    assert 0 < (out - exact).abs().max().item() <= 0.05 * scale  # bf16 noise, not fp32 noise
    # SamPredictor keeps working on the converted model (fp32 image in, fp32 embedding out)
    img = _image(100, 80, seed=3)
    p = SamPredictor(sam)
    p.set_image(img)
    assert p.features.dtype == torch.float32
    p.predict(point_coords=np.array([[40.0, 50.0]]), point_labels=np.array([1]))


def test_converting_at_load_and_per_call_give_the_same_numbers():
    """bf16 on an fp32 model (layers converted for the call) equals bf16 weights converted once."""
    a, b = random_sam(ODD, seed=4), random_sam(ODD, seed=4)
    fast.convert_linear_weights(b.image_encoder, torch.bfloat16)
    x = _input(ODD, batch=2)
    with torch.no_grad():
        per_call = fast_encoder_forward(a.image_encoder, x, torch.bfloat16)
        at_load = fast_encoder_forward(b.image_encoder, x)  # the weights' dtype decides
    assert torch.equal(per_call, at_load)
    assert a.image_encoder.blocks[0].attn.qkv.weight.dtype == torch.float32  # untouched


def test_deaccelerate_after_bf16_restores_fp32_weights_rounded_to_bf16(monkeypatch):
    _native(monkeypatch, True)
    sam = random_sam(TINY_TEST_CONFIG, seed=0)
    original = sam.image_encoder.blocks[0].mlp.lin1.weight.detach().clone()
    accelerate(sam, precision="bf16")
    assert deaccelerate(sam)
    w = sam.image_encoder.blocks[0].mlp.lin1.weight
    assert w.dtype == torch.float32 and torch.equal(w, original.to(torch.bfloat16).float())
    assert type(sam.image_encoder) is ImageEncoderViT
    with torch.no_grad():
        sam.image_encoder(_input(TINY_TEST_CONFIG))  # the reference forward runs again


def test_gradients_through_converted_weights_are_refused_clearly(monkeypatch):
    _native(monkeypatch, True)
    sam = random_sam(TINY_TEST_CONFIG, seed=0)
    accelerate(sam, precision="bf16")
    with pytest.raises(RuntimeError, match="precision='fp32'"):
        sam.image_encoder(_input(TINY_TEST_CONFIG))  # grad mode on, parameters require grad


def test_auto_precision_follows_the_hardware(monkeypatch):
    monkeypatch.delenv("SAM_WIDGET_PRECISION", raising=False)  # the hardware decides "auto" here
    _native(monkeypatch, False)
    sam = random_sam(TINY_TEST_CONFIG, seed=0)
    assert accelerate(sam, precision="auto").precision == "fp32"
    assert sam.image_encoder.blocks[0].attn.qkv.weight.dtype == torch.float32
    _native(monkeypatch, True)
    assert accelerate(sam, precision="auto").precision == "bf16"
    assert sam.image_encoder.blocks[0].attn.qkv.weight.dtype == torch.bfloat16
    report = accelerate(sam, precision="fp32")  # back to fp32 in place
    assert report.precision == "fp32" and any("back to fp32" in n for n in report.notes)
    assert sam.image_encoder.blocks[0].attn.qkv.weight.dtype == torch.float32


def test_fast_path_handles_autocast_dtypes():
    """The code path CUDA bf16 uses (mixed dtypes under autocast), exercised on CPU."""
    sam = random_sam(PADDED, seed=0)
    x = _input(PADDED)
    with torch.no_grad():
        ref32 = sam.image_encoder(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref = sam.image_encoder(x)
            out = fast_encoder_forward(sam.image_encoder, x)
    assert out.dtype == ref.dtype
    scale = ref32.abs().max().item()
    assert (out.float() - ref.float()).abs().max().item() <= 0.02 * scale  # bf16 noise
    assert (out.float() - ref32).abs().max().item() <= 0.05 * scale


def test_compile_unavailable_falls_back_to_eager(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))

    def broken_compile(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(torch, "compile", broken_compile)
    sam = random_sam(PADDED, seed=0)
    with pytest.warns(RuntimeWarning, match="no compiler here"):
        report = accelerate(sam, compile=True, cache_dir=tmp_path / "c")
    assert report.accelerated and not report.compile
    assert "no compiler here" in report.compile_error
    x = _input(PADDED)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no further warning on use
        with torch.no_grad():
            out = sam.image_encoder(x)
    _assert_close_embedding(ImageEncoderViT.forward(sam.image_encoder, x), out)


def test_compiled_call_failure_warns_once_and_continues_eager(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    calls = []

    def failing_compile(fn, **kwargs):
        def compiled(*a, **k):
            calls.append(1)
            raise RuntimeError("inductor exploded")

        return compiled

    monkeypatch.setattr(torch, "compile", failing_compile)
    sam = random_sam(PADDED, seed=0)
    report = accelerate(sam, compile=True)
    assert report.compile and report.compile_error is None
    x = _input(PADDED)
    with torch.no_grad():
        with pytest.warns(RuntimeWarning, match="inductor exploded"):
            out1 = sam.image_encoder(x)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            out2 = sam.image_encoder(x)
    assert len(calls) == 1  # not retried
    assert not report.compile and "inductor exploded" in report.compile_error
    ref = ImageEncoderViT.forward(sam.image_encoder, x)
    _assert_close_embedding(ref, out1)
    assert torch.equal(out1, out2)


def test_compile_cache_dir_resolution(monkeypatch, tmp_path):
    monkeypatch.delenv("SAM_WIDGET_HOME", raising=False)
    assert fast.compile_cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.setenv("SAM_WIDGET_HOME", str(tmp_path / "home"))
    assert fast.compile_cache_dir() == tmp_path / "home" / "inductor"


def test_compile_cache_dir_is_applied_unless_the_user_chose_one(monkeypatch, tmp_path):
    monkeypatch.setattr(torch, "compile", lambda fn, **kw: fn)  # no real compile here
    monkeypatch.setenv("SAM_WIDGET_HOME", str(tmp_path / "home"))
    sam = random_sam(TINY_TEST_CONFIG, seed=0)
    # unset -> $SAM_WIDGET_HOME/inductor
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "placeholder")  # restored after the test
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    report = accelerate(sam, compile=True)
    assert report.cache_dir == tmp_path / "home" / "inductor" and report.cache_dir.is_dir()
    # Inductor's own default (set by importing torch._dynamo) is replaced too
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", fast._inductor_default_dir())
    assert accelerate(sam, compile=True).cache_dir == tmp_path / "home" / "inductor"
    # a directory chosen by the user is kept ...
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "theirs"))
    assert accelerate(sam, compile=True).cache_dir == tmp_path / "theirs"
    # ... unless cache_dir is passed explicitly
    assert accelerate(sam, compile=True, cache_dir=tmp_path / "cc").cache_dir == tmp_path / "cc"
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "cc")
    x = _input(TINY_TEST_CONFIG)
    with torch.no_grad():
        _assert_close_embedding(ImageEncoderViT.forward(sam.image_encoder, x), sam.image_encoder(x))


@pytest.mark.slow
def test_vit_b_parity_through_sam_predictor():
    """Full-size vit_b (random weights, seed 0) on a 768 x 1024 image: the acceptance bounds."""
    ref_sam = random_sam("vit_b", seed=0)
    fast_sam = copy.deepcopy(ref_sam)
    accelerate(fast_sam)
    rng = np.random.default_rng(0)
    img = np.kron(rng.integers(0, 256, (24, 32, 3)), np.ones((32, 32, 1))).astype(np.uint8)
    ref, acc = SamPredictor(ref_sam), SamPredictor(fast_sam)
    ref.set_image(img)
    acc.set_image(img)
    _assert_close_embedding(ref.features, acc.features)
    for pts, lbl in [([[512.0, 384.0]], [1]), ([[200.0, 150.0], [700.0, 600.0]], [1, 0])]:
        kw = dict(point_coords=np.array(pts), point_labels=np.array(lbl), multimask_output=True)
        m1, s1, _ = ref.predict(**kw)
        m2, s2, _ = acc.predict(**kw)
        assert (m1 != m2).mean() <= MASK_FRACTION
        assert np.abs(s1 - s2).max() <= SCORE_TOL
