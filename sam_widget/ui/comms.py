"""Widget messages handled off the main thread must not run IPython's execution hooks.

Why this exists (the "garbled figures" bug). JupyterLab 4.6 sends widget comm messages to
kernel *subshells*, and ipykernel 7 handles them there, on another thread, while a cell runs
on the main thread. Every comm message goes through ``comm.base_comm.BaseComm.handle_msg``,
which wraps the widget's handler in ``shell.events.trigger("pre_execute")`` and
``("post_execute")`` — hooks meant for the main thread between two cells. On a subshell they
run concurrently with the user's cell, and the inline matplotlib backend's post_execute hook
(``flush_figures``) renders every open pyplot figure and then ``plt.close("all")``: the figure
the cell is drawing is rendered from a second thread half-way through (``savefig(...,
bbox_inches="tight")`` temporarily changes the figure) and closed under it. The cell's
figure comes out blank, shifted or cropped wrong.

ipycanvas sends every mouse move/press over the canvas as a comm message whether or not the
kernel listens, so merely moving the pointer over the SamWidget canvas fired those hooks
(our own ipyevents handlers were not even involved). Buttons, toggles and text boxes do the
same when clicked.

The fix: every widget of a SamWidget dispatches its comm messages *without* the execution
hooks when it is handled off the main thread. On the main thread (classic kernels, Notebook
with subshells disabled, Voila) nothing changes. Our handlers never draw matplotlib figures
(they only change widget state and wake the worker), so they need none of those hooks.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Iterator

import ipywidgets as widgets

__all__ = ["no_execute_hooks_off_main_thread", "widget_tree"]

_MARK = "_sam_widget_hookless"


def widget_tree(*roots: widgets.Widget) -> Iterator[widgets.Widget]:
    """Every widget reachable from ``roots`` through widget-valued traits (children, layout,
    style, an ipyevents source, a MultiCanvas' layers...), each once."""
    seen: set[int] = set()
    stack = list(roots)
    while stack:
        w = stack.pop()
        if id(w) in seen:
            continue
        seen.add(id(w))
        yield w
        for name in w.trait_names():
            try:
                value = getattr(w, name)
            except Exception:  # noqa: BLE001 - a trait that cannot be read has no widgets for us
                continue
            if isinstance(value, widgets.Widget):
                stack.append(value)
            elif isinstance(value, (list, tuple)):
                stack.extend(v for v in value if isinstance(v, widgets.Widget))


def _hookless(comm: Any, original: Callable[[dict], None]) -> Callable[[dict], None]:
    def handle_msg(msg: dict) -> None:
        if threading.current_thread() is threading.main_thread():
            original(msg)  # the main shell: keep IPython's usual behaviour
            return
        callback = getattr(comm, "_msg_callback", None)
        if callback is not None:
            callback(msg)

    return handle_msg


def no_execute_hooks_off_main_thread(*roots: widgets.Widget) -> int:
    """Make the comms of ``roots`` and every widget inside them skip IPython's
    pre/post_execute hooks for messages handled off the main thread (see the module
    docstring). Idempotent; returns the number of comms changed by this call.
    """
    changed = 0
    for w in widget_tree(*roots):
        comm = getattr(w, "comm", None)
        if comm is None or getattr(comm, _MARK, False) or not hasattr(comm, "handle_msg"):
            continue
        comm.handle_msg = _hookless(comm, comm.handle_msg)
        setattr(comm, _MARK, True)
        changed += 1
    return changed
