"""Five ipycanvas layers: image, committed objects, current mask (or hover preview), prompts,
and the "segment everything" proposals (on top, translucent).

All drawing goes through one process-wide lock: ipycanvas batches commands in a single
module-level manager (``hold_canvas``), which is not safe to use from two threads at
once, and our predictions are drawn from a worker thread. Before each batch the
manager's notion of the "current canvas" is reset, so the batch always starts with an
explicit canvas switch (after a page reload the front end's idea of it is stale).
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
from typing import Callable

import ipycanvas
import numpy as np
from PIL import Image
from ipycanvas import MultiCanvas, hold_canvas
from ipycanvas.canvas import COMMANDS, commands_to_buffer

from ..render import Overlay, union_rect

__all__ = ["CanvasView", "DRAW_LOCK"]

DRAW_LOCK = threading.RLock()

IMAGE, OBJECTS, CURRENT, PROMPTS = range(4)
PROPOSALS = 4  # the last layer, so the indices of the first four never change
POSITIVE = "#22c55e"
NEGATIVE = "#ef4444"


class CanvasView:
    """The drawing surface. Coordinates are canvas pixels ``(x, y)``.

    ``size_hw``: ``(h, w)`` of the canvas; it has exactly that many pixels and a fixed CSS
    size so JupyterLab does not stretch it. An image smaller than the canvas (a set of
    images of mixed sizes) is drawn at :attr:`offset`; overlays given in the image's display
    pixels are shifted by it too.
    """

    def __init__(self, size_hw: tuple[int, int]) -> None:
        h, w = size_hw
        self.size_hw = size_hw
        self.offset: tuple[int, int] = (0, 0)
        self.canvas = MultiCanvas(5, width=w, height=h)
        self.canvas.layout.width = f"{w}px"
        self.canvas.layout.height = f"{h}px"
        self.canvas.layout.min_width = f"{w}px"
        self._rects: dict[int, tuple[int, int, int, int] | None] = {OBJECTS: None, CURRENT: None, PROPOSALS: None}
        self.last_batch_bytes: int | None = None  # bytes of the last batch's message (JSON part + buffers)
        self.encode_s: dict[int, float] = {}  # per layer: seconds the last overlay's PNG took to encode

    # -- batching -----------------------------------------------------------------
    def batch(self, draw: Callable[[], None]) -> None:
        """Run ``draw`` (which issues layer commands) as one message, under the lock."""
        with DRAW_LOCK:
            manager = ipycanvas.canvas._CANVAS_MANAGER
            manager._current_canvas = None
            with hold_canvas():
                draw()
                self.last_batch_bytes = _message_bytes(manager)

    # -- layers -----------------------------------------------------------------
    def draw_image(self, rgb: np.ndarray | None) -> None:
        """Paint the (display-size) image at :attr:`offset` (lossless PNG); None: a grey field
        (an image that cannot be shown). Clears what was around it."""
        c = self.canvas[IMAGE]
        h, w = self.size_hw
        if rgb is None or rgb.shape[:2] != (h, w) or self.offset != (0, 0):
            c.clear()
        if rgb is None:
            c.fill_style = "#9ca3af"
            c.fill_rect(0, 0, w, h)
            return
        rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
        buf = io.BytesIO()  # PNG level 1: ~5x faster than ipycanvas' default level, ~15 % larger
        Image.fromarray(rgba).save(buf, "PNG", compress_level=1)
        c._canvas_manager.send_draw_command(c, COMMANDS["putImageData"], list(self.offset), [buf.getvalue()])

    def clear_layers(self) -> None:
        """Blank the object, current-mask, prompt and proposal layers (another image is shown)."""
        for layer in (OBJECTS, CURRENT, PROMPTS, PROPOSALS):
            self.canvas[layer].clear()
        self.forget()

    def draw_overlay(self, layer: int, overlay: Overlay | None) -> None:
        """Replace what ``layer`` showed by ``overlay``, clearing only the old and new rectangles."""
        old = self._rects.get(layer)
        if overlay is not None and self.offset != (0, 0):
            overlay = dataclasses.replace(overlay, x=overlay.x + self.offset[0], y=overlay.y + self.offset[1])
        new = overlay.rect if overlay is not None else None
        dirty = union_rect(old, new)
        c = self.canvas[layer]
        if dirty is not None:
            x0, y0, x1, y1 = dirty
            c.clear_rect(x0, y0, x1 - x0, y1 - y0)
        if overlay is not None:
            # putImageData with our own (indexed, 2-bit) PNG: the front end decodes any image.
            t0 = time.perf_counter()
            png = overlay.to_png()
            self.encode_s[layer] = time.perf_counter() - t0
            c._canvas_manager.send_draw_command(c, COMMANDS["putImageData"], [overlay.x, overlay.y], [png])
        self._rects[layer] = new

    def draw_prompts(
        self,
        points: list[tuple[float, float, int]],
        box: tuple[float, float, float, float] | None,
        rubber_band: tuple[float, float, float, float] | None = None,
    ) -> None:
        """Markers for points (green = 1, red = 0), the box, and a dashed rubber band."""
        c = self.canvas[PROMPTS]
        c.clear()
        if box is not None:
            x0, y0, x1, y1 = box
            c.line_width = 2
            c.stroke_style = "#38bdf8"
            c.stroke_rect(x0, y0, x1 - x0, y1 - y0)
        if rubber_band is not None:
            x0, y0, x1, y1 = rubber_band
            c.set_line_dash([6, 4])
            c.line_width = 1.5
            c.stroke_style = "#facc15"
            c.stroke_rect(x0, y0, x1 - x0, y1 - y0)
            c.set_line_dash([])
        for x, y, label in points:
            c.fill_style = POSITIVE if label == 1 else NEGATIVE
            c.fill_circle(x, y, 5)
            c.line_width = 1.5
            c.stroke_style = "white"
            c.stroke_circle(x, y, 5)

    def forget(self) -> None:
        """After a client reconnects its layers are blank: the next overlay clears nothing."""
        self._rects = {OBJECTS: None, CURRENT: None, PROPOSALS: None}


def _message_bytes(manager) -> int | None:
    """Bytes of the message ``manager`` is about to send for the commands it holds (inside
    ``hold_canvas``): the widget message's JSON part plus its binary buffers, as they go to
    the comm (``sam_widget.testing.RecordedMessage.nbytes`` counts the same)."""
    commands = getattr(manager, "_commands_cache", None)
    if not commands:
        return None
    metadata, command_buffer = commands_to_buffer(commands)
    head = len(json.dumps({"method": "custom", "content": metadata}, separators=(",", ":")).encode())
    return head + memoryview(command_buffer).nbytes + sum(memoryview(b).nbytes for b in manager._buffers_cache)
