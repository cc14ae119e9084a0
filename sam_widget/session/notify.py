"""Telling views and callbacks that a session changed.

Views (listeners) are told under :attr:`Notifier.lock`, so whichever thread tells them last
draws the newest state; ``on_change`` callbacks run afterwards, outside the lock, and only when
what the user sees changed (the mask, the objects, the image): :attr:`Notifier.revision` counts
those changes.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # pragma: no cover
    from .core import Session, SessionListener

__all__ = ["Notifier"]

log = logging.getLogger(__name__)


class Notifier:
    """Listeners (``changed``, ``status``), ``on_change`` callbacks and the revision number."""

    def __init__(self, session: "Session") -> None:
        self.session = session
        self.lock = threading.RLock()
        self.listeners: list["SessionListener"] = []
        self.callbacks: list[Callable[["Session"], None]] = []
        self.revision = 0
        self._published: tuple[int, Any, Any] = (session.index, session.current.objects, None)

    def on_change(self, callback: Callable[["Session"], None], remove: bool = False) -> None:
        if not callable(callback):
            raise TypeError("callback must be callable.")
        if remove:
            if callback in self.callbacks:
                self.callbacks.remove(callback)
        elif callback not in self.callbacks:
            self.callbacks.append(callback)

    def changed(self) -> None:
        """Tell the views (under the lock), then, if the mask / objects / image changed, the callbacks."""
        s = self.session
        with self.lock:
            bumped = self._publish()
            for listener in list(self.listeners):
                listener.changed(s)
        if bumped:
            for cb in list(self.callbacks):
                try:
                    cb(s)
                except Exception as exc:  # noqa: BLE001 - a user's callback must not break the session
                    log.exception("on_change callback failed")
                    s.error = f"on_change callback failed: {exc}"
                    self.status()

    def status(self) -> None:
        """Tell the views that the status line may read differently."""
        for listener in list(self.listeners):
            listener.status(self.session)

    def _publish(self) -> bool:
        from .core import selected_of

        s = self.session
        snap = s.current
        if snap.prediction is not None:
            mask_key = (snap.slot, selected_of(snap), s._threshold)
        elif snap.slot is None:
            mask_key = None
        else:  # still being computed: the mask has not changed yet
            mask_key = self._published[2]
        index, objects, old_mask = self._published
        changed = index != s.index or objects is not snap.objects or mask_key != old_mask
        self._published = (s.index, snap.objects, mask_key)
        if changed:
            self.revision += 1
        return changed
