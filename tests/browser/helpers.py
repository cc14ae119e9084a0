"""Helpers for driving a real JupyterLab 4 + headless Chromium from pytest.

Everything here is plain Python + Playwright's sync API; the fixtures that
create the objects used below live in ``conftest.py``.

Coordinate conventions used by the canvas helpers
-------------------------------------------------
``canvas_click(page, loc, x, y, image_w, image_h)`` targets the *centre* of
pixel ``(x, y)`` of an ``image_w x image_h`` pixel grid that spans the canvas'
bounding box (normally ``image_w == canvas.width``), whatever CSS size the
canvas is displayed at. So ``floor(reported_x) == x`` on the kernel side.
"""

from __future__ import annotations

import ast
import base64
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import nbformat

DEFAULT_TIMEOUT = 60.0  # seconds; generous: 2 shared cores
RUN_TIMEOUT = 180.0  # seconds for "run all cells" (model loading on a slow CPU)
ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class KernelEvalError(RuntimeError):
    """An expression raised inside the kernel (ename/evalue in the message)."""


class NotebookError(RuntimeError):
    """A notebook cell produced an error output in the page."""


# --------------------------------------------------------------------------
# JupyterLab server
# --------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_lab_overrides(prefix: str | os.PathLike = sys.prefix) -> Path:
    """Merge our settings into ``<prefix>/share/jupyter/lab/settings/overrides.json``.

    Turns off the news/update pop-up (it covers the page) and notebook
    windowing (so every cell is in the DOM). Existing keys are kept.
    """
    path = Path(prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    wanted = {
        "@jupyterlab/apputils-extension:notification": {
            "fetchNews": "false",
            "checkForUpdates": False,
        },
        "@jupyterlab/notebook-extension:tracker": {"windowingMode": "none"},
    }
    data: dict = {}
    if path.exists():
        try:
            data = json.loads(path.read_text() or "{}")
        except ValueError:
            data = {}
    changed = False
    for plugin, settings in wanted.items():
        cur = data.setdefault(plugin, {})
        for k, v in settings.items():
            if cur.get(k) != v:
                cur[k] = v
                changed = True
    if changed or not path.exists():
        tmp = path.with_name(f".overrides.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, path)  # atomic: other developers may start labs concurrently
    return path


@dataclass
class JupyterServer:
    """A running ``jupyter lab`` (see the ``lab_server`` fixture)."""

    proc: subprocess.Popen = field(repr=False)
    port: int
    root_dir: Path  # notebooks are written here (the server's root_dir)
    runtime_dir: Path = field(repr=False)  # kernel-<id>.json connection files live here
    log_path: Path = field(repr=False)
    env: dict = field(repr=False)  # environment of the server and so of its kernels
    _clients: dict = field(default_factory=dict, repr=False)  # kernel_id -> BlockingKernelClient
    last_notebook: str | None = None  # path of the most recently opened notebook

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        """Call the server's REST API (``path`` like ``/api/sessions``); returns parsed JSON or None."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
        return json.loads(raw) if raw else None

    def sessions(self) -> list[dict]:
        """``GET /api/sessions``."""
        return self.api("GET", "/api/sessions")

    def kernel_id_for(self, path: str | None = None) -> str:
        """Kernel id of the session for notebook ``path`` (default: the last opened notebook)."""
        path = path or self.last_notebook
        sessions = self.sessions()
        if path is not None:
            for s in sessions:
                if s.get("path") == path and s.get("kernel"):
                    return s["kernel"]["id"]
            raise LookupError(f"no session for {path!r}; sessions: {[s.get('path') for s in sessions]}")
        if len(sessions) == 1:
            return sessions[0]["kernel"]["id"]
        raise LookupError(f"{len(sessions)} sessions; pass a notebook path")

    def client(self, kernel_id: str):
        """A cached, connected ``BlockingKernelClient`` (shell channel only) for ``kernel_id``."""
        from jupyter_client import BlockingKernelClient

        kc = self._clients.get(kernel_id)
        if kc is not None:
            return kc
        cf = self.runtime_dir / f"kernel-{kernel_id}.json"
        deadline = time.monotonic() + 30
        while not cf.exists():
            if time.monotonic() > deadline:
                raise FileNotFoundError(cf)
            time.sleep(0.05)
        kc = BlockingKernelClient()
        kc.load_connection_file(str(cf))
        kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
        self._clients[kernel_id] = kc
        return kc

    def drop_client(self, kernel_id: str) -> None:
        kc = self._clients.pop(kernel_id, None)
        if kc is not None:
            try:
                kc.stop_channels()
            except Exception:
                pass

    def shutdown_sessions(self) -> None:
        """Delete every session (and so its kernel); closes cached kernel clients."""
        for kid in list(self._clients):
            self.drop_client(kid)
        try:
            for s in self.sessions():
                try:
                    self.api("DELETE", f"/api/sessions/{s['id']}")
                except Exception:
                    pass
        except Exception:
            pass
        self.last_notebook = None

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def isolated_env(base: Path) -> tuple[dict, dict[str, Path]]:
    """Environment for a Jupyter server (and its kernels) isolated under ``base``: its own
    config/data/runtime/IPython dirs, this venv first on PATH, the repo first on PYTHONPATH.
    Returns ``(env, dirs)`` with ``dirs`` keyed config/data/runtime/root/ipython."""
    dirs = {d: base / d for d in ("config", "data", "runtime", "root", "ipython")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    repo_root = Path(__file__).resolve().parents[2]
    env = dict(os.environ)
    env.update(
        JUPYTER_CONFIG_DIR=str(dirs["config"]),
        JUPYTER_DATA_DIR=str(dirs["data"]),
        JUPYTER_RUNTIME_DIR=str(dirs["runtime"]),
        JUPYTER_PLATFORM_DIRS="1",
        IPYTHONDIR=str(dirs["ipython"]),
        PYDEVD_DISABLE_FILE_VALIDATION="1",
        MPLBACKEND="Agg",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=os.pathsep.join(p for p in [str(repo_root), env.get("PYTHONPATH", "")] if p),
    )
    env.pop("JUPYTER_PATH", None)
    env.pop("JUPYTERLAB_SETTINGS_DIR", None)
    env.pop("JUPYTERLAB_WORKSPACES_DIR", None)
    return env, dirs


def start_jupyter_lab(base: Path, log_path: Path, extra_env: dict | None = None, attempts: int = 3,
                      startup_timeout: float = 120.0, app: str = "jupyterlab") -> JupyterServer:
    """Start ``jupyter lab`` isolated under ``base``; wait until ``/api/status`` answers.

    ``app="notebook"`` starts Jupyter Notebook 7 instead (same server, same config; its
    ``window.jupyterapp`` is exposed too, notebooks open at ``/notebooks/<path>``).

    Uses this interpreter (``sys.executable -m jupyterlab``) so that the default
    ``python3`` kernelspec of ``sys.prefix`` (argv ``python``, which
    jupyter_client replaces with the server's ``sys.executable``) runs the venv.
    """
    if app not in ("jupyterlab", "notebook"):
        raise ValueError(f"app must be 'jupyterlab' or 'notebook', not {app!r}")
    env, dirs = isolated_env(base)
    cfg, runtime, root = dirs["config"], dirs["runtime"], dirs["root"]
    config = {
        "ServerApp": {
            "allow_root": True,
            "ip": "127.0.0.1",
            "token": "",
            "password": "",
            "disable_check_xsrf": True,
            "root_dir": str(root),
            "open_browser": False,
            "terminals_enabled": False,
            "jpserver_extensions": {"jupyter_lsp": False},
        },
        "IdentityProvider": {"token": ""},
        "LabApp": {
            "expose_app_in_browser": True,
            "extension_manager": "readonly",
            "news_url": None,
            "check_for_updates_class": "jupyterlab.NeverCheckForUpdate",
        },
    }
    config["JupyterNotebookApp"] = {"expose_app_in_browser": True}
    for name in ("jupyter_server_config.json", "jupyter_lab_config.json", "jupyter_notebook_config.json"):
        (cfg / name).write_text(json.dumps(config, indent=2))
    write_lab_overrides()
    env.update(extra_env or {})

    last_err = ""
    for attempt in range(attempts):
        port = free_port()
        log = open(log_path, "ab")
        log.write(f"\n===== attempt {attempt + 1}: port {port} =====\n".encode())
        log.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", app, "--no-browser", f"--port={port}", "--port-retries=0"],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: teardown can reap orphaned kernels too
        )
        log.close()
        server = JupyterServer(proc=proc, port=port, root_dir=root, runtime_dir=runtime,
                               log_path=log_path, env=env)
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last_err = f"{app} exited with {proc.returncode}"
                break
            try:
                server.api("GET", "/api/status", timeout=5)
                return server
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                time.sleep(0.2)
        else:
            last_err = f"{app} not ready after {startup_timeout}s"
        stop_jupyter_lab(server)
    raise RuntimeError(f"{last_err}\n--- {log_path} ---\n" + "\n".join(
        log_path.read_text(errors="replace").splitlines()[-60:]))


def stop_jupyter_lab(server: "JupyterServer | VoilaServer", timeout: float = 15) -> None:
    """Shut down sessions, SIGTERM the server, then SIGKILL whatever is left of its process group.

    Also stops a :class:`VoilaServer`."""
    if server.proc.poll() is None:
        server.shutdown_sessions()
    proc = server.proc
    try:
        pgid = os.getpgid(proc.pid)
    except ProcessLookupError:
        pgid = None
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    if pgid is not None:
        try:
            os.killpg(pgid, signal.SIGKILL)  # only our own group (start_new_session=True)
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class VoilaServer:
    """A running ``voila`` serving ``root_dir`` (see :func:`start_voila`)."""

    proc: subprocess.Popen = field(repr=False)
    port: int
    root_dir: Path
    connection_root: Path = field(repr=False)  # voila keeps kernel-<id>.json under voila_*/ here
    log_path: Path = field(repr=False)
    env: dict = field(repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def render_url(self, path: str) -> str:
        """The page that runs and shows notebook ``path`` (relative to ``root_dir``)."""
        return f"{self.base_url}/voila/render/{path}"

    def connection_file(self, kernel_id: str, timeout: float = 30) -> Path:
        """The connection file of kernel ``kernel_id`` (waits for it to appear)."""
        deadline = time.monotonic() + timeout
        while True:
            found = sorted(self.connection_root.glob(f"*/kernel-{kernel_id}.json"))
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise FileNotFoundError(f"no kernel-{kernel_id}.json under {self.connection_root}")
            time.sleep(0.05)

    def shutdown_sessions(self) -> None:
        """Nothing to do: voila ends a page's kernel itself (and all of them when it stops)."""

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def start_voila(base: Path, log_path: Path, attempts: int = 3, startup_timeout: float = 120.0) -> VoilaServer:
    """Start ``voila`` (no token, 127.0.0.1:<free port>) serving the folder ``<base>/root``,
    isolated like :func:`start_jupyter_lab`; wait until its tree page answers.

    Widget front-end code comes from the installed lab extensions (``/voila/labextensions``,
    no CDN). Kernel connection files go under ``<base>/runtime`` (one ``voila_*`` folder).
    """
    env, dirs = isolated_env(base)
    last_err = ""
    for attempt in range(attempts):
        port = free_port()
        with open(log_path, "ab") as log:
            log.write(f"\n===== attempt {attempt + 1}: port {port} =====\n".encode())
            proc = subprocess.Popen(
                [sys.executable, "-m", "voila", "--no-browser", f"--port={port}", "--Voila.port_retries=0",
                 "--Voila.ip=127.0.0.1", "--token=", "--show_tracebacks=True",
                 f"--Voila.root_dir={dirs['root']}", f"--Voila.connection_dir_root={dirs['runtime']}"],
                cwd=dirs["root"], env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        server = VoilaServer(proc=proc, port=port, root_dir=dirs["root"], connection_root=dirs["runtime"],
                             log_path=log_path, env=env)
        deadline = time.monotonic() + startup_timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                last_err = f"voila exited with {proc.returncode}"
                break
            try:
                with urllib.request.urlopen(server.base_url + "/", timeout=5) as r:
                    if r.status == 200:
                        return server
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                pass
            time.sleep(0.2)
        else:
            last_err = f"voila not ready after {startup_timeout}s"
        stop_jupyter_lab(server)
    raise RuntimeError(f"{last_err}\n--- {log_path} ---\n" + "\n".join(
        log_path.read_text(errors="replace").splitlines()[-60:]))


# --------------------------------------------------------------------------
# Kernel access (a second client on the notebook's kernel)
# --------------------------------------------------------------------------


class KernelConnection:
    """A kernel reached through its connection file (e.g. a Voila page's kernel), usable as
    the ``target`` of :func:`kernel_eval`, :func:`kernel_exec` and :func:`wait_for_kernel`."""

    def __init__(self, connection_file: str | os.PathLike):
        self.connection_file = Path(connection_file)
        self._kc = None

    def kernel_client(self):
        """A connected ``BlockingKernelClient`` (shell channel only), made once."""
        if self._kc is None:
            from jupyter_client import BlockingKernelClient

            kc = BlockingKernelClient()
            kc.load_connection_file(str(self.connection_file))
            kc.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
            self._kc = kc
        return self._kc

    def close(self) -> None:
        if self._kc is not None:
            try:
                self._kc.stop_channels()
            finally:
                self._kc = None

    def eval(self, expr: str, **kw) -> Any:
        return kernel_eval(self, expr, **kw)

    def exec(self, code: str, **kw) -> None:
        kernel_exec(self, code, **kw)

    def wait_for(self, predicate_expr: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
        return wait_for_kernel(self, predicate_expr, timeout)

_JSON_WRAP = (
    "__import__('json').dumps(({expr}), default=lambda o: o.tolist() if hasattr(o, 'tolist') "
    "else (list(o) if isinstance(o, (set, frozenset)) else repr(o)))"
)


def _client(target):
    """The BlockingKernelClient for a NotebookHandle, a JupyterServer (its last notebook's
    kernel) or anything with a ``kernel_client()`` method (:class:`KernelConnection`)."""
    if isinstance(target, NotebookHandle):
        return target.server.client(target.kernel_id)
    if isinstance(target, JupyterServer):
        return target.client(target.kernel_id_for())
    if hasattr(target, "kernel_client"):
        return target.kernel_client()
    raise TypeError(f"expected NotebookHandle, JupyterServer or KernelConnection, got {type(target)!r}")


def kernel_eval(target, expr: str, *, timeout: float = 30.0, raw: bool = False) -> Any:
    """Evaluate ``expr`` in the notebook's kernel and return it as a Python value.

    ``target`` is a NotebookHandle, or the JupyterServer (then the last opened
    notebook's kernel). Uses ``user_expressions`` on a silent execute request,
    so it runs on the kernel's main thread *after* any queued comm messages.
    The value is JSON-encoded in the kernel (numpy -> ``tolist()``, sets ->
    lists, tuples -> lists, anything else -> ``repr``) unless ``raw=True``
    (then the ``repr`` text is parsed with ``ast.literal_eval`` if possible,
    else returned as a string). Raises KernelEvalError if ``expr`` raises.
    """
    kc = _client(target)
    code = expr if raw else _JSON_WRAP.format(expr=expr)
    msg_id = kc.execute("", silent=True, store_history=False, user_expressions={"v": code})
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"kernel did not answer {expr!r} within {timeout}s")
        try:
            reply = kc.get_shell_msg(timeout=remaining)
        except Exception as e:  # queue.Empty
            raise TimeoutError(f"kernel did not answer {expr!r} within {timeout}s") from e
        if reply.get("parent_header", {}).get("msg_id") == msg_id:
            break
    content = reply["content"]
    if content.get("status") != "ok":
        raise KernelEvalError(f"execute failed: {content.get('ename')}: {content.get('evalue')}")
    res = content["user_expressions"]["v"]
    if res.get("status") != "ok":
        raise KernelEvalError(f"{expr!r} raised {res.get('ename')}: {res.get('evalue')}")
    text = res["data"]["text/plain"]
    if raw:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return text
    return json.loads(ast.literal_eval(text))


def kernel_exec(target, code: str, *, timeout: float = 30.0) -> None:
    """Execute statements ``code`` silently in the notebook's kernel (no output captured)."""
    kc = _client(target)
    msg_id = kc.execute(code, silent=True, store_history=False)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"kernel did not finish {code!r} within {timeout}s")
        reply = kc.get_shell_msg(timeout=remaining)
        if reply.get("parent_header", {}).get("msg_id") == msg_id:
            break
    content = reply["content"]
    if content.get("status") != "ok":
        raise KernelEvalError(f"{content.get('ename')}: {content.get('evalue')}")


def wait_for_kernel(target, predicate_expr: str, timeout: float = DEFAULT_TIMEOUT,
                    interval: float = 0.01) -> Any:
    """Poll ``predicate_expr`` in the kernel until it is truthy; return its (truthy) value.

    Raises TimeoutError showing the last value (or exception) seen.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = kernel_eval(target, predicate_expr, timeout=max(1.0, deadline - time.monotonic()))
            if last:
                return last
        except KernelEvalError as e:
            last = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"{predicate_expr!r} not truthy after {timeout}s; last: {last!r}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# Notebooks in the page
# --------------------------------------------------------------------------

# JS helper: the NotebookPanel for a path (not just currentWidget).
_FIND_PANEL = """
(path) => {
  const app = window.jupyterapp;
  if (!app || !app.shell) return null;
  for (const w of app.shell.widgets('main')) {
    if (w.context && w.context.path === path && w.content && w.sessionContext) return w;
  }
  return null;
}
"""

_KERNEL_IDLE_JS = f"""
(path) => {{
  const w = ({_FIND_PANEL})(path);
  if (!w || !w.context.isReady || !w.sessionContext.isReady) return false;
  const k = w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && k.connectionStatus === 'connected';
}}
"""

# Starts "run all" and returns at once; window.__samRunAll[token] becomes true/false
# (NotebookActions.runAll's result: false if a cell failed) or "error: ...".
_RUN_ALL_JS = f"""
([path, token]) => {{
  const app = window.jupyterapp;
  const w = ({_FIND_PANEL})(path);
  app.shell.activateById(w.id);
  const done = window.__samRunAll = window.__samRunAll || {{}};
  done[token] = null;
  app.commands.execute('notebook:run-all-cells').then(
    r => {{ done[token] = r === undefined ? true : r; }},
    e => {{ done[token] = 'error: ' + e; }});
}}
"""

_ERRORS_JS = f"""
(path) => {{
  const w = ({_FIND_PANEL})(path);
  const cells = w.content.model.cells, errs = [];
  for (let i = 0; i < cells.length; i++) {{
    const c = cells.get(i);
    if (c.type !== 'code') continue;
    for (const o of c.outputs.toJSON())
      if (o.output_type === 'error') errs.push({{cell: i, ename: o.ename, evalue: o.evalue,
                                                traceback: (o.traceback || []).join('\\n')}});
  }}
  return errs;
}}
"""

_EXEC_COUNTS_JS = f"""
(path) => {{
  const w = ({_FIND_PANEL})(path);
  const cells = w.content.model.cells, out = [];
  for (let i = 0; i < cells.length; i++) {{
    const c = cells.get(i);
    if (c.type === 'code') out.push(c.executionCount);
  }}
  return out;
}}
"""


@dataclass
class NotebookHandle:
    """A notebook open in ``page`` whose kernel is a session of ``server``."""

    page: Any = field(repr=False)  # playwright.sync_api.Page
    server: JupyterServer = field(repr=False)
    path: str  # relative to server.root_dir
    cells: list[str] = field(repr=False)
    _kernel_id: str | None = None
    collapse_left: bool = field(default=True, repr=False)

    @property
    def kernel_id(self) -> str:
        """Kernel id of this notebook's session (cached; see ``refresh_kernel``)."""
        if self._kernel_id is None:
            self._kernel_id = self.server.kernel_id_for(self.path)
        return self._kernel_id

    def refresh_kernel(self) -> str:
        """Forget the cached kernel id/client (after a kernel restart or change)."""
        if self._kernel_id is not None:
            self.server.drop_client(self._kernel_id)
        self._kernel_id = None
        return self.kernel_id

    def wait_kernel_idle(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        """Wait until the page shows this notebook with a connected, idle kernel."""
        self.page.wait_for_function(_KERNEL_IDLE_JS, arg=self.path, timeout=timeout * 1000)

    def run_all(self, timeout: float = RUN_TIMEOUT, check: bool = True,
                wait_for_selector: str | None = None) -> None:
        """Run all cells from the UI (``notebook:run-all-cells``) and wait until they finished.

        ``check``: raise NotebookError with the traceback if a cell errored.
        ``wait_for_selector``: then also wait until that selector is visible.
        """
        deadline = time.monotonic() + timeout
        self.wait_kernel_idle(timeout)
        token = f"run{time.monotonic_ns()}"
        self.page.evaluate(_RUN_ALL_JS, [self.path, token])
        # The command's promise resolves after the last execute_reply (or the
        # first error); then every executed code cell has an execution count.
        while True:
            done = self.page.evaluate("(t) => (window.__samRunAll || {})[t]", token)
            counts = self.page.evaluate(_EXEC_COUNTS_JS, self.path)
            errs = self.errors()
            if isinstance(done, str):
                raise NotebookError(f"notebook:run-all-cells failed: {done}")
            if done is not None and (errs or all(c is not None for c in counts)):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"cells did not finish within {timeout}s: execution counts {counts}"
                                   f" (None = not run yet / running)")
            time.sleep(0.05)
        if check and errs:
            e = errs[0]
            raise NotebookError(f"cell {e['cell']} raised {e['ename']}: {e['evalue']}\n"
                                + ANSI_RE.sub("", e["traceback"]))
        self.wait_kernel_idle(timeout)
        if wait_for_selector:
            self.page.locator(wait_for_selector).first.wait_for(state="visible", timeout=timeout * 1000)

    def cell_count(self) -> int:
        """Number of cells in the notebook model (e.g. to check keys did not reach JupyterLab)."""
        return self.page.evaluate(f"(p) => ({_FIND_PANEL})(p).content.model.cells.length", self.path)

    def errors(self) -> list[dict]:
        """Error outputs currently in the notebook: ``[{cell, ename, evalue, traceback}]``."""
        return self.page.evaluate(_ERRORS_JS, self.path)

    def reload(self, timeout: float = DEFAULT_TIMEOUT, save: bool = False) -> None:
        """Reload the browser page (same kernel/session); wait for the notebook + idle kernel.

        ``save=True`` saves the notebook first, so its widget outputs come back
        after the reload (rendered from the live kernel's widget models).
        """
        if save:
            self.page.evaluate("async () => await window.jupyterapp.commands.execute('docmanager:save')")
        self.page.reload(wait_until="domcontentloaded")
        self._wait_open(timeout)

    def _wait_open(self, timeout: float) -> None:
        self.page.wait_for_function(
            "() => !!(window.jupyterapp && window.jupyterapp.shell)", timeout=timeout * 1000)
        self.page.wait_for_function(f"(p) => !!({_FIND_PANEL})(p)", arg=self.path, timeout=timeout * 1000)
        if self.collapse_left:  # more room for outputs; no file browser in screenshots
            self.page.evaluate("() => { const s = window.jupyterapp.shell; if (s.collapseLeft) s.collapseLeft(); }")
        self.wait_kernel_idle(timeout)

    def eval(self, expr: str, **kw) -> Any:
        """``kernel_eval(self, expr)``."""
        return kernel_eval(self, expr, **kw)

    def exec(self, code: str, **kw) -> None:
        """``kernel_exec(self, code)``."""
        kernel_exec(self, code, **kw)

    def wait_for(self, predicate_expr: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
        """``wait_for_kernel(self, predicate_expr, timeout)``."""
        return wait_for_kernel(self, predicate_expr, timeout)

    def canvas(self, index: int = 0):
        """Locator of the ``index``-th <canvas> inside the notebook's outputs."""
        return self.page.locator(".jp-OutputArea-output canvas").nth(index)


def write_notebook(server: JupyterServer, cells: Sequence[str], name: str) -> str:
    """Write ``cells`` (code sources) as ``<root_dir>/<name>`` with a python3 kernelspec; return the path."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src) for src in cells]
    if not name.endswith(".ipynb"):
        name += ".ipynb"
    dest = server.root_dir / name
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dest))
    return name


def open_notebook(page, server: JupyterServer, cells: Sequence[str], name: str, *,
                  run: bool = True, timeout: float = DEFAULT_TIMEOUT, run_timeout: float = RUN_TIMEOUT,
                  wait_for_selector: str | None = None, collapse_left: bool = True,
                  url: str = "/lab/tree/{path}?reset") -> NotebookHandle:
    """Write a notebook with ``cells``, open it in lab (``?reset`` workspace), wait for an idle
    kernel, and (``run=True``) run all cells, raising NotebookError if one fails.

    ``timeout``: page load / kernel start; ``run_timeout``: running all cells.
    ``wait_for_selector``: after running, wait until it is visible (e.g.
    ``".jp-OutputArea-output canvas"``). ``collapse_left``: hide the file browser.
    ``url``: the page, ``{path}`` filled in; ``"/notebooks/{path}"`` for Notebook 7.
    """
    path = write_notebook(server, cells, name)
    page.goto(server.base_url + url.format(path=path), wait_until="domcontentloaded",
              timeout=timeout * 1000)
    nb = NotebookHandle(page=page, server=server, path=path, cells=list(cells),
                        collapse_left=collapse_left)
    nb._wait_open(timeout)
    server.last_notebook = path
    if run:
        nb.run_all(timeout=run_timeout, wait_for_selector=wait_for_selector)
    return nb


# --------------------------------------------------------------------------
# Canvas interaction
# --------------------------------------------------------------------------


def _canvas_size(locator) -> tuple[int, int]:
    return tuple(locator.evaluate("el => [el.width, el.height]"))


def canvas_point(page, locator, x: float, y: float, image_w: float | None = None,
                 image_h: float | None = None, *, snap: bool = True,
                 scroll: bool = True) -> tuple[float, float]:
    """Page (CSS px) coordinates that hit image pixel ``(x, y)``.

    The image grid ``image_w x image_h`` (default: the canvas' own width/height
    attributes) is assumed to span the canvas' bounding box.

    Chromium truncates MouseEvent.clientX/Y to whole CSS px, and JupyterLab
    often places the canvas at a fractional offset (e.g. top = 706.3125). So
    with ``snap=True`` (default) the result is the *integer* page point nearest
    to the pixel centre that still lies inside the pixel's CSS interval; then
    ipycanvas' ``on_mouse_down`` coordinates floor to exactly ``(x, y)`` when the
    canvas is shown at >= 1 CSS px per image pixel (smaller: nearest possible).
    ``snap=False``: the exact (fractional) centre of the pixel.
    """
    if scroll:
        locator.scroll_into_view_if_needed()
    if image_w is None or image_h is None:
        cw, ch = _canvas_size(locator)
        image_w = image_w or cw
        image_h = image_h or ch
    box = locator.bounding_box()
    if box is None:
        raise RuntimeError("canvas is not visible (no bounding box)")

    def one(origin: float, size: float, n: float, v: float) -> float:
        s = size / n  # CSS px per image pixel
        lo, hi = origin + v * s, origin + (v + 1) * s  # the pixel covers [lo, hi)
        centre = (lo + hi) / 2
        if not snap:
            return centre
        cands = [c for c in (math.floor(centre), math.ceil(centre), math.ceil(lo)) if lo <= c < hi]
        return float(min(cands, key=lambda c: abs(c - centre)) if cands else round(centre))

    return one(box["x"], box["width"], image_w, x), one(box["y"], box["height"], image_h, y)


class _held_modifiers:
    def __init__(self, page, modifiers: Iterable[str]):
        self.page, self.mods = page, list(modifiers or [])

    def __enter__(self):
        for m in self.mods:
            self.page.keyboard.down(m)

    def __exit__(self, *exc):
        for m in reversed(self.mods):
            self.page.keyboard.up(m)


def canvas_click(page, locator, x: float, y: float, image_w: float | None = None,
                 image_h: float | None = None, button: str = "left",
                 modifiers: Sequence[str] = (), *, hover_first: bool = True) -> tuple[float, float]:
    """Click image pixel ``(x, y)`` on the canvas (see ``canvas_point``); return the page point clicked.

    ``button``: "left" | "right" | "middle". ``modifiers``: e.g. ["Shift"],
    ["Control"], ["Alt"], ["Meta"] — held with keyboard.down/up around the
    click (Playwright then sets shiftKey etc. on the mouse events). NB: with
    ipyevents watching 'keydown', the modifier keydown itself is also reported
    if the pointer is already over the element (ipyevents'
    ``ignore_modifier_key_events=True`` suppresses that).
    ``hover_first``: move the pointer onto the point first, so mouseenter-based
    listeners (ipyevents key handling) are active before the modifiers go down.
    """
    px, py = canvas_point(page, locator, x, y, image_w, image_h)
    if hover_first:
        page.mouse.move(px, py)
    with _held_modifiers(page, modifiers):
        page.mouse.click(px, py, button=button)
    return px, py


def canvas_drag(page, locator, x0: float, y0: float, x1: float, y1: float,
                image_w: float | None = None, image_h: float | None = None, *,
                button: str = "left", modifiers: Sequence[str] = (), steps: int = 10) -> None:
    """Press at image pixel ``(x0, y0)``, move in ``steps`` to ``(x1, y1)``, release."""
    ax, ay = canvas_point(page, locator, x0, y0, image_w, image_h)
    bx, by = canvas_point(page, locator, x1, y1, image_w, image_h, scroll=False)
    page.mouse.move(ax, ay)
    with _held_modifiers(page, modifiers):
        page.mouse.down(button=button)
        page.mouse.move(bx, by, steps=steps)
        page.mouse.up(button=button)


def canvas_hover(page, locator, x: float, y: float, image_w: float | None = None,
                 image_h: float | None = None) -> None:
    """Move the pointer over image pixel ``(x, y)`` (e.g. before ``page.keyboard.press``)."""
    page.mouse.move(*canvas_point(page, locator, x, y, image_w, image_h))


_PIXELS_JS = """
(el, [x, y, w, h]) => {
  const d = el.getContext('2d').getImageData(x, y, w, h).data;
  let s = '';
  for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode.apply(null, d.subarray(i, i + 0x8000));
  return btoa(s);
}
"""


def canvas_pixels(page, locator, x: int = 0, y: int = 0, w: int | None = None, h: int | None = None):
    """RGBA pixels of the canvas' backing store as a ``(h, w, 4)`` uint8 numpy array.

    Coordinates are canvas pixels (not CSS px). Default: the whole canvas.
    """
    import numpy as np

    if w is None or h is None:
        cw, ch = _canvas_size(locator)
        w = cw - x if w is None else w
        h = ch - y if h is None else h
    b64 = locator.evaluate(_PIXELS_JS, [int(x), int(y), int(w), int(h)])
    return np.frombuffer(base64.b64decode(b64), dtype=np.uint8).reshape(int(h), int(w), 4)


def wait_for_canvas_change(page, locator, x: int, y: int, before, timeout: float = DEFAULT_TIMEOUT):
    """Wait until pixel ``(x, y)`` differs from RGBA ``before``; return the new RGBA tuple."""
    handle = locator.element_handle()
    page.wait_for_function(
        "([el, x, y, b]) => { const d = el.getContext('2d').getImageData(x, y, 1, 1).data;"
        " return d[0] !== b[0] || d[1] !== b[1] || d[2] !== b[2] || d[3] !== b[3]; }",
        arg=[handle, int(x), int(y), [int(v) for v in before]], timeout=timeout * 1000, polling="raf")
    return tuple(int(v) for v in canvas_pixels(page, locator, x, y, 1, 1)[0, 0])


def wait_for_canvas_pixel(page, locator, x: int, y: int, rgba, timeout: float = DEFAULT_TIMEOUT,
                          tol: int = 0) -> tuple:
    """Wait until canvas pixel ``(x, y)`` equals RGBA ``rgba`` (each channel within ``tol``)."""
    handle = locator.element_handle()
    try:
        page.wait_for_function(
            "([el, x, y, c, tol]) => { const d = el.getContext('2d').getImageData(x, y, 1, 1).data;"
            " for (let i = 0; i < 4; i++) if (Math.abs(d[i] - c[i]) > tol) return false; return true; }",
            arg=[handle, int(x), int(y), [int(v) for v in rgba], int(tol)], timeout=timeout * 1000,
            polling="raf")
    except Exception as e:
        now = tuple(int(v) for v in canvas_pixels(page, locator, x, y, 1, 1)[0, 0])
        raise AssertionError(f"pixel ({x}, {y}) is {now}, expected {tuple(rgba)}") from e
    return tuple(int(v) for v in rgba)


def screenshot(page, path: str | os.PathLike, full_page: bool = True) -> Path:
    """Save a PNG screenshot of ``page`` to ``path`` (parents created); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=full_page)
    return path


def poll(fn: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, interval: float = 0.05) -> Any:
    """Call ``fn`` until it returns something truthy; TimeoutError otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met after {timeout}s; last: {v!r}")
        time.sleep(interval)
