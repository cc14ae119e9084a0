"""Drive a ``SamWidget`` through the real widget message paths, without a browser.

Two halves:

* :class:`RecordingComm` / :func:`recording_canvas_comm` replace the comm of ipycanvas'
  module-level canvas manager (every drawing of every canvas goes through it) and record
  what would be sent to the browser. :meth:`RecordingComm.commands` decodes the messages
  into :class:`DrawCommand` objects (``json.loads(bytes(buffers[0]))``, images decoded from
  ``buffers[1:]`` with Pillow), and :class:`LayerReplay` paints them onto an RGBA array, so
  a test can look at the pixels a browser would show.
* :class:`EventInjector` sends what the ipyevents front end sends — ``type``, ``button``,
  ``buttons``, modifier keys, ``key`` / ``code``, ``relativeX/Y`` in CSS pixels and the
  element's ``boundingRectWidth/Height`` — through ``Event._handle_msg``. The CSS size of the
  canvas is configurable, so CSS scaling (browser zoom, ``max-width: 100%``) is simulated.
  :func:`frontend_update` and :func:`frontend_click` do the same for ordinary widgets
  (toggle buttons, text boxes, buttons).

Also :class:`SlowSegmenter`: a ``Segmenter`` whose ``set_image`` waits on a gate and whose
``predict`` can be slowed down, for tests of background encoding and event coalescing.

Nothing here knows the widget's internals beyond ``w._events`` (the ipyevents ``Event``)
and ``w._view.canvas`` (the ``MultiCanvas``): the public drawing surface and event source.
"""

from __future__ import annotations

import io
import json
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import ipycanvas
import numpy as np
import torch
from ipycanvas.canvas import _CMD_LIST
from PIL import Image

from sam_widget.engine.segmenter import Segmenter

__all__ = [
    "DrawCommand",
    "RecordingComm",
    "recording_canvas_comm",
    "LayerReplay",
    "EventInjector",
    "frontend_update",
    "frontend_click",
    "SlowSegmenter",
    "layer_ids",
    "layer_commands",
    "prompt_layer",
    "IMAGE",
    "OBJECTS",
    "CURRENT",
    "PROMPTS",
    "BlobDecoder",
    "blob_sam",
]

IMAGE, OBJECTS, CURRENT, PROMPTS = range(4)  # layer order of the widget's MultiCanvas


# ============================================================== recording the canvas comm
@dataclass
class DrawCommand:
    """One decoded canvas command.

    ``canvas``: model id of the target canvas (from the preceding ``switchCanvas``);
    ``name``: the ipycanvas command name (``"putImageData"``, ``"clearRect"``, ...);
    ``args``: its JSON arguments; ``image``: the decoded image (``putImageData``), as an
    array of the mode Pillow decoded (RGBA for PNG); ``image_format``: ``"PNG"``/``"JPEG"``;
    ``nbytes``: size of the image buffer(s) on the wire; ``message``: index of the comm
    message it came in.
    """

    canvas: str | None
    name: str
    args: list
    image: np.ndarray | None = None
    image_format: str | None = None
    nbytes: int = 0
    message: int = 0


@dataclass
class _Message:
    data: Any
    buffers: list[bytes] = field(default_factory=list)


class RecordingComm:
    """Stands in for the canvas manager's comm: keeps every message instead of sending it.

    Thread-safe (the widget draws from its worker thread).
    """

    def __init__(self, comm_id: str) -> None:
        self.comm_id = comm_id
        self.kernel = "recording"  # ipywidgets only sends when the comm has a kernel
        self.messages: list[_Message] = []
        self._lock = threading.Lock()

    # -- the comm interface ipywidgets uses --------------------------------------------
    def send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        bufs = [bytes(b) for b in (buffers or [])]
        with self._lock:
            self.messages.append(_Message(data, bufs))

    def on_msg(self, callback: Any) -> None:
        pass

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass

    # -- inspection ----------------------------------------------------------------------
    def mark(self) -> int:
        """Position to pass as ``since`` to look only at what is sent after now."""
        with self._lock:
            return len(self.messages)

    def reset(self) -> None:
        with self._lock:
            self.messages.clear()

    def bytes_sent(self, since: int = 0) -> int:
        with self._lock:
            return sum(len(b) for m in self.messages[since:] for b in m.buffers)

    def commands(self, since: int = 0) -> list[DrawCommand]:
        """Decode every message from position ``since`` into a flat list of commands."""
        with self._lock:
            msgs = list(enumerate(self.messages))[since:]
        out: list[DrawCommand] = []
        current: str | None = None
        for index, msg in msgs:
            if not msg.buffers:
                continue
            payload = json.loads(msg.buffers[0])
            images = iter(msg.buffers[1:])
            batch = payload if payload and isinstance(payload[0], list) else [payload]
            for cmd in batch:
                name = _CMD_LIST[cmd[0]]
                args = cmd[1] if len(cmd) > 1 else []
                if name == "switchCanvas":
                    current = str(args[0]).replace("IPY_MODEL_", "")
                    continue
                nbuf = cmd[2] if len(cmd) > 2 else 0
                dc = DrawCommand(current, name, list(args), message=index)
                for _ in range(nbuf):
                    raw = next(images)
                    dc.nbytes += len(raw)
                    with Image.open(io.BytesIO(raw)) as im:
                        dc.image_format = im.format
                        dc.image = np.asarray(im.convert("RGBA") if im.mode in ("RGBA", "LA", "P") else im)
                out.append(dc)
        return out


