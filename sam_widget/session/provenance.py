"""How a committed mask was made, and making its logits again from that.

SAM's interactive recipe refines: each prompt after the first is answered from the prompts
*and* the low-resolution logits of the candidate chosen one step before (``mask_input``).
A committed object therefore records its chosen ``candidate`` and its refinement ``chain``
(the earlier ``(prompts, candidate)`` steps, oldest first; see
:class:`~sam_widget.state.ObjectRecord`). The session file keeps both; logits are not
kept (256 x 256 float32 per object). When a loaded object is refined again, its logits are
recomputed by replaying the chain on the same model and checked against the stored mask;
if the model differs (or the chain is incomplete) the logits are derived from the mask, as
for a mask brought in from elsewhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..state import ChainStep, ObjectRecord, PredictionSlot, Prompts, Snapshot
from .pages import StoredAnswer

__all__ = ["provenance", "refinement_chain", "replay_logits", "logits_for"]

Step = tuple[Prompts, "int | None"]


def _answered_base(slot: PredictionSlot) -> tuple[PredictionSlot, int] | None:
    """The step ``slot`` was refined from: the one recorded when it was answered
    (``slot.source``), else the nearest answered earlier slot and its chosen candidate."""
    if slot.source is not None:
        return slot.source
    base = slot.base
    while base is not None and base[0].prediction is None:
        base = base[0].base
    if base is None:
        return None
    bslot, bsel = base
    return bslot, (bsel if bsel is not None else bslot.prediction.best)


def refinement_chain(slot: PredictionSlot) -> tuple[Step, ...] | None:
    """The steps before ``slot`` whose logits fed it, oldest first: ``()`` when ``slot`` was
    answered from its prompts alone; starting with an empty-prompt :class:`ChainStep` holding
    the mask when the refinement started from logits derived from a mask (a mask brought in,
    or an object whose chain could not be replayed); ``None`` when the chain cannot be told
    (an object whose candidate is unknown)."""
    steps: list[Step] = []
    cur = slot
    while cur.mask_input is not None:
        base = _answered_base(cur)
        if base is None:
            return None
        bslot, bsel = base
        pred = bslot.prediction
        if isinstance(pred, StoredAnswer):  # refining a committed object: its own history comes first
            obj = pred.object
            if obj.prompts.is_empty or getattr(pred, "from_mask", False):  # its mask was the mask prompt
                steps.append(ChainStep(Prompts(), 0, obj.mask))
                break
            if obj.candidate is None or any(c is None for _, c in obj.chain):
                return None
            steps.append(ChainStep(obj.prompts, obj.candidate))
            steps.extend(reversed(obj.chain))
            break
        steps.append(ChainStep(bslot.prompts, bsel))
        cur = bslot
    return tuple(reversed(steps))


def provenance(snap: Snapshot, selected: int) -> tuple[int | None, tuple[Step, ...]]:
    """``(candidate, chain)`` of the mask ``snap`` would commit (candidate ``selected``)."""
    slot = snap.slot
    if slot is None:
        return None, ()
    pred = slot.prediction
    if isinstance(pred, StoredAnswer):  # an edit committed without new prompts: unchanged
        return pred.object.candidate, pred.object.chain
    chain = refinement_chain(slot)
    if chain is None:
        return None, ()
    return selected, chain


def replay_logits(predict: Any, obj: ObjectRecord) -> np.ndarray | None:
    """The object's ``(1, h, w)`` logits made again by replaying its chain with ``predict``
    (``Segmenter.predict``'s keywords), or None when there is nothing to replay or the
    replayed mask differs from the object's mask (another model) or the chain starts from a
    mask (not kept in session files)."""
    if obj.prompts.is_empty or obj.candidate is None:
        return None
    steps = [*obj.chain, (obj.prompts, obj.candidate)]
    mask_input = None
    pred = None
    for prompts, cand in steps:
        if cand is None or prompts.is_empty:
            return None
        pred = predict(**prompts.as_arrays(), mask_input=mask_input, multimask=mask_input is None)
        if not 0 <= cand < len(pred) or pred.logits is None:
            return None
        mask_input = np.array(pred.logits[cand : cand + 1], np.float32)
    if pred is None or not np.array_equal(pred.mask(steps[-1][1], obj.threshold), obj.mask):
        return None
    return mask_input


def logits_for(session: Any, page: Any, obj: ObjectRecord, note: dict | None = None) -> np.ndarray:
    """Logits to refine ``obj`` from (worker thread): its own, replayed, or derived from its
    mask (then ``note["from_mask"] = True``, for the refinement's provenance)."""
    if obj.logits is not None:
        return obj.logits
    engine = session._engine
    rgb = session.images.load(page.index)
    logits = replay_logits(lambda **kw: engine.predict(page, rgb, **kw), obj)
    if logits is None and note is not None:
        note["from_mask"] = True
    return logits if logits is not None else engine.mask_input(obj.mask)
