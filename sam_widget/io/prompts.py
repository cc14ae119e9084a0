"""The prompts that made a mask, as stored in our COCO extension fields.

JSON form (``annotation["sam_widget"]["prompts"]``)::

    {"points": [[x, y], ...],          # image pixels, x = column, y = row
     "labels": [1, 0, ...],            # one per point: 1 foreground, 0 background
     "box": [x0, y0, x1, y1] | null,   # XYXY image pixels (not COCO's XYWH)
     "candidate": 2,                   # optional: which of the model's answers was kept
     "chain": [ {points, labels, box, candidate}, ... ]}   # optional: refinement steps

``chain`` lists the earlier prompt states of a refinement, oldest first: each step was
answered by the model, and its chosen ``candidate``'s low-resolution logits were the
mask prompt of the next step; the top-level prompts are the last step. Steps hold no
chain of their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["PromptRecord", "prompts_to_json", "prompts_from_json", "coerce_prompts"]


@dataclass(frozen=True)
class PromptRecord:
    """Prompts read back from a file. Field names match :class:`sam_widget.state.Prompts`
    (``points`` ``(x, y)`` image pixels, ``labels`` 1/0, ``box`` XYXY or ``None``) so it
    can be used where those are expected; ``candidate`` is the chosen candidate index (or
    ``None``) and ``chain`` the earlier refinement steps, oldest first."""

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    candidate: int | None = None
    chain: tuple["PromptRecord", ...] = ()

    @property
    def is_empty(self) -> bool:
        return not self.points and self.box is None


def _finite(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        try:
            import numpy as np

            if isinstance(value, np.generic) and value.dtype.kind in "iuf":
                value = value.item()
            else:
                raise TypeError
        except TypeError:
            raise ValueError(f"{where} must be a number, got {value!r}.") from None
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{where} must be finite, got {value!r}.")
    return v


def _parse(obj: Any, where: str, *, nested: bool) -> PromptRecord:
    """Build a PromptRecord from a mapping or an object with the same attribute names."""
    if obj is None:
        raise ValueError(f"{where} is missing.")
    if isinstance(obj, PromptRecord):
        get = lambda k, d=None: getattr(obj, k, d)  # noqa: E731
    elif isinstance(obj, dict):
        unknown = set(obj) - {"points", "labels", "box", "candidate", "chain"}
        if unknown:
            raise ValueError(f"{where} has unknown keys {sorted(unknown)}.")
        get = obj.get
    elif hasattr(obj, "points") and hasattr(obj, "labels"):
        get = lambda k, d=None: getattr(obj, k, d)  # noqa: E731
    else:
        raise ValueError(
            f"{where} must be a dict with points/labels/box or a Prompts-like object, "
            f"not {type(obj).__name__}."
        )
    raw_points = get("points", None)
    raw_labels = get("labels", None)
    raw_points = () if raw_points is None else raw_points
    raw_labels = () if raw_labels is None else raw_labels
    try:
        points = tuple(
            (_finite(p[0], f"{where}.points[{i}][0]"), _finite(p[1], f"{where}.points[{i}][1]"))
            for i, p in enumerate(raw_points)
            if _is_pair(p, f"{where}.points[{i}]")
        )
        labels = tuple(_label(v, f"{where}.labels[{i}]") for i, v in enumerate(raw_labels))
    except TypeError:
        raise ValueError(f"{where}.points/labels must be lists.") from None
    if len(points) != len(labels):
        raise ValueError(f"{where} has {len(points)} points but {len(labels)} labels (one label per point).")
    raw_box = get("box", None)
    box = None
    if raw_box is not None:
        try:
            values = list(raw_box)
        except TypeError:
            raise ValueError(f"{where}.box must be [x0, y0, x1, y1], got {raw_box!r}.") from None
        if len(values) != 4:
            raise ValueError(f"{where}.box must be 4 numbers [x0, y0, x1, y1] (XYXY), got {raw_box!r}.")
        box = tuple(_finite(v, f"{where}.box[{i}]") for i, v in enumerate(values))
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"{where}.box {list(box)} must have x0 <= x1 and y0 <= y1 (XYXY).")
    raw_candidate = get("candidate", None)
    candidate = None
    if raw_candidate is not None:
        if isinstance(raw_candidate, bool) or not isinstance(raw_candidate, int) and not _is_int(raw_candidate):
            raise ValueError(f"{where}.candidate must be a whole number >= 0, got {raw_candidate!r}.")
        candidate = int(raw_candidate)
        if candidate < 0:
            raise ValueError(f"{where}.candidate must be >= 0, got {candidate}.")
    raw_chain = get("chain", None)
    raw_chain = () if raw_chain is None else raw_chain
    if nested and raw_chain:
        raise ValueError(f"{where}: a refinement step cannot hold a chain of its own.")
    if isinstance(raw_chain, (str, bytes, dict)):
        raise ValueError(f"{where}.chain must be a list of prompt steps.")
    chain = tuple(_parse(step, f"{where}.chain[{i}]", nested=True) for i, step in enumerate(raw_chain))
    return PromptRecord(points=points, labels=labels, box=box, candidate=candidate, chain=chain)  # type: ignore[arg-type]


def _is_int(value: Any) -> bool:
    try:
        import numpy as np

        return isinstance(value, np.integer)
    except ImportError:  # pragma: no cover
        return False


def _is_pair(p: Any, where: str) -> bool:
    try:
        n = len(p)
    except TypeError:
        raise ValueError(f"{where} must be an (x, y) pair, got {p!r}.") from None
    if n != 2:
        raise ValueError(f"{where} must be an (x, y) pair, got {p!r}.")
    return True


def _label(v: Any, where: str) -> int:
    if isinstance(v, bool) or not (isinstance(v, int) or _is_int(v)) or int(v) not in (0, 1):
        raise ValueError(f"{where} must be 1 (foreground) or 0 (background), got {v!r}.")
    return int(v)


def coerce_prompts(obj: Any, where: str = "prompts") -> PromptRecord | None:
    """``None`` stays ``None``; a dict (the JSON form), a :class:`PromptRecord` or any
    object with ``points``/``labels``/``box`` attributes (e.g. ``sam_widget.state.Prompts``;
    optional ``candidate`` and ``chain``) becomes a validated :class:`PromptRecord`.
    Raises ``ValueError`` naming ``where``."""
    if obj is None:
        return None
    return _parse(obj, where, nested=False)


def prompts_from_json(obj: Any, where: str = "prompts") -> PromptRecord:
    """Validate the JSON form and return a :class:`PromptRecord` (``ValueError`` otherwise)."""
    if not isinstance(obj, dict):
        raise ValueError(f"{where} must be an object with points/labels/box, got {type(obj).__name__}.")
    return _parse(obj, where, nested=False)


def prompts_to_json(prompts: PromptRecord) -> dict[str, Any]:
    """The JSON form of a :class:`PromptRecord` (``candidate``/``chain`` only when set)."""
    out: dict[str, Any] = {
        "points": [[x, y] for x, y in prompts.points],
        "labels": list(prompts.labels),
        "box": None if prompts.box is None else list(prompts.box),
    }
    if prompts.candidate is not None:
        out["candidate"] = prompts.candidate
    if prompts.chain:
        out["chain"] = [prompts_to_json(step) for step in prompts.chain]
    return out
