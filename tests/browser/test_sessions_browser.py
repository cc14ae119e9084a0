"""A set of images in a real JupyterLab + Chromium: next / prev, a commit on each, reload, all still drawn.

What the page shows is read back from the canvas (composited layers) and compared with what
the kernel says should be there: the image at display size, tinted where its objects are.
"""

from __future__ import annotations

import base64
import time

import numpy as np
import pytest

from .helpers import canvas_click, canvas_hover, canvas_pixels

pytestmark = pytest.mark.browser

IMG_W, IMG_H = 512, 384
CANVAS = ".jp-OutputArea-output canvas"
SETUP = """
import base64
import numpy as np
from IPython.display import display
from sam_widget import SamWidget
from sam_widget.data import shapes_image
from sam_widget.demo import _deepest_pixel
from sam_widget.render import resize_mask, resize_rgb
scenes = [shapes_image(seed, size=(384, 512)) for seed in (1, 2, 3)]
imgs = [img for img, _ in scenes]
points = [_deepest_pixel(m[int(np.argmax(m.sum(axis=(1, 2))))]) for _, m in scenes]  # inside the largest shape
w = SamWidget(imgs, model="tiny_shapes", display_size=480)
display(w)
b64 = lambda a: base64.b64encode(np.ascontiguousarray(a).tobytes()).decode()
expected = lambda: [b64(resize_rgb(w.image, w._display_hw)),
                    b64(np.any([resize_mask(o.mask, w._display_hw) for o in w.objects] or [np.zeros(w._display_hw, bool)], axis=0))]
"""


def _expected(nb) -> tuple[np.ndarray, np.ndarray]:
    """The current image at display size and where its objects are, from the kernel."""
    rgb, mask = nb.eval("expected()")
    rgb = np.frombuffer(base64.b64decode(rgb), np.uint8).reshape(360, 480, 3)
    mask = np.frombuffer(base64.b64decode(mask), np.bool_).reshape(360, 480)
    return rgb, mask


def _drawn(nb, canvas, timeout: float = 30.0) -> tuple[float, float]:
    """Wait until the canvas shows the current image with its objects tinted; return
    (fraction of pixels off the objects equal to the image, fraction of object pixels tinted)."""
    rgb, mask = _expected(nb)
    assert mask.any(), "the current image has no object to look for"
    deadline = time.monotonic() + timeout
    while True:
        px = canvas_pixels(nb.page, canvas)[..., :3]
        same = (px == rgb).all(axis=2)
        image_ok = float(same[~mask].mean()) if (~mask).any() else 1.0
        tinted = float((~same[mask]).mean())
        if (image_ok > 0.97 and tinted > 0.9) or time.monotonic() > deadline:
            return image_ok, tinted
        time.sleep(0.1)


def _counter(page, text: str) -> None:
    """Wait until the toolbar's image counter reads ``text`` ("2 / 3")."""
    page.locator(".sam-widget b", has_text=text).first.wait_for(state="visible", timeout=30_000)


def _press(nb, canvas, key: str) -> None:
    canvas_hover(nb.page, canvas, 5, 5, IMG_W, IMG_H)  # ipyevents listens for keys while the pointer is over it
    nb.page.keyboard.press(key)


def test_next_prev_through_three_images_a_commit_on_each_then_reload(open_nb):
    nb = open_nb([SETUP], wait_for_selector=CANVAS)
    page, canvas = nb.page, nb.canvas(0)
    nb.wait_for("w._ready.is_set()")
    _counter(page, "1 / 3")

    for i, (x, y) in enumerate(nb.eval("points")):
        canvas_click(page, canvas, x, y, IMG_W, IMG_H)
        nb.wait_for("(w.wait_idle(30) and False) or len(w.prompts.points) == 1")
        _press(nb, canvas, "Enter")
        nb.wait_for(f"len(w.results[{i}].objects) == 1")
        image_ok, tinted = _drawn(nb, canvas)
        assert image_ok > 0.97 and tinted > 0.9, (i, image_ok, tinted)
        if i == 0:
            _press(nb, canvas, "ArrowRight")  # the key ...
        elif i == 1:
            page.locator(".sam-widget button:has(i.fa-chevron-right)").click()  # ... and the button
        if i < 2:
            nb.wait_for(f"w.index == {i + 1} and w._ready.is_set()")
            _counter(page, f"{i + 2} / 3")

    _press(nb, canvas, "ArrowLeft")
    nb.wait_for("w.index == 1")
    page.locator(".sam-widget button:has(i.fa-chevron-left)").click()
    nb.wait_for("w.index == 0")
    image_ok, tinted = _drawn(nb, canvas)
    assert image_ok > 0.97 and tinted > 0.9, ("back on image 0", image_ok, tinted)
    assert nb.eval("[len(r.objects) for r in w.results]") == [1, 1, 1]

    # a fresh page on the same kernel: everything comes back, and stays on every image
    nb.reload(save=True)
    canvas = nb.canvas(0)
    canvas.wait_for(state="visible")
    for i in range(3):
        image_ok, tinted = _drawn(nb, canvas)
        assert image_ok > 0.97 and tinted > 0.9, ("after reload", i, image_ok, tinted)
        if i < 2:
            _press(nb, canvas, "ArrowRight")
            nb.wait_for(f"w.index == {i + 1}")
    assert nb.eval("[len(r.objects) for r in w.results]") == [1, 1, 1]
    assert nb.errors() == []