@contextmanager
def recording_canvas_comm() -> Iterator[RecordingComm]:
    """Replace ``ipycanvas.canvas._CANVAS_MANAGER.comm`` by a :class:`RecordingComm`."""
    manager = ipycanvas.canvas._CANVAS_MANAGER
    old = manager.comm
    rec = RecordingComm(old.comm_id)
    manager.comm = rec
    try:
        yield rec
    finally:
        manager.comm = old


def layer_ids(widget: Any) -> list[str]:
    """Model ids of the widget's four canvas layers (image, objects, current, prompts)."""
    return [c.model_id for c in widget._view.canvas._canvases]


def layer_commands(widget: Any, comm: RecordingComm, layer: int, since: int = 0, name: str | None = None) -> list[DrawCommand]:
    """Commands sent to one layer of ``widget`` (optionally only those called ``name``)."""
    cid = layer_ids(widget)[layer]
    return [c for c in comm.commands(since) if c.canvas == cid and (name is None or c.name == name)]


def prompt_layer(widget: Any, comm: RecordingComm, since: int = 0) -> dict:
    """What the prompt layer shows after its last full redraw (the last ``clear``).

    Returns ``{"markers": [(x, y, fill_style)], "rects": [(x, y, w, h, dashed)]}`` in
    canvas (display) pixels.
    """
    cmds = layer_commands(widget, comm, PROMPTS, since)
    last_clear = max((i for i, c in enumerate(cmds) if c.name == "clear"), default=-1)
    fill, dashed = None, False
    markers: list = []
    rects: list = []
    for c in cmds[last_clear + 1 :]:
        if c.name == "set" and c.args and c.args[0] == ipycanvas.Canvas.ATTRS["fill_style"]:
            fill = c.args[1]
        elif c.name == "setLineDash":
            dashed = bool(c.args and c.args[0])
        elif c.name == "fillCircle":
            markers.append((c.args[0], c.args[1], fill))
        elif c.name == "strokeRect":
            rects.append((*c.args[:4], dashed))
    return {"markers": markers, "rects": rects}


class LayerReplay:
    """Paints recorded commands of one canvas onto an ``(h, w, 4)`` uint8 RGBA array.

    Understands what a mask layer uses: ``clear``, ``clearRect``, ``putImageData``
    (source-over compositing, like the ipycanvas front end's drawImage of the bitmap).
    Other commands (strokes, fills) are ignored.
    """

    def __init__(self, size_hw: tuple[int, int]) -> None:
        self.rgba = np.zeros((*size_hw, 4), np.uint8)

    def apply(self, commands: list[DrawCommand]) -> "LayerReplay":
        for c in commands:
            if c.name == "clear":
                self.rgba[:] = 0
            elif c.name == "clearRect":
                x, y, w, h = (int(round(v)) for v in c.args[:4])
                self.rgba[max(0, y) : max(0, y + h), max(0, x) : max(0, x + w)] = 0
            elif c.name == "putImageData" and c.image is not None:
                x, y = int(c.args[0]) if c.args else 0, int(c.args[1]) if len(c.args) > 1 else 0
                patch = c.image if c.image.shape[-1] == 4 else np.dstack([c.image, np.full(c.image.shape[:2], 255, np.uint8)])
                ph, pw = patch.shape[:2]
                dst = self.rgba[y : y + ph, x : x + pw]
                src = patch[: dst.shape[0], : dst.shape[1]]
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


