"""What one layer of the widget was sent and shows (re-exported by :mod:`sam_widget.testing`)."""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from ..ui.canvas_view import PROMPTS
from .comm import RecordingComm
from .commands import DrawCommand

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
