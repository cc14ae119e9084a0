"""Per-image state of a session, what it hands out per image, and the bound on full-size masks.

* :class:`Page` -- one image's undo history and readiness (no pixels: those are in the
  :class:`~sam_widget.session.images.ImageSet`); :class:`Pages` -- all of them, which one is
  current, and where each image sits on the canvas.
* :class:`ImageResult` / :class:`Results` -- ``session.results[i]``: the objects of image
  ``i`` with their masks and label image.
* :class:`StoredAnswer` -- a committed object's mask standing in for a prediction while the
  object is being edited (so ``mask``, ``candidates`` and refinement work the same way).
* :class:`MaskBudget` -- keeps the full-size candidate masks that predictions cache under a
  byte budget: the history keeps low-resolution logits; full-size masks of older steps are
  dropped and recomputed from them if they are asked for again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import as_count
from ..images import ImageError
from ..render import resize_mask
from ..state import History, ObjectRecord
from ..viewport import Viewport, fit_size
from .images import ImageSet

if TYPE_CHECKING:  # pragma: no cover
    from .core import Session

__all__ = ["Page", "Pages", "ImageResult", "Results", "StoredAnswer", "MaskBudget", "DEFAULT_MASK_BUDGET"]

DEFAULT_MASK_BUDGET = 64 * 1024 * 1024
"""Bytes of full-size candidate masks a session keeps cached (about five 12-megapixel masks)."""


class Page:
    """One image of a session: its :class:`~sam_widget.state.History` and whether its embedding is ready.

    ``ready`` is set once the image is encoded (or found unusable: ``error`` then says why;
    ``encode_s``: how long the encoder took, None for a cache hit);
    ``seg_image`` is the segmenter's copy of the image after ``set_image`` for this page (to
    notice when another image took the segmenter meanwhile).
    """

    def __init__(self, index: int, history_limit: int) -> None:
        self.index = index
        self.history = History(limit=history_limit)
        self.ready = threading.Event()
        self.error: str | None = None
        self.seg_image: Any = None
        self.encode_started: float | None = None
        self.encode_s: float | None = None  # None: the embedding came from a cache / prefetch
        self.prefetched = False  # its embedding was computed in the background
        self.embedding: dict | None = None  # how the embedding was had (EngineLink.set_image)


class Pages:
    """One :class:`Page` per image (made when first needed), the current index, and the canvas.

    The canvas is the single image's display size; for a set, the first image's shape with
    the longest side of the largest of the first ten images (at most ``display_size``) --
    every image is fitted into it, centred, never enlarged.
    ``keep_neighbours``: keep the previous and next images' pixels in memory too.
    """

    def __init__(self, images: ImageSet, single: bool, display_size: int, history_limit: int, keep_neighbours: bool) -> None:
        self.images = images
        self.display_size = display_size
        self.canvas_hw = self._choose_canvas(single, display_size)
        self.history_limit = as_count(history_limit, "history_limit")  # undo steps kept per image
        self.keep_neighbours = keep_neighbours
        self._pages: list[Page | None] = [None] * len(images)
        self.index = 0

    def _choose_canvas(self, single: bool, display_size: int) -> tuple[int, int]:
        if single:
            return fit_size(self.images.size(0), display_size)
        fit_size((1, 1), display_size)  # checks display_size
        sizes = []
        for i in range(min(len(self.images), 10)):  # the first few images (file headers only)
            try:
                sizes.append(self.images.size(i))
            except ImageError:
                continue
        if not sizes:
            return round(display_size * 3 / 4), display_size
        (H, W), longest = sizes[0], min(display_size, max(max(hw) for hw in sizes))
        s = longest / max(H, W)  # the first image's shape, as large as the largest of them is shown
        return max(1, round(H * s)), max(1, round(W * s))

    def page(self, i: int) -> Page:
        page = self._pages[i]
        if page is None:
            page = self._pages[i] = Page(i, self.history_limit)
        return page

    def get(self, i: int) -> Page | None:
        """Page ``i`` if it was ever needed, else None."""
        return self._pages[i]

    def existing(self) -> list[Page]:
        return [p for p in self._pages if p is not None]

    def enter(self, i: int) -> None:
        """Make image ``i`` current: keep it (and its neighbours) in memory, read it now."""
        self.index = i
        self.images.keep({i - 1, i, i + 1} if self.keep_neighbours else {i})
        page = self.page(i)
        try:
            self.images.load(i)
        except ImageError as exc:
            page.error = str(exc)
            page.ready.set()
        else:
            if page.error is not None:  # it was unreadable before and can be read now
                page.error = None
                page.ready.clear()

    def viewport(self) -> Viewport:
        """Where the current image sits on the canvas."""
        page = self.page(self.index)
        if page.error is not None:
            return Viewport(self.canvas_hw, self.canvas_hw)
        hw = self.images.load(self.index).shape[:2]
        disp = fit_size(hw, self.display_size)
        if disp[0] > self.canvas_hw[0] or disp[1] > self.canvas_hw[1]:
            disp = fit_size(hw, self.canvas_hw)
        return Viewport(hw, disp, self.canvas_hw)

    def image_size(self, index: int) -> tuple[int, int]:
        """``(H, W)`` of image ``index``; ``(0, 0)`` if it cannot be read."""
        try:
            return self.images.size(index)
        except ImageError:
            return (0, 0)


@dataclass(frozen=True)
class ImageResult:
    """The objects of one image. ``masks``: ``(N, H, W)`` bool; ``labels``: ``(H, W)`` int32,
    0 = background, ``i`` = object ``i`` (1-based, later objects on top).

    ``path``: the image file (None for an image given in memory); ``image_hw``: ``(H, W)``
    (``(0, 0)`` when the file cannot be read); ``next_object_id``: the id the next object
    will get (ids are never reused; each object's colour follows its id).
    """

    index: int
    name: str
    objects: tuple[ObjectRecord, ...]
    image_hw: tuple[int, int]
    path: str | None = None
    next_object_id: int = 1

    @property
    def masks(self) -> np.ndarray:
        if not self.objects:
            return np.zeros((0, *self.image_hw), bool)
        return np.stack([o.mask for o in self.objects])

    @property
    def labels(self) -> np.ndarray:
        hw = self.objects[0].mask.shape if self.objects else self.image_hw  # (the file may be unreadable now)
        out = np.zeros(hw, np.int32)
        for i, o in enumerate(self.objects, start=1):
            out[o.mask] = i
        return out


class Results(Sequence):
    """``session.results``: one :class:`ImageResult` per image (computed when asked for)."""

    def __init__(self, session: "Session") -> None:
        self._session = session

    def __len__(self) -> int:
        return len(self._session.images)

    def __getitem__(self, index: int) -> ImageResult:  # type: ignore[override]
        s = self._session
        i = s.images._check(index if not isinstance(index, (int, np.integer)) or index >= 0 else len(self) + index)
        page = s._pages.get(i)
        snap = page.history.current if page is not None else None
        return ImageResult(
            i, s.images.names[i], snap.objects if snap else (), s.image_size(i), s.images.path(i), snap.next_object_id if snap else 1
        )

    def __repr__(self) -> str:
        return f"Results({len(self)} images, {sum(len(r.objects) for r in self)} objects)"


class StoredAnswer:
    """A committed object's mask in place of a ``Prediction`` (one candidate) while it is edited.

    ``logits`` are the object's low-res logits if it has them; for a mask brought in from
    elsewhere they are derived from the mask by the engine the first time it is refined.
    """

    def __init__(self, obj: ObjectRecord) -> None:
        self.object = obj
        self.scores = np.array([obj.score], np.float32)
        self.logits = obj.logits
        self.image_size = tuple(obj.mask.shape)

    def __len__(self) -> int:
        return 1

    def __repr__(self) -> str:
        return f"StoredAnswer(object {self.object.id} {self.object.label!r})"

    @property
    def best(self) -> int:
        return 0

    @property
    def masks(self) -> np.ndarray:
        return self.object.mask[None]

    def mask(self, index: int) -> np.ndarray:
        self._check(index)
        return self.object.mask

    def mask_at_size(self, index: int, size: tuple[int, int]) -> np.ndarray:
        self._check(index)
        return resize_mask(self.object.mask, tuple(size))

    @property
    def cached_mask_bytes(self) -> int:
        return 0

    def drop_masks(self) -> None:
        pass

    @staticmethod
    def _check(index: int) -> None:
        if index != 0:
            raise IndexError(f"mask index {index} out of range for 1 candidates.")


class MaskBudget:
    """Least-recently-used predictions whose cached full-size masks stay under ``max_bytes``.

    ``touch(pred)`` after reading a full-size mask of ``pred``: it becomes the most recent
    one, and older ones drop their full-size masks (``pred.drop_masks()``) until the total
    fits. The most recent prediction is never dropped, so the mask being looked at stays.
    """

    def __init__(self, max_bytes: int = DEFAULT_MASK_BUDGET) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"mask_cache_bytes must be a non-negative int, got {max_bytes!r}.")
        self.max_bytes = max_bytes
        self._preds: OrderedDict[int, Any] = OrderedDict()
        self._lock = threading.Lock()

    def touch(self, pred: Any) -> None:
        with self._lock:
            self._preds.pop(id(pred), None)
            self._preds[id(pred)] = pred
            total = sum(p.cached_mask_bytes for p in self._preds.values())
            dropped = False
            while total > self.max_bytes and len(self._preds) > 1:
                _, old = self._preds.popitem(last=False)
                total -= old.cached_mask_bytes
                old.drop_masks()
                dropped = True
            for key in [k for k, p in self._preds.items() if p.cached_mask_bytes == 0 and p is not pred]:
                del self._preds[key]
        if dropped:
            _release_freed_memory()

    @property
    def nbytes(self) -> int:
        """Bytes of full-size masks held by the predictions it tracks."""
        with self._lock:
            return sum(p.cached_mask_bytes for p in self._preds.values())


def _release_freed_memory() -> None:
    """Hand freed heap pages back to the OS (glibc ``malloc_trim``; a no-op elsewhere).

    Full-size masks are megabytes each; glibc serves such sizes from its heaps once its
    adaptive mmap threshold has grown, and a freed mask's pages then stay in the process
    (RSS grew ~7 MB per click+clear round on a 12-megapixel image although no mask was
    kept). Trimming after dropping masks returns them.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


_TRIM: list = []


def _malloc_trim():
    if not _TRIM:
        fn = None
        try:
            import ctypes
            import sys

            if sys.platform.startswith("linux"):
                fn = ctypes.CDLL("libc.so.6").malloc_trim
                fn.argtypes, fn.restype = [ctypes.c_size_t], ctypes.c_int
        except (OSError, AttributeError):
            fn = None
        _TRIM.append(fn)
    return _TRIM[0]
