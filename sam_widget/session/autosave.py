"""Autosave: every committed change of a session written to its save file, off the click path.

An :class:`Autosaver` follows the session like a view does. Its ``changed`` (called on the
thread that changed the session) only compares the current image and its objects with what
it saw last and, if they differ -- a commit, delete, rename, edit, ``add_object``,
``set_objects``, an undo/redo of one of those, another image shown -- notes the time. Its
own thread writes the file once the changes pause for ``quiet_s`` or at the latest
``max_delay_s`` after the first unsaved change (a burst of changes gives one write), with
:func:`sam_widget.io.write_session`: a temporary file renamed over the old one, so a
``kill -9`` at any moment leaves the previous complete file or the new one.

A write that fails (disk full, the folder removed) is reported in the status line and tried
again at the next change. ``close()`` (the session's) writes what is pending; so does the
end of the Python process (``atexit``).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from .core import Session

__all__ = ["Autosaver", "due_at", "QUIET_S", "MAX_DELAY_S"]

log = logging.getLogger(__name__)

QUIET_S = 0.25
"""Write once the changes have paused this long (seconds) ..."""
MAX_DELAY_S = 0.75
"""... or at the latest this long after the first unsaved change (a steady stream of changes)."""

_LIVE: "weakref.WeakSet[Autosaver]" = weakref.WeakSet()


def due_at(first: float, last: float, quiet_s: float = QUIET_S, max_delay_s: float = MAX_DELAY_S) -> float:
    """When the pending changes are written: ``quiet_s`` after the last one, but no later than
    ``max_delay_s`` after the first one (times in seconds, any clock)."""
    return min(last + quiet_s, first + max_delay_s)


class Autosaver:
    """Writes ``session`` to ``path`` after committed changes (see the module docstring).

    ``writes``: how many times the file was written; ``error``: the last write's error, or None.
    """

    def __init__(self, session: "Session", path: Path, quiet_s: float | None = None, max_delay_s: float | None = None) -> None:
        self.path = Path(path)
        self.quiet_s = float(QUIET_S if quiet_s is None else quiet_s)
        self.max_delay_s = float(MAX_DELAY_S if max_delay_s is None else max_delay_s)
        self._session = weakref.ref(session)
        self._cv = threading.Condition()
        self._write_lock = threading.Lock()
        self._first: float | None = None
        self._last: float | None = None
        self._stopped = False
        self._seen: tuple[int, Any] = (session.index, session.current.objects)
        self.writes = 0
        self.error: str | None = None
        self._thread = threading.Thread(target=self._run, name="SamWidget-autosave", daemon=True)

    def start(self) -> "Autosaver":
        self._thread.start()
        _LIVE.add(self)
        return self

    # ------------------------------------------------------------------ the session's listener
    def changed(self, session: "Session") -> None:
        """Cheap: note a committed change (the current image or its objects differ)."""
        index, objects = session.index, session.current.objects
        seen_index, seen_objects = self._seen
        if index != seen_index or objects is not seen_objects:
            self._seen = (index, objects)
            self.touch()

    def status(self, session: "Session") -> None:
        pass

    def touch(self) -> None:
        """Something to save (also for changes of images other than the current one)."""
        with self._cv:
            now = time.monotonic()
            if self._first is None:
                self._first = now
            self._last = now
            self._cv.notify()

    @property
    def pending(self) -> bool:
        """True while a change has not been written yet."""
        with self._cv:
            return self._first is not None

    # ------------------------------------------------------------------ writing
    def _run(self) -> None:
        while True:
            with self._cv:
                while self._first is None and not self._stopped:
                    self._cv.wait()
                if self._stopped:
                    return
                while not self._stopped and self._first is not None:  # (flush() may have written meanwhile)
                    wait = due_at(self._first, self._last, self.quiet_s, self.max_delay_s) - time.monotonic()  # type: ignore[arg-type]
                    if wait <= 0:
                        break
                    self._cv.wait(wait)
                if self._stopped:
                    return  # close() writes what is pending
            self._write_pending()

    def _write_pending(self) -> None:
        with self._write_lock:
            with self._cv:
                if self._first is None:
                    return
                self._first = self._last = None
            session = self._session()
            if session is None:
                return
            from .persist import save_session

            try:
                save_session(session, self.path)
            except Exception as exc:  # noqa: BLE001 - shown in the status line; retried at the next change
                log.exception("autosave to %s failed", self.path)
                self.error = f"autosave to {self.path} failed: {exc}"
                session.error = self.error
                session._notifier.status()
            else:
                self.writes += 1
                if self.error is not None:
                    if session.error == self.error:
                        session.error = None
                    self.error = None
                    session._notifier.status()

    def flush(self) -> None:
        """Write what is pending now, on the calling thread (and wait for a write in progress)."""
        self._write_pending()

    def close(self) -> None:
        """Stop the thread, then write what is pending."""
        with self._cv:
            self._stopped = True
            self._cv.notify()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=30)
        self.flush()
        _LIVE.discard(self)


@atexit.register
def _flush_at_exit() -> None:  # pragma: no cover - exercised by the subprocess tests
    for saver in list(_LIVE):
        try:
            saver.close()
        except Exception:  # noqa: BLE001 - at exit there is nobody to tell
            log.exception("autosave at exit failed")
