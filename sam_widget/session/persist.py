"""A session to and from its save file (:func:`sam_widget.io.write_session` / ``read_session``).

What is written: every image reference (the file's absolute and relative path, or, for an
image given in memory, the sha256 of its pixels and its size), per image its objects (id,
label, colour, mask as exact RLE, score, prompts with the chosen candidate and the
refinement chain) and next object id, the current image, and the model (name, checkpoint,
precision). What is not: the undo history, the current (uncommitted) prompts, the objects'
low-resolution logits (recomputed from the chain when needed, see :mod:`.provenance`).

Restoring goes through a :class:`RestorePlan` that the session applies in its constructor,
before any thread starts: from :func:`plan_load` (``Session.load``) or :func:`plan_autosave`
(an autosave file found when a session starts, matched to the images given).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ..images import ImageError, to_rgb_uint8
from ..io import FormatError, SessionData, SessionImage, SessionObject, array_sha256, read_session, write_session
from ..io.prompts import PromptRecord
from ..state import History, ObjectRecord, Prompts, Snapshot
from .images import ImageSet

if TYPE_CHECKING:  # pragma: no cover
    from .core import Session

__all__ = ["RestorePlan", "save_session", "plan_load", "plan_autosave", "read_autosave", "apply_plan", "load_sources", "model_record"]


@dataclass
class RestorePlan:
    """Objects to put into a new session: ``images`` pairs (index in the new session, saved
    image); ``index``: the image to show; ``notice``: what the status line says about it;
    ``source``: the file they come from (for error messages); ``sizes``: ``(H, W)`` of the
    saved images by new index (known even when a file cannot be read any more)."""

    images: list[tuple[int, SessionImage]]
    index: int = 0
    notice: str | None = None
    source: Path | None = None
    sizes: dict[int, tuple[int, int]] = field(default_factory=dict)
    categories: list[dict[str, Any]] | None = None  # of an imported COCO file (kept for re-export)
    coco_images: dict[int, dict[str, Any]] = field(default_factory=dict)  # its image entries' other keys

    @property
    def object_count(self) -> int:
        return sum(len(im.objects) for _, im in self.images)


# ================================================================== writing
def model_record(session: "Session") -> dict[str, Any]:
    """``{"name", "checkpoint", "precision", "exact"}`` of the session's model (checkpoint: the
    file it was loaded from, None for the official download or a segmenter passed in; exact:
    ``Segmenter(exact=True)``, whose masks ``to_code()`` reproduces bit for bit)."""
    info = session._engine.model_info()  # one description of the model, shared with to_code()
    return {k: info[k] for k in ("name", "checkpoint", "precision", "exact")}


def image_hw(session: "Session", i: int) -> tuple[int, int] | None:
    """``(H, W)`` of image ``i``: from the image, else from its objects' masks, else as saved."""
    hw = session.image_size(i)
    if hw != (0, 0):
        return hw
    objects = session.objects_of(i)
    if objects:
        return tuple(objects[0].mask.shape)  # type: ignore[return-value]
    return session._files.known_hw.get(i)


def array_sha(session: "Session", i: int) -> str | None:
    """sha256 of an in-memory image's RGB pixels (computed once per image)."""
    cache = session._files.sha
    if i not in cache:
        try:
            cache[i] = array_sha256(session.images.load(i))
        except ImageError:
            return None
    return cache[i]


def prompt_record(obj: ObjectRecord) -> PromptRecord | None:
    """The object's prompts with its candidate and chain (None for a mask brought in)."""
    return obj.prompt_record


