"""A faster SAM mask decoder: same weights, same maths, a fraction of the work per prompt.

Usage::

    dec = FastDecoder(sam)                  # reads sam.prompt_encoder / sam.mask_decoder
    state = dec.prepare(features)           # once per image (a few ms), prompt-independent
    # drop-in for sam.mask_decoder(features, sam.prompt_encoder.get_dense_pe(), ...):
    sparse, dense = sam.prompt_encoder(points=..., boxes=..., masks=...)
    low_res, iou = dec.decode(state, sparse, dense, multimask=True)
    # or prompt encoding included (faster with a mask input; same results):
    low_res, iou = dec.predict(state, points=(coords, labels), boxes=None, masks=None,
                               multimask=True)
    # many prompts, masks only for the tokens select(iou) picks ("segment everything"):
    for iou, tokens, low_res in dec.decode_selected(state, sparse, select): ...

``low_res`` is ``(B, k, 4h, 4w)`` mask logits and ``iou`` ``(B, k)`` predicted IoU, ``k`` = 3
if ``multimask`` else 1: exactly the shapes and meaning of ``MaskDecoder.forward``'s outputs.

``sam`` is neither modified nor copied. A few weight matrices are re-laid-out and the
image positional encoding is projected once per model (13 MB for the official models; a
:class:`DecoderState` is 14 MB). If the decoder / prompt-encoder weights are changed in place, or the model is
moved to another device or dtype, the derived data and any :class:`DecoderState` are rebuilt
automatically on the next call (tracked by the tensors' version counters and storage).

What is different from ``MaskDecoder.forward`` (same parameters, same dtype; only the
floating-point summation order changes):

* **Per model** (constructor): ``get_dense_pe()`` in a pixel-major ``(h*w, C)`` layout and
  its projections by every image-side attention projection (``k_proj(pe)`` of each
  token->image attention, ``q_proj(pe)`` of each image->token attention), per head. Since
  ``proj(keys + pe) = proj(keys) + proj(pe)`` (the bias kept with the ``pe`` part), the
  ``keys + pe`` sums are never formed.
* **Per image** (:meth:`FastDecoder.prepare`): ``src = features + no_mask_embed`` and the
  prompt-independent projections of the first two-way block, where the image side is
  still ``src``: the token->image attention's ``k_proj(src + pe)`` and ``v_proj(src)`` and
  the image->token attention's ``q_proj(src + pe)``. Every prompt without a mask input
  reuses them (a mask input changes ``src``; then the first block is computed per prompt).
* **Low-rank folding of the image-side projections.** With ``T`` tokens (5 output tokens +
  the sparse prompts: 7 for a click or a box) and ``n`` heads of ``d`` channels, every
  ``h*w x C x C/2`` projection of the image side is moved to the token side:

  - token->image: ``softmax(q_h k_h^T) v_h`` with ``k = X Wk^T + bk``, ``v = Y Wv^T + bv``
    is ``softmax((q_h Wk_h) X^T + q_h.k_pe) (Y Wv_h^T) + bv_h``
    ``= (softmax(..) Y) Wv_h^T + bv_h`` (softmax rows sum to 1);
  - image->token: ``scores = X (Wq_h^T k_h^T) + q_pe_h k_h^T`` and
    ``out_proj(attn @ v) = attn @ stack_h(v_h Wo_h^T + bo / n)``;

  so each costs ``h*w x C x n*T`` instead of ``h*w x C x C/2`` (3.7x fewer flops at
  ``T = 7``). Used while ``n * T <= C / 2`` (``T <= 16`` for the official models, i.e. up to
  11 sparse prompt tokens, e.g. 10 clicks); beyond it the standard projections are used.
* **Upscaling without ConvTranspose2d.** A ``ConvTranspose2d(k=2, s=2)`` is a per-pixel
  matmul followed by a pixel shuffle; both convolutions are done as matmuls in the
  pixel-major layout (``LayerNorm2d`` becomes ``F.layer_norm`` over the last axis), and the
  two pixel shuffles are applied once, to the final ``k x (4h*4w)`` logits only (moving the
  innermost contiguous float pairs as 8-byte elements).
* Only the hypernetwork MLPs of the returned masks run and only those masks are multiplied
  out (1 of 4 when ``multimask`` is False); activations are applied in place.
* **Mask inputs as a low-rank change** (:meth:`FastDecoder.predict` only): the dense
  embedding of a mask input is ``mask_downscaling``'s last 1x1 convolution of only
  ``mask_in_chans`` (16) channels, so ``features + dense = src0 + U^T Wd`` with ``U`` the
  17 x h*w convolution input (plus a ones row for the bias) and ``Wd`` fixed per model. The
  first block then keeps using the per-image projections of ``src0`` plus rank-17
  corrections (``Wd`` projected once per model), instead of re-projecting the whole image.
  The two 2x2/stride-2 convolutions before it run as matmuls on a space-to-depth view,
  channels first (their ``LayerNorm2d`` over 4 / 16 channels vectorised over pixels).
  :meth:`FastDecoder.decode` with an arbitrary ``dense_embeddings`` takes the general path.
* Batch 1 (``expand``, never ``repeat_interleave``); prompt batches ``B > 1`` are decoded
  one prompt at a time.

bf16 (``FastDecoder(sam, image_dtype=torch.bfloat16)``; the Segmenter's ``precision="bf16"``):
after the first two-way block the image side (the keys, their products with the tokens,
their residual updates and layer norms, the output upscaling) is kept in bf16; the tokens,
every softmax's statistics and the IoU head stay in the model's dtype, and the logits are
returned in it. Measured on the 2-core AVX-512 BF16 CPU (vit_b size, 1920x1080 image, 2
threads, best of 30 on one embedding): 21.5 -> 15.8 ms per click; masks agree with fp32 to
IoU 0.996-0.998 per candidate, scores to ~1e-4.

Numerics (random models, random features and prompts; ``tests/test_fast_decoder.py``):
logits differ from ``sam.mask_decoder``'s by ~1e-6 of their scale, IoU by ~1e-7, and
thresholded masks agree on >= 99.99 % of pixels (in practice all).

Timing: see :data:`PERFORMANCE`.

Devices: the code is device-agnostic (every tensor is created on the model's device; the
only host sync is the ``torch.equal`` that recognises a no-mask dense embedding passed to
:meth:`FastDecoder.decode`). It has only been run on CPU (no GPU was available).
"""

