"""The widget in other front ends: Jupyter Notebook 7 and Voila (real servers, headless
Chromium), and what is left of it in a saved notebook (the static picture).

In each host a user opens the notebook, sees the image, clicks on a shape (the click reaches
the kernel and the mask is painted) and presses Enter (the object is committed). The page is
checked against the kernel: the canvas must show exactly the widget's own picture
(``w.snapshot()``: image + objects + current mask, same colours and outlines), except the
anti-aliased rim of the point marker. Each server starts once per module; requests that
leave 127.0.0.1 are refused, so nothing may come from a CDN.

Screenshots kept in ``tests/browser/artifacts/``: ``notebook7.png``, ``voila.png``,
``lab_reopened.png`` (a saved notebook reopened in JupyterLab with a new kernel),
``nbconvert_export.png`` (that notebook exported to HTML by nbconvert).
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from . import helpers
from .conftest import _skip_or_fail, browser_page
from .helpers import KernelConnection, canvas_click, canvas_hover, canvas_pixels, screenshot

pytestmark = pytest.mark.browser

CANVAS = ".jp-OutputArea-output canvas"
SETUP = """
import numpy as np
from IPython.display import display
from sam_widget import SamWidget
from sam_widget.demo import demo_setup
demo = demo_setup("tiny_shapes", verbose=False)
w = SamWidget(demo.image, segmenter=demo.segmenter, display_size=640)
display(w)
iou = lambda a, b: float((a & b).sum() / max(1, (a | b).sum()))
"""
OFFSITE = re.compile(r"^(?!https?://127\.0\.0\.1[:/])[a-z]+://")  # anything not served here


def _need(module: str) -> None:
    try:
        __import__(module)
    except ImportError as e:
        _skip_or_fail(f"browser-test dependency missing: {e}")


def _array(k, expr: str) -> np.ndarray:
    """A NumPy array from the kernel, sent as base64 bytes (exact, and fast for images)."""
    shape, dtype, b64 = k.eval(
        f"(lambda a: [list(a.shape), str(a.dtype), __import__('base64').b64encode(a.tobytes()).decode()])"
        f"(np.ascontiguousarray({expr}))")
    return np.frombuffer(base64.b64decode(b64), dtype=dtype).reshape(shape)


def _idle(k, expr: str) -> None:
    k.wait_for(f"(w.wait_idle(30) and False) or ({expr})")


def _marker_zone(shape_hw, points_xy, radius: int = 8) -> np.ndarray:
    """Pixels near point markers (drawn anti-aliased by the canvas, by Pillow in the picture)."""
    yy, xx = np.mgrid[: shape_hw[0], : shape_hw[1]]
    zone = np.zeros(shape_hw, bool)
    for x, y in points_xy:
        zone |= (xx - x) ** 2 + (yy - y) ** 2 <= radius ** 2
    return zone


def _wait_canvas_shows(page, canvas, want: np.ndarray, skip: np.ndarray | None = None,
                       tol: int = 2, timeout: float = 30.0) -> np.ndarray:
    """Wait until the canvas' RGB equals ``want`` within ``tol`` per channel (outside ``skip``).

    Translucent overlays come out of Chromium's canvas up to 1 level off (premultiplied
    alpha; measured max 1), hence the default ``tol=2``."""
    keep = np.ones(want.shape[:2], bool) if skip is None else ~skip
    last = {}

    def ok():
        px = canvas_pixels(page, canvas)
        last["px"] = px
        if px.shape[:2] != want.shape[:2]:
            return False
        diff = np.abs(px[..., :3].astype(int) - want.astype(int)).max(axis=2)
        last["bad"] = int((diff[keep] > tol).sum())
        last["max"] = int(diff[keep].max())
        return (px[..., 3][keep] == 255).all() and last["bad"] == 0

    try:
        helpers.poll(ok, timeout=timeout, interval=0.1)
    except TimeoutError:
        raise AssertionError(f"canvas does not show the widget's picture: {last.get('bad')} pixels off by more "
                             f"than {tol} (max {last.get('max')}), canvas {last['px'].shape}, "
                             f"picture {want.shape}") from None
    return last["px"]


def click_and_commit(page, canvas, k, shot: Path) -> None:
    """The user's path in any host: see the image, click a shape, press Enter."""
    k.wait_for("w._ready.is_set()")
    h, wd = k.eval("list(w.image.shape[:2])")
    assert tuple(canvas.evaluate("c => [c.width, c.height]")) == (wd, h)  # 512x384: shown 1:1
    # 1. the image is painted (in Voila it was drawn before the page existed: the widget
    #    repaints when the canvas reports client_ready)
    plain = _array(k, "w.snapshot()")
    assert np.array_equal(plain, _array(k, f"__import__('sam_widget.render', fromlist=['x']).resize_rgb(w.image, ({h}, {wd}))"))
    before = _wait_canvas_shows(page, canvas, plain, tol=0)

    # 2. a click on the largest shape reaches the kernel; its mask is painted
    x, y = k.eval("list(demo.suggest_point())")
    canvas_click(page, canvas, x, y, wd, h)
    _idle(k, "len(w.prompts.points) == 1")
    assert k.eval("w.prompts.points") == [[x, y]]
    truth = f"demo.true_masks[int(np.argmax([m[{y}, {x}] for m in demo.true_masks]))]"
    assert k.eval(f"iou(w.mask, {truth})") >= 0.8
    picture = _array(k, "w.snapshot()")
    mask = _array(k, "w.mask")
    assert mask.sum() > 500
    after = _wait_canvas_shows(page, canvas, picture, skip=_marker_zone((h, wd), [(x, y)]))
    tinted = (after[..., :3] != before[..., :3]).any(axis=2)
    assert tinted[mask].mean() > 0.95 and tinted[~mask & ~_marker_zone((h, wd), [(x, y)])].mean() == 0

    # 3. Enter (pointer over the image) commits the object; the canvas shows it in its colour
    canvas_hover(page, canvas, x, y, wd, h)
    page.keyboard.press("Enter")
    _idle(k, "len(w.objects) == 1")
    assert k.eval("(w.objects[0].label, w.objects[0].area, w.prompts.points)") == ["object 1", int(mask.sum()), []]
    committed = _array(k, "w.snapshot()")
    color = k.eval("list(w.objects[0].color)")
    _wait_canvas_shows(page, canvas, committed)
    inside = np.argwhere(mask)[len(np.argwhere(mask)) // 2]
    r, g, b = committed[tuple(inside)].astype(int) - plain[tuple(inside)].astype(int)
    assert np.sign([r, g, b]).tolist() == np.sign(np.array(color) - plain[tuple(inside)]).tolist()  # pulled to the colour
    page.wait_for_timeout(200)
    screenshot(page, shot)


# ------------------------------------------------------------------------------ Notebook 7
@pytest.fixture(scope="module")
def nb7_server(tmp_path_factory, browser_artifacts):
    _need("notebook")
    log = browser_artifacts / "notebook7.log"
    log.write_text("")
    server = helpers.start_jupyter_lab(tmp_path_factory.mktemp("nb7"), log, app="notebook")
    try:
        yield server
    finally:
        helpers.stop_jupyter_lab(server)


@pytest.fixture(scope="module")
def voila_server(tmp_path_factory, browser_artifacts):
    _need("voila")
    log = browser_artifacts / "voila.log"
    log.write_text("")
    server = helpers.start_voila(tmp_path_factory.mktemp("voila"), log)
    try:
        yield server
    finally:
        helpers.stop_jupyter_lab(server)


def _offline(page) -> list[str]:
    """Refuse every request that leaves this machine; returns the list of refused URLs."""
    refused: list[str] = []

    def deny(route):
        refused.append(route.request.url)
        route.abort()

    page.context.route(OFFSITE, deny)
    return refused


def test_notebook7_click_and_enter(request, lab_browser, nb7_server, browser_artifacts):
    with browser_page(request, lab_browser, browser_artifacts, nb7_server.log_tail,
                      nb7_server.shutdown_sessions) as page:
        _offline(page)
        nb = helpers.open_notebook(page, nb7_server, [SETUP], "nb7.ipynb", url="/notebooks/{path}",
                                   collapse_left=False, wait_for_selector=CANVAS)
        assert page.evaluate("() => window.jupyterapp.name") == "Jupyter Notebook"
        click_and_commit(page, nb.canvas(0), nb, browser_artifacts / "notebook7.png")
        assert nb.errors() == [] and nb.cell_count() == 1  # Enter did not reach Notebook


# ------------------------------------------------------------------------------ Voila
def test_voila_click_and_enter(request, lab_browser, voila_server, browser_artifacts):
    path = helpers.write_notebook(voila_server, [SETUP], "voila.ipynb")
    with browser_page(request, lab_browser, browser_artifacts, voila_server.log_tail) as page:
        refused = _offline(page)
        scripts: list[str] = []
        page.on("request", lambda r: scripts.append(r.url) if r.resource_type == "script" else None)
        # Voila runs the notebook before it answers, then the page connects to that kernel.
        page.goto(voila_server.render_url(path), wait_until="domcontentloaded", timeout=180_000)
        canvas = page.locator(CANVAS).first
        canvas.wait_for(state="visible", timeout=120_000)
        kernel_id = page.evaluate("() => JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId")
        k = KernelConnection(voila_server.connection_file(kernel_id))
        try:
            click_and_commit(page, canvas, k, browser_artifacts / "voila.png")
        finally:
            k.close()
        # the widgets' front-end code came from the installed lab extensions, not a CDN
        for ext in ("ipycanvas", "ipyevents", "@jupyter-widgets/jupyterlab-manager"):
            assert any(f"/voila/labextensions/{ext}/" in u for u in scripts), (ext, scripts)
        assert not [u for u in refused if re.search(r"ipycanvas|ipyevents|jupyter-widgets", u)], refused
        assert page.locator("text=Error displaying widget").count() == 0


# ------------------------------------------------------------------------------ saved notebooks
def _png_outputs(html: str) -> list[np.ndarray]:
    from PIL import Image

    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(b))).convert("RGB"))
            for b in re.findall(r'<img[^>]+src="data:image/png;base64,([^"]+)"', html)]


