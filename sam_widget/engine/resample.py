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

    Args:
      low_res: ``(h, w)`` of the logits (``4 x`` the embedding grid).
      img_size: the model's square input side (1024 for the official models).
      input_size: ``(h, w)`` of the image after ``ResizeLongestSide``.
      original_size: ``(H, W)`` of the image (or crop) the masks are for.
    """

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
        self._ay = torch.from_numpy(ay.astype(np.float32))
        self._ax = torch.from_numpy(ax.astype(np.float32))
        # support of each image row / column: first and last low-res index with a weight
        self._y_lo, self._y_hi = _support(ay)
        self._x_lo, self._x_hi = _support(ax)

    def window(self, logits: torch.Tensor, threshold: float) -> tuple[tuple[int, int, int, int], torch.Tensor] | None:
        """Image-size logits over the smallest window holding every pixel ``> threshold``.

        ``logits``: ``(h, w)`` float32 on the CPU. Returns ``((y0, y1, x0, x1), F)`` with
        ``F`` the ``(y1 - y0, x1 - x0)`` logits of those pixels, or ``None`` when no pixel
        can exceed ``threshold``. Pixels outside the window are ``<= threshold``.
        """
        hot = logits > threshold
        rows = torch.nonzero(hot.any(1)).flatten()
        if rows.numel() == 0:
            return None
        cols = torch.nonzero(hot.any(0)).flatten()
        ys = _span(self._y_lo, self._y_hi, int(rows[0]), int(rows[-1]))
        xs = _span(self._x_lo, self._x_hi, int(cols[0]), int(cols[-1]))
        if ys is None or xs is None:  # only logits no image pixel is made of (padding)
            return None
        (y0, y1, r0, r1), (x0, x1, c0, c1) = ys, xs
        ay = self._ay[y0:y1, r0:r1]
        ax = self._ax[x0:x1, c0:c1]
        sub = logits[r0:r1, c0:c1]
        nr, nc, hy, wx = r1 - r0, c1 - c0, y1 - y0, x1 - x0
        if hy * nr * nc + hy * nc * wx <= nr * nc * wx + hy * nr * wx:
            values = torch.mm(torch.mm(ay, sub), ax.t())
        else:
            values = torch.mm(ay, torch.mm(sub, ax.t()))
        return (y0, y1, x0, x1), values

    def stats(self, logits: torch.Tensor, thresholds: tuple[float, ...], mask_threshold: float) -> WindowStats:
        """Pixel counts above each of ``thresholds`` and the box of ``> mask_threshold``.

        ``thresholds`` must include ``mask_threshold`` or lower values only if the box is to
        be exact: the window is taken for ``min(thresholds + (mask_threshold,))``.
        """
        lowest = min(min(thresholds), mask_threshold)
        got = self.window(logits, lowest)
        if got is None:
            return WindowStats(tuple(0 for _ in thresholds), (0, 0, 0, 0))
        (y0, _, x0, _), values = got
        counts = tuple(int((values > t).sum()) for t in thresholds)
        inside = values > mask_threshold
        rows = torch.nonzero(inside.any(1)).flatten()
        if rows.numel() == 0:
            return WindowStats(counts, (0, 0, 0, 0))
        cols = torch.nonzero(inside.any(0)).flatten()
        box = (x0 + int(cols[0]), y0 + int(rows[0]), x0 + int(cols[-1]), y0 + int(rows[-1]))
        return WindowStats(counts, box)

    def mask(self, logits: torch.Tensor, threshold: float) -> np.ndarray:
        """The image-size ``(H, W)`` bool mask ``F > threshold``."""
        out = np.zeros(self.original_size, dtype=bool)
        got = self.window(logits, threshold)
        if got is not None:
            (y0, y1, x0, x1), values = got
            out[y0:y1, x0:x1] = (values > threshold).numpy()
        return out


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
