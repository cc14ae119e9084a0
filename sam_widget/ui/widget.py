"""``SamWidget``: click on an object in the notebook, get its mask as a NumPy array.

Layout: the image on an ipycanvas (four layers), a toolbar, the candidate masks with their
predicted IoU, the list of committed objects, and a status line.

Threads: one worker thread per widget loads the model, encodes the image and answers
prompts, so the kernel stays free. Browser events only change the state and wake the
worker; if events arrive faster than predictions, the worker always takes the newest
state (coalescing: no backlog, never a stale mask over a newer one). Python calls such as
:meth:`SamWidget.add_point` wait for their answer, so ``w.add_point(...); w.mask`` works
in one cell.

Coordinates: everything public is in image pixels — points ``(x, y)`` = (column, row),
boxes XYXY ``(x0, y0, x1, y1)``; masks are ``(H, W)`` bool at the full image size.
"""

from __future__ import annotations

import html
import logging
import math
import threading
import time
from typing import Any, Callable

import ipywidgets as widgets
import numpy as np
import traitlets
from ipyevents import Event

from ..images import to_rgb_uint8
from ..render import fit_size, mask_overlay, objects_overlay, resize_mask, resize_rgb
from ..state import History, ObjectRecord, PredictionSlot, Prompts, Snapshot, object_color
from .canvas_view import CURRENT, OBJECTS, CanvasView

__all__ = ["SamWidget", "SHORTCUTS"]

log = logging.getLogger(__name__)

SHORTCUTS: list[tuple[str, str]] = [
    ("Left click", "positive point (in the mode shown by the toolbar)"),
    ("Right click / Shift + click", "negative point"),
    ("Press, drag, release", "box (replaces the previous box; combines with points)"),
    ("1 / 2 / 3", "choose candidate mask"),
    ("Enter", "add the current mask as an object"),
    ("Esc", "clear the current prompts"),
    ("Ctrl+Z", "undo"),
    ("Ctrl+Shift+Z / Ctrl+Y", "redo"),
    ("P / N / B", "mode: positive / negative / box"),
    ("H", "hover preview on / off"),
    ("?", "show / hide this help"),
]

_DRAG_THRESHOLD = 4.0  # display pixels: a smaller movement is still a click
_CURRENT_COLOR = (30, 144, 255)
_PREVIEW_COLOR = (250, 204, 21)


def _fmt_ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.0f} ms"