def _score(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def session_images(session: "Session", snaps: Sequence[Snapshot | None]) -> list[SessionImage]:
    """One :class:`SessionImage` per image of the session (``snaps``: each image's state)."""
    out = []
    for i, snap in enumerate(snaps):
        path = session.images.path(i)
        hw = image_hw(session, i)
        extra: dict[str, Any] = {}
        if hw is None:  # unreadable now and never seen: keep the reference, mark the size as unknown
            hw, extra = (1, 1), {"size_unknown": True}
        objects = [
            SessionObject(
                id=o.id, label=o.label, color=tuple(int(c) for c in o.color), mask=o.mask, score=_score(o.score),  # type: ignore[arg-type]
                prompts=prompt_record(o), imported=o.prompts.is_empty, extra=o.extra,
            )
            for o in (snap.objects if snap is not None else ())
        ]
        out.append(SessionImage(
            file_name=session.images.names[i], height=int(hw[0]), width=int(hw[1]),
            path=None if path is None else Path(path), sha256=None if path is not None else array_sha(session, i),
            objects=objects, next_object_id=snap.next_object_id if snap is not None else 1, extra=extra,
        ))
    return out


def save_session(session: "Session", path: str | os.PathLike[str]) -> Path:
    """Write the session file atomically (``ValueError`` for a path that cannot be written)."""
    with session.lock:  # one consistent moment: the current image and every image's state
        index = session.index
        snaps = [p.history.current if p is not None else None for p in (session._pages.get(i) for i in range(len(session.images)))]
    return write_session(
        path, session_images(session, snaps), model=model_record(session), index=index,
        extra={"single": bool(session.single)},
    )


# ================================================================== reading
def _as_record(o: SessionObject) -> ObjectRecord:
    mask = o.mask
    mask.setflags(write=False)
    p = o.prompts
    prompts = Prompts() if p is None else Prompts(tuple(p.points), tuple(p.labels), p.box)
    chain = () if p is None else tuple((Prompts(tuple(s.points), tuple(s.labels), s.box), s.candidate) for s in p.chain)
    score = float("nan") if o.score is None else float(o.score)
    threshold = (o.extra or {}).get("threshold")  # the logit threshold it was cut at (to_code)
    return ObjectRecord(o.label, tuple(o.color), mask, score, prompts, o.id, None,  # type: ignore[arg-type]
                        None if p is None else p.candidate, chain, None if threshold is None else float(threshold))


def _given_images(images: Any, data: SessionData, path: Path) -> dict[int, Any]:
    """``images=`` of ``load``: one entry per image of the file (None: as saved), or one per
    in-memory image in order, or ``{index or file_name: image}``."""
    n = len(data.images)
    arrays = [i for i, im in enumerate(data.images) if im.source == "array"]
    if images is None:
        return {}
    if isinstance(images, Mapping):
        out = {}
        names = {im.file_name: i for i, im in enumerate(data.images)}
        for key, value in images.items():
            if isinstance(key, str) and key in names:
                out[names[key]] = value
            elif isinstance(key, (int, np.integer)) and not isinstance(key, bool) and 0 <= key < n:
                out[int(key)] = value
            else:
                raise ValueError(f"images: {key!r} is neither an image index (0..{n - 1}) nor a file name of {str(path)!r}.")
        return out
    if isinstance(images, np.ndarray) or not isinstance(images, Sequence) or isinstance(images, (str, bytes)):
        images = [images]
    if len(images) == n:
        return {i: v for i, v in enumerate(images) if v is not None}
    if len(images) == len(arrays):
        return dict(zip(arrays, images))
    raise ValueError(
        f"images has {len(images)} entries; {str(path)!r} holds {n} images, {len(arrays)} of them in memory: "
        f"give one entry per image (None: as saved), or one array per in-memory image, in order."
    )


def load_sources(data: SessionData, path: Path, images: Any = None) -> list[Any]:
    """The image sources to open a saved session with (checks the in-memory images' sha256)."""
    given = _given_images(images, data, path)
    sources: list[Any] = []
    missing = []
    for i, im in enumerate(data.images):
        where = f"image {i + 1} ({im.file_name!r})"
        src = given.get(i)
        if src is not None:
            if im.source == "array" and im.sha256 is not None:
                try:
                    rgb = to_rgb_uint8(src)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"images: the image given for {where} cannot be used: {exc}") from None
                if array_sha256(rgb) != im.sha256:
                    raise ValueError(
                        f"{str(path)!r}: the image given for {where} is not the one saved: its pixels differ "
                        f"(sha256 {array_sha256(rgb)[:12]}… ≠ {im.sha256[:12]}…; saved {im.height} x {im.width}, "
                        f"given {rgb.shape[0]} x {rgb.shape[1]}, H x W)."
                    )
            sources.append(src)
        elif im.source == "file":
            sources.append(str(im.path))
        else:
            missing.append(f"{where}, {im.height} x {im.width}")
    if missing:
        raise ValueError(
            f"{str(path)!r} holds {len(missing)} image(s) that were given in memory ({'; '.join(missing[:5])}"
            f"{'; …' if len(missing) > 5 else ''}): pass their pixels again, e.g. load({str(path)!r}, images=[...]) "
            "with one array per in-memory image, in order (their sha256 is checked)."
        )
    return sources


