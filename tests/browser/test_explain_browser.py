"""The Explain panel in a real JupyterLab + Chromium: open it with X, drag the threshold slider,
and the canvas' mask follows (the page's pixels equal the widget's own picture, whose mask
is cut at the threshold) while ``w.threshold`` changes in the kernel. Keeps a screenshot: ``tests/browser/artifacts/explain.png`` (and, with
``SAM_WIDGET_README_SHOT=1``, the widget alone as ``docs/explain.png``).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from .helpers import canvas_click, canvas_hover, screenshot
from .test_hosts import _array, _marker_zone, _wait_canvas_shows

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
TINY_WEIGHTS = REPO / "sam_widget" / "weights" / "tiny_shapes.pt"
IMG_W, IMG_H = 512, 384
DISP_W, DISP_H = 400, 300
CANVAS = ".jp-OutputArea-output canvas"
SETUP = """
import numpy as np
from IPython.display import display
from sam_widget import SamWidget
from sam_widget.data import shapes_image
image, truth = shapes_image(258, size=(384, 512))
w = SamWidget(image, model="tiny_shapes", display_size=400)
display(w)
"""


def _settled(nb, panel, timeout: float = 30.0) -> float:
    """``w.threshold`` once the drag's slider updates have all arrived: the kernel's value is
    what the page's slider reads, and stays so."""
    deadline, last, same = time.monotonic() + timeout, None, 0
    while time.monotonic() < deadline:
        t = nb.eval("(w.wait_idle(30) and False) or w.threshold")
        readout = panel.locator(".widget-readout").first.inner_text().strip()
        same = same + 1 if (t == last and readout == f"{t:.2f}") else 0
        if same >= 3:
            return t
        last = t
        time.sleep(0.2)
    raise AssertionError(f"the threshold did not settle: kernel {last}, page {readout}")


def _follows(nb, canvas) -> tuple[np.ndarray, int]:
    """Wait until the canvas shows the widget's own picture (``w.snapshot()``: the image with
    the current mask cut at ``w.threshold``); return the canvas' pixels and the mask's area
    (display pixels, from the kernel)."""
    pic = _array(nb, "w.snapshot()")
    pts = nb.eval(f"[[x * {DISP_W} / w.image.shape[1], y * {DISP_H} / w.image.shape[0]] for x, y in w.prompts.points]")
    px = _wait_canvas_shows(nb.page, canvas, pic, skip=_marker_zone(pic.shape[:2], pts))
    return px[..., :3], int(nb.eval("int(w.session.display_mask().sum())"))


@pytest.mark.skipif(not TINY_WEIGHTS.exists(), reason="tiny_shapes weights not built yet")
def test_open_explain_drag_the_threshold_and_the_canvas_follows(open_nb, browser_artifacts):
    nb = open_nb([SETUP], wait_for_selector=CANVAS)
    page, canvas = nb.page, nb.canvas(0)
    nb.wait_for("w._ready.is_set()")
    canvas_click(page, canvas, 445, 233, IMG_W, IMG_H)  # the brown rectangle
    nb.wait_for("(w.wait_idle(30) and False) or len(w.prompts.points) == 1")
    px0, area0 = _follows(nb, canvas)
    assert area0 > 5000, area0

    canvas_hover(page, canvas, 10, 10, IMG_W, IMG_H)  # keys go to the canvas under the pointer
    page.keyboard.press("x")
    panel = page.locator(".sam-explain")
    panel.wait_for(state="visible", timeout=30_000)
    assert nb.eval("w._explain.visible") is True
    page.locator(".sam-explain", has_text="stability").wait_for(timeout=30_000)
    assert panel.locator("img").count() >= 4  # three candidates and the heatmap
    lo, hi = nb.eval("w.explain().logits_range")

    # drag the slider's handle to about 40 % of the way from 0 to the highest logit
    handle = panel.locator(".noUi-handle").first
    track = panel.locator(".noUi-target").first
    handle.scroll_into_view_if_needed()
    tb, hb = track.bounding_box(), handle.bounding_box()
    target = 0.4 * hi
    x_to = tb["x"] + tb["width"] * (target - lo) / (hi - lo)
    page.mouse.move(hb["x"] + hb["width"] / 2, hb["y"] + hb["height"] / 2)
    page.mouse.down()
    page.mouse.move(x_to, hb["y"] + hb["height"] / 2, steps=8)
    page.mouse.up()
    nb.wait_for("(w.wait_idle(30) and False) or w.threshold > 0.5")
    t = _settled(nb, panel)
    assert abs(t - target) < 0.2 * hi, (t, target)  # the kernel holds what the slider says
    assert nb.eval("float(w._explain.slider.value)") == pytest.approx(t)
    px1, area1 = _follows(nb, canvas)  # the canvas shows the mask at the new threshold ...
    assert area1 < area0 and (px1 != px0).any(axis=2).sum() > 50  # ... which is smaller than SAM's
    # and w.mask is the engine's answer (the same prediction) cut at that threshold
    assert nb.eval(f"bool(np.array_equal(w.mask, w.candidates.mask(w.selected, {t!r})))")
    assert nb.eval(f"bool(np.array_equal(w.mask, w.candidates.mask(w.selected) if {t!r} == 0 else w.candidates.mask(w.selected, {t!r})))")

    page.locator(".sam-explain button", has_text="-0.5").click()  # the preset: a bigger mask
    nb.wait_for("(w.wait_idle(30) and False) or w.threshold == -0.5")
    px2, area2 = _follows(nb, canvas)
    assert area2 > area0 and (px2 != px0).any(axis=2).sum() > 50, (area2, area0)
    # the picture: back to the slider's threshold, the page tall enough for the whole widget
    frontend = page.locator(".sam-explain button", has_text="+0.5")
    frontend.click()
    nb.wait_for("(w.wait_idle(30) and False) or w.threshold == 0.5")
    _follows(nb, canvas)
    page.set_viewport_size({"width": 1280, "height": 1250})
    widget = canvas.locator("xpath=ancestor::div[contains(@class,'sam-widget')]")
    widget.evaluate("el => el.scrollIntoView({block: 'center'})")  # clear of the notebook's toolbar
    page.wait_for_timeout(400)
    shot = screenshot(page, Path(browser_artifacts) / "explain.png", full_page=False)
    assert shot.exists()
    if os.environ.get("SAM_WIDGET_README_SHOT"):
        (REPO / "docs").mkdir(exist_ok=True)
        out = REPO / "docs" / "explain.png"
        widget.screenshot(path=str(out))
        from PIL import Image  # a small file for the README: 256 colours, no dithering (~100 KB)

        Image.open(out).convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(out, optimize=True)
    assert nb.errors() == []
