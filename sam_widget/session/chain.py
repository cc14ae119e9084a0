"""How a mask was made: the refinement chain behind a committed object, and the threshold.

Every answered :class:`~sam_widget.state.PredictionSlot` knows the step whose kept
candidate's low-res logits were its ``mask_input`` (``slot.source``, set by the worker when
it asks the engine). Walking those links back from the committed answer gives the exact
sequence of ``predict`` calls that made the mask -- with the candidate kept at each step --
which :mod:`sam_widget.provenance` turns into code. Plain Python, no torch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ..state import ChainStep, PredictionSlot, Prompts

__all__ = ["chain_of", "provenance_of", "check_threshold", "cut_mask"]


def chain_of(slot: PredictionSlot) -> tuple[ChainStep, ...]:
    """The earlier steps of ``slot``'s answer, oldest first (empty: answered from its prompts alone).

    A step answered from a committed object being edited continues that object's own chain;
    an object brought in as a mask starts the chain with an empty-prompt step holding it.
    """
    from .pages import StoredAnswer

    steps: list[ChainStep] = []
    src = slot.source
    while src is not None:
        bslot, sel = src
        pred = bslot.prediction
        if isinstance(pred, StoredAnswer):
            steps[:0] = _object_steps(pred.object)
            break
        steps.insert(0, ChainStep(bslot.prompts, int(sel)))
        src = bslot.source
    return tuple(steps)


def _object_steps(obj: Any) -> list[ChainStep]:
    """An object's chain plus its own last step (what refining it continues from). Without
    logits of its own (brought in as a mask, or read from a file) the refinement's mask
    prompt was derived from the mask: the chain starts there, with an empty-prompt step."""
    if obj.imported or obj.logits is None:
        return [ChainStep(Prompts(), 0, obj.mask)]
    return [*obj.chain, ChainStep(obj.prompts, 0 if obj.candidate is None else int(obj.candidate))]


def provenance_of(slot: PredictionSlot, selected: int, threshold: float | None) -> dict[str, Any]:
    """``candidate``, ``chain`` and ``threshold`` for an object committed from ``slot``'s answer."""
    from .pages import StoredAnswer

    pred = slot.prediction
    if isinstance(pred, StoredAnswer):  # committed again without new prompts: as it was
        obj = pred.object
        return {"candidate": obj.candidate, "chain": obj.chain, "threshold": obj.threshold}
    return {"candidate": int(selected), "chain": chain_of(slot), "threshold": threshold}


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
