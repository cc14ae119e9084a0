"""Many prompts through :class:`~.fast_decoder.FastDecoder` at once (for "segment everything").

The same maths as :func:`.fast_decoder_one.transformer_one` / :func:`~.fast_decoder_one.masks_one` (the low-rank folded
attention, the per-image precompute of the first block), with a leading prompt axis: the
first block's token->image attention becomes one matmul per head over all ``B * T`` tokens
against the per-image keys, the other attentions batched matmuls, the upscaling one matmul
over ``B * h * w`` pixels. Per prompt this removes the Python and dispatch overhead of ~200
small operations (most of the time for small models) and gives the matmuls more rows.

Restricted to what "segment everything" needs: prompts without a mask input, the same
number of sparse tokens each, and a token count the folding supports (``n * T <= C / 2``,
true for a click with its padding point); :func:`supported` says whether it applies.
Results equal the per-prompt path up to floating-point summation order.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .fast_decoder_parts import DecoderState, _act, _Attn, _ln, _pixel_shuffle_2x2x2, _Weights

__all__ = ["supported", "transformer_batch", "masks_batch"]


def supported(w: _Weights, n_sparse: int) -> bool:
    T = w.tokens.shape[0] + n_sparse
    return all(a.foldable(T) for a in w.attns)


def _heads_b(a: _Attn, x: Tensor) -> Tensor:
    """``(B, T, Ci) -> (B, nh, T, dh)`` (a view)."""
    B, T, _ = x.shape
    return x.view(B, T, a.nh, a.dh).transpose(1, 2)


def _merge_b(a: _Attn, o: Tensor) -> Tensor:
    """``(B, nh, T, dh)`` -> out_proj -> ``(B, T, C)``."""
    B, _, T, _ = o.shape
    return F.linear(o.transpose(1, 2).reshape(B, T, a.ci), a.wo, a.bo)


def _self_attn(a: _Attn, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    qh = _heads_b(a, F.linear(q, a.wq, a.bq))
    kh = _heads_b(a, F.linear(k, a.wk, a.bk))
    vh = _heads_b(a, F.linear(v, a.wv, a.bv))
    att = torch.softmax(torch.matmul(qh, kh.transpose(-1, -2)) * a.scale, dim=-1)
    return _merge_b(a, torch.matmul(att, vh))


def _by_head(x: Tensor) -> Tensor:
    """``(B, nh, T, d) -> (nh, B * T, d)``."""
    B, nh, T, d = x.shape
    return x.transpose(0, 1).reshape(nh, B * T, d)


def _t2i_first(a: _Attn, q: Tensor, st: DecoderState) -> Tensor:
    """Tokens attend to the per-image heads ``k0, v0``: one matmul per head for all prompts."""
    B, T, _ = q.shape
    qh = _by_head(_heads_b(a, F.linear(q, a.wq, a.bq) * a.scale))  # (nh, B*T, dh)
    att = torch.softmax(torch.bmm(qh, st.k0.transpose(1, 2)), dim=-1)
    o = torch.bmm(att, st.v0)  # (nh, B*T, dh)
    return _merge_b(a, o.view(a.nh, B, T, a.dh).transpose(0, 1))


def _i2t_first(a: _Attn, st: DecoderState, k: Tensor, v: Tensor) -> Tensor:
    """``src0 + attn(q = src0 + pe, k, v)`` per prompt, ``(B, HW, C)``."""
    B, T, _ = k.shape
    nh = a.nh
    kh = _heads_b(a, F.linear(k, a.wk, a.bk) * a.scale)  # (B, nh, T, dh)
    s = torch.bmm(_by_head(kh), st.q0.transpose(1, 2)).view(nh, B, T, -1)
    att = torch.softmax(s, dim=2).transpose(0, 1).reshape(B, nh * T, -1)  # softmax over T
    vals = torch.matmul(_heads_b(a, F.linear(v, a.wv, a.bv)), a.wo_h).add_(a.bo_n).reshape(B, nh * T, a.c)
    return torch.baddbmm(st.src0.expand(B, -1, -1), att.transpose(1, 2), vals)


def _t2i(a: _Attn, q: Tensor, keys: Tensor) -> Tensor:
    """Tokens attend to each prompt's image ``keys (B, HW, C)``, folded."""
    B, T, _ = q.shape
    nh = a.nh
    qh = _heads_b(a, F.linear(q, a.wq, a.bq) * a.scale)  # (B, nh, T, dh)
    mk = torch.matmul(qh, a.wk_h).reshape(B, nh * T, a.c)
    s = torch.bmm(mk, keys.transpose(1, 2)).view(B, nh, T, -1)
    s += torch.bmm(_by_head(qh), a.pe_h.transpose(1, 2)).view(nh, B, T, -1).transpose(0, 1)
    att = torch.softmax(s, dim=-1).view(B, nh * T, -1)
    y = torch.bmm(att, keys).view(B, nh, T, a.c)
    o = torch.matmul(y, a.wv_h.transpose(1, 2)).add_(a.bv.view(nh, 1, a.dh))
    return _merge_b(a, o)


