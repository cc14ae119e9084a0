"""What ``SamWidget`` shows of its session's state: the images, prompts, candidates, mask, objects.

:class:`_WidgetState` is the part of :class:`~sam_widget.ui.widget.SamWidget` that reads the
session's state (the widget inherits it): the public read-only properties, and the private
ones the tests and tools look at.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..session import Session
from ..state import ObjectRecord, Prompts

__all__ = ["_WidgetState"]


class _WidgetState:
    """The session's state, read through the widget (see :mod:`.widget_state`).

    A mixin of ``SamWidget``: relies on ``self._session`` (the
    :class:`~sam_widget.session.Session`) and ``self._painter`` (the ``Painter``), both set by
    ``SamWidget.__init__``.
    """

    # ================================================================== public API: the session's state
    @property
    def session(self) -> Session:
        """The headless :class:`~sam_widget.session.Session` this widget shows."""
        return self._session

    @property
    def image(self) -> np.ndarray:
        """The current image as ``H x W x 3`` uint8 RGB (read-only)."""
        return self._session.image

    @property
    def images(self) -> Any:
        """The images (a sequence: ``len(w.images)``, ``w.images[i]`` -> array, ``w.images.names``)."""
        return self._session.images

    @property
    def index(self) -> int:
        """Position of the current image in :attr:`images` (0-based)."""
        return self._session.index

    @property
    def results(self) -> Any:
        """Per image: ``w.results[i].objects``, ``.masks`` (N, H, W) bool, ``.labels`` (H, W) int32."""
        return self._session.results

    @property
    def segmenter(self) -> Any | None:
        """The ``Segmenter`` (None until the model has loaded)."""
        return self._session.segmenter

    @property
    def prompts(self) -> Prompts:
        """Current prompts (``.points``, ``.labels``, ``.box``) in image pixels."""
        return self._session.prompts

    @property
    def candidates(self) -> Any | None:
        """The current ``Prediction`` (up to 3 masks + scores), or None without prompts.

        Waits for the answer if it is still being computed.
        """
        return self._session.candidates

    @property
    def selected(self) -> int:
        """Index of the chosen candidate (0 when there are none)."""
        return self._session.selected

    @property
    def mask(self) -> np.ndarray:
        """``(H, W)`` bool: the chosen candidate at full size (all False without prompts).

        A new array each time: changing it does not change the widget.
        """
        return self._session.mask

    @property
    def objects(self) -> tuple[ObjectRecord, ...]:
        """The current image's committed objects: ``.label``, ``.color``, ``.mask`` (H, W) bool,
        ``.score``, ``.prompts``, ``.id``."""
        return self._session.objects

    @property
    def masks(self) -> np.ndarray:
        """``(N, H, W)`` bool stack of the current image's objects' masks (N may be 0)."""
        return self._session.masks

    @property
    def labels(self) -> np.ndarray:
        """``(H, W)`` int32 label image: 0 background, ``i`` for object ``i`` (1-based; later on top)."""
        return self._session.labels

    @property
    def editing(self) -> int | None:
        """Position in :attr:`objects` of the object being edited, or None."""
        return self._session.editing

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``predictions``, ``previews``, ``events``."""
        return self._session.stats

    # ================================================================== what the tests and tools look at
    @property
    def _viewport(self) -> Any:
        return self._session.viewport

    @property
    def _display_hw(self) -> tuple[int, int]:
        return self._session.viewport.display_hw

    @property
    def _history(self) -> Any:
        return self._session.history

    @property
    def _ready(self) -> Any:
        return self._session.ready

    @property
    def _render_lock(self) -> Any:
        return self._session.lock

    @property
    def _shown(self) -> dict:
        return self._painter.shown

    @property
    def _error(self) -> str | None:
        return self._session.error

    @_error.setter
    def _error(self, message: str | None) -> None:
        self._session.error = message