from __future__ import annotations

import threading
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .fast_decoder_one import decode_one, masks_one, transformer_one
from .fast_decoder_parts import (  # the helpers FastDecoder is built from (re-exported)
    _PAIR_DTYPES,  # noqa: F401
    DecoderState,
    _Attn,  # noqa: F401
    _Weights,
    _act,
    _check_device,
    _check_multimask,
    _check_sparse,
    _heads,
    _ln_channels_first,
    _mask_embed_weights,  # noqa: F401
    _signature,
    _stack,
    _tracked_tensors,
)

__all__ = ["FastDecoder", "DecoderState", "PERFORMANCE"]

_BATCH_ELEMENTS = 1 << 22  # decode_selected: prompts per chunk ~ this / (C * h * w) (4 for vit_b:
# larger chunks were no faster there, the image-side tensors then fall out of the caches)

PERFORMANCE = """
Measured on the project's 2-core AVX-512 CPU (shared with other jobs), vit_b-size decoder
(256 channels, 64x64 grid, random weights), prompt encoder included, medians of 30 shuffled
interleaved reps (/tmp/bench_decoder.py), wall ms:

                                1 thread                     2 threads
                          official  FastDecoder.predict  official  FastDecoder.predict
  1 point, multimask        114        26.5 (x4.3)          61        16.6 (x3.7)
  box, single mask          114        25.8 (x4.4)          63        16.4 (x3.9)
  3 points + mask_input     121        31.5 (x3.8)          65        19.6 (x3.3)
  prepare(), once per image             9.8                            6.4

(decode(), the drop-in taking the prompt encoder's outputs, is as fast without a mask input
and 40 ms with one.) With 2 threads the upper quartile was 0.6-1.3 s for both decoders
whenever another process held a core (OpenMP threads spinning on a descheduled sibling);
with 1 thread it stayed within +-2 ms of the median.

Matmul work per prompt (torch.utils.flop_counter): 1.6 GFLOP for a click, 1.85 for 3 points
+ a mask input (official: 3.6 / 3.7); prepare() 0.8 GFLOP once. torch.compile of the upscaling
gave no gain on this CPU (11.2 vs 10.5 ms) after a 7 s first call, so eager only.
"""


