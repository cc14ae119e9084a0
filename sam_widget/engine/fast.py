"""A faster SAM image encoder: same weights, same maths, less time.

``accelerate(sam)`` makes ``sam.image_encoder`` (a segment_anything ``ImageEncoderViT``)
run a rewritten forward pass; everything that calls the encoder (``SamPredictor``,
``SamAutomaticMaskGenerator``, :class:`sam_widget.engine.segmenter.Segmenter`) gets the
speed-up. ``deaccelerate(sam)`` (or ``report.undo()``) puts the original forward back, after
which the model is bit-identical to an untouched one (in fp32 no parameter is ever
modified; see *bf16* below for ``precision="bf16"``).

What the fast forward does differently (in fp32, the same parameters):

* Attention uses ``torch.nn.functional.scaled_dot_product_attention`` (a fused
  flash-attention kernel on CPU and CUDA) with SAM's decomposed relative-position bias
  (``rel_h + rel_w`` of segment_anything's ``add_decomposed_rel_pos``) passed as an additive
  ``attn_mask``. The reference instead materialises, for each global-attention block, a
  ``heads x 4096 x 4096`` score matrix several times (805 MB each for ViT-B) and adds the
  bias with slow broadcasting kernels; that is most of its time on a CPU.
* The bias mask is built in bounded chunks (at most :data:`MASK_BUDGET_BYTES` at once,
  about :data:`QUERY_CHUNK` queries per kernel call) into one reused buffer with a single
  broadcasting add, instead of the reference's three passes over fresh 805 MB tensors.
* Global blocks pass strided ``q, k, v`` views straight to the kernel (no copies); windowed
  blocks partition ``qkv`` into the kernel's layout with one copy, and un-partition, crop and
  add the residual in one pass. Residual additions reuse temporaries.
* The MLP runs in chunks of :data:`MLP_CHUNK_TOKENS` tokens (bounded memory for large
  inputs / batches; one chunk for a single 1024 x 1024 image).
* The relative-position tables (``get_rel_pos``) are cached per attention layer and
  recomputed whenever the parameters change (tracked by their version counter).

Few, large operations on purpose: on a loaded 2-core machine every multi-threaded operation
pays a scheduling delay, so finer chunking (which wins a few % on an idle core) loses there.

Numerics: only the floating-point summation order differs. On ``random_sam("vit_b", 0)``
the image embedding differs from the reference by ~1e-5 (max abs, values of order 1) and
masks / IoU scores through ``SamPredictor`` are unchanged to well within 0.1 % of pixels /
1e-3 (see ``tests/test_fast.py`` and ``/tmp/bench_encoder.py``).

When the fast path is NOT used (the original forward runs instead, so results are exact):
gradients are required (``torch.is_grad_enabled()`` and the input or any encoder parameter
requires grad; ``SamPredictor`` runs under ``no_grad``), or a block / attention layer is not
exactly segment_anything's ``Block`` / ``Attention`` class or has forward hooks.

Measured on the project's 2-core AVX2 CPU, shared with other jobs (vit_b random weights,
768 x 1024 image, ``SamPredictor.set_image``, interleaved runs in one process, medians):

* 1 intra-op thread (fair share under load): official 19.3 CPU-s, fast 9.8 CPU-s -> 0.51x
  (wall 37.7 s vs 18.8 s -> 0.50x).
* 2 threads (torch's default), load 4-5: official 19.3 CPU-s, fast 11.6 CPU-s -> 0.60x; wall
  times vary from 0.50x to 0.88x per pair, as a loaded machine schedules the two threads
  of a process unevenly (median 27.6 s vs 20.2 s).
* first call in a fresh process: official 21.6 s (19.4 CPU-s), fast 16.0 s (12.1 CPU-s).
* ``torch.compile`` of the fast forward: first call 96.5 s (35.4 CPU-s) with an empty cache,
  18.9 s (15.0 CPU-s, i.e. ~3 CPU-s of compile overhead) in a new process with the cache
  warm, then 11.6 CPU-s per call - the same as eager (11.5). Hence ``compile="auto"`` means
  *no compile*.

bf16 (``precision="bf16"``, and ``"auto"`` where the hardware has native bf16, see
:mod:`sam_widget.engine.precision`): the transformer blocks' linear layers (~95 % of the
weights and ~75 % of the FLOPs) compute in bf16. :func:`convert_linear_weights` converts
their weights once (``load_sam`` / ``accelerate`` do; memory halves); on an fp32 model,
``fast_encoder_forward(..., dtype=torch.bfloat16)`` converts one layer at a time for the call
instead (bit-identical results, the model untouched). The residual stream, layer norms,
patch embedding and neck stay fp32. Attention stays fp32 on CPUs: measured here (AVX-512 BF16,
no AMX, torch 2.14) the fused attention kernel is 2-3x *slower* in bf16, and hand-written
bf16 attention was slower still; on GPUs it runs in bf16. On the project's 2-core CPU this
takes the encoder from 0.56x to about 0.4x of the official fp32 ``set_image`` (see
``benchmarks/RESULTS.md``): the floor is the bf16 matrix rate (~0.73 TFLOP of linears at
~350-400 GFLOP/s ~= 2 s) plus fp32 attention (~0.2 TFLOP at ~150-300 GFLOP/s). Masks agree
with exact fp32 to a median IoU of 0.998 (min 0.994) over 120 prompts on vit_b.

CUDA: the code is device-agnostic (every buffer is created on the input's device);
``benchmarks/gpu.sh`` measures it on a GPU when one is lent.
"""

