"""The session save file: a COCO instances JSON that restores an annotation session.

Any COCO reader opens it (``pycocotools.coco.COCO(path)`` gives every mask); the
``"sam_widget"`` fields hold the rest. Layout (format ``"sam_widget.session"``, version 1)::

    {"info": {...},
     "images": [{"id", "file_name", "height", "width",
                 "sam_widget": {"source": "file" | "array",
                                "path": "/abs/a.jpg" | null,      # null for an in-memory array
                                "relpath": "imgs/a.jpg" | null,   # relative to the session file
                                "sha256": "..." | null,           # of the pixels (arrays) or file
                                "next_object_id": 4, "extra": {}}}],
     "categories": [{"id", "name"}],                              # labels, sorted (see coco.py)
     "annotations": [{"id", "image_id", "category_id", "segmentation": <RLE>, "area",
                      "bbox": [x, y, w, h], "iscrowd": 0, "score"?,
                      "sam_widget": {"object_id": 3, "color": [r, g, b],
                                     "prompts": {...} | null,     # see sam_widget.io.prompts
                                     "imported": false, "extra": {}}}],
     "sam_widget": {"format": "sam_widget.session", "version": 1, "written_by": "sam_widget 0.1.0",
                    "model": {"name": "vit_b", "checkpoint": null, "precision": "fp32", ...},
                    "index": 0, "extra": {}}}

Masks are always compressed RLE (exact). The candidate index and the refinement chain
are part of ``prompts`` (``candidate``, ``chain``). ``extra`` dicts (per session, image
and object) carry anything else JSON-able, untouched.

Writes are atomic (temporary file in the same directory, flushed, ``os.replace``): a
``kill -9`` at any moment leaves the previous file or the new one, never a torn one.
:func:`read_session` validates everything before returning and raises
:class:`~sam_widget.io.FormatError` naming the file and the entry otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ._common import FormatError, as_bool_mask, atomic_write_bytes, check_output_file, dump_json, read_json
from .coco import annotation_of, build_categories
from .prompts import PromptRecord, coerce_prompts, prompts_from_json, prompts_to_json
from .records import EXTENSION_KEY

__all__ = [
    "SESSION_FORMAT", "SESSION_VERSION", "SessionData", "SessionImage", "SessionObject",
    "write_session", "read_session", "array_sha256",
]

SESSION_FORMAT = "sam_widget.session"
SESSION_VERSION = 1


@dataclass
class SessionObject:
    """A committed object: ``id`` (unique within its image), ``label``, ``color`` (RGB
    0-255), ``mask`` ``(H, W)`` bool, ``score`` (predicted IoU or ``None``), ``prompts``
    (:class:`~sam_widget.io.prompts.PromptRecord`, with ``candidate`` and ``chain``; ``None``
    for an imported mask), ``imported`` (added from a mask, not from prompts), ``extra``."""

    id: int
    label: str
    color: tuple[int, int, int]
    mask: np.ndarray = field(repr=False)
    score: float | None = None
    prompts: PromptRecord | None = None
    imported: bool = False
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class SessionImage:
    """One image of the session: ``file_name`` (COCO), ``height``, ``width``; ``path`` of
    the file, or ``None`` for an in-memory array (then ``sha256`` of its pixels, see
    :func:`array_sha256`, identifies it); its ``objects`` and ``next_object_id``."""

    file_name: str
    height: int
    width: int
    path: Path | None = None
    sha256: str | None = None
    objects: list[SessionObject] = field(default_factory=list)
    next_object_id: int = 1
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def source(self) -> str:
        """``"file"`` or ``"array"`` (an in-memory image: ``path`` is ``None``)."""
        return "array" if self.path is None else "file"


@dataclass
class SessionData:
    """What :func:`read_session` returns."""

    images: list[SessionImage]
    model: dict[str, Any] = field(default_factory=dict)
    index: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    version: int = SESSION_VERSION


def array_sha256(image: np.ndarray) -> str:
    """sha256 hex digest of an array's shape, dtype and bytes (to recognise an in-memory image)."""
    a = np.ascontiguousarray(image)
    h = hashlib.sha256(f"{a.shape}|{a.dtype.str}|".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


# ------------------------------------------------------------------------------- write


def _json_value(value: Any, where: str) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{where} must be JSON-serialisable (str, numbers, lists, dicts): {e}.") from None
    return value


def _get(obj: Any, key: str, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default)
    return getattr(obj, key, default)


def _color(value: Any, where: str) -> list[int]:
    try:
        rgb = [int(v) for v in value]
        ok = len(rgb) == 3 and all(0 <= v <= 255 for v in rgb) and all(
            not isinstance(v, (bool, float)) or float(v).is_integer() for v in value
        )
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{where} must be 3 whole numbers 0-255 (R, G, B), got {value!r}.")
    return rgb


def _object_entry(obj: Any, i: int, j: int, height: int, width: int) -> dict[str, Any]:
    where = f"images[{i}].objects[{j}]"
    ident = _get(obj, "id")
    if isinstance(ident, bool) or not isinstance(ident, (int, np.integer)) or int(ident) < 1:
        raise ValueError(f"{where}.id must be a whole number >= 1, got {ident!r}.")
    label = _get(obj, "label")
    if not isinstance(label, str):
        raise ValueError(f"{where}.label must be a string, got {label!r}.")
    mask = as_bool_mask(_get(obj, "mask"), f"{where}.mask")
    if mask.shape != (height, width):
        raise ValueError(f"{where}.mask has shape {mask.shape} but the image is {height} x {width} (H x W).")
    score = _get(obj, "score")
    if score is not None:
        if isinstance(score, bool) or not isinstance(score, (int, float, np.integer, np.floating)) or not np.isfinite(score):
            raise ValueError(f"{where}.score must be a finite number or None, got {score!r}.")
        score = float(score)
    prompts = coerce_prompts(_get(obj, "prompts"), f"{where}.prompts")
    candidate = _get(obj, "candidate")
    if prompts is not None and candidate is not None and prompts.candidate is None:
        prompts = coerce_prompts({**prompts_to_json(prompts), "candidate": candidate}, f"{where}.candidate")
    if prompts is not None and prompts.is_empty and not prompts.chain:
        prompts = None  # an object without prompts (e.g. Prompts() of an imported mask)
    imported = _get(obj, "imported", prompts is None)
    extra = _json_value(dict(_get(obj, "extra", None) or {}), f"{where}.extra")
    return {
        "id": int(ident), "label": label, "mask": mask, "score": score,
        "ext": {
            "object_id": int(ident), "color": _color(_get(obj, "color"), f"{where}.color"),
            "prompts": None if prompts is None else prompts_to_json(prompts),
            "imported": bool(imported), "extra": extra,
        },
    }


def _image_entry(image: Any, i: int, session_dir: Path) -> dict[str, Any]:
    where = f"images[{i}]"
    name = _get(image, "file_name")
    path = _get(image, "path")
    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{where}.path must be a path or None, got {type(path).__name__}.")
    if not name:
        name = Path(path).name if path is not None else f"image_{i + 1}"
    if not isinstance(name, str):
        raise ValueError(f"{where}.file_name must be a string, got {name!r}.")
    h, w = _get(image, "height"), _get(image, "width")
    for key, v in (("height", h), ("width", w)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) <= 0:
            raise ValueError(f"{where}.{key} must be a whole number > 0, got {v!r}.")
    h, w = int(h), int(w)
    sha = _get(image, "sha256")
    if sha is not None and (not isinstance(sha, str) or len(sha) != 64):
        raise ValueError(f"{where}.sha256 must be a 64-character hex string or None, got {sha!r}.")
    objects = [_object_entry(o, i, j, h, w) for j, o in enumerate(_get(image, "objects", None) or [])]
    ids = [o["id"] for o in objects]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{where}: two objects share an id ({sorted(ids)}).")
    nxt = _get(image, "next_object_id", None)
    nxt = max(ids, default=0) + 1 if nxt is None else nxt
    if isinstance(nxt, bool) or not isinstance(nxt, (int, np.integer)) or nxt <= max(ids, default=0):
        raise ValueError(f"{where}.next_object_id must be a whole number above every object id, got {nxt!r}.")
    absolute = relative = None
    if path is not None:
        absolute = os.path.abspath(os.fspath(Path(path).expanduser()))
        try:
            relative = Path(os.path.relpath(absolute, session_dir)).as_posix()
        except ValueError:  # another drive (Windows)
            relative = None
    ext = {
        "source": "array" if path is None else "file", "path": absolute, "relpath": relative,
        "sha256": sha, "next_object_id": int(nxt),
        "extra": _json_value(dict(_get(image, "extra", None) or {}), f"{where}.extra"),
    }
    return {"file_name": name, "height": h, "width": w, "objects": objects, "ext": ext}


def write_session(
    path: str | os.PathLike[str],
    images: Sequence[Any],
    *,
    model: Mapping[str, Any] | None = None,
    index: int = 0,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a session file atomically (see the module docstring for the layout).

    Args:
      path: the file to write (its directory must exist).
      images: :class:`SessionImage` or dicts / objects with the same attributes
        (``file_name``, ``height``, ``width``, ``path`` or ``None``, ``sha256``,
        ``objects``, ``next_object_id``, ``extra``). ``objects``: :class:`SessionObject`,
        dicts, or any object with ``id``, ``label``, ``color``, ``mask``, ``score``,
        ``prompts`` (e.g. ``sam_widget.state.ObjectRecord``; optional ``imported``,
        ``candidate``, ``extra``). Empty prompts count as "no prompts" (imported).
      model: e.g. ``{"name": "vit_b", "checkpoint": None, "precision": "fp32"}``.
      index: the current image.
      extra: anything JSON-able to keep with the session.

    Returns the path. Raises ``ValueError``/``TypeError`` naming the bad item, before the
    file is touched.
    """
    target = check_output_file(path, "session file")
    if isinstance(images, (str, bytes, Mapping)) or not isinstance(images, Sequence):
        raise TypeError(f"images must be a list of session images, not {type(images).__name__}.")
    session_dir = Path(os.path.abspath(target)).parent
    entries = [_image_entry(im, i, session_dir) for i, im in enumerate(images)]
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not (
        0 <= int(index) < max(len(entries), 1)
    ):
        raise ValueError(f"index must be a whole number in [0, {max(len(entries) - 1, 0)}], got {index!r}.")
    model_json = _json_value(dict(model or {}), "model")
    extra_json = _json_value(dict(extra or {}), "extra")
    cats, cat_ids = build_categories([o["label"] for e in entries for o in e["objects"]])
    annotations = []
    images_json = []
    for image_id, e in enumerate(entries, start=1):
        images_json.append({"id": image_id, "file_name": e["file_name"], "height": e["height"],
                            "width": e["width"], EXTENSION_KEY: e["ext"]})
        for o in e["objects"]:
            ann = annotation_of(
                o["mask"], ann_id=len(annotations) + 1, image_id=image_id, category_id=cat_ids[o["label"]],
                score=o["score"], polygons=False, tolerance=0.0, holes="rle",
            )
            ann[EXTENSION_KEY] = o["ext"]
            annotations.append(ann)
    from .. import __version__

    data = {
        "info": {"description": "sam_widget annotation session"},
        "images": images_json,
        "categories": cats,
        "annotations": annotations,
        EXTENSION_KEY: {
            "format": SESSION_FORMAT, "version": SESSION_VERSION, "written_by": f"sam_widget {__version__}",
            "model": model_json, "index": int(index), "extra": extra_json,
        },
    }
    return atomic_write_bytes(target, dump_json(data))


# -------------------------------------------------------------------------------- read


def _need(cond: bool, path: Path, problem: str, item: str | None = None) -> None:
    if not cond:
        raise FormatError(path, problem, item)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_session(path: str | os.PathLike[str]) -> SessionData:
    """Read and validate a session file written by :func:`write_session`.

    Image paths: the stored absolute path when that file exists, else the stored
    relative path from the session file's folder when that exists (a moved project
    folder), else the stored absolute path (the caller reports the missing file).

    Raises :class:`~sam_widget.io.FormatError` naming the file and the problem for a
    missing, empty, truncated, corrupt or foreign file (e.g. a plain COCO file: use
    ``read_coco``) or one written by a newer sam_widget. Reads only.
    """
    from ._coco_read import parse_coco

    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"read_session takes a file path, not {type(path).__name__}.")
    p = Path(path).expanduser()
    data = read_json(p)
    head = data.get(EXTENSION_KEY) if isinstance(data, dict) else None
    if not isinstance(head, dict) or head.get("format") != SESSION_FORMAT:
        raise FormatError(
            p, "is not a sam_widget session file (no 'sam_widget.format' = "
            f"{SESSION_FORMAT!r}); to bring in a plain COCO file use read_coco / load_coco."
        )
    version = head.get("version")
    _need(_whole(version) and version >= 1, p, f"has an invalid session version {version!r}.")
    _need(version <= SESSION_VERSION, p,
          f"was written by a newer sam_widget (session format version {version}; this one reads up to "
          f"{SESSION_VERSION}). Upgrade sam_widget to open it.")
    model, extra, index = head.get("model", {}), head.get("extra", {}), head.get("index", 0)
    _need(isinstance(model, dict), p, "'sam_widget.model' must be an object.")
    _need(isinstance(extra, dict), p, "'sam_widget.extra' must be an object.")
    coco = parse_coco(data, p)
    _need(_whole(index) and 0 <= index < max(len(coco.images), 1), p,
          f"'sam_widget.index' {index!r} is not the index of an image.")
    base = p.parent
    images = []
    for i, im in enumerate(coco.images):
        item = f"images[{i}] {im.file_name!r}"
        ext = im.extra.get(EXTENSION_KEY)
        _need(isinstance(ext, dict), p, f"has no '{EXTENSION_KEY}' object (not written by write_session).", item)
        source = ext.get("source")
        _need(source in ("file", "array"), p, f"'source' must be 'file' or 'array', got {source!r}.", item)
        stored, rel = ext.get("path"), ext.get("relpath")
        if source == "file":
            _need(isinstance(stored, str) and stored, p, "a 'file' image needs its 'path'.", item)
        _need(rel is None or isinstance(rel, str), p, "'relpath' must be a string or null.", item)
        sha = ext.get("sha256")
        _need(sha is None or isinstance(sha, str) and len(sha) == 64, p, f"'sha256' is not a sha256 digest: {sha!r}.", item)
        nxt = ext.get("next_object_id")
        _need(_whole(nxt) and nxt >= 1, p, f"'next_object_id' must be a whole number >= 1, got {nxt!r}.", item)
        image_extra = ext.get("extra", {})
        _need(isinstance(image_extra, dict), p, "'extra' must be an object.", item)
        resolved = None
        if source == "file":
            resolved = Path(stored)
            if not resolved.exists() and rel is not None and (base / rel).exists():
                resolved = base / rel
        objects = []
        for j, o in enumerate(im.objects):
            oitem = f"{item}, annotation id {o.id}"
            oext = o.extra.get(EXTENSION_KEY)
            _need(isinstance(oext, dict), p, f"has no '{EXTENSION_KEY}' object (not written by write_session).", oitem)
            oid = oext.get("object_id")
            _need(_whole(oid) and oid >= 1, p, f"'object_id' must be a whole number >= 1, got {oid!r}.", oitem)
            _need(oid < nxt, p, f"'object_id' {oid} is not below the image's next_object_id {nxt}.", oitem)
            _need(all(oid != other.id for other in objects), p, f"the object id {oid} is used twice in this image.", oitem)
            color = oext.get("color")
            _need(isinstance(color, list) and len(color) == 3 and all(_whole(c) and 0 <= c <= 255 for c in color),
                  p, f"'color' must be [r, g, b] with whole numbers 0-255, got {color!r}.", oitem)
            imported = oext.get("imported")
            _need(isinstance(imported, bool), p, f"'imported' must be true or false, got {imported!r}.", oitem)
            prompts = None
            if oext.get("prompts") is not None:
                try:
                    prompts = prompts_from_json(oext["prompts"], "prompts")
                except ValueError as e:
                    raise FormatError(p, str(e), oitem) from None
            oextra = oext.get("extra", {})
            _need(isinstance(oextra, dict), p, "'extra' must be an object.", oitem)
            _need(not o.iscrowd, p, "a session object cannot be 'iscrowd'.", oitem)
            objects.append(SessionObject(
                id=oid, label=o.label, color=tuple(color), mask=o.mask, score=o.score, prompts=prompts,  # type: ignore[arg-type]
                imported=imported, extra=oextra,
            ))
        images.append(SessionImage(
            file_name=im.file_name, height=im.height, width=im.width, path=resolved, sha256=sha,
            objects=objects, next_object_id=nxt, extra=image_extra,
        ))
    return SessionData(images=images, model=model, index=index, extra=extra, path=p, version=version)
