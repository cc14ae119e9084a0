"""Reading COCO instances files (ours and other tools'), with strict validation."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ._common import FormatError, read_json
from .polygons import polygon_crossing, polygons_to_mask
from .prompts import prompts_from_json
from .records import EXTENSION_KEY, CocoDataset, CocoImage, CocoObject
from .rle import decode_rle

__all__ = ["read_coco", "parse_coco"]

_ANNOTATION_KEYS = {"id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd", "score"}
_IMAGE_KEYS = {"id", "file_name", "height", "width"}


def _int(value: Any) -> int | None:
    """A JSON whole number (ints, and floats like 3.0 that some tools write), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _describe(kind: str, index: int, entry: Any) -> str:
    ident = entry.get("id") if isinstance(entry, dict) else None
    return f"{kind}[{index}]" + (f" (id {ident})" if ident is not None else "")


def _polygons(seg: list[Any], fail: Any) -> list[list[float]]:
    if not seg:
        fail("'segmentation' is an empty polygon list.")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seg):
        fail("'segmentation' is a flat list of numbers; COCO polygons are a list of [x0, y0, x1, y1, ...] lists.")
    out = []
    for k, poly in enumerate(seg):
        if not isinstance(poly, list):
            fail(f"segmentation polygon {k} is not a list of numbers.")
        if any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in poly):
            fail(f"segmentation polygon {k} holds something other than numbers.")
        if len(poly) < 6:
            fail(f"segmentation polygon {k} is empty or degenerate ({len(poly) // 2} points; a polygon needs 3).")
        if len(poly) % 2:
            fail(f"segmentation polygon {k} has an odd number of coordinates ({len(poly)}).")
        if not np.isfinite(np.asarray(poly, dtype=np.float64)).all():
            fail(f"segmentation polygon {k} holds NaN or infinite coordinates.")
        crossing = polygon_crossing(poly)
        if crossing is not None:
            i, j = crossing
            fail(f"segmentation polygon {k} intersects itself (edges {i} and {j} cross).")
        out.append([float(v) for v in poly])
    return out


def _resolve(file_name: str, base: Path | None, image_dir: Path | None, path: Any, item: str) -> Path | None:
    if image_dir is not None:
        candidate = image_dir / file_name
        if not candidate.is_file():
            raise FormatError(path, f"image {file_name!r} is not in the image directory {str(image_dir)!r}.", item)
        return candidate
    p = Path(file_name)
    if p.is_absolute():
        return p if p.is_file() else None
    if base is not None and (base / p).is_file():
        return base / p
    return None


