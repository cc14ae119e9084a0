"""The session's background threads: the latest-wins worker and the prefetcher.

* :class:`Worker` loads the model once, then encodes the current image and answers the
  newest state (and hover previews). Requests only set flags: if they arrive faster than
  answers, the worker always takes the newest state (no backlog, never a stale mask over a
  newer one).
* :class:`Prefetcher` reads the neighbouring images and computes their embeddings into the
  engine's cache while the user works on the current one (``Segmenter.prefetch``, which does
  not block predictions), so "next" needs no encoding.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from .background import Background

__all__ = ["Worker", "Prefetcher"]

log = logging.getLogger(__name__)


class Worker(threading.Thread):
    """Loads + encodes, then answers the newest state and hover previews, latest wins."""

    def __init__(self, owner: "Background") -> None:
        super().__init__(name="SamWidget-worker", daemon=True)
        self.owner = owner
        self._cv = threading.Condition()
        self._wanted = False
        self._preview: tuple[int, int] | None = None
        self._stopped = False
        self.idle = threading.Event()

    def request(self) -> None:
        """Compute what the current state needs (encoding, the current prompts' answer)."""
        with self._cv:
            self._wanted = True
            self.idle.clear()
            self._cv.notify()

    def request_preview(self, point: tuple[int, int]) -> None:
        with self._cv:
            self._preview = point
            self.idle.clear()
            self._cv.notify()

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def run(self) -> None:
        s = self.owner
        try:
            s.load_model()
        except BaseException as exc:  # noqa: BLE001 - reported through wait_ready and the status line
            s.model_failed(exc)
            self.idle.set()
            return
        while True:
            with self._cv:
                while not (self._wanted or self._preview or self._stopped):
                    self.idle.set()
                    self._cv.wait()
                if self._stopped:
                    self.idle.set()
                    return
                if self._wanted:
                    self._wanted, job = False, None
                else:
                    job, self._preview = self._preview, None
            try:
                if job is None:
                    s.compute_current()
                else:
                    s.compute_preview(job)
            except Exception:  # noqa: BLE001 - keep serving; the status line shows it
                log.exception("session worker job failed")


class Prefetcher(threading.Thread):
    """Computes the embeddings of the images the session asks for, newest request first."""

    def __init__(self, owner: "Background") -> None:
        super().__init__(name="SamWidget-prefetch", daemon=True)
        self.owner = owner
        self._cv = threading.Condition()
        self._wanted: list[int] = []
        self._stopped = False
        self.idle = threading.Event()
        self.idle.set()

    def request(self, indices: list[int]) -> None:
        """Prefetch these images (in this order), replacing any earlier request."""
        with self._cv:
            self._wanted = list(indices)
            if self._wanted:
                self.idle.clear()
            self._cv.notify()

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._wanted = []
            self._cv.notify()

    def run(self) -> None:
        s = self.owner
        while True:
            with self._cv:
                while not (self._wanted or self._stopped):
                    self.idle.set()
                    self._cv.wait()
                if self._stopped:
                    self.idle.set()
                    return
                index = self._wanted.pop(0)
            try:
                s.prefetch(index)
            except Exception:  # noqa: BLE001 - an unreadable neighbour shows its error when visited
                log.debug("prefetch of image %d failed", index, exc_info=True)
