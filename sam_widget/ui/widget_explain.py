"""``SamWidget``'s teaching and provenance: the threshold, the *Explain* panel, ``to_code()``.

:class:`_WidgetExplain` is the part of :class:`~sam_widget.ui.widget.SamWidget` that explains
what the model did (the widget inherits it); the data comes from
:mod:`sam_widget.session.explain`, the panel is :mod:`.explain_panel`, the code
:mod:`sam_widget.provenance`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._checks import as_flag

if TYPE_CHECKING:  # pragma: no cover
    from .widget import SamWidget

__all__ = ["_WidgetExplain"]


class _WidgetExplain:
    """The threshold, :meth:`explain`, the *Explain* panel and :meth:`to_code` (see :mod:`.widget_explain`).

    A mixin of ``SamWidget``: relies on ``self._session`` (the
    :class:`~sam_widget.session.Session`), ``self._painter`` (the ``Painter``: its last
    overlay update) and ``self._explain`` (the ``ExplainPanel``), all set by
    ``SamWidget.__init__``.
    """

    # ================================================================== teaching and provenance
    @property
    def threshold(self) -> float:
        """The logit threshold the mask is cut at (SAM's: 0.0); the *Explain* panel's slider.

        Setting it changes :attr:`mask`, the canvas and what :meth:`commit` keeps.
        ``ValueError`` for NaN or a value outside the current candidate's logits' range,
        ``TypeError`` for a non-number (nothing changes then). See ``Session.threshold``."""
        return self._session.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self._session.threshold = value

    def explain(self, size: tuple[int, int] | None = None) -> Any:
        """Everything the *Explain* panel shows, as data: the candidates (predicted IoU,
        stability score, masks), the chosen candidate's low-res logits with the prompts placed
        on them, the mask at :attr:`threshold`, per-stage timings of the last prediction
        (with the overlay's encoding and the bytes sent to the browser) and the totals.
        ``size``: ``(h, w)`` of the masks (default: the image's). Returns an
        :class:`~sam_widget.session.explain.Explanation`."""
        from ..session.explain import explain

        return explain(self._session, size, view=self._painter.last_update)

    def show_explain(self, on: bool = True) -> "SamWidget":
        """Open (or close) the *Explain* panel beside the canvas (the toolbar's *Explain*, key X)."""
        self._explain.show(as_flag(on, "on"))
        return self

    def to_code(self, index: int | None = None, objects: Any = None) -> str:
        """A runnable Python cell that makes the objects' masks again with plain
        ``segment_anything`` (``sam_model_registry``, ``SamPredictor``) and checks them against
        the saved masks: bit for bit in exact mode, IoU >= 0.99 otherwise. ``index``: one
        image (default: every image with objects); ``objects``: positions in its objects.
        See ``Session.to_code`` and :mod:`sam_widget.provenance`."""
        return self._session.to_code(index=index, objects=objects)
