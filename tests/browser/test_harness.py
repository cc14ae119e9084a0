"""Proves the browser harness on plain ipycanvas + ipyevents (no sam_widget needed).

A notebook shows ``ipycanvas.Canvas(width=200, height=100)`` with a fixed layout,
wrapped by ``ipyevents.Event(watched_events=['mousedown', 'keydown', 'contextmenu'])``.
Kernel-side handlers record every event and paint a 7x7 square where the
mouse went down. The tests drive it with real input and check kernel + page.
"""

from __future__ import annotations

import math
import statistics
import sys
import time

import pytest

from .helpers import (
    KernelEvalError,
    canvas_click,
    canvas_drag,
    canvas_hover,
    canvas_pixels,
    canvas_point,
    kernel_eval,
    wait_for_canvas_change,
    wait_for_canvas_pixel,
    wait_for_kernel,
)

pytestmark = pytest.mark.browser

W, H = 200, 100  # canvas backing-store size (canvas pixels)

SETUP = r'''
import time, types
import ipycanvas, ipyevents, ipywidgets as widgets
from IPython.display import display

BG = '#dddddd'
COLORS = {0: '#ff0000', 1: '#00ff00', 2: '#0000ff'}   # by MouseEvent.button
SHIFT_COLOR = '#ff00ff'

def make(width, height, css_w, css_h):
    s = types.SimpleNamespace(events=[], cv_down=[], cv_up=[])
    c = s.canvas = ipycanvas.Canvas(width=width, height=height,
                                    layout=widgets.Layout(width=f'{css_w}px', height=f'{css_h}px'))
    c.fill_style = BG
    c.fill_rect(0, 0, width, height)

    def to_px(ev):  # ipyevents: relativeX/Y are integer CSS px from the bounding box corner
        return (ev['relativeX'] * c.width / ev['boundingRectWidth'],
                ev['relativeY'] * c.height / ev['boundingRectHeight'])

    def on_event(ev):
        ev = dict(ev, t_kernel=time.time())
        s.events.append(ev)
        if ev['type'] == 'mousedown':
            x, y = to_px(ev)
            ev['px'] = (x, y)
            c.fill_style = SHIFT_COLOR if ev.get('shiftKey') else COLORS.get(ev['button'], '#000000')
            c.fill_rect(int(x) - 3, int(y) - 3, 7, 7)

    s.ev = ipyevents.Event(source=c, watched_events=['mousedown', 'keydown', 'contextmenu'],
                           prevent_default_action=True)
    s.ev.on_dom_event(on_event)
    c.on_mouse_down(lambda x, y: s.cv_down.append((x, y, time.time())))
    c.on_mouse_up(lambda x, y: s.cv_up.append((x, y, time.time())))
    s.downs = lambda: [e for e in s.events if e['type'] == 'mousedown']

    # Reconnect (e.g. page reload): the new view starts blank and the page's new
    # ipycanvas manager has no "current canvas" while the kernel-side one still
    # points at the last canvas drawn -> the next draw would throw in the page and
    # wedge the manager's command chain for *every* canvas (ipycanvas #322).
    # With ipyevents attached, _view_count is tracked, so a new view is visible here.
    s.reconnects = []
    def redraw():
        ipycanvas.canvas._CANVAS_MANAGER._current_canvas = None   # force a switchCanvas
        with ipycanvas.hold_canvas():
            c.fill_style = BG
            c.fill_rect(0, 0, c.width, c.height)
            for e in s.downs():
                x, y = e['px']
                c.fill_style = SHIFT_COLOR if e.get('shiftKey') else COLORS.get(e['button'], '#000000')
                c.fill_rect(int(x) - 3, int(y) - 3, 7, 7)
    def on_view_count(change):
        if (change['new'] or 0) > (change['old'] or 0) and change['old'] is not None:
            s.reconnects.append(change['new'])
            redraw()
    c.observe(on_view_count, '_view_count')
    return s
'''

CELLS = [
    SETUP,
    "A = make(200, 100, 200, 100)  # 1:1\ndisplay(A.canvas)",
    "B = make(200, 100, 300, 150)  # CSS-scaled 1.5x\ndisplay(B.canvas)",
]
CANVAS_SEL = ".jp-OutputArea-output canvas"

BG_RGBA = (0xDD, 0xDD, 0xDD, 255)


def _open(open_nb, name=None):
    nb = open_nb(CELLS, name=name, wait_for_selector=CANVAS_SEL)
    a, b = nb.canvas(0), nb.canvas(1)
    b.wait_for(state="visible")
    # Both canvases got their background from the kernel.
    for loc in (a, b):
        wait_for_canvas_change(nb.page, loc, 1, 1, (0, 0, 0, 0))
    return nb, a, b


def _last_down(nb, ns, n):
    """Wait until ``ns`` (A or B) has ``n`` mousedown events; return the last one."""
    wait_for_kernel(nb, f"len({ns}.downs()) >= {n}")
    return kernel_eval(nb, f"{ns}.downs()[{n - 1}]")


