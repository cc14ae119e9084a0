"""Label images and per-object masks as PNG files (Pillow).

``<stem>_labels.png``: one channel, 0 = background, ``i`` = object ``i`` (1-based, in
object order; where objects overlap the later one wins, as ``SamWidget.labels``).
8-bit (mode ``L``) up to 255 objects, 16-bit (mode ``I;16``) up to 65535. The label text
of each value is kept in the PNG's text chunk ``sam_widget:labels`` (a JSON list,
entry ``i - 1`` for value ``i``), which :func:`read_label_image` reads back.

``<stem>_<i>_<label>.png`` (with ``per_object=True``): object ``i``'s mask, 1-bit
(mode ``1``) or 8-bit 0/255 (mode ``L``). ``stem`` is the image's file name without its
extension and ``label`` the label text, both made safe for any file system by
:func:`sam_widget.io.safe_name` (spaces, slashes and other punctuation become ``_``,
letters of any script are kept, leading dots dropped, empty -> ``object``/``image``).
Two images whose stems collide get ``_2``, ``_3``, ... appended.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from ._common import FormatError, as_bool_mask, atomic_write, check_output_dir, safe_name
from ._inputs import normalise

__all__ = ["export_png", "read_label_image", "label_image", "LabelObject"]

_TEXT_KEY = "sam_widget:labels"


def label_image(masks: Sequence[np.ndarray] | np.ndarray, shape: tuple[int, int] | None = None) -> np.ndarray:
    """``(H, W)`` int32 label image of masks: 0 background, ``i`` for mask ``i - 1`` (later
    masks on top where they overlap).

    ``masks``: an ``(N, H, W)`` array or a list of ``(H, W)`` masks, all the same shape; each
    mask bool, or integers holding only 0/1 (or only 0/255). Float masks and other values
    raise ``ValueError`` (threshold them first). ``shape`` ``(H, W)``: needed when there are
    no masks; when given with masks, they must have it.
    """
    if isinstance(masks, np.ndarray):
        if masks.ndim != 3:
            raise ValueError(
                f"masks must be an (N, H, W) stack or a list of (H, W) masks, got an array of shape {masks.shape}."
            )
    elif isinstance(masks, (str, bytes, dict)) or not isinstance(masks, Sequence):
        raise TypeError(f"masks must be an (N, H, W) array or a list of (H, W) masks, not {type(masks).__name__}.")
    expected: tuple[int, int] | None = None
    if shape is not None:
        if (
            not isinstance(shape, (tuple, list))
            or len(shape) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0 for v in shape)
        ):
            raise ValueError(f"shape must be (H, W), two whole numbers >= 0, got {shape!r}.")
        expected = (int(shape[0]), int(shape[1]))
    checked = [as_bool_mask(m, f"masks[{j}]") for j, m in enumerate(masks)]
    if not checked:
        if expected is None:
            raise ValueError("label_image needs shape=(H, W) when there are no masks.")
        return np.zeros(expected, np.int32)
    first = checked[0].shape
    for j, m in enumerate(checked):
        if m.shape != first:
            raise ValueError(f"masks[{j}] has shape {m.shape}, the first mask {first}.")
    if expected is not None and first != expected:
        raise ValueError(f"the masks have shape {first} but shape={expected}.")
    out = np.zeros(first, np.int32)
    for i, m in enumerate(checked, start=1):
        out[m] = i
    return out


def _save_png(path: Path, image: Any, pnginfo: Any = None) -> None:
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=pnginfo, optimize=False))


def export_png(
    out_dir: str | os.PathLike[str],
    images: Sequence[Any],
    masks_per_image: Sequence[Any],
    labels: Sequence[Sequence[str]] | None = None,
    *,
    per_object: bool = False,
    bits: Literal[1, 8] = 8,
) -> list[Path]:
    """Write ``<stem>_labels.png`` per image (and, with ``per_object``, one
    ``<stem>_<i>_<label>.png`` mask per object) into ``out_dir`` (created if needed).

    ``images``, ``masks_per_image`` and ``labels`` are as for :func:`sam_widget.io.to_coco`
    (paths, ``(H, W)`` sizes, dicts with ``file_name``, or arrays; per image an
    ``(N, H, W)`` bool stack or a list of masks; per image one label per mask). ``bits``:
    the int 1 or 8, the depth of the per-object masks. Returns the written paths, labels first.

    Every argument is checked, and ``out_dir`` too (an existing *file* there raises
    ``ValueError``), before the first file is written; each file is written atomically.
    More than 65535 objects on one image raise ``ValueError``.
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"bits must be the whole number 1 or 8, not {bits!r} ({type(bits).__name__}).")
    if bits not in (1, 8):
        raise ValueError(f"bits must be 1 or 8, got {bits!r}.")
    if not isinstance(per_object, bool):
        raise TypeError(f"per_object must be True or False, not {per_object!r}.")
    folder = check_output_dir(out_dir)
    specs = normalise(images, masks_per_image, labels)
    for i, spec in enumerate(specs):
        if len(spec.masks) > 65535:
            raise ValueError(
                f"images[{i}] ({spec.file_name!r}) has {len(spec.masks)} objects; a 16-bit label PNG holds 65535."
            )
    stems: list[str] = []
    used: set[str] = set()
    for spec in specs:
        base = safe_name(Path(spec.file_name).stem or spec.file_name, fallback="image")
        stem, k = base, 2
        while stem.lower() in used:
            stem, k = f"{base}_{k}", k + 1
        used.add(stem.lower())
        stems.append(stem)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"cannot create the output directory {str(folder)!r}: {e.strerror or e}.") from None
    from PIL import Image, PngImagePlugin

    written: list[Path] = []
    for spec, stem in zip(specs, stems):
        labels_img = label_image(spec.masks, (spec.height, spec.width))
        if len(spec.masks) <= 255:
            pil = Image.fromarray(labels_img.astype(np.uint8))  # mode L
        else:
            pil = Image.fromarray(labels_img.astype(np.uint16))  # mode I;16
        info = PngImagePlugin.PngInfo()
        info.add_itxt(_TEXT_KEY, json.dumps(spec.labels, ensure_ascii=False))
        target = folder / f"{stem}_labels.png"
        _save_png(target, pil, info)
        written.append(target)
    if per_object:
        for spec, stem in zip(specs, stems):
            for i, (mask, label) in enumerate(zip(spec.masks, spec.labels), start=1):
                target = folder / f"{stem}_{i}_{safe_name(label)}.png"
                if bits == 1:
                    pil = Image.fromarray(np.ascontiguousarray(mask, dtype=bool))  # mode 1
                else:
                    pil = Image.fromarray(mask.astype(np.uint8) * 255)  # mode L, 0/255
                _save_png(target, pil)
                written.append(target)
    return written


