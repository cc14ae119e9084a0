"""Results of segment / everything runs: one part file per image, one COCO file at the end.

A worker turns its masks into COCO annotations itself (RLE is a few kilobytes; a full-size
mask would be megabytes on the wire), with placeholder ids. The client writes each image's
annotations to ``<output>.parts/<key>.json`` as soon as they arrive (atomically), so a
crash loses at most the images in flight, and a re-run skips every image whose part is
there. At the end the parts are numbered (image ids in input order, annotation ids 1, 2,
..., category ids by the io room's rule: sorted labels) and written as one COCO file,
atomically.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..io import EXTENSION_KEY, atomic_write_bytes, build_categories
from ..io._common import check_output_file, dump_json, read_json
from ..io.coco import annotation_of
from ..io.prompts import coerce_prompts, prompts_to_json

__all__ = ["image_annotations", "PartStore", "assemble_coco", "part_key", "valid_part"]


def image_annotations(
    path: str,
    shape: tuple[int, int],
    masks: Sequence[np.ndarray],
    labels: Sequence[str],
    scores: Sequence[float | None],
    prompts: Sequence[Any] | None = None,
    extras: Sequence[dict[str, Any]] | None = None,
    *,
    polygons: bool = False,
) -> dict[str, Any]:
    """One image's part: ``{"image": {file_name, height, width, path}, "annotations": [...]}``
    with ids left at 0 (numbered by :func:`assemble_coco`) and ``label`` kept in each
    annotation until then."""
    anns = []
    for k, (mask, label, score) in enumerate(zip(masks, labels, scores)):
        ann = annotation_of(np.asarray(mask, bool), ann_id=0, image_id=0, category_id=0,
                            score=None if score is None else float(score),
                            polygons=polygons, tolerance=0.25, holes="rle")
        ext = dict(ann.get(EXTENSION_KEY, {}))
        if prompts is not None and prompts[k] is not None:
            ext["prompts"] = prompts_to_json(coerce_prompts(prompts[k], f"prompts of object {k}"))
        if extras is not None:
            ext.update(extras[k])
        if ext:
            ann[EXTENSION_KEY] = ext
        ann["label"] = str(label)
        anns.append(ann)
    h, w = shape
    return {"image": {"file_name": Path(path).name, "height": int(h), "width": int(w), "path": str(path)},
            "annotations": anns}


_PRECISION_ENV = "SAM_WIDGET_PRECISION"  # sam_widget.engine.precision.PRECISION_ENV (that module imports torch)


def part_key(path: str, *parts: Any) -> str:
    """A file-name-safe key for one image's result: its absolute path, the file's size and
    modification time (a file replaced under the same name is a new image), the precision
    forced by ``$SAM_WIDGET_PRECISION``, and whatever else decides the result (prompts,
    model, parameters). Changing any of them means a new part."""
    h = hashlib.sha1(os.path.abspath(path).encode())
    try:
        st = os.stat(path)
        h.update(f"|{st.st_size}|{st.st_mtime_ns}".encode())
    except OSError:  # unreadable: the task reports it
        h.update(b"|missing")
    h.update(f"|{os.environ.get(_PRECISION_ENV, '').strip().lower()}".encode())
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return f"{Path(path).stem[:40]}-{h.hexdigest()[:16]}"


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def valid_part(data: Any) -> bool:
    """Whether ``data`` has the structure :func:`image_annotations` writes (what
    :func:`assemble_coco` and a COCO reader rely on): a damaged or hand-edited part is not."""
    if not isinstance(data, dict) or not isinstance(data.get("image"), dict) or not isinstance(data.get("annotations"), list):
        return False
    im = data["image"]
    if not (isinstance(im.get("file_name"), str) and isinstance(im.get("path"), str)
            and all(isinstance(im.get(k), int) and not isinstance(im.get(k), bool) and im[k] > 0 for k in ("height", "width"))):
        return False
    for ann in data["annotations"]:
        if not isinstance(ann, dict) or not isinstance(ann.get("label"), str):
            return False
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox) and _number(ann.get("area"))):
            return False
        seg = ann.get("segmentation")
        if isinstance(seg, dict):
            if not (isinstance(seg.get("counts"), str) and isinstance(seg.get("size"), list)
                    and seg["size"] == [im["height"], im["width"]]):
                return False
        elif not (isinstance(seg, list) and all(isinstance(poly, list) and all(_number(v) for v in poly) for poly in seg)):
            return False
    return True


class PartStore:
    """The ``<output>.parts/`` folder of a run (or nothing, when the run keeps results in memory)."""

    def __init__(self, output: str | os.PathLike[str] | None) -> None:
        self.output = None if output is None else check_output_file(output, "COCO output file")
        self.folder = None if self.output is None else self.output.with_name(self.output.name + ".parts")
        if self.folder is not None:
            if self.folder.exists() and not self.folder.is_dir():
                raise ValueError(f"{str(self.folder)!r} exists and is not a folder; it is where per-image results go.")
            self.folder.mkdir(parents=True, exist_ok=True)
        self._memory: dict[str, dict[str, Any]] = {}

    def get(self, key: str) -> dict[str, Any] | None:
        """A finished image's part, or None (a damaged part counts as missing: recomputed)."""
        if self.folder is None:
            return self._memory.get(key)
        p = self.folder / f"{key}.json"
        if not p.exists():
            return None
        try:
            data = read_json(p)
        except ValueError:
            return None
        return data if valid_part(data) else None

    def put(self, key: str, part: dict[str, Any]) -> None:
        if self.folder is None:
            self._memory[key] = part
        else:
            atomic_write_bytes(self.folder / f"{key}.json", dump_json(part))


def assemble_coco(parts: Sequence[dict[str, Any]], output: Path | None) -> dict[str, Any]:
    """Number the parts' images and annotations and build the COCO dict (written
    atomically to ``output`` when given). Parts in input order; a failed image has no part."""
    labels = [a["label"] for p in parts for a in p["annotations"]]
    cats, cat_ids = build_categories(labels)
    images, annotations = [], []
    for image_id, part in enumerate(parts, start=1):
        images.append({"id": image_id, **part["image"]})
        for ann in part["annotations"]:
            a = {k: v for k, v in ann.items() if k != "label"}
            a.update(id=len(annotations) + 1, image_id=image_id, category_id=cat_ids[ann["label"]])
            annotations.append(a)
    coco = {"info": {"description": "sam_widget batch masks"}, "images": images, "categories": cats,
            "annotations": annotations}
    if output is not None:
        atomic_write_bytes(output, dump_json(coco))
    return coco
