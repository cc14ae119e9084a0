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

from .._checks import as_flag
from ..render_static import png_bytes
from ..session import Session
from ..session.pages import DEFAULT_MASK_BUDGET
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
from .widget_actions import _WidgetActions
from .widget_everything import _WidgetEverything
from .widget_explain import _WidgetExplain
from .widget_files import _WidgetFiles
from .widget_state import _WidgetState

__all__ = ["SamWidget", "SHORTCUTS"]

log = logging.getLogger(__name__)
_UI_ERRORS = (ValueError, TypeError, IndexError, RuntimeError)


class SamWidget(_WidgetState, _WidgetActions, _WidgetEverything, _WidgetFiles, _WidgetExplain, widgets.VBox):
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
            self._controls = Controls(session.refine, as_flag(hover, "hover"), multi=len(session.images) > 1)
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
    def refine(self) -> bool:
        """Whether further prompts refine the chosen candidate (see the class docstring)."""
        return self._session.refine

    @refine.setter
    def refine(self, on: bool) -> None:
        self._controls.refine_box.value = as_flag(on, "refine")

    @property
    def opacity(self) -> float:
        """Fill opacity of the masks, 0 (outlines only) to 1 (the toolbar's *opacity* slider).

        The current mask and the objects are filled at this opacity over a dark outer and a
        light inner outline, which stay opaque. The striped "segment everything" proposals
        fade with it too (0: only their outlines).
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
        self._controls.hover_box.value = as_flag(on, "hover")

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

    def snapshot(self, full_size: bool = False) -> np.ndarray:
        """A still picture of what the widget shows: the image, the objects, the current mask,
        the prompts and the "segment everything" proposals still shown. ``h x w x 3`` uint8 RGB
        at the display size (``full_size=True``: the image's size, full-resolution masks). Waits
        for a mask still being computed. Display it with ``PIL.Image.fromarray(w.snapshot())``;
        save it with ``.save("selection.png")``.
        """
        self.candidates  # waits for the current answer, if one is being computed
        picture = self._painter.picture(full_size)
        return with_proposals(picture, self._session, full_size, self._painter.opacity)  # + "everything" proposals

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
            self._painter.opacity = self._proposals.opacity = float(value)
            self._painter.render()
            self._proposals.render()

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
        self._ui_call(self.commit, c.label_text.value.strip() or None)
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
