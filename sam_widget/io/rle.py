"""Masks <-> COCO run-length encoding (RLE), through pycocotools.

COCO's RLE runs over the mask in column-major (Fortran) order, starting with a run of
zeros. ``encode_mask`` computes the runs only inside the mask's bounding box (so a small
object on a 12 MP image costs a few hundred kilobytes of work, not a transposed copy of
the whole image) and lets pycocotools compress them; the result is byte-identical to
``pycocotools.mask.encode`` of the full mask (tested).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ._common import as_bool_mask

__all__ = ["encode_mask", "decode_rle", "mask_bbox_xyxy", "rle_to_mask"]


def mask_bbox_xyxy(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(x0, y0, x1, y1)`` of an ``(H, W)`` mask, end-exclusive (``x1`` is one past the
    last column), or ``None`` for an empty mask. XYXY, like the rest of sam_widget (COCO's
    ``bbox`` is XYWH: ``[x0, y0, x1 - x0, y1 - y0]``).

    ``mask``: bool, or integers holding only 0/1 (or only 0/255); floats, other values and
    other shapes raise ``ValueError`` (threshold float masks first)."""
    mask = as_bool_mask(mask, "mask")
    cols = np.flatnonzero(mask.any(axis=0))
    if cols.size == 0:
        return None
    rows = np.flatnonzero(mask.any(axis=1))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _check_bbox(bbox: Any, height: int, width: int) -> tuple[int, int, int, int]:
    if (
        not isinstance(bbox, (tuple, list, np.ndarray))
        or len(bbox) != 4
        or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) for v in bbox)
    ):
        raise TypeError(f"bbox must be None or 4 whole numbers (x0, y0, x1, y1), got {bbox!r}.")
    x0, y0, x1, y1 = (int(v) for v in bbox)
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise ValueError(
            f"bbox {bbox!r} is not an XYXY end-exclusive box inside the {height} x {width} (H x W) mask."
        )
    return x0, y0, x1, y1


def encode_mask(mask: np.ndarray, bbox: tuple[int, int, int, int] | None = None) -> dict[str, Any]:
    """COCO compressed RLE of an ``(H, W)`` mask: ``{"size": [H, W], "counts": str}``.

    ``mask``: bool, or integers holding only 0/1 (or only 0/255); floats, other values and
    other shapes raise ``ValueError`` (threshold float masks first). ``bbox`` (XYXY,
    end-exclusive, the mask's exact box as :func:`mask_bbox_xyxy` gives it) may be passed
    when already known; one outside the mask raises ``ValueError``. The counts string is
    ASCII (pycocotools' compressed form), ready for JSON.
    """
    from pycocotools import mask as mask_utils

    mask = as_bool_mask(mask, "mask")
    height, width = mask.shape
    if bbox is None:
        bbox = mask_bbox_xyxy(mask)
    else:
        bbox = _check_bbox(bbox, height, width)
    if bbox is None:
        counts = [height * width]
    else:
        x0, y0, x1, y1 = bbox
        crop_h = y1 - y0
        # Column-major runs inside the box: one zero row above and below each column keeps
        # the columns apart, so every transition found lies inside the box.
        padded = np.zeros((x1 - x0, crop_h + 2), dtype=np.int8)
        padded[:, 1:-1] = mask[y0:y1, x0:x1].T
        flat = padded.ravel()
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        col, row = np.divmod(change, crop_h + 2)
        position = (x0 + col).astype(np.int64) * height + y0 + row - 1
        if crop_h == height:  # a run going on from the bottom of a column to the top of the next
            joined = np.flatnonzero(position[1:] == position[:-1])
            position = np.delete(position, np.concatenate([joined, joined + 1]))
        counts = np.diff(position, prepend=0, append=height * width).tolist()
        if len(counts) > 1 and counts[-1] == 0:  # the mask ends on a run of ones
            counts.pop()
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
    return {"size": [int(height), int(width)], "counts": rle["counts"].decode("ascii")}


def _string_counts(counts: str | bytes) -> list[int]:
    """The run lengths of a compressed COCO counts string (the LEB128-like scheme of
    COCO's maskApi ``rleFrString``: 5 bits per character, offset by 48, counts after the
    second stored as differences to the count two places before)."""
    data = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    out: list[int] = []
    p, n = 0, len(data)
    while p < n:
        x = k = 0
        more = True
        while more:
            if p >= n:
                raise ValueError("the RLE counts string ends in the middle of a number")
            c = data[p] - 48
            if not 0 <= c < 64:
                raise ValueError(f"the RLE counts string holds an invalid character {chr(data[p])!r}")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return out


