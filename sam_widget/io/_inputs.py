"""Normalising the plain-data arguments of the export functions (images, masks, labels,
scores, prompts), with one clear error naming the bad item. Nothing is written here."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._common import as_bool_mask
from .prompts import PromptRecord, coerce_prompts

__all__ = ["ImageSpec", "normalise"]

DEFAULT_LABEL = "object"


@dataclass
class ImageSpec:
    """One image of an export: COCO fields plus what we know of its source."""

    file_name: str
    height: int
    width: int
    id: int | None = None
    path: Path | None = None  # the file, when the image was given as a path
    pixels: np.ndarray | None = None  # the pixels, when the image was given as an array
    extra: dict[str, Any] = field(default_factory=dict)  # other COCO image keys to keep
    masks: list[np.ndarray] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    scores: list[float | None] = field(default_factory=list)
    prompts: list[PromptRecord | None] = field(default_factory=list)


def _file_size(path: Path) -> tuple[int, int] | None:
    """(H, W) of an image file as :func:`sam_widget.images.load_image` will see it (EXIF
    orientation applied), reading only the header; None if it cannot be read."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            w, h = im.size
            try:
                if im.getexif().get(0x0112) in (5, 6, 7, 8):
                    w, h = h, w
            except Exception:  # pragma: no cover - a broken EXIF block
                pass
            return int(h), int(w)
    except Exception:
        return None


def _positive_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) <= 0:
        raise ValueError(f"{where} must be a whole number > 0, got {value!r}.")
    return int(value)


def _image_spec(image: Any, i: int) -> ImageSpec:
    where = f"images[{i}]"
    if isinstance(image, (str, os.PathLike)):
        p = Path(image).expanduser()
        if not p.name:
            raise ValueError(f"{where} {str(image)!r} is not a file name.")
        size = _file_size(p) if p.is_file() else None
        spec = ImageSpec(file_name=p.name, height=0, width=0, path=p)
        if size is not None:
            spec.height, spec.width = size
        return spec
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"{where} is an array of shape {image.shape}; an image is (H, W) or (H, W, C).")
        return ImageSpec(file_name=f"image_{i + 1}", height=int(image.shape[0]), width=int(image.shape[1]), pixels=image)
    if isinstance(image, (tuple, list)) and len(image) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in image
    ):
        h, w = (_positive_int(v, f"{where}[{k}]") for k, v in enumerate(image))
        return ImageSpec(file_name=f"image_{i + 1}", height=h, width=w)
    if isinstance(image, dict) or hasattr(image, "file_name"):
        d = dict(image) if isinstance(image, dict) else {
            k: getattr(image, k) for k in ("file_name", "height", "width", "id") if hasattr(image, k)
        }
        name = d.pop("file_name", None)
        if not isinstance(name, str) or not name:
            raise ValueError(f"{where} needs a non-empty 'file_name' string, got {name!r}.")
        h, w = d.pop("height", None), d.pop("width", None)
        spec = ImageSpec(file_name=name, height=0, width=0)
        if h is not None or w is not None:
            spec.height = _positive_int(h, f"{where}['height']")
            spec.width = _positive_int(w, f"{where}['width']")
        if d.get("id") is not None:
            value = d.pop("id")
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ValueError(f"{where}['id'] must be a whole number, got {value!r}.")
            spec.id = int(value)
        d.pop("id", None)
        pixels = d.pop("pixels", None)  # the pixels themselves (measurements), not a COCO key
        if pixels is not None:
            if not isinstance(pixels, np.ndarray) or pixels.ndim not in (2, 3):
                raise ValueError(f"{where}['pixels'] must be an (H, W) or (H, W, C) array, got {type(pixels).__name__}.")
            spec.pixels = pixels
            if spec.height == 0:
                spec.height, spec.width = int(pixels.shape[0]), int(pixels.shape[1])
        source = d.pop("path", None)  # where the pixels are (measurements), not a COCO key
        if source is not None:
            if not isinstance(source, (str, os.PathLike)):
                raise ValueError(f"{where}['path'] must be a file path, got {source!r}.")
            spec.path = Path(source).expanduser()
            if spec.height == 0 and spec.path.is_file():
                size = _file_size(spec.path)
                if size is not None:
                    spec.height, spec.width = size
        if isinstance(image, dict):
            spec.extra = d
        elif isinstance(getattr(image, "extra", None), dict):
            spec.extra = dict(image.extra)
        return spec
    raise TypeError(
        f"{where} must be a file path, an (H, W) size, a dict with file_name/height/width or an "
        f"image array, not {type(image).__name__}."
    )


def _per_image(values: Any, n_images: int, name: str) -> list[Any]:
    if values is None:
        return [None] * n_images
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Sequence) and not isinstance(values, np.ndarray):
        raise TypeError(f"{name} must hold one entry per image (a list), not {type(values).__name__}.")
    if len(values) != n_images:
        raise ValueError(f"{name} has {len(values)} entries but there are {n_images} images (one entry per image).")
    return list(values)


