"""The images of a session: a list of paths, arrays or PIL images, a folder or a glob, read lazily.

Files are read only when an image is shown or prefetched, and only the images the session
asks to keep (the current one and its neighbours) stay in memory: a 500-image folder opens at
once and never holds 500 images. An image that cannot be read (missing, damaged, deleted while
the session runs) raises :class:`~sam_widget.images.ImageError` naming the file when it is
needed; the other images are not affected.
"""

from __future__ import annotations

import glob as _glob
import os
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from ..images import ImageError, load_image, to_rgb_uint8

__all__ = ["ImageSet", "IMAGE_SUFFIXES", "resolve_images"]

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".pbm"}
)
"""File name endings a folder is searched for (case-insensitive)."""

_GLOB_CHARS = re.compile(r"[*?\[]")


def _natural_key(path: str) -> list:
    """``img2.png`` before ``img10.png``."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path)]


def resolve_images(images: Any) -> tuple[list[Any], bool]:
    """``(sources, single)``: what the user passed, as a list of image sources.

    ``single`` is True for one image given on its own (an array, a PIL image, a file path);
    a list / tuple, a folder or a glob pattern give a set (``single`` False), in natural
    name order for folders and globs. Raises ``ValueError`` for an empty list, an empty
    folder, a glob that matches nothing, and ``TypeError`` for a list item that is not an
    image source.
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("the list of images is empty; pass at least one image.")
        for k, item in enumerate(images):
            if isinstance(item, (list, tuple, dict)) or item is None:
                raise TypeError(
                    f"image {k} of the list is a {type(item).__name__}; each item must be an array, a PIL image or a path."
                )
        return list(images), False
    if isinstance(images, (str, os.PathLike)):
        text = os.fspath(images)
        if isinstance(text, bytes):
            raise TypeError("image paths must be str or os.PathLike, not bytes.")
        path = Path(text).expanduser()
        if path.is_dir():
            files = [str(p) for p in path.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES]
            if not files:
                raise ValueError(
                    f"the folder {str(path)!r} holds no image files (looked for {', '.join(sorted(IMAGE_SUFFIXES))})."
                )
            return sorted(files, key=_natural_key), False
        if not path.exists() and _GLOB_CHARS.search(text):
            files = [p for p in _glob.glob(os.path.expanduser(text), recursive=True) if os.path.isfile(p)]
            if not files:
                raise ValueError(f"no file matches the pattern {text!r}.")
            return sorted(files, key=_natural_key), False
    return [images], True


def _absolute(source: Any) -> Any:
    """A str / os.PathLike path as an absolute str path (``~`` expanded); anything else as is."""
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if isinstance(text, str):
            return os.path.abspath(os.path.expanduser(text))
    return source


