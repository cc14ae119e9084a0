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
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Protocol

import numpy as np

from ..images import ImageError, to_rgb_uint8
from ..state import History, ObjectRecord, PredictionSlot, Prompts, Snapshot
from ..viewport import Viewport
from .engine_link import EngineLink
from .everything import EverythingControl, EverythingRun
from .images import ImageSet, resolve_images
from .inputs import as_object_mask, label_names, masks_from_label_image
from .background import Background
from .files import SessionFiles
from .notify import Notifier
from .pages import DEFAULT_MASK_BUDGET, MaskBudget, Page, Pages, Results, StoredAnswer
from .provenance import provenance
from .status import SessionStatus
from .threshold import check_threshold, cut_mask

if TYPE_CHECKING:  # pragma: no cover
    from .explain import Explanation

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


class Session(SessionFiles):
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
        self.refine = bool(refine)
        self.prefetch = bool(prefetch)
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

    # ================================================================== actions
    def add_point(self, x: float, y: float, label: int = 1) -> "Session":
        """Add a point prompt at image pixel ``(x, y)`` (column, row); label 1 = object, 0 = not.

        Waits for the new mask. ``ValueError`` for a point outside the image, NaN, or a
        label other than 0 / 1 (the state is left unchanged).
        """
        self._check_image()
        xf, yf = self.viewport.check_point(x, y, "point")
        if isinstance(label, bool) or label not in (0, 1):
            raise ValueError(f"label must be 1 (object) or 0 (background), got {label!r}.")
        self._push_prompts(self.prompts.with_point(xf, yf, int(label)))
        return self._answer()

    def add_box(self, x0: float, y0: float, x1: float, y1: float) -> "Session":
        """Set the box prompt (XYXY image pixels; replaces any previous box). Waits for the mask."""
        self._check_image()
        vp = self.viewport
        a, b = vp.check_point(x0, y0, "box corner"), vp.check_point(x1, y1, "box corner")
        if b[0] < a[0] or b[1] < a[1]:
            raise ValueError(f"box must have x0 <= x1 and y0 <= y1 (XYXY), got {(x0, y0, x1, y1)}.")
        self._push_prompts(self.prompts.with_box((*a, *b)))
        return self._answer()

    def select(self, index: int) -> "Session":
        """Choose candidate ``index`` (0-based). ``IndexError`` if there is no such candidate."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"candidate index must be an int, not {type(index).__name__}.")
        snap = self.current
        pred = self.candidates
        if pred is None:
            raise IndexError("there are no candidates to choose from: add a point or a box first.")
        if not 0 <= index < len(pred):
            raise IndexError(f"candidate {index} does not exist; there are {len(pred)} (0..{len(pred) - 1}).")
        if int(index) != selected_of(snap):
            self._push(snap.select(int(index)))
        return self

    def commit(self, label: str | None = None) -> ObjectRecord:
        """Keep the current mask as an object (default label "object N"); clears the prompts.

        While an object is being edited, it is replaced (same id, colour and label unless
        ``label`` is given). ``ValueError`` when there is no mask (no prompts, or empty).
        """
        if label is not None and not isinstance(label, str):
            raise TypeError(f"label must be a string, not {type(label).__name__}.")
        snap = self.current
        if snap.slot is None:
            raise ValueError("there is no mask to commit: add a point or a box first.")
        self._wait_slot(snap.slot)
        sel, pred = selected_of(snap), snap.slot.prediction
        mask = np.array(cut_mask(pred, sel, self._threshold), dtype=bool)
        self._budget.touch(pred)
        logits = None if pred.logits is None else np.array(pred.logits[sel : sel + 1], np.float32)
        candidate, chain = provenance(snap, sel)  # kept in the session file (see provenance.py)
        threshold = pred.object.threshold if isinstance(pred, StoredAnswer) else self._threshold
        new = snap.commit(mask, float(pred.scores[sel]), label, logits, candidate, chain, threshold)
        self._push(new)
        i = snap.editing_index
        return new.objects[i if i is not None else -1]

    def delete(self, index: int) -> "Session":
        """Delete object ``index`` (0-based position in :attr:`objects`); ``IndexError`` if missing."""
        self._push(self.current.delete(index))
        return self

    def rename(self, index: int, label: str) -> "Session":
        """Give object ``index`` a new label (a non-empty string)."""
        self._push(self.current.rename(index, label))
        return self

    def clear(self) -> "Session":
        """Clear the current prompts and stop editing (objects stay). A no-op when there is nothing."""
        snap = self.current
        if snap.slot is not None or not snap.prompts.is_empty or snap.editing is not None:
            self._push(snap.cleared())
        return self

    def edit(self, index: int) -> "Session":
        """Edit object ``index``: its prompts become the current prompts and its mask the current
        mask; further prompts refine it (from its low-res logits; for a mask brought in with
        :meth:`add_object`, logits derived from the mask); :meth:`commit` replaces it."""
        snap = self.current
        i = snap._object_index(index)
        obj = snap.objects[i]
        if snap.editing == obj.id and isinstance(snap.prediction, StoredAnswer) and snap.prompts == obj.prompts:
            return self
        slot = PredictionSlot()
        slot.fill(StoredAnswer(obj), None, False)
        self._push(snap.edit(i, slot))
        return self

    def object_at(self, x: float, y: float) -> int | None:
        """Index of the topmost object covering image pixel ``(x, y)``, or None."""
        H, W = self.image.shape[:2]
        c, r = int(x), int(y)
        if not (0 <= c < W and 0 <= r < H):
            return None
        for i in range(len(self.objects) - 1, -1, -1):
            if self.objects[i].mask[r, c]:
                return i
        return None

    def add_object(self, mask: np.ndarray, label: str | None = None) -> ObjectRecord:
        """Add an ``(H, W)`` bool mask of the current image as an object (copied; no prompts).

        Refining it later (:meth:`edit`) starts from the mask. ``TypeError`` / ``ValueError``
        for a wrong type, shape, values or an empty mask.
        """
        if label is not None and not isinstance(label, str):
            raise TypeError(f"label must be a string, not {type(label).__name__}.")
        self._check_image()
        m = as_object_mask(mask, self.image.shape[:2])
        new = self.current.add_objects([m], [label])
        self._push(new)
        return new.objects[-1]

    def set_objects(self, label_image: Any) -> tuple[ObjectRecord, ...]:
        """Replace the current image's objects by one object per non-zero value of
        ``label_image`` (``(H, W)`` integers, 0 = background, or the path of such an image
        file), in increasing value order. One undo step. A label PNG written by
        :meth:`export_png` brings its objects' labels back."""
        self._check_image()
        masks = masks_from_label_image(label_image, self.image.shape[:2])
        snap = self.current
        new = snap.without_objects().add_objects(masks, label_names(label_image, len(masks)))
        self._push(new)
        return new.objects

    def undo(self) -> bool:
        """Step back (prompts, candidate choice, commits, deletes, renames, edits); False if nothing to undo."""
        if not self.history.undo():
            return False
        self._after_change()
        return True

    def redo(self) -> bool:
        """Step forward again; False (no-op) when there is nothing to redo."""
        if not self.history.redo():
            return False
        self._after_change()
        return True

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

    # ================================================================== observers
    def on_change(self, callback: Callable[["Session"], None], remove: bool = False) -> None:
        """Call ``callback(session)`` after every change of the mask, the objects or the image
        (:attr:`revision` goes up by one). Callbacks may run on the worker thread."""
        self._notifier.on_change(callback, remove)

    def subscribe(self, listener: SessionListener) -> None:
        """Follow this session (a view): see :class:`SessionListener`."""
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
        self.wait_ready(timeout)
        if not self._background.worker.idle.wait(timeout):
            raise TimeoutError(f"the session was still busy after {timeout} s.")
        return self

    def wait_prefetch(self, timeout: float | None = 60.0) -> "Session":
        """Block until the background encoding of the neighbouring images is done (tests, benchmarks)."""
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
    def closed(self) -> bool:
        return self._closed

    # ================================================================== hover preview
    def request_preview(self, point: tuple[int, int]) -> None:
        """Compute the mask under image pixel ``point`` (shown while there are no prompts)."""
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
            raise RuntimeError("this SamWidget was closed; create a new one.")

    def _check_image(self) -> None:
        error = self._page(self.index).error
        if error is not None:
            raise ImageError(error)

    def _push_prompts(self, prompts: Prompts) -> Snapshot:
        if self.model_error is not None:
            self.wait_ready()  # raises: the model never loaded, no prompt can be answered
        self._check_open()
        self._check_image()
        snap = self.current
        base = (snap.slot, snap.selected) if snap.slot is not None else None
        return self._push(snap.with_prompts(prompts, PredictionSlot(base=base, prompts=prompts)))

    def _push(self, snap: Snapshot) -> Snapshot:
        self.history.push(snap)
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

    # ================================================================== display (for views)
    def display_mask(self) -> np.ndarray | None:
        """The chosen candidate at the display size and :attr:`threshold` (for an overlay), or
        None if there is none yet. How long it took is kept in the slot's ``timings``."""
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
        t = check_threshold(value, self._logits_range())
        self._threshold = None if t == self._engine.mask_threshold else t
        self._notifier.changed()

    def _logits_range(self) -> tuple[float, float] | None:
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


def selected_of(snap: Snapshot) -> int:
    """The chosen candidate of a snapshot (its best one unless the user chose)."""
    if snap.selected is not None:
        return snap.selected
    pred = snap.prediction
    return pred.best if pred is not None else 0
