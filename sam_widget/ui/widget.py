"""``SamWidget``: click on an object in the notebook, get its mask as a NumPy array.

The widget is a view over a :class:`~sam_widget.session.Session` (which holds the images,
their state, the segmenter and the background threads): it shows the current image on an
ipycanvas (four layers), a toolbar with the image navigation, the candidate masks with their
predicted IoU, the list of committed objects and a status line; it turns browser events into
session actions and forwards its Python methods to the session.

Threads: browser events only change the state and wake the session's worker; if events arrive
faster than predictions, the worker always takes the newest state (no backlog, never a stale
mask over a newer one). Python calls such as :meth:`SamWidget.add_point` wait for their answer,
so ``w.add_point(...); w.mask`` works in one cell.

Coordinates: everything public is in image pixels -- points ``(x, y)`` = (column, row), boxes
XYXY ``(x0, y0, x1, y1)``; masks are ``(H, W)`` bool at the full image size.
"""

from __future__ import annotations

import base64
import logging
from typing import Any, Callable

import ipywidgets as widgets
import numpy as np
import traitlets
from ipyevents import Event

from ..render_static import png_bytes
from ..session import Session
from ..session.pages import DEFAULT_MASK_BUDGET
from ..state import ObjectRecord, Prompts
from .canvas_view import CanvasView
from .comms import no_execute_hooks_off_main_thread
from .controls import SHORTCUTS, Controls
from .events import EventTranslator
from .everything_view import EverythingPanel, ProposalsLayer, with_proposals
from .explain_panel import ExplainPanel
from .focus import Focus
from .painter import CURRENT_COLOR as _CURRENT_COLOR  # noqa: F401 - the names tests import from here
from .painter import PREVIEW_COLOR as _PREVIEW_COLOR  # noqa: F401
from .painter import Painter

__all__ = ["SamWidget", "SHORTCUTS"]

log = logging.getLogger(__name__)
_UI_ERRORS = (ValueError, TypeError, IndexError, RuntimeError)


