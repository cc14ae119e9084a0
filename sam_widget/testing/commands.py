"""Decoding ipycanvas drawing messages into :class:`DrawCommand` s (re-exported by :mod:`sam_widget.testing`)."""

from __future__ import annotations

import functools
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
