"""SAM's mask upscaling as two small matrices, evaluated only where a mask can be.

``Sam.postprocess_masks`` turns ``(h, w)`` low-resolution logits into image-size logits with
two bilinear resamplings (``align_corners=False``): up to ``img_size x img_size``, a crop to
the resized image's ``input_size``, then to the original ``(H, W)``. Bilinear resampling
is separable and linear, so the whole chain is ``F = Ay @ L @ Ax.T`` with ``Ay (H, h)`` and
``Ax (W, w)`` fixed per image size (:class:`Resampler`). Every row of ``Ay`` / ``Ax`` has a
few neighbouring non-zero, non-negative weights summing to 1, so a pixel of ``F`` can exceed
a threshold ``t`` only if one of the logits it is made of does: :meth:`Resampler.window`
evaluates ``F`` only over the rows and columns that can (the image-size pixels whose
support meets the low-res bounding box of ``L > t``), with two small matmuls.

For "segment everything" this gives, for each candidate mask, the stability score, the
area and the box of the image-size mask at a fraction of the cost of interpolating it
(no ``img_size x img_size`` intermediate, nothing outside the mask's window), and the
mask itself when asked. The values equal ``postprocess_masks``' up to floating-point
summation order (~1e-6 relative), so a pixel lying within that of a threshold may differ.

Coordinates: arrays are ``(rows, cols)``; windows are ``(y0, y1, x0, x1)`` with ``y1`` /
``x1`` exclusive, in image-size pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["bilinear_matrix", "Resampler", "WindowStats"]


def bilinear_matrix(in_len: int, out_len: int) -> np.ndarray:
    """``(out_len, in_len)`` float64 matrix of ``F.interpolate(mode="bilinear",
    align_corners=False)`` along one axis, with PyTorch's float32 index arithmetic
    (``src = max(0, scale * (dst + 0.5) - 0.5)``, ``scale = in / out``)."""
    if in_len < 1 or out_len < 1:
        raise ValueError(f"lengths must be positive, got in_len={in_len}, out_len={out_len}.")
    scale = np.float32(in_len) / np.float32(out_len)
    dst = np.arange(out_len, dtype=np.float32)
    src = np.maximum(scale * (dst + np.float32(0.5)) - np.float32(0.5), np.float32(0.0))
    i0 = src.astype(np.int64)
    lam1 = (src - i0.astype(np.float32)).astype(np.float64)
    i1 = np.where(i0 < in_len - 1, i0 + 1, i0)
    m = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.arange(out_len)
    np.add.at(m, (rows, i0), 1.0 - lam1)
    np.add.at(m, (rows, i1), lam1)
    return m


def _axis(low: int, img_size: int, input_len: int, out_len: int) -> np.ndarray:
    stage1 = bilinear_matrix(low, img_size)[:input_len]  # up to img_size, crop to the input
    return bilinear_matrix(input_len, out_len) @ stage1  # to the original length


@dataclass(frozen=True)
class WindowStats:
    """Counts of one mask over the image-size frame.

    ``counts[i]``: pixels with logit ``> thresholds[i]``; ``box``: ``(x0, y0, x1, y1)`` of
    the pixels ``> mask_threshold`` with *inclusive* ``x1, y1`` (segment_anything's
    ``batched_mask_to_box`` convention; ``(0, 0, 0, 0)`` for an empty mask).
    """

    counts: tuple[int, ...]
    box: tuple[int, int, int, int]


class Resampler:
    """``postprocess_masks`` for one geometry, as ``Ay @ L @ Ax.T`` evaluated in windows.

    ``Ay`` / ``Ax`` are banded (each image row / column is made of ``K <= 4`` neighbouring
    low-res rows / columns), so they are kept as ``K`` index and weight vectors and applied
    as ``K`` gathers and multiply-adds per axis: ``K * (h * w_win + H_win * W_win)`` work
    for a window instead of the two interpolations over the whole image.

    Args:
      low_res: ``(h, w)`` of the logits (``4 x`` the embedding grid).
      img_size: the model's square input side (1024 for the official models).
      input_size: ``(h, w)`` of the image after ``ResizeLongestSide``.
      original_size: ``(H, W)`` of the image (or crop) the masks are for.
    """

    _BLOCK = 16  # rows / columns evaluated at a time when looking for a box edge

    def __init__(
        self,
        low_res: tuple[int, int],
        img_size: int,
        input_size: tuple[int, int],
        original_size: tuple[int, int],
    ) -> None:
        self.low_res = (int(low_res[0]), int(low_res[1]))
        self.original_size = (int(original_size[0]), int(original_size[1]))
        ay = _axis(self.low_res[0], img_size, int(input_size[0]), self.original_size[0])
        ax = _axis(self.low_res[1], img_size, int(input_size[1]), self.original_size[1])
        # support of each image row / column: first and last low-res index with a weight
        self._y_lo, self._y_hi = _support(ay)
        self._x_lo, self._x_hi = _support(ax)
        self._iy, self._wy = _band(ay, self._y_lo, self._y_hi)
        self._ix, self._wx = _band(ax, self._x_lo, self._x_hi)

    # -------------------------------------------------------------- banded products
    def _rows(self, sub: torch.Tensor, r0: int, y0: int, y1: int) -> torch.Tensor:
        """``Ay[y0:y1] @ L`` for ``sub = L[r0:r1, :]`` (rows ``y0:y1`` must use only those)."""
        iy, wy = self._iy[y0:y1] - r0, self._wy[y0:y1]
        out = sub.index_select(0, iy[:, 0]) * wy[:, :1]
        for k in range(1, iy.shape[1]):
            out.addcmul_(sub.index_select(0, iy[:, k]), wy[:, k : k + 1])
        return out

    def _cols(self, sub: torch.Tensor, c0: int, x0: int, x1: int) -> torch.Tensor:
        """``L @ Ax[x0:x1].T`` for ``sub = L[:, c0:c1]``."""
        ix, wx = self._ix[x0:x1] - c0, self._wx[x0:x1]
        out = sub.index_select(1, ix[:, 0]) * wx[:, 0]
        for k in range(1, ix.shape[1]):
            out.addcmul_(sub.index_select(1, ix[:, k]), wx[:, k])
        return out

    def _span(self, logits: torch.Tensor, threshold: float):
        hot = logits > threshold
        rows = torch.nonzero(hot.any(1)).flatten()
        if rows.numel() == 0:
            return None
        cols = torch.nonzero(hot.any(0)).flatten()
        ys = _span(self._y_lo, self._y_hi, int(rows[0]), int(rows[-1]))
        xs = _span(self._x_lo, self._x_hi, int(cols[0]), int(cols[-1]))
        if ys is None or xs is None:  # only logits no image pixel is made of (padding)
            return None
        return ys, xs

    # -------------------------------------------------------------- public
    def window(self, logits: torch.Tensor, threshold: float) -> tuple[tuple[int, int, int, int], torch.Tensor] | None:
        """Image-size logits over the smallest window holding every pixel ``> threshold``.

        ``logits``: ``(h, w)`` float32 on the CPU. Returns ``((y0, y1, x0, x1), F)`` with
        ``F`` the ``(y1 - y0, x1 - x0)`` logits of those pixels, or ``None`` when no pixel
        can exceed ``threshold``. Pixels outside the window are ``<= threshold``.
        """
        span = self._span(logits, threshold)
        if span is None:
            return None
        (y0, y1, r0, r1), (x0, x1, c0, c1) = span
        rows = self._rows(logits[r0:r1, c0:c1], r0, y0, y1)
        return (y0, y1, x0, x1), self._cols(rows, c0, x0, x1)

    def box(self, logits: torch.Tensor, threshold: float) -> tuple[int, int, int, int] | None:
        """``(x0, y0, x1, y1)`` (inclusive ends) of the image-size pixels ``> threshold``,
        ``None`` if there are none, found by evaluating only the rows and columns near the
        box's edges (far cheaper than the window for large masks)."""
        span = self._span(logits, threshold)
        if span is None:
            return None
        (y0, y1, r0, r1), (x0, x1, c0, c1) = span
        sub = logits[r0:r1, c0:c1]
        by_rows = self._rows(sub, r0, y0, y1)  # (rows of the window, low-res columns)

        def row_hits(a: int, b: int) -> torch.Tensor:
            return (self._cols(by_rows[a - y0 : b - y0], c0, x0, x1) > threshold).any(1)

        top = _first(row_hits, y0, y1, self._BLOCK)
        if top is None:
            return None
        bottom = _last(row_hits, top, y1, self._BLOCK)
        by_cols = self._cols(sub, c0, x0, x1)  # (low-res rows, columns of the window)
        ya, yb = top, bottom + 1
        ra = int(self._y_lo[ya])
        part = by_cols[ra - r0 : int(self._y_hi[yb - 1]) + 1 - r0]

        def col_hits(a: int, b: int) -> torch.Tensor:
            return (self._rows(part[:, a - x0 : b - x0], ra, ya, yb) > threshold).any(0)

        left = _first(col_hits, x0, x1, self._BLOCK)
        right = _last(col_hits, left, x1, self._BLOCK)
        return (left, top, right, bottom)

    def stats(self, logits: torch.Tensor, thresholds: tuple[float, ...], mask_threshold: float) -> WindowStats:
        """Pixel counts above each of ``thresholds`` and the box of ``> mask_threshold``.

        The window is taken for the lowest of ``thresholds`` and ``mask_threshold``.
        """
        lowest = min(min(thresholds), mask_threshold)
        got = self.window(logits, lowest)
        if got is None:
            return WindowStats(tuple(0 for _ in thresholds), (0, 0, 0, 0))
        (y0, _, x0, _), values = got
        v = values.numpy()
        counts = tuple(int(np.count_nonzero(v > t)) for t in thresholds)
        inside = v > mask_threshold
        rows = np.flatnonzero(inside.any(1))
        if rows.size == 0:
            return WindowStats(counts, (0, 0, 0, 0))
        cols = np.flatnonzero(inside.any(0))
        box = (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]), y0 + int(rows[-1]))
        return WindowStats(counts, box)

    def counts(self, logits: torch.Tensor, thresholds: tuple[float, ...]) -> tuple[int, ...]:
        """Pixel counts above each of ``thresholds``."""
        got = self.window(logits, min(thresholds))
        if got is None:
            return tuple(0 for _ in thresholds)
        v = got[1].numpy()
        return tuple(int(np.count_nonzero(v > t)) for t in thresholds)

    def mask(self, logits: torch.Tensor, threshold: float) -> np.ndarray:
        """The image-size ``(H, W)`` bool mask ``F > threshold``."""
        out = np.zeros(self.original_size, dtype=bool)
        got = self.window(logits, threshold)
        if got is not None:
            (y0, y1, x0, x1), values = got
            out[y0:y1, x0:x1] = (values > threshold).numpy()
        return out


