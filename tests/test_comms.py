"""Widget messages handled off the main thread (JupyterLab subshells) skip IPython's
execution hooks — the root cause of garbled matplotlib figures (sam_widget/ui/comms.py).

The browser test tests/browser/test_figure_race.py shows the user-visible effect; these
tests pin the mechanism: a message handled on another thread reaches the widget's handler
but triggers no pre/post_execute hook, while on the main thread IPython's behaviour stays.
"""

from __future__ import annotations

import threading

import IPython
import ipywidgets as widgets
import pytest

from sam_widget import SamWidget, Segmenter
from sam_widget.ui.comms import no_execute_hooks_off_main_thread, widget_tree


class _Events:
    def __init__(self) -> None:
        self.fired: list[tuple[str, str]] = []

    def trigger(self, name: str, *args) -> None:
        self.fired.append((name, threading.current_thread().name))


class _Shell:
    def __init__(self) -> None:
        self.events = _Events()


@pytest.fixture
def shell(monkeypatch):
    """A stand-in IPython shell whose execution hooks record where they fired."""
    sh = _Shell()
    monkeypatch.setattr(IPython, "get_ipython", lambda: sh)
    return sh


def _click_msg(widget: widgets.Widget) -> dict:
    return {"content": {"comm_id": widget.model_id, "data": {"method": "custom", "content": {"event": "click"}}},
            "buffers": []}


def _handle_on_thread(widget: widgets.Widget, msg: dict) -> None:
    t = threading.Thread(target=widget.comm.handle_msg, args=(msg,), name="subshell-test")
    t.start()
    t.join(10)


@pytest.fixture
def widget(tiny_sam):
    w = SamWidget(__import__("numpy").zeros((40, 60, 3), "uint8"), segmenter=Segmenter(tiny_sam), display_size=60)
    w.wait_ready(30)
    yield w
    w.close()


def test_a_button_press_on_a_subshell_thread_runs_the_handler_without_execute_hooks(widget, shell):
    widget.add_point(10, 10)
    assert len(widget.prompts.points) == 1
    _handle_on_thread(widget._clear_btn, _click_msg(widget._clear_btn))  # the user presses Clear
    widget.wait_idle(30)
    assert widget.prompts.points == ()  # the handler ran
    assert shell.events.fired == []  # ...and no pre/post_execute (inline backend's flush_figures) ran


def test_on_the_main_thread_ipythons_hooks_still_run(widget, shell):
    widget.add_point(10, 10)
    widget._clear_btn.comm.handle_msg(_click_msg(widget._clear_btn))
    assert widget.prompts.points == ()
    assert shell.events.fired == [("pre_execute", "MainThread"), ("post_execute", "MainThread")]


def test_every_comm_of_the_widget_is_covered_including_canvas_layers_and_events(widget):
    tree = list(widget_tree(widget, widget._events))
    kinds = {type(w).__name__ for w in tree}
    assert {"MultiCanvas", "Canvas", "Event", "Button", "ToggleButtons", "Select", "Text", "HTML"} <= kinds
    assert all(getattr(w.comm, "_sam_widget_hookless", False) for w in tree if w.comm is not None)
    assert no_execute_hooks_off_main_thread(widget, widget._events) == 0  # idempotent


def test_a_plain_widget_is_left_alone(shell):
    other = widgets.Button()
    pressed = []
    other.on_click(lambda b: pressed.append(threading.current_thread().name))
    _handle_on_thread(other, _click_msg(other))
    assert pressed == ["subshell-test"]
    assert [name for name, _ in shell.events.fired] == ["pre_execute", "post_execute"]  # not ours to change
    other.close()