class EventInjector:
    """Sends ipyevents DOM events to a widget's canvas, as the browser would.

    Coordinates are CSS pixels relative to the canvas element, whose on-screen size is
    ``css_size = (width, height)`` (default: 1.37 x the canvas size, i.e. CSS scaling).
    ``relativeX/Y`` are rounded to integers like ipyevents does.
    """

    def __init__(self, widget: Any, css_size: tuple[float, float] | None = None, left: float = 37.0, top: float = 211.0):
        self.widget = widget
        self.event = widget._events
        canvas = widget._view.canvas
        if css_size is None:
            css_size = (canvas.width * 1.37, canvas.height * 1.37)
        self.css_w, self.css_h = float(css_size[0]), float(css_size[1])
        self.left, self.top = left, top
        self.buttons = 0
        self.t = 1000.0
        self.sent = 0

    # -- raw messages ---------------------------------------------------------------------
    def send(self, content: dict) -> None:
        self.t += 16.0
        self.sent += 1
        _send_custom(self.event, content)

    def _mods(self, shift: bool, ctrl: bool, meta: bool, alt: bool) -> dict:
        return {"shiftKey": shift, "ctrlKey": ctrl, "metaKey": meta, "altKey": alt}

    def mouse(self, type: str, x: float, y: float, button: int = 0, *, shift=False, ctrl=False, meta=False, alt=False) -> None:
        """One mouse event of ``type`` at CSS position ``(x, y)`` in the canvas."""
        rx, ry = int(round(x)), int(round(y))
        cx, cy = self.left + rx, self.top + ry
        content = {
            "type": type,
            "timeStamp": self.t,
            **self._mods(shift, ctrl, meta, alt),
            "button": button,
            "buttons": self.buttons,
            "clientX": cx,
            "clientY": cy,
            "pageX": cx,
            "pageY": cy + 400,
            "screenX": cx + 10,
            "screenY": cy + 90,
            "x": cx,
            "y": cy,
            "offsetX": rx,
            "offsetY": ry,
            "layerX": rx,
            "layerY": ry,
            "movementX": 0,
            "movementY": 0,
            "relativeX": rx,
            "relativeY": ry,
            "boundingRectWidth": self.css_w,
            "boundingRectHeight": self.css_h,
            "boundingRectTop": self.top,
            "boundingRectLeft": self.left,
            "boundingRectBottom": self.top + self.css_h,
            "boundingRectRight": self.left + self.css_w,
            "target": {"tagName": "DIV", "id": "", "className": "multi-canvas"},
        }
        self.send(content)

    def key(self, key: str, *, shift=False, ctrl=False, meta=False, alt=False) -> None:
        """A keydown of ``key`` (the DOM ``KeyboardEvent.key``: "Enter", "z", "Z", "?", ...)."""
        code = {"Enter": "Enter", "Escape": "Escape", "?": "Slash"}.get(key)
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

    # -- gestures -------------------------------------------------------------------------
    def click(self, x: float, y: float, *, button: int = 0, shift: bool = False, ctrl: bool = False) -> None:
        """Press and release at the same place. A right click is followed by ``contextmenu``."""
        bit = {0: 1, 1: 4, 2: 2}[button]
        self.buttons |= bit
        self.mouse("mousedown", x, y, button, shift=shift, ctrl=ctrl)
        self.buttons &= ~bit
        self.mouse("mouseup", x, y, button, shift=shift, ctrl=ctrl)
        if button == 2:
            self.mouse("contextmenu", x, y, 2, shift=shift, ctrl=ctrl)

    def shift_click(self, x: float, y: float) -> None:
        self.click(x, y, shift=True)

    def right_click(self, x: float, y: float) -> None:
        self.click(x, y, button=2)

    def drag(self, x0: float, y0: float, x1: float, y1: float, steps: int = 6, *, shift: bool = False) -> None:
        """Press at ``(x0, y0)``, move in ``steps`` to ``(x1, y1)``, release there."""
        self.buttons |= 1
        self.mouse("mousedown", x0, y0, 0, shift=shift)
        for i in range(1, steps + 1):
            t = i / steps
            self.mouse("mousemove", x0 + (x1 - x0) * t, y0 + (y1 - y0) * t, 0, shift=shift)
        self.buttons &= ~1
        self.mouse("mouseup", x1, y1, 0, shift=shift)

    def move(self, x: float, y: float) -> None:
        self.mouse("mousemove", x, y, 0)

    def leave(self) -> None:
        self.mouse("mouseleave", -5, -5, 0)

    def reconnect(self) -> None:
        """A browser (re)displays the widget: every canvas view reports ``client_ready``."""
        for c in self.widget._view.canvas._canvases:
            _send_custom(c, {"event": "client_ready"})

    # -- coordinates ----------------------------------------------------------------------
    def image_pixel(self, x: float, y: float) -> tuple[int, int]:
        """The image pixel ``(col, row)`` under CSS position ``(x, y)`` (after rounding like ipyevents)."""
        H, W = self.widget.image.shape[:2]
        rx, ry = int(round(x)), int(round(y))
        return min(W - 1, int(np.floor(rx * W / self.css_w))), min(H - 1, int(np.floor(ry * H / self.css_h)))

    def css_of(self, ix: float, iy: float) -> tuple[float, float]:
        """A CSS position over image pixel ``(ix, iy)`` (its centre).

        ipyevents rounds to whole CSS pixels, so when a CSS pixel spans several image pixels
        the event lands on a neighbour: use :meth:`image_pixel` for the expected pixel.
        """
        H, W = self.widget.image.shape[:2]
        return (ix + 0.5) * self.css_w / W, (iy + 0.5) * self.css_h / H


