"""*Everything* in a real JupyterLab + Chromium: press the button, the proposals are drawn, click one to accept it.

The page is read back from the canvas (its composited layers) and compared with what the
kernel says it should show: ``w.snapshot()``, the widget's own picture (made by the same
overlay functions the layers are drawn from, composited like the browser does), which
shows the accepted object and, on top, the proposals still pending.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import numpy as np
import pytest

from .helpers import canvas_click, canvas_pixels, screenshot

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
IMG_W, IMG_H = 512, 384
DISP_W, DISP_H = 480, 360
CANVAS = ".jp-OutputArea-output canvas"
SETUP = """
import base64
import numpy as np
from IPython.display import display
from sam_widget import SamWidget
from sam_widget.data import shapes_image
from sam_widget.render import resize_mask
image, _ = shapes_image(1, size=(384, 512))
w = SamWidget(image, model="tiny_shapes", display_size=480)
w.everything_params = dict(points_per_side=16, pred_iou_thresh=0.6, stability_score_thresh=0.8)
display(w)
b64 = lambda a: base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()

def expected():
    # what the canvas should show: the widget's own picture (image, objects, current mask, as
    # the layers are drawn) with the proposals layer on top: w.snapshot()
    return b64(w.snapshot())

def pick():
    # a proposal drawn on top somewhere, and a pixel deep inside that part of it
    props = w.proposals
    for i in sorted(range(len(props)), key=lambda i: props[i].area):
        m = props[i].mask.copy()
        for q in props:
            if q.area < props[i].area:
                m &= ~q.mask
        for _ in range(4):
            p = np.pad(m, 1)
            m = m & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        ys, xs = np.nonzero(m)
        if len(xs) > 50:
            k = len(xs) // 2
            return i, int(xs[k]), int(ys[k])
"""


def _matches(nb, canvas, region: str | None = None, timeout: float = 30.0) -> tuple[float, float]:
    """Wait until the canvas shows what the kernel expects; the fraction of pixels within 2
    levels of it, over the whole canvas and over ``region`` (a kernel expression giving an
    ``(h, w)`` bool array at the display size; the whole canvas if None)."""
    want = np.frombuffer(base64.b64decode(nb.eval("expected()")), np.uint8).reshape(DISP_H, DISP_W, 3).astype(int)
    where = np.ones((DISP_H, DISP_W), bool)
    if region is not None:
        where = np.frombuffer(base64.b64decode(nb.eval(f"b64({region})")), np.bool_).reshape(DISP_H, DISP_W)
        assert where.any()
    deadline = time.monotonic() + timeout
    while True:
        px = canvas_pixels(nb.page, canvas)[..., :3].astype(int)
        close = np.abs(px - want).max(axis=2) <= 2
        whole, inside = float(close.mean()), float(close[where].mean())
        if (whole > 0.995 and inside > 0.98) or time.monotonic() > deadline:
            return whole, inside
        time.sleep(0.1)


def test_press_everything_then_click_a_proposal_to_accept_it(open_nb, browser_artifacts):
    nb = open_nb([SETUP], wait_for_selector=CANVAS)
    page, canvas = nb.page, nb.canvas(0)
    nb.wait_for("w._ready.is_set()")
    page.locator(".sam-widget button", has_text="Everything").click()
    try:
        nb.wait_for("w.everything_run is not None and w.everything_run.done")
    except TimeoutError as e:
        raise AssertionError(f"{e}; run: {nb.eval('repr(w.everything_run)')}; status: {nb.eval('w._status.value')}") from None
    n = nb.eval("len(w.proposals)")
    assert n >= 3 and nb.eval("w.objects == ()")
    shown = "np.any(w.proposals.mask_at_size(w._display_hw), axis=0)"
    whole, inside = _matches(nb, canvas, shown)
    assert whole > 0.995 and inside > 0.98, ("proposals drawn", whole, inside)
    page.locator(".sam-widget", has_text=f"{n} of {n} proposals shown").first.wait_for(state="visible", timeout=30_000)

    i, x, y = nb.eval("pick()")
    canvas_click(page, canvas, x, y, IMG_W, IMG_H)
    nb.wait_for("len(w.objects) == 1")
    assert nb.eval(f"bool(np.array_equal(w.objects[0].mask, w.proposals[{i}].mask))")
    assert nb.eval(f"{i} not in w.pending_proposals and len(w.pending_proposals) == {n - 1} and w.prompts.is_empty")
    # the accepted proposal is drawn as an object now (its colour), the others still as proposals
    whole, inside = _matches(nb, canvas, "resize_mask(w.objects[0].mask, w._display_hw)")
    assert whole > 0.995 and inside > 0.98, ("after accepting", whole, inside)
    page.wait_for_timeout(300)
    shot = screenshot(page, Path(browser_artifacts) / "everything.png")
    if os.environ.get("SAM_WIDGET_README_SHOT"):
        (REPO / "docs").mkdir(exist_ok=True)
        from PIL import Image

        raw = Path(browser_artifacts) / "everything_widget.png"
        canvas.locator("xpath=ancestor::div[contains(@class,'sam-widget')]").screenshot(path=str(raw))
        with Image.open(raw) as im:  # a small PNG for the README: 256 colours
            im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(REPO / "docs" / "everything.png", optimize=True)
    assert shot.exists() and nb.errors() == []

    # the opacity slider dragged to its left end: the proposals fade with the objects to
    # outlines only, and the page shows what the kernel's picture says
    root = canvas.locator("xpath=ancestor::div[contains(@class,'sam-widget')]")
    track = root.locator(".sam-opacity .noUi-base").bounding_box()
    handle = root.locator(".sam-opacity .noUi-handle").bounding_box()
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] - 20, track["y"] + track["height"] / 2, steps=8)
    page.mouse.up()
    final = float(root.locator(".sam-opacity .noUi-handle").get_attribute("aria-valuenow"))
    assert final == 0.0, final
    nb.wait_for("w.opacity == 0.0")
    nb.wait_for("w.wait_idle(30) is not None")
    pending = "np.any([w.proposals[k].mask_at_size(w._display_hw) for k in w.pending_proposals], axis=0)"
    whole, inside = _matches(nb, canvas, pending)
    assert whole > 0.995 and inside > 0.98, ("opacity 0", whole, inside)
    fill = f"{pending} & ~np.any([resize_mask(o.mask, w._display_hw) for o in w.objects], axis=0)"
    assert nb.eval(f"float((np.abs(w.snapshot().astype(int) - w._painter.picture().astype(int)).max(axis=2) > 0)[{fill}].mean())") < 0.35
    page.wait_for_timeout(300)
    screenshot(page, Path(browser_artifacts) / "everything_opacity0.png")
