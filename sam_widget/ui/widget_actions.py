"""What ``SamWidget`` does to its session: prompts, candidates, objects, undo, images.

:class:`_WidgetActions` is the part of :class:`~sam_widget.ui.widget.SamWidget` that forwards
the editing and navigation calls to the session (the widget inherits it); each waits for its
answer, so ``w.add_point(...); w.mask`` works in one cell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..state import ObjectRecord

if TYPE_CHECKING:  # pragma: no cover
    from .widget import SamWidget

__all__ = ["_WidgetActions"]


class _WidgetActions:
    """Waiting, prompts, candidates, objects, undo / redo and image navigation (see :mod:`.widget_actions`).

    A mixin of ``SamWidget``: relies on ``self._session`` (the
    :class:`~sam_widget.session.Session`) and ``self._focus`` (the highlight, dropped by
    :meth:`clear`), both set by ``SamWidget.__init__``.
    """

    # ================================================================== public API: actions
    def wait_ready(self, timeout: float | None = None) -> "SamWidget":
        """Block until the model is loaded and the current image encoded. Raises what went wrong
        (``RuntimeError``: the model; ``ImageError``: this image cannot be read; ``TimeoutError``)."""
        self._session.wait_ready(timeout)
        return self

    def wait_idle(self, timeout: float | None = 60.0) -> "SamWidget":
        """Block until every pending prompt has been answered and drawn (tests, scripts)."""
        self._session.wait_idle(timeout)
        return self

    def add_point(self, x: float, y: float, label: int = 1) -> "SamWidget":
        """Add a point prompt at image pixel ``(x, y)`` (column, row); label 1 = object, 0 = not.

        Waits for the new mask. Raises ``ValueError`` for a point outside the image, NaN, or
        a label other than 0/1 (the state is left unchanged).
        """
        self._session.add_point(x, y, label)
        return self

    def add_box(self, x0: float, y0: float, x1: float, y1: float) -> "SamWidget":
        """Set the box prompt (XYXY image pixels; replaces any previous box). Waits for the mask.

        Raises ``ValueError`` for NaN, ``x1 < x0`` / ``y1 < y0`` or a box reaching outside the image.
        """
        self._session.add_box(x0, y0, x1, y1)
        return self

    def select(self, index: int) -> "SamWidget":
        """Choose candidate ``index`` (0-based). ``IndexError`` if there is no such candidate."""
        self._session.select(index)
        return self

    def commit(self, label: str | None = None) -> ObjectRecord:
        """Add the current mask as an object (default label "object N"); clears the prompts.

        While an object is being edited it is replaced instead (same id, colour and label).
        Raises ``ValueError`` when there is no mask to commit (no prompts, or an empty mask).
        """
        return self._session.commit(label)

    def delete(self, index: int) -> "SamWidget":
        """Delete object ``index`` (0-based position in :attr:`objects`); ``IndexError`` if missing."""
        self._session.delete(index)
        return self

    def rename(self, index: int, label: str) -> "SamWidget":
        """Give object ``index`` a new label (a non-empty string)."""
        self._session.rename(index, label)
        return self

    def edit(self, index: int) -> "SamWidget":
        """Edit object ``index``: its prompts come back, clicks refine its mask, :meth:`commit`
        (Enter) replaces it. Same as Alt + click on it, or *Edit* in the side panel."""
        self._session.edit(index)
        return self

    def add_object(self, mask: np.ndarray, label: str | None = None) -> ObjectRecord:
        """Add an ``(H, W)`` bool mask of the current image as an object (e.g. from another tool)."""
        return self._session.add_object(mask, label)

    def set_objects(self, label_image: Any) -> tuple[ObjectRecord, ...]:
        """Replace the current image's objects by one per non-zero value of a label image
        (``(H, W)`` integers or the path of such a file)."""
        return self._session.set_objects(label_image)

    def undo(self) -> bool:
        """Step back (prompts, candidate choice, commits, edits, deletes, renames).

        Returns False and changes nothing when there is nothing to undo.
        """
        return self._session.undo()

    def redo(self) -> bool:
        """Step forward again; False (no-op) when there is nothing to redo."""
        return self._session.redo()

    def clear(self) -> "SamWidget":
        """Clear the current prompts, stop editing and drop the highlight (committed objects
        stay). A no-op when there is nothing to clear."""
        self._focus.select(None)
        self._session.clear()
        return self

    def goto(self, index: int) -> "SamWidget":
        """Show image ``index`` (0-based); each image keeps its own objects, prompts and history."""
        self._session.goto(index)
        return self

    def next(self) -> bool:
        """Show the next image; False on the last one."""
        return self._session.next()

    def prev(self) -> bool:
        """Show the previous image; False on the first one."""
        return self._session.prev()
