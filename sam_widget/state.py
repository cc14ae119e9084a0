"""One image's annotation state: prompts, candidate choice and committed objects, with undo/redo.

No widgets and no torch here. A :class:`Snapshot` is immutable except for its
:class:`PredictionSlot`, which the engine fills in once the prompt has been answered (the
same slot is shared by snapshots with the same prompts, e.g. after choosing another
candidate). Every user action is a pure transition ``new = snap.<action>(...)`` (built with
``dataclasses.replace``; the old snapshot is unchanged), and :class:`History` keeps the
snapshots, so undo/redo restore exactly the earlier masks. Snapshots share what did not
change: committed masks are never copied from one step to the next.

Coordinates are image pixels: points ``(x, y)`` = (column, row); boxes XYXY.
"""

from __future__ import annotations

import colorsys
import threading
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np

__all__ = [
    "Prompts", "ChainStep", "ObjectRecord", "PredictionSlot", "Snapshot", "History", "EditConflict", "object_color", "provenance_from_record",
]


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
    of the step this one refines (``selected`` None = that step's best candidate);
    ``prompts``: the prompts it answers.

    Set when the engine answers: ``source`` is ``(slot, candidate)`` of the answered step
    whose candidate's low-res logits were this step's ``mask_input`` (None: answered from
    the prompts alone), the provenance of a refinement chain; ``timings`` holds what the
    answer cost (seconds per stage, see :mod:`sam_widget.session.explain`).
    """

    def __init__(self, base: "tuple[PredictionSlot, int | None] | None" = None, prompts: "Prompts | None" = None) -> None:
        self.base = base
        self.prompts = prompts if prompts is not None else Prompts()
        self.prediction: Any | None = None
        self.mask_input: np.ndarray | None = None
        self.multimask: bool = True
        self.error: str | None = None
        self.source: "tuple[PredictionSlot, int] | None" = None
        self.timings: dict[str, Any] = {}
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


class ChainStep(tuple):
    """One earlier step of an object's refinement, the ``(prompts, candidate)`` pair of
    :attr:`ObjectRecord.chain` (it unpacks as one): ``prompts`` were answered by the model and
    candidate ``candidate``'s low-res logits became the next step's ``mask_input``.

    A step with empty prompts stands for a mask the refinement started from (brought in
    with ``add_object`` or a file, or an object whose logits were derived from its mask);
    ``mask`` then holds that ``(H, W)`` bool mask when known (in memory only; session files
    keep the empty step, not the mask). ``points`` / ``labels`` / ``box`` / ``candidate`` are
    the field names of :class:`sam_widget.io.PromptRecord`.
    """

    mask: np.ndarray | None

    def __new__(cls, prompts: Prompts, candidate: int | None = 0, mask: np.ndarray | None = None) -> "ChainStep":
        step = super().__new__(cls, (prompts, candidate))
        step.mask = mask
        return step

    def __getnewargs__(self) -> tuple:
        return tuple(self)

    @property
    def prompts(self) -> Prompts:
        return self[0]

    @property
    def candidate(self) -> int | None:
        return self[1]

    @property
    def points(self) -> tuple[tuple[float, float], ...]:
        return self[0].points

    @property
    def labels(self) -> tuple[int, ...]:
        return self[0].labels

    @property
    def box(self) -> tuple[float, float, float, float] | None:
        return self[0].box

    @property
    def imported(self) -> bool:
        """True for the start of a refinement of a mask brought in (no prompts)."""
        return self[0].is_empty


@dataclass(frozen=True)
class ObjectRecord:
    """A committed object. ``mask`` is ``(H, W)`` bool at full image size (read-only).

    ``score``: the predicted IoU of the committed candidate (NaN for a mask brought in with
    ``add_object``); ``prompts``: the prompts that made it (empty for a mask brought in);
    ``id``: its number on this image (1, 2, ...; never reused, the colour follows it);
    ``logits``: the committed candidate's low-resolution logits ``(1, h, w)`` float32, the
    ``mask_input`` for refining it (None: derived from the mask when needed).
    ``candidate``: which of the model's answers to ``prompts`` was kept (None: unknown, or a
    mask brought in); ``chain``: the earlier steps of its refinement, oldest first, as
    ``(prompts, candidate)`` pairs -- each step was answered by the model and its chosen
    candidate's logits were the ``mask_input`` of the next one (empty: ``prompts`` were
    answered from the prompts alone; a first step with empty prompts: the refinement started
    from a mask, see :class:`ChainStep`). Both go into the session file, so that a loaded
    object's logits can be recomputed exactly. ``threshold``: the logit threshold the mask
    was cut at (None: the model's, 0.0 for SAM). :meth:`to_code` turns them into code.
    """

    label: str
    color: tuple[int, int, int]
    mask: np.ndarray = field(repr=False)
    score: float
    prompts: Prompts
    id: int
    logits: np.ndarray | None = field(default=None, repr=False, compare=False)
    candidate: int | None = field(default=None, compare=False)
    chain: tuple[tuple[Prompts, int | None], ...] = field(default=(), repr=False, compare=False)
    threshold: float | None = field(default=None, compare=False)

    @property
    def imported(self) -> bool:
        """True for a mask brought in (``add_object``, ``set_objects``, a file): no prompts made it."""
        return self.prompts.is_empty and not self.chain

    @property
    def prompt_record(self) -> Any:
        """The prompts with ``candidate`` and ``chain`` as a :class:`sam_widget.io.PromptRecord`
        (what a session file stores, enough to regenerate :meth:`to_code`); None for an
        imported mask."""
        if self.imported:
            return None
        from .io.prompts import coerce_prompts

        return coerce_prompts(
            {
                "points": self.prompts.points, "labels": self.prompts.labels, "box": self.prompts.box,
                "candidate": self.candidate,
                "chain": [{"points": p.points, "labels": p.labels, "box": p.box, "candidate": c} for p, c in self.chain],
            },
            f"object {self.id}",
        )

    @property
    def extra(self) -> dict[str, Any]:
        """What a session file keeps besides the prompts: ``{"threshold": t}`` when the mask was
        cut at a threshold other than the model's (else empty)."""
        return {} if self.threshold is None else {"threshold": float(self.threshold)}

    def to_code(self, predictor: str = "predictor", exact: bool = False) -> str:
        """Python lines that make this object's mask again with a ``segment_anything``
        ``SamPredictor`` named ``predictor`` whose image is already set (the rest of the cell:
        ``SamWidget.to_code()``), ending with an assertion against the saved mask: bit for bit
        with ``exact`` (masks made by ``Segmenter(exact=True)``), else IoU >= 0.99. For a mask
        brought in (no prompts) the lines say so and only decode the saved mask."""
        from .provenance import object_code

        return object_code(self, predictor=predictor, exact=exact)

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
    """One point in the undo history.

    ``selected``: the chosen candidate (None: the best-scoring one); ``editing``: the id of
    the object being refined (its prompts are the current prompts; committing replaces it),
    or None; ``proposals``: the "segment everything" proposals shown over the image and
    which of them were accepted / rejected (a
    :class:`sam_widget.session.everything.ProposalState`), or None. Transitions raise
    ``IndexError`` / ``ValueError`` for a missing object or a bad label and return a new
    snapshot otherwise.
    """

    prompts: Prompts = Prompts()
    slot: PredictionSlot | None = None  # None when there are no prompts
    selected: int | None = None  # None: the best-scoring candidate
    objects: tuple[ObjectRecord, ...] = ()
    next_object_id: int = 1
    editing: int | None = None
    proposals: Any = None

    @property
    def prediction(self) -> Any | None:
        return self.slot.prediction if self.slot is not None else None

    @property
    def editing_index(self) -> int | None:
        """Position in :attr:`objects` of the object being edited, or None."""
        if self.editing is None:
            return None
        return next((i for i, o in enumerate(self.objects) if o.id == self.editing), None)

    # ------------------------------------------------------------------ transitions
    def with_prompts(self, prompts: Prompts, slot: PredictionSlot | None) -> "Snapshot":
        """New prompts, answered into ``slot``; the best candidate will be chosen."""
        return replace(self, prompts=prompts, slot=slot, selected=None)

    def select(self, index: int) -> "Snapshot":
        """Choose candidate ``index`` (checked against the prediction by the caller)."""
        return replace(self, selected=int(index))

    def commit(
        self,
        mask: np.ndarray,
        score: float,
        label: str | None = None,
        logits: np.ndarray | None = None,
        candidate: int | None = None,
        chain: tuple[tuple[Prompts, int | None], ...] = (),
        threshold: float | None = None,
    ) -> "Snapshot":
        """Keep ``mask`` ((H, W) bool, made read-only) as an object and clear the prompts.

        While editing, the edited object is replaced in place (same id, colour and, unless
        ``label`` is given, label); otherwise a new object "object N" is appended.
        ``candidate`` / ``chain`` / ``threshold``: how the mask was made (see
        :class:`ObjectRecord`). Raises ``ValueError`` for an empty mask.
        """
        if not mask.any():
            raise ValueError("the current mask is empty; add prompts until it covers the object.")
        mask.setflags(write=False)
        label = (label or "").strip() or None
        i = self.editing_index
        if i is not None:
            old = self.objects[i]
            new = replace(
                old, label=label or old.label, mask=mask, score=float(score), prompts=self.prompts, logits=logits,
                candidate=candidate, chain=tuple(chain), threshold=threshold,
            )
            objects, next_id = self.objects[:i] + (new,) + self.objects[i + 1 :], self.next_object_id
        else:
            n = self.next_object_id
            new = ObjectRecord(
                label or f"object {n}", object_color(n - 1), mask, float(score), self.prompts, n, logits, candidate, tuple(chain),
                threshold,
            )
            objects, next_id = self.objects + (new,), n + 1
        return replace(self, prompts=Prompts(), slot=None, selected=0, objects=objects, next_object_id=next_id, editing=None)

    def add_objects(self, masks: list[np.ndarray], labels: list[str | None] | None = None) -> "Snapshot":
        """Append one object per ``(H, W)`` bool mask (no prompts, score NaN); prompts are kept."""
        objects, n = list(self.objects), self.next_object_id
        for k, mask in enumerate(masks):
            mask.setflags(write=False)
            label = ((labels[k] if labels else None) or "").strip() or f"object {n}"
            objects.append(ObjectRecord(label, object_color(n - 1), mask, float("nan"), Prompts(), n))
            n += 1
        return replace(self, objects=tuple(objects), next_object_id=n)

    def with_added(self, records: "list[ObjectRecord] | tuple[ObjectRecord, ...]") -> "Snapshot":
        """Append objects made elsewhere (e.g. read from a COCO file), keeping their label, mask,
        score, prompts and provenance; each gets the next id and that id's colour."""
        objects, n = list(self.objects), self.next_object_id
        for rec in records:
            rec.mask.setflags(write=False)
            objects.append(replace(rec, id=n, color=object_color(n - 1)))
            n += 1
        return replace(self, objects=tuple(objects), next_object_id=n)

    def without_objects(self) -> "Snapshot":
        """No objects any more (ids go on counting, so colours are not reused)."""
        return replace(self, objects=(), editing=None)

    def delete(self, index: int) -> "Snapshot":
        """Remove object ``index`` (its position in :attr:`objects`). Deleting the object being
        edited ends the editing (the prompts stay)."""
        i = self._object_index(index)
        gone = self.objects[i]
        editing = None if gone.id == self.editing else self.editing
        return replace(self, objects=self.objects[:i] + self.objects[i + 1 :], editing=editing)

    def rename(self, index: int, label: str) -> "Snapshot":
        """Give object ``index`` the label ``label`` (a non-empty string, stripped)."""
        if not isinstance(label, str) or not label.strip():
            raise ValueError(f"label must be a non-empty string, got {label!r}.")
        i = self._object_index(index)
        renamed = replace(self.objects[i], label=label.strip())
        return replace(self, objects=self.objects[:i] + (renamed,) + self.objects[i + 1 :])

    def cleared(self) -> "Snapshot":
        """No prompts, no candidates, not editing; the objects stay."""
        return replace(self, prompts=Prompts(), slot=None, selected=0, editing=None)

    def edit(self, index: int, slot: PredictionSlot) -> "Snapshot":
        """Start refining object ``index``: its prompts become the current prompts and ``slot``
        (filled with its mask) the current answer."""
        i = self._object_index(index)
        obj = self.objects[i]
        return replace(self, prompts=obj.prompts, slot=slot, selected=None, editing=obj.id)

    def _object_index(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"object index must be an int, not {type(index).__name__}.")
        n = len(self.objects)
        if not 0 <= index < n:
            raise IndexError(f"object {index} does not exist; there are {n} objects.")
        return int(index)


def provenance_from_record(record: Any, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``candidate``, ``chain`` and ``threshold`` keyword arguments for :class:`ObjectRecord`
    from what a session file keeps: ``record`` a :class:`sam_widget.io.PromptRecord` (or None
    for an imported mask), ``extra`` the object's extra dict (``{"threshold": t}``). The
    inverse of :attr:`ObjectRecord.prompt_record` / :attr:`ObjectRecord.extra`."""
    threshold = (extra or {}).get("threshold")
    if record is None:
        return {"candidate": None, "chain": (), "threshold": None if threshold is None else float(threshold)}
    chain = tuple(
        ChainStep(Prompts(tuple(map(tuple, st.points)), tuple(st.labels), st.box), 0 if st.candidate is None else int(st.candidate))
        for st in (getattr(record, "chain", ()) or ())
    )
    candidate = getattr(record, "candidate", None)
    return {"candidate": None if candidate is None else int(candidate), "chain": chain,
            "threshold": None if threshold is None else float(threshold)}


def object_color(index: int) -> tuple[int, int, int]:
    """A distinct, saturated RGB colour for object number ``index`` (0-based), golden-ratio hues."""
    h = (0.08 + index * 0.61803398875) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.75, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


class EditConflict(RuntimeError):
    """:meth:`History.push` with ``expected``: another thread changed the current snapshot
    since the caller read it (the caller rebuilds its change on the new one)."""


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

    def snapshots(self) -> list[Snapshot]:
        """Every snapshot held: the undoable ones (oldest first), the current one, the redoable ones."""
        with self.lock:
            return [*self._undo, self._current, *reversed(self._redo)]

    def push(self, snapshot: Snapshot, expected: Snapshot | None = None) -> Snapshot:
        """Make ``snapshot`` current; the old one becomes undoable; the redo stack is dropped.

        ``expected``: the snapshot ``snapshot`` was made from; :class:`EditConflict` (and no
        change) if the current one is another by now (compare-and-swap: a click on the page
        and the user's cell can change the same history at the same time)."""
        with self.lock:
            if expected is not None and self._current is not expected:
                raise EditConflict("the state changed while this change was being made")
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
