"""The logit threshold a session cuts masks at (``Session.threshold``): checking it, and
cutting a prediction's candidate there. Plain Python; the cutting is the engine's
(``Prediction.mask`` / ``mask_at_size`` with a ``threshold``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["check_threshold", "cut_mask"]


def cut_mask(pred: Any, index: int, threshold: float | None, size: tuple[int, int] | None = None) -> np.ndarray:
    """Candidate ``index`` of ``pred`` at ``threshold`` (None: the model's) and ``size``
    (None: the image's). A kept object being edited (no logits of its own to cut) is its mask."""
    from .pages import StoredAnswer

    if threshold is None or isinstance(pred, StoredAnswer):
        return pred.mask(index) if size is None else pred.mask_at_size(index, size)
    return pred.mask(index, threshold) if size is None else pred.mask_at_size(index, size, threshold)


def check_threshold(value: Any, logits_range: tuple[float, float] | None) -> float:
    """``value`` as a float, or ``TypeError`` / ``ValueError`` naming what is wrong."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"threshold must be a number (a logit, e.g. 0.0), not {type(value).__name__}.")
    t = float(value)
    if not math.isfinite(t):
        raise ValueError(f"threshold must be a finite number, got {value!r}.")
    if logits_range is not None:
        lo, hi = logits_range
        if not lo <= t <= hi:
            raise ValueError(
                f"threshold {t:g} lies outside the current logits' range [{lo:.3g}, {hi:.3g}]: "
                "every pixel would be in the mask or none would."
            )
    return t
