"""The widget's state: prompts, candidate choice and committed objects, with undo/redo.

No widgets and no torch here. A :class:`Snapshot` is immutable except for its
:class:`PredictionSlot`, which the engine fills in once the prompt has been answered (the
same slot is shared by snapshots with the same prompts, e.g. after choosing another
candidate). Undo/redo swap whole snapshots, so they restore exactly the earlier masks.

Coordinates are image pixels: points ``(x, y)`` = (column, row); boxes XYXY.
"""

from __future__ import annotations

import colorsys
import threading
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

__all__ = ["Prompts", "ObjectRecord", "PredictionSlot", "Snapshot", "History", "object_color"]


@dataclass(frozen=True)
class Prompts:
    """Current prompts in image pixels.

    ``points``: tuple of ``(x, y)``; ``labels``: tuple of 1 (foreground) / 0 (background),
    one per point; ``box``: ``(x0, y0, x1, y1)`` with x0 <= x1, y0 <= y1, or ``None``.
    """

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None

    @property
    def is_empty(self) -> bool:
        return not self.points and self.box is None

    def with_point(self, x: float, y: float, label: int) -> "Prompts":
        return replace(self, points=self.points + ((float(x), float(y)),), labels=self.labels + (int(label),))

    def with_box(self, box: tuple[float, float, float, float] | None) -> "Prompts":
        return replace(self, box=None if box is None else tuple(float(v) for v in box))

    def as_arrays(self) -> dict[str, Any]:
        """Keyword arguments for ``Segmenter.predict``: ``points`` (N, 2), ``labels`` (N,), ``box`` (4,)."""
        return {
            "points": np.array(self.points, dtype=np.float64) if self.points else None,
            "labels": np.array(self.labels, dtype=np.int64) if self.points else None,
            "box": np.array(self.box, dtype=np.float64) if self.box is not None else None,
        }


class PredictionSlot:
    """Where the engine's answer for one set of prompts lands (filled once, by any thread).

    ``prediction``: the ``Prediction``; ``mask_input``: the ``(1, h, w)`` logits used as
    the mask prompt (refinement), or ``None``; ``multimask``: whether 3 candidates were
    asked for; ``error``: a message if the engine failed. ``base`` is ``(slot, selected)``
    of the step this one refines (``selected`` None = that step's best candidate).
    """

    def __init__(self, base: "tuple[PredictionSlot, int | None] | None" = None) -> None:
        self.base = base
        self.prediction: Any | None = None
        self.mask_input: np.ndarray | None = None
        self.multimask: bool = True
        self.error: str | None = None
        self._done = threading.Event()

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def fill(self, prediction: Any, mask_input: np.ndarray | None, multimask: bool) -> None:
        self.prediction, self.mask_input, self.multimask = prediction, mask_input, multimask
        self._done.set()

    def fail(self, message: str) -> None:
        self.error = message
        self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)


@dataclass(frozen=True)
class ObjectRecord:
    """A committed object. ``mask`` is ``(H, W)`` bool at full image size (read-only)."""

    label: str
    color: tuple[int, int, int]
    mask: np.ndarray = field(repr=False)
    score: float
    prompts: Prompts
    id: int

    @cached_property  # the mask never changes; the object list shows this on every redraw
    def area(self) -> int:
        return int(self.mask.sum())

    @cached_property
    def bbox(self) -> tuple[int, int, int, int] | None:
        """``(x0, y0, x1, y1)`` inclusive-exclusive pixel bounds of the mask, or None if empty."""
        rows, cols = np.any(self.mask, axis=1), np.any(self.mask, axis=0)
        if not rows.any():
            return None
        y0, y1 = np.argmax(rows), len(rows) - np.argmax(rows[::-1])
        x0, x1 = np.argmax(cols), len(cols) - np.argmax(cols[::-1])
        return int(x0), int(y0), int(x1), int(y1)


@dataclass(frozen=True)
class Snapshot:
    """One point in the undo history."""

    prompts: Prompts = Prompts()
    slot: PredictionSlot | None = None  # None when there are no prompts
    selected: int | None = None  # None: the best-scoring candidate
    objects: tuple[ObjectRecord, ...] = ()
    next_object_id: int = 1

    @property
    def prediction(self) -> Any | None:
        return self.slot.prediction if self.slot is not None else None


def object_color(index: int) -> tuple[int, int, int]:
    """A distinct, saturated RGB colour for object number ``index`` (0-based), golden-ratio hues."""
    h = (0.08 + index * 0.61803398875) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.75, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


class History:
    """Linear undo/redo over :class:`Snapshot` objects. Thread-safe."""

    def __init__(self, initial: Snapshot | None = None, limit: int = 500) -> None:
        self._undo: list[Snapshot] = []
        self._redo: list[Snapshot] = []
        self._current = initial if initial is not None else Snapshot()
        self._limit = limit
        self.lock = threading.RLock()

    @property
    def current(self) -> Snapshot:
        return self._current

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def push(self, snapshot: Snapshot) -> Snapshot:
        """Make ``snapshot`` current; the old one becomes undoable; the redo stack is dropped."""
        with self.lock:
            self._undo.append(self._current)
            if len(self._undo) > self._limit:
                del self._undo[0]
            self._redo.clear()
            self._current = snapshot
            return snapshot

    def undo(self) -> bool:
        """Step back; returns False (and changes nothing) when there is nothing to undo."""
        with self.lock:
            if not self._undo:
                return False
            self._redo.append(self._current)
            self._current = self._undo.pop()
            return True

    def redo(self) -> bool:
        """Step forward again; returns False (and changes nothing) when there is nothing to redo."""
        with self.lock:
            if not self._redo:
                return False
            self._undo.append(self._current)
            self._current = self._redo.pop()
            return True
