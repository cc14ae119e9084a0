"""The object singled out in the object list: selection in the list, highlight on the canvas
and edit mode kept consistent.

* Choosing an object in the list (or ``w.highlighted = i``) highlights it: the painter draws it
  on top with a thicker white-and-colour outline and dims the others.
* Editing an object (Alt + click, *Edit*, ``w.edit(i)``) selects it; while it is edited it is
  drawn as the current mask and the others are dimmed.
* Esc / *Clear* (``w.clear()``), the first prompt of a new object, another image, or the
  object disappearing (delete, undo) clear the selection.

The selection is the view's state (one widget's list), not the session's: it is held as the
object's id in :attr:`Painter.highlight`, so it follows its object when earlier ones go.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..session import Session
    from .controls import Controls
    from .painter import Painter

__all__ = ["Focus"]


class Focus:
    """Keeps :attr:`Painter.highlight` and the list's selection in line with the session."""

    def __init__(self, session: "Session", painter: "Painter", controls: "Controls") -> None:
        self.session = session
        self.painter = painter
        self.controls = controls
        self._seen: tuple[int, int | None, bool] = (session.index, None, True)  # image, editing, no prompts

    @property
    def index(self) -> int | None:
        """Position in the current objects of the selected object, or None."""
        h = self.painter.highlight
        return next((i for i, o in enumerate(self.session.objects) if o.id == h), None)

    def follow(self) -> None:
        """The session changed (called under its lock, before drawing): apply the rules above."""
        s = self.session
        snap = s.current
        index, editing, was_empty = self._seen
        h = self.painter.highlight
        if index != s.index:
            h = None
        elif snap.editing is not None and snap.editing != editing:
            h = snap.editing
        elif snap.editing is None and not snap.prompts.is_empty and (was_empty or editing is not None):
            h = None
        if h is not None and all(o.id != h for o in snap.objects):
            h = None
        self.painter.highlight = h
        self._seen = (s.index, snap.editing, snap.prompts.is_empty)

    def select(self, object_id: int | None) -> None:
        """Single out the object with id ``object_id`` (None: none): redraw, update the list."""
        s = self.session
        with s.lock:
            if self.painter.highlight == object_id:
                return
            self.painter.highlight = object_id
            self.painter.render()
            self.controls.sync(s, object_id)

    def list_selected(self, index: int | None) -> None:
        """The user chose position ``index`` in the page's object list."""
        objects = self.session.objects
        self.select(objects[index].id if index is not None and 0 <= index < len(objects) else None)
