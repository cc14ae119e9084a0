"""``Prediction``, the answer to one prompt, and how its low-res logits become masks.

:class:`Prediction` is what :meth:`~sam_widget.engine.segmenter.Segmenter.predict` returns
(importable from :mod:`sam_widget.engine.segmenter` as before); ``_Upscaler`` resamples its
logits to masks exactly as ``Sam.postprocess_masks`` does.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import Sam

from .._checks import as_size

__all__ = ["Prediction"]


def _check_display_size(size: Any, what: str = "display_size") -> tuple[int, int] | None:
    """``size`` as ``(h, w)`` ints from 1 to 65536 (None kept), or ``TypeError`` / ``ValueError`` naming ``what``."""
    return None if size is None else as_size(size, what)


def _check_threshold(threshold: Any) -> float | None:
    """``threshold`` (a logit) as a float, None kept; ``TypeError`` / ``ValueError`` otherwise."""
    if threshold is None:
        return None
    if isinstance(threshold, (bool, np.bool_)) or not isinstance(threshold, (int, float, np.integer, np.floating)):
        raise TypeError(f"threshold must be a number (a logit, e.g. 0.0) or None, not {type(threshold).__name__}.")
    t = float(threshold)
    if not math.isfinite(t):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}.")
    return t


class Prediction:
    """The answer to one prompt: up to three candidate masks with their predicted IoU.

    Attributes:
      scores: ``(C,)`` float32 predicted IoU of each candidate.
      logits: ``(C, h, w)`` float32 low-resolution mask logits (``h = w = 256`` for the
        official models); pass ``logits[i:i+1]`` as the next ``mask_input``.
      image_size: ``(H, W)`` of the original image.
      masks: ``(C, H, W)`` bool candidate masks at the original image size. Computed on
        first access and then kept.
      display_size: ``(h, w)`` given to ``Segmenter.predict(display_size=...)``, else None.
      display_masks: ``(C, h, w)`` bool candidate masks at ``display_size``, computed by the
        segmenter inside ``predict`` (under its lock, on the calling thread), or None.
    """

    def __init__(
        self,
        scores: np.ndarray,
        logits: np.ndarray,
        image_size: tuple[int, int],
        upscaler: "_Upscaler",
        masks: np.ndarray | None = None,
        display_masks: np.ndarray | None = None,
    ) -> None:
        self.scores = scores
        self.logits = logits
        self.image_size = image_size
        self._upscaler = upscaler
        self._masks = masks
        self._single: dict[int, np.ndarray] = {}
        self.display_masks = display_masks
        self.display_size: tuple[int, int] | None = (
            None if display_masks is None else (int(display_masks.shape[1]), int(display_masks.shape[2]))
        )

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __repr__(self) -> str:
        sc = ", ".join(f"{s:.3f}" for s in self.scores)
        return f"Prediction({len(self)} masks of {self.image_size[0]}x{self.image_size[1]}, scores=[{sc}])"

    @property
    def best(self) -> int:
        """Index of the candidate with the highest predicted IoU."""
        return int(np.argmax(self.scores))

    @property
    def masks(self) -> np.ndarray:
        masks = self._masks
        if masks is None:
            masks = self._masks = self._upscaler.full(self.logits)
        return masks

    def mask(self, index: int, threshold: float | None = None) -> np.ndarray:
        """Candidate ``index`` as an ``(H, W)`` bool mask at the original image size.

        Cheaper than ``masks[index]`` when only one candidate is needed. ``threshold``: the
        logit a pixel must exceed (None: the model's ``mask_threshold``, 0.0 for SAM); a
        mask at another threshold is computed each time (not cached), with the same
        upsampling as ``Sam.postprocess_masks``.
        """
        index = self._check_index(index)
        threshold = _check_threshold(threshold)
        if threshold is not None and threshold != self._upscaler.threshold:
            return self._upscaler.full(self.logits[index : index + 1], float(threshold))[0]
        masks = self._masks
        if masks is not None:
            return masks[index]
        single = self._single
        m = single.get(index)
        if m is None:
            m = single[index] = self._upscaler.full(self.logits[index : index + 1])[0]
        return m

    @property
    def cached_mask_bytes(self) -> int:
        """Bytes of full-size masks this prediction holds now (computed on access, see :meth:`drop_masks`)."""
        masks = self._masks
        return (masks.nbytes if masks is not None else 0) + sum(m.nbytes for m in list(self._single.values()))

    def drop_masks(self) -> None:
        """Forget the full-size masks computed so far (to bound memory; thread-safe).

        They are computed again from :attr:`logits` on the next access, with the same result
        (the exact mode's masks included: the same resampling as ``Sam.postprocess_masks``).
        """
        self._masks = None
        self._single = {}

    def mask_at_size(self, index: int, size: tuple[int, int], threshold: float | None = None) -> np.ndarray:
        """Candidate ``index`` resampled straight from the logits to ``size = (h, w)``.

        For display: costs ``h * w`` work instead of the full image's, resampling the valid
        part of the logits once (the full-size path resamples twice, as SamPredictor does,
        so edges may differ by a fraction of a display pixel). ``(h, w)`` should keep the
        image's aspect ratio. At the image's own size this is exactly ``masks[index]``.
        ``threshold``: as for :meth:`mask`.
        """
        index = self._check_index(index)
        size = _check_display_size(size, "size")
        threshold = _check_threshold(threshold)
        if size == tuple(self.image_size):
            return self.mask(index, threshold)
        same = threshold is None or threshold == self._upscaler.threshold
        if same and self.display_masks is not None and tuple(size) == self.display_size:
            return self.display_masks[index]
        return self._upscaler.to_display(self.logits[index : index + 1], size, threshold)[0]

    @property
    def mask_threshold(self) -> float:
        """The model's logit threshold (``Sam.mask_threshold``, 0.0 for SAM)."""
        return float(self._upscaler.threshold)

    def display_mask(self, index: int) -> np.ndarray:
        """Candidate ``index`` at the ``display_size`` given to ``predict``: ``(h, w)`` bool.

        Already computed (no torch work here), and what :meth:`mask_at_size` returns for that
        size. Raises ``ValueError`` if ``predict`` was called without ``display_size``.
        """
        index = self._check_index(index)
        if self.display_masks is None:
            raise ValueError(
                "this prediction has no display masks: call Segmenter.predict(..., display_size=(h, w))."
            )
        return self.display_masks[index]

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"mask index must be an int, not {type(index).__name__}.")
        if not 0 <= int(index) < len(self):
            raise IndexError(f"mask index {index} out of range for {len(self)} candidates.")
        return int(index)


class _Upscaler:
    """Turns low-res logits into masks exactly as ``Sam.postprocess_masks`` does."""

    def __init__(self, sam: Sam, input_size: tuple[int, int], original_size: tuple[int, int]):
        self.img_size = sam.image_encoder.img_size
        self.threshold = sam.mask_threshold
        self.input_size = input_size
        self.original_size = original_size

    @torch.no_grad()
    def to_size(
        self, logits: np.ndarray | torch.Tensor, size: tuple[int, int], threshold: float | None = None
    ) -> np.ndarray:
        # candidates as a batch of one-channel planes: the same bilinear maths per plane, and
        # up to ~3x faster than one 3-channel image with torch's CPU kernel (measured, 1 thread)
        if isinstance(logits, torch.Tensor):
            t = logits.float()[:, None]
        else:
            t = torch.from_numpy(np.ascontiguousarray(logits))[:, None]
        t = F.interpolate(t, (self.img_size, self.img_size), mode="bilinear", align_corners=False)
        t = t[..., : self.input_size[0], : self.input_size[1]]
        t = F.interpolate(t, tuple(size), mode="bilinear", align_corners=False)
        return (t[:, 0] > (self.threshold if threshold is None else threshold)).cpu().numpy()

    def full(self, logits: np.ndarray | torch.Tensor, threshold: float | None = None) -> np.ndarray:
        return self.to_size(logits, self.original_size, threshold)

    @torch.no_grad()
    def to_display(
        self, logits: np.ndarray | torch.Tensor, size: tuple[int, int], threshold: float | None = None
    ) -> np.ndarray:
        """One resampling from the valid low-res crop straight to ``size`` (for display).

        Skips the ``img_size``² intermediate of :meth:`to_size`; the crop is rounded up to
        whole low-res pixels and the overshoot sliced off after resampling, so the geometry
        matches to a fraction of a display pixel. ``logits``: ``(C, h, w)`` array or tensor.
        """
        lr_h, lr_w = logits.shape[-2:]
        rows = self.input_size[0] * lr_h / self.img_size  # valid low-res extent (float)
        cols = self.input_size[1] * lr_w / self.img_size
        r, c = math.ceil(rows - 1e-9), math.ceil(cols - 1e-9)
        out_h, out_w = round(size[0] * r / rows), round(size[1] * c / cols)
        if isinstance(logits, torch.Tensor):
            t = logits[:, None, :r, :c].float()
        else:
            t = torch.from_numpy(np.ascontiguousarray(logits[..., :r, :c]))[:, None]
        t = F.interpolate(t, (out_h, out_w), mode="bilinear", align_corners=False)
        return (t[:, 0, : size[0], : size[1]] > (self.threshold if threshold is None else threshold)).cpu().numpy()
