"""COCO instances JSON: export (:func:`to_coco`) and import (:func:`read_coco`).

Conventions of the files we write:

* ``images``: ``id`` (1, 2, ... in the order given, unless the caller brings ids),
  ``file_name``, ``height``, ``width``.
* ``categories``: one per distinct label. **Id rule:** by default the labels are sorted
  (Python string order, i.e. by Unicode code point) and numbered 1, 2, ...; the same set
  of labels therefore always gets the same ids, whatever the order of the objects. Pass
  ``categories=`` to fix the ids yourself (a list of names numbered in that order, a
  ``{name: id}`` dict, or COCO category dicts such as :attr:`CocoDataset.categories`).
* ``annotations``: ``id`` 1, 2, ... across the whole file, ``image_id``,
  ``category_id``, ``segmentation`` (compressed RLE by pycocotools, ``counts`` a str;
  or polygons, see below), ``area`` (mask pixels), ``bbox`` (**XYWH**, COCO's
  convention: ``[x0, y0, width, height]`` of the mask's pixels; sam_widget elsewhere
  uses XYXY boxes), ``iscrowd: 0``, ``score`` (the predicted IoU, when known) and, when
  the prompts are known, ``"sam_widget": {"prompts": {...}}`` (see
  :mod:`sam_widget.io.prompts`), which :func:`read_coco` brings back.

Polygons (``polygons=True``) are traced along the pixel edges and simplified with
``tolerance`` pixels (see :mod:`sam_widget.io.polygons`). COCO polygons cannot hold
holes, so a mask with holes is written, by default (``holes="rle"``), as RLE for that
annotation (every COCO reader then gets the exact mask, holes included). With
``holes="extra"`` it is written as polygons of the outer boundaries and the holes go to
``annotation["sam_widget"]["holes"]`` (one list of hole polygons per outer polygon):
standard readers see the holes filled, :func:`read_coco` subtracts them again. An empty
mask is always written as RLE (an empty polygon list is not valid COCO).
"""

from __future__ import annotations

import os
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from ._common import atomic_write_bytes, check_output_file, dump_json
from ._inputs import ImageSpec, normalise
from .polygons import DEFAULT_TOLERANCE, mask_to_polygons
from .prompts import prompts_to_json
from .records import EXTENSION_KEY, CocoDataset, CocoImage, CocoObject
from .rle import encode_mask, mask_bbox_xyxy

__all__ = ["to_coco", "read_coco", "CocoDataset", "CocoImage", "CocoObject", "EXTENSION_KEY"]

# --------------------------------------------------------------------------- categories


