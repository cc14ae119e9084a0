"""Prompts for ``batch.segment``: a COCO file of boxes (a detection dataset), or a list.

* a COCO file (path): every annotation's ``bbox`` (COCO's XYWH) becomes one box prompt
  (XYXY) on the image with that ``file_name``; the object's label is the annotation's
  category name. Images of the file that are not in the run are ignored; images of the
  run that the file does not mention get no objects.
* a list with one entry per image (same order as the images): ``None`` (no objects), one
  dict, or a list of dicts, each ``{"points": [[x, y], ...], "labels": [1|0, ...],
  "box": [x0, y0, x1, y1], "label": "cat"}`` (image pixels, x = column, y = row; box XYXY;
  every key optional but at least points or a box); an :class:`ObjectPrompt` may stand
  wherever such a dict does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io import FormatError
from ..io._common import json_number, read_json
from ..io.prompts import coerce_prompts

__all__ = ["ObjectPrompt", "prompts_per_image"]


@dataclass(frozen=True)
class ObjectPrompt:
    """One object to segment: points ``(x, y)``, their labels, a box (XYXY) and a label."""

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    label: str = "object"

    def __post_init__(self) -> None:
        """Checked as a prompt dict is (``coerce_prompts``): ``ValueError``/``TypeError``
        naming the bad field; the fields are stored normalised (tuples of floats / ints)."""
        if not isinstance(self.label, str) or not self.label.strip():
            raise ValueError(f"ObjectPrompt.label must be a non-empty string, got {self.label!r}.")
        rec = coerce_prompts(self, "ObjectPrompt")
        if rec.is_empty:
            raise ValueError("ObjectPrompt has neither points nor a box.")
        object.__setattr__(self, "points", rec.points)
        object.__setattr__(self, "labels", rec.labels)
        object.__setattr__(self, "box", rec.box)
        object.__setattr__(self, "label", self.label.strip())

    def as_json(self) -> dict[str, Any]:
        return {"points": [list(p) for p in self.points], "labels": list(self.labels),
                "box": None if self.box is None else list(self.box), "label": self.label}


def _from_dict(obj: Any, where: str) -> ObjectPrompt:
    if isinstance(obj, ObjectPrompt):
        return obj  # checked when it was made
    if not isinstance(obj, dict):
        raise TypeError(f"{where} must be a dict with points/labels/box/label or an ObjectPrompt, not {type(obj).__name__}.")
    obj = dict(obj)
    label = obj.pop("label", "object")
    if not isinstance(label, str) or not label.strip():
        raise ValueError(f"{where}: label must be a non-empty string, got {label!r}.")
    rec = coerce_prompts(obj, where)
    if rec.is_empty:
        raise ValueError(f"{where} has neither points nor a box.")
    return ObjectPrompt(rec.points, rec.labels, rec.box, label.strip())


def _from_coco(path: Path, paths: list[str]) -> list[list[ObjectPrompt]]:
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise FormatError(path, "is not a COCO file (needs 'images' and 'annotations' lists).")
    cats = {}
    for k, c in enumerate(data.get("categories") or []):
        if not isinstance(c, dict) or "id" not in c:
            raise FormatError(path, "a category has no id.", f"categories[{k}]")
        cats[c["id"]] = str(c.get("name", c["id"]))
    names = {}
    for k, im in enumerate(data["images"]):
        if not isinstance(im, dict) or "id" not in im or not isinstance(im.get("file_name"), str):
            raise FormatError(path, "an image needs an id and a file_name.", f"images[{k}]")
        names[im["id"]] = Path(im["file_name"]).name
    wanted = {Path(p).name: i for i, p in enumerate(paths)}
    out: list[list[ObjectPrompt]] = [[] for _ in paths]
    matched = 0
    for k, ann in enumerate(data["annotations"]):
        item = f"annotations[{k}]"
        if not isinstance(ann, dict):
            raise FormatError(path, "is not an object.", item)
        if ann.get("image_id") not in names:
            raise FormatError(path, f"image_id {ann.get('image_id')!r} is not in 'images'.", item)
        if ann.get("category_id") not in cats:
            raise FormatError(path, f"category_id {ann.get('category_id')!r} is not in 'categories'.", item)
        bbox = ann.get("bbox")
        try:
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise ValueError("bbox must be [x, y, width, height]")
            x, y, w, h = (float(json_number(v, "bbox")) for v in bbox)
            if w < 0 or h < 0:
                raise ValueError(f"bbox has a negative size {bbox}")
        except ValueError as e:
            raise FormatError(path, str(e), item) from None
        i = wanted.get(names[ann["image_id"]])
        if i is None:
            continue
        matched += 1
        out[i].append(ObjectPrompt(box=(x, y, x + w, y + h), label=cats[ann["category_id"]]))
    if data["annotations"] and not matched:
        raise ValueError(
            f"none of the {len(data['annotations'])} boxes of {str(path)!r} is on one of the {len(paths)} images "
            "(matched by file name): wrong folder?"
        )
    return out


def prompts_per_image(prompts: Any, paths: list[str]) -> list[list[ObjectPrompt]]:
    """The objects to segment on each image (see the module docstring). Raises
    ``TypeError``/``ValueError`` (a ``FormatError`` for a bad file) naming the bad item."""
    if isinstance(prompts, (str, os.PathLike)):
        return _from_coco(Path(os.fspath(prompts)).expanduser(), paths)
    if not isinstance(prompts, (list, tuple)):
        raise TypeError(f"prompts must be a COCO file path or a list with one entry per image, not {type(prompts).__name__}.")
    if len(prompts) != len(paths):
        raise ValueError(f"prompts has {len(prompts)} entries for {len(paths)} images; give one entry per image.")
    out = []
    for i, entry in enumerate(prompts):
        if entry is None:
            out.append([])
        elif isinstance(entry, (dict, ObjectPrompt)):
            out.append([_from_dict(entry, f"prompts[{i}]")])
        elif isinstance(entry, (list, tuple)):
            out.append([_from_dict(o, f"prompts[{i}][{k}]") for k, o in enumerate(entry)])
        else:
            raise TypeError(f"prompts[{i}] must be None, a dict, an ObjectPrompt or a list of them, not {type(entry).__name__}.")
    return out