def parse_coco(data: Any, path: Path | None, image_dir: str | os.PathLike[str] | None = None) -> CocoDataset:
    """Validate a loaded COCO dict and decode every mask (see :func:`read_coco`)."""
    if isinstance(data, list):
        raise FormatError(
            path, f"holds a list of {len(data)} entries (a COCO results file?); a COCO instances file "
            "is an object with 'images', 'annotations' and 'categories'."
        )
    if not isinstance(data, dict):
        raise FormatError(path, f"holds a JSON {type(data).__name__}, not a COCO object with 'images'.")
    if "images" not in data:
        raise FormatError(path, "has no 'images' list: not a COCO instances file.")
    raw_images, raw_anns, raw_cats = data["images"], data.get("annotations", []), data.get("categories", [])
    for key, value in (("images", raw_images), ("annotations", raw_anns), ("categories", raw_cats)):
        if not isinstance(value, list):
            raise FormatError(path, f"'{key}' must be a list, got a JSON {type(value).__name__}.")
    folder = None
    if image_dir is not None:
        folder = Path(image_dir).expanduser()
        if not folder.is_dir():
            raise ValueError(f"image_dir {str(folder)!r} is not a directory.")
    base = path.parent if path is not None else None

    images: dict[int, CocoImage] = {}
    order: list[CocoImage] = []
    for i, entry in enumerate(raw_images):
        item = _describe("images", i, entry)
        if not isinstance(entry, dict):
            raise FormatError(path, "is not an object.", item)
        ident = _int(entry.get("id"))
        if ident is None:
            raise FormatError(path, f"'id' must be a whole number, got {entry.get('id')!r}.", item)
        if ident in images:
            raise FormatError(path, f"the image id {ident} is used twice.", item)
        name = entry.get("file_name")
        if not isinstance(name, str) or not name:
            raise FormatError(path, f"'file_name' must be a non-empty string, got {name!r}.", item)
        h, w = _int(entry.get("height")), _int(entry.get("width"))
        if h is None or w is None or h <= 0 or w <= 0:
            raise FormatError(
                path, f"'height' and 'width' must be whole numbers > 0, got {entry.get('height')!r} x "
                f"{entry.get('width')!r}.", f"{item} {name!r}"
            )
        record = CocoImage(
            file_name=name, height=h, width=w, id=ident,
            path=_resolve(name, base, folder, path, f"{item}"),
            extra={k: v for k, v in entry.items() if k not in _IMAGE_KEYS},
        )
        images[ident] = record
        order.append(record)

    cat_names: dict[int, str] = {}
    categories: list[dict[str, Any]] = []
    for i, entry in enumerate(raw_cats):
        item = _describe("categories", i, entry)
        if not isinstance(entry, dict):
            raise FormatError(path, "is not an object.", item)
        ident = _int(entry.get("id"))
        if ident is None:
            raise FormatError(path, f"'id' must be a whole number, got {entry.get('id')!r}.", item)
        if ident in cat_names:
            raise FormatError(path, f"the category id {ident} is used twice.", item)
        name = entry.get("name")
        if not isinstance(name, str):
            raise FormatError(path, f"'name' must be a string, got {name!r}.", item)
        cat_names[ident] = name
        categories.append({**entry, "id": ident})

    seen_ann: set[int] = set()
    for k, ann in enumerate(raw_anns):
        item = _describe("annotations", k, ann)

        def fail(problem: str, item: str = item) -> None:
            raise FormatError(path, problem, item)

        if not isinstance(ann, dict):
            fail("is not an object.")
        ann_id = ann.get("id")
        if ann_id is not None:
            ann_id = _int(ann_id)
            if ann_id is None:
                fail(f"'id' must be a whole number, got {ann.get('id')!r}.")
            if ann_id in seen_ann:
                fail(f"the annotation id {ann_id} is used twice.")
            seen_ann.add(ann_id)
        image_id = _int(ann.get("image_id"))
        if image_id is None or image_id not in images:
            fail(f"'image_id' {ann.get('image_id')!r} is not the id of any image in 'images'.")
        image = images[image_id]
        cat_id = _int(ann.get("category_id"))
        if cat_id is None or cat_id not in cat_names:
            fail(f"'category_id' {ann.get('category_id')!r} is not the id of any category in 'categories'.")
        crowd = ann.get("iscrowd", 0)
        if crowd not in (0, 1) or isinstance(crowd, float) and not crowd.is_integer():
            fail(f"'iscrowd' must be 0 or 1, got {crowd!r}.")
        score = ann.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float)) or not np.isfinite(score)):
            fail(f"'score' must be a finite number, got {score!r}.")
        ext = ann.get(EXTENSION_KEY)
        if ext is not None and not isinstance(ext, dict):
            fail(f"'{EXTENSION_KEY}' must be an object, got a JSON {type(ext).__name__}.")
        ext = ext or {}
        seg = ann.get("segmentation")
        if isinstance(seg, dict):
            size, counts = seg.get("size"), seg.get("counts")
            if not (isinstance(size, list) and len(size) == 2 and all(_int(v) is not None and _int(v) >= 0 for v in size)):
                fail(f"the RLE 'size' must be [height, width], got {size!r}.")
            rh, rw = (_int(v) for v in size)
            if (rh, rw) != (image.height, image.width):
                fail(
                    f"the mask size {rh} x {rw} differs from image {image.file_name!r} "
                    f"({image.height} x {image.width}, H x W)."
                )
            if isinstance(counts, list):
                if any(_int(c) is None or _int(c) < 0 for c in counts):
                    fail("the uncompressed RLE 'counts' must be whole numbers >= 0.")
                counts = [_int(c) for c in counts]
            elif not isinstance(counts, str):
                fail(f"the RLE 'counts' must be a string or a list, got a JSON {type(counts).__name__}.")
            try:
                mask = decode_rle({"size": [rh, rw], "counts": counts})
            except (ValueError, UnicodeEncodeError) as e:
                fail(f"the RLE mask is corrupt: {e}.")
        elif isinstance(seg, list):
            polys = _polygons(seg, fail)
            holes = ext.get("holes")
            if holes is not None:
                if not isinstance(holes, list) or len(holes) != len(polys):
                    fail(f"'{EXTENSION_KEY}.holes' must hold one list of hole polygons per polygon.")
                holes = [_polygons(h, fail) if h else [] for h in holes]
            mask = polygons_to_mask(polys, image.height, image.width, holes)
        elif seg is None:
            fail("has no 'segmentation' (a box-only annotation?); sam_widget needs masks.")
        else:
            fail(f"'segmentation' must be polygons (a list) or an RLE (an object), got a JSON {type(seg).__name__}.")
        prompts = None
        if ext.get("prompts") is not None:
            try:
                prompts = prompts_from_json(ext["prompts"], f"{EXTENSION_KEY}.prompts")
            except ValueError as e:
                fail(str(e))
        image.objects.append(
            CocoObject(
                label=cat_names[cat_id], mask=mask, score=None if score is None else float(score),
                prompts=prompts, iscrowd=bool(crowd), id=ann_id, category_id=cat_id,
                extra={key: v for key, v in ann.items() if key not in _ANNOTATION_KEYS},
            )
        )
    extra = {k: v for k, v in data.items() if k not in ("images", "annotations", "categories")}
    return CocoDataset(images=order, categories=categories, path=path, extra=extra)


def read_coco(source: str | os.PathLike[str] | dict[str, Any], image_dir: str | os.PathLike[str] | None = None) -> CocoDataset:
    """Read a COCO instances file (or an already loaded dict) into per-image records.

    Accepts masks as compressed RLE, uncompressed RLE (``counts`` a list) and polygons
    (union of the polygons, as pycocotools rasterises them), ``iscrowd`` 0 or 1, with or
    without ``score``; files from other tools (no ``sam_widget`` field) work, their
    objects simply have ``prompts=None``.

    Image files: with ``image_dir``, each ``file_name`` must exist in it (else a
    :class:`FormatError` naming the image); without, ``path`` is the file next to the
    COCO file (or the absolute ``file_name``) when it exists, else ``None``.

    Returns a :class:`CocoDataset`: ``images`` (file order) each with ``objects``
    (annotation order: label = category name, mask ``(H, W)`` bool, score, prompts,
    iscrowd, id, extra keys). Every problem (missing or truncated file, not JSON, unknown
    ``image_id`` or ``category_id``, a mask whose size differs from its image, an empty or
    self-intersecting polygon, ...) raises :class:`FormatError` naming the file and the
    entry. Nothing is written.
    """
    if isinstance(source, dict):
        return parse_coco(source, None, image_dir)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"read_coco takes a file path or a COCO dict, not {type(source).__name__}.")
    path = Path(source).expanduser()
    return parse_coco(read_json(path), path, image_dir)
