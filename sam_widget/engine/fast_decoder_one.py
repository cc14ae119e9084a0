"""One prompt through :class:`~.fast_decoder.FastDecoder`: the two-way transformer with the
low-rank folded attention and the per-image precompute of the first block, the hypernetwork
and the output upscaling. ``w`` is the decoder's :class:`_Weights`, ``st`` its
:class:`DecoderState` for the image; every function returns tensors, shapes in the
docstrings (``C`` channels, ``T`` tokens, ``HW`` = h*w grid cells, ``k`` masks).
:mod:`.fast_decoder_batch` is the same maths with a leading prompt axis.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .fast_decoder_parts import DecoderState, _act, _ln, _pixel_shuffle_2x2x2, _Weights

__all__ = ["decode_one", "transformer_one", "masks_one", "upscale_and_mask"]


def decode_one(
    w: _Weights,
    st: DecoderState,
    sparse: Tensor,
    src: Optional[Tensor],
    multimask: bool,
    u: Optional[Tensor] = None,
) -> Tuple[Tensor, Tensor]:
    """One prompt: ``sparse (N, C)`` -> ``(low-res logits (k, 4h, 4w), predicted IoU (k,))``,
    ``k`` = 3 with ``multimask`` else 1. The image side is ``src`` = features + dense
    ``(HW, C)`` if given, else ``src0 + u^T wd`` (a mask input) if ``u`` is given, else
    ``src0`` (no mask input)."""
    queries, keys = transformer_one(w, st, sparse, src, u)
    iou = w.iou_head(queries[0:1])[0]
    sel = slice(1, w.num_mask_tokens) if multimask else slice(0, 1)
    return masks_one(w, queries, keys, sel), iou[sel]


def transformer_one(
    w: _Weights, st: DecoderState, sparse: Tensor, src: Optional[Tensor], u: Optional[Tensor]
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


def masks_one(w: _Weights, queries: Tensor, keys: Tensor, sel) -> Tensor:
    """Low-res logits ``(k, 4h, 4w)`` of the mask tokens ``sel`` (a slice or an index
    tensor into the ``num_mask_tokens`` mask tokens) of one decoded prompt."""
    x = queries[1 : 1 + w.num_mask_tokens][sel].unsqueeze(1)  # (k, 1, C)
    for li, (hw_, hb) in enumerate(w.hyper):
        x = torch.baddbmm(hb[sel], x, hw_[sel])
        if li < len(w.hyper) - 1:
            x = x.relu_()
    if w.hyper_sigmoid:
        x = torch.sigmoid(x)
    return upscale_and_mask(w, keys, x[:, 0, :])


def upscale_and_mask(w: _Weights, keys: Tensor, hyper_in: Tensor) -> Tensor:
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