def test_saved_notebook_keeps_a_picture(open_nb, lab_server, browser_artifacts):
    """Clicked and saved in JupyterLab: the file holds the widget's picture next to the live
    widget; nbconvert's HTML shows that picture; JupyterLab itself, reopened with a new
    kernel, cannot show the (gone) widget."""
    from nbconvert import HTMLExporter

    nb = open_nb([SETUP], name="saved.ipynb", wait_for_selector=CANVAS)
    page = nb.page
    nb.wait_for("w._ready.is_set()")
    shown = _array(nb, "w.snapshot()")  # the picture when the widget was displayed
    h, wd = shown.shape[:2]
    x, y = nb.eval("list(demo.suggest_point())")
    canvas_click(page, nb.canvas(0), x, y, wd, h)
    _idle(nb, "len(w.prompts.points) == 1")
    canvas_hover(page, nb.canvas(0), x, y, wd, h)
    page.keyboard.press("Enter")
    _idle(nb, "len(w.objects) == 1")
    page.evaluate("async () => await window.jupyterapp.commands.execute('docmanager:save')")

    saved = nbformat.read(str(lab_server.root_dir / nb.path), as_version=4)
    out = next(o for o in saved.cells[0].outputs if "application/vnd.jupyter.widget-view+json" in o.get("data", {}))
    assert "image/png" in out["data"]  # the picture travels with the live widget's output
    assert "widgets" not in saved.metadata  # JupyterLab's default: no widget state saved

    html, _ = HTMLExporter().from_notebook_node(saved)
    pngs = _png_outputs(html)
    assert len(pngs) == 1 and np.array_equal(pngs[0], shown)
    assert "Error displaying widget" not in html and "widget-view+json" not in html
    export = lab_server.root_dir / "saved.html"
    export.write_text(html)
    view = page.context.new_page()
    view.goto(export.as_uri(), wait_until="load")
    assert view.locator("img").count() == 1 and view.locator("img").first.evaluate("i => i.naturalWidth") == wd
    screenshot(view, browser_artifacts / "nbconvert_export.png")
    view.close()

    # Reopened later (kernel gone, a new one started): JupyterLab has no model for the saved
    # widget and shows its own error text; it does not fall back to the picture.
    lab_server.shutdown_sessions()
    nb.reload()
    page.locator(".jp-OutputArea-output").first.wait_for(state="attached")
    page.wait_for_function("() => document.body.innerText.includes('Error displaying widget')", timeout=60_000)
    screenshot(page, browser_artifacts / "lab_reopened.png")
