"""Fixtures for browser tests: a real JupyterLab 4 server + headless Debian Chromium (Playwright sync API).

See README.md in this directory. Fixtures:

- ``browser_artifacts`` (session): directory for screenshots/logs (tests/browser/artifacts/).
- ``lab_server`` (session): a running, isolated ``jupyter lab`` -> helpers.JupyterServer.
- ``lab_browser`` (session): a Playwright Chromium Browser (/usr/bin/chromium).
- ``lab_page`` (function): a fresh context + Page (1280x900); screenshot + console log on failure;
  all Jupyter sessions (kernels) are shut down after the test.
- ``open_nb`` (function): ``open_nb(cells, name=None, **kw) -> NotebookHandle`` bound to lab_page/lab_server.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from . import helpers

HERE = Path(__file__).resolve().parent
CHROMIUM = os.environ.get("SAM_BROWSER_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(os.environ.get("SAM_BROWSER_ARTIFACTS", HERE / "artifacts"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
]
_vw, _vh = os.environ.get("SAM_BROWSER_VIEWPORT", "1280x900").lower().split("x")
VIEWPORT = {"width": int(_vw), "height": int(_vh)}


DEFAULT_TEST_TIMEOUT = 300  # s per browser test (pytest-timeout), unless the test sets its own


def pytest_collection_modifyitems(config, items):
    """Mark every test collected from this directory with ``pytest.mark.browser`` (and a
    ``timeout(300)`` if pytest-timeout is active and the test has no timeout marker)."""
    has_timeout = config.pluginmanager.hasplugin("timeout")
    for item in items:
        try:
            inside = Path(str(item.path)).resolve().is_relative_to(HERE)
        except (AttributeError, ValueError):
            inside = False
        if inside:
            item.add_marker(pytest.mark.browser)
            if has_timeout and item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(DEFAULT_TEST_TIMEOUT))


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Store each phase's report on the item (``item.rep_setup`` / ``rep_call``) for fixtures."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _missing_prereq() -> str | None:
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        return f"chromium not found at {CHROMIUM} (apt-get install chromium; or set SAM_BROWSER_CHROMIUM)"
    try:
        import playwright.sync_api  # noqa: F401
        import jupyterlab  # noqa: F401
    except ImportError as e:
        return f"browser-test dependency missing: {e}"
    return None


def _skip_or_fail(reason: str):
    if os.environ.get("SAM_BROWSER_REQUIRED") == "1":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser_artifacts() -> Path:
    """Directory for failure screenshots, console logs and the JupyterLab log (emptied of old
    ``*.png`` / ``*.console.log`` at session start)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("*\n")  # never committed, even without a root entry
    for old in [*ARTIFACTS.glob("*.png"), *ARTIFACTS.glob("*.console.log")]:
        old.unlink(missing_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def lab_server(tmp_path_factory, browser_artifacts):
    """Session-wide ``jupyter lab`` on 127.0.0.1:<free port>, no token, own config/data/runtime dirs.

    Log: ``<artifacts>/jupyterlab.log``. Kernels use this venv's python (default
    python3 kernelspec; verified by test_harness.py::test_kernel_is_this_venv).
    """
    reason = _missing_prereq()
    if reason:
        _skip_or_fail(reason)
    log = browser_artifacts / "jupyterlab.log"
    log.write_text("")
    server = helpers.start_jupyter_lab(tmp_path_factory.mktemp("jupyter"), log)
    try:
        yield server
    finally:
        helpers.stop_jupyter_lab(server)


@pytest.fixture(scope="session")
def lab_browser():
    """Session-wide headless Chromium (Debian's binary; never ``playwright install``)."""
    reason = _missing_prereq()
    if reason:
        _skip_or_fail(reason)
    from playwright.sync_api import sync_playwright

    headed = os.environ.get("SAM_BROWSER_HEADED") == "1"
    args = [a for a in CHROMIUM_ARGS if not (headed and a == "--headless")]
    slow_mo = float(os.environ.get("SAM_BROWSER_SLOWMO", "0"))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=not headed, args=args,
                                     slow_mo=slow_mo, timeout=120_000)
        try:
            yield browser
        finally:
            browser.close()


def _safe_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1])[:150]


@pytest.fixture
def lab_page(request, lab_browser, lab_server, browser_artifacts):
    """A fresh browser context + page per test.

    Dialogs (e.g. beforeunload on reload) are accepted. On failure writes
    ``<artifacts>/<test>.png`` (full page) and ``<test>.console.log`` (console
    messages + page errors + tail of the server log). ``SAM_BROWSER_SCREENSHOTS=always``
    saves the screenshot for passing tests too. Afterwards every Jupyter
    session (kernel) is shut down so tests do not share kernels.
    """
    context = lab_browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    context.set_default_timeout(60_000)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(f"[{m.type}] {m.text}"))
    page.on("pageerror", lambda e: console.append(f"[pageerror] {e}"))
    page.on("dialog", lambda d: d.accept())
    try:
        yield page
    finally:
        failed = any(getattr(getattr(request.node, f"rep_{w}", None), "failed", False)
                     for w in ("setup", "call"))
        name = _safe_name(request.node.nodeid)
        if failed or os.environ.get("SAM_BROWSER_SCREENSHOTS") == "always":
            try:
                helpers.screenshot(page, browser_artifacts / f"{name}.png")
            except Exception as e:  # the page may be gone
                console.append(f"[harness] screenshot failed: {e}")
        if failed:
            (browser_artifacts / f"{name}.console.log").write_text(
                "\n".join(console) + "\n\n--- jupyterlab.log (tail) ---\n" + lab_server.log_tail())
        try:
            context.close()
        finally:
            lab_server.shutdown_sessions()


@pytest.fixture
def open_nb(request, lab_page, lab_server):
    """Factory: ``open_nb(cells, name=None, run=True, wait_for_selector=None, timeout=60) -> NotebookHandle``.

    ``name`` defaults to the test's name. The notebook is written under the
    server's root dir, opened in ``lab_page`` and (by default) all cells run.
    """
    def _open(cells, name=None, **kw):
        name = name or _safe_name(request.node.name) + ".ipynb"
        return helpers.open_notebook(lab_page, lab_server, cells, name, **kw)

    return _open


def tidy_artifacts(folder: Path, green: bool, keep_log: bool = False) -> None:
    """After a green run: remove the server log (unless ``keep_log``), then the folder if only
    its ``.gitignore`` is left. Screenshots a test saves on purpose (``widget.png``) stay, and
    after a failed run everything stays."""
    if not green or not folder.is_dir():
        return
    if not keep_log:
        (folder / "jupyterlab.log").unlink(missing_ok=True)
    if all(p.name == ".gitignore" for p in folder.iterdir()):
        shutil.rmtree(folder, ignore_errors=True)


def pytest_sessionfinish(session, exitstatus):
    """Tidy the artifacts folder after a green run (see :func:`tidy_artifacts`)."""
    try:
        tidy_artifacts(ARTIFACTS, exitstatus == 0, os.environ.get("SAM_BROWSER_KEEP_LOG") == "1")
    except OSError:
        pass
