"""Pointer and clicks on the widget while a cell draws matplotlib figures must not change them.

JupyterLab 4.6 handles widget comm messages on kernel subshell threads, concurrently with
the running cell. Before the fix, every such message ran IPython's post_execute hooks on the
subshell thread; the inline backend's hook rendered and closed the figure the cell was
drawing (see sam_widget/ui/comms.py). Here one fixed figure is rendered in a loop with the
default inline backend (PNG hashed each time) while the browser moves and clicks over the
SamWidget canvas and presses its buttons: every render must be byte-identical, and the
widget must still answer the clicks.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

import pytest

from .helpers import canvas_click

pytestmark = pytest.mark.browser

CANVAS = ".jp-OutputArea-output canvas"
IMG_W, IMG_H = 640, 480

SETUP = """
import threading
import numpy as np
from IPython.display import display
from sam_widget import SamWidget, Segmenter, sample_image_path
from sam_widget.engine.models import random_sam, TINY_TEST_CONFIG
from sam_widget.images import load_image
img = load_image(sample_image_path())
w = SamWidget(img, segmenter=Segmenter(random_sam(TINY_TEST_CONFIG, seed=0)), display_size=480)
# Where the front end's canvas messages are handled (ipycanvas sends every pointer event):
# proves that this test exercises messages handled concurrently with the figure cell.
handled = []
w._view.canvas.on_mouse_move(lambda x, y: handled.append((time.time(), threading.current_thread() is threading.main_thread())))
import time
display(w)
"""

FIGURES = """%matplotlib inline
import hashlib, io, time
import matplotlib.pyplot as plt
fixed = np.zeros(img.shape[:2], bool); fixed[100:300, 200:400] = True
hashes, pngs, t0 = [], {{}}, time.time()
while time.time() - t0 < {seconds}:
    fig, axs = plt.subplots(1, 2, figsize=(6, 3))
    axs[0].imshow(img); axs[0].set_title("image")
    axs[1].imshow(img); axs[1].imshow(fixed, alpha=0.5); axs[1].set_title("mask")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    hashes.append(hashlib.sha1(buf.getvalue()).hexdigest())
    pngs.setdefault(hashes[-1], buf.getvalue())
t1 = time.time()
"""

RUN_NEW_CELL = """(src) => { const panel = window.jupyterapp.shell.currentWidget; const m = panel.content.model;
  m.sharedModel.insertCell(m.cells.length, {cell_type: 'code', source: src});
  panel.content.activeCellIndex = m.cells.length - 1;
  window.jupyterapp.commands.execute('notebook:run-cell'); }"""


def test_pointer_and_clicks_do_not_change_figures_drawn_meanwhile(open_nb, browser_artifacts):
    nb = open_nb([SETUP], wait_for_selector=CANVAS)
    page, canvas = nb.page, nb.canvas(0)
    nb.wait_for("w._ready.is_set()")
    # Work with the widget first, as a person does (this is what puts its comms on subshells).
    for i in range(3):
        canvas_click(page, canvas, 100 + 80 * i, 120, IMG_W, IMG_H)
        page.wait_for_timeout(250)
    nb.wait_for("(w.wait_idle(30) and False) or len(w.prompts.points) == 3")

    # Start the figure cell from the page (as Shift+Enter would) and, while it runs, click on
    # the canvas and press Undo / Redo. No kernel round-trips meanwhile: the main shell is busy.
    page.evaluate(RUN_NEW_CELL, FIGURES.format(seconds=8))
    page.wait_for_timeout(1500)
    clicks = 0
    deadline = time.monotonic() + 5.5
    while time.monotonic() < deadline:
        if clicks % 4 == 3:
            page.locator(".sam-widget button", has_text="Undo" if clicks % 8 == 3 else "Redo").first.click()
        else:
            canvas_click(page, canvas, 60 + (clicks * 37) % 520, 60 + (clicks * 53) % 360, IMG_W, IMG_H)
        clicks += 1
        page.wait_for_timeout(150)
    nb.wait_kernel_idle(120)
    n, distinct = nb.wait_for("'t1' in globals() and (len(hashes), len(set(hashes)))", timeout=60)
    concurrent = nb.eval("sum(1 for t, main in handled if t0 < t < t1 and not main)")
    print(f"\n{clicks} clicks/presses; {n} renders, {distinct} distinct; "
          f"{concurrent} canvas messages handled off the main thread during the cell")
    for i, b64 in enumerate(nb.eval("[__import__('base64').b64encode(v).decode() for v in pngs.values()]")):
        (Path(browser_artifacts) / f"figure_race_render_{i}.png").write_bytes(base64.b64decode(b64))
    assert n >= 4 and clicks >= 20
    assert concurrent > 0, "no widget message was handled concurrently with the cell: the test proves nothing"
    assert distinct == 1, f"{distinct} different PNGs out of {n} renders of the same figure"
    # and the widget answered the clicks once the cell was done
    nb.wait_for("(w.wait_idle(30) and False) or len(w.prompts.points) > 3", timeout=60)