@dataclass
class LabelObject:
    """One object of a label image: its ``value`` in the image, its ``(H, W)`` bool
    ``mask`` and its ``label`` text when the PNG carries it (else ``None``)."""

    value: int
    mask: np.ndarray = field(repr=False)
    label: str | None = None


def read_label_image(
    source: str | os.PathLike[str] | np.ndarray, shape: tuple[int, int] | None = None
) -> list[LabelObject]:
    """Objects of a label image (a PNG/TIFF path or an ``(H, W)`` integer array): one
    :class:`LabelObject` per non-zero value, in increasing value order.

    ``shape`` ``(H, W)``: when given, the label image must have it (``ValueError`` naming
    both otherwise). A colour image, a float array or negative values raise
    ``ValueError`` (:class:`~sam_widget.io.FormatError` for an unreadable file).
    """
    names: list[Any] | None = None
    where = "the label array"
    if isinstance(source, (str, os.PathLike)):
        from PIL import Image, UnidentifiedImageError

        path = Path(source).expanduser()
        where = repr(str(path))
        if not path.is_file():
            raise FormatError(path, "the label image does not exist." if not path.exists() else "is not a file.")
        try:
            with Image.open(path) as im:
                im.load()
                if im.mode in ("RGB", "RGBA", "P", "LA", "CMYK", "YCbCr"):
                    raise FormatError(path, f"is a {im.mode} image; a label image has one channel of whole numbers.")
                text = im.info.get(_TEXT_KEY)
                array = np.asarray(im)
        except (UnidentifiedImageError, OSError, SyntaxError) as e:
            raise FormatError(path, f"cannot be read as an image ({e}).") from None
        if isinstance(text, str):
            try:
                parsed = json.loads(text)
                names = parsed if isinstance(parsed, list) else None
            except ValueError:
                names = None
    elif isinstance(source, np.ndarray):
        array = source
    else:
        raise TypeError(f"read_label_image takes a file path or an (H, W) array, not {type(source).__name__}.")
    if array.ndim != 2:
        raise ValueError(f"{where}: a label image is (H, W) with one channel, got shape {array.shape}.")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{where}: a label image holds whole numbers, got dtype {array.dtype}.")
    if shape is not None:
        expected = tuple(int(v) for v in shape)
        if tuple(array.shape) != expected:
            raise ValueError(
                f"{where}: the label image is {array.shape[0]} x {array.shape[1]} but the image is "
                f"{expected[0]} x {expected[1]} (H x W)."
            )
    if array.size and array.min() < 0:
        raise ValueError(f"{where}: a label image cannot hold negative values (found {int(array.min())}).")
    values = np.unique(array)
    out = []
    for v in values[values > 0].tolist():
        label = names[v - 1] if names is not None and v - 1 < len(names) and isinstance(names[v - 1], str) else None
        out.append(LabelObject(value=int(v), mask=array == v, label=label))
    return out
