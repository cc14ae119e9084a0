"""What a session's prompts and objects go through: points, boxes, candidates, commits, edits, undo.

:class:`SessionEditing` is the part of :class:`~sam_widget.session.Session` that changes the
current image's state (the session inherits it): every action pushes a new
:class:`~sam_widget.state.Snapshot` onto the image's undo history and wakes the worker for
what needs the model. No widgets and no torch are imported here.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from ..state import EditConflict, ObjectRecord, PredictionSlot
from .inputs import as_object_mask, label_names, masks_from_label_image
from .pages import StoredAnswer
from .provenance import provenance
from .threshold import cut_mask

if TYPE_CHECKING:  # pragma: no cover
    from .core import Session

__all__ = ["SessionEditing"]


class SessionEditing:
    """Prompts, candidate choice, commit, delete, rename, edit, objects brought in, undo / redo
    (see :mod:`.editing`).

    A mixin of :class:`~sam_widget.session.Session`: relies on ``self._budget`` and
    ``self._threshold``, set by ``Session.__init__``, and on its state (``current``,
    ``prompts``, ``candidates``, ``history``, ``image``, ``objects``, ``viewport``) and
    plumbing (``_push``, ``_push_prompts``, ``_answer``, ``_after_change``, ``_wait_slot``,
    ``_check_image``).
    """

    # ================================================================== actions
    def add_point(self, x: float, y: float, label: int = 1) -> "Session":
        """Add a point prompt at image pixel ``(x, y)`` (column, row); label 1 = object, 0 = not.

        Waits for the new mask. ``ValueError`` for a point outside the image, NaN, or a
        label other than 0 / 1 (the state is left unchanged).
        """
        self._check_image()
        xf, yf = self.viewport.check_point(x, y, "point")
        if isinstance(label, bool) or label not in (0, 1):
            raise ValueError(f"label must be 1 (object) or 0 (background), got {label!r}.")
        self._push_prompts(lambda p: p.with_point(xf, yf, int(label)))
        return self._answer()

    def add_box(self, x0: float, y0: float, x1: float, y1: float) -> "Session":
        """Set the box prompt (XYXY image pixels; replaces any previous box). Waits for the mask."""
        self._check_image()
        vp = self.viewport
        a, b = vp.check_point(x0, y0, "box corner"), vp.check_point(x1, y1, "box corner")
        if b[0] < a[0] or b[1] < a[1]:
            raise ValueError(f"box must have x0 <= x1 and y0 <= y1 (XYXY), got {(x0, y0, x1, y1)}.")
        self._push_prompts(lambda p: p.with_box((*a, *b)))
        return self._answer()

    def select(self, index: int) -> "Session":
        """Choose candidate ``index`` (0-based). ``IndexError`` if there is no such candidate."""
        from .core import selected_of  # here, not at the top: core imports this module

        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"candidate index must be an int, not {type(index).__name__}.")
        pred = self.candidates
        if pred is None:
            raise IndexError("there are no candidates to choose from: add a point or a box first.")
        if not 0 <= index < len(pred):
            raise IndexError(f"candidate {index} does not exist; there are {len(pred)} (0..{len(pred) - 1}).")
        self._update(lambda snap: snap.select(int(index)) if int(index) != selected_of(snap) else None)
        return self

    def commit(self, label: str | None = None) -> ObjectRecord:
        """Keep the current mask as an object (label: ``label`` stripped; None or a blank string
        gives the default "object N"); clears the prompts.

        While an object is being edited, it is replaced (same id, colour and label unless
        ``label`` is given). ``ValueError`` when there is no mask (no prompts, or empty).
        """
        from .core import selected_of  # here, not at the top: core imports this module

        if label is not None and not isinstance(label, str):
            raise TypeError(f"label must be a string, not {type(label).__name__}.")
        while True:
            snap = self.current
            if snap.slot is None:
                raise ValueError("there is no mask to commit: add a point or a box first.")
            self._wait_slot(snap.slot)  # (may take a while: a click on the page can come meanwhile)
            sel, pred = selected_of(snap), snap.slot.prediction
            mask = np.array(cut_mask(pred, sel, self._threshold), dtype=bool)
            self._budget.touch(pred)
            logits = None if pred.logits is None else np.array(pred.logits[sel : sel + 1], np.float32)
            candidate, chain = provenance(snap, sel)  # kept in the session file (see provenance.py)
            threshold = pred.object.threshold if isinstance(pred, StoredAnswer) else self._threshold
            new = snap.commit(mask, float(pred.scores[sel]), label, logits, candidate, chain, threshold)
            try:
                self._push(new, expected=snap)
            except EditConflict:  # the state changed while waiting: commit the newest mask
                continue
            i = snap.editing_index
            return new.objects[i if i is not None else -1]

    def delete(self, index: int) -> "Session":
        """Delete object ``index`` (0-based position in :attr:`objects`); ``IndexError`` if missing."""
        self._update(lambda snap: snap.delete(index))
        return self

    def rename(self, index: int, label: str) -> "Session":
        """Give object ``index`` a new label (a non-empty string)."""
        self._update(lambda snap: snap.rename(index, label))
        return self

    def clear(self) -> "Session":
        """Clear the current prompts and stop editing (objects stay). A no-op when there is nothing."""
        self._update(
            lambda snap: snap.cleared() if snap.slot is not None or not snap.prompts.is_empty or snap.editing is not None else None
        )
        return self

    def edit(self, index: int) -> "Session":
        """Edit object ``index``: its prompts become the current prompts and its mask the current
        mask; further prompts refine it (from its low-res logits; for a mask brought in with
        :meth:`add_object`, logits derived from the mask); :meth:`commit` replaces it."""
        snap = self.current
        i = snap._object_index(index)
        obj = snap.objects[i]
        if snap.editing == obj.id and isinstance(snap.prediction, StoredAnswer) and snap.prompts == obj.prompts:
            return self
        slot = PredictionSlot()
        slot.fill(StoredAnswer(obj), None, False)
        self._push(snap.edit(i, slot))
        return self

    def object_at(self, x: float, y: float) -> int | None:
        """Index of the topmost object covering image pixel ``(x, y)`` (column, row), or None
        (also outside the image). ``TypeError`` / ``ValueError`` for non-numbers, NaN, infinity."""
        H, W = self.image.shape[:2]
        if any(isinstance(v, (str, bytes, bool)) for v in (x, y)):
            raise TypeError(f"x and y must be numbers (image pixels), got ({x!r}, {y!r}).")
        try:
            xf, yf = float(x), float(y)
        except (TypeError, ValueError):
            raise TypeError(f"x and y must be numbers (image pixels), got ({x!r}, {y!r}).") from None
        if not (math.isfinite(xf) and math.isfinite(yf)):
            raise ValueError(f"x and y must be finite, got ({x!r}, {y!r}).")
        if not (0 <= xf < W and 0 <= yf < H):
            return None
        c, r = int(xf), int(yf)
        if not (0 <= c < W and 0 <= r < H):
            return None
        for i in range(len(self.objects) - 1, -1, -1):
            if self.objects[i].mask[r, c]:
                return i
        return None

    def add_object(self, mask: np.ndarray, label: str | None = None) -> ObjectRecord:
        """Add an ``(H, W)`` bool mask of the current image as an object (copied; no prompts).

        Refining it later (:meth:`edit`) starts from the mask. ``TypeError`` / ``ValueError``
        for a wrong type, shape, values or an empty mask.
        """
        if label is not None and not isinstance(label, str):
            raise TypeError(f"label must be a string, not {type(label).__name__}.")
        self._check_image()
        m = as_object_mask(mask, self.image.shape[:2])
        new = self._update(lambda snap: snap.add_objects([m], [label]))
        return new.objects[-1]  # type: ignore[union-attr]

    def set_objects(self, label_image: Any) -> tuple[ObjectRecord, ...]:
        """Replace the current image's objects by one object per non-zero value of
        ``label_image`` (``(H, W)`` integers, 0 = background, or the path of such an image
        file), in increasing value order. One undo step. A label PNG written by
        :meth:`export_png` brings its objects' labels back."""
        self._check_image()
        masks = masks_from_label_image(label_image, self.image.shape[:2])
        names = label_names(label_image, len(masks))
        new = self._update(lambda snap: snap.without_objects().add_objects(masks, names))
        return new.objects  # type: ignore[union-attr]

    def undo(self) -> bool:
        """Step back (prompts, candidate choice, commits, deletes, renames, edits); False if nothing to undo."""
        self._check_open()
        if not self.history.undo():
            return False
        self._after_change()
        return True

    def redo(self) -> bool:
        """Step forward again; False (no-op) when there is nothing to redo."""
        self._check_open()
        if not self.history.redo():
            return False
        self._after_change()
        return True
