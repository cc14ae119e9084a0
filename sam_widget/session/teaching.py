"""A session's display mask, threshold, explanation, reproducing code and model record.

:class:`SessionTeaching` is the part of :class:`~sam_widget.session.Session` that shows and
explains the current mask (the session inherits it): the mask at the display size for views,
the logit threshold it is cut at, :meth:`~SessionTeaching.explain` (see :mod:`.explain`),
:meth:`~SessionTeaching.to_code` (see :mod:`sam_widget.provenance`) and the model's record.
No widgets and no torch are imported here.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from .threshold import check_threshold, cut_mask

if TYPE_CHECKING:  # pragma: no cover
    from .explain import Explanation

__all__ = ["SessionTeaching"]


class SessionTeaching:
    """The display mask, :attr:`threshold`, :meth:`explain`, :meth:`to_code` and
    :meth:`model_info` (see :mod:`.teaching`).

    A mixin of :class:`~sam_widget.session.Session`: relies on ``self._threshold``,
    ``self._engine`` (the ``EngineLink``) and ``self._notifier``, set by ``Session.__init__``,
    and on its ``current`` and ``viewport``.
    """

    # ================================================================== display (for views)
    def display_mask(self) -> np.ndarray | None:
        """The chosen candidate at the display size and :attr:`threshold` (for an overlay), or
        None if there is none yet. How long it took is kept in the slot's ``timings``."""
        from .core import selected_of  # here, not at the top: core imports this module

        snap = self.current
        pred = snap.prediction
        if pred is None:
            return None
        t0 = time.perf_counter()
        hw = self.viewport.display_hw
        out = cut_mask(pred, selected_of(snap), self._threshold, hw)
        snap.slot.timings.update(display_s=time.perf_counter() - t0, display_hw=tuple(hw))
        return out

    # ================================================================== teaching and provenance
    @property
    def threshold(self) -> float:
        """The logit threshold the current mask is cut at: a pixel is in the mask where the
        upsampled logits exceed it. SAM's is 0.0 (``Sam.mask_threshold``); higher values give
        smaller masks, lower ones larger. Applies to :attr:`mask`, the overlay and
        :meth:`commit` (the object remembers it); not to an object being edited before new
        prompts (its kept mask is shown).

        Setting it: ``TypeError`` for a non-number, ``ValueError`` for NaN / infinity or a
        value outside the current candidate's low-res logits' range (``explain().logits_range``;
        without logits any finite number is taken). The state is unchanged then.
        """
        return self._engine.mask_threshold if self._threshold is None else self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._check_open()
        t = check_threshold(value, self._logits_range())
        self._threshold = None if t == self._engine.mask_threshold else t
        self._notifier.changed()

    def _logits_range(self) -> tuple[float, float] | None:
        from .core import selected_of  # here, not at the top: core imports this module

        snap = self.current
        pred = snap.prediction
        if pred is None or getattr(pred, "logits", None) is None:
            return None
        lg = pred.logits[selected_of(snap)]
        return float(lg.min()), float(lg.max())

    def explain(self, size: tuple[int, int] | None = None) -> "Explanation":
        """What the model did for the current prompts, as data (the *Explain* panel's content):
        the candidates with predicted IoU and stability score, the chosen one's low-res logits,
        the mask at :attr:`threshold`, the prompts in logit coordinates, per-stage timings and
        totals. ``size``: ``(h, w)`` of the returned masks (default: the image's). Waits for
        an answer being computed. See :class:`~sam_widget.session.explain.Explanation`."""
        from .explain import explain

        return explain(self, size)

    def to_code(self, index: int | None = None, objects: Any = None) -> str:
        """A Python cell that makes the objects' masks again with plain ``segment_anything``
        (``sam_model_registry``, ``SamPredictor``): the checkpoint, the image, every object's
        chain of ``predict`` calls (refinements pass the previous low-res logits as
        ``mask_input``), the kept candidate, and an assertion against the saved mask
        (bit-identical in exact mode, IoU >= 0.99 otherwise).

        ``index``: one image (default: every image with objects); ``objects``: positions in
        that image's objects (default: all). No objects: a valid cell that only says so.
        See :mod:`sam_widget.provenance`.
        """
        from ..provenance import session_code

        return session_code(self, index=index, objects=objects)

    def model_info(self) -> dict[str, Any]:
        """How the model can be built again: ``name``, ``checkpoint`` (absolute path or None),
        ``exact``, ``precision``, ``device`` (for a session file's ``model`` entry)."""
        return self._engine.model_info()