def _describe(plan: RestorePlan, verb: str) -> str:
    n = plan.object_count
    k = sum(1 for _, im in plan.images if im.objects)
    name = plan.source.name if plan.source is not None else "the file"
    return f"{verb} {n} object{'s' * (n != 1)} on {k} image{'s' * (k != 1)} from {name}"


def plan_load(data: SessionData, path: Path) -> RestorePlan:
    """Everything in the file, image ``i`` to image ``i``."""
    plan = RestorePlan(images=list(enumerate(data.images)), index=data.index, source=path,
                       sizes={i: (im.height, im.width) for i, im in enumerate(data.images) if not im.extra.get("size_unknown")})
    plan.notice = _describe(plan, "loaded")
    return plan


def plan_autosave(images: ImageSet, data: SessionData, path: Path) -> RestorePlan:
    """Match an autosave file's images to the images given: files by path, in-memory images by
    the sha256 of their pixels. ``ValueError`` if objects were saved on an image that is not
    among them (writing the file would lose them)."""
    by_path: dict[str, int] = {}
    by_sha: dict[str, list[int]] = {}
    need_sha = any(im.source == "array" for im in data.images)
    for i in range(len(images)):
        p = images.path(i)
        if p is not None:
            by_path.setdefault(os.path.realpath(os.path.expanduser(p)), i)
        elif need_sha:
            try:
                by_sha.setdefault(array_sha256(images.load(i)), []).append(i)
            except ImageError:
                pass
    pairs: list[tuple[int, SessionImage]] = []
    lost = []
    index = 0
    for k, im in enumerate(data.images):
        if im.source == "file":
            new = by_path.get(os.path.realpath(str(im.path)))
        else:
            free = by_sha.get(im.sha256 or "", [])
            new = free.pop(0) if free else None
        if new is None:
            if im.objects:
                lost.append(f"{im.file_name} ({len(im.objects)} object{'s' * (len(im.objects) != 1)})")
            continue
        pairs.append((new, im))
        if k == data.index:
            index = new
    if lost:
        raise ValueError(
            f"the autosave file {str(path)!r} holds objects on {len(lost)} image(s) that are not in this session: "
            f"{', '.join(lost[:5])}{', …' if len(lost) > 5 else ''}. Nothing was changed: open it with "
            f"Session.load({str(path)!r}) / SamWidget.load(...), pass those images too, or choose another autosave file."
        )
    plan = RestorePlan(images=pairs, index=index, source=path,
                       sizes={i: (im.height, im.width) for i, im in pairs if not im.extra.get("size_unknown")})
    plan.notice = _describe(plan, "restored")
    return plan


def read_autosave(images: ImageSet, path: Path) -> RestorePlan | None:
    """The plan for an existing autosave file (None if there is none). A file that cannot be
    read raises :class:`~sam_widget.io.FormatError` and is left as it is."""
    if not path.exists():
        return None
    try:
        data = read_session(path)
    except FormatError as exc:
        raise FormatError(
            path, f"the autosave file cannot be restored: {exc.problem} It was not changed; move it aside "
            "(or pass another autosave file) to start a new session.", exc.item,
        ) from None
    return plan_autosave(images, data, path)


def apply_plan(session: "Session", plan: RestorePlan) -> int:
    """Put the plan's objects into the session's pages (constructor, before the threads start).
    Returns the image to show. ``ValueError`` if an image's size differs from its saved masks."""
    for i, im in plan.images:
        hw = session.image_size(i)
        if im.objects and hw != (0, 0) and hw != (im.height, im.width):
            where = f"image {i + 1} ({session.images.names[i]!r})"
            raise ValueError(
                f"{str(plan.source)!r}: {where} is {hw[0]} x {hw[1]} but its saved masks are {im.height} x {im.width} "
                "(H x W): is it another image at the same path? Nothing was loaded."
            )
    for i, im in plan.images:
        if i in plan.sizes:
            session._files.known_hw[i] = plan.sizes[i]
        if not im.objects and im.next_object_id == 1:
            continue
        snap = Snapshot(objects=tuple(_as_record(o) for o in im.objects), next_object_id=im.next_object_id)
        session._pages.page(i).history = History(snap, limit=session._pages.history_limit)
    return plan.index
