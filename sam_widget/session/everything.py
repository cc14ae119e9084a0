"""Segment everything in a session: runs in the background, proposals shown, accepted or rejected.

``Session.start_everything(**params)`` starts SAM's automatic mask generator
(``Segmenter.segment_everything``) on the current image on a thread of its own, so the
kernel stays free and clicks are answered meanwhile (the engine does not hold the
segmenter's lock while it decodes). After every batch of points the proposals found so far
land in the run (:class:`EverythingRun`) and the views are told, so they draw them while the
run goes on. ``Session.segment_everything(**params)`` does the same and waits for the result.

Rules (documented in the README):

* **One run at a time per session; the newest wins.** Starting a run while one is running
  stops the running one (it ends with what it found, ``partial=True``; its proposals stay in
  the undo history) and starts the new one once the engine has let the first go (within
  one batch).
* **Proposals belong to their image.** They are part of that image's state (the
  :class:`ProposalState` in its :class:`~sam_widget.state.Snapshot`), so they are there
  again when you come back. Going to another image (``next``/``prev``/``goto``) stops a run
  that is still going: what it found stays with its image, marked partial.
* **Everything is undoable.** Starting a run, accepting, rejecting, "accept all" and
  "clear proposals" are each one undo step (undoing the start hides the proposals; the
  run itself is not undone). Accepted proposals are ordinary objects.
* **Indices** passed to ``accept`` / ``reject`` are positions in ``session.proposals``
  (sorted by predicted IoU, highest first, as the engine returns them). While a run is
  going that list grows and is re-sorted after each batch: accept by position once it has
  finished, or use :meth:`EverythingControl.proposal_at` (what a click does).
* A run that finds nothing is not an error: the result is empty and the status line says so.

Coordinates: image pixels ``(x, y)`` = (column, row); masks ``(H, W)`` bool at the image size;
the overlay pieces for views are at the display size. No widgets, no torch imported here.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from ..images import ImageError
from ..state import ObjectRecord, Prompts, Snapshot, object_color

if TYPE_CHECKING:  # pragma: no cover
    from ..engine.proposals import Proposal, Proposals
    from .core import Session

__all__ = ["EverythingRun", "ProposalState", "EverythingControl", "proposal_key"]

log = logging.getLogger(__name__)

_WAIT_POLL_S = 0.1


def proposal_key(p: "Proposal") -> tuple:
    """What identifies a proposal across the intermediate results of one run (each batch
    re-assembles the list, with new ``Proposal`` objects for the same masks)."""
    return (p.crop_box, p.point, p.score, p.bbox)


class EverythingRun:
    """One "segment everything" run on one image of a session; its thread fills it in.

    Attributes (read them from any thread):
      index: the image it segments (position in ``session.images``).
      params: the parameters (``SamAutomaticMaskGenerator``'s names) as a dict.
      proposals: the newest :class:`~sam_widget.engine.proposals.Proposals`: partial ones
        after each batch, the final result at the end; None before the first batch.
      batches, points, points_total: progress (points decoded of all grid points).
      error: why the run failed (None unless it did).
      stopped: True once :meth:`stop` was called (Stop button, another run, another image,
        clearing the proposals, closing the session).
      started_s, first_batch_s, finished_s: ``time.perf_counter()`` of the start, of the first
        batch's proposals, of the end (None until then).
      version: +1 every time ``proposals`` changes (views redraw when it does).
    """

    def __init__(self, index: int, params: dict[str, Any], image_hw: tuple[int, int], display_hw: tuple[int, int]) -> None:
        self.index = int(index)
        self.params = dict(params)
        self.image_hw = tuple(image_hw)
        self.display_hw = tuple(display_hw)
        self.proposals: "Proposals | None" = None
        self.batches = 0
        self.points = 0
        self.points_total = 0
        self.error: str | None = None
        self.stopped = False
        self.started_s = time.perf_counter()
        self.first_batch_s: float | None = None
        self.finished_s: float | None = None
        self.version = 0
        self.cancel_event = threading.Event()
        self._done = threading.Event()
        self._lock = threading.Lock()
        self._pieces: dict[tuple, tuple[int, int, np.ndarray] | None] = {}
        self._colors: dict[tuple, int] = {}

    def __repr__(self) -> str:
        n = len(self.proposals) if self.proposals is not None else 0
        state = "running" if self.running else ("failed" if self.error else ("partial" if self.partial else "done"))
        return f"EverythingRun(image {self.index}, {state}, {n} proposals, {100 * self.progress:.0f} %)"

    # ---------------------------------------------------------------- reading
    @property
    def running(self) -> bool:
        """True until the run has ended (finished, stopped or failed)."""
        return self.finished_s is None

    @property
    def done(self) -> bool:
        """True once the run has ended and the views were told (what :meth:`wait` waits for)."""
        return self._done.is_set()

    @property
    def partial(self) -> bool:
        """True when the run did not decode every point (stopped), or is still going."""
        if self.running:
            return True
        return self.proposals is None or self.proposals.partial

    @property
    def progress(self) -> float:
        """Fraction of the grid points decoded, 0..1."""
        if self.points_total <= 0:
            return 1.0 if self.done and not self.partial else 0.0
        return min(1.0, self.points / self.points_total)

    def stop(self) -> None:
        """Stop the run before its next batch; it keeps what it found (``partial``)."""
        self.stopped = True
        self.cancel_event.set()

    def wait(self, timeout: float | None = None) -> "Proposals":
        """Block until the run has ended and been drawn; its final proposals. ``TimeoutError``,
        or ``RuntimeError`` with the reason when it failed."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"segment everything was still running after {timeout} s.")
        if self.error is not None:
            raise RuntimeError(f"segment everything failed: {self.error}")
        assert self.proposals is not None
        return self.proposals

    # ---------------------------------------------------------------- for views
    def color(self, p: "Proposal") -> tuple[int, int, int]:
        """The colour proposal ``p`` is drawn in: fixed for the whole run (the order in which
        proposals first appeared), so colours do not jump from batch to batch."""
        key = proposal_key(p)
        with self._lock:
            n = self._colors.setdefault(key, len(self._colors))
        return object_color(n)

    def piece(self, p: "Proposal") -> tuple[int, int, np.ndarray] | None:
        """Proposal ``p`` at the display size, cut to its bounding box: ``(x0, y0, mask)``
        (display pixels; ``mask`` ``(h, w)`` bool), or None when it covers no display pixel.
        Made from the low-res logits in one resampling (``Proposal.mask_at_size``), once."""
        key = proposal_key(p)
        with self._lock:
            if key in self._pieces:
                return self._pieces[key]
        m = p.mask_at_size(self.display_hw)
        rows = np.flatnonzero(m.any(axis=1))
        if rows.size == 0:
            out = None
        else:
            cols = np.flatnonzero(m[rows[0] : rows[-1] + 1].any(axis=0))
            y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
            out = (x0, y0, np.ascontiguousarray(m[y0:y1, x0:x1]))
        with self._lock:
            self._pieces[key] = out
        return out

    # ---------------------------------------------------------------- the run's thread
    def _update(self, props: "Proposals") -> None:
        with self._lock:
            self.proposals = props
            self.batches = int(props.stats.get("batches", self.batches + 1))
            self.points = int(props.stats.get("points", self.points))
            self.points_total = int(props.stats.get("points_total", self.points_total))
            if self.first_batch_s is None:
                self.first_batch_s = time.perf_counter()
            self.version += 1

    def _end(self, props: "Proposals | None", error: str | None) -> None:
        with self._lock:
            if props is not None:
                self.proposals = props
                self.points = int(props.stats.get("points", self.points))
                self.points_total = int(props.stats.get("points_total", self.points_total))
                self.batches = int(props.stats.get("batches", self.batches))
            self.error = error
            self.finished_s = time.perf_counter()
            self.version += 1


@dataclass(frozen=True)
class ProposalState:
    """The proposals shown over one image, as part of its undoable state.

    ``run``: the :class:`EverythingRun` they come from; ``accepted``: ``(proposal key,
    object id)`` of each accepted one; ``rejected``: keys of the rejected ones. The others
    are *pending*: drawn over the image, waiting for a click.
    """

    run: EverythingRun
    accepted: tuple[tuple[tuple, int], ...] = ()
    rejected: frozenset = frozenset()

    @property
    def proposals(self) -> "Proposals | None":
        return self.run.proposals

    def object_id(self, p: "Proposal") -> int | None:
        """The id of the object proposal ``p`` became, or None."""
        key = proposal_key(p)
        return next((oid for k, oid in self.accepted if k == key), None)

    def state_of(self, p: "Proposal") -> str:
        """``"pending"``, ``"accepted"`` or ``"rejected"``."""
        key = proposal_key(p)
        if any(k == key for k, _ in self.accepted):
            return "accepted"
        return "rejected" if key in self.rejected else "pending"

    def pending(self) -> tuple[int, ...]:
        """Positions (in :attr:`proposals`) of the proposals still waiting for a decision."""
        props = self.run.proposals
        if props is None:
            return ()
        done = {k for k, _ in self.accepted} | set(self.rejected)
        return tuple(i for i, p in enumerate(props) if proposal_key(p) not in done)


class EverythingControl:
    """A session's "segment everything": starts and stops runs, turns proposals into objects.

    The session forwards its public methods here (``start_everything``, ``accept``, ...);
    see the module docstring for the rules.
    """

    def __init__(self, session: "Session") -> None:
        self.s = session
        self.active: EverythingRun | None = None  # the run whose thread is going, if any
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # ================================================================== state
    @property
    def state(self) -> ProposalState | None:
        """The current image's proposals (None when it shows none)."""
        return self.s.current.proposals

    @property
    def run(self) -> EverythingRun | None:
        st = self.state
        return st.run if st is not None else None

    @property
    def proposals(self) -> "Proposals | None":
        st = self.state
        return st.run.proposals if st is not None else None

    def pending(self) -> tuple[int, ...]:
        st = self.state
        return st.pending() if st is not None else ()

    # ================================================================== runs
    def start(self, params: dict[str, Any], progress: bool = False) -> EverythingRun:
        """Start a run on the current image (stopping a running one); returns at once."""
        s = self.s
        if not isinstance(progress, (bool, np.bool_)):
            raise TypeError(f"progress must be True or False, not {progress!r}.")
        s._check_open()
        if s.model_error is not None:
            s.wait_ready()  # raises: the model never loaded
        s._check_image()
        checked = s._engine.everything_params(params)  # ValueError / TypeError naming the parameter
        page = s._page(s.index)
        vp = s.viewport
        run = EverythingRun(s.index, checked.as_dict(), vp.image_hw, vp.display_hw)
        with self._lock:
            old, self.active = self.active, run
        if old is not None:
            old.stop()
        s._push(replace(s.current, proposals=ProposalState(run)))
        thread = threading.Thread(
            target=self._work, args=(run, page, checked, bool(progress)), name="SamWidget-everything", daemon=True
        )
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return run

    def stop(self) -> bool:
        """Stop the running run (Stop button); True if one was running."""
        with self._lock:
            run = self.active
        if run is None or not run.running:
            return False
        run.stop()
        return True

    def join(self, timeout: float | None = None) -> None:
        """Wait for the run threads to end (tests, close)."""
        for t in list(self._threads):
            t.join(timeout)

    def _work(self, run: EverythingRun, page: Any, params: Any, progress: bool) -> None:
        s = self.s
        props, error = None, None
        try:
            while not page.ready.wait(_WAIT_POLL_S):  # the model loads / the image is encoded
                if run.cancel_event.is_set() or s.closed:
                    break
            if page.ready.is_set() and not run.cancel_event.is_set():
                if s.model_error is not None:
                    raise RuntimeError(f"the model could not load: {s.model_error}")
                if page.error is not None:
                    raise ImageError(page.error)
                rgb = s.images.load(page.index)

                def on_batch(partial: "Proposals") -> None:
                    run._update(partial)
                    s._notifier.changed()

                props = s._engine.segment_everything(
                    page, rgb, params, progress=progress, cancel=run.cancel_event, on_batch=on_batch
                )
            else:
                from ..engine.proposals import Proposals

                props = Proposals([], run.image_hw, True, run.params, {"points": 0, "points_total": 0, "batches": 0})
        except Exception as exc:  # noqa: BLE001 - shown in the status line, raised to a waiting caller
            log.debug("segment everything failed", exc_info=True)
            error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, (ValueError, RuntimeError)) else str(exc)
        finally:
            run._end(props, error)
            with self._lock:
                if self.active is run:
                    self.active = None
            try:
                s._notifier.changed()
            finally:
                run._done.set()

    # ================================================================== decisions
    def _state_or_raise(self) -> ProposalState:
        st = self.state
        if st is None or st.run.proposals is None:
            raise ValueError("there are no proposals on this image: press Everything (or call segment_everything()) first.")
        return st

    def _proposal(self, st: ProposalState, index: Any) -> "Proposal":
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"proposal index must be an int, not {type(index).__name__}.")
        props = st.run.proposals
        n = len(props)
        if not 0 <= index < n:
            raise IndexError(f"proposal {index} does not exist; there are {n} (0..{n - 1})." if n else "there are no proposals (the run found none).")
        return props[int(index)]

    def accept(self, index: int, label: str | None = None) -> ObjectRecord:
        """Proposal ``index`` becomes an object (one undo step); ``ValueError`` if it was accepted already."""
        if label is not None and not isinstance(label, str):
            raise TypeError(f"label must be a string, not {type(label).__name__}.")
        s = self.s
        s._check_open()
        st = self._state_or_raise()
        p = self._proposal(st, index)
        oid = st.object_id(p)
        if oid is not None:
            raise ValueError(f"proposal {index} was accepted already (it is object id {oid}).")
        if p.area == 0:
            raise ValueError(f"proposal {index} is empty (0 pixels); there is nothing to accept.")
        snap = _accepted(s.current, st, [p], [label])
        s._push(snap)
        return snap.objects[-1]

    def accept_all(self) -> tuple[ObjectRecord, ...]:
        """Every pending proposal becomes an object, largest first (smaller ones on top in the
        label image), as one undo step; () when none is pending."""
        s = self.s
        s._check_open()
        st = self.state
        if st is None or st.run.proposals is None:
            return ()
        props = st.run.proposals
        todo = [props[i] for i in st.pending() if props[i].area > 0]
        if not todo:
            return ()
        todo.sort(key=lambda p: -p.area)
        before = len(s.current.objects)
        snap = _accepted(s.current, st, todo, [None] * len(todo))
        s._push(snap)
        return snap.objects[before:]

    def reject(self, index: int) -> None:
        """Hide proposal ``index`` (one undo step; a no-op if rejected already). ``ValueError``
        for an accepted one (delete its object instead)."""
        s = self.s
        s._check_open()
        st = self._state_or_raise()
        p = self._proposal(st, index)
        state = st.state_of(p)
        if state == "accepted":
            raise ValueError(f"proposal {index} was accepted (object id {st.object_id(p)}): delete the object instead.")
        if state == "rejected":
            return
        s._push(replace(s.current, proposals=replace(st, rejected=st.rejected | {proposal_key(p)})))

    def clear(self) -> None:
        """Hide every proposal of this image (one undo step) and stop its run if it is going."""
        s = self.s
        st = self.state
        if st is None:
            return
        if st.run.running:
            st.run.stop()
        s._push(replace(s.current, proposals=None))

    def proposal_at(self, x: float, y: float) -> int | None:
        """Position of the pending proposal at image pixel ``(x, y)`` (column, row), or None.

        Where pending proposals overlap, the smallest one (the one drawn on top) wins.
        """
        st = self.state
        if st is None or st.run.proposals is None:
            return None
        H, W = st.run.image_hw
        c, r = int(x), int(y)
        if not (0 <= c < W and 0 <= r < H):
            return None
        props = st.run.proposals
        hits = []
        for i in st.pending():
            bx, by, bw, bh = props[i].bbox
            if bx <= c < bx + bw and by <= r < by + bh:
                hits.append(i)
        for i in sorted(hits, key=lambda i: props[i].area):
            if props[i].mask[r, c]:
                return i
        return None

    # ================================================================== for views
    def display_key(self) -> tuple:
        """The image and the pending proposals: what the proposals layer shows (it redraws when this changes)."""
        st = self.state
        if st is None or st.run.proposals is None:
            return (self.s.index, None)
        props = st.run.proposals
        return (self.s.index, st.run, tuple(proposal_key(props[i]) for i in st.pending()))

    def display_pieces(self) -> tuple[list[tuple[int, int, np.ndarray]], list[tuple[int, int, int]]]:
        """The pending proposals at the display size, largest first (so smaller ones are drawn
        on top): ``(pieces, colours)``, each piece ``(x0, y0, mask)`` in display pixels."""
        st = self.state
        if st is None or st.run.proposals is None:
            return [], []
        props = st.run.proposals
        order = sorted(st.pending(), key=lambda i: -props[i].area)
        pieces, colors = [], []
        for i in order:
            piece = st.run.piece(props[i])
            if piece is not None:
                pieces.append(piece)
                colors.append(st.run.color(props[i]))
        return pieces, colors

    def status_part(self) -> tuple[str, bool] | None:
        """The status line's piece about the proposals: ``(text, is_error)``, or None."""
        st = self.state
        if st is None:
            return None
        run = st.run
        n = len(run.proposals) if run.proposals is not None else 0
        if run.error is not None:
            return (f"segment everything failed: {run.error}", True)
        if run.running:
            if run.proposals is None:
                return ("everything: starting…" if self.s.ready.is_set() else "everything: waiting for the image embedding…", False)
            return (f"everything: {100 * run.progress:.0f} % · {n} proposal{'s' * (n != 1)} so far", False)
        if n == 0:
            what = "stopped before any proposal was found" if run.partial else "nothing passed the filters (try a lower pred_iou_thresh or stability_score_thresh)"
            return (f"everything: no proposals: {what}", False)
        acc, rej, left = len(st.accepted), len(st.rejected), len(st.pending())
        stopped = f", stopped at {100 * run.progress:.0f} %" if run.partial else ""
        hint = " (click accepts, shift + click rejects)" if left else ""
        return (f"{n} proposal{'s' * (n != 1)}{stopped}: {left} left, {acc} accepted, {rej} rejected{hint}", False)


def _accepted(snap: Snapshot, st: ProposalState, props: Iterable["Proposal"], labels: list[str | None]) -> Snapshot:
    """``snap`` with each proposal appended as an object ("object N" unless labelled): its
    full-size mask, predicted IoU, its grid point as the prompt and, for a whole-image
    proposal, its low-res logits (so refining it starts from them)."""
    objects, n = list(snap.objects), snap.next_object_id
    accepted = list(st.accepted)
    for p, label in zip(props, labels):
        mask = p.mask  # (H, W) bool, read-only, computed once
        logits = p.logits
        H, W = st.run.image_hw
        if logits is not None and tuple(p.crop_box) == (0, 0, W, H):
            logits = logits[None]
        else:
            logits = None  # a crop's logits do not cover the image: derived from the mask when refined
        prompts = Prompts(points=((float(p.point[0]), float(p.point[1])),), labels=(1,))
        name = (label or "").strip() or f"object {n}"
        objects.append(ObjectRecord(name, object_color(n - 1), mask, float(p.score), prompts, n, logits))
        accepted.append((proposal_key(p), n))
        n += 1
    return replace(snap, objects=tuple(objects), next_object_id=n, proposals=replace(st, accepted=tuple(accepted)))
