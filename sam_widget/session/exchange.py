"""A session's objects out as COCO, label PNGs and measurement tables, and COCO files in.

Thin glue between a :class:`~sam_widget.session.Session` and :mod:`sam_widget.io` (which
does the formats): per image the session's name, size and objects become the plain data the
io functions take, and a COCO file read by :func:`sam_widget.io.read_coco` becomes objects.

COCO ``file_name``: the image's name in the session (its file name; ``image N`` for an
image given in memory); when two files of a set share a name, their paths relative to the
folder that holds them all. The categories and the image entries' other keys (``id``,
``license``, ...) of an imported COCO file are kept and written again, so a file sam_widget
wrote comes back out the same (up to key order); annotation ids are renumbered 1, 2, ... and
other tools' extra annotation keys are not kept.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import io as sio
from .persist import RestorePlan, image_hw, prompt_record

if TYPE_CHECKING:  # pragma: no cover
    from .core import Session

__all__ = ["coco_file_names", "to_coco", "export_png", "measurements", "plan_coco", "load_coco"]


def coco_file_names(session: "Session") -> list[str]:
    """A distinct ``file_name`` per image (see the module docstring)."""
    names = list(session.images.names)
    if len(set(names)) == len(names):
        return names
    paths = [session.images.path(i) for i in range(len(names))]
    files = [os.path.abspath(p) for p in paths if p is not None]
    root = os.path.commonpath([os.path.dirname(f) for f in files]) if files else ""
    out = []
    for name, p in zip(names, paths):
        out.append(Path(os.path.relpath(os.path.abspath(p), root)).as_posix() if p is not None else name)
    return out


def _inputs(session: "Session", pixels: bool = False) -> tuple[list[dict[str, Any]], list[list[np.ndarray]], list[list[str]],
                                                              list[list[float | None]], list[list[Any]]]:
    """Per image: the io functions' image dict, masks, labels, scores, prompts. Images whose
    size cannot be known (unreadable and never seen, no objects) are left out with a warning."""
    names = coco_file_names(session)
    images, masks, labels, scores, prompts = [], [], [], [], []
    skipped = []
    for i in range(len(session.images)):
        hw = image_hw(session, i)
        if hw is None:
            skipped.append(session.images.names[i])
            continue
        entry: dict[str, Any] = {**session._files.coco_images.get(i, {}), "file_name": names[i], "height": int(hw[0]), "width": int(hw[1])}
        if pixels:
            path = session.images.path(i)
            if path is not None:
                entry["path"] = path
            else:
                source = session.images.source(i)
                entry["pixels"] = source if isinstance(source, np.ndarray) else session.images.load(i)
        objects = session.objects_of(i)
        images.append(entry)
        masks.append([o.mask for o in objects])
        labels.append([o.label for o in objects])
        scores.append([None if not np.isfinite(o.score) else float(o.score) for o in objects])
        prompts.append([prompt_record(o) for o in objects])
    if skipped:
        warnings.warn(
            f"left out {len(skipped)} image(s) that cannot be read and have no objects (size unknown): "
            f"{', '.join(skipped[:5])}{', …' if len(skipped) > 5 else ''}.",
            stacklevel=3,
        )
    return images, masks, labels, scores, prompts


def _categories(session: "Session", labels: list[list[str]], categories: Any) -> Any:
    if categories is not None:
        return categories
    kept = session._files.categories
    if not kept:
        return None  # io's rule: one per label, sorted, numbered 1, 2, ...
    known = {c["name"] for c in kept}
    new = sorted({lab for per in labels for lab in per} - known)
    nxt = max((c["id"] for c in kept), default=0) + 1
    return list(kept) + [{"id": nxt + k, "name": name} for k, name in enumerate(new)]


def to_coco(session: "Session", path: Any = None, **options: Any) -> dict[str, Any]:
    images, masks, labels, scores, prompts = _inputs(session)
    categories = _categories(session, labels, options.pop("categories", None))
    return sio.to_coco(images, masks, labels=labels, scores=scores, prompts=prompts, categories=categories, path=path, **options)


def export_png(session: "Session", out_dir: Any, **options: Any) -> list[Path]:
    images, masks, labels, _scores, _prompts = _inputs(session)
    return sio.export_png(out_dir, images, masks, labels=labels, **options)


def measurements(session: "Session", **options: Any) -> Any:
    images, masks, labels, scores, _prompts = _inputs(session, pixels=True)
    return sio.measurements(images, masks, labels=labels, scores=scores, **options)


# ================================================================== COCO in
def _objects_of(coco_image: Any, first_id: int = 1) -> list[Any]:
    from ..state import object_color

    out = []
    for k, o in enumerate(coco_image.objects):
        ident = first_id + k
        out.append(sio.SessionObject(
            id=ident, label=o.label, color=object_color(ident - 1), mask=o.mask, score=o.score,
            prompts=o.prompts, imported=o.prompts is None,
        ))
    return out


def _coco_keys(coco_image: Any) -> dict[str, Any]:
    """The image entry's keys to write again (its id and other tools' keys)."""
    return {"id": coco_image.id, **{k: v for k, v in coco_image.extra.items() if k != sio.EXTENSION_KEY}}


def plan_coco(path: Any, image_dir: Any = None, images: Any = None) -> tuple[list[Any], RestorePlan]:
    """Image sources and the objects of a COCO file, for a new session (``from_coco``)."""
    folder = None
    if image_dir is not None:
        if not isinstance(image_dir, (str, os.PathLike)):
            raise TypeError(f"image_dir must be a folder path, not {type(image_dir).__name__}.")
        folder = Path(image_dir).expanduser()
        if not folder.is_dir():
            raise ValueError(f"image_dir {str(folder)!r} is not a directory.")
    ds = sio.read_coco(path)  # (image files are looked up below: images= may give some of them)
    file = Path(path).expanduser()
    if not ds.images:
        raise sio.FormatError(file, "lists no images.")
    given: dict[int, Any] = {}
    if images is not None:
        if isinstance(images, Mapping):
            names = {im.file_name: i for i, im in enumerate(ds.images)}
            for key, value in images.items():
                i = names.get(key) if isinstance(key, str) else key
                if not isinstance(i, (int, np.integer)) or isinstance(i, bool) or not 0 <= i < len(ds.images):
                    raise ValueError(f"images: {key!r} is neither an image index nor a file_name of {str(file)!r}.")
                given[int(i)] = value
        elif isinstance(images, Sequence) and not isinstance(images, (str, bytes)) and len(images) == len(ds.images):
            given = {i: v for i, v in enumerate(images) if v is not None}
        else:
            raise ValueError(f"images must hold one entry per image of {str(file)!r} ({len(ds.images)}; None: its file), or be a dict.")
    sources, missing = [], []
    for i, im in enumerate(ds.images):
        found = im.path if folder is None else (folder / im.file_name if (folder / im.file_name).is_file() else None)
        src = given.get(i, found)
        if src is None:
            missing.append(im.file_name)
        sources.append(str(src) if isinstance(src, Path) else src)
    if missing:
        where = f"in {str(folder)!r}" if folder is not None else f"next to {str(file)!r}"
        raise ValueError(
            f"{str(file)!r}: {len(missing)} image file(s) not found {where}: {', '.join(missing[:5])}"
            f"{', …' if len(missing) > 5 else ''}. Pass image_dir= (the folder holding them) or images=."
        )
    plan = RestorePlan(
        images=[(i, sio.SessionImage(file_name=im.file_name, height=im.height, width=im.width, path=im.path,
                                     objects=_objects_of(im), next_object_id=len(im.objects) + 1))
                for i, im in enumerate(ds.images)],
        source=file, sizes={i: (im.height, im.width) for i, im in enumerate(ds.images)},
        categories=[dict(c) for c in ds.categories], coco_images={i: _coco_keys(im) for i, im in enumerate(ds.images)},
    )
    n, k = plan.object_count, sum(1 for im in ds.images if im.objects)
    plan.notice = f"imported {n} object{'s' * (n != 1)} on {k} image{'s' * (k != 1)} from {file.name}"
    return sources, plan


def _match(session: "Session", ds: Any, image_dir: Any, file: Path) -> dict[int, int]:
    """COCO image position -> session index, by path, then by name; ``ValueError`` for the others."""
    by_path: dict[str, int] = {}
    by_name: dict[str, list[int]] = {}
    names = coco_file_names(session)
    for i in range(len(session.images)):
        p = session.images.path(i)
        if p is not None:
            by_path.setdefault(os.path.realpath(os.path.expanduser(p)), i)
        for n in {names[i], session.images.names[i]}:
            by_name.setdefault(n, []).append(i)
    folder = Path(image_dir).expanduser() if image_dir is not None else None
    out, unknown = {}, []
    for k, im in enumerate(ds.images):
        candidates = [folder / im.file_name] if folder is not None else []
        if im.path is not None:
            candidates.append(im.path)
        hit = next((by_path[r] for r in (os.path.realpath(c) for c in candidates) if r in by_path), None)
        if hit is None:
            for n in (im.file_name, Path(im.file_name).name):
                if len(by_name.get(n, [])) == 1:
                    hit = by_name[n][0]
                    break
        if hit is None:
            unknown.append(im.file_name)
        else:
            out[k] = hit
    if unknown:
        raise ValueError(
            f"{str(file)!r} names {len(unknown)} image(s) that are not in this session: {', '.join(unknown[:5])}"
            f"{', …' if len(unknown) > 5 else ''}. Nothing was added."
        )
    return out


def load_coco(session: "Session", path: Any, image_dir: Any = None) -> int:
    """Add every annotation of a COCO file as an object of its image (one undo step per
    image); returns the number of objects added. Checked completely before anything changes."""
    ds = sio.read_coco(path)
    file = Path(path).expanduser()
    matched = _match(session, ds, image_dir, file)
    additions = []
    for k, im in enumerate(ds.images):
        i = matched[k]
        hw = image_hw(session, i)
        if im.objects and hw is not None and hw != (im.height, im.width):
            raise ValueError(
                f"{str(file)!r}: image {im.file_name!r} is {im.height} x {im.width} there but image {i + 1} of the "
                f"session ({session.images.names[i]!r}) is {hw[0]} x {hw[1]} (H x W). Nothing was added."
            )
        if im.objects:
            from .persist import _as_record

            additions.append((i, [_as_record(o) for o in _objects_of(im)]))
    files = session._files
    if not files.categories:
        files.categories = [dict(c) for c in ds.categories]
    for k, im in enumerate(ds.images):
        files.coco_images.setdefault(matched[k], _coco_keys(im))
    current = None
    for i, records in additions:
        if i == session.index:
            current = records
            continue
        page = session._pages.page(i)
        page.history.push(page.history.current.with_added(records))
        if files.autosaver is not None:
            files.autosaver.touch()
    if current is not None:
        session._push(session.current.with_added(current))
    else:
        session._notifier.changed()
    return sum(len(r) for _, r in additions)

