"""``SamWidget``'s "segment everything": runs, proposals, accept / reject, the *Everything* panel's buttons.

:class:`_WidgetEverything` is the part of :class:`~sam_widget.ui.widget.SamWidget` that deals
with "segment everything" (the widget inherits it); the session does the work (see
:mod:`sam_widget.session.everything`), the proposals are drawn by
:mod:`.everything_view`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..state import ObjectRecord

if TYPE_CHECKING:  # pragma: no cover
    from .widget import SamWidget

__all__ = ["_WidgetEverything"]


class _WidgetEverything:
    """Segment everything through the widget (see :mod:`.widget_everything`).

    A mixin of ``SamWidget``: relies on ``self._session`` (the
    :class:`~sam_widget.session.Session`), ``self._everything_params`` (a dict),
    ``self._everything_panel`` (the ``EverythingPanel``), all set by ``SamWidget.__init__``,
    and on ``SamWidget._ui_call`` (a button's errors go to the status line).
    """

    # ------------------------------------------------------------------ segment everything
    def segment_everything(self, *, progress: bool = False, timeout: float | None = None, **params: Any) -> Any:
        """Every object of the current image as proposals, shown over it as they are found
        (what the *Everything* button and the E key do); waits and returns the result (a
        ``Proposals``, sorted by predicted IoU, highest first).

        ``params``: ``Segmenter.segment_everything``'s (``points_per_side=32``,
        ``pred_iou_thresh=0.88``, ``stability_score_thresh=0.95``, ...). Then click a
        proposal to accept it (shift + click rejects it), or call :meth:`accept` /
        :meth:`accept_all`. A run still going is stopped first; ``ValueError`` /
        ``TypeError`` name a bad parameter; finding nothing returns an empty result.
        """
        return self._session.segment_everything(progress=progress, timeout=timeout, **params)

    @property
    def everything_params(self) -> dict[str, Any]:
        """The parameters the *Everything* button (and the E key) run with: a dict of
        ``segment_everything`` parameters, ``{}`` (SAM's defaults) unless set, e.g.
        ``w.everything_params = dict(points_per_side=16, pred_iou_thresh=0.8)``. Checked when
        set (``ValueError`` / ``TypeError`` naming the bad one)."""
        return dict(self._everything_params)

    @everything_params.setter
    def everything_params(self, params: dict[str, Any]) -> None:
        if not isinstance(params, dict):
            raise TypeError(f"everything_params must be a dict of segment_everything parameters, not {type(params).__name__}.")
        self._session._engine.everything_params(dict(params))
        self._everything_params = dict(params)

    def stop_everything(self) -> bool:
        """Stop a run that is going (the *Stop* button); it keeps what it found (partial)."""
        return self._session.stop_everything()

    @property
    def proposals(self) -> Any | None:
        """The current image's proposals (``Proposals``; partial while the run goes on), or None."""
        return self._session.proposals

    @property
    def pending_proposals(self) -> tuple[int, ...]:
        """Positions in :attr:`proposals` of those still shown (neither accepted nor rejected)."""
        return self._session.pending_proposals

    @property
    def everything_run(self) -> Any | None:
        """The run the current proposals come from (``.running``, ``.progress``, ``.partial``), or None."""
        return self._session.everything_run

    def accept(self, index: int, label: str | None = None) -> ObjectRecord:
        """Proposal ``index`` (position in :attr:`proposals`) becomes an object (same as
        clicking on it): editable, undoable, exported like any object."""
        return self._session.accept(index, label)

    def accept_all(self) -> tuple[ObjectRecord, ...]:
        """Every proposal still shown becomes an object, largest first (*Accept all*; one undo step)."""
        return self._session.accept_all()

    def reject(self, index: int) -> "SamWidget":
        """Hide proposal ``index`` (same as shift + clicking on it; undoable)."""
        self._session.reject(index)
        return self

    def clear_proposals(self) -> "SamWidget":
        """Hide every proposal (*Clear proposals*; undoable; stops a run that is going)."""
        self._session.clear_proposals()
        return self

    # ------------------------------------------------------------------ the Everything panel's buttons
    def _wire_everything(self) -> None:
        e = self._everything_panel
        e.run_btn.on_click(lambda _: self._ui_call(self._start_everything))
        e.stop_btn.on_click(lambda _: self._ui_call(self.stop_everything))
        e.accept_all_btn.on_click(lambda _: self._ui_call(self.accept_all))
        e.clear_btn.on_click(lambda _: self._ui_call(self.clear_proposals))

    def _start_everything(self) -> None:
        """The *Everything* button / E key: start a run with the default parameters; return at once."""
        self._session.start_everything(**self.everything_params)