def _near(p, x, y, tol=1.0):
    """Kernel-side float position ``p`` is within ``tol`` px of pixel (x, y)'s centre."""
    assert abs(p[0] - (x + 0.5)) <= tol and abs(p[1] - (y + 0.5)) <= tol, (p, (x, y))


def _exact(p, x, y):
    """Kernel-side float position ``p`` lies inside pixel (x, y)."""
    assert (math.floor(p[0]), math.floor(p[1])) == (x, y), (p, (x, y))


def test_buttons_modifiers_keys_and_coordinates(open_nb):
    nb, a, b = _open(open_nb)
    page = nb.page

    # The canvas is displayed at exactly its layout size (no stretching).
    box = a.bounding_box()
    assert (round(box["width"]), round(box["height"])) == (200, 100), box

    # 1. left click. ipyevents: integer CSS px (rounded) -> within 1 px; ipycanvas'
    #    own on_mouse_down fires too, in canvas pixels, and floors exactly to the target.
    canvas_click(page, a, 50, 40, W, H)
    ev = _last_down(nb, "A", 1)
    assert ev["button"] == 0 and not ev["shiftKey"] and not ev["ctrlKey"]
    assert ev["boundingRectWidth"] == pytest.approx(200) and ev["boundingRectHeight"] == pytest.approx(100)
    _near(ev["px"], 50, 40)
    cv = wait_for_kernel(nb, "len(A.cv_down) >= 1 and A.cv_down[0]")
    _exact(cv, 50, 40)
    assert wait_for_canvas_change(page, a, 50, 40, BG_RGBA) == (255, 0, 0, 255)

    # 2. shift + left click
    canvas_click(page, a, 120, 60, W, H, modifiers=["Shift"])
    ev = _last_down(nb, "A", 2)
    assert ev["button"] == 0 and ev["shiftKey"] is True
    _near(ev["px"], 120, 60)
    assert wait_for_canvas_change(page, a, 120, 60, BG_RGBA) == (255, 0, 255, 255)

    # 3. ctrl + left click (modifier flags are per-event)
    canvas_click(page, a, 10, 90, W, H, modifiers=["Control"])
    ev = _last_down(nb, "A", 3)
    assert ev["ctrlKey"] is True and ev["shiftKey"] is False

    # 4. right click: mousedown(button=2) + contextmenu; JupyterLab's menu is suppressed
    canvas_click(page, a, 170, 20, W, H, button="right")
    ev = _last_down(nb, "A", 4)
    assert ev["button"] == 2
    _near(ev["px"], 170, 20)
    wait_for_kernel(nb, "any(e['type'] == 'contextmenu' for e in A.events)")
    assert wait_for_canvas_change(page, a, 170, 20, BG_RGBA) == (0, 0, 255, 255)
    assert page.locator(".lm-Menu").count() == 0, "JupyterLab context menu opened"
    # ipycanvas' on_mouse_down fires for every button (it has no button info)
    n_cv = wait_for_kernel(nb, "len(A.cv_down) >= 4 and len(A.cv_down)")
    assert n_cv == 4

    # 5. key press while the pointer is over the canvas (ipyevents listens only then)
    canvas_hover(page, a, 100, 50)
    page.keyboard.press("a")
    page.keyboard.press("Escape")
    keys = "[e['key'] for e in A.events if e['type'] == 'keydown']"
    wait_for_kernel(nb, f"{{'a', 'Escape'}} <= set({keys})")
    # The Shift/Control keydowns of the modifier clicks were reported too (pointer was over it).
    assert kernel_eval(nb, keys) == ["Shift", "Control", "a", "Escape"]
    assert nb.cell_count() == len(CELLS), "'a' reached JupyterLab (insert cell above)"

    # 6. CSS-scaled canvas (200x100 pixels shown at 300x150 CSS px)
    box = b.bounding_box()
    assert (round(box["width"]), round(box["height"])) == (300, 150), box
    for i, (x, y) in enumerate([(0, 0), (199, 99), (33, 77), (150, 10)], start=1):
        canvas_click(page, b, x, y, W, H)
        ev = _last_down(nb, "B", i)
        assert ev["boundingRectWidth"] == pytest.approx(300)
        _near(ev["px"], x, y)
        _exact(wait_for_kernel(nb, f"len(B.cv_down) >= {i} and B.cv_down[{i - 1}]"), x, y)

    # 7. drag: ipycanvas reports mouse_down at the start, mouse_up at the end
    canvas_drag(page, b, 20, 20, 180, 80, W, H)
    up = wait_for_kernel(nb, "len(B.cv_up) >= 5 and B.cv_up[-1]")
    down = kernel_eval(nb, "B.cv_down[-1]")
    _exact(down, 20, 20)
    _exact(up, 180, 80)

    # canvas_pixels: whole-canvas read-back; the painted squares are there
    px = canvas_pixels(page, a)
    assert px.shape == (H, W, 4)
    assert tuple(px[40, 50]) == (255, 0, 0, 255) and tuple(px[60, 120]) == (255, 0, 255, 255)
    assert tuple(px[5, 5]) == BG_RGBA