# ============================================================== a controllable Segmenter
class SlowSegmenter(Segmenter):
    """A ``Segmenter`` for timing tests.

    ``set_image`` first waits for :attr:`gate` (a ``threading.Event``; set it to let the
    encoding finish — it is set already unless ``gated=True``); ``predict`` sleeps
    :attr:`predict_delay` seconds first and counts its calls in :attr:`predict_calls`.
    """

    def __init__(self, sam: Any, *, gated: bool = False, predict_delay: float = 0.0, **kwargs: Any) -> None:
        kwargs.setdefault("exact", True)
        super().__init__(sam, **kwargs)
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.predict_delay = predict_delay
        self.predict_calls = 0
        self.predict_threads: set[str] = set()
        self.set_image_threads: list[str] = []

    def set_image(self, image: Any) -> None:
        self.set_image_threads.append(threading.current_thread().name)
        if not self.gate.wait(60):
            raise TimeoutError("SlowSegmenter gate was never opened")
        super().set_image(image)

    def predict(self, *args: Any, **kwargs: Any):
        self.predict_calls += 1
        self.predict_threads.add(threading.current_thread().name)
        if self.predict_delay:
            time.sleep(self.predict_delay)
        return super().predict(*args, **kwargs)


# ============================================================== a model with predictable masks
class BlobDecoder(torch.nn.Module):
    """Stands in for SAM's ``MaskDecoder``: each candidate is a round blob around the prompt points.

    Uses segment_anything's own prompt encoding: with the point/label embeddings set to zero
    (see :func:`blob_sam`) a point's token is its random-Fourier positional encoding, and its
    dot product with the dense positional encoding of a grid cell is a smooth kernel of the
    distance (1 at the point, ~exp(-79 d^2) for a distance ``d`` in units of the padded input
    side). Candidate ``i`` is where the strongest token's kernel exceeds ``thresholds[i]``
    (large, middle, small blob); its predicted IoU is ``scores[i]``. Every point (positive or
    negative) and both box corners attract a blob; ``mask_input`` is accepted and ignored.
    """

    def __init__(self, thresholds=(0.5, 0.65, 0.8), scores=(0.80, 0.90, 0.85)) -> None:
        super().__init__()
        self.thresholds = tuple(thresholds)
        self.scores = tuple(scores)

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output):
        pe = image_pe[0]  # C x g x g
        c = pe.shape[0]
        tokens = sparse_prompt_embeddings[0]  # N x C
        valid = tokens.abs().sum(-1) > 0
        g = pe.shape[1:]
        if bool(valid.any()):
            k = torch.einsum("nc,chw->nhw", tokens[valid], pe) / (c / 2)
            kmax = k.max(0).values
        else:
            kmax = torch.full(g, -1.0)
        low = torch.nn.functional.interpolate(kmax[None, None], scale_factor=4, mode="bilinear", align_corners=False)[0, 0]
        idx = [0, 1, 2] if multimask_output else [1]
        logits = torch.stack([(low - self.thresholds[i]) * 20.0 for i in idx])[None]
        iou = torch.tensor([[self.scores[i] for i in idx]], dtype=torch.float32)
        return logits.to(image_embeddings.dtype), iou


def blob_sam(seed: int = 0) -> Any:
    """A tiny ``Sam`` (``random_sam(TINY_TEST_CONFIG, seed)``) whose masks are blobs around the clicks.

    For tests that need masks covering a small, predictable part of the image (cropped
    overlay patches, several distinct objects). Built fresh each call (never shared).
    """
    from sam_widget.engine.models import TINY_TEST_CONFIG, random_sam

    sam = random_sam(TINY_TEST_CONFIG, seed=seed)
    with torch.no_grad():
        for emb in list(sam.prompt_encoder.point_embeddings) + [sam.prompt_encoder.not_a_point_embed]:
            emb.weight.zero_()
    sam.mask_decoder = BlobDecoder()
    return sam.eval()
