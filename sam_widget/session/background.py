"""A session's work off the caller's thread: load the model, encode, answer prompts, previews, prefetch.

:class:`Background` owns the two threads (:mod:`.worker`) and is what they run; the session
asks it for work (``request``) and waits on it (``wait``, ``answer``).
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from typing import TYPE_CHECKING

import numpy as np

from ..images import ImageError
from ..state import PredictionSlot
from .pages import Page
from .provenance import logits_for
from .worker import Prefetcher, Worker

if TYPE_CHECKING:  # pragma: no cover
    from .core import Session

__all__ = ["Background"]

_LIVE: "weakref.WeakSet[Background]" = weakref.WeakSet()
_EXIT_JOIN_S = 120.0  # at interpreter exit: how long to let a running encode finish


@atexit.register
def _stop_all_at_exit() -> None:
    """Stop every session's threads and wait for them before Python tears down: a thread still
    inside torch while the interpreter finalises aborts the process ("terminate called without
    an active exception")."""
    live = list(_LIVE)
    for bg in live:
        bg.stop()
    deadline = time.monotonic() + _EXIT_JOIN_S
    for bg in live:
        bg.join(max(0.0, deadline - time.monotonic()))


class Background:
    """Runs on the session's worker and prefetch threads."""

    def __init__(self, session: "Session") -> None:
        self.s = session
        self.worker = Worker(self)
        self.prefetcher = Prefetcher(self)
        self._awaited: dict[int, tuple[Page, PredictionSlot]] = {}

    def start(self) -> None:
        _LIVE.add(self)
        self.worker.start()
        self.prefetcher.start()

    def stop(self, wait: float = 0.0) -> None:
        """Ask both threads to stop; ``wait``: seconds to wait for them (a model load or an
        encode in progress finishes first)."""
        self.worker.stop()
        self.prefetcher.stop()
        if wait > 0:
            self.join(wait)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in (self.worker, self.prefetcher):
            if t.is_alive() and t is not threading.current_thread():
                t.join(max(0.0, deadline - time.monotonic()))

    # ================================================================== the caller's side
    def answer(self, slot: PredictionSlot | None) -> None:
        """Wait for ``slot``'s answer, and for the views and callbacks to have been told."""
        if slot is not None:
            self.wait(slot)
            # The worker tells the views just after filling the slot: wait for that too, so
            # ``revision`` and the callbacks are current when a Python call returns.
            if threading.current_thread() is not self.worker:
                self.worker.idle.wait()

    def wait(self, slot: PredictionSlot) -> None:
        """Block until ``slot`` is answered (raises what went wrong)."""
        s = self.s
        if not slot.done:
            s.wait_ready()
            if self.worker.stopped:
                raise RuntimeError("this SamWidget was closed before the mask was computed.")
            if threading.current_thread() is self.worker:
                # e.g. an on_change callback (run on the worker) calls add_point: answer inline.
                self.compute_current()
                if not slot.done:
                    raise RuntimeError("this state was replaced while its mask was being computed.")
            else:
                self._awaited[id(slot)] = (s._page(s.index), slot)
                self.worker.request()
                try:
                    while not slot.wait(0.5):
                        if self.worker.stopped:  # closed meanwhile: nobody will answer
                            raise RuntimeError("this SamWidget was closed before the mask was computed.")
                finally:
                    self._awaited.pop(id(slot), None)
        if slot.error is not None:
            raise RuntimeError(f"the prediction failed: {slot.error}")

    # ================================================================== worker thread
    def load_model(self) -> None:
        """Load the model if needed, then encode the current image."""
        s = self.s
        s._page(s.index).encode_started = time.perf_counter()
        self._start_ticker()
        s._engine.load()
        s._model_ready.set()
        self.compute_current()

    def model_failed(self, exc: BaseException) -> None:
        s = self.s
        s.model_error = exc
        s._model_ready.set()
        for page in s._pages.existing():
            page.ready.set()
        s._notifier.status()

    def _start_ticker(self) -> None:
        s = self.s

        def tick() -> None:
            while not s.ready.wait(1.0) and not s.closed:
                s._notifier.status()

        threading.Thread(target=tick, name="SamWidget-status", daemon=True).start()

    def ensure_encoded(self, page: Page) -> None:
        """Make the page's image the segmenter's (encoding it unless cached)."""
        if page.error is not None:
            return
        s = self.s
        seg = s._engine.segmenter
        if page.ready.is_set() and seg.image is not None and seg.image is page.seg_image:
            return
        first = not page.ready.is_set()
        if first and page.encode_started is None:  # (the first image's clock started with the model load)
            page.encode_started = time.perf_counter()
            s._notifier.status()
            self._start_ticker()
        try:
            rgb = s.images.load(page.index)
            calls = seg.stats.get("encoder_calls", 0)
            s._engine.set_image(page, rgb)
            if first:
                page.encode_s = seg.stats.get("last_encode_s") if seg.stats.get("encoder_calls", 0) != calls else None
        except ImageError as exc:
            page.error = str(exc)
        page.ready.set()
        if first:
            s._notifier.status()

    def compute_current(self) -> None:
        """Encode the current image if needed, answer its newest prompts, then tell the views."""
        s = self.s
        page = s._page(s.index)
        self.ensure_encoded(page)
        snap = page.history.current
        if page.error is None and snap.slot is not None and not snap.slot.done:
            self._answer_slot(page, snap.slot)
        # Python callers waiting on another image, or on a state of this one that a newer one
        # (a click on the page meanwhile) replaced: answer theirs too, or they would wait forever
        for other, slot in list(self._awaited.values()):
            if not slot.done and other.error is None:
                self._answer_slot(other, slot)
        # Draw whatever is current now: it may be a newer state with the same answered slot
        # (an object renamed meanwhile); if its slot is still unanswered, go again.
        s._notifier.changed()
        cur = s.current.slot
        if cur is not None and not cur.done:
            self.worker.request()
        self._schedule_prefetch()

    def _answer_slot(self, page: Page, slot: PredictionSlot) -> None:
        s = self.s
        mask_input, multimask = self._prediction_request(slot, page)
        try:
            rgb = s.images.load(page.index)
            shown = s.viewport.display_hw if page.index == s.index else None  # the engine makes the overlay's mask too
            pred = s._engine.predict(page, rgb, **slot.prompts.as_arrays(), mask_input=mask_input, multimask=multimask,
                                     display_size=shown)
        except Exception as exc:  # noqa: BLE001 - shown to the user, raised to API callers
            slot.fail(str(exc))
            s.error = f"prediction failed: {exc}"
        else:
            slot.timings = dict(s._engine.last_timing)
            slot.fill(pred, mask_input, multimask)
            s._budget.touch(pred)
            s.stats["predictions"] += 1

    def _prediction_request(self, slot: PredictionSlot, page: Page) -> tuple[np.ndarray | None, bool]:
        """``(mask_input, multimask)`` for a slot: refine from the nearest answered earlier step."""
        if not self.s.refine:
            return None, True
        base = slot.base
        while base is not None and base[0].prediction is None:
            base = base[0].base
        if base is None:
            return None, True
        bslot, bsel = base
        pred = bslot.prediction
        sel = bsel if bsel is not None else pred.best
        if pred.logits is None:  # a loaded object (its chain replayed) or a mask brought in (from the mask)
            note: dict = {}
            pred.logits = logits_for(self.s, page, pred.object, note)
            pred.from_mask = bool(note.get("from_mask"))  # provenance: the chain then starts from the mask
        slot.source = (bslot, sel)  # provenance: this step refines that one's candidate
        return pred.logits[sel : sel + 1], False

    def compute_preview(self, point: tuple[int, int]) -> None:
        """Mask under the pointer, kept only while there are no prompts."""
        from .core import Preview

        s = self.s
        index = s.index
        want = s._preview_wanted
        if want is None or want[0] != index or not s.prompts.is_empty:
            return
        page = s._page(index)
        self.ensure_encoded(page)
        if page.error is not None:
            return
        pred = s._engine.predict(page, s.image, points=[point], labels=[1], multimask=True,
                                 display_size=s.viewport.display_hw)
        s.stats["previews"] += 1
        disp = pred.mask_at_size(pred.best, s.viewport.display_hw)
        # Kept even if the pointer has moved on: the newest position is queued and comes
        # next (coalesced), and a moving pointer should see masks follow it, not nothing.
        with s.lock:
            want = s._preview_wanted
            if want is None or want[0] != s.index or not s.prompts.is_empty:
                return
            s.preview = Preview(index, point, disp)
        s._notifier.changed()

    # ================================================================== prefetch thread
    def _schedule_prefetch(self) -> None:
        s = self.s
        if not s.prefetch or s.closed or s.model_error is not None:
            return
        i = s.index
        wanted = [k for k in (i + 1, i - 1) if 0 <= k < len(s.images)]
        self.prefetcher.request([k for k in wanted if not _encoded(s._pages.get(k))])

    def prefetch(self, index: int) -> None:
        """Read image ``index`` and compute its embedding into the engine's cache."""
        s = self.s
        if s.closed or abs(index - s.index) > 1:
            return
        page = s._page(index)
        if _encoded(page):
            return
        try:
            rgb = s.images.load(index)
        except ImageError as exc:
            page.error = str(exc)
            page.ready.set()
            return
        try:
            s._engine.prefetch(rgb)
        finally:  # done, or failed (then the image is encoded when shown): not asked for again
            page.prefetched = True


def _encoded(page: Page | None) -> bool:
    return page is not None and (page.ready.is_set() or page.prefetched)
