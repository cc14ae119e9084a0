"""Drive a ``SamWidget`` without a browser: record what it draws, send it what a page sends.

Usable from tests, benchmarks and notebooks (no browser, no kernel, no torch needed)::

    from sam_widget.testing import CURRENT, EventInjector, LayerReplay, RecordingComm, layer_commands

    with RecordingComm.install() as rec:
        w = SamWidget(image, segmenter=seg).wait_ready()
        ui = EventInjector(w)
        ui.click_image(120, 80)                  # image pixel (column 120, row 80)
        w.wait_idle()
        patch = layer_commands(w, rec, CURRENT, name="putImageData")[-1]
        patch.image                              # the RGBA patch the browser would paint
        shown = LayerReplay(w._display_hw).apply(layer_commands(w, rec, CURRENT)).covered

Coordinate systems (all ``(x, y)`` = ``(column, row)``):

* **image pixels** -- of ``widget.image`` (``H x W``); prompts (``w.prompts``) are in these.
* **display pixels** (canvas pixels) -- of the canvas bitmap; every drawing command's
  arguments (``putImageData`` position, ``strokeRect``, ``fillCircle``, ...) are in these.
  The image is drawn ``widget._display_hw = (dh, dw)`` pixels large; for a single image that
  is the whole canvas, in a set of images of mixed sizes a smaller image sits centred in it.
* **CSS pixels** -- of the canvas *element* on the page, relative to its top-left corner,
  whose on-screen size is ``css_w x css_h`` (``css_scale`` times the canvas size by
  default). ipyevents reports pointer positions in these (``relativeX/Y``, rounded to whole
  pixels with ``Math.round``) together with ``boundingRectWidth/Height``.

The mapping between them is the widget's own :class:`sam_widget.viewport.Viewport`
(``widget._viewport``): the injector aims with the same arithmetic the widget decodes with.

Contents:

* :class:`RecordingComm` -- replaces the comm of ipycanvas' module-level canvas manager
  (``ipycanvas.canvas._CANVAS_MANAGER``: every drawing of every canvas goes through it) and
  records every message: when it was sent (``time.perf_counter()``), its bytes, and its
  decoded :class:`DrawCommand` s. :meth:`RecordingComm.wait_for` blocks until a message shows up.
* :func:`layer_commands`, :func:`prompt_layer`, :class:`LayerReplay` -- what one layer of the
  widget (:data:`IMAGE`, :data:`OBJECTS`, :data:`CURRENT`, :data:`PROMPTS`) was sent, what the
  prompt layer shows, and the pixels a browser shows after replaying a layer's commands.
* :class:`EventInjector` -- sends ipyevents DOM events (mouse, keys) through the real message
  path: the ipyevents ``Event`` widget's ``_handle_msg`` with a ``{"method": "custom"}`` message.
* :func:`frontend_update`, :func:`frontend_click` -- the same for ordinary widgets (toggle
  buttons, text boxes, buttons).

Command decoding follows ipycanvas 0.14: ``buffers[0]`` is the JSON of either one command
``[id, args, n_buffers]`` or a batch (a list of such commands); ``switchCanvas`` commands
(``[60, ["IPY_MODEL_<id>"]]``) select the canvas the following commands draw on, and each
command's images / arrays are the next ``n_buffers`` of ``buffers[1:]``.

Nothing here knows the widget's internals beyond ``w._events`` (the ipyevents ``Event``),
``w._view.canvas`` (the ``MultiCanvas``), ``w._viewport`` and ``w._display_hw``.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from .ui.canvas_view import CURRENT, IMAGE, OBJECTS, PROMPTS

__all__ = [
    "RecordingComm",
    "RecordedMessage",
    "DrawCommand",
    "LayerReplay",
    "EventInjector",
    "command_names",
    "decode_commands",
    "model_id",
    "layer",
    "layer_commands",
    "prompt_layer",
    "frontend_update",
    "frontend_click",
    "IMAGE",
    "OBJECTS",
    "CURRENT",
    "PROMPTS",
]

_MODEL_PREFIX = "IPY_MODEL_"


def command_names() -> dict[int, str]:
    """``{command id: name}`` of ipycanvas' drawing commands."""
    from ipycanvas.canvas import COMMANDS

    return {v: k for k, v in COMMANDS.items()}