def _i2t_(a: _Attn, keys: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """``keys += attn(q = keys + pe, k, v)`` per prompt, in place, folded."""
    B, T, _ = k.shape
    nh = a.nh
    kh = _heads_b(a, F.linear(k, a.wk, a.bk) * a.scale)  # (B, nh, T, dh)
    mq = torch.matmul(kh, a.wq_h).reshape(B, nh * T, a.c)
    s = torch.bmm(mq, keys.transpose(1, 2)).view(B, nh, T, -1)
    s += torch.bmm(_by_head(kh), a.pe_h.transpose(1, 2)).view(nh, B, T, -1).transpose(0, 1)
    att = torch.softmax(s, dim=2).view(B, nh * T, -1)
    vals = torch.matmul(_heads_b(a, F.linear(v, a.wv, a.bv)), a.wo_h).add_(a.bo_n).reshape(B, nh * T, a.c)
    return keys.baddbmm_(att.transpose(1, 2), vals)


def transformer_batch(w: _Weights, st: DecoderState, sparse: Tensor) -> Tuple[Tensor, Tensor]:
    """The two-way transformer for ``B`` prompts without mask input.

    ``sparse``: ``(B, N, C)`` prompt-encoder output. Returns ``(queries (B, T, C),
    keys (B, HW, C))``.
    """
    B = sparse.shape[0]
    tokens = torch.cat([w.tokens.expand(B, -1, -1), sparse], dim=1)  # (B, T, C)
    query_pe = queries = tokens
    keys = None
    for i, L in enumerate(w.layers):
        sa, t2i, i2t = L["self_attn"], L["t2i"], L["i2t"]
        if L["skip_pe"]:
            queries = _ln(L["norm1"], _self_attn(sa, queries, queries, queries))
        else:
            q = queries + query_pe
            queries = _ln(L["norm1"], queries + _self_attn(sa, q, q, queries))
        q = queries + query_pe
        attn_out = _t2i_first(t2i, q, st) if i == 0 else _t2i(t2i, q, keys)
        queries = _ln(L["norm2"], queries + attn_out)
        w1, b1 = L["lin1"]
        w2, b2 = L["lin2"]
        h = _act(L["act"], F.linear(queries, w1, b1))
        queries = _ln(L["norm3"], queries + F.linear(h, w2, b2))
        if i == 0:
            keys = _i2t_first(i2t, st, queries + query_pe, queries)
        else:
            keys = _i2t_(i2t, keys, queries + query_pe, queries)
        keys = _ln(L["norm4"], keys)
    q = queries + query_pe
    queries = _ln(w.norm_final, queries + _t2i(w.final, q, keys))
    return queries, keys


def masks_batch(w: _Weights, queries: Tensor, keys: Tensor, tokens: Sequence[Tensor]) -> List[Tensor]:
    """Low-res logits ``(k_b, 4h, 4w)`` of the mask tokens ``tokens[b]`` of each prompt ``b``.

    ``queries (B, T, C)``, ``keys (B, HW, C)`` from :func:`transformer_batch`; every
    ``tokens[b]`` must be non-empty (indices into the ``num_mask_tokens`` mask tokens).
    """
    B, HW, C = keys.shape
    up = w.up
    c1, c2 = up["c1"], up["c2"]
    y = torch.addmm(up["b1"], keys.reshape(B * HW, C), up["w1"])  # (B*HW, 4*c1)
    y = _act(up["act1"], F.layer_norm(y.view(-1, c1), (c1,), up["ln_w"], up["ln_b"], up["ln_eps"]))
    z = torch.addmm(up["b2"], y.view(B * HW * 4, c1), up["w2"])
    z = _act(up["act2"], z).view(B, HW * 16, c2)
    # hypernetwork MLPs of every selected (prompt, token) pair at once
    rows = torch.cat([torch.full_like(t, b) for b, t in enumerate(tokens)])
    toks = torch.cat(list(tokens))
    x = queries[rows, 1 + toks].unsqueeze(1)  # (P, 1, C)
    for li, (hw_, hb) in enumerate(w.hyper):
        x = torch.baddbmm(hb[toks], x, hw_[toks])
        if li < len(w.hyper) - 1:
            x = x.relu_()
    if w.hyper_sigmoid:
        x = torch.sigmoid(x)
    x = x[:, 0, :]
    out, start = [], 0
    for b, t in enumerate(tokens):
        n = t.numel()
        out.append(_pixel_shuffle_2x2x2(torch.mm(x[start : start + n], z[b].t()), *w.grid))
        start += n
    return out