def build_categories(labels: Sequence[str], categories: Any = None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """COCO category dicts and the ``{label: id}`` map (see the module docstring's id rule).

    ``labels``: a list of label strings (repeats allowed). ``categories``: ``None`` (ids
    1, 2, ... in sorted label order), a list of names or COCO category dicts, or a
    ``{name: id}`` dict; it must name every label. A non-string label raises ``TypeError``
    naming it.
    """
    if isinstance(labels, (str, bytes)) or not isinstance(labels, (Sequence, np.ndarray)):
        raise TypeError(f"labels must be a list of label strings, not {type(labels).__name__}.")
    for i, label in enumerate(labels):
        if not isinstance(label, str):
            raise TypeError(f"labels[{i}] must be a string, got {label!r} ({type(label).__name__}).")
    if categories is None:
        names = sorted(set(labels))
        cats = [{"id": i, "name": name} for i, name in enumerate(names, start=1)]
    elif isinstance(categories, Mapping):
        cats = []
        for name, cid in categories.items():
            if not isinstance(name, str):
                raise TypeError(f"categories: names must be strings, got {name!r}.")
            if isinstance(cid, bool) or not isinstance(cid, (int, np.integer)):
                raise TypeError(f"categories[{name!r}] must be a whole-number id, got {cid!r}.")
            cats.append({"id": int(cid), "name": name})
    elif isinstance(categories, Sequence) and not isinstance(categories, (str, bytes)):
        cats = []
        for i, c in enumerate(categories):
            if isinstance(c, str):
                cats.append({"id": i + 1, "name": c})
            elif isinstance(c, Mapping):
                if not isinstance(c.get("name"), str):
                    raise ValueError(f"categories[{i}] needs a 'name' string, got {c!r}.")
                cid = c.get("id")
                if isinstance(cid, bool) or not isinstance(cid, (int, np.integer)):
                    raise ValueError(f"categories[{i}] needs a whole-number 'id', got {cid!r}.")
                cats.append({**c, "id": int(cid)})
            else:
                raise TypeError(f"categories[{i}] must be a name or a COCO category dict, not {type(c).__name__}.")
    else:
        raise TypeError(f"categories must be None, a list or a dict, not {type(categories).__name__}.")
    ids: dict[int, str] = {}
    by_name: dict[str, int] = {}
    for c in cats:
        if c["id"] in ids:
            raise ValueError(f"categories: id {c['id']} is used by both {ids[c['id']]!r} and {c['name']!r}.")
        if c["name"] in by_name:
            raise ValueError(f"categories: the name {c['name']!r} appears twice.")
        ids[c["id"]] = c["name"]
        by_name[c["name"]] = c["id"]
    missing = sorted(set(labels) - set(by_name))
    if missing:
        raise ValueError(f"categories has no entry for the label(s) {missing}.")
    return cats, by_name


# ------------------------------------------------------------------------------- export


def segmentation_of(
    mask: np.ndarray, polygons: bool, tolerance: float, holes: str, box: Any = False
) -> tuple[Any, list[list[list[float]]] | None]:
    """COCO ``segmentation`` for one mask and, with ``holes="extra"``, its hole polygons.
    ``box``: the mask's XYXY box (or None when empty) if already known."""
    if box is False:
        box = mask_bbox_xyxy(mask)
    if polygons and box is not None:
        outer, inner = mask_to_polygons(mask, tolerance, box)
        if not any(inner):
            return outer, None
        if holes == "extra":
            return outer, inner
    return encode_mask(mask, box), None


def annotation_of(
    mask: np.ndarray, *, ann_id: int, image_id: int, category_id: int, score: float | None,
    polygons: bool, tolerance: float, holes: str,
) -> dict[str, Any]:
    """One COCO annotation dict (without our extension field)."""
    box = mask_bbox_xyxy(mask)
    seg, hole_polys = segmentation_of(mask, polygons, tolerance, holes, box)
    if box is None:
        area, bbox = 0, [0, 0, 0, 0]
    else:
        x0, y0, x1, y1 = box
        area = int(np.count_nonzero(mask[y0:y1, x0:x1]))
        bbox = [x0, y0, x1 - x0, y1 - y0]
    ann: dict[str, Any] = {
        "id": ann_id, "image_id": image_id, "category_id": category_id, "segmentation": seg,
        "area": area, "bbox": bbox, "iscrowd": 0,
    }
    if score is not None:
        ann["score"] = score
    if hole_polys is not None:
        ann[EXTENSION_KEY] = {"holes": hole_polys}
    return ann


def image_entry(spec: ImageSpec) -> dict[str, Any]:
    return {"id": spec.id, "file_name": spec.file_name, "height": spec.height, "width": spec.width, **spec.extra}


def _check_options(polygons: Any, tolerance: Any, holes: Any) -> None:
    if not isinstance(polygons, bool):
        raise TypeError(f"polygons must be True or False, not {polygons!r}.")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not np.isfinite(tolerance) or tolerance < 0:
        raise ValueError(f"tolerance must be a number of pixels >= 0, got {tolerance!r}.")
    if holes not in ("rle", "extra"):
        raise ValueError(f"holes must be 'rle' or 'extra', got {holes!r}.")


def to_coco(
    images: Sequence[Any],
    masks_per_image: Sequence[Any],
    labels: Sequence[Sequence[str]] | None = None,
    scores: Sequence[Sequence[float | None]] | None = None,
    prompts: Sequence[Sequence[Any]] | None = None,
    *,
    polygons: bool = False,
    tolerance: float = DEFAULT_TOLERANCE,
    holes: Literal["rle", "extra"] = "rle",
    categories: Any = None,
    path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Masks as a COCO instances dict; written atomically to ``path`` when given.

    Args:
      images: one entry per image: a file path (``file_name`` is its name; its size is read
        from the file header when it exists), an ``(H, W)`` size, a dict with
        ``file_name`` (and ``height``, ``width``, optional ``id`` and other COCO keys,
        kept), or an image array (``(H, W)`` or ``(H, W, C)``; ``file_name`` becomes
        ``image_<i>``).
      masks_per_image: per image an ``(N, H, W)`` bool stack or a list of ``(H, W)`` bool
        masks (0/1 or 0/255 integers are accepted), at that image's size; ``None`` or
        empty for no objects.
      labels: per image one string per mask (default ``"object"``); they become the
        categories (see the module docstring for the id rule).
      scores: per image one float (predicted IoU) or ``None`` per mask.
      prompts: per image one entry per mask: ``None``, a dict ``{"points": [(x, y)],
        "labels": [1|0], "box": (x0, y0, x1, y1) | None}`` (XYXY image pixels; optional
        ``candidate`` and ``chain``) or a ``sam_widget.state.Prompts``.
      polygons: write polygons instead of RLE (masks with holes: see ``holes``).
      tolerance: polygon simplification in pixels (default 0.25: exact; see
        :mod:`sam_widget.io.polygons`).
      holes: ``"rle"`` (default) or ``"extra"``, for masks with holes in polygon mode.
      categories: fix the category ids (see the module docstring).
      path: write the JSON there (UTF-8, compact) through a temporary file and a rename.

    Returns the COCO dict. Raises ``ValueError``/``TypeError`` naming the bad item before
    anything is written.
    """
    _check_options(polygons, tolerance, holes)
    target = check_output_file(path, "COCO file") if path is not None else None
    specs = normalise(images, masks_per_image, labels, scores, prompts)
    cats, cat_ids = build_categories([lab for s in specs for lab in s.labels], categories)
    annotations = []
    for spec in specs:
        for mask, label, score, prompt in zip(spec.masks, spec.labels, spec.scores, spec.prompts):
            ann = annotation_of(
                mask, ann_id=len(annotations) + 1, image_id=int(spec.id), category_id=cat_ids[label],
                score=score, polygons=polygons, tolerance=tolerance, holes=holes,
            )
            if prompt is not None:
                ann.setdefault(EXTENSION_KEY, {})["prompts"] = prompts_to_json(prompt)
            annotations.append(ann)
    coco = {
        "info": {"description": "sam_widget masks"},
        "images": [image_entry(s) for s in specs],
        "categories": cats,
        "annotations": annotations,
    }
    if target is not None:
        atomic_write_bytes(target, dump_json(coco))
    return coco


from ._coco_read import read_coco  # noqa: E402,F401  (the reader lives in its own module)