def model_id(widget_or_id: Any) -> str | None:
    """The comm/model id of a widget (a canvas layer), or the id string itself."""
    if widget_or_id is None:
        return None
    if isinstance(widget_or_id, str):
        return widget_or_id[len(_MODEL_PREFIX) :] if widget_or_id.startswith(_MODEL_PREFIX) else widget_or_id
    return widget_or_id.model_id


# ============================================================== recording the canvas comm
@dataclass
class DrawCommand:
    """One decoded ipycanvas command.

    ``name``: the ipycanvas command name (``"putImageData"``, ``"clearRect"``, ...);
    ``args``: its JSON arguments (positions and sizes in display pixels);
    ``canvas``: model id of the canvas it draws on (None before any ``switchCanvas``);
    ``buffers``: the command's own binary buffers (the PNG/JPEG bytes of ``putImageData``);
    ``message``: index of the comm message it came in.
    """

    name: str
    args: list
    canvas: str | None
    buffers: list[bytes] = field(default_factory=list)
    message: int = 0

    @functools.cached_property
    def _decoded(self) -> tuple[np.ndarray | None, str | None]:
        if not self.buffers:
            return None, None
        from PIL import Image

        with Image.open(io.BytesIO(self.buffers[0])) as im:
            return np.asarray(im.convert("RGBA") if im.mode in ("P", "LA", "PA") else im), im.format

    @property
    def image(self) -> np.ndarray | None:
        """The decoded image of ``putImageData`` (``h x w x 4`` RGBA for PNG, ``x 3`` for JPEG), or None.

        Decoded on first access (recording stays cheap), then cached.
        """
        return self._decoded[0]

    @property
    def image_format(self) -> str | None:
        """``"PNG"`` / ``"JPEG"`` for a command carrying an image, else None."""
        return self._decoded[1]

    @property
    def nbytes(self) -> int:
        """Size of this command's binary buffers on the wire."""
        return sum(len(b) for b in self.buffers)

    @property
    def xy(self) -> tuple[float, float]:
        """``(x, y)`` position argument of ``putImageData`` (display pixels)."""
        return float(self.args[0]), float(self.args[1])


def decode_commands(buffers: list[bytes], current_canvas: str | None = None, message: int = 0) -> tuple[list[DrawCommand], str | None]:
    """Decode one canvas-manager message: ``(commands, canvas current after it)``.

    ``switchCanvas`` commands are included (their ``canvas`` is the canvas they select).
    """
    if not buffers:
        return [], current_canvas
    names = command_names()
    raw = json.loads(bytes(buffers[0]))
    batch = raw if raw and isinstance(raw[0], list) else [raw]
    images = list(buffers[1:])
    out: list[DrawCommand] = []
    pos = 0
    for cmd in batch:
        cid = int(cmd[0])
        args = list(cmd[1]) if len(cmd) > 1 and cmd[1] is not None else []
        nbuf = int(cmd[2]) if len(cmd) > 2 else 0
        name = names.get(cid, f"#{cid}")
        if name == "switchCanvas":
            current_canvas = model_id(args[0]) if args else None
        own = [bytes(b) for b in images[pos : pos + nbuf]]
        pos += nbuf
        out.append(DrawCommand(name, args, current_canvas, own, message))
    return out, current_canvas


@dataclass
class RecordedMessage:
    """One message handed to the comm.

    ``t``: ``time.perf_counter()`` when ``send`` was called (before anything was copied);
    ``data``: the JSON part; ``buffers``: the binary buffers' bytes; ``commands``: decoded
    (each command's canvas as a front end connected since :meth:`RecordingComm.install` sees it);
    ``thread``: name of the thread that sent it.
    """

    index: int
    t: float
    data: Any
    buffers: list[bytes]
    commands: list[DrawCommand]
    thread: str

    @property
    def nbytes(self) -> int:
        """Bytes on the wire for this message: JSON part plus binary buffers."""
        return len(json.dumps(self.data, separators=(",", ":")).encode()) + sum(len(b) for b in self.buffers)

    def touches(self, canvas: Any, name: str | None = None) -> bool:
        """Whether this message draws on ``canvas`` (a layer or its model id), optionally with command ``name``."""
        cid = model_id(canvas)
        return any(c.canvas == cid and c.name != "switchCanvas" and (name is None or c.name == name) for c in self.commands)


