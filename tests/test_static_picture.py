"""The widget's still picture: ``SamWidget.snapshot()`` and the PNG that travels with the live
widget in its display output, for front ends that cannot run it (nbconvert/HTML, GitHub).

* The PNG in what ``display(w)`` publishes decodes to ``w.snapshot()`` at that moment.
* ``snapshot()`` shows what the canvas shows: the browser's layers replayed from the messages
  the widget sent, composited, equal the picture (outside the point markers).
* A notebook run headless and exported by nbconvert to HTML shows that picture, never
  "Error displaying widget" (run without stored widget state, as JupyterLab saves by default).
"""

from __future__ import annotations

import base64
import io
import re
import threading

import nbformat
import numpy as np
import pytest
from IPython.core.formatters import DisplayFormatter
from PIL import Image

from conftest import make_image
from sam_widget import SamWidget, Segmenter
from sam_widget.render import resize_rgb
from sam_widget.testing import CURRENT, IMAGE, OBJECTS, LayerReplay, RecordingComm, layer_commands
from widget_driver import SlowSegmenter

IMG = make_image(240, 320, seed=3)  # shown at 200 px: 150 x 200
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def widgets_made():
    made: list[SamWidget] = []
    yield made
    for w in made:
        w.close()


def published(w: SamWidget) -> dict:
    """What ``display(w)`` sends to the front end (IPython's display formatter)."""
    data, _ = DisplayFormatter().format(w)
    return data


def png_of(data: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data["image/png"]))))


def browser_view(w: SamWidget, rec: RecordingComm) -> np.ndarray:
    """The canvas as a browser composites it: image, objects and current-mask layers replayed."""
    hw = w._display_hw
    layers = [LayerReplay(hw).apply(layer_commands(w, rec, i)).rgba for i in (IMAGE, OBJECTS, CURRENT)]
    out = layers[0][..., :3].astype(np.float64)
    assert (layers[0][..., 3] == 255).all(), "the image layer is not fully painted"
    for lay in layers[1:]:
        a = lay[..., 3:4] / 255.0
        out = np.rint(a * lay[..., :3] + (1 - a) * out)
    return out.astype(np.uint8)


def marker_zone(w: SamWidget, r: int = 7) -> np.ndarray:
    dh, dw = w._display_hw
    H, W = w.image.shape[:2]
    yy, xx = np.mgrid[:dh, :dw]
    zone = np.zeros((dh, dw), bool)
    for x, y in w.prompts.points:
        zone |= (xx - x * dw / W) ** 2 + (yy - y * dh / H) ** 2 <= r * r
    return zone


def test_display_publishes_the_live_widget_and_its_picture(comm, tiny_sam, widgets_made):
    w = SamWidget(IMG, segmenter=Segmenter(tiny_sam, exact=True), display_size=200)
    widgets_made.append(w)
    data = published(w)
    assert data[WIDGET_VIEW]["model_id"] == w.model_id  # the live widget first
    pic = png_of(data)
    assert pic.shape == (150, 200, 3) and np.array_equal(pic, resize_rgb(IMG, (150, 200)))
    assert np.array_equal(pic, w.snapshot())

    # after clicks and a commit, the picture shows them (displayed again, or w.snapshot())
    w.add_point(100, 120)
    w.commit("first")
    w.add_point(250, 60)
    w.add_point(30, 200, label=0)
    pic2 = png_of(published(w))
    assert np.array_equal(pic2, w.snapshot())
    changed = (pic2 != pic).any(axis=2)
    assert changed.sum() > 200
    assert not np.array_equal(pic2, pic)


def test_the_picture_is_what_the_canvas_shows(comm, tiny_sam, widgets_made):
    w = SamWidget(IMG, segmenter=Segmenter(tiny_sam, exact=True), display_size=200).wait_ready()
    widgets_made.append(w)
    w.add_point(100, 120)
    w.commit()
    w.add_point(260, 40)
    w.wait_idle()
    assert w.mask.any() and len(w.objects) == 1
    shown = browser_view(w, comm)
    pic = w.snapshot()
    keep = ~marker_zone(w)
    assert np.abs(shown.astype(int) - pic.astype(int))[keep].max() == 0
    # the markers themselves: a positive point is green at its centre
    x, y = w.prompts.points[0]
    assert pic[round(y * 150 / 240), round(x * 200 / 320)].tolist() == [34, 197, 94]


