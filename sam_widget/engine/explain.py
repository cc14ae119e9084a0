"""What the explain view needs from the model: stability scores and where the logits lie.

* :func:`candidate_stats` -- segment_anything's stability score of each candidate (the IoU
  of the mask thresholded at ``threshold + offset`` with the one at ``threshold - offset``,
  on the image-size logits), computed as :meth:`Segmenter.segment_everything` computes it:
  in exact mode with segment_anything's own ``postprocess_masks`` and
  ``calculate_stability_score`` (the official automatic mask generator's numbers), otherwise
  from the low-res logits with :class:`~.resample.Resampler` (equal up to pixels within ~1e-6
  of a threshold), and its area.
* :func:`logit_geometry` -- how image pixels map onto the low-resolution logits (the image
  is resized to the model's input side, so only the top-left part of the logits covers it).

Coordinates: image points ``(x, y)`` = (column, row) pixels; low-res coordinates are the
logits' ``(column, row)`` with pixel ``(0, 0)``'s centre at ``(0, 0)`` (matplotlib's
``imshow`` convention).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from segment_anything.utils.amg import calculate_stability_score
from segment_anything.utils.transforms import ResizeLongestSide

from .resample import Resampler

__all__ = ["LogitGeometry", "logit_geometry", "candidate_stats"]


@dataclass(frozen=True)
class LogitGeometry:
    """``low_res_hw``: ``(h, w)`` of the logits; ``valid_hw``: ``(rows, cols)`` of them that
    cover the image (float: the last row / column may be partly padding); ``image_hw``: the
    image's ``(H, W)``; ``input_hw``: the image's size after resizing to the model input
    (``img_size`` on its longest side)."""

    low_res_hw: tuple[int, int]
    valid_hw: tuple[float, float]
    image_hw: tuple[int, int]
    input_hw: tuple[int, int]
    img_size: int

    def to_low_res(self, x: float, y: float) -> tuple[float, float]:
        """Image pixel ``(x, y)`` -> low-res ``(column, row)`` (pixel centres at integers)."""
        H, W = self.image_hw
        sx = self.input_hw[1] / W * self.low_res_hw[1] / self.img_size
        sy = self.input_hw[0] / H * self.low_res_hw[0] / self.img_size
        return float(x) * sx - 0.5, float(y) * sy - 0.5


def logit_geometry(segmenter: Any, image_hw: tuple[int, int]) -> LogitGeometry:
    """The :class:`LogitGeometry` of ``segmenter``'s model for an image of ``image_hw = (H, W)``."""
    img_size = int(segmenter.sam.image_encoder.img_size)
    low = tuple(int(v) for v in segmenter.low_res_size)
    H, W = (int(v) for v in image_hw)
    input_hw = ResizeLongestSide.get_preprocess_shape(H, W, img_size)
    valid = (input_hw[0] * low[0] / img_size, input_hw[1] * low[1] / img_size)
    return LogitGeometry(low, valid, (H, W), (int(input_hw[0]), int(input_hw[1])), img_size)  # type: ignore[arg-type]


@lru_cache(maxsize=8)
def _resampler(low: tuple[int, int], img_size: int, input_hw: tuple[int, int], image_hw: tuple[int, int]) -> Resampler:
    return Resampler(low, img_size, input_hw, image_hw)


@torch.no_grad()
def candidate_stats(
    segmenter: Any, logits: np.ndarray, image_hw: tuple[int, int], threshold: float | None = None, offset: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(stability, area)`` of each of ``logits`` (``(C, h, w)`` low-res logits of an image of
    ``image_hw``): ``(C,)`` float32 stability scores at ``threshold`` (None: the model's
    ``mask_threshold``) and ``offset`` (SamAutomaticMaskGenerator's ``stability_score_offset``,
    1.0), NaN for a candidate with no pixel above ``threshold - offset``; ``(C,)`` int64 image
    pixels above ``threshold`` (the mask's area)."""
    sam = segmenter.sam
    t = float(sam.mask_threshold if threshold is None else threshold)
    lg = np.asarray(logits, np.float32)
    if lg.ndim == 2:
        lg = lg[None]
    geo = logit_geometry(segmenter, image_hw)
    if segmenter.exact:
        full = sam.postprocess_masks(torch.from_numpy(np.ascontiguousarray(lg))[None], geo.input_hw, geo.image_hw)[0]
        stab = calculate_stability_score(full, t, float(offset)).numpy().astype(np.float32)
        return stab, (full > t).flatten(1).sum(1).numpy().astype(np.int64)
    rs = _resampler(geo.low_res_hw, geo.img_size, geo.input_hw, geo.image_hw)
    stab, area = np.empty(len(lg), np.float32), np.empty(len(lg), np.int64)
    for i, one in enumerate(lg):
        inter, union, n = rs.counts(torch.from_numpy(np.ascontiguousarray(one)), (t + offset, t - offset, t))
        stab[i] = np.float32(inter) / np.float32(union) if union else np.float32("nan")
        area[i] = n
    return stab, area
