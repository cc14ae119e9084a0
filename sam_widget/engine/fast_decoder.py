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

import math
import threading
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

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


# ------------------------------------------------------------------------------ weights
def _heads(x: Tensor, nh: int) -> Tensor:
    """``(HW, nh*dh) -> (nh, HW, dh)`` contiguous."""
    hw, ci = x.shape
    return x.view(hw, nh, ci // nh).transpose(0, 1).contiguous()


class _Attn:
    """One segment_anything ``Attention``: weight views and the fast attention variants.

    Image-side tensors are pixel-major ``(HW, C)``; per-head image tensors ``(nh, HW, dh)``.
    """

    def __init__(self, attn: torch.nn.Module, pe: Optional[Tensor], image_side: str) -> None:
        self.nh = nh = int(attn.num_heads)
        self.ci = int(attn.internal_dim)
        self.c = c = int(attn.embedding_dim)
        self.dh = dh = self.ci // nh
        self.scale = 1.0 / math.sqrt(dh)
        self.wq, self.bq = attn.q_proj.weight.detach(), attn.q_proj.bias.detach()
        self.wk, self.bk = attn.k_proj.weight.detach(), attn.k_proj.bias.detach()
        self.wv, self.bv = attn.v_proj.weight.detach(), attn.v_proj.bias.detach()
        self.wo, self.bo = attn.out_proj.weight.detach(), attn.out_proj.bias.detach()
        self.wq_h = self.wq.view(nh, dh, c)  # per-head views, no copies
        self.wk_h = self.wk.view(nh, dh, c)
        self.wv_h = self.wv.view(nh, dh, c)
        self.wo_h = self.wo.t().reshape(nh, dh, c).contiguous()  # Wo[:, head]^T
        self.bo_n = (self.bo / nh).contiguous()
        # projection of the image PE (with bias) by the image side's q or k projection
        self.pe_h: Optional[Tensor] = None
        if pe is not None and image_side == "k":
            self.pe_h = _heads(F.linear(pe, self.wk, self.bk), nh)
        elif pe is not None and image_side == "q":
            self.pe_h = _heads(F.linear(pe, self.wq, self.bq), nh)
        self.pe_img = self.pe_h  # pe_h in the image side's dtype (see _Weights)

    def _pe(self, dtype: torch.dtype) -> Tensor:
        """The projected image PE in ``dtype`` (kept in the model's and the image side's dtype)."""
        if self.pe_img.dtype == dtype:
            return self.pe_img
        return self.pe_h if self.pe_h.dtype == dtype else self.pe_h.to(dtype)

    def foldable(self, T: int) -> bool:
        return T * self.nh <= self.ci

    def _split(self, x: Tensor) -> Tensor:  # (T, Ci) -> (nh, T, dh)
        return x.view(x.shape[0], self.nh, self.dh).transpose(0, 1)

    def _merge_out(self, o: Tensor) -> Tensor:  # (nh, T, dh) -> out_proj -> (T, C)
        return F.linear(o.transpose(0, 1).reshape(o.shape[1], self.ci), self.wo, self.bo)

    # -------------------------------------------------------------- tokens <-> tokens
    def self_attn(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """``Attention.forward`` for a handful of tokens ``(T, C)``."""
        qh = self._split(F.linear(q, self.wq, self.bq))
        kh = self._split(F.linear(k, self.wk, self.bk))
        vh = self._split(F.linear(v, self.wv, self.bv))
        a = torch.softmax(torch.bmm(qh, kh.transpose(1, 2)) * self.scale, dim=-1)
        return self._merge_out(torch.bmm(a, vh))

    # -------------------------------------------------------------- tokens -> image
    def _scaled_q(self, q: Tensor) -> Tensor:
        return self._split(F.linear(q, self.wq, self.bq) * self.scale)

    def t2i(self, q: Tensor, keys: Tensor) -> Tensor:
        """Tokens ``q (T, C)`` attend to the image, ``k = keys + pe``, ``v = keys``; folded.

        ``keys`` may be in a lower precision than the tokens (bf16): the two image-sized
        products then run in that dtype, the softmax in the tokens' dtype.
        """
        T, nh, dt = q.shape[0], self.nh, keys.dtype
        qh = self._scaled_q(q)  # (nh, T, dh)
        mk = torch.bmm(qh, self.wk_h).reshape(nh * T, self.c)  # (nh*T, C)
        s = torch.mm(mk.to(dt), keys.t())  # (nh*T, HW): q_h Wk_h keys^T
        s.view(nh, T, -1).baddbmm_(qh.to(dt), self._pe(dt).transpose(1, 2))  # + q_h (Wk_h pe^T + bk_h)
        a = torch.softmax(s, dim=-1, dtype=q.dtype)
        y = torch.mm(a.to(dt), keys).to(q.dtype).view(nh, T, self.c)  # softmax @ keys
        o = torch.baddbmm(self.bv.view(nh, 1, self.dh), y, self.wv_h.transpose(1, 2))
        return self._merge_out(o)

    def t2i_heads(self, q: Tensor, kh: Tensor, vh: Tensor) -> Tensor:
        """Tokens attend to per-head image keys / values ``(nh, HW, dh)``."""
        qh = self._scaled_q(q)
        a = torch.softmax(torch.bmm(qh, kh.transpose(1, 2)), dim=-1)  # (nh, T, HW)
        return self._merge_out(torch.bmm(a, vh))

    def t2i_full(self, q: Tensor, keys: Tensor) -> Tensor:
        """Standard projections (for many tokens), in the tokens' dtype."""
        keys = keys.to(q.dtype)
        kh = _heads(F.linear(keys, self.wk), self.nh).add_(self.pe_h)
        vh = _heads(F.linear(keys, self.wv, self.bv), self.nh)
        return self.t2i_heads(q, kh, vh)

    # -------------------------------------------------------------- first block
    def t2i_first(self, q: Tensor, k0: Tensor, v0: Tensor, lr: Optional[Tuple[Tensor, Tensor, Tensor]]) -> Tensor:
        """First block, tokens -> image ``src + U^T Wd`` with per-image heads of ``src``.

        ``lr``: ``None`` or ``(U (r, HW), Wd Wk^T per head (nh, dh, r), Wd Wv^T per head
        (nh, r, dh))`` for a rank-``r`` change of the image side (a mask input).
        """
        T, nh = q.shape[0], self.nh
        qh = self._scaled_q(q)
        s = torch.bmm(qh, k0.transpose(1, 2))  # (nh, T, HW)
        if lr is not None:
            u, wdk_h, wdv_h = lr
            s.view(nh * T, -1).addmm_(torch.bmm(qh, wdk_h).reshape(nh * T, -1), u)
        a = torch.softmax(s, dim=-1)
        o = torch.bmm(a, v0)  # (nh, T, dh)
        if lr is not None:
            au = torch.mm(a.view(nh * T, -1), u.t()).view(nh, T, -1)  # (nh, T, r)
            o.baddbmm_(au, wdv_h)
        return self._merge_out(o)

    def i2t_first(
        self, src0: Tensor, q0: Tensor, k: Tensor, v: Tensor, lr: Optional[Tuple[Tensor, Tensor, Tensor]]
    ) -> Tensor:
        """First block, ``x + attn(q = x + pe, k, v)`` for ``x = src0 + U^T Wd``.

        ``q0``: per-image ``q_proj(src0 + pe)`` heads; ``lr``: ``None`` or ``(U (r, HW),
        Wd (r, C), Wd Wq^T per head (nh, dh, r))``.
        """
        T, nh = k.shape[0], self.nh
        kh = self._split(F.linear(k, self.wk, self.bk) * self.scale)  # (nh, T, dh)
        s = torch.bmm(kh, q0.transpose(1, 2))  # (nh, T, HW)
        if lr is not None:
            u, wd, wdq_h = lr
            s.view(nh * T, -1).addmm_(torch.bmm(kh, wdq_h).reshape(nh * T, -1), u)
        a = torch.softmax(s, dim=1)
        vh = self._split(F.linear(v, self.wv, self.bv))
        if self.foldable(T):
            vals = torch.baddbmm(self.bo_n, vh, self.wo_h).reshape(nh * T, self.c)
            if lr is None:
                return torch.addmm(src0, a.view(nh * T, -1).t(), vals)
            # src0 + U^T Wd + A^T vals as one matmul
            return torch.addmm(src0, torch.cat([u, a.view(nh * T, -1)]).t(), torch.cat([wd, vals]))
        o = torch.bmm(a.transpose(1, 2), vh).transpose(0, 1).reshape(-1, self.ci)
        x = src0 if lr is None else torch.addmm(src0, u.t(), wd)
        return torch.addmm(x, o, self.wo.t()).add_(self.bo)

    # -------------------------------------------------------------- image -> tokens
    def i2t(self, keys: Tensor, k: Tensor, v: Tensor, inplace: bool = False) -> Tensor:
        """``keys + attn(q = keys + pe, k = k, v = v)`` (the image attends to the tokens).

        ``inplace``: the result may overwrite ``keys`` (a temporary of the caller). ``keys``
        may be in a lower precision than the tokens (bf16): the image-sized products and the
        result are then in that dtype, the softmax in the tokens' dtype.
        """
        T, nh, dt = k.shape[0], self.nh, keys.dtype
        kh = self._split(F.linear(k, self.wk, self.bk) * self.scale)  # (nh, T, dh)
        if self.foldable(T):
            mq = torch.bmm(kh, self.wq_h).reshape(nh * T, self.c)
            s = torch.mm(mq.to(dt), keys.t()).view(nh, T, -1)
            s.baddbmm_(kh.to(dt), self._pe(dt).transpose(1, 2))  # + k_h . (Wq_h pe + bq_h)
        else:
            qh = _heads(F.linear(keys.to(k.dtype), self.wq), nh).add_(self.pe_h)
            s = torch.bmm(kh, qh.transpose(1, 2))
        # (nh, T, HW) layout: the softmax over T is an inner-axis reduction, vectorised
        # over pixels (over a last axis of length T it is ~40x slower on CPU)
        a = torch.softmax(s, dim=1, dtype=k.dtype).to(dt)
        vh = self._split(F.linear(v, self.wv, self.bv))  # (nh, T, dh)
        if self.foldable(T):
            vals = torch.baddbmm(self.bo_n, vh, self.wo_h).reshape(nh * T, self.c).to(dt)
            if inplace:
                return keys.addmm_(a.view(nh * T, -1).t(), vals)
            return torch.addmm(keys, a.view(nh * T, -1).t(), vals)
        o = torch.bmm(a.transpose(1, 2), vh.to(dt))  # (nh, HW, dh)
        o = o.transpose(0, 1).reshape(-1, self.ci)
        wo_t = self.wo.t().to(dt)
        out = keys.addmm_(o, wo_t) if inplace else torch.addmm(keys, o, wo_t)
        return out.add_(self.bo.to(dt))


class _Weights:
    """Everything derived from the model's weights; rebuilt when they change.

    ``image_dtype``: the dtype of the image side after the first two-way block (keys, their
    products with the tokens, the output upscaling); None: the model's.
    """

    def __init__(self, sam: torch.nn.Module, image_dtype: Optional[torch.dtype] = None) -> None:
        pe_enc, dec = sam.prompt_encoder, sam.mask_decoder
        tr = dec.transformer
        self.c = int(dec.transformer_dim)
        self.grid = tuple(int(s) for s in pe_enc.image_embedding_size)
        self.num_mask_tokens = int(dec.num_mask_tokens)
        w0 = dec.iou_token.weight
        self.device, self.dtype = w0.device, w0.dtype
        self.tokens = torch.cat([dec.iou_token.weight, dec.mask_tokens.weight], dim=0).detach()
        self.no_mask = pe_enc.no_mask_embed.weight.detach().reshape(-1)
        with torch.no_grad():
            pe = pe_enc.get_dense_pe()[0].flatten(1).t().contiguous()  # (HW, C)
            self.layers = []
            for layer in tr.layers:
                self.layers.append(
                    dict(
                        skip_pe=bool(layer.skip_first_layer_pe),
                        self_attn=_Attn(layer.self_attn, None, ""),
                        t2i=_Attn(layer.cross_attn_token_to_image, pe, "k"),
                        i2t=_Attn(layer.cross_attn_image_to_token, pe, "q"),
                        norm1=layer.norm1,
                        norm2=layer.norm2,
                        norm3=layer.norm3,
                        norm4=layer.norm4,
                        lin1=(layer.mlp.lin1.weight.detach(), layer.mlp.lin1.bias.detach()),
                        lin2=(layer.mlp.lin2.weight.detach(), layer.mlp.lin2.bias.detach()),
                        act=layer.mlp.act,
                    )
                )
            self.final = _Attn(tr.final_attn_token_to_image, pe, "k")
        self.norm_final = tr.norm_final_attn
        self.attns = [L[n] for L in self.layers for n in ("t2i", "i2t")] + [self.final]
        # output upscaling: ConvT(C -> C/4) LN2d act ConvT(C/4 -> C/8) act, as matmuls
        # whose output columns are ordered (kh, kw, channel)
        up = dec.output_upscaling
        ct1, ln, act1, ct2, act2 = up[0], up[1], up[2], up[3], up[4]
        self.up = dict(
            w1=ct1.weight.detach().permute(0, 2, 3, 1).reshape(ct1.in_channels, -1).contiguous(),
            b1=ct1.bias.detach().repeat(4).contiguous(),
            c1=int(ct1.out_channels),
            ln_w=ln.weight.detach(),
            ln_b=ln.bias.detach(),
            ln_eps=float(ln.eps),
            act1=act1,
            w2=ct2.weight.detach().permute(0, 2, 3, 1).reshape(ct2.in_channels, -1).contiguous(),
            b2=ct2.bias.detach().repeat(4).contiguous(),
            c2=int(ct2.out_channels),
            act2=act2,
        )
        self.image_dtype = image_dtype if image_dtype is not None else self.dtype
        if self.image_dtype != self.dtype:  # converted once per model, not per prompt
            self.up = {k: (v.to(self.image_dtype) if isinstance(v, Tensor) else v) for k, v in self.up.items()}
            for a in self.attns:
                if a.pe_h is not None:
                    a.pe_img = a.pe_h.to(self.image_dtype)
        # hypernetwork MLPs stacked per layer: weights (ntok, in, out), biases (ntok, 1, out)
        mlps = dec.output_hypernetworks_mlps
        self.hyper = []
        for li in range(mlps[0].num_layers):
            w = torch.stack([m.layers[li].weight.detach() for m in mlps]).transpose(1, 2).contiguous()
            b = torch.stack([m.layers[li].bias.detach() for m in mlps]).unsqueeze(1).contiguous()
            self.hyper.append((w, b))
        self.hyper_sigmoid = bool(mlps[0].sigmoid_output)
        self.iou_head = dec.iou_prediction_head
        self.mask_embed = me = _mask_embed_weights(pe_enc)
        if me is not None:
            # with a mask input the image side is src0 + U^T wd, U = [h; 1] (the 1x1 conv's
            # input and a ones row) and wd = [W3^T; b3 - no_mask_embed]: project wd once
            wd = me["w3b"].clone()
            wd[-1] -= self.no_mask
            t2i, i2t = self.layers[0]["t2i"], self.layers[0]["i2t"]
            r = wd.shape[0]
            me["wd"] = wd
            me["wdk_h"] = (wd @ t2i.wk.t()).view(r, t2i.nh, t2i.dh).permute(1, 2, 0).contiguous()
            me["wdv_h"] = (wd @ t2i.wv.t()).view(r, t2i.nh, t2i.dh).transpose(0, 1).contiguous()
            me["wdq_h"] = (wd @ i2t.wq.t()).view(r, i2t.nh, i2t.dh).permute(1, 2, 0).contiguous()


def _mask_embed_weights(pe_enc: torch.nn.Module) -> Optional[dict]:
    """``mask_downscaling`` re-laid-out as matmuls, or None if it has another structure."""
    md = getattr(pe_enc, "mask_downscaling", None)
    try:
        c1, n1, a1, c2, n2, a2, c3 = list(md)
    except (TypeError, ValueError):
        return None
    convs_ok = all(
        isinstance(c, torch.nn.Conv2d) and c.bias is not None and c.groups == 1
        and tuple(c.padding) == (0, 0) and tuple(c.dilation) == (1, 1)
        for c in (c1, c2, c3)
    )
    if not (
        convs_ok
        and tuple(c1.kernel_size) == tuple(c1.stride) == (2, 2) and c1.in_channels == 1
        and tuple(c2.kernel_size) == tuple(c2.stride) == (2, 2)
        and tuple(c3.kernel_size) == tuple(c3.stride) == (1, 1)
        and all(type(n).__name__ == "LayerNorm2d" for n in (n1, n2))
    ):
        return None
    w3 = c3.weight.detach().reshape(c3.out_channels, c3.in_channels)
    return dict(
        w1=c1.weight.detach().reshape(c1.out_channels, 4),  # (out, [a, b])
        b1=c1.bias.detach().unsqueeze(1),
        n1=n1,
        a1=a1,
        w2=c2.weight.detach().reshape(c2.out_channels, 4 * c2.in_channels),  # (out, [in, c, d])
        b2=c2.bias.detach().unsqueeze(1),
        n2=n2,
        a2=a2,
        w3b=torch.cat([w3.t(), c3.bias.detach().unsqueeze(0)], dim=0).contiguous(),  # (in+1, C)
    )


def _ln_channels_first(norm: torch.nn.Module, x: Tensor) -> Tensor:
    """``LayerNorm2d`` of ``x (channels, pixels)``: normalise over dim 0 (a few channels:
    elementwise ops vectorised over pixels beat ``F.layer_norm`` over a last axis of 4)."""
    x = x - x.mean(0, keepdim=True)
    x = x * torch.rsqrt(x.square().mean(0, keepdim=True).add_(norm.eps))
    return torch.addcmul(norm.bias.unsqueeze(1), x, norm.weight.unsqueeze(1))


def _ln(norm: torch.nn.Module, x: Tensor) -> Tensor:
    """``nn.LayerNorm`` or ``LayerNorm2d`` over the last axis of ``x`` (in ``x``'s dtype)."""
    shape = getattr(norm, "normalized_shape", (x.shape[-1],))
    w, b = norm.weight, norm.bias
    if w.dtype != x.dtype:  # bf16 keys: statistics are accumulated in fp32 by the kernel
        w, b = w.to(x.dtype), b.to(x.dtype)
    return F.layer_norm(x, shape, w, b, norm.eps)


def _act(act: torch.nn.Module, x: Tensor) -> Tensor:
    """Apply an activation module, in place when it is a plain GELU / ReLU."""
    if type(act) is torch.nn.GELU:
        return torch.ops.aten.gelu_(x, approximate=act.approximate)
    if type(act) is torch.nn.ReLU:
        return x.relu_()
    return act(x)


_PAIR_DTYPES = {torch.float32: torch.int64, torch.float16: torch.int32, torch.bfloat16: torch.int32}


def _pixel_shuffle_2x2x2(m: Tensor, gh: int, gw: int) -> Tensor:
    """``(k, gh*gw*16)`` in order ``(y, x, kh1, kw1, kh2, kw2)`` -> ``(k, 4gh, 4gw)`` with
    row ``4y + 2kh1 + kh2`` and column ``4x + 2kw1 + kw2`` (two stacked 2x2 pixel shuffles).

    The innermost ``kw2`` pair is contiguous on both sides, so it is moved as one element of
    twice the width (an exact bit copy, ~10x faster than the 7-d permute on CPU).
    """
    k = m.shape[0]
    pair = _PAIR_DTYPES.get(m.dtype)
    if pair is None or not m.is_contiguous():
        return m.view(k, gh, gw, 2, 2, 2, 2).permute(0, 1, 3, 5, 2, 4, 6).reshape(k, 4 * gh, 4 * gw)
    mp = m.view(pair).view(k, gh, gw, 2, 2, 2)  # (k, y, x, kh1, kw1, kh2) of pairs
    out = mp.permute(0, 1, 3, 5, 2, 4).contiguous()  # (k, y, kh1, kh2, x, kw1)
    return out.view(m.dtype).view(k, 4 * gh, 4 * gw)


def _tracked_tensors(sam: torch.nn.Module) -> list:
    return [
        *sam.mask_decoder.parameters(),
        *sam.mask_decoder.buffers(),
        *sam.prompt_encoder.parameters(),
        *sam.prompt_encoder.buffers(),
    ]


def _signature(tensors: list) -> tuple:
    """Changes when any tensor is modified in place or gets new storage (``.to(...)``)."""
    return tuple((t.data_ptr(), t._version) for t in tensors)


# ------------------------------------------------------------------------------ state
@dataclass(eq=False)
class DecoderState:
    """Per-image, prompt-independent data made by :meth:`FastDecoder.prepare`.

    ``features`` is the image embedding it was made from (a reference, not a copy); the
    rest is derived: ``7 * h*w*C`` floats (14 MB for the official models). Treat it as
    opaque and read-only; it belongs to the :class:`FastDecoder` that made it. It can be
    kept with the embedding (it is rebuilt if the model's weights changed meanwhile), but
    :meth:`FastDecoder.prepare` is cheap enough (a few ms) to call on every image switch.
    """

    features: Tensor  # (1, C, h, w), as given
    feats: Tensor  # (HW, C) pixel-major features
    src0: Tensor  # (HW, C) features + no_mask_embed
    k0: Tensor  # (nh, HW, dh) first block, token->image k_proj(src0 + pe)
    v0: Tensor  # (nh, HW, dh) first block, token->image v_proj(src0)
    q0: Tensor  # (nh, HW, dh) first block, image->token q_proj(src0 + pe)
    signature: tuple = field(repr=False)
    owner: int = field(repr=False)
    refreshed: Optional["DecoderState"] = field(default=None, repr=False)  # after weight changes


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
                outs.append(self._decode_one(w, state, sparse_embeddings[b], src, multimask))
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
                outs.append(self._decode_one(w, state, sparse[b], src, multimask, u))
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
                    queries, keys = self._transformer_one(w, state, sparse_embeddings[b], None, None)
                    iou = w.iou_head(queries[0:1])[0]
                    tokens = torch.as_tensor(select(iou), dtype=torch.long, device=w.device).reshape(-1)
                    logits = self._masks_one(w, queries, keys, tokens) if tokens.numel() else None
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

    def _decode_one(
        self,
        w: _Weights,
        st: DecoderState,
        sparse: Tensor,
        src: Optional[Tensor],
        multimask: bool,
        u: Optional[Tensor] = None,
    ):
        """One prompt: ``sparse (N, C)``. The image side is ``src`` = features + dense
        ``(HW, C)`` if given, else ``src0 + u^T wd`` (a mask input) if ``u`` is given, else
        ``src0`` (no mask input)."""
        queries, keys = self._transformer_one(w, st, sparse, src, u)
        iou = w.iou_head(queries[0:1])[0]
        sel = slice(1, w.num_mask_tokens) if multimask else slice(0, 1)
        return self._masks_one(w, queries, keys, sel), iou[sel]

    def _transformer_one(
        self, w: _Weights, st: DecoderState, sparse: Tensor, src: Optional[Tensor], u: Optional[Tensor]
    ) -> Tuple[Tensor, Tensor]:
        """The two-way transformer for one prompt: ``(queries (T, C), keys (HW, C))``."""
        tokens = torch.cat([w.tokens, sparse], dim=0)  # (T, C)
        T = tokens.shape[0]
        fold = all(a.foldable(T) for a in w.attns)
        query_pe = tokens
        queries = tokens
        pre = src is None  # use the per-image precomputed first block
        keys = st.src0 if pre else src
        me = w.mask_embed
        lr_t2i = lr_i2t = None
        if u is not None:
            lr_t2i = (u, me["wdk_h"], me["wdv_h"])
            lr_i2t = (u, me["wd"], me["wdq_h"])
        for i, L in enumerate(w.layers):
            sa, t2i, i2t = L["self_attn"], L["t2i"], L["i2t"]
            if L["skip_pe"]:
                queries = _ln(L["norm1"], sa.self_attn(queries, queries, queries))
            else:
                q = queries + query_pe
                queries = _ln(L["norm1"], queries + sa.self_attn(q, q, queries))
            q = queries + query_pe
            if i == 0 and pre:
                attn_out = t2i.t2i_first(q, st.k0, st.v0, lr_t2i)
            elif fold:
                attn_out = t2i.t2i(q, keys)
            else:
                attn_out = t2i.t2i_full(q, keys)
            queries = _ln(L["norm2"], queries + attn_out)
            w1, b1 = L["lin1"]
            w2, b2 = L["lin2"]
            h = _act(L["act"], F.linear(queries, w1, b1))
            queries = _ln(L["norm3"], queries + F.linear(h, w2, b2))
            if i == 0 and pre:
                keys = i2t.i2t_first(st.src0, st.q0, queries + query_pe, queries, lr_i2t)
            else:  # keys is a temporary of ours here: overwrite it
                keys = i2t.i2t(keys, queries + query_pe, queries, inplace=True)
            keys = _ln(L["norm4"], keys)
            if i == 0:  # from here on the image side is in image_dtype (bf16 when asked)
                keys = keys.to(w.image_dtype)
        q = queries + query_pe
        attn_out = w.final.t2i(q, keys) if fold else w.final.t2i_full(q, keys)
        queries = _ln(w.norm_final, queries + attn_out)
        return queries, keys

    def _masks_one(self, w: _Weights, queries: Tensor, keys: Tensor, sel) -> Tensor:
        """Low-res logits ``(k, 4h, 4w)`` of the mask tokens ``sel`` (a slice or an index
        tensor into the ``num_mask_tokens`` mask tokens) of one decoded prompt."""
        x = queries[1 : 1 + w.num_mask_tokens][sel].unsqueeze(1)  # (k, 1, C)
        for li, (hw_, hb) in enumerate(w.hyper):
            x = torch.baddbmm(hb[sel], x, hw_[sel])
            if li < len(w.hyper) - 1:
                x = x.relu_()
        if w.hyper_sigmoid:
            x = torch.sigmoid(x)
        return self._upscale_and_mask(w, keys, x[:, 0, :])

    @staticmethod
    def _upscale_and_mask(w: _Weights, keys: Tensor, hyper_in: Tensor) -> Tensor:
        """``output_upscaling(keys)`` dotted with ``hyper_in (k, C/8)`` -> ``(k, 4h, 4w)``.

        Computed in ``w.image_dtype`` (the masks' logits are returned in the model's dtype).
        """
        up = w.up
        c1, c2 = up["c1"], up["c2"]
        keys, hyper_in = keys.to(w.image_dtype), hyper_in.to(w.image_dtype)  # no-ops when equal
        y = torch.addmm(up["b1"], keys, up["w1"])  # (HW, 4*c1): columns (kh1, kw1, c)
        y = _act(up["act1"], F.layer_norm(y.view(-1, c1), (c1,), up["ln_w"], up["ln_b"], up["ln_eps"]))
        z = torch.addmm(up["b2"], y, up["w2"])  # (HW*4, 4*c2): rows (y, x, kh1, kw1)
        z = _act(up["act2"], z).view(-1, c2)  # rows (y, x, kh1, kw1, kh2, kw2)
        m = torch.mm(hyper_in, z.t())  # (k, HW*16)
        return _pixel_shuffle_2x2x2(m, *w.grid).to(w.dtype)


# ------------------------------------------------------------------------------ helpers
def _check_multimask(multimask) -> bool:
    if isinstance(multimask, bool):
        return multimask
    if isinstance(multimask, np.bool_):
        return bool(multimask)
    raise TypeError(f"multimask must be True or False, not {multimask!r}.")


def _check_device(t: Tensor, w: _Weights, what: str) -> None:
    if t.device != w.device or t.dtype != w.dtype:
        raise ValueError(f"{what} are {t.dtype} on {t.device}; the model is {w.dtype} on {w.device}.")


def _check_sparse(sparse, w: _Weights) -> int:
    if not isinstance(sparse, Tensor):
        raise TypeError(f"sparse_embeddings must be a torch.Tensor, not {type(sparse).__name__}.")
    if sparse.dim() != 3 or sparse.shape[0] < 1 or sparse.shape[2] != w.c:
        raise ValueError(f"sparse_embeddings must have shape (B, N, {w.c}) with B >= 1, got {tuple(sparse.shape)}.")
    _check_device(sparse, w, "sparse_embeddings")
    return int(sparse.shape[0])


def _stack(outs):
    if len(outs) == 1:
        return outs[0][0].unsqueeze(0), outs[0][1].unsqueeze(0)
    return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])