def test_full_size_picture_uses_the_full_resolution_masks(comm, tiny_sam, widgets_made):
    w = SamWidget(IMG, segmenter=Segmenter(tiny_sam, exact=True), display_size=200)
    widgets_made.append(w)
    w.add_point(100, 120)
    w.commit()
    full = w.snapshot(full_size=True)
    assert full.shape == IMG.shape
    m = w.objects[0].mask
    tinted = (full != IMG).any(axis=2)
    assert np.array_equal(tinted, m)  # exactly the object's pixels, at full resolution


def test_displaying_never_waits_for_the_model(comm, tiny_sam, widgets_made):
    seg = SlowSegmenter(tiny_sam, gated=True)  # encoding blocked until the gate opens
    w = SamWidget(IMG, segmenter=seg, display_size=200)
    widgets_made.append(w)
    w.session._push_prompts(lambda p: p.with_point(100, 120, 1))  # a click while the model loads
    done = threading.Event()
    result = {}
    t = threading.Thread(target=lambda: (result.setdefault("data", published(w)), done.set()), daemon=True)
    t.start()
    assert done.wait(20), "display(w) blocked on the pending prediction"
    pic = png_of(result["data"])
    assert np.array_equal(pic[~marker_zone(w)], resize_rgb(IMG, (150, 200))[~marker_zone(w)])  # no mask yet
    seg.gate.set()
    w.wait_idle()
    assert w.snapshot().shape == (150, 200, 3)


def test_a_closed_widget_publishes_nothing_live(comm, tiny_sam):
    w = SamWidget(IMG, segmenter=Segmenter(tiny_sam, exact=True), display_size=200)
    w.close()
    assert WIDGET_VIEW not in published(w)


NOTEBOOK = [
    """
import numpy as np
from IPython.display import display
from sam_widget import SamWidget, Segmenter
from sam_widget.engine.models import random_sam, TINY_TEST_CONFIG
from sam_widget.testing import RecordingComm
img = np.zeros((240, 320, 3), np.uint8); img[..., 1] = 120; img[60:180, 80:240] = (200, 60, 40)
w = SamWidget(img, segmenter=Segmenter(random_sam(TINY_TEST_CONFIG, seed=0), exact=True), display_size=200)
w.add_point(160, 120); w.commit("red box"); w.add_point(40, 40)
display(w)
from sam_widget.render import resize_rgb
np.save(PATH, np.stack([w.snapshot(), resize_rgb(img, (150, 200))]))
""",
]


def _html_pngs(html: str) -> list[np.ndarray]:
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(b))))
            for b in re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', html)]


def test_nbconvert_html_export_shows_the_picture(tmp_path):
    """A notebook run headless (nbclient, as ``jupyter nbconvert --execute``), exported to HTML.

    Without saved widget state (what JupyterLab and Notebook save by default; nbclient's
    ``store_widget_state=False``) the export shows the widget's picture. With the state saved
    (nbclient's default) nbconvert keeps the live widget instead: its HTML loads the widget code
    from a CDN and the canvas content is not part of the state, so the README says to export
    without it.
    """
    import copy

    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    want_path = tmp_path / "snapshot.npy"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(NOTEBOOK[0].replace("PATH", repr(str(want_path))))]
    NotebookClient(nb, timeout=300, kernel_name="python3").execute()
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    want, plain = np.load(want_path)

    with_state = HTMLExporter().from_notebook_node(nb)[0]
    assert _html_pngs(with_state) == [] and "application/vnd.jupyter.widget-view+json" in with_state

    saved = copy.deepcopy(nb)
    del saved.metadata["widgets"]  # as saved by JupyterLab / run with store_widget_state=False
    html, _ = HTMLExporter().from_notebook_node(saved)
    pngs = _html_pngs(html)
    assert len(pngs) == 1 and np.array_equal(pngs[0], want)
    assert (want != plain).any(axis=2).sum() > 100  # the object and the current mask are in it
    assert "Error displaying widget" not in html and "widget-view+json" not in html
