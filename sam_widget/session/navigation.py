"""A session's images: which one is shown, moving between them, per-image objects and results.

:class:`SessionNavigation` is the part of :class:`~sam_widget.session.Session` that deals with
the set of images (the session inherits it); the images are read by :mod:`.images`, their
per-image state is kept by :mod:`.pages`. No widgets and no torch are imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..state import ObjectRecord
from ..viewport import Viewport
from .pages import Page, Results

if TYPE_CHECKING:  # pragma: no cover
    from .core import Session

__all__ = ["SessionNavigation"]


class SessionNavigation:
    """The images, the current one and going to another (see :mod:`.navigation`).

    A mixin of :class:`~sam_widget.session.Session`: relies on ``self.images`` (the
    ``ImageSet``), ``self._pages`` (the ``Pages``), ``self._everything``, ``self._background``,
    ``self._notifier`` and ``self.error``, set by ``Session.__init__``, and on its
    ``lock``, ``_check_open`` and ``_stop_preview``.
    """

    # ================================================================== images
    @property
    def index(self) -> int:
        """Position of the current image in :attr:`images` (0-based)."""
        return self._pages.index

    @property
    def image(self) -> np.ndarray:
        """The current image as ``H x W x 3`` uint8 RGB (read-only); ``ImageError`` if unreadable."""
        return self.images.load(self._pages.index)

    @property
    def name(self) -> str:
        """The current image's name (file name, or "image N")."""
        return self.images.names[self._pages.index]

    @property
    def canvas_hw(self) -> tuple[int, int]:
        """``(h, w)`` of the canvas a view shows the images on."""
        return self._pages.canvas_hw

    @property
    def viewport(self) -> Viewport:
        """Where the current image sits on the canvas (coordinate mapping)."""
        return self._pages.viewport()

    def image_size(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of image ``index``; ``(0, 0)`` if it cannot be read."""
        return self._pages.image_size(index)

    def goto(self, index: int) -> "Session":
        """Show image ``index`` (0-based). ``IndexError`` / ``TypeError`` for a bad index.

        Its objects, prompts and undo history are as they were left; its embedding is
        computed in the background if it was not prefetched.
        """
        i = self.images._check(index)
        self._check_open()
        if i != self.index:
            self._stop_preview()
            self._everything.stop()  # proposals belong to their image: a run still going ends (partial)
            with self.lock:
                self._pages.enter(i)
            self.error = None
            self._background.worker.request()
            self._notifier.changed()
        return self

    def next(self) -> bool:
        """Go to the next image; False (and nothing changes) on the last one."""
        if self.index + 1 >= len(self.images):
            return False
        self.goto(self.index + 1)
        return True

    def prev(self) -> bool:
        """Go to the previous image; False (and nothing changes) on the first one."""
        if self.index == 0:
            return False
        self.goto(self.index - 1)
        return True

    def _page(self, i: int) -> Page:
        return self._pages.page(i)

    def objects_of(self, index: int) -> tuple[ObjectRecord, ...]:
        """The committed objects of image ``index``."""
        page = self._pages.get(self.images._check(index))
        return page.history.current.objects if page is not None else ()

    @property
    def results(self) -> Results:
        """Per image: ``results[i].objects``, ``.masks`` (N, H, W) bool, ``.labels`` (H, W) int32."""
        return Results(self)
