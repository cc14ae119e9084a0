"""Recording every message ipycanvas sends: :class:`RecordingComm` (re-exported by :mod:`sam_widget.testing`)."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .commands import DrawCommand, decode_commands, model_id

@dataclass
class RecordedMessage:
    """One message handed to the comm.

    ``t``: ``time.perf_counter()`` when ``send`` was called (before anything was copied);
    ``data``: the JSON part; ``buffers``: the binary buffers' bytes; ``commands``: decoded
    (each command's canvas as a front end connected since :meth:`RecordingComm.install` sees it);
    ``thread``: name of the thread that sent it.
    """

    index: int
    t: float
    data: Any
    buffers: list[bytes]
    commands: list[DrawCommand]
    thread: str

    @property
    def nbytes(self) -> int:
        """Bytes on the wire for this message: JSON part plus binary buffers."""
        return len(json.dumps(self.data, separators=(",", ":")).encode()) + sum(len(b) for b in self.buffers)

    def touches(self, canvas: Any, name: str | None = None) -> bool:
        """Whether this message draws on ``canvas`` (a layer or its model id), optionally with command ``name``."""
        cid = model_id(canvas)
        return any(c.canvas == cid and c.name != "switchCanvas" and (name is None or c.name == name) for c in self.commands)


class RecordingComm:
    """A comm that records every message instead of sending it; install it on ipycanvas' canvas manager.

    ``RecordingComm.install()`` swaps it in (keeping the manager's comm id) and returns it;
    :meth:`uninstall` (or leaving the ``with`` block) puts the original comm back.
    Thread-safe: widgets draw from worker threads.
    """

    kernel = "recording"  # ipywidgets only sends through comms whose ``kernel`` is set

    def __init__(self, comm_id: str | None = None) -> None:
        self.comm_id = comm_id or uuid.uuid4().hex
        self.messages: list[RecordedMessage] = []
        self._cond = threading.Condition()
        self._canvas: str | None = None
        self._callbacks: list[Callable] = []
        self._manager: Any = None
        self._original: Any = None

    # ---------------------------------------------------------------- comm protocol
    def send(self, data: Any = None, metadata: Any = None, buffers: Iterable[Any] | None = None) -> None:
        t = time.perf_counter()
        bufs = [bytes(b) for b in (buffers or [])]
        with self._cond:
            index = len(self.messages)
            try:
                cmds, self._canvas = decode_commands(bufs, self._canvas, index)
            except (ValueError, TypeError, IndexError, KeyError):
                cmds = []
            self.messages.append(RecordedMessage(index, t, data, bufs, cmds, threading.current_thread().name))
            self._cond.notify_all()

    def on_msg(self, callback: Callable) -> None:
        self._callbacks.append(callback)

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass

    def handle_msg(self, msg: dict) -> None:
        """Deliver a front-end message to the manager (as the kernel would)."""
        for cb in self._callbacks:
            cb(msg)

    # ---------------------------------------------------------------- install
    @classmethod
    def install(cls, manager: Any = None) -> "RecordingComm":
        """Put a new recorder on ``manager`` (default: ipycanvas' ``_CANVAS_MANAGER``)."""
        if manager is None:
            import ipycanvas.canvas

            manager = ipycanvas.canvas._CANVAS_MANAGER
        original = manager.comm
        rec = cls(getattr(original, "comm_id", None))
        rec._manager, rec._original = manager, original
        manager._current_canvas = None  # so the next drawing names its canvas explicitly
        manager.comm = rec
        return rec

    def uninstall(self) -> None:
        """Give the manager its original comm back (no-op if not installed)."""
        m, self._manager = self._manager, None
        if m is not None and m.comm is self:
            if self._original is not None:
                m.comm = self._original
            m._current_canvas = None

    def __enter__(self) -> "RecordingComm":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.uninstall()

    # ---------------------------------------------------------------- queries
    def mark(self) -> int:
        """Index of the next message (pass as ``start`` to look only at later messages)."""
        with self._cond:
            return len(self.messages)

    def clear(self) -> None:
        with self._cond:
            self.messages.clear()

    def since(self, start: int = 0) -> list[RecordedMessage]:
        with self._cond:
            return list(self.messages[start:])

    def commands(self, name: str | None = None, canvas: Any = None, start: int = 0) -> list[DrawCommand]:
        """Every drawing command from message ``start`` on, filtered by name and canvas (a layer or model id).

        Decoded as a page that connected at message ``start`` sees them: commands sent before
        the first ``switchCanvas`` from ``start`` on have ``canvas=None``. ``switchCanvas``
        commands themselves are left out unless ``name="switchCanvas"``.
        """
        cid = model_id(canvas)
        out: list[DrawCommand] = []
        switched = False
        for m in self.since(start):
            for c in m.commands:
                if c.name == "switchCanvas":
                    switched = True
                    if name != "switchCanvas":
                        continue
                elif not switched and c.canvas is not None:
                    c = dataclasses.replace(c, canvas=None)
                if (name is None or c.name == name) and (canvas is None or c.canvas == cid):
                    out.append(c)
        return out

    def find(self, predicate: Callable[[RecordedMessage], bool], start: int = 0) -> RecordedMessage | None:
        """The first message from ``start`` on for which ``predicate`` is true, or None."""
        for m in self.since(start):
            if predicate(m):
                return m
        return None

    def wait_for(
        self, predicate: Callable[[RecordedMessage], bool], timeout: float = 60.0, start: int = 0
    ) -> RecordedMessage:
        """Block until a message from ``start`` on satisfies ``predicate``; ``TimeoutError`` otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            i = start
            while True:
                while i < len(self.messages):
                    if predicate(self.messages[i]):
                        return self.messages[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching canvas message within {timeout} s ({len(self.messages)} recorded).")
                self._cond.wait(left)

    @property
    def total_bytes(self) -> int:
        return sum(m.nbytes for m in self.since())
