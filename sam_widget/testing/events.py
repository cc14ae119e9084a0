"""Sending what a page sends: ipyevents DOM events and widget clicks/updates (re-exported by :mod:`sam_widget.testing`)."""

from __future__ import annotations

import math
from typing import Any

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
