"""``Session``: click out objects on a set of images, with or without a widget.

A session owns the images (read lazily), one undo history per image, the segmenter (loaded
in the background) and two threads: the latest-wins worker that encodes and answers prompts,
and the prefetcher that encodes the next image while the user works on the current one.
Views (``SamWidget``) subscribe to it with :meth:`Session.subscribe` and redraw from its
state; scripts call the same methods the widget offers::

    s = Session(["a.jpg", "b.png"], model="tiny_shapes")
    s.add_point(120, 80); s.commit("cat"); s.next(); s.add_box(10, 10, 200, 150); s.commit()
    s.results[0].labels                      # (H, W) int32 label image of a.jpg

Coordinates are image pixels: points ``(x, y)`` = (column, row), boxes XYXY; masks are
``(H, W)`` bool at full image size. Python calls wait for their answer, so
``s.add_point(...); s.mask`` works in one line. No widgets and no torch are imported here.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import numpy as np

from .._checks import as_flag, as_timeout
from ..images import ImageError, to_rgb_uint8
from ..state import EditConflict, History, ObjectRecord, PredictionSlot, Prompts, Snapshot
from .engine_link import EngineLink
from .editing import SessionEditing
from .everything import EverythingControl
from .everything_api import SessionEverything
from .images import ImageSet, resolve_images
from .background import Background
from .files import SessionFiles
from .navigation import SessionNavigation
from .notify import Notifier
from .pages import DEFAULT_MASK_BUDGET, MaskBudget, Pages
from .status import SessionStatus
from .teaching import SessionTeaching
from .threshold import cut_mask

__all__ = ["Session", "SessionListener", "Preview"]


class SessionListener(Protocol):
    """What a view implements to follow a session (called on any thread).

    ``changed(session)``: the state may have changed (prompts, answer, objects, image,
    preview); called under :attr:`Session.lock`, so the last call sees the newest state.
    ``status(session)``: :attr:`Session.status` may read differently (progress, errors).
    """

    def changed(self, session: "Session") -> None: ...

    def status(self, session: "Session") -> None: ...


@dataclass(frozen=True)
class Preview:
    """The mask under the pointer (hover), before any prompt: ``mask`` at display size."""

    index: int
    point: tuple[int, int]
    mask: np.ndarray


class Session(SessionNavigation, SessionEditing, SessionEverything, SessionTeaching, SessionFiles):
    """Segment Anything over one image or a set of images, headless.

    Args:
      images: one image (``H x W x 3`` uint8 array, gray / RGBA / uint16 / float array, PIL
        image, file path) or a set: a list of those, a folder, or a glob pattern.
      segmenter: a ``Segmenter`` to use; None loads ``model`` / ``checkpoint`` in the background.
      model: ``"vit_b"``, ``"vit_l"``, ``"vit_h"``, ``"tiny_shapes"``, or None to infer it from
        ``checkpoint``. checkpoint: a local ``.pth`` file; None downloads the official one.
      device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``.
      refine: further prompts refine the chosen candidate (SamPredictor's interactive recipe).
      display_size: longest side of the shown image (previews and overlays are at that size).
      prefetch: encode the next (and previous) image in the background.
      mask_cache_bytes: budget of full-size candidate masks kept cached (the history keeps
        low-resolution logits; older full-size masks are recomputed when asked for).
      autosave: a session file (e.g. ``"work.json"``) that every committed change is written
        to, atomically, within about a second, on a background thread. If it exists, its
        objects are restored first (matched to ``images`` by path, in-memory images by the
        sha256 of their pixels) and :attr:`status` says so. An autosave file that cannot be
        read, or holds objects on images that are not given, raises and is left untouched.
        See :meth:`save` / :meth:`load` for what the file holds.
      precision: ``"auto"`` (bf16 where the hardware computes it natively, else fp32), ``"fp32"``
        or ``"bf16"``, for a model the session loads (see ``Segmenter``; ignored with ``segmenter``).

    Raises at once (nothing started): ``TypeError`` / ``ValueError`` for bad arguments, an
    unknown model or device spelling, an empty list / folder / glob;
    ``CheckpointError`` for a checkpoint that does not exist; ``ImageError`` for a single
    image that cannot be read; ``ValueError`` for an autosave path in a missing directory;
    :class:`~sam_widget.io.FormatError` for an autosave file that cannot be restored. In a set,
    an unreadable image is reported when shown.
    """

    def __init__(
        self,
        images: Any,
        segmenter: Any | None = None,
        model: str | None = "vit_b",
        checkpoint: Any = None,
        *,
        device: Any = "auto",
        cache_dir: Any = None,
        refine: bool = True,
        display_size: int = 800,
        prefetch: bool = True,
        mask_cache_bytes: int = DEFAULT_MASK_BUDGET,
        history_limit: int = 500,
        autosave: str | os.PathLike[str] | None = None,
        precision: str = "auto",
        _restore: Any = None,
    ) -> None:
        sources, self.single = resolve_images(images)
        if self.single:  # a bad single image raises here, as always; a file keeps its path and name
            rgb = to_rgb_uint8(sources[0])
            self.images = ImageSet(sources if isinstance(sources[0], (str, os.PathLike)) else [rgb], loaded={0: rgb})
        else:
            self.images = ImageSet(sources)
        self._pages = Pages(self.images, self.single, display_size, history_limit, keep_neighbours=bool(prefetch))
        self._engine = EngineLink(segmenter, model, checkpoint, device, cache_dir, precision)
        self._budget = MaskBudget(mask_cache_bytes)
        self.refine = refine
        self.prefetch = as_flag(prefetch, "prefetch")
        self.error: str | None = None
        self.model_error: BaseException | None = None
        self._model_ready = threading.Event()
        self.preview: Preview | None = None
        self._preview_wanted: tuple[int, tuple[int, int]] | None = None
        self.stats: dict[str, int] = {"predictions": 0, "previews": 0, "events": 0}
        self._threshold: float | None = None  # None: the model's mask_threshold (0.0 for SAM)
        self._closed = False
        self._pages.enter(self._init_files(autosave, _restore))  # restores saved work (may raise; nothing runs yet)
        self._notifier = Notifier(self)
        self._everything = EverythingControl(self)
        self._background = Background(self)
        self._background.start()
        self._start_files()

    # ================================================================== state
    @property
    def history(self) -> History:
        """The current image's undo history."""
        return self._page(self.index).history

    @property
    def current(self) -> Snapshot:
        """The current image's state."""
        return self.history.current

    @property
    def prompts(self) -> Prompts:
        return self.current.prompts

    @property
    def editing(self) -> int | None:
        """Position in :attr:`objects` of the object being edited (refined), or None."""
        return self.current.editing_index

    @property
    def candidates(self) -> Any | None:
        """The current ``Prediction`` (waits for it), or None without prompts."""
        slot = self.current.slot
        if slot is None:
            return None
        self._wait_slot(slot)
        self._budget.touch(slot.prediction)
        return slot.prediction

    @property
    def selected(self) -> int:
        snap = self.current
        if snap.slot is None:
            return 0
        self._wait_slot(snap.slot)
        return selected_of(snap)

    @property
    def mask(self) -> np.ndarray:
        """``(H, W)`` bool: the chosen candidate at :attr:`threshold` (all False without
        prompts); a new array."""
        snap = self.current
        if snap.slot is None:
            return np.zeros(self.image.shape[:2], bool)
        self._wait_slot(snap.slot)
        pred = snap.slot.prediction
        out = cut_mask(pred, selected_of(snap), self._threshold).copy()
        self._budget.touch(pred)
        return out

    @property
    def objects(self) -> tuple[ObjectRecord, ...]:
        return self.current.objects

    @property
    def masks(self) -> np.ndarray:
        return self.results[self.index].masks

    @property
    def labels(self) -> np.ndarray:
        return self.results[self.index].labels

    @property
    def segmenter(self) -> Any | None:
        """The ``Segmenter`` (None until the model has loaded)."""
        return self._engine.segmenter

    @property
    def ready(self) -> threading.Event:
        """Set once the model is loaded and the current image encoded (or either failed)."""
        if self.model_error is not None:
            return self._model_ready
        return self._page(self.index).ready

    @property
    def mask_budget(self) -> MaskBudget:
        return self._budget

    # ================================================================== observers
    def on_change(self, callback: Callable[["Session"], None], remove: bool = False) -> None:
        """Call ``callback(session)`` after every change of the mask, the objects or the image
        (:attr:`revision` goes up by one). Callbacks may run on the worker thread."""
        self._notifier.on_change(callback, remove)

    def subscribe(self, listener: SessionListener) -> None:
        """Follow this session (a view): see :class:`SessionListener`. ``TypeError`` unless
        ``listener`` has callable ``changed`` and ``status`` methods."""
        if not all(callable(getattr(listener, m, None)) for m in ("changed", "status")):
            raise TypeError(
                f"listener must have changed(session) and status(session) methods, got {type(listener).__name__}."
            )
        if listener not in self._notifier.listeners:
            self._notifier.listeners.append(listener)

    def unsubscribe(self, listener: SessionListener) -> None:
        if listener in self._notifier.listeners:
            self._notifier.listeners.remove(listener)

    @property
    def revision(self) -> int:
        """+1 after every change of the mask, the objects or the image shown."""
        return self._notifier.revision

    @property
    def lock(self) -> threading.RLock:
        """Held while views are told about a change (a view drawing under it draws the newest state)."""
        return self._notifier.lock

    @property
    def status(self) -> SessionStatus:
        """What the status line says: model, device, image, progress, timings, errors."""
        return SessionStatus.of(self)

    # ================================================================== waiting
    def wait_ready(self, timeout: float | None = None) -> "Session":
        """Block until the model is loaded and the current image encoded. Raises what went wrong:
        ``RuntimeError`` (model), ``ImageError`` (this image cannot be read), ``TimeoutError``."""
        timeout = as_timeout(timeout)
        if not self.ready.wait(timeout):
            raise TimeoutError(f"the image embedding was not ready within {timeout} s.")
        if self.model_error is not None:
            raise RuntimeError(f"SamWidget could not get ready: {self.model_error}") from self.model_error
        error = self._page(self.index).error
        if error is not None:
            raise ImageError(error)
        return self

    def wait_idle(self, timeout: float | None = 60.0) -> "Session":
        """Block until every pending prompt has been answered and drawn (tests, scripts)."""
        timeout = as_timeout(timeout)
        self.wait_ready(timeout)
        if not self._background.worker.idle.wait(timeout):
            raise TimeoutError(f"the session was still busy after {timeout} s.")
        return self

    def wait_prefetch(self, timeout: float | None = 60.0) -> "Session":
        """Block until the background encoding of the neighbouring images is done (tests, benchmarks)."""
        timeout = as_timeout(timeout)
        self.wait_idle(timeout)
        if not self._background.prefetcher.idle.wait(timeout):
            raise TimeoutError(f"prefetching was still running after {timeout} s.")
        return self

    def close(self) -> None:
        """Stop the background threads (and write what autosave has pending). Later prompts raise
        ``RuntimeError``."""
        self._closed = True
        self._everything.stop()
        self._background.stop()
        self._close_files()

    @property
    def refine(self) -> bool:
        """Whether further prompts refine the chosen candidate (SamPredictor's interactive
        recipe); ``TypeError`` for anything but True / False."""
        return self._refine

    @refine.setter
    def refine(self, on: bool) -> None:
        self._refine = as_flag(on, "refine")

    @property
    def closed(self) -> bool:
        return self._closed

    # ================================================================== hover preview
    def request_preview(self, point: tuple[int, int]) -> None:
        """Compute the mask under image pixel ``point`` (``(x, y)``: column, row; shown while
        there are no prompts). ``TypeError`` / ``ValueError`` for anything but a finite point
        inside the image; a no-op while prompts are given, the model loads or after
        :meth:`close`."""
        if isinstance(point, (str, bytes)) or not hasattr(point, "__len__") or len(point) != 2:
            raise TypeError(f"point must be an (x, y) pair of image pixels, got {point!r}.")
        x, y = self.viewport.check_point(point[0], point[1], "preview point")
        point = (int(x), int(y))
        if self._closed or not self.ready.is_set() or not self.prompts.is_empty:
            return
        self._preview_wanted = (self.index, point)
        self._background.worker.request_preview(point)

    def stop_preview(self) -> None:
        """Forget the hover preview (the pointer left, a click started, hover was turned off)."""
        if self._stop_preview():
            self._notifier.changed()

    def _stop_preview(self) -> bool:
        with self.lock:
            had = self.preview is not None
            self._preview_wanted = None
            self.preview = None
        return had

    # ================================================================== plumbing
    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this session was closed (close() was called); nothing can change it now. "
                               "Save what you need with save() and start a new SamWidget or Session.")

    def _check_image(self) -> None:
        error = self._page(self.index).error
        if error is not None:
            raise ImageError(error)

    def _push_prompts(self, change: Callable[[Prompts], Prompts]) -> Snapshot:
        """Push ``change(current prompts)`` with a new prediction slot, atomically (a click on
        the page and the user's ``add_point`` may race: neither prompt is lost)."""
        if self.model_error is not None:
            self.wait_ready()  # raises: the model never loaded, no prompt can be answered
        self._check_open()
        self._check_image()

        def make(snap: Snapshot) -> Snapshot:
            prompts = change(snap.prompts)
            base = (snap.slot, snap.selected) if snap.slot is not None else None
            return snap.with_prompts(prompts, PredictionSlot(base=base, prompts=prompts))

        return self._update(make)  # type: ignore[return-value]

    def _update(self, make: Callable[[Snapshot], Snapshot | None]) -> Snapshot | None:
        """Push ``make(current)`` (None: no change) as one compare-and-swap; rebuilt on the new
        current snapshot when another thread pushed in between."""
        while True:
            snap = self.current
            new = make(snap)
            if new is None:
                return None
            try:
                return self._push(new, expected=snap)
            except EditConflict:
                continue

    def _push(self, snap: Snapshot, expected: Snapshot | None = None) -> Snapshot:
        self._check_open()  # after close() nothing changes (autosave no longer writes)
        self.history.push(snap, expected)
        self._after_change()
        return snap

    def _after_change(self) -> None:
        """Show what can be shown now; wake the worker for what needs the engine."""
        snap = self.current
        if snap.slot is not None and not snap.slot.done:
            self._background.worker.request()
        self._notifier.changed()

    def _answer(self) -> "Session":
        """Wait until the current prompts are answered and the views told (see Background.answer)."""
        self._background.answer(self.current.slot)
        return self

    def _wait_slot(self, slot: PredictionSlot) -> None:
        self._background.wait(slot)


def selected_of(snap: Snapshot) -> int:
    """The chosen candidate of a snapshot (its best one unless the user chose)."""
    if snap.selected is not None:
        return snap.selected
    pred = snap.prediction
    return pred.best if pred is not None else 0
