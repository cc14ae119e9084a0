"""Test utilities: watch what a ``SamWidget`` sends to the browser, and click on it without one.

Two tools, usable from tests, benchmarks and notebooks (no browser, no kernel needed):

* :class:`RecordingComm` -- replaces the comm of ipycanvas' module-level canvas manager
  (``ipycanvas.canvas._CANVAS_MANAGER``, through which every canvas drawing goes) and records
  every message: the time it was handed to the comm, its exact bytes, and its decoded
  drawing commands (which layer canvas, which command, which image). Use it as a context
  manager::

      with RecordingComm.install() as rec:
          w = SamWidget(image, segmenter=seg).wait_ready()
          EventInjector(w).click_image(120, 80)
          w.wait_idle()
      puts = rec.commands(name="putImageData", canvas=w._view.canvas[2])
      overlay = puts[-1].image()            # the RGBA patch the browser would paint

* :class:`EventInjector` -- delivers browser DOM events (as ipyevents sends them) to a
  ``SamWidget`` through the same path a real event takes: the ipyevents ``Event`` widget's
  ``_handle_msg`` with a ``{"method": "custom", "content": event}`` message.

Command decoding follows ipycanvas 0.14: ``buffers[0]`` is the JSON of either one command
``[id, args, n_buffers]`` or a batch (a list of such commands); ``switchCanvas`` commands
(``[60, ["IPY_MODEL_<id>"]]``) select the canvas the following commands draw on, and each
command's images / arrays are the next ``n_buffers`` of ``buffers[1:]``.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

__all__ = [
    "RecordingComm",
    "RecordedMessage",
    "DrawCommand",
    "EventInjector",
    "command_names",
    "decode_commands",
    "model_id",
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


@dataclass
class DrawCommand:
    """One decoded ipycanvas command.

    ``canvas``: model id of the canvas it draws on (None before any ``switchCanvas``);
    ``buffers``: the command's own binary buffers (the PNG/JPEG bytes of ``putImageData``).
    """

    name: str
    args: list
    canvas: str | None
    buffers: list[bytes] = field(default_factory=list)

    def image(self) -> np.ndarray:
        """The decoded image of a ``putImageData`` / image command (``H x W x C`` uint8)."""
        if not self.buffers:
            raise ValueError(f"{self.name} carries no image buffer.")
        from PIL import Image

        with Image.open(io.BytesIO(self.buffers[0])) as im:
            return np.asarray(im.convert("RGBA") if im.mode in ("P", "LA", "PA") else im)

    @property
    def xy(self) -> tuple[float, float]:
        """``(x, y)`` position argument of ``putImageData`` (display pixels)."""
        return float(self.args[0]), float(self.args[1])


def decode_commands(buffers: list[bytes], current_canvas: str | None = None) -> tuple[list[DrawCommand], str | None]:
    """Decode one canvas-manager message: ``(commands, canvas current after it)``."""
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
        out.append(DrawCommand(name, args, current_canvas, own))
    return out, current_canvas


@dataclass
class RecordedMessage:
    """One message handed to the comm.

    ``t``: ``time.perf_counter()`` when ``send`` was called (before anything was copied);
    ``data``: the JSON part; ``buffers``: the binary buffers' bytes; ``commands``: decoded.
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
    """A comm that records every message; install it on ipycanvas' canvas manager.

    ``RecordingComm.install()`` swaps it in (keeping the manager's model id) and returns it;
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
            try:
                cmds, self._canvas = decode_commands(bufs, self._canvas)
            except (ValueError, TypeError, IndexError, KeyError):
                cmds = []
            msg = RecordedMessage(len(self.messages), t, data, bufs, cmds, threading.current_thread().name)
            self.messages.append(msg)
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
        """Every decoded command from message ``start`` on, filtered by name and canvas."""
        cid = model_id(canvas)
        return [
            c
            for m in self.since(start)
            for c in m.commands
            if (name is None or c.name == name) and (canvas is None or c.canvas == cid)
        ]

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


class EventInjector:
    """Sends ipyevents DOM events to a ``SamWidget`` through the real message path.

    Positions are canvas (display) pixels ``(x, y)``; they are reported as CSS pixels
    ``relativeX/Y`` of a bounding box ``css_scale`` times the canvas size (1.0: the canvas
    is shown at its own size; 2.0: stretched to twice its size by the page).
    """

    def __init__(self, widget: Any, css_scale: float = 1.0) -> None:
        self.widget = widget
        self.event = widget._events
        self.css_scale = float(css_scale)
        self.sent = 0

    # ---------------------------------------------------------------- geometry
    @property
    def display_hw(self) -> tuple[int, int]:
        return tuple(self.widget._display_hw)

    def image_to_display(self, ix: float, iy: float) -> tuple[float, float]:
        """Display position of the centre of image pixel ``(ix, iy)`` (column, row)."""
        H, W = self.widget.image.shape[:2]
        dh, dw = self.display_hw
        return (ix + 0.5) * dw / W, (iy + 0.5) * dh / H

    # ---------------------------------------------------------------- raw events
    def send(self, ev: dict) -> None:
        """Deliver one event dict exactly as the ipyevents front end would."""
        self.sent += 1
        self.event._handle_msg({"content": {"data": {"method": "custom", "content": ev}}, "buffers": []})

    def _mouse(self, kind: str, x: float, y: float, button: int = 0, shift: bool = False, ctrl: bool = False, meta: bool = False) -> dict:
        dh, dw = self.display_hw
        s = self.css_scale
        return {
            "type": kind,
            "button": int(button),
            "buttons": {0: 1, 1: 4, 2: 2}.get(int(button), 0) if kind == "mousedown" else 0,
            "shiftKey": bool(shift),
            "ctrlKey": bool(ctrl),
            "metaKey": bool(meta),
            "altKey": False,
            "relativeX": float(x) * s,
            "relativeY": float(y) * s,
            "boundingRectWidth": dw * s,
            "boundingRectHeight": dh * s,
        }

    def mouse_down(self, x: float, y: float, button: int = 0, shift: bool = False, ctrl: bool = False) -> None:
        self.send(self._mouse("mousedown", x, y, button, shift, ctrl))

    def mouse_up(self, x: float, y: float, button: int = 0, shift: bool = False, ctrl: bool = False) -> None:
        self.send(self._mouse("mouseup", x, y, button, shift, ctrl))

    def mouse_move(self, x: float, y: float, shift: bool = False) -> None:
        self.send(self._mouse("mousemove", x, y, 0, shift))

    def mouse_leave(self) -> None:
        self.send(self._mouse("mouseleave", -1.0, -1.0))

    # ---------------------------------------------------------------- gestures
    def click(self, x: float, y: float, button: int = 0, shift: bool = False) -> None:
        """Press and release at display position ``(x, y)`` (right button: ``button=2``)."""
        self.mouse_down(x, y, button, shift)
        self.mouse_up(x, y, button, shift)

    def click_image(self, ix: float, iy: float, button: int = 0, shift: bool = False) -> None:
        """Click on the centre of image pixel ``(ix, iy)``."""
        self.click(*self.image_to_display(ix, iy), button=button, shift=shift)

    def drag(self, x0: float, y0: float, x1: float, y1: float, steps: int = 5) -> None:
        """Press at ``(x0, y0)``, move in ``steps`` to ``(x1, y1)`` and release (a box)."""
        self.mouse_down(x0, y0)
        for i in range(1, steps + 1):
            f = i / steps
            self.mouse_move(x0 + (x1 - x0) * f, y0 + (y1 - y0) * f)
        self.mouse_up(x1, y1)

    def key(self, key: str, ctrl: bool = False, shift: bool = False, meta: bool = False) -> None:
        """A ``keydown`` event (``key`` as the browser names it: "Enter", "Escape", "z", "1")."""
        self.send(
            {
                "type": "keydown",
                "key": key,
                "code": "",
                "shiftKey": bool(shift),
                "ctrlKey": bool(ctrl),
                "metaKey": bool(meta),
                "altKey": False,
                "repeat": False,
            }
        )
