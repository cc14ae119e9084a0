"""Checking masks and label images brought into a session (``add_object``, ``set_objects``)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

__all__ = ["as_object_mask", "masks_from_label_image", "label_names"]


def as_object_mask(mask: Any, image_hw: tuple[int, int]) -> np.ndarray:
    """A new ``(H, W)`` bool array from ``mask`` (bool, or numbers that are all 0 / 1).

    Raises ``TypeError`` for a non-array or a non-numeric dtype, ``ValueError`` for the wrong
    shape, values other than 0 / 1, or an empty mask.
    """
    if not isinstance(mask, np.ndarray):
        raise TypeError(f"mask must be an (H, W) NumPy array of bool, not {type(mask).__name__}.")
    H, W = image_hw
    if mask.shape != (H, W):
        raise ValueError(f"mask must have the image's shape (H, W) = ({H}, {W}), got {mask.shape}.")
    if mask.dtype == np.bool_:
        out = mask.copy()
    elif mask.dtype.kind in "iuf":
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("mask must hold only 0 / 1 (or True / False) values.")
        out = mask != 0
    else:
        raise TypeError(f"mask must be bool (or 0 / 1 numbers), not {mask.dtype}.")
    if not out.any():
        raise ValueError("mask is empty (no pixel set); an object needs at least one pixel.")
    return out


def masks_from_label_image(label_image: Any, image_hw: tuple[int, int]) -> list[np.ndarray]:
    """One ``(H, W)`` bool mask per non-zero value of a label image, in increasing value order.

    ``label_image``: an ``(H, W)`` integer (or bool) array, 0 = background, or the path of a
    single-channel image file (e.g. a 16-bit PNG) holding one. Raises ``TypeError`` /
    ``ValueError`` naming what is wrong.
    """
    if isinstance(label_image, (str, os.PathLike)):
        label_image = _read_label_file(label_image)
    if not isinstance(label_image, np.ndarray):
        raise TypeError(f"label_image must be an (H, W) integer array or a file path, not {type(label_image).__name__}.")
    H, W = image_hw
    if label_image.shape != (H, W):
        raise ValueError(f"label_image must have the image's shape (H, W) = ({H}, {W}), got {label_image.shape}.")
    if label_image.dtype == np.bool_:
        label_image = label_image.astype(np.uint8)
    if label_image.dtype.kind not in "iu":
        raise TypeError(f"label_image must hold integers (0 = background), not {label_image.dtype}.")
    if label_image.size and label_image.min() < 0:
        raise ValueError("label_image has negative values; use 0 for background and 1, 2, ... for objects.")
    values = np.unique(label_image)
    return [label_image == v for v in values if v != 0]


def label_names(label_image: Any, count: int) -> list[str | None]:
    """The label text of each object of a label image file written by
    :func:`sam_widget.io.export_png` (its ``sam_widget:labels`` text chunk, one entry per
    value 1, 2, ...), else ``None`` per object (arrays, other files)."""
    if not isinstance(label_image, (str, os.PathLike)):
        return [None] * count
    import json

    from PIL import Image

    try:
        with Image.open(os.path.expanduser(os.fspath(label_image))) as im:
            names = json.loads(im.info.get("sam_widget:labels", "null"))
    except (OSError, ValueError):
        names = None
    if not isinstance(names, list) or len(names) != count or not all(isinstance(n, str) for n in names):
        return [None] * count
    return list(names)


def _read_label_file(path: Any) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    p = os.path.expanduser(os.fspath(path))
    try:
        with Image.open(p) as im:
            if im.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
                raise ValueError(
                    f"label image {p!r} has mode {im.mode!r}; it must have one channel of integer labels (L, P, I;16, I)."
                )
            return np.asarray(im).astype(np.int64)
    except FileNotFoundError:
        raise ValueError(f"label image file {p!r} does not exist.") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"could not read {p!r} as a label image ({exc}).") from None
