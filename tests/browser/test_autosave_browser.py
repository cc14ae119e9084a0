"""Autosave in a real JupyterLab + Chromium: a widget opened over an existing autosave file shows
the restored objects and says so in its status line; a click + Enter in the page reaches the
file on disk. A screenshot of the page is kept as ``artifacts/autosave_restored.png``."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from PIL import Image

from . import helpers
from .helpers import canvas_click
from .test_sessions_browser import CANVAS, IMG_H, IMG_W, _drawn, _press

pytestmark = pytest.mark.browser


def test_a_widget_over_an_autosave_file_shows_what_was_restored_and_saves_new_clicks(open_nb, tmp_path, browser_artifacts):
    from sam_widget import Segmenter, Session
    from sam_widget.data import shapes_image
    from sam_widget.demo import _deepest_pixel
    from sam_widget.io import read_session

    scenes = [shapes_image(seed, size=(384, 512)) for seed in (1, 2, 3)]
    paths = []
    for k, (img, _) in enumerate(scenes):
        paths.append(str(tmp_path / f"scene_{k}.png"))
        Image.fromarray(img).save(paths[-1])
    work = tmp_path / "work.json"
    points = [_deepest_pixel(m[int(np.argmax(m.sum(axis=(1, 2))))]) for _, m in scenes]
    s = Session(paths, segmenter=Segmenter.from_pretrained("tiny_shapes", device="cpu"), autosave=work)
    for i in range(2):  # yesterday's work: an object on each of the first two images
        s.goto(i)
        s.add_point(*points[i])
        s.commit(f"object on image {i + 1}")
    s.goto(0)
    s.close()

    setup = f"""
import base64
import numpy as np
from IPython.display import display
from sam_widget import SamWidget
from sam_widget.render import resize_mask, resize_rgb
w = SamWidget({json.dumps(paths)}, model="tiny_shapes", display_size=480, autosave={str(work)!r})
display(w)
b64 = lambda a: base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()
expected = lambda: [b64(resize_rgb(w.image, w._display_hw)),
                    b64(np.any([resize_mask(o.mask, w._display_hw) for o in w.objects] or [np.zeros(w._display_hw, bool)], axis=0))]
"""
    nb = open_nb([setup], wait_for_selector=CANVAS)
    page, canvas = nb.page, nb.canvas(0)
    nb.wait_for("w._ready.is_set()")
    status = page.locator(".sam-widget", has_text="restored 2 objects on 2 images from work.json").first
    status.wait_for(state="visible", timeout=30_000)  # the status line says where the objects came from
    image_ok, tinted = _drawn(nb, canvas)
    assert image_ok > 0.97 and tinted > 0.9, ("restored object drawn", image_ok, tinted)
    helpers.screenshot(page, browser_artifacts / "autosave_restored.png")
    # with the image navigation the toolbar is wider than the cell: it wraps, no label is cut short
    cut = page.locator(".sam-widget").first.locator("button").evaluate_all(
        "bs => bs.filter(b => b.offsetParent && b.scrollWidth > b.clientWidth + 1).map(b => b.innerText)")
    assert cut == [], f"buttons whose label does not fit: {cut}"

    # a new object on the third image, clicked in the page: on disk within a moment
    _press(nb, canvas, "ArrowRight")
    nb.wait_for("w.index == 1")
    _press(nb, canvas, "ArrowRight")
    nb.wait_for("w.index == 2 and w._ready.is_set()")
    canvas_click(page, canvas, *points[2], IMG_W, IMG_H)
    nb.wait_for("(w.wait_idle(30) and False) or len(w.prompts.points) == 1")
    _press(nb, canvas, "Enter")
    nb.wait_for("len(w.results[2].objects) == 1")
    deadline = time.monotonic() + 30
    while [len(im.objects) for im in read_session(work).images] != [1, 1, 1]:
        assert time.monotonic() < deadline, "the new object did not reach the autosave file"
        time.sleep(0.1)
    assert read_session(work).index == 2
    image_ok, tinted = _drawn(nb, canvas)
    assert image_ok > 0.97 and tinted > 0.9
    assert "restored" not in page.locator(".sam-widget").first.inner_text()  # the notice went with the first change
    assert nb.errors() == []