class SamWidget(widgets.VBox):
    """Segment Anything on an image -- or a set of images -- inside the notebook.

    Args:
      image: one image -- ``H x W x 3`` uint8 RGB (or gray, RGBA, uint16, float in [0, 1]),
        a PIL image, a file path -- or a set: a list of those, a folder, a glob pattern
        (``"shots/*.jpg"``). Files are read when shown (and the next one in advance). A
        :class:`~sam_widget.session.Session` may be passed instead, to show it.
      segmenter: a ``Segmenter`` to use; if None one is loaded from ``model`` /
        ``checkpoint`` in the background (the image appears at once either way).
      model: ``"vit_b"``, ``"vit_l"``, ``"vit_h"`` or ``"tiny_shapes"`` (offline model); None
        with a ``checkpoint``: the type is read from the file.
      checkpoint: path of a checkpoint file; None downloads the official one once.
      display_size: longest side of the shown image in screen pixels; prompts are mapped
        back to full image pixels and masks are always full resolution.
      refine: follow SamPredictor's interactive recipe: the first prompt gives three
        candidates (best selected); each further prompt is answered with one mask, using
        the selected candidate's low-res logits as ``mask_input``. With ``refine=False``
        every prompt change asks for three candidates from the prompts alone.
      hover: preview the mask under the pointer before any click.
      prefetch: with several images, encode the next one while the current one is shown.
      autosave: a session file (e.g. ``"work.json"``): every committed change is written to it
        within about a second, off the click path; if it exists, its objects are restored
        first and the status line says so (see :class:`~sam_widget.session.Session`).
      precision: ``"auto"`` (bf16 where the hardware computes it natively, else fp32),
        ``"fp32"`` or ``"bf16"`` for the model the widget loads (see ``Segmenter``); ignored
        when ``segmenter`` is given.

    Bad arguments raise at once: ``ValueError`` for an unknown model or device name, an
    empty folder or list, a glob matching nothing; ``CheckpointError`` for a checkpoint path
    that does not exist; ``TypeError`` for arguments of the wrong type.

    The ``value`` traitlet is a revision number that increases after every change of the
    mask, the objects or the image shown: ``w.observe(cb, names="value")`` and
    ``ipywidgets.interactive_output(f, {"rev": w})`` re-run on every update.
    """

    value = traitlets.Int(0, help="Revision number, +1 after every mask/objects/image change.")

    def __init__(
        self,
        image: Any,
        segmenter: Any | None = None,
        model: str | None = "vit_b",
        checkpoint: str | None = None,
        display_size: int = 800,
        *,
        device: str = "auto",
        refine: bool = True,
        hover: bool = False,
        cache_dir: str | None = None,
        prefetch: bool = True,
        mask_cache_bytes: int = DEFAULT_MASK_BUDGET,
        autosave: str | None = None,
        precision: str = "auto",
    ) -> None:
        self._owns_session = not isinstance(image, Session)
        if not self._owns_session:
            if autosave is not None:
                raise ValueError("autosave belongs to the session: pass it to Session(...), not to SamWidget(session).")
            session = image
        else:
            session = Session(
                image, segmenter, model, checkpoint, device=device, cache_dir=cache_dir, refine=refine,
                display_size=display_size, prefetch=prefetch, mask_cache_bytes=mask_cache_bytes, autosave=autosave,
                precision=precision,
            )  # fmt: skip
        self._session = session
        try:
            self._callbacks: list[Callable[["SamWidget"], None]] = []
            self._controls = Controls(session.refine, hover, multi=len(session.images) > 1)
            self._view = CanvasView(session.canvas_hw)
            self._painter = Painter(self._view, session, lambda: bool(self._controls.hover_box.value))
            self._everything_panel = EverythingPanel()
            self._everything_params: dict[str, Any] = {}
            self._proposals = ProposalsLayer(self._view, session)
            self._input = EventTranslator(self)
            self._focus = Focus(session, self._painter, self._controls)
            c = self._controls
            self._explain = ExplainPanel(self)
            c.toolbar.children = (*c.toolbar.children, self._explain.toggle)
            main = widgets.HBox([self._view.canvas, c.side, self._explain.box])
            super().__init__(children=[c.toolbar, *self._everything_panel.widgets(), main, c.status, c.help])
            self.add_class("sam-widget")
            self._wire_controls()
            self._wire_everything()
            self._events = Event(
                source=self._view.canvas,
                watched_events=["mousedown", "mouseup", "mousemove", "mouseleave", "contextmenu", "keydown"],
                prevent_default_action=True,
                ignore_modifier_key_events=True,
            )
            self._events.on_dom_event(self._on_dom_event)
            # Widget messages handled on a JupyterLab subshell must not run IPython's execution
            # hooks concurrently with the user's cell (they garble matplotlib figures): see comms.py.
            no_execute_hooks_off_main_thread(self, self._events)
            self._view.canvas.on_client_ready(lambda *_: self._redraw_all())
        except BaseException:
            if self._owns_session:
                session.close()
            raise
        session.on_change(self._session_changed)
        session.subscribe(self)
        self.changed(session)

    # ================================================================== the session's listener
    def changed(self, session: Session) -> None:
        """The session's state changed: draw what differs, sync the controls (under its lock)."""
        self._focus.follow()
        self._painter.render()
        self._proposals.render()
        self._controls.sync(session, self._painter.highlight)
        self._everything_panel.sync(session)
        self._explain.sync()

    def status(self, session: Session) -> None:
        """The session's status changed (progress, errors)."""
        self._controls.show_status(session)
        self._everything_panel.sync(session)

    def _redraw_all(self) -> None:
        """A browser (re)connected: its layers are blank, so paint everything again."""
        with self._session.lock:
            self._painter.redraw_all()
            self._proposals.forget()
            self._proposals.render()

    def _session_changed(self, _session: Session) -> None:
        self.value += 1
        for cb in list(self._callbacks):
            try:
                cb(self)
            except Exception as exc:  # noqa: BLE001 - a user's callback must not break the widget
                log.exception("on_change callback failed")
                self._session.error = f"on_change callback failed: {exc}"
                self._update_status()

    # ================================================================== public API
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

    @property
    def refine(self) -> bool:
        """Whether further prompts refine the chosen candidate (see the class docstring)."""
        return self._session.refine

    @refine.setter
    def refine(self, on: bool) -> None:
        self._controls.refine_box.value = bool(on)

    @property
    def opacity(self) -> float:
        """Fill opacity of the masks, 0 (outlines only) to 1 (the toolbar's *opacity* slider).

        The current mask and the objects are filled at this opacity over a dark outer and a
        light inner outline, which stay opaque.
        """
        return float(self._controls.opacity_slider.value)

    @opacity.setter
    def opacity(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise TypeError(f"opacity must be a number from 0 to 1, not {type(value).__name__}.")
        if not 0.0 <= float(value) <= 1.0:  # NaN fails too
            raise ValueError(f"opacity must be from 0 to 1, got {value}.")
        self._controls.opacity_slider.value = float(value)

    @property
    def highlighted(self) -> int | None:
        """Position in :attr:`objects` of the highlighted object (the one selected in the object
        list), or None. It is drawn with a thicker white-and-colour outline over the others,
        which dim (as while an object is edited). *Edit*, *Rename* and *Delete* act on it.

        Set it to highlight an object (None: no highlight). Editing an object (Alt + click,
        *Edit*, :meth:`edit`) selects it; Esc / :meth:`clear`, the first prompt of a new object
        and another image clear the selection.
        """
        return self._focus.index

    @highlighted.setter
    def highlighted(self, index: int | None) -> None:
        if index is None:
            self._focus.select(None)
            return
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"highlighted must be an object index (int) or None, not {type(index).__name__}.")
        objects = self._session.objects
        if not 0 <= index < len(objects):
            raise IndexError(f"object {index} does not exist; there are {len(objects)} objects.")
        self._focus.select(objects[index].id)

    @property
    def hover(self) -> bool:
        """Whether the mask under the pointer is previewed before any click."""
        return bool(self._controls.hover_box.value)

    @hover.setter
    def hover(self, on: bool) -> None:
        self._controls.hover_box.value = bool(on)

    def wait_ready(self, timeout: float | None = None) -> "SamWidget":
        """Block until the model is loaded and the current image encoded. Raises what went wrong
        (``RuntimeError``: the model; ``ImageError``: this image cannot be read; ``TimeoutError``)."""
        self._session.wait_ready(timeout)
        return self

    def wait_idle(self, timeout: float | None = 60.0) -> "SamWidget":
        """Block until every pending prompt has been answered and drawn (tests, scripts)."""
        self._session.wait_idle(timeout)
        return self

    def add_point(self, x: float, y: float, label: int = 1) -> "SamWidget":
        """Add a point prompt at image pixel ``(x, y)`` (column, row); label 1 = object, 0 = not.

        Waits for the new mask. Raises ``ValueError`` for a point outside the image, NaN, or
        a label other than 0/1 (the state is left unchanged).
        """
        self._session.add_point(x, y, label)
        return self

    def add_box(self, x0: float, y0: float, x1: float, y1: float) -> "SamWidget":
        """Set the box prompt (XYXY image pixels; replaces any previous box). Waits for the mask.

        Raises ``ValueError`` for NaN, ``x1 < x0`` / ``y1 < y0`` or a box reaching outside the image.
        """
        self._session.add_box(x0, y0, x1, y1)
        return self

    def select(self, index: int) -> "SamWidget":
        """Choose candidate ``index`` (0-based). ``IndexError`` if there is no such candidate."""
        self._session.select(index)
        return self

    def commit(self, label: str | None = None) -> ObjectRecord:
        """Add the current mask as an object (default label "object N"); clears the prompts.

        While an object is being edited it is replaced instead (same id, colour and label).
        Raises ``ValueError`` when there is no mask to commit (no prompts, or an empty mask).
        """
        return self._session.commit(label)

    def delete(self, index: int) -> "SamWidget":
        """Delete object ``index`` (0-based position in :attr:`objects`); ``IndexError`` if missing."""
        self._session.delete(index)
        return self

    def rename(self, index: int, label: str) -> "SamWidget":
        """Give object ``index`` a new label (a non-empty string)."""
        self._session.rename(index, label)
        return self

    def edit(self, index: int) -> "SamWidget":
        """Edit object ``index``: its prompts come back, clicks refine its mask, :meth:`commit`
        (Enter) replaces it. Same as Alt + click on it, or *Edit* in the side panel."""
        self._session.edit(index)
        return self

    def add_object(self, mask: np.ndarray, label: str | None = None) -> ObjectRecord:
        """Add an ``(H, W)`` bool mask of the current image as an object (e.g. from another tool)."""
        return self._session.add_object(mask, label)

    def set_objects(self, label_image: Any) -> tuple[ObjectRecord, ...]:
        """Replace the current image's objects by one per non-zero value of a label image
        (``(H, W)`` integers or the path of such a file)."""
        return self._session.set_objects(label_image)

    def undo(self) -> bool:
        """Step back (prompts, candidate choice, commits, edits, deletes, renames).

        Returns False and changes nothing when there is nothing to undo.
        """
        return self._session.undo()

    def redo(self) -> bool:
        """Step forward again; False (no-op) when there is nothing to redo."""
        return self._session.redo()

    def clear(self) -> "SamWidget":
        """Clear the current prompts, stop editing and drop the highlight (committed objects
        stay). A no-op when there is nothing to clear."""
        self._focus.select(None)
        self._session.clear()
        return self

    def goto(self, index: int) -> "SamWidget":
        """Show image ``index`` (0-based); each image keeps its own objects, prompts and history."""
        self._session.goto(index)
        return self

    def next(self) -> bool:
        """Show the next image; False on the last one."""
        return self._session.next()

    def prev(self) -> bool:
        """Show the previous image; False on the first one."""
        return self._session.prev()

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

    def on_change(self, callback: Callable[["SamWidget"], None], remove: bool = False) -> None:
        """Call ``callback(widget)`` after every change of the mask, the objects or the image.

        Callbacks may run on the session's worker thread (after a browser click).
        """
        if not callable(callback):
            raise TypeError("callback must be callable.")
        if remove:
            if callback in self._callbacks:
                self._callbacks.remove(callback)
        elif callback not in self._callbacks:
            self._callbacks.append(callback)

    # ------------------------------------------------------------------ files (the session does the work)
    @property
    def autosave(self) -> Any:
        """The autosave file (a ``Path``), or None."""
        return self._session.autosave

    def save(self, path: Any = None) -> Any:
        """Write the whole session (every image, its objects with masks, labels, colours, scores,
        prompts, ids; the current image; the model) to ``path`` as a session file, atomically;
        ``None``: the autosave file, now. Load it with :meth:`SamWidget.load`. See
        :meth:`Session.save <sam_widget.session.Session.save>`."""
        return self._session.save(path)

    @classmethod
    def load(cls, path: Any, images: Any = None, *, hover: bool = False, **kwargs: Any) -> "SamWidget":
        """A widget over a session saved with :meth:`save` (or by autosave), e.g. in a new
        kernel: same images, objects, prompts, ids and current image; the undo history starts
        fresh. ``images``: the pixels of images that were given in memory (checked by sha256);
        ``kwargs``: the session's arguments (``autosave=True`` keeps saving into ``path``). See
        :meth:`Session.load <sam_widget.session.Session.load>`."""
        return cls._owning(Session.load(path, images, **kwargs), hover)

    def to_coco(self, path: Any = None, **options: Any) -> dict:
        """Every image and its objects as COCO instances JSON (written to ``path`` when given);
        ``polygons=True`` for polygons. See :meth:`Session.to_coco <sam_widget.session.Session.to_coco>`."""
        return self._session.to_coco(path, **options)

    def export_png(self, out_dir: Any, **options: Any) -> list:
        """Per image a label PNG equal to ``results[i].labels`` (``per_object=True``: one mask
        PNG per object) into ``out_dir``. See :meth:`Session.export_png <sam_widget.session.Session.export_png>`."""
        return self._session.export_png(out_dir, **options)

    def measurements(self, **options: Any) -> Any:
        """pandas DataFrame, one row per object of every image (area, bbox, centroid, perimeter,
        ..., mean intensity; ``pixel_size=`` for physical units). See
        :meth:`Session.measurements <sam_widget.session.Session.measurements>`."""
        return self._session.measurements(**options)

    @classmethod
    def from_coco(cls, path: Any, image_dir: Any = None, *, images: Any = None, hover: bool = False, **kwargs: Any) -> "SamWidget":
        """A widget over the images of a COCO file, every annotation an editable object. See
        :meth:`Session.from_coco <sam_widget.session.Session.from_coco>`."""
        return cls._owning(Session.from_coco(path, image_dir, images=images, **kwargs), hover)

    def load_coco(self, path: Any, image_dir: Any = None) -> int:
        """Add a COCO file's annotations as objects of these images; returns how many. See
        :meth:`Session.load_coco <sam_widget.session.Session.load_coco>`."""
        return self._session.load_coco(path, image_dir)

    @classmethod
    def _owning(cls, session: Session, hover: bool) -> "SamWidget":
        try:
            w = cls(session, hover=hover)
        except BaseException:
            session.close()
            raise
        w._owns_session = True  # made here: closing the widget closes it
        return w

    def snapshot(self, full_size: bool = False) -> np.ndarray:
        """A still picture of what the widget shows: the image, the objects, the current mask,
        the prompts and the "segment everything" proposals still shown. ``h x w x 3`` uint8 RGB
        at the display size (``full_size=True``: the image's size, full-resolution masks). Waits
        for a mask still being computed. Display it with ``PIL.Image.fromarray(w.snapshot())``;
        save it with ``.save("selection.png")``.
        """
        self.candidates  # waits for the current answer, if one is being computed
        return with_proposals(self._painter.picture(full_size), self._session, full_size)  # + "everything" proposals

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
        self._explain.show(bool(on))
        return self

    def to_code(self, index: int | None = None, objects: Any = None) -> str:
        """A runnable Python cell that makes the objects' masks again with plain
        ``segment_anything`` (``sam_model_registry``, ``SamPredictor``) and checks them against
        the saved masks: bit for bit in exact mode, IoU >= 0.99 otherwise. ``index``: one
        image (default: every image with objects); ``objects``: positions in its objects.
        See ``Session.to_code`` and :mod:`sam_widget.provenance`."""
        return self._session.to_code(index=index, objects=objects)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict | None:
        """The live widget, plus a PNG of its state at display time for front ends that cannot
        show the widget (nbconvert/HTML exports, GitHub): they pick the picture instead."""
        bundle = super()._repr_mimebundle_(**kwargs)
        if bundle is not None:
            try:
                bundle["image/png"] = base64.b64encode(png_bytes(self._painter.picture(), 3)).decode()
            except Exception:  # noqa: BLE001 - the live widget must display even if the picture fails
                log.exception("static picture of the widget failed")
        return bundle

    def close(self) -> None:
        """Close the widgets and stop the background threads (of a session the widget made;
        a session passed in stays open)."""
        session = getattr(self, "_session", None)  # None when __init__ failed (called from __del__)
        if session is not None:
            session.unsubscribe(self)
            session.on_change(self._session_changed, remove=True)
            if getattr(self, "_owns_session", True):
                session.close()
        super().close()

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

    # ================================================================== controls and events
    def _wire_controls(self) -> None:
        c = self._controls
        c.undo_btn.on_click(lambda _: self._ui_call(self.undo))
        c.redo_btn.on_click(lambda _: self._ui_call(self.redo))
        c.clear_btn.on_click(lambda _: self._ui_call(self.clear))
        c.prev_btn.on_click(lambda _: self._ui_call(self.prev))
        c.next_btn.on_click(lambda _: self._ui_call(self.next))
        c.add_btn.on_click(lambda _: self._ui_commit())
        c.delete_btn.on_click(lambda _: self._ui_call(self.delete, c.obj_list.value))
        c.edit_btn.on_click(lambda _: self._ui_call(self.edit, c.obj_list.value))
        c.rename_btn.on_click(lambda _: self._ui_call(self.rename, c.obj_list.value, c.label_text.value))
        c.cand.observe(lambda ch: c.syncing or ch["new"] is None or self._ui_call(self.select, ch["new"]), "value")
        c.refine_box.observe(lambda ch: setattr(self._session, "refine", bool(ch["new"])), "value")
        c.hover_box.observe(lambda ch: ch["new"] or self._session.stop_preview(), "value")
        c.opacity_slider.observe(lambda ch: self._set_opacity(ch["new"]), "value")
        c.obj_list.observe(lambda ch: c.syncing or self._focus.list_selected(ch["new"]), "value")

    def _set_opacity(self, value: float) -> None:
        with self._session.lock:
            self._painter.opacity = float(value)
            self._painter.render()

    def _wire_everything(self) -> None:
        e = self._everything_panel
        e.run_btn.on_click(lambda _: self._ui_call(self._start_everything))
        e.stop_btn.on_click(lambda _: self._ui_call(self.stop_everything))
        e.accept_all_btn.on_click(lambda _: self._ui_call(self.accept_all))
        e.clear_btn.on_click(lambda _: self._ui_call(self.clear_proposals))

    def _start_everything(self) -> None:
        """The *Everything* button / E key: start a run with the default parameters; return at once."""
        self._session.start_everything(**self.everything_params)

    def _on_dom_event(self, ev: dict) -> None:
        """Every browser event on the canvas comes in here (ipyevents)."""
        self._session.stats["events"] += 1
        try:
            self._input.handle(ev)
        except Exception as exc:  # noqa: BLE001 - never a traceback in the page for a click
            log.exception("event handling failed")
            self._session.error = f"{type(exc).__name__}: {exc}"
            self._update_status()

    def _ui_call(self, fn: Callable, *args: Any) -> None:
        """Run an action from a button or key; errors go to the status line, not a traceback."""
        try:
            fn(*args)
            self._session.error = None
        except _UI_ERRORS as exc:
            self._session.error = str(exc)
        self._update_status()

    def _ui_commit(self) -> None:
        snap = self._session.current
        if snap.slot is not None and not snap.slot.done:
            self._session.error = "still computing the mask; try again in a moment."
            self._update_status()
            return
        c = self._controls
        self._ui_call(self.commit, c.label_text.value or None)
        if self._session.error is None:
            c.label_text.value = ""

    def _update_status(self) -> None:
        self._controls.show_status(self._session)


_CONTROL_NAMES = {
    "_mode": "mode",
    "_undo_btn": "undo_btn",
    "_redo_btn": "redo_btn",
    "_clear_btn": "clear_btn",
    "_refine_box": "refine_box",
    "_hover_box": "hover_box",
    "_help_btn": "help_btn",
    "_cand": "cand",
    "_label_text": "label_text",
    "_add_btn": "add_btn",
    "_obj_list": "obj_list",
    "_rename_btn": "rename_btn",
    "_edit_btn": "edit_btn",
    "_delete_btn": "delete_btn",
    "_status": "status",
    "_help": "help",
    "_prev_btn": "prev_btn",
    "_next_btn": "next_btn",
    "_nav_label": "nav_label",
}

# ``w._mode``, ``w._undo_btn``, ...: the controls under the names they have always had.
for _name, _attr in _CONTROL_NAMES.items():
    setattr(SamWidget, _name, property(lambda self, _a=_attr: getattr(self._controls, _a)))
del _name, _attr