def _masks_of(value: Any, i: int) -> list[np.ndarray]:
    where = f"masks_per_image[{i}]"
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        if value.ndim != 3:
            raise ValueError(
                f"{where} must be an (N, H, W) stack of masks or a list of (H, W) masks, got an array "
                f"of shape {value.shape}."
            )
        return [as_bool_mask(m, f"{where}[{j}]") for j, m in enumerate(value)]
    if isinstance(value, (list, tuple)):
        return [as_bool_mask(m, f"{where}[{j}]") for j, m in enumerate(value)]
    raise TypeError(f"{where} must be an (N, H, W) array or a list of (H, W) masks, not {type(value).__name__}.")


def _score(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{where} must be a number or None, not {type(value).__name__}.")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{where} must be finite, got {value!r}.")
    return v


def normalise(
    images: Sequence[Any],
    masks_per_image: Sequence[Any] | None,
    labels: Sequence[Any] | None = None,
    scores: Sequence[Any] | None = None,
    prompts: Sequence[Any] | None = None,
) -> list[ImageSpec]:
    """Check every argument and return one :class:`ImageSpec` per image, with its masks,
    labels (default ``"object"``), scores and prompts. Raises ``ValueError``/``TypeError``
    naming the first bad item."""
    if isinstance(images, (str, os.PathLike, dict, np.ndarray)) or not isinstance(images, Sequence):
        raise TypeError(
            f"images must be a list (one entry per image: path, (H, W), dict or array), not {type(images).__name__}."
        )
    specs = [_image_spec(im, i) for i, im in enumerate(images)]
    n = len(specs)
    all_masks = _per_image(masks_per_image, n, "masks_per_image")
    all_labels = _per_image(labels, n, "labels")
    all_scores = _per_image(scores, n, "scores")
    all_prompts = _per_image(prompts, n, "prompts")
    seen_names: dict[str, int] = {}
    seen_ids: dict[int, int] = {}
    for i, spec in enumerate(specs):
        masks = _masks_of(all_masks[i], i)
        count = len(masks)
        for j, m in enumerate(masks):
            if spec.height == 0:
                spec.height, spec.width = m.shape
            if m.shape != (spec.height, spec.width):
                raise ValueError(
                    f"masks_per_image[{i}][{j}] has shape {m.shape} but image {i} ({spec.file_name!r}) is "
                    f"{spec.height} x {spec.width} (H x W)."
                )
        if spec.height == 0:
            raise ValueError(
                f"images[{i}] ({spec.file_name!r}): cannot tell its size (no readable file and no masks); "
                "give a dict with height and width."
            )
        spec.masks = masks
        lab = all_labels[i]
        if lab is None:
            spec.labels = [DEFAULT_LABEL] * count
        else:
            if isinstance(lab, (str, bytes)) or not isinstance(lab, Sequence):
                raise TypeError(f"labels[{i}] must be a list of {count} strings, not {type(lab).__name__}.")
            if len(lab) != count:
                raise ValueError(f"labels[{i}] has {len(lab)} labels but image {i} has {count} masks.")
            for j, text in enumerate(lab):
                if not isinstance(text, str):
                    raise TypeError(f"labels[{i}][{j}] must be a string, not {type(text).__name__}.")
            spec.labels = list(lab)
        sc = all_scores[i]
        if sc is None:
            spec.scores = [None] * count
        else:
            if len(sc) != count:
                raise ValueError(f"scores[{i}] has {len(sc)} scores but image {i} has {count} masks.")
            spec.scores = [_score(v, f"scores[{i}][{j}]") for j, v in enumerate(sc)]
        pr = all_prompts[i]
        if pr is None:
            spec.prompts = [None] * count
        else:
            if len(pr) != count:
                raise ValueError(f"prompts[{i}] has {len(pr)} entries but image {i} has {count} masks.")
            spec.prompts = [coerce_prompts(p, f"prompts[{i}][{j}]") for j, p in enumerate(pr)]
        if spec.file_name in seen_names:
            raise ValueError(
                f"images[{i}] and images[{seen_names[spec.file_name]}] have the same file_name "
                f"{spec.file_name!r}; give dicts with distinct file_name values."
            )
        seen_names[spec.file_name] = i
        if spec.id is not None:
            if spec.id in seen_ids:
                raise ValueError(f"images[{i}] and images[{seen_ids[spec.id]}] have the same id {spec.id}.")
            seen_ids[spec.id] = i
    if seen_ids:  # some images bring their own ids: number the others after the largest
        nxt = max(seen_ids) + 1
        for spec in specs:
            if spec.id is None:
                spec.id = nxt
                nxt += 1
    else:
        for i, spec in enumerate(specs):
            spec.id = i + 1
    return specs
