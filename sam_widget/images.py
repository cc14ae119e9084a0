"""Turning whatever the user hands us into an ``H x W x 3`` uint8 RGB array.

No torch here: the UI, CLI and engine all share this normalisation.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ImageError", "to_rgb_uint8", "load_image", "sample_image_path"]


class ImageError(ValueError):
    """The image could not be understood. Subclass of ValueError."""


def sample_image_path() -> Path:
    """Path of the small, licence-clean sample photo shipped with the package (PNG, RGB)."""
    return Path(__file__).parent / "assets" / "sample.png"


def load_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file into ``H x W x 3`` uint8 RGB (EXIF orientation applied)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = Path(path)
    if not p.exists():
        raise ImageError(f"Image file {str(p)!r} does not exist.")
    if p.is_dir():
        raise ImageError(f"{str(p)!r} is a directory, not an image file.")
    try:
        with Image.open(p) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return _pil_to_rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageError(f"Could not read {str(p)!r} as an image ({exc}).") from None


def _pil_to_rgb(im: Any) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return to_rgb_uint8(np.asarray(im))
    if im.mode == "F":
        # Pillow's own convention for 32-bit float images is the 0..255 scale of mode "L"
        # (``convert("L")`` clips to it); a float array in [0, 1] passed through
        # ``Image.fromarray`` is mode "F" too. Accept both; reject anything else.
        a = np.asarray(im, dtype=np.float32)
        if a.size and np.isfinite(a).all() and a.min() >= 0.0 and 1.0 < a.max() <= 255.0:
            return to_rgb_uint8(np.rint(a).astype(np.uint8))
        return to_rgb_uint8(a)
    try:
        if im.mode == "La":  # premultiplied alpha: Pillow only converts it to LA
            im = im.convert("LA")
        if im.mode in ("RGBA", "RGBa", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")  # alpha is then dropped by to_rgb_uint8
        elif im.mode != "RGB":
            im = im.convert("RGB")
    except ValueError as exc:
        raise ImageError(f"Cannot convert a PIL image of mode {im.mode!r} to RGB ({exc}).") from None
    return to_rgb_uint8(np.asarray(im))


def to_rgb_uint8(image: Any) -> np.ndarray:
    """Normalise an image to a C-contiguous ``H x W x 3`` uint8 RGB array.

    Accepts:
      * ``np.ndarray`` of shape ``H x W``, ``H x W x 1``, ``H x W x 3`` or ``H x W x 4``
        (alpha is dropped) with dtype uint8, uint16 (scaled by 255/65535), bool
        (False -> 0, True -> 255), or float in [0, 1] (scaled by 255 and rounded).
        ``int32``/``int64`` arrays (e.g. from PIL mode "I") are taken as 16-bit when
        their values fit in [0, 65535] and as 8-bit when they fit in [0, 255].
      * a ``PIL.Image.Image`` in any mode;
      * a ``str`` or ``os.PathLike`` naming an image file.

    Raises ``TypeError`` for other types and :class:`ImageError` (a ValueError) for
    empty, 1-D / 4-D arrays, NaN / inf, floats outside [0, 1] and unreadable files.

    The result is always a new, writeable array: never the caller's array nor a view of it.
    A PIL image of mode "F" may hold values in [0, 1] or on Pillow's 0..255 scale.
    """
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(
            "image must be a NumPy array (H x W or H x W x C), a PIL image or a file path, "
            f"not {type(image).__name__}."
        )
    a = image
    if a.ndim not in (2, 3):
        raise ImageError(f"image must be H x W or H x W x C, got an array with shape {a.shape}.")
    if a.ndim == 3 and a.shape[2] not in (1, 3, 4):
        raise ImageError(
            f"image must have 1, 3 or 4 channels in its last axis, got shape {a.shape}."
        )
    if a.size == 0 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"image is empty (shape {a.shape}).")
    if a.ndim == 3 and a.shape[2] == 4:
        a = a[..., :3]
    if a.dtype.byteorder not in ("=", "|"):  # e.g. big-endian 16-bit from PIL "I;16B"
        a = a.astype(a.dtype.newbyteorder("="))
    if a.dtype == np.uint8:
        out = a.copy()  # never hand back (a view of) the caller's array
    elif a.dtype == np.bool_:
        out = a.astype(np.uint8) * 255
    elif a.dtype == np.uint16:
        out = np.rint(a.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    elif a.dtype.kind in "iu":
        lo, hi = int(a.min()), int(a.max())
        if lo < 0 or hi > 65535:
            raise ImageError(
                f"integer image values must lie in [0, 65535], got [{lo}, {hi}] ({a.dtype})."
            )
        if hi <= 255:
            out = a.astype(np.uint8)
        else:
            out = np.rint(a.astype(np.float32) * (255.0 / 65535.0)).astype(np.uint8)
    elif a.dtype.kind == "f":
        if not np.isfinite(a).all():
            raise ImageError("image contains NaN or infinite values.")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            raise ImageError(
                f"float images must have values in [0, 1], got [{lo:.4g}, {hi:.4g}]; "
                "divide by 255 (or convert to uint8) first."
            )
        out = np.rint(a.astype(np.float64) * 255.0).astype(np.uint8)
    else:
        raise TypeError(f"unsupported image dtype {a.dtype}; use uint8, uint16, bool or float.")
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    elif out.shape[2] == 1:
        out = np.repeat(out, 3, axis=2)
    return np.ascontiguousarray(out)