from __future__ import annotations

import math
import threading
import weakref

import torch
import torch.nn.functional as F
from segment_anything.modeling.image_encoder import (
    Attention,
    Block,
    ImageEncoderViT,
    get_rel_pos,
)

__all__ = [
    "AccelerationReport",  # noqa: F822  (lazy, from fast_accelerate)
    "AcceleratedImageEncoderViT",  # noqa: F822  (lazy, from fast_accelerate)
    "accelerate",  # noqa: F822  (lazy, from fast_accelerate)
    "deaccelerate",  # noqa: F822  (lazy, from fast_accelerate)
    "is_accelerated",  # noqa: F822  (lazy, from fast_accelerate)
    "fast_encoder_forward",
    "convert_linear_weights",
    "encoder_precision",  # noqa: F822  (lazy, from fast_accelerate)
    "run_encoder",  # noqa: F822  (lazy, from fast_accelerate)
    "compile_cache_dir",  # noqa: F822  (lazy, from fast_accelerate)
    "MASK_BUDGET_BYTES",
    "QUERY_CHUNK",
    "MLP_CHUNK_TOKENS",
]

#: Bytes of additive attention mask materialised at once (per kernel call).
MASK_BUDGET_BYTES = 256 * 1024 * 1024
#: Target number of queries per attention kernel call in global-attention blocks.
QUERY_CHUNK = 1024
#: Tokens per MLP chunk (eager mode).
MLP_CHUNK_TOKENS = 4096

_PRECISIONS = ("fp32", "bf16", "auto")


# ----------------------------------------------------------------------------- helpers
def _compiling() -> bool:
    try:
        return bool(torch.compiler.is_compiling())
    except Exception:  # pragma: no cover - very old torch
        return False


# Relative-position tables per Attention layer: {(which, size, device, dtype): (key, table)}.
_REL_CACHE: "weakref.WeakKeyDictionary[Attention, dict]" = weakref.WeakKeyDictionary()
_REL_LOCK = threading.Lock()


def _rel_table(attn: Attention, which: str, size: int, dtype: torch.dtype) -> torch.Tensor:
    """``get_rel_pos(size, size, attn.rel_pos_<which>)``, cached while the parameter is unchanged."""
    param = attn.rel_pos_h if which == "h" else attn.rel_pos_w
    if _compiling():
        return get_rel_pos(size, size, param).to(dtype)
    # The version counter changes on every in-place update (load_state_dict, copy_, ...);
    # data_ptr catches a replaced .data.
    key = (param._version, param.data_ptr(), tuple(param.shape))
    slot = (which, size, param.device, dtype)
    with _REL_LOCK:
        entries = _REL_CACHE.setdefault(attn, {})
        hit = entries.get(slot)
    if hit is not None and hit[0] == key:
        return hit[1]
    with torch.no_grad():
        table = get_rel_pos(size, size, param.detach()).to(dtype).contiguous()
    with _REL_LOCK:
        _REL_CACHE.setdefault(attn, {})[slot] = (key, table)
    return table


def _rel_terms(attn: Attention, q: torch.Tensor, hw: tuple[int, int]):
    """``rel_h`` (B, nh, H, W, H) and ``rel_w`` (B, nh, H, W, W) of ``add_decomposed_rel_pos``."""
    B, nh, N, hd = q.shape
    Hq, Wq = hw
    Rh = _rel_table(attn, "h", Hq, q.dtype)
    Rw = _rel_table(attn, "w", Wq, q.dtype)
    r_q = q.reshape(B * nh, Hq, Wq, hd)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh).view(B, nh, Hq, Wq, Hq)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw).view(B, nh, Hq, Wq, Wq)
    return rel_h, rel_w


