"""A session's "segment everything" calls: start / stop a run, its proposals, accept / reject.

:class:`SessionEverything` is the part of :class:`~sam_widget.session.Session` that offers
"segment everything" (the session inherits it); the work and the rules are in
:mod:`.everything`. No widgets and no torch are imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..state import ObjectRecord
from .everything import EverythingRun

if TYPE_CHECKING:  # pragma: no cover
    from .core import Session

__all__ = ["SessionEverything"]


class SessionEverything:
    """Segment everything on the current image (see :mod:`.everything_api`).

    A mixin of :class:`~sam_widget.session.Session`: relies on ``self._everything`` (the
    ``EverythingControl``), set by ``Session.__init__``.
    """

    # ================================================================== segment everything
    def segment_everything(self, *, progress: bool = False, timeout: float | None = None, **params: Any) -> Any:
        """Every object of the current image as proposals (SAM's automatic mask generator);
        waits for the result and returns it (a ``Proposals``, sorted by predicted IoU).

        ``params``: ``Segmenter.segment_everything``'s (``points_per_side=32``,
        ``pred_iou_thresh=0.88``, ``stability_score_thresh=0.95``, ``box_nms_thresh=0.7``,
        ``crop_n_layers=0``, ...); ``progress``: a tqdm bar. The proposals are shown over the
        image as they are found; accept them with :meth:`accept` / :meth:`accept_all`. Runs
        on a thread of its own (clicks are answered meanwhile); a run still going is
        stopped first. ``ValueError`` / ``TypeError`` naming a bad parameter (nothing
        started); a run that finds nothing returns an empty result. Rules:
        :mod:`sam_widget.session.everything`.
        """
        return self.start_everything(progress=progress, **params).wait(timeout)

    def start_everything(self, *, progress: bool = False, **params: Any) -> EverythingRun:
        """Like :meth:`segment_everything`, but returns the run at once (what the *Everything*
        button does): ``run.wait()``, ``run.stop()``, ``run.progress``, ``run.proposals``."""
        return self._everything.start(params, progress)

    def stop_everything(self) -> bool:
        """Stop a run that is going (it keeps what it found, marked partial); True if one was."""
        return self._everything.stop()

    @property
    def proposals(self) -> Any | None:
        """The current image's proposals (a ``Proposals``: partial while its run goes on), or None."""
        return self._everything.proposals

    @property
    def pending_proposals(self) -> tuple[int, ...]:
        """Positions in :attr:`proposals` of those neither accepted nor rejected (the ones drawn)."""
        return self._everything.pending()

    @property
    def everything_run(self) -> EverythingRun | None:
        """The run the current image's proposals come from (progress, partial, error), or None."""
        return self._everything.run

    def accept(self, index: int, label: str | None = None) -> ObjectRecord:
        """Proposal ``index`` (position in :attr:`proposals`) becomes an object: its full-size
        mask, predicted IoU, its grid point as the prompt (editable, undoable, exported like
        any object). ``IndexError`` / ``TypeError`` for a bad index, ``ValueError`` when there
        are no proposals or it was accepted already."""
        return self._everything.accept(index, label)

    def accept_all(self) -> tuple[ObjectRecord, ...]:
        """Every pending proposal becomes an object (largest first; one undo step)."""
        return self._everything.accept_all()

    def reject(self, index: int) -> "Session":
        """Hide proposal ``index`` (undoable). ``ValueError`` for an accepted one."""
        self._everything.reject(index)
        return self

    def clear_proposals(self) -> "Session":
        """Hide every proposal of the current image (undoable; stops its run if it is going)."""
        self._everything.clear()
        return self

    def proposal_at(self, x: float, y: float) -> int | None:
        """Position of the pending proposal under image pixel ``(x, y)`` (the smallest one
        where several overlap, as drawn), or None."""
        return self._everything.proposal_at(x, y)