class ImageSet(Sequence):
    """The session's images, loaded on demand. ``images[i]`` is image ``i`` as ``H x W x 3``
    uint8 RGB (read-only; may raise ``ImageError``); ``len(images)``; :attr:`names`;
    :meth:`path` (the file, or None for an image given in memory). ``loaded``: images read
    already, by index.

    Arrays and PIL images are converted when first used (the caller's objects are kept, not
    copied); files are read when first used and dropped again when the session moves on
    (:meth:`keep`).
    """

    def __init__(self, sources: Iterable[Any], loaded: dict[int, np.ndarray] | None = None) -> None:
        # file paths made absolute now: they are read later, on background threads, and the
        # user's cells may change the working directory meanwhile (%cd)
        self._sources = [_absolute(s) for s in sources]
        self._names = [self._name_of(k, s) for k, s in enumerate(self._sources)]
        self._cache: dict[int, np.ndarray] = {}
        self._sizes: dict[int, tuple[int, int]] = {}
        self._keep: set[int] = set()
        for k, rgb in (loaded or {}).items():  # images read already (kept until keep() says otherwise)
            rgb.setflags(write=False)
            self._cache[k], self._sizes[k] = rgb, rgb.shape[:2]
            self._keep.add(k)
        self._lock = threading.Lock()
        self._loading: dict[int, threading.Lock] = {}

    @staticmethod
    def _name_of(k: int, source: Any) -> str:
        if isinstance(source, (str, os.PathLike)):
            return Path(os.fspath(source)).name or os.fspath(source)
        filename = getattr(source, "filename", None)  # a PIL image opened from a file
        if isinstance(filename, str) and filename:
            return Path(filename).name
        return f"image {k + 1}"

    # ------------------------------------------------------------------ Sequence
    def __len__(self) -> int:
        return len(self._sources)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        return self.load(self._check(index))

    def __repr__(self) -> str:
        more = f", ... ({len(self)} images)" if len(self) > 3 else ""
        return f"ImageSet([{', '.join(repr(n) for n in self._names[:3])}{more}])"

    @property
    def names(self) -> list[str]:
        """A display name per image: the file name, or "image N" (1-based) for arrays."""
        return list(self._names)

    def source(self, index: int) -> Any:
        """What was passed for image ``index``: a path string, an array or a PIL image."""
        return self._sources[self._check(index)]

    def path(self, index: int) -> str | None:
        """The file path of image ``index``, or None for an in-memory image."""
        s = self._sources[self._check(index)]
        return os.fspath(s) if isinstance(s, (str, os.PathLike)) else None

    def _check(self, index: Any) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"image index must be an int, not {type(index).__name__}.")
        n = len(self)
        if not 0 <= index < n:
            raise IndexError(f"image {index} does not exist; there are {n} images (0..{n - 1}).")
        return int(index)

    # ------------------------------------------------------------------ loading
    def load(self, index: int) -> np.ndarray:
        """Image ``index`` as read-only ``H x W x 3`` uint8 RGB. Raises ``ImageError`` (naming
        the file) when it cannot be read; nothing is cached then, so a later call tries again."""
        with self._lock:
            rgb = self._cache.get(index)
            if rgb is not None:
                return rgb
            gate = self._loading.setdefault(index, threading.Lock())
        with gate:  # one reader per image; a second caller waits for the first one's result
            with self._lock:
                rgb = self._cache.get(index)
            if rgb is not None:
                return rgb
            rgb = self._read(index)
            rgb.setflags(write=False)
            with self._lock:
                self._sizes[index] = rgb.shape[:2]
                if index in self._keep:
                    self._cache[index] = rgb
            return rgb

    def _read(self, index: int) -> np.ndarray:
        source = self._sources[index]
        try:
            if isinstance(source, (str, os.PathLike)):
                return load_image(source)
            return to_rgb_uint8(source)
        except ImageError as exc:
            raise ImageError(f"image {index + 1} of {len(self)} ({self._names[index]}): {exc}") from None
        except TypeError as exc:
            raise ImageError(f"image {index + 1} of {len(self)} ({self._names[index]}): {exc}") from None

    @property
    def in_memory(self) -> list[int]:
        """Indices of the images whose pixels are held now."""
        with self._lock:
            return sorted(self._cache)

    def keep(self, indices: Iterable[int]) -> None:
        """Keep these images in memory once read; drop every other image's pixels."""
        with self._lock:
            self._keep = {int(i) for i in indices}
            for k in [k for k in self._cache if k not in self._keep]:
                del self._cache[k]

    def size(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of image ``index``; for a file not read yet, from its header (cheap).
        Raises ``ImageError`` when the file cannot be read."""
        index = self._check(index)
        with self._lock:
            hw = self._sizes.get(index)
        if hw is not None:
            return hw
        source = self._sources[index]
        if isinstance(source, (str, os.PathLike)):
            hw = _header_size(source, f"image {index + 1} of {len(self)} ({self._names[index]})")
        elif isinstance(source, np.ndarray) and source.ndim in (2, 3):
            hw = (int(source.shape[0]), int(source.shape[1]))
        elif hasattr(source, "size") and isinstance(getattr(source, "size"), tuple):  # PIL: (w, h)
            hw = (int(source.size[1]), int(source.size[0]))
        else:
            hw = self.load(index).shape[:2]
        with self._lock:
            self._sizes[index] = hw
        return hw


def _header_size(path: Any, what: str) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    p = Path(os.fspath(path))
    try:
        with Image.open(p) as im:
            w, h = im.size
            try:
                orientation = im.getexif().get(0x0112)
            except Exception:  # noqa: BLE001 - a damaged EXIF block: the pixels decide later
                orientation = None
    except FileNotFoundError:
        raise ImageError(f"{what}: Image file {str(p)!r} does not exist.") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ImageError(f"{what}: Could not read {str(p)!r} as an image ({exc}).") from None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)