def _attention(attn: Attention, q, k, v, hw: tuple[int, int]) -> torch.Tensor:
    """Multi-head attention with SAM's relative-position bias; q, k, v: (B, nh, N, hd).

    Returns ``(B, N, nh * hd)`` contiguous, the layout of the reference before ``proj``.
    """
    B, nh, N, hd = q.shape
    scale = attn.scale
    if not attn.use_rel_pos:
        o = F.scaled_dot_product_attention(q, k, v, scale=scale)
        return o.transpose(1, 2).reshape(B, N, nh * hd)
    Hq, Wq = hw
    rel_h, rel_w = _rel_terms(attn, q, hw)
    esz = q.element_size()
    row_bytes = Wq * N * esz  # mask bytes of one query row of one head
    rows = min(Hq, max(1, math.ceil(QUERY_CHUNK / Wq)), max(1, MASK_BUDGET_BYTES // row_bytes))
    heads = min(nh, max(1, MASK_BUDGET_BYTES // (rows * row_bytes)))
    batch = min(B, max(1, MASK_BUDGET_BYTES // (nh * rows * row_bytes))) if heads == nh else 1

    if _compiling():
        # Functional version for torch.compile (no out= buffers).
        outs = []
        for h0 in range(0, Hq, rows):
            h1 = min(Hq, h0 + rows)
            m = rel_h[:, :, h0:h1, :, :, None] + rel_w[:, :, h0:h1, :, None, :]
            outs.append(
                F.scaled_dot_product_attention(
                    q[:, :, h0 * Wq : h1 * Wq],
                    k,
                    v,
                    attn_mask=m.reshape(B, nh, (h1 - h0) * Wq, N),
                    scale=scale,
                )
            )
        o = outs[0] if len(outs) == 1 else torch.cat(outs, dim=2)
        return o.transpose(1, 2).reshape(B, N, nh * hd)

    out = torch.empty((B, N, nh, hd), dtype=q.dtype, device=q.device)
    buf = torch.empty((batch, heads, rows, Wq, Hq, Wq), dtype=q.dtype, device=q.device)
    for b0 in range(0, B, batch):
        b1 = min(B, b0 + batch)
        for g0 in range(0, nh, heads):
            g1 = min(nh, g0 + heads)
            for h0 in range(0, Hq, rows):
                h1 = min(Hq, h0 + rows)
                m = buf[: b1 - b0, : g1 - g0, : h1 - h0]
                torch.add(
                    rel_h[b0:b1, g0:g1, h0:h1, :, :, None],
                    rel_w[b0:b1, g0:g1, h0:h1, :, None, :],
                    out=m,
                )
                n0, n1 = h0 * Wq, h1 * Wq
                o = F.scaled_dot_product_attention(
                    q[b0:b1, g0:g1, n0:n1],
                    k[b0:b1, g0:g1],
                    v[b0:b1, g0:g1],
                    attn_mask=m.view(b1 - b0, g1 - g0, n1 - n0, N),
                    scale=scale,
                )
                out[b0:b1, n0:n1, g0:g1].copy_(o.transpose(1, 2))
    return out.view(B, N, nh * hd)


def _lin(mod: torch.nn.Linear, y: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """``mod(y)`` computed in ``dtype`` (None: the weight's own dtype).

    Weights of another dtype are converted for this call only (one layer at a time, so the
    transient copy is one layer's weights); ``y`` is converted to the compute dtype.
    """
    w, b = mod.weight, mod.bias
    if dtype is None:
        dtype = w.dtype
    if w.dtype != dtype:
        w = w.to(dtype)
        b = b.to(dtype) if b is not None else None
    if y.dtype != dtype:
        y = y.to(dtype)
    return F.linear(y, w, b)


def _attn_dtype(x: torch.Tensor, dtype: torch.dtype | None) -> torch.dtype:
    """The dtype attention runs in: the compute dtype, except bf16 on a CPU stays fp32.

    Measured on the project's AVX-512 BF16 CPU (no AMX, torch 2.14): the fused CPU attention
    kernel is 2-3x slower in bf16 than in fp32 (global block of vit_b: 2.2 s vs 0.8 s under
    load), while bf16 matrix products are ~2x faster. So on CPUs only the linear layers use
    bf16; softmax statistics and the relative-position bias are fp32 there anyway.
    """
    if dtype is None or dtype == torch.float32:
        return x.dtype
    return torch.float32 if x.device.type == "cpu" else dtype


def _to(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t if t.dtype == dtype else t.to(dtype)


def _fast_block(blk: Block, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """segment_anything ``Block.forward`` (with its ``Attention``), computed faster.

    ``dtype``: the linear layers' compute dtype (None: their weights' dtype). The residual
    stream keeps ``x``'s dtype and layer norms run on it (fp32 for an fp32 input).
    """
    attn: Attention = blk.attn
    B, H, W, C = x.shape
    nh = attn.num_heads
    ws = blk.window_size
    compiling = _compiling()
    adt = _attn_dtype(x, dtype)

    hd = C // nh
    if ws > 0:
        # As the reference: pad the normalised tokens, project, partition into windows (one
        # copy, straight into the (3, windows, heads, tokens, head_dim) layout).
        y = blk.norm1(x)
        if dtype is not None:
            y = _to(y, dtype)
        pad_h, pad_w = (ws - H % ws) % ws, (ws - W % ws) % ws
        if pad_h or pad_w:
            y = F.pad(y, (0, 0, 0, pad_w, 0, pad_h))
        Hp, Wp = H + pad_h, W + pad_w
        nwh, nww = Hp // ws, Wp // ws
        qkv = _lin(attn.qkv, y, dtype)
        view = qkv.view(B, nwh, ws, nww, ws, 3, nh, hd).permute(5, 0, 1, 3, 6, 2, 4, 7)
        if compiling:
            win = view.reshape(3, B * nwh * nww, nh, ws * ws, hd).to(adt)
        else:  # copy and convert in one pass
            win = torch.empty((3, B, nwh, nww, nh, ws, ws, hd), dtype=adt, device=x.device)
            win.copy_(view)
            win = win.view(3, B * nwh * nww, nh, ws * ws, hd)
        q, k, v = win.unbind(0)
        o = _attention(attn, q, k, v, (ws, ws))  # (B * nWin, ws*ws, C)
        o = _lin(attn.proj, o, dtype)
        o = o.view(B, nwh, nww, ws, ws, C).permute(0, 1, 3, 2, 4, 5).reshape(B, Hp, Wp, C)
        x = x + o[:, :H, :W]  # un-partition, crop and residual in one pass
    else:
        qkv = _lin(attn.qkv, blk.norm1(x), dtype)  # (B, H, W, 3C)
        qkv = _to(qkv, adt)
        # q, k, v are strided views; the attention kernel reads them in place.
        q, k, v = qkv.view(B, H * W, 3, nh, hd).permute(2, 0, 3, 1, 4).unbind(0)
        o = _attention(attn, q, k, v, (H, W)).view(B, H, W, C)
        o = _lin(attn.proj, o, dtype)
        x = o + x if compiling or o.dtype != x.dtype else _add_(o, x)
    return _mlp(blk, x, dtype)


def _mlp(blk: Block, x: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x + mlp(norm2(x))``, in token chunks of MLP_CHUNK_TOKENS (eager)."""
    B, H, W, C = x.shape
    mlp = blk.mlp

    def f(t: torch.Tensor) -> torch.Tensor:
        y = blk.norm2(t)
        if dtype is not None:
            y = _to(y, dtype)
        return _lin(mlp.lin2, mlp.act(_lin(mlp.lin1, y, dtype)), dtype)

    if _compiling():
        return x + f(x)
    if x.numel() // C <= MLP_CHUNK_TOKENS:
        h = f(x)
        return _add_(h, x) if h.dtype == x.dtype else x + h
    flat = x.reshape(-1, C)
    out = torch.empty_like(flat)
    n = flat.shape[0]
    for t0 in range(0, n, MLP_CHUNK_TOKENS):
        t1 = min(n, t0 + MLP_CHUNK_TOKENS)
        xc = flat[t0:t1]
        torch.add(xc, f(xc), out=out[t0:t1])
    return out.view(B, H, W, C)


def _add_(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``b + a`` reusing the fresh temporary ``a`` (``a + b == b + a`` exactly in IEEE)."""
    if a.dtype != b.dtype:  # e.g. under autocast: keep type promotion as in the reference
        return b + a
    a += b
    return a


def _fast_ok(module: torch.nn.Module, cls: type) -> bool:
    """``module`` is exactly ``cls`` and no forward hook would be skipped by bypassing it."""
    glob = torch.nn.modules.module
    return type(module) is cls and not (
        module._forward_hooks
        or module._forward_pre_hooks
        or glob._global_forward_hooks
        or glob._global_forward_pre_hooks
    )


def fast_encoder_forward(
    encoder: ImageEncoderViT, x: torch.Tensor, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """The fast forward pass of a segment_anything ``ImageEncoderViT``, without patching it.

    Same result as ``ImageEncoderViT.forward(encoder, x)`` up to floating-point summation
    order when ``dtype`` is None and the weights are fp32. ``dtype=torch.bfloat16`` runs the
    transformer blocks' linear layers in bf16 (fp32 weights are converted layer by layer for
    the call; weights already in bf16, see :func:`convert_linear_weights`, are used as they
    are); the residual stream, layer norms, patch embedding and neck stay in ``x``'s dtype,
    and attention runs in fp32 on CPUs (see :func:`_attn_dtype`) and in bf16 on GPUs. The
    output has ``x``'s dtype.

    When gradients are needed (grad mode on and the input or a parameter requires grad) it
    runs segment_anything's own forward instead, as the fast path's reused buffers do not
    support autograd.
    """
    if torch.is_grad_enabled() and (
        x.requires_grad or any(p.requires_grad for p in encoder.parameters())
    ):
        if _has_converted_linears(encoder):
            raise RuntimeError(
                "this encoder's linear weights were converted to bf16 (precision='bf16'); "
                "the autograd (reference) forward needs fp32 weights: use torch.no_grad(), or "
                "load the model with precision='fp32'."
            )
        return ImageEncoderViT.forward(encoder, x)
    if dtype is None and _has_converted_linears(encoder):
        dtype = torch.bfloat16
    x = encoder.patch_embed(x)
    if encoder.pos_embed is not None:
        x = x + encoder.pos_embed
    for blk in encoder.blocks:
        if _fast_ok(blk, Block) and _fast_ok(blk.attn, Attention):
            x = _fast_block(blk, x, dtype)
        elif _has_converted_linears(blk):
            raise RuntimeError(
                f"block {type(blk).__name__} cannot run with bf16 linear weights (it has hooks "
                "or is not segment_anything's Block); load the model with precision='fp32'."
            )
        else:
            x = blk(x)
    return encoder.neck(x.permute(0, 3, 1, 2))


def _linears(module: torch.nn.Module) -> list[torch.nn.Linear]:
    return [m for m in module.modules() if isinstance(m, torch.nn.Linear)]


def _has_converted_linears(module: torch.nn.Module) -> bool:
    """Whether any linear layer of ``module`` holds low-precision (non-fp32) weights."""
    return any(m.weight.dtype in (torch.bfloat16, torch.float16) for m in _linears(module))


def convert_linear_weights(encoder: ImageEncoderViT, dtype: torch.dtype) -> int:
    """Convert the transformer blocks' linear weights and biases of ``encoder`` to ``dtype``, in place.

    Those layers hold ~95 % of an official encoder's parameters (vit_b: 85 of 89 M), so
    converting them to bf16 halves the encoder's memory. Each parameter is replaced by a new
    ``Parameter`` (same ``requires_grad``), one at a time, so the peak is the old weights plus
    one layer. Returns the number of bytes saved (negative when converting up).
    """
    saved = 0
    with torch.no_grad():
        for blk in encoder.blocks:
            for mod in _linears(blk):
                for name in ("weight", "bias"):
                    p = getattr(mod, name)
                    if p is None or p.dtype == dtype:
                        continue
                    new = torch.nn.Parameter(p.detach().to(dtype), requires_grad=p.requires_grad)
                    saved += p.numel() * (p.element_size() - new.element_size())
                    setattr(mod, name, new)
    return saved


# The encoder wrapper (accelerate & co.) lives in fast_accelerate, which imports this
# module's kernels; its names are re-exported here lazily, so importing either module first
# works and there is no import cycle.
_ACCELERATE_NAMES = frozenset(
    {
        "AcceleratedImageEncoderViT",
        "AccelerationReport",
        "_STATES",
        "_State",
        "_compiled_body",
        "_inductor_default_dir",
        "_resolve_compile",
        "accelerate",
        "compile_cache_dir",
        "deaccelerate",
        "encoder_precision",
        "is_accelerated",
        "run_encoder",
    }
)


def __getattr__(name: str):
    if name in _ACCELERATE_NAMES:
        from . import fast_accelerate

        return getattr(fast_accelerate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
