"""Browser events -> session actions: clicks, drags, hover, keys (the widget's one event entry).

ipyevents reports pointer positions in CSS pixels of the canvas element; the session's
:class:`~sam_widget.viewport.Viewport` maps them to image pixels (positions in the grey
margin around a smaller image are ignored).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from .everything_view import EVERYTHING_KEY

if TYPE_CHECKING:  # pragma: no cover
    from .widget import SamWidget

__all__ = ["EventTranslator", "DRAG_THRESHOLD"]

DRAG_THRESHOLD = 4.0  # canvas pixels: a smaller movement is still a click


class EventTranslator:
    """Turns ipyevents DOM event dicts into calls on a ``SamWidget`` and its session."""

    def __init__(self, widget: "SamWidget") -> None:
        self.w = widget
        self.drag: dict[str, Any] | None = None

    def position(self, ev: dict) -> tuple[tuple[float, float], tuple[int, int]] | None:
        """Event -> (canvas px (x, y), image pixel (col, row)); None without a position or off the image."""
        try:
            rx, ry = float(ev["relativeX"]), float(ev["relativeY"])
            bw, bh = float(ev.get("boundingRectWidth") or 0), float(ev.get("boundingRectHeight") or 0)
        except (KeyError, TypeError, ValueError):
            return None
        vp = self.w._session.viewport
        canvas = vp.css_to_canvas(rx, ry, bw, bh)
        pixel = vp.canvas_to_image(*canvas)
        return None if pixel is None else (canvas, pixel)

    def handle(self, ev: dict) -> None:
        kind = ev.get("type")
        if kind == "keydown":
            self.key(ev)
        elif kind == "mousedown":
            self.mouse_down(ev)
        elif kind == "mousemove":
            self.mouse_move(ev)
        elif kind == "mouseup":
            self.mouse_up(ev)
        elif kind == "mouseleave":
            self.drag = None
            self.w._painter.draw_rubber(None)
            self.w._session.stop_preview()

    # ------------------------------------------------------------------ mouse
    def mouse_down(self, ev: dict) -> None:
        pos = self.position(ev)
        if pos is None:
            return
        self.w._session._stop_preview()  # the preview stays drawn until the click's mask replaces it
        mode = self.w._controls.mode.value
        negative = ev.get("button") == 2 or bool(ev.get("shiftKey")) or mode == "negative"
        self.drag = {"start": pos, "end": pos, "label": 0 if negative else 1, "moved": False, "alt": bool(ev.get("altKey"))}

    def mouse_move(self, ev: dict) -> None:
        pos = self.position(ev)
        if pos is None:
            return
        d = self.drag
        s = self.w._session
        if d is not None:
            (sx, sy), (ex, ey) = d["start"][0], pos[0]
            d["end"] = pos
            if not d["moved"] and math.hypot(ex - sx, ey - sy) >= DRAG_THRESHOLD:
                d["moved"] = True
            if d["moved"]:
                self.w._painter.draw_rubber((min(sx, ex), min(sy, ey), max(sx, ex), max(sy, ey)))
        elif self.w.hover and s.ready.is_set() and s.prompts.is_empty:
            s.request_preview(pos[1])

    def mouse_up(self, ev: dict) -> None:
        d, self.drag = self.drag, None
        if d is None:
            return
        s = self.w._session
        s.error = None  # a new action: the last one's message goes (its own may come instead)
        pos = self.position(ev) or d["end"]
        if d["moved"] or math.hypot(pos[0][0] - d["start"][0][0], pos[0][1] - d["start"][0][1]) >= DRAG_THRESHOLD:
            (ax, ay), (bx, by) = d["start"][1], pos[1]
            self.w._painter.draw_rubber(None)
            s._push_prompts(lambda p: p.with_box((min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))))
        elif d["alt"]:
            i = s.object_at(*d["start"][1])
            if i is None:
                s.error = "Alt + click edits an object: there is no object under the pointer."
                self.w._update_status()
                return
            s.edit(i)
        elif self.w._controls.mode.value == "box":
            s.error = "box mode: press, drag and release to draw a box."
            self.w._update_status()
            return
        else:
            x, y = d["start"][1]
            if self.proposal_click(x, y, d["label"]):
                return
            s._push_prompts(lambda p: p.with_point(x, y, d["label"]))

    def proposal_click(self, x: int, y: int, label: int) -> bool:
        """A click on a "segment everything" proposal, while no prompts are given: a positive
        click accepts it, a negative one (shift / right click, negative mode) rejects it.
        True if the click was taken by a proposal."""
        s = self.w._session
        if not s.prompts.is_empty or s.editing is not None:
            return False  # making a mask: clicks refine it, also over proposals
        i = s.proposal_at(x, y)
        if i is None:
            return False
        self.w._ui_call(s.accept if label == 1 else s.reject, i)
        return True

    # ------------------------------------------------------------------ keys
    def key(self, ev: dict) -> None:
        w = self.w
        key = str(ev.get("key", ""))
        ctrl = bool(ev.get("ctrlKey") or ev.get("metaKey"))
        shift = bool(ev.get("shiftKey"))
        low = key.lower()
        c = w._controls
        if ctrl and low == "z":
            w.redo() if shift else w.undo()
        elif ctrl and low == "y":
            w.redo()
        elif ctrl:
            return
        elif key in ("1", "2", "3"):
            w._ui_call(w.select, int(key) - 1)
        elif key == "Enter":
            w._ui_commit()
        elif key == "Escape":
            w.clear()
        elif key == "ArrowLeft":
            w._ui_call(w.prev)
        elif key == "ArrowRight":
            w._ui_call(w.next)
        elif low in ("p", "n", "b"):
            c.mode.value = {"p": "positive", "n": "negative", "b": "box"}[low]
        elif low == "h":
            c.hover_box.value = not c.hover_box.value
        elif low == "x":
            w._explain.show(not w._explain.visible)
        elif key == "?":
            c.help_btn.value = not c.help_btn.value
        elif low == EVERYTHING_KEY:
            w._ui_call(w._start_everything)