def _first(hits, a: int, b: int, block: int) -> int | None:
    """The first index in ``[a, b)`` where ``hits(lo, hi)`` (a bool vector over ``lo:hi``) is set."""
    for lo in range(a, b, block):
        h = hits(lo, min(lo + block, b))
        if bool(h.any()):
            return lo + int(torch.nonzero(h)[0])
    return None


def _last(hits, a: int, b: int, block: int) -> int:
    """The last index in ``[a, b)`` where ``hits`` is set (one is known to be, at ``a``)."""
    for hi in range(b, a, -block):
        h = hits(max(hi - block, a), hi)
        if bool(h.any()):
            return max(hi - block, a) + int(torch.nonzero(h)[-1])
    return a


def _band(m: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """``(out, K)`` indices and float32 weights of the non-zero band of each row of ``m``."""
    k = int((hi - lo).max()) + 1
    idx = lo[:, None] + np.arange(k)[None, :]
    past = idx > hi[:, None]
    idx[past] = np.broadcast_to(lo[:, None], idx.shape)[past]  # padding: own band, weight 0
    wts = np.take_along_axis(m, idx, axis=1)
    wts[past] = 0.0
    return torch.from_numpy(idx.astype(np.int64)), torch.from_numpy(wts.astype(np.float32))


def _support(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    nz = m > 0
    lo = np.argmax(nz, axis=1)
    hi = m.shape[1] - 1 - np.argmax(nz[:, ::-1], axis=1)
    return lo, hi


def _span(lo: np.ndarray, hi: np.ndarray, a: int, b: int) -> tuple[int, int, int, int] | None:
    """Image pixels whose support meets low-res ``[a, b]``, and the low-res range they use.

    Supports are monotone in the pixel index, so both are ranges: ``(p0, p1, l0, l1)``,
    ends exclusive; ``None`` if no pixel uses those low-res indices.
    """
    p0 = int(np.searchsorted(hi, a, side="left"))  # first pixel with hi >= a
    p1 = int(np.searchsorted(lo, b, side="right"))  # first pixel with lo > b
    if p1 <= p0:
        return None
    return p0, p1, int(lo[p0]), int(hi[p1 - 1]) + 1
