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

from ..ui.canvas_view import CURRENT, IMAGE, OBJECTS, PROMPTS
from .comm import RecordedMessage, RecordingComm
from .commands import _MODEL_PREFIX, DrawCommand, command_names, decode_commands, model_id  # noqa: F401
from .events import (  # noqa: F401
    _BUTTON_BITS,
    _KEY_CODES,
    EventInjector,
    _js_round,
    _send_custom,
    frontend_click,
    frontend_update,
)
from .layers import LayerReplay, layer, layer_commands, prompt_layer

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