class SamWidget(widgets.VBox):
    """Segment Anything on an image, inside the notebook.

    Args:
      image: ``H x W x 3`` uint8 RGB (or anything ``Segmenter.set_image`` accepts: gray,
        RGBA, uint16, float in [0, 1], PIL image, file path).
      segmenter: a ``Segmenter`` to use; if None one is loaded from ``model`` /
        ``checkpoint`` in the background (the image appears at once either way).
      model: ``"vit_b"``, ``"vit_l"``, ``"vit_h"`` or ``"tiny_shapes"`` (offline model).
      checkpoint: path of a checkpoint file; None downloads the official one once.
      display_size: longest side of the shown image in screen pixels; prompts are mapped
        back to full image pixels and masks are always full resolution.
      refine: follow SamPredictor's interactive recipe: the first prompt gives three
        candidates (best selected); each further prompt is answered with one mask, using
        the selected candidate's low-res logits as ``mask_input``. With ``refine=False``
        every prompt change asks for three candidates from the prompts alone.
      hover: preview the mask under the pointer before any click.
      precision: ``"auto"``, ``"fp32"`` or ``"bf16"`` for the model the widget loads (see
        ``Segmenter``); ignored when ``segmenter`` is given.

    The ``value`` traitlet is a revision number that increases after every change of the
    mask or the objects: ``w.observe(cb, names="value")`` and
    ``ipywidgets.interactive_output(f, {"rev": w})`` re-run on every update.
    """

    value = traitlets.Int(0, help="Revision number, +1 after every mask/objects change.")

    def __init__(
        self,
        image: Any,
        segmenter: Any | None = None,
        model: str = "vit_b",
        checkpoint: str | None = None,
        display_size: int = 800,
        *,
        device: str = "auto",
        refine: bool = True,
        hover: bool = False,
        cache_dir: str | None = None,
        precision: str = "auto",
    ) -> None:
        rgb = to_rgb_uint8(image)
        if segmenter is not None:
            from ..engine.segmenter import Segmenter

            if not isinstance(segmenter, Segmenter):
                raise TypeError(f"segmenter must be a sam_widget Segmenter, not {type(segmenter).__name__}.")
        elif not isinstance(model, str):
            raise TypeError(f"model must be a model name such as 'vit_b', not {type(model).__name__}.")
        if not isinstance(precision, str) or precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}.")
        self._image = rgb
        self._image.setflags(write=False)
        H, W = rgb.shape[:2]
        self._display_hw = fit_size((H, W), display_size)
        dh, dw = self._display_hw
        self._sx, self._sy = W / dw, H / dh  # image pixels per display pixel
        self._segmenter = segmenter
        self._model_spec = (model, checkpoint, device, cache_dir, precision)
        self._model_label = segmenter.model_name if segmenter is not None else model
        self._history = History()
        self._callbacks: list[Callable[["SamWidget"], None]] = []
        self._ready = threading.Event()
        self._ready_error: BaseException | None = None
        self._render_lock = threading.RLock()
        self._shown: dict[str, Any] = {"objects": None, "current": None, "prompts": None}
        # (objects, mask key) last announced through ``value`` / on_change: redraws that change
        # nothing for the user (a page reload, removing a hover preview) do not count.
        self._published: tuple[Any, Any] = (self._history.current.objects, None)
        self._seg_image: np.ndarray | None = None  # the segmenter's copy of our image, once set
        self._display_masks: dict[int, np.ndarray] = {}
        self._drag: dict[str, Any] | None = None
        self._hover_point: tuple[int, int] | None = None
        self._error: str | None = None
        self._encode_started: float | None = None
        self.stats: dict[str, int] = {"predictions": 0, "previews": 0, "events": 0}
        self._refine = bool(refine)

        self._view = CanvasView(self._display_hw)
        self._build_controls(hover)
        super().__init__(
            children=[
                self._toolbar,
                widgets.HBox([self._view.canvas, self._side]),
                self._status,
                self._help,
            ]
        )
        self.add_class("sam-widget")
        self._display_rgb = resize_rgb(rgb, self._display_hw)
        self._view.batch(lambda: self._view.draw_image(self._display_rgb))
        self._events = Event(
            source=self._view.canvas,
            watched_events=["mousedown", "mouseup", "mousemove", "mouseleave", "contextmenu", "keydown"],
            prevent_default_action=True,
            ignore_modifier_key_events=True,
        )
        self._events.on_dom_event(self._on_dom_event)
        self._view.canvas.on_client_ready(lambda *_: self._redraw_all())
        self._update_status()
        self._worker = _Worker(self)
        self._worker.start()

    # ================================================================== public API
    @property
    def image(self) -> np.ndarray:
        """The image as ``H x W x 3`` uint8 RGB (read-only)."""
        return self._image

    @property
    def segmenter(self) -> Any | None:
        """The ``Segmenter`` (None until the model has loaded)."""
        return self._segmenter

    @property
    def prompts(self) -> Prompts:
        """Current prompts (``.points``, ``.labels``, ``.box``) in image pixels."""
        return self._history.current.prompts

    @property
    def candidates(self) -> Any | None:
        """The current ``Prediction`` (up to 3 masks + scores), or None without prompts.

        Waits for the answer if it is still being computed.
        """
        slot = self._history.current.slot
        if slot is None:
            return None
        self._wait_slot(slot)
        return slot.prediction

    @property
    def selected(self) -> int:
        """Index of the chosen candidate (0 when there are none)."""
        snap = self._history.current
        if snap.slot is None:
            return 0
        self._wait_slot(snap.slot)
        return self._selected_of(snap)

    @property
    def mask(self) -> np.ndarray:
        """``(H, W)`` bool: the chosen candidate at full size (all False without prompts).

        A new array each time: changing it does not change the widget.
        """
        snap = self._history.current
        if snap.slot is None:
            return np.zeros(self._image.shape[:2], bool)
        self._wait_slot(snap.slot)
        return snap.slot.prediction.mask(self._selected_of(snap)).copy()

    @property
    def objects(self) -> tuple[ObjectRecord, ...]:
        """Committed objects: ``.label``, ``.color``, ``.mask`` (H, W) bool, ``.score``, ``.prompts``."""
        return self._history.current.objects

    @property
    def masks(self) -> np.ndarray:
        """``(N, H, W)`` bool stack of the committed objects' masks (N may be 0)."""
        objs = self.objects
        if not objs:
            return np.zeros((0, *self._image.shape[:2]), bool)
        return np.stack([o.mask for o in objs])

    @property
    def labels(self) -> np.ndarray:
        """``(H, W)`` int32 label image: 0 background, ``i`` for object ``i`` (1-based; later on top)."""
        out = np.zeros(self._image.shape[:2], np.int32)
        for i, o in enumerate(self.objects, start=1):
            out[o.mask] = i
        return out

    @property
    def refine(self) -> bool:
        """Whether further prompts refine the chosen candidate (see the class docstring)."""
        return self._refine

    @refine.setter
    def refine(self, on: bool) -> None:
        self._refine_box.value = bool(on)

    @property
    def hover(self) -> bool:
        """Whether the mask under the pointer is previewed before any click."""
        return bool(self._hover_box.value)

    @hover.setter
    def hover(self, on: bool) -> None:
        self._hover_box.value = bool(on)

    def wait_ready(self, timeout: float | None = None) -> "SamWidget":
        """Block until the model is loaded and the image encoded. Raises what went wrong.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the image embedding was not ready within {timeout} s.")
        if self._ready_error is not None:
            raise RuntimeError(f"SamWidget could not get ready: {self._ready_error}") from self._ready_error
        return self

    def wait_idle(self, timeout: float | None = 60.0) -> "SamWidget":
        """Block until every pending prompt has been answered and drawn (tests, scripts)."""
        self.wait_ready(timeout)
        if not self._worker.idle.wait(timeout):
            raise TimeoutError(f"the widget was still busy after {timeout} s.")
        return self

    def add_point(self, x: float, y: float, label: int = 1) -> "SamWidget":
        """Add a point prompt at image pixel ``(x, y)`` (column, row); label 1 = object, 0 = not.

        Waits for the new mask. Raises ``ValueError`` for a point outside the image, NaN, or
        a label other than 0/1 (the state is left unchanged).
        """
        xf, yf = self._check_xy(x, y, "point")
        if isinstance(label, bool) or label not in (0, 1):
            raise ValueError(f"label must be 1 (object) or 0 (background), got {label!r}.")
        self._push_prompts(self.prompts.with_point(xf, yf, int(label)))
        return self._answer()

    def add_box(self, x0: float, y0: float, x1: float, y1: float) -> "SamWidget":
        """Set the box prompt (XYXY image pixels; replaces any previous box). Waits for the mask.

        Raises ``ValueError`` for NaN, ``x1 < x0`` / ``y1 < y0`` or a box reaching outside the image.
        """
        a = self._check_xy(x0, y0, "box corner")
        b = self._check_xy(x1, y1, "box corner")
        if b[0] < a[0] or b[1] < a[1]:
            raise ValueError(f"box must have x0 <= x1 and y0 <= y1 (XYXY), got {(x0, y0, x1, y1)}.")
        self._push_prompts(self.prompts.with_box((*a, *b)))
        return self._answer()

    def select(self, index: int) -> "SamWidget":
        """Choose candidate ``index`` (0-based). ``IndexError`` if there is no such candidate."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"candidate index must be an int, not {type(index).__name__}.")
        snap = self._history.current
        pred = self.candidates
        if pred is None:
            raise IndexError("there are no candidates to choose from: add a point or a box first.")
        if not 0 <= index < len(pred):
            raise IndexError(f"candidate {index} does not exist; there are {len(pred)} (0..{len(pred) - 1}).")
        if int(index) != self._selected_of(snap):
            self._push(Snapshot(snap.prompts, snap.slot, int(index), snap.objects, snap.next_object_id))
        return self

    def commit(self, label: str | None = None) -> ObjectRecord:
        """Add the current mask as an object (default label "object N"); clears the prompts.

        Raises ``ValueError`` when there is no mask to commit (no prompts, or an empty mask).
        """
        if label is not None and not isinstance(label, str):
            raise TypeError(f"label must be a string, not {type(label).__name__}.")
        snap = self._history.current
        if snap.slot is None:
            raise ValueError("there is no mask to commit: add a point or a box first.")
        self._wait_slot(snap.slot)
        sel = self._selected_of(snap)
        pred = snap.slot.prediction
        mask = np.array(pred.mask(sel), dtype=bool)
        if not mask.any():
            raise ValueError("the current mask is empty; add prompts until it covers the object.")
        mask.setflags(write=False)
        n = snap.next_object_id
        label = (label or "").strip() or f"object {n}"
        obj = ObjectRecord(label, object_color(n - 1), mask, float(pred.scores[sel]), snap.prompts, n)
        self._push(Snapshot(Prompts(), None, 0, snap.objects + (obj,), n + 1))
        return obj

    def delete(self, index: int) -> "SamWidget":
        """Delete object ``index`` (0-based position in :attr:`objects`); ``IndexError`` if missing."""
        snap = self._history.current
        i = self._object_index(index)
        objs = snap.objects[:i] + snap.objects[i + 1 :]
        self._push(Snapshot(snap.prompts, snap.slot, snap.selected, objs, snap.next_object_id))
        return self

    def rename(self, index: int, label: str) -> "SamWidget":
        """Give object ``index`` a new label (a non-empty string)."""
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"label must be a non-empty string, got {label!r}.")
        snap = self._history.current
        i = self._object_index(index)
        o = snap.objects[i]
        objs = snap.objects[:i] + (ObjectRecord(label.strip(), o.color, o.mask, o.score, o.prompts, o.id),) + snap.objects[i + 1 :]
        self._push(Snapshot(snap.prompts, snap.slot, snap.selected, objs, snap.next_object_id))
        return self

    def undo(self) -> bool:
        """Step back (prompts, candidate choice, commits, deletes, renames).

        Returns False and changes nothing when there is nothing to undo.
        """
        if not self._history.undo():
            return False
        self._after_change()
        return True

    def redo(self) -> bool:
        """Step forward again; False (no-op) when there is nothing to redo."""
        if not self._history.redo():
            return False
        self._after_change()
        return True

    def clear(self) -> "SamWidget":
        """Clear the current prompts (committed objects stay). A no-op when there are none."""
        snap = self._history.current
        if snap.slot is not None or not snap.prompts.is_empty:
            self._push(Snapshot(Prompts(), None, 0, snap.objects, snap.next_object_id))
        return self

    def on_change(self, callback: Callable[["SamWidget"], None], remove: bool = False) -> None:
        """Call ``callback(widget)`` after every change of the mask or the objects.

        Callbacks may run on the widget's worker thread (after a browser click).
        """
        if not callable(callback):
            raise TypeError("callback must be callable.")
        if remove:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
        elif callback not in self._callbacks:
            self._callbacks.append(callback)

    def close(self) -> None:
        """Stop the worker thread and close the widgets."""
        worker = getattr(self, "_worker", None)  # None when __init__ failed (called from __del__)
        if worker is not None:
            worker.stop()
        super().close()

    # ================================================================== state plumbing
    def _check_xy(self, x: Any, y: Any, what: str) -> tuple[float, float]:
        if any(isinstance(v, (str, bytes, bool)) for v in (x, y)):
            raise TypeError(f"{what} coordinates must be numbers, got ({x!r}, {y!r}).")
        try:
            xf, yf = float(x), float(y)
        except (TypeError, ValueError):
            raise TypeError(f"{what} coordinates must be numbers, got ({x!r}, {y!r}).") from None
        if not (math.isfinite(xf) and math.isfinite(yf)):
            raise ValueError(f"{what} coordinates must be finite, got ({x!r}, {y!r}).")
        H, W = self._image.shape[:2]
        if not (0 <= xf <= W and 0 <= yf <= H):
            raise ValueError(f"{what} ({xf:g}, {yf:g}) lies outside the {W}x{H} (width x height) image.")
        return xf, yf

    def _object_index(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"object index must be an int, not {type(index).__name__}.")
        n = len(self.objects)
        if not 0 <= index < n:
            raise IndexError(f"object {index} does not exist; there are {n} objects.")
        return int(index)

    def _push_prompts(self, prompts: Prompts) -> Snapshot:
        if self._ready_error is not None:
            self.wait_ready()  # raises: the model never loaded, no prompt can be answered
        if self._worker.stopped:
            raise RuntimeError("this SamWidget was closed; create a new one.")
        snap = self._history.current
        base = None
        if snap.slot is not None:
            base = (snap.slot, snap.selected)
        return self._push(Snapshot(prompts, PredictionSlot(base=base), None, snap.objects, snap.next_object_id))

    def _push(self, snap: Snapshot) -> Snapshot:
        self._history.push(snap)
        self._after_change()
        return snap

    def _after_change(self) -> None:
        """Show what can be shown now; wake the worker for what needs the engine."""
        snap = self._history.current
        if snap.slot is not None and not snap.slot.done:
            self._worker.request()
        self._render()

    def _answer(self) -> "SamWidget":
        slot = self._history.current.slot
        if slot is not None:
            self._wait_slot(slot)
            # The worker draws the answer and notifies observers just after filling the slot:
            # wait for that too, so ``value`` and on_change callbacks are current on return.
            if threading.current_thread() is not self._worker:
                self._worker.idle.wait()
        return self

    def _wait_slot(self, slot: PredictionSlot) -> None:
        if not slot.done:
            self.wait_ready()
            if self._worker.stopped:
                raise RuntimeError("this SamWidget was closed before the mask was computed.")
            if threading.current_thread() is self._worker:
                # e.g. an on_change callback (run on the worker) calls add_point: answer inline.
                self._compute_current()
                if not slot.done:
                    raise RuntimeError("this state was replaced while its mask was being computed.")
            else:
                self._worker.request()
                slot.wait()
        if slot.error is not None:
            raise RuntimeError(f"the prediction failed: {slot.error}")

    @staticmethod
    def _selected_of(snap: Snapshot) -> int:
        if snap.selected is not None:
            return snap.selected
        pred = snap.slot.prediction if snap.slot is not None else None
        return pred.best if pred is not None else 0

    # ================================================================== worker side
    def _prepare(self) -> None:
        """Load the model if needed and encode the image (worker thread)."""
        self._encode_started = time.perf_counter()
        ticker = threading.Thread(target=self._tick_status, daemon=True)
        ticker.start()
        if self._segmenter is None:
            from ..engine.segmenter import Segmenter

            model, checkpoint, device, cache_dir, precision = self._model_spec
            self._segmenter = Segmenter.from_pretrained(
                model, checkpoint=checkpoint, device=device, cache_dir=cache_dir, precision=precision
            )
        self._segmenter.set_image(self._image)
        self._seg_image = self._segmenter.image

    def _predict(self, **kwargs: Any) -> Any:
        """``Segmenter.predict`` on this widget's image (worker thread).

        A Segmenter holds one image at a time and may be shared by several widgets: if
        another one set its image since, set ours again (an embedding-cache hit) first.
        """
        seg = self._segmenter
        with seg.exclusive():  # set_image + predict as one step against the other widgets' workers
            if seg.image is None or seg.image is not self._seg_image:
                seg.set_image(self._image)
                self._seg_image = seg.image
            # display-size masks computed by the engine, under its lock, on this worker thread
            return seg.predict(**kwargs, display_size=self._display_hw)

    def _tick_status(self) -> None:
        while not self._ready.wait(1.0):
            self._update_status()

    def _prediction_request(self, slot: PredictionSlot, prompts: Prompts) -> tuple[np.ndarray | None, bool]:
        """``(mask_input, multimask)`` for a slot: refine from the nearest answered earlier step."""
        if not self._refine:
            return None, True
        base = slot.base
        while base is not None and base[0].prediction is None:
            base = base[0].base
        if base is None:
            return None, True
        bslot, bsel = base
        sel = bsel if bsel is not None else bslot.prediction.best
        return bslot.prediction.logits[sel : sel + 1], False

    def _compute_current(self) -> None:
        """Answer the newest state's prompts, then draw the newest state (worker thread)."""
        snap = self._history.current
        slot = snap.slot
        if slot is not None and not slot.done:
            mask_input, multimask = self._prediction_request(slot, snap.prompts)
            try:
                pred = self._predict(**snap.prompts.as_arrays(), mask_input=mask_input, multimask=multimask)
            except Exception as exc:  # noqa: BLE001 - shown to the user, raised to API callers
                slot.fail(str(exc))
                self._error = f"prediction failed: {exc}"
            else:
                slot.fill(pred, mask_input, multimask)
                self.stats["predictions"] += 1
        # Draw whatever is current now: it may be a newer state with the same answered slot
        # (an object renamed meanwhile); if its slot is still unanswered, go again.
        self._render()
        cur = self._history.current.slot
        if cur is not None and not cur.done:
            self._worker.request()

    def _compute_preview(self, point: tuple[int, int]) -> None:
        """Mask under the pointer, shown only while there are no prompts (worker thread)."""
        if not self.prompts.is_empty or self._drag is not None:
            return
        pred = self._predict(points=[point], labels=[1], multimask=True)
        self.stats["previews"] += 1
        # Show it even if the pointer has moved on: the newest position is queued and comes
        # next (coalesced), and a moving pointer should see masks follow it, not nothing.
        if self._hover_point is None or not self.prompts.is_empty:
            return
        overlay = mask_overlay(pred.mask_at_size(pred.best, self._display_hw), _PREVIEW_COLOR, alpha=0.35)
        with self._render_lock:
            # checked again under the lock: a click, an undo or leaving the image may have
            # happened meanwhile
            if self._hover_point is None or not self.prompts.is_empty or not self._hover_box.value:
                return
            self._view.batch(lambda: self._view.draw_overlay(CURRENT, overlay))
            self._shown["current"] = ("preview", point)

    # ================================================================== rendering
    def _render(self) -> None:
        """Bring canvas and controls in line with the current state, redrawing only what changed.

        The state is read under the lock, so whichever thread renders last draws the newest
        state: a worker finishing an older answer never paints over a newer one.
        """
        with self._render_lock:
            snap = self._history.current
            shown = self._shown
            changed = False
            obj_overlay = cur_overlay = None
            draw_objects = snap.objects is not shown["objects"]
            if draw_objects:
                obj_overlay = objects_overlay([self._display_mask(o) for o in snap.objects], [o.color for o in snap.objects])
            pred = snap.slot.prediction if snap.slot is not None else None
            cur_key = (snap.slot, self._selected_of(snap)) if pred is not None else None
            if snap.slot is not None and pred is None and not snap.slot.done:
                cur_key = shown["current"]  # keep the old mask until the new one arrives
            draw_current = cur_key != shown["current"]
            if draw_current and pred is not None:
                cur_overlay = mask_overlay(pred.mask_at_size(self._selected_of(snap), self._display_hw), _CURRENT_COLOR)
            draw_prompts = snap.prompts != shown["prompts"]

            def draw() -> None:
                if draw_objects:
                    self._view.draw_overlay(OBJECTS, obj_overlay)
                if draw_current:
                    self._view.draw_overlay(CURRENT, cur_overlay)
                if draw_prompts:
                    self._draw_prompt_layer(snap.prompts)

            if draw_objects or draw_current or draw_prompts:
                self._view.batch(draw)
            shown.update(objects=snap.objects, current=cur_key, prompts=snap.prompts)
            if pred is not None:
                mask_key = (snap.slot, self._selected_of(snap))
            elif snap.slot is None:
                mask_key = None
            else:  # still being computed: the mask has not changed yet
                mask_key = self._published[1]
            changed = snap.objects is not self._published[0] or mask_key != self._published[1]
            self._published = (snap.objects, mask_key)
            self._sync_controls(snap)
        if changed:
            self.value += 1
            for cb in list(self._callbacks):
                try:
                    cb(self)
                except Exception as exc:  # noqa: BLE001 - a user's callback must not break the widget
                    log.exception("on_change callback failed")
                    self._error = f"on_change callback failed: {exc}"
                    self._update_status()

    def _display_mask(self, obj: ObjectRecord) -> np.ndarray:
        m = self._display_masks.get(obj.id)
        if m is None:
            m = self._display_masks[obj.id] = resize_mask(obj.mask, self._display_hw)
        return m

    def _draw_prompt_layer(self, prompts: Prompts, rubber: tuple[float, float, float, float] | None = None) -> None:
        pts = [(x / self._sx, y / self._sy, lab) for (x, y), lab in zip(prompts.points, prompts.labels)]
        box = None
        if prompts.box is not None:
            x0, y0, x1, y1 = prompts.box
            box = (x0 / self._sx, y0 / self._sy, x1 / self._sx, y1 / self._sy)
        self._view.draw_prompts(pts, box, rubber)

    def _redraw_all(self) -> None:
        """A browser (re)connected: its layers are blank, so paint everything again."""
        with self._render_lock:
            self._view.forget()
            self._shown = {"objects": None, "current": None, "prompts": None}
            self._view.batch(lambda: self._view.draw_image(self._display_rgb))
            self._render()

    # ================================================================== controls
    def _build_controls(self, hover: bool) -> None:
        lay = widgets.Layout(width="auto")
        self._mode = widgets.ToggleButtons(
            options=[("+ positive", "positive"), ("- negative", "negative"), ("▭ box", "box")],
            value="positive",
            tooltips=["click adds a positive point (P)", "click adds a negative point (N)", "drag draws a box (B)"],
            style={"button_width": "92px"},
        )
        self._undo_btn = widgets.Button(description="Undo", icon="undo", layout=lay, tooltip="Ctrl+Z")
        self._redo_btn = widgets.Button(description="Redo", icon="repeat", layout=lay, tooltip="Ctrl+Shift+Z / Ctrl+Y")
        self._clear_btn = widgets.Button(description="Clear", icon="eraser", layout=lay, tooltip="Esc")
        self._refine_box = widgets.Checkbox(value=self._refine, description="refine", indent=False, layout=lay)
        self._hover_box = widgets.Checkbox(value=bool(hover), description="hover", indent=False, layout=lay)
        self._help_btn = widgets.ToggleButton(description="?", tooltip="keyboard shortcuts", layout=widgets.Layout(width="36px"))
        self._toolbar = widgets.HBox(
            [self._mode, self._undo_btn, self._redo_btn, self._clear_btn, self._refine_box, self._hover_box, self._help_btn]
        )
        self._cand = widgets.ToggleButtons(options=[], description="", style={"button_width": "150px"})
        self._label_text = widgets.Text(placeholder="object 1", layout=widgets.Layout(width="150px"))
        self._add_btn = widgets.Button(description="Add", icon="plus", button_style="success", tooltip="Enter", layout=lay)
        self._obj_list = widgets.Select(options=[], rows=8, layout=widgets.Layout(width="210px"))
        self._rename_btn = widgets.Button(description="Rename", layout=lay)
        self._delete_btn = widgets.Button(description="Delete", icon="trash", button_style="danger", layout=lay)
        self._side = widgets.VBox(
            [
                widgets.HTML("<b>Candidates</b> (predicted IoU)"),
                self._cand,
                widgets.HTML("<b>Objects</b>"),
                widgets.HBox([self._label_text, self._add_btn]),
                self._obj_list,
                widgets.HBox([self._rename_btn, self._delete_btn]),
            ],
            layout=widgets.Layout(margin="0 0 0 8px"),
        )
        self._status = widgets.HTML()
        rows = "".join(f"<tr><td><kbd>{html.escape(k)}</kbd></td><td>{html.escape(v)}</td></tr>" for k, v in SHORTCUTS)
        self._help = widgets.HTML(f"<table>{rows}</table>", layout=widgets.Layout(display="none"))
        self._syncing = False

        self._undo_btn.on_click(lambda _: self.undo())
        self._redo_btn.on_click(lambda _: self.redo())
        self._clear_btn.on_click(lambda _: self.clear())
        self._add_btn.on_click(lambda _: self._ui_commit())
        self._delete_btn.on_click(lambda _: self._ui_call(self.delete, self._obj_list.value))
        self._rename_btn.on_click(lambda _: self._ui_call(self.rename, self._obj_list.value, self._label_text.value))
        self._help_btn.observe(lambda ch: setattr(self._help.layout, "display", "block" if ch["new"] else "none"), "value")
        self._cand.observe(self._on_candidate_button, "value")
        self._refine_box.observe(lambda ch: setattr(self, "_refine", bool(ch["new"])), "value")
        self._hover_box.observe(self._on_hover_toggle, "value")

    def _sync_controls(self, snap: Snapshot) -> None:
        self._syncing = True
        try:
            pred = snap.slot.prediction if snap.slot is not None else None
            if pred is not None:
                opts = [(f"{i + 1} · IoU {s:.3f}", i) for i, s in enumerate(pred.scores)]
                if self._cand.options != tuple(opts):
                    self._cand.options = opts
                self._cand.value = self._selected_of(snap)
            elif snap.slot is None and self._cand.options:
                self._cand.options = []
            self._undo_btn.disabled = not self._history.can_undo
            self._redo_btn.disabled = not self._history.can_redo
            opts = [(f"{i}: {o.label} ({o.area} px)", i) for i, o in enumerate(snap.objects)]
            if self._obj_list.options != tuple(opts):
                self._obj_list.options = opts
            self._label_text.placeholder = f"object {snap.next_object_id}"
            self._delete_btn.disabled = self._rename_btn.disabled = not snap.objects
        finally:
            self._syncing = False
        self._update_status()

    def _update_status(self) -> None:
        H, W = self._image.shape[:2]
        seg = self._segmenter
        dev = str(seg.device) if seg is not None else "…"
        parts = [html.escape(str(self._model_label)), dev, f"{W}×{H}"]
        if not self._ready.is_set():
            t = time.perf_counter() - (self._encode_started or time.perf_counter())
            parts.append(f"encoding… {t:.0f} s" if seg is not None else f"loading model… {t:.0f} s")
        elif self._ready_error is not None:
            parts.append(f"<span style='color:#dc2626'>not ready: {html.escape(str(self._ready_error))}</span>")
        else:
            st = seg.stats
            parts.append(f"encode {st['last_encode_s']:.1f} s" if st.get("last_encode_s") else "embedding cached")
            parts.append(f"last decode {_fmt_ms(st.get('last_decode_s'))}")
        if self._error:
            parts.append(f"<span style='color:#dc2626'>{html.escape(self._error)}</span>")
        self._status.value = " · ".join(parts)

    def _ui_call(self, fn: Callable, *args: Any) -> None:
        """Run an action from a button or key; errors go to the status line, not a traceback."""
        try:
            fn(*args)
            self._error = None
        except (ValueError, TypeError, IndexError, RuntimeError) as exc:
            self._error = str(exc)
        self._update_status()

    def _ui_commit(self) -> None:
        snap = self._history.current
        if snap.slot is not None and not snap.slot.done:
            self._error = "still computing the mask; try again in a moment."
            self._update_status()
            return
        self._ui_call(self.commit, self._label_text.value or None)
        if self._error is None:
            self._label_text.value = ""

    def _on_candidate_button(self, change: dict) -> None:
        if not self._syncing and change["new"] is not None:
            self._ui_call(self.select, change["new"])

    def _on_hover_toggle(self, change: dict) -> None:
        if not change["new"]:
            self._hover_point = None
            if self._shown["current"] and self._shown["current"][0] == "preview":
                self._redraw_current()

    def _redraw_current(self) -> None:
        with self._render_lock:
            self._shown["current"] = ("stale",)  # differs from every key: the layer is redrawn
            self._render()

    # ================================================================== browser events
    def _to_image(self, ev: dict) -> tuple[tuple[float, float], tuple[int, int]] | None:
        """Event -> (display px (x, y), image pixel (col, row)); None if it has no position."""
        try:
            rx, ry = float(ev["relativeX"]), float(ev["relativeY"])
            bw, bh = float(ev.get("boundingRectWidth") or 0), float(ev.get("boundingRectHeight") or 0)
        except (KeyError, TypeError, ValueError):
            return None
        dh, dw = self._display_hw
        cx = rx * dw / bw if bw > 0 else rx  # CSS pixels -> canvas pixels
        cy = ry * dh / bh if bh > 0 else ry
        H, W = self._image.shape[:2]
        ix = min(W - 1, max(0, math.floor(cx * self._sx)))
        iy = min(H - 1, max(0, math.floor(cy * self._sy)))
        return (cx, cy), (ix, iy)

    def _on_dom_event(self, ev: dict) -> None:
        self.stats["events"] += 1
        kind = ev.get("type")
        try:
            if kind == "keydown":
                self._on_key(ev)
            elif kind == "mousedown":
                self._on_mouse_down(ev)
            elif kind == "mousemove":
                self._on_mouse_move(ev)
            elif kind == "mouseup":
                self._on_mouse_up(ev)
            elif kind == "mouseleave":
                self._drag = None
                self._hover_point = None
                self._draw_rubber(None)
                if self._shown["current"] and self._shown["current"][0] == "preview":
                    self._redraw_current()
        except Exception as exc:  # noqa: BLE001 - never a traceback in the page for a click
            log.exception("event handling failed")
            self._error = f"{type(exc).__name__}: {exc}"
            self._update_status()

    def _on_mouse_down(self, ev: dict) -> None:
        pos = self._to_image(ev)
        if pos is None:
            return
        negative = ev.get("button") == 2 or bool(ev.get("shiftKey")) or self._mode.value == "negative"
        self._drag = {"start": pos, "end": pos, "label": 0 if negative else 1, "moved": False}

    def _on_mouse_move(self, ev: dict) -> None:
        pos = self._to_image(ev)
        if pos is None:
            return
        d = self._drag
        if d is not None:
            (sx, sy), (ex, ey) = d["start"][0], pos[0]
            d["end"] = pos
            if not d["moved"] and math.hypot(ex - sx, ey - sy) >= _DRAG_THRESHOLD:
                d["moved"] = True
            if d["moved"]:
                self._draw_rubber((min(sx, ex), min(sy, ey), max(sx, ex), max(sy, ey)))
        elif self._hover_box.value and self._ready.is_set() and self.prompts.is_empty:
            self._hover_point = pos[1]
            self._worker.request_preview(pos[1])

    def _on_mouse_up(self, ev: dict) -> None:
        d, self._drag = self._drag, None
        if d is None:
            return
        pos = self._to_image(ev) or d["end"]
        if d["moved"] or math.hypot(pos[0][0] - d["start"][0][0], pos[0][1] - d["start"][0][1]) >= _DRAG_THRESHOLD:
            (ax, ay), (bx, by) = d["start"][1], pos[1]
            self._draw_rubber(None)
            self._push_prompts(self.prompts.with_box((min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))))
        elif self._mode.value == "box":
            self._error = "box mode: press, drag and release to draw a box."
            self._update_status()
        else:
            x, y = d["start"][1]
            self._push_prompts(self.prompts.with_point(x, y, d["label"]))
        self._hover_point = None
        self._error = None

    def _draw_rubber(self, rect: tuple[float, float, float, float] | None) -> None:
        with self._render_lock:
            self._view.batch(lambda: self._draw_prompt_layer(self.prompts, rect))

    def _on_key(self, ev: dict) -> None:
        key = str(ev.get("key", ""))
        ctrl = bool(ev.get("ctrlKey") or ev.get("metaKey"))
        shift = bool(ev.get("shiftKey"))
        low = key.lower()
        if ctrl and low == "z":
            self.redo() if shift else self.undo()
        elif ctrl and low == "y":
            self.redo()
        elif ctrl:
            return
        elif key in ("1", "2", "3"):
            self._ui_call(self.select, int(key) - 1)
        elif key == "Enter":
            self._ui_commit()
        elif key == "Escape":
            self.clear()
        elif low in ("p", "n", "b"):
            self._mode.value = {"p": "positive", "n": "negative", "b": "box"}[low]
        elif low == "h":
            self._hover_box.value = not self._hover_box.value
        elif key == "?":
            self._help_btn.value = not self._help_btn.value