# ------------------------------------------------------------------------------ decoder
class FastDecoder:
    """Faster, numerically equivalent replacement for ``sam.mask_decoder`` at inference.

    Args:
      sam: a segment_anything ``Sam`` (only ``prompt_encoder`` and ``mask_decoder`` are
        used: segment_anything's classes or the same structure). Never modified.

    Methods: :meth:`prepare` (per image), :meth:`decode` (per prompt, drop-in for
    ``sam.mask_decoder``), :meth:`predict` (per prompt, prompt encoder included).
    All run under ``torch.no_grad()``; outputs are ordinary (non-inference) tensors.

    Thread safety: no per-call state is kept on the object, so several threads may call
    ``prepare`` / ``decode`` / ``predict`` concurrently.

    Weight changes: in-place changes of the decoder's / prompt encoder's parameters and
    buffers and ``sam.to(...)`` are detected on every call (~40 us). Replacing parameter
    objects or submodules is not: call :meth:`refresh` (or make a new FastDecoder) then.
    """

    def __init__(self, sam: torch.nn.Module, *, image_dtype: Optional[torch.dtype] = None) -> None:
        for attr in ("prompt_encoder", "mask_decoder"):
            if not isinstance(getattr(sam, attr, None), torch.nn.Module):
                raise TypeError(f"FastDecoder needs a segment_anything Sam, not {type(sam).__name__}.")
        if image_dtype not in (None, torch.float32, torch.bfloat16, torch.float16):
            raise ValueError(
                f"image_dtype must be None, torch.float32, torch.bfloat16 or torch.float16, not {image_dtype!r}."
            )
        self.image_dtype = image_dtype
        self.sam = sam
        self._lock = threading.Lock()
        self._w: Optional[Tuple[tuple, _Weights]] = None
        self.refresh()

    # -------------------------------------------------------------- weights bookkeeping
    def refresh(self) -> None:
        """Rebuild everything derived from the model (after replacing parameters or
        submodules; in-place changes are picked up automatically)."""
        with self._lock:
            self._tensors = _tracked_tensors(self.sam)
            self._w = (_signature(self._tensors), _Weights(self.sam, self.image_dtype))

    def _weights(self) -> Tuple[tuple, _Weights]:
        sig = _signature(self._tensors)
        cur = self._w
        if cur[0] != sig:
            with self._lock:
                cur = self._w
                if cur[0] != sig:
                    cur = self._w = (sig, _Weights(self.sam, self.image_dtype))
        return cur

    @property
    def device(self) -> torch.device:
        return self._weights()[1].device

    # -------------------------------------------------------------- per image
    def prepare(self, features: Tensor) -> DecoderState:
        """Precompute everything that does not depend on the prompt, for one image.

        ``features``: the image embedding ``(1, C, h, w)`` (or ``(C, h, w)``) from
        ``sam.image_encoder``, on the model's device and dtype. Raises ``TypeError`` /
        ``ValueError`` otherwise.
        """
        sig, w = self._weights()
        with torch.no_grad():
            return self._prepare(features, sig, w)

    def _prepare(self, features: Tensor, sig: tuple, w: _Weights) -> DecoderState:
        if not isinstance(features, Tensor):
            raise TypeError(f"features must be a torch.Tensor, not {type(features).__name__}.")
        shape = (w.c, *w.grid)
        if features.dim() == 3:
            features = features.unsqueeze(0)
        if tuple(features.shape) != (1, *shape):
            raise ValueError(
                f"features must have shape (1, {shape[0]}, {shape[1]}, {shape[2]}), "
                f"got {tuple(features.shape)}."
            )
        if features.device != w.device or features.dtype != w.dtype:
            raise ValueError(
                f"features are {features.dtype} on {features.device}; the model is "
                f"{w.dtype} on {w.device}."
            )
        features = features.detach()
        feats = features[0].flatten(1).t().contiguous()  # (HW, C)
        src0 = feats + w.no_mask
        t2i, i2t = w.layers[0]["t2i"], w.layers[0]["i2t"]
        k0 = _heads(F.linear(src0, t2i.wk), t2i.nh).add_(t2i.pe_h)
        v0 = _heads(F.linear(src0, t2i.wv, t2i.bv), t2i.nh)
        q0 = _heads(F.linear(src0, i2t.wq), i2t.nh).add_(i2t.pe_h)
        return DecoderState(features, feats, src0, k0, v0, q0, sig, id(self))

    # -------------------------------------------------------------- per prompt
    def decode(
        self,
        state: DecoderState,
        sparse_embeddings: Tensor,
        dense_embeddings: Optional[Tensor],
        multimask: bool,
    ) -> Tuple[Tensor, Tensor]:
        """Masks for one or more prompts on the prepared image (drop-in for the decoder).

        Args:
          state: from :meth:`prepare`.
          sparse_embeddings: ``(B, N, C)`` from ``sam.prompt_encoder`` (``N`` may be 0).
          dense_embeddings: ``(B, C, h, w)`` or ``(1, C, h, w)`` from ``sam.prompt_encoder``,
            or ``None`` for "no mask input". The prompt encoder's expanded ``no_mask_embed``
            is recognised and takes the same fast path as ``None``.
          multimask: ``True`` -> 3 masks (mask tokens 1..3), ``False`` -> 1 (token 0), as
            ``MaskDecoder.forward(multimask_output=...)``.

        Returns ``(low_res_logits (B, k, 4h, 4w), iou_predictions (B, k))``, ``k = 3 or 1``.
        Raises ``TypeError`` / ``ValueError`` for malformed arguments.
        """
        sig, w = self._weights()
        multimask = _check_multimask(multimask)
        state = self._check_state(state, sig, w)
        B = _check_sparse(sparse_embeddings, w)
        if dense_embeddings is not None:
            d = dense_embeddings
            if not isinstance(d, Tensor):
                raise TypeError(f"dense_embeddings must be a torch.Tensor or None, not {type(d).__name__}.")
            if d.dim() != 4 or tuple(d.shape[1:]) != (w.c, *w.grid) or d.shape[0] not in (1, B):
                raise ValueError(
                    f"dense_embeddings must have shape ({B} or 1, {w.c}, {w.grid[0]}, "
                    f"{w.grid[1]}), got {tuple(d.shape)}."
                )
            _check_device(d, w, "dense_embeddings")
        with torch.no_grad():
            outs = []
            for b in range(B):
                src = None
                if dense_embeddings is not None:
                    d = dense_embeddings[b if dense_embeddings.shape[0] > 1 else 0]
                    is_no_mask = (
                        d.stride(1) == 0 and d.stride(2) == 0 and torch.equal(d[:, 0, 0], w.no_mask)
                    )
                    if not is_no_mask:
                        src = torch.add(state.feats, d.flatten(1).t(), out=torch.empty_like(state.feats))
                outs.append(decode_one(w, state, sparse_embeddings[b], src, multimask))
            return _stack(outs)

    def predict(
        self,
        state: DecoderState,
        points: Optional[Tuple[Tensor, Tensor]] = None,
        boxes: Optional[Tensor] = None,
        masks: Optional[Tensor] = None,
        multimask: bool = True,
    ) -> Tuple[Tensor, Tensor]:
        """``sam.prompt_encoder(points, boxes, masks)`` + ``sam.mask_decoder``, faster.

        Arguments are those of ``PromptEncoder.forward``, already transformed to the
        model's input frame, batch first: ``points = (coords (B, N, 2) float, labels (B, N))``,
        ``boxes (B, 4)``, ``masks (B, 1, 4h, 4w)`` low-res logits. Returns what
        :meth:`decode` returns.
        """
        sig, w = self._weights()
        multimask = _check_multimask(multimask)
        state = self._check_state(state, sig, w)
        pe_enc = self.sam.prompt_encoder
        if masks is not None:
            if not isinstance(masks, Tensor):
                raise TypeError(f"masks must be a torch.Tensor or None, not {type(masks).__name__}.")
            mshape = (1, 4 * w.grid[0], 4 * w.grid[1])
            if masks.dim() != 4 or tuple(masks.shape[1:]) != mshape or masks.shape[0] < 1:
                raise ValueError(f"masks must have shape (B, {mshape[0]}, {mshape[1]}, {mshape[2]}), got {tuple(masks.shape)}.")
            _check_device(masks, w, "masks")
        with torch.no_grad():
            if points is None and boxes is None:
                nb = masks.shape[0] if masks is not None else 1
                sparse = torch.empty((nb, 0, w.c), dtype=w.dtype, device=w.device)
            else:
                sparse, _ = pe_enc(points=points, boxes=boxes, masks=None)
            B = _check_sparse(sparse, w)
            if masks is not None and masks.shape[0] not in (1, B):
                raise ValueError(f"masks has batch {masks.shape[0]}, the points / boxes have {B}.")
            outs = []
            for b in range(B):
                src = u = None
                if masks is not None:
                    kind, x = self._mask_lowrank(w, state, masks[b if masks.shape[0] > 1 else 0])
                    src, u = (x, None) if kind == "src" else (None, x)
                outs.append(decode_one(w, state, sparse[b], src, multimask, u))
            return _stack(outs)

    def decode_selected(
        self,
        state: DecoderState,
        sparse_embeddings: Tensor,
        select: Callable[[Tensor], Tensor],
    ) -> List[Tuple[Tensor, Tensor, Optional[Tensor]]]:
        """Decode prompts, but multiply out only the masks that ``select`` asks for.

        For "segment everything": the IoU head runs before the (costly) mask upscaling,
        so masks whose predicted IoU fails a filter are never computed, and a prompt none
        of whose masks pass skips the upscaling altogether. Prompts without a mask input.

        Args:
          state: from :meth:`prepare`.
          sparse_embeddings: ``(B, N, C)`` from ``sam.prompt_encoder``.
          select: called once per prompt with the IoU predictions of all
            ``num_mask_tokens`` mask tokens (``(4,)`` for SAM: token 0 is the single-mask
            output, tokens 1-3 the multimask outputs); returns the token indices to
            compute (a 1-d int64 tensor, possibly empty).

        Returns one ``(iou (num_mask_tokens,), tokens (k,), logits (k, 4h, 4w) or None)``
        per prompt; the logits equal :meth:`decode`'s for the same tokens up to
        floating-point summation order.
        """
        sig, w = self._weights()
        state = self._check_state(state, sig, w)
        B = _check_sparse(sparse_embeddings, w)
        out: List[Tuple[Tensor, Tensor, Optional[Tensor]]] = []
        with torch.no_grad():
            from . import fast_decoder_batch as fdb

            if not fdb.supported(w, sparse_embeddings.shape[1]):
                for b in range(B):
                    queries, keys = transformer_one(w, state, sparse_embeddings[b], None, None)
                    iou = w.iou_head(queries[0:1])[0]
                    tokens = torch.as_tensor(select(iou), dtype=torch.long, device=w.device).reshape(-1)
                    logits = masks_one(w, queries, keys, tokens) if tokens.numel() else None
                    out.append((iou, tokens, logits))
                return out
            # prompts in chunks of about _BATCH_ELEMENTS image-side values
            chunk = max(1, min(B, _BATCH_ELEMENTS // (w.c * w.grid[0] * w.grid[1])))
            for c0 in range(0, B, chunk):
                queries, keys = fdb.transformer_batch(w, state, sparse_embeddings[c0 : c0 + chunk])
                ious = w.iou_head(queries[:, 0])
                picks = [torch.as_tensor(select(i), dtype=torch.long, device=w.device).reshape(-1) for i in ious]
                chosen = [b for b, t in enumerate(picks) if t.numel()]
                masks = fdb.masks_batch(w, queries[chosen], keys[chosen], [picks[b] for b in chosen]) if chosen else []
                by_prompt = dict(zip(chosen, masks))
                out += [(ious[b], picks[b], by_prompt.get(b)) for b in range(len(picks))]
        return out

    # -------------------------------------------------------------- internals
    def _check_state(self, state, sig: tuple, w: _Weights) -> DecoderState:
        if not isinstance(state, DecoderState):
            raise TypeError(f"state must be a DecoderState from FastDecoder.prepare, not {type(state).__name__}.")
        if state.owner != id(self):
            raise ValueError("state was prepared by another FastDecoder.")
        if state.signature != sig:  # the weights changed since prepare: redo it (once)
            fresh = state.refreshed
            if fresh is None or fresh.signature != sig:
                with torch.no_grad():
                    fresh = self._prepare(state.features, sig, w)
                state.refreshed = fresh  # one atomic assignment: safe for concurrent readers
            return fresh
        return state

    def _mask_lowrank(self, w: _Weights, st: DecoderState, mask: Tensor):
        """Embed a mask input ``(1, 4h, 4w)``: returns ``("lr", U (r, HW))`` with
        ``features + dense = src0 + U^T wd``, or ``("src", features + dense (HW, C))`` if the
        prompt encoder's ``mask_downscaling`` has an unknown structure."""
        me = w.mask_embed
        if me is None:  # unknown structure: the prompt encoder's own code
            d = self.sam.prompt_encoder.mask_downscaling(mask.unsqueeze(0))[0]
            return "src", torch.add(st.feats, d.flatten(1).t(), out=torch.empty_like(st.feats))
        gh, gw = w.grid
        hw = gh * gw
        # space-to-depth: x[(a, b), (c, d, p, q)] = mask[4p + 2c + a, 4q + 2d + b], i.e. the
        # first conv's 2x2 kernel offsets (a, b) x the second conv's (c, d) x output pixel
        x = F.pixel_unshuffle(mask.unsqueeze(0), 4)[0]  # channel (2c + a) * 4 + (2d + b)
        x = x.reshape(2, 2, 2, 2, hw).permute(1, 3, 0, 2, 4).reshape(4, 4 * hw)
        h = torch.addmm(me["b1"], me["w1"], x)  # (c1, [c, d, p, q]), channels first
        h = _act(me["a1"], _ln_channels_first(me["n1"], h))
        h = torch.addmm(me["b2"], me["w2"], h.view(-1, hw))  # (c2, HW)
        h = _act(me["a2"], _ln_channels_first(me["n2"], h))
        return "lr", torch.cat([h, h.new_ones(1, hw)], dim=0)  # ones row: the bias row of wd