def _rle_counts(raw: Any) -> list[int]:
    """The run lengths of ``rle["counts"]``: a compressed str/bytes, or a list of ints."""
    if isinstance(raw, str):
        try:
            raw = raw.encode("ascii")
        except UnicodeEncodeError as e:
            raise ValueError(f"rle['counts'] holds a non-ASCII character {e.object[e.start]!r}") from None
    if isinstance(raw, (bytes, bytearray)):
        return _string_counts(raw)
    if isinstance(raw, np.ndarray):
        if raw.ndim != 1 or raw.dtype.kind not in "iu":
            raise TypeError(f"rle['counts'] must be a 1-D array of whole numbers, got {raw.dtype} of shape {raw.shape}.")
        return raw.astype(np.int64).tolist()
    if isinstance(raw, (list, tuple)):
        for k, c in enumerate(raw):
            if isinstance(c, (bool, np.bool_)) or not isinstance(c, (int, np.integer)):
                raise TypeError(f"rle['counts'][{k}] must be a whole number, got {c!r}.")
        return [int(c) for c in raw]
    raise TypeError(
        f"rle['counts'] must be a compressed string (str or bytes) or a list of run lengths, not {type(raw).__name__}."
    )


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """``(H, W)`` C-contiguous bool mask of a COCO RLE ``{"size": [H, W], "counts": ...}``:
    ``size`` two whole numbers >= 0, ``counts`` compressed (str/bytes, as pycocotools writes
    it) or uncompressed (a list of whole-number run lengths, column-major, zeros first).
    A non-dict, a missing key or a wrong type raises ``TypeError``/``ValueError`` naming it;
    a malformed RLE (negative runs, runs that do not add up to ``H * W``) ``ValueError``.

    Only the columns the mask touches are filled (so decoding a small object of a 12 MP
    image does not transpose the whole image); pycocotools' ``decode`` gives the same
    pixels (tested).
    """
    if not isinstance(rle, Mapping):
        raise TypeError(f"rle must be a COCO RLE dict {{'size': [H, W], 'counts': ...}}, not {type(rle).__name__}.")
    for key in ("size", "counts"):
        if key not in rle:
            raise ValueError(f"rle has no {key!r} key; a COCO RLE is {{'size': [H, W], 'counts': ...}}.")
    size = rle["size"]
    if (
        not isinstance(size, (list, tuple, np.ndarray))
        or len(size) != 2
        or any(isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)) for v in size)
    ):
        raise TypeError(f"rle['size'] must be [H, W], two whole numbers, got {size!r}.")
    height, width = (int(v) for v in size)
    if height < 0 or width < 0:
        raise ValueError(f"rle['size'] {size!r} is negative")
    counts = _rle_counts(rle["counts"])
    total = height * width
    runs = np.asarray(counts, dtype=np.int64)
    if runs.size and runs.min() < 0:
        raise ValueError("the RLE holds a negative run length")
    ends = np.cumsum(runs)
    if (ends[-1] if ends.size else 0) != total:
        raise ValueError(
            f"the RLE runs add up to {int(ends[-1]) if ends.size else 0} pixels, but its size "
            f"{height} x {width} has {total}"
        )
    out = np.zeros((height, width), dtype=np.bool_)
    starts = ends[0::2][: len(ends[1::2])]  # runs alternate zeros, ones, zeros, ...
    stops = ends[1::2]
    keep = stops > starts
    starts, stops = starts[keep], stops[keep]
    if starts.size == 0 or height == 0:
        return out
    x0 = int(starts[0] // height)
    x1 = int((stops[-1] - 1) // height) + 1
    base = x0 * height
    delta = np.zeros((x1 - x0) * height + 1, dtype=np.int32)
    np.add.at(delta, starts - base, 1)
    np.add.at(delta, stops - base, -1)
    strip = np.cumsum(delta[:-1], dtype=np.int32).astype(np.bool_).reshape(x1 - x0, height)
    out[:, x0:x1] = strip.T
    return out


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Alias of :func:`decode_rle`."""
    return decode_rle(rle)