def test_kernel_eval_and_click_latency(open_nb, lab_server):
    nb, a, _ = _open(open_nb)
    page = nb.page

    # The kernel is this venv's python; kernel_eval returns typed values.
    assert kernel_eval(nb, "__import__('sys').prefix") == sys.prefix
    assert kernel_eval(lab_server, "__import__('sys').executable") == sys.executable  # last notebook
    assert kernel_eval(nb, "__import__('numpy').arange(3)") == [0, 1, 2]
    assert kernel_eval(nb, "{'a': (1, 2.5), 'b': None, 'c': {3}}") == {"a": [1, 2.5], "b": None, "c": [3]}
    assert kernel_eval(nb, "A.canvas", raw=True).startswith("Canvas(")
    with pytest.raises(KernelEvalError, match="ZeroDivisionError"):
        kernel_eval(nb, "1/0")

    kernel_lat, paint_lat = [], []
    canvas_click(page, a, 5, 5, W, H)  # warm-up click (first comm message, JIT, ...)
    _last_down(nb, "A", 1)
    for i in range(10):
        x, y = 15 + 17 * i, 20 + 6 * i
        before = tuple(int(v) for v in canvas_pixels(page, a, x, y, 1, 1)[0, 0])
        px, py = canvas_point(page, a, x, y, W, H)
        page.mouse.move(px, py)
        t0 = time.perf_counter()
        page.mouse.click(px, py)
        wait_for_kernel(nb, f"len(A.downs()) >= {i + 2}", interval=0.002)
        kernel_lat.append(time.perf_counter() - t0)
        wait_for_canvas_change(page, a, x, y, before)
        paint_lat.append(time.perf_counter() - t0)
    p50k = statistics.median(kernel_lat) * 1000
    p50p = statistics.median(paint_lat) * 1000
    print(f"\nclick -> kernel state: p50 {p50k:.0f} ms, max {max(kernel_lat) * 1000:.0f} ms; "
          f"click -> painted in page: p50 {p50p:.0f} ms (n={len(kernel_lat)})")


def test_reload_then_rerun(open_nb):
    nb, a, _ = _open(open_nb)
    page = nb.page
    canvas_click(page, a, 30, 30, W, H)
    _last_down(nb, "A", 1)
    wait_for_canvas_change(page, a, 30, 30, BG_RGBA)

    # Reload the page with the notebook saved: the same kernel's widgets are re-rendered
    # (blank: ipycanvas keeps no pixels), _view_count goes 1 -> 2, the handler redraws.
    nb.reload(save=True)
    a = nb.canvas(0)
    a.wait_for(state="visible")
    wait_for_kernel(nb, "A.reconnects == [2] and B.reconnects == [2]")
    wait_for_canvas_pixel(page, a, 30, 30, (255, 0, 0, 255))  # replayed by the redraw
    canvas_click(page, a, 60, 60, W, H, button="right")
    _last_down(nb, "A", 2)  # the old widget's event wiring still works after reload
    wait_for_canvas_pixel(page, a, 60, 60, (0, 0, 255, 255))

    # Re-run everything in the same kernel: new canvases, new handlers, still working.
    nb.run_all(wait_for_selector=CANVAS_SEL)
    a = nb.canvas(0)
    wait_for_canvas_change(page, a, 1, 1, (0, 0, 0, 0))
    canvas_click(page, a, 90, 70, W, H, modifiers=["Shift"])
    ev = _last_down(nb, "A", 1)  # A is a fresh namespace
    assert ev["shiftKey"]
    _near(ev["px"], 90, 70)
    assert wait_for_canvas_change(page, a, 90, 70, BG_RGBA) == (255, 0, 255, 255)


def test_artifacts_folder_after_a_run_is_what_the_readme_says(tmp_path):
    """Green run: the server log goes, and the folder with it unless a test saved a screenshot
    on purpose; a failed run keeps everything; SAM_BROWSER_KEEP_LOG=1 keeps the log."""
    from .conftest import tidy_artifacts

    def folder(*names):
        d = tmp_path / f"artifacts{len(list(tmp_path.iterdir()))}"
        d.mkdir()
        for n in (".gitignore", "jupyterlab.log", *names):
            (d / n).write_text("x")
        return d

    only_log = folder()
    tidy_artifacts(only_log, green=True)
    assert not only_log.exists()

    with_shot = folder("widget.png")
    tidy_artifacts(with_shot, green=True)
    assert sorted(p.name for p in with_shot.iterdir()) == [".gitignore", "widget.png"]

    failed = folder("test_x.png", "test_x.console.log")
    tidy_artifacts(failed, green=False)
    assert sorted(p.name for p in failed.iterdir()) == [".gitignore", "jupyterlab.log", "test_x.console.log", "test_x.png"]

    kept = folder()
    tidy_artifacts(kept, green=True, keep_log=True)
    assert sorted(p.name for p in kept.iterdir()) == [".gitignore", "jupyterlab.log"]