class _Worker(threading.Thread):
    """Loads + encodes once, then answers the newest state (and hover previews), latest wins."""

    def __init__(self, widget: SamWidget) -> None:
        super().__init__(name="SamWidget-worker", daemon=True)
        self.widget = widget
        self._cv = threading.Condition()
        self._wanted = False
        self._preview: tuple[int, int] | None = None
        self._stopped = False
        self.idle = threading.Event()

    def request(self) -> None:
        with self._cv:
            self._wanted = True
            self.idle.clear()
            self._cv.notify()

    def request_preview(self, point: tuple[int, int]) -> None:
        with self._cv:
            self._preview = point
            self.idle.clear()
            self._cv.notify()

    def stop(self) -> None:
        with self._cv:
            self._stopped = True
            self._cv.notify()

    @property
    def stopped(self) -> bool:
        return self._stopped

    def run(self) -> None:
        w = self.widget
        try:
            w._prepare()
        except BaseException as exc:  # noqa: BLE001 - reported through wait_ready and the status line
            w._ready_error = exc
            w._ready.set()
            self.idle.set()
            w._update_status()
            return
        w._ready.set()
        w._update_status()
        while True:
            with self._cv:
                while not (self._wanted or self._preview or self._stopped):
                    self.idle.set()
                    self._cv.wait()
                if self._stopped:
                    return
                if self._wanted:
                    self._wanted, job = False, None
                else:
                    job, self._preview = self._preview, None
            try:
                if job is None:
                    w._compute_current()
                else:
                    w._compute_preview(job)
            except Exception:  # noqa: BLE001 - keep serving; the status line shows it
                log.exception("SamWidget worker job failed")