class RecordingComm:
    """A comm that records every message instead of sending it; install it on ipycanvas' canvas manager.

    ``RecordingComm.install()`` swaps it in (keeping the manager's comm id) and returns it;
    :meth:`uninstall` (or leaving the ``with`` block) puts the original comm back.
    Thread-safe: widgets draw from worker threads.
    """

    kernel = "recording"  # ipywidgets only sends through comms whose ``kernel`` is set

    def __init__(self, comm_id: str | None = None) -> None:
        self.comm_id = comm_id or uuid.uuid4().hex
        self.messages: list[RecordedMessage] = []
        self._cond = threading.Condition()
        self._canvas: str | None = None
        self._callbacks: list[Callable] = []
        self._manager: Any = None
        self._original: Any = None

    # ---------------------------------------------------------------- comm protocol
    def send(self, data: Any = None, metadata: Any = None, buffers: Iterable[Any] | None = None) -> None:
        t = time.perf_counter()
        bufs = [bytes(b) for b in (buffers or [])]
        with self._cond:
            index = len(self.messages)
            try:
                cmds, self._canvas = decode_commands(bufs, self._canvas, index)
            except (ValueError, TypeError, IndexError, KeyError):
                cmds = []
            self.messages.append(RecordedMessage(index, t, data, bufs, cmds, threading.current_thread().name))
            self._cond.notify_all()

    def on_msg(self, callback: Callable) -> None:
        self._callbacks.append(callback)

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass

    def handle_msg(self, msg: dict) -> None:
        """Deliver a front-end message to the manager (as the kernel would)."""
        for cb in self._callbacks:
            cb(msg)

    # ---------------------------------------------------------------- install
    @classmethod
    def install(cls, manager: Any = None) -> "RecordingComm":
        """Put a new recorder on ``manager`` (default: ipycanvas' ``_CANVAS_MANAGER``)."""
        if manager is None:
            import ipycanvas.canvas

            manager = ipycanvas.canvas._CANVAS_MANAGER
        original = manager.comm
        rec = cls(getattr(original, "comm_id", None))
        rec._manager, rec._original = manager, original
        manager._current_canvas = None  # so the next drawing names its canvas explicitly
        manager.comm = rec
        return rec

    def uninstall(self) -> None:
        """Give the manager its original comm back (no-op if not installed)."""
        m, self._manager = self._manager, None
        if m is not None and m.comm is self:
            if self._original is not None:
                m.comm = self._original
            m._current_canvas = None

    def __enter__(self) -> "RecordingComm":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.uninstall()

    # ---------------------------------------------------------------- queries
    def mark(self) -> int:
        """Index of the next message (pass as ``start`` to look only at later messages)."""
        with self._cond:
            return len(self.messages)

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def since(self, start: int = 0) -> list[RecordedMessage]:
        with self._cond:
            return list(self.messages[start:])

    def commands(self, name: str | None = None, canvas: Any = None, start: int = 0) -> list[DrawCommand]:
        """Every drawing command from message ``start`` on, filtered by name and canvas (a layer or model id).

        Decoded as a page that connected at message ``start`` sees them: commands sent before
        the first ``switchCanvas`` from ``start`` on have ``canvas=None``. ``switchCanvas``
        commands themselves are left out unless ``name="switchCanvas"``.
        """
        cid = model_id(canvas)
        out: list[DrawCommand] = []
        switched = False
        for m in self.since(start):
            for c in m.commands:
                if c.name == "switchCanvas":
                    switched = True
                    if name != "switchCanvas":
                        continue
                elif not switched and c.canvas is not None:
                    c = dataclasses.replace(c, canvas=None)
                if (name is None or c.name == name) and (canvas is None or c.canvas == cid):
                    out.append(c)
        return out

    def find(self, predicate: Callable[[RecordedMessage], bool], start: int = 0) -> RecordedMessage | None:
        """The first message from ``start`` on for which ``predicate`` is true, or None."""
        for m in self.since(start):
            if predicate(m):
                return m
        return None

    def wait_for(
        self, predicate: Callable[[RecordedMessage], bool], timeout: float = 60.0, start: int = 0
    ) -> RecordedMessage:
        """Block until a message from ``start`` on satisfies ``predicate``; ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.messages):
                    if predicate(self.messages[i]):
                        return self.messages[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching canvas message within {timeout} s ({len(self.messages)} recorded).")
                self._cond.wait(left)

    @property
    def total_bytes(self) -> int:
        return sum(m.nbytes for m in self.since())


# ============================================================== the widget's layers
def layer(widget: Any, index: int) -> Any:
    """Canvas ``index`` (:data:`IMAGE`, :data:`OBJECTS`, :data:`CURRENT`, :data:`PROMPTS`) of ``widget``."""
    return widget._view.canvas[index]


def layer_commands(widget: Any, comm: RecordingComm, index: int, start: int = 0, name: str | None = None) -> list[DrawCommand]:
    """Commands sent to layer ``index`` of ``widget`` from message ``start`` on (optionally only ``name``)."""
    return comm.commands(name, canvas=layer(widget, index), start=start)


def prompt_layer(widget: Any, comm: RecordingComm, start: int = 0) -> dict:
    """What the prompt layer shows after its last full redraw (the last ``clear``).

    Returns ``{"markers": [(x, y, fill_style)], "rects": [(x, y, w, h, dashed)]}`` in
    display pixels.
    """
    import ipycanvas

    fill_attr = ipycanvas.Canvas.ATTRS["fill_style"]
    cmds = layer_commands(widget, comm, PROMPTS, start)
    last_clear = max((i for i, c in enumerate(cmds) if c.name == "clear"), default=-1)
    fill, dashed = None, False
    markers: list = []
    rects: list = []
    for c in cmds[last_clear + 1 :]:
        if c.name == "set" and c.args and c.args[0] == fill_attr:
            fill = c.args[1]
        elif c.name == "setLineDash":
            dashed = bool(c.args and c.args[0])
        elif c.name == "fillCircle":
            markers.append((c.args[0], c.args[1], fill))
        elif c.name == "strokeRect":
            rects.append((*c.args[:4], dashed))
    return {"markers": markers, "rects": rects}


class LayerReplay:
    """Paints recorded commands of one canvas onto an ``(h, w, 4)`` uint8 RGBA array (display pixels).

    Understands what a mask layer uses: ``clear``, ``clearRect``, ``putImageData``
    (source-over compositing, like the ipycanvas front end's drawImage of the bitmap).
    Other commands (strokes, fills) are ignored. ``apply`` returns the replay, so
    ``LayerReplay(w._display_hw).apply(cmds).covered`` works.
    """

    def __init__(self, size_hw: tuple[int, int]) -> None:
        self.rgba = np.zeros((*size_hw, 4), np.uint8)

    def apply(self, commands: Iterable[DrawCommand]) -> "LayerReplay":
        for c in commands:
            if c.name == "clear":
                self.rgba[:] = 0
            elif c.name == "clearRect":
                x, y, w, h = (int(round(float(v))) for v in c.args[:4])
                self.rgba[max(0, y) : max(0, y + h), max(0, x) : max(0, x + w)] = 0
            elif c.name == "putImageData" and c.image is not None:
                x, y = (int(round(float(v))) for v in (list(c.args[:2]) + [0, 0])[:2])
                img = c.image
                patch = img if img.shape[-1] == 4 else np.dstack([img, np.full(img.shape[:2], 255, np.uint8)])
                ph, pw = patch.shape[:2]
                dst = self.rgba[max(0, y) : y + ph, max(0, x) : x + pw]
                src = patch[max(0, -y) :, max(0, -x) :][: dst.shape[0], : dst.shape[1]]
                a = src[..., 3:4].astype(np.float64) / 255
                da = dst[..., 3:4].astype(np.float64) / 255
                out_a = a + da * (1 - a)
                rgb = np.where(out_a > 0, (src[..., :3] * a + dst[..., :3] * da * (1 - a)) / np.maximum(out_a, 1e-9), 0)
                dst[..., :3] = np.rint(rgb).astype(np.uint8)
                dst[..., 3] = np.rint(out_a[..., 0] * 255).astype(np.uint8)
        return self

    @property
    def covered(self) -> np.ndarray:
        """``(h, w)`` bool: pixels with any paint on them."""
        return self.rgba[..., 3] > 0


# ============================================================== injecting browser events
def _send_custom(widget: Any, content: dict) -> None:
    widget._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def frontend_update(widget: Any, **state: Any) -> None:
    """The browser changed ``state`` of ``widget`` (e.g. ``index=2`` of a ToggleButtons)."""
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}}, "buffers": []})


def frontend_click(button: Any) -> None:
    """The user clicked an ipywidgets ``Button`` in the page."""
    _send_custom(button, {"event": "click"})


def _js_round(v: float) -> int:
    """JavaScript's ``Math.round`` (halves round up), as ipyevents uses for ``relativeX/Y``."""
    return int(math.floor(float(v) + 0.5))


_BUTTON_BITS = {0: 1, 1: 4, 2: 2}  # MouseEvent.button -> its bit in MouseEvent.buttons
_KEY_CODES = {
    "Enter": "Enter",
    "Escape": "Escape",
    "?": "Slash",
    "Shift": "ShiftLeft",
    "Control": "ControlLeft",
    "Meta": "MetaLeft",
    "Alt": "AltLeft",
    "ArrowLeft": "ArrowLeft",
    "ArrowRight": "ArrowRight",
}


class EventInjector:
    """Sends ipyevents DOM events to a ``SamWidget``'s canvas, as the browser would.

    Positions passed to the mouse methods are **CSS pixels** relative to the canvas element,
    whose on-screen size is ``css_size = (width, height)``; by default ``css_scale`` times the
    canvas (display) size -- 1.0: shown at its own size; 1.37: enlarged by browser zoom or page
    CSS. ``relativeX/Y`` are rounded to whole CSS pixels like ipyevents does (``Math.round``)
    unless ``round_css=False`` (then fractional positions are sent as given, so any display or
    image position can be hit exactly). ``left``/``top``: the element's page position (only in
    ``clientX``/``pageX``/... fields, which the widget must not use).

    Use :meth:`css_of` (image pixel -> CSS) and :meth:`image_pixel` (CSS -> the image pixel
    the widget will see) to convert; :meth:`click_image` clicks an image pixel directly.
    ``buttons`` tracks the pressed mouse buttons (``MouseEvent.buttons``); ``sent`` counts events.
    """

    def __init__(
        self,
        widget: Any,
        css_size: tuple[float, float] | None = None,
        *,
        css_scale: float = 1.0,
        round_css: bool = True,
        left: float = 37.0,
        top: float = 211.0,
    ) -> None:
        self.widget = widget
        self.event = widget._events
        if css_size is None:
            dh, dw = self.display_hw
            css_size = (dw * float(css_scale), dh * float(css_scale))
        self.css_w, self.css_h = float(css_size[0]), float(css_size[1])
        self.round_css = bool(round_css)
        self.left, self.top = float(left), float(top)
        self.buttons = 0
        self.t = 1000.0  # the events' ``timeStamp`` (ms), +16 per event
        self.sent = 0

    # -- coordinates ----------------------------------------------------------------------
    @property
    def viewport(self) -> Any:
        """The widget's current :class:`~sam_widget.viewport.Viewport` (it changes with the image)."""
        return self.widget._viewport

    @property
    def display_hw(self) -> tuple[int, int]:
        """``(h, w)`` of the canvas bitmap (display pixels)."""
        return tuple(self.viewport.canvas_hw)

    def _css(self, v: float) -> float:
        return float(_js_round(v)) if self.round_css else float(v)

    def display_to_css(self, x: float, y: float) -> tuple[float, float]:
        """CSS position of display (canvas) position ``(x, y)``."""
        return self.viewport.canvas_to_css(x, y, self.css_w, self.css_h)

    def image_pixel(self, x: float, y: float) -> tuple[int, int] | None:
        """The image pixel ``(col, row)`` the widget sees for CSS position ``(x, y)`` (after rounding
        like ipyevents), or None off the image (in the margin around a smaller image)."""
        return self.viewport.css_to_image(self._css(x), self._css(y), self.css_w, self.css_h)

    def css_of(self, ix: float, iy: float) -> tuple[float, float]:
        """The CSS position of the centre of image pixel ``(ix, iy)``.

        ipyevents rounds to whole CSS pixels, so when a CSS pixel spans several image pixels
        the event lands on a neighbour: use :meth:`image_pixel` for the expected pixel, or
        :meth:`css_hitting` for a position that lands on ``(ix, iy)`` itself.
        """
        return self.viewport.image_to_css(ix + 0.5, iy + 0.5, self.css_w, self.css_h)

    def css_hitting(self, ix: int, iy: int) -> tuple[float, float]:
        """A CSS position over image pixel ``(ix, iy)``: with ``round_css`` off, its (fractional)
        centre, which the widget maps to exactly ``(ix, iy)``; with it on, the whole CSS pixel
        nearest that centre that maps to ``(ix, iy)`` -- or, if there is none (the page shows the
        image smaller than its pixel size, a CSS pixel spans several image pixels), the centre,
        which ipyevents rounds onto a neighbour (:meth:`image_pixel` says which)."""
        cx, cy = self.css_of(ix, iy)
        if not self.round_css:
            return cx, cy
        vp = self.viewport

        def hits(vx: float, vy: float) -> tuple[bool, bool]:
            p = vp.css_to_image(vx, vy, self.css_w, self.css_h)
            return (p is not None and p[0] == ix), (p is not None and p[1] == iy)

        xs = [v for v in range(math.floor(cx) - 1, math.ceil(cx) + 2) if hits(v, cy)[0]]
        ys = [v for v in range(math.floor(cy) - 1, math.ceil(cy) + 2) if hits(cx, v)[1]]
        bx = min(xs, key=lambda v: abs(v - cx), default=cx)
        by = min(ys, key=lambda v: abs(v - cy), default=cy)
        return float(bx), float(by)

    # -- raw events -----------------------------------------------------------------------
    def send(self, content: dict) -> None:
        """Deliver one event dict exactly as the ipyevents front end would."""
        self.t += 16.0
        self.sent += 1
        _send_custom(self.event, content)

    def _mods(self, shift: bool, ctrl: bool, meta: bool, alt: bool) -> dict:
        return {"shiftKey": bool(shift), "ctrlKey": bool(ctrl), "metaKey": bool(meta), "altKey": bool(alt)}

    def mouse(self, type: str, x: float, y: float, button: int = 0, *, shift=False, ctrl=False, meta=False, alt=False) -> None:
        """One mouse event of ``type`` at CSS position ``(x, y)``, with the current :attr:`buttons`."""
        rx, ry = self._css(x), self._css(y)
        cx, cy = self.left + rx, self.top + ry
        ox, oy = _js_round(rx), _js_round(ry)
        self.send(
            {
                "type": type,
                "timeStamp": self.t,
                **self._mods(shift, ctrl, meta, alt),
                "button": int(button),
                "buttons": self.buttons,
                "clientX": cx,
                "clientY": cy,
                "pageX": cx,
                "pageY": cy + 400,
                "screenX": cx + 10,
                "screenY": cy + 90,
                "x": cx,
                "y": cy,
                "offsetX": ox,
                "offsetY": oy,
                "layerX": ox,
                "layerY": oy,
                "movementX": 0,
                "movementY": 0,
                "relativeX": rx if not self.round_css else int(rx),
                "relativeY": ry if not self.round_css else int(ry),
                "boundingRectWidth": self.css_w,
                "boundingRectHeight": self.css_h,
                "boundingRectTop": self.top,
                "boundingRectLeft": self.left,
                "boundingRectBottom": self.top + self.css_h,
                "boundingRectRight": self.left + self.css_w,
                "target": {"tagName": "DIV", "id": "", "className": "multi-canvas"},
            }
        )

    def key(self, key: str, *, shift=False, ctrl=False, meta=False, alt=False) -> None:
        """A ``keydown`` of ``key`` (the DOM ``KeyboardEvent.key``: "Enter", "Escape", "z", "Z", "1", "?")."""
        code = _KEY_CODES.get(key)
        if code is None:
            code = f"Digit{key}" if key.isdigit() else f"Key{key.upper()}"
        self.send(
            {
                "type": "keydown",
                "timeStamp": self.t,
                **self._mods(shift, ctrl, meta, alt),
                "key": key,
                "code": code,
                "location": 0,
                "repeat": False,
                "target": {"tagName": "DIV", "id": "", "className": "multi-canvas"},
            }
        )

    # -- mouse primitives (CSS pixels) ---------------------------------------------------------
    def mouse_down(self, x: float, y: float, button: int = 0, *, shift: bool = False, ctrl: bool = False, alt: bool = False) -> None:
        self.buttons |= _BUTTON_BITS[button]
        self.mouse("mousedown", x, y, button, shift=shift, ctrl=ctrl, alt=alt)

    def mouse_up(self, x: float, y: float, button: int = 0, *, shift: bool = False, ctrl: bool = False, alt: bool = False) -> None:
        self.buttons &= ~_BUTTON_BITS[button]
        self.mouse("mouseup", x, y, button, shift=shift, ctrl=ctrl, alt=alt)

    def mouse_move(self, x: float, y: float, *, shift: bool = False) -> None:
        self.mouse("mousemove", x, y, 0, shift=shift)

    def mouse_leave(self) -> None:
        """The pointer leaves the canvas (reported just outside it)."""
        self.mouse("mouseleave", -5, -5, 0)

    # -- gestures (CSS pixels) -----------------------------------------------------------------
    def click(self, x: float, y: float, button: int = 0, *, shift: bool = False, ctrl: bool = False, alt: bool = False) -> None:
        """Press and release at ``(x, y)`` (right button: ``button=2``, followed by ``contextmenu``)."""
        self.mouse_down(x, y, button, shift=shift, ctrl=ctrl, alt=alt)
        self.mouse_up(x, y, button, shift=shift, ctrl=ctrl, alt=alt)
        if button == 2:
            self.mouse("contextmenu", x, y, 2, shift=shift, ctrl=ctrl, alt=alt)

    def shift_click(self, x: float, y: float) -> None:
        self.click(x, y, shift=True)

    def right_click(self, x: float, y: float) -> None:
        self.click(x, y, button=2)

    def click_image(self, ix: int, iy: int, button: int = 0, *, shift: bool = False, alt: bool = False) -> None:
        """Click on image pixel ``(ix, iy)`` (at :meth:`css_hitting`: exact with ``round_css=False``
        or whenever a whole CSS pixel lies over it)."""
        self.click(*self.css_hitting(ix, iy), button=button, shift=shift, alt=alt)

    def drag(self, x0: float, y0: float, x1: float, y1: float, steps: int = 6, *, shift: bool = False) -> None:
        """Press at ``(x0, y0)``, move in ``steps`` to ``(x1, y1)``, release there (a box)."""
        self.mouse_down(x0, y0, shift=shift)
        for i in range(1, steps + 1):
            f = i / steps
            self.mouse_move(x0 + (x1 - x0) * f, y0 + (y1 - y0) * f, shift=shift)
        self.mouse_up(x1, y1, shift=shift)

    def reconnect(self) -> None:
        """A browser (re)displays the widget: every canvas view reports ``client_ready``."""
        for c in self.widget._view.canvas._canvases:
            _send_custom(c, {"event": "client_ready"})
