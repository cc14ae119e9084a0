"""The result of "segment everything": proposals with lazily computed masks.

Conventions (the same as the rest of sam_widget):
  * masks are ``(H, W)`` bool at the original image size (``(N, H, W)`` stacked);
  * ``bbox`` is COCO's ``(x, y, width, height)`` (XYWH) in pixels: ``x, y`` are the column and
    row of the top-left pixel of the mask, ``width, height`` the number of columns and rows
    it spans (what ``pycocotools.mask.toBbox`` gives). segment_anything's
    ``SamAutomaticMaskGenerator`` writes ``width - 1, height - 1`` there (its boxes end on
    the last pixel); ours do not;
  * ``box`` is the same rectangle as ``(x0, y0, x1, y1)`` (XYXY) with pixel-edge
    coordinates (``x1 = x + width``), usable as a box prompt for :meth:`Segmenter.predict`;
  * points are ``(x, y)`` = (column, row) in image pixels.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Callable, Iterator, overload

import numpy as np
from PIL import Image

__all__ = ["Proposal", "Proposals"]


class _Source:
    """How the masks of one crop are made from their low-res logits (set by the runner).

    ``full(logits) -> (H, W) bool`` at the crop's size, ``display(logits, (h, w)) ->
    (h, w) bool`` at a display size of the crop, ``stats(logits) -> (stability, area)``
    (for values a fast run did not need to decide); ``crop_box`` ``(x0, y0, x1, y1)`` and
    ``image_size`` ``(H, W)`` place the crop in the image.
    """

    def __init__(
        self,
        full: Callable[[np.ndarray], np.ndarray],
        display: Callable[[np.ndarray, tuple[int, int]], np.ndarray],
        stats: Callable[[np.ndarray], tuple[float, int]] | None,
        crop_box: tuple[int, int, int, int],
        image_size: tuple[int, int],
    ) -> None:
        self.full = full
        self.display = display
        self.stats = stats
        self.crop_box = crop_box
        self.image_size = image_size

    @property
    def whole_image(self) -> bool:
        H, W = self.image_size
        return self.crop_box == (0, 0, W, H)


class Proposal:
    """One object proposal of :meth:`Segmenter.segment_everything`.

    Attributes:
      score: the model's predicted IoU of the mask (``predicted_iou`` in segment_anything).
      stability: the stability score (IoU of the mask thresholded at ``mask_threshold +-
        stability_score_offset``).
      area: number of mask pixels.
      bbox: ``(x, y, width, height)`` COCO XYWH, pixels (see the module docstring).
      point: ``(x, y)`` image pixels of the grid point that prompted this mask.
      crop_box: ``(x0, y0, x1, y1)`` XYXY pixel edges of the image crop it was found in
        (the whole image unless ``crop_n_layers > 0``).
      mask: ``(H, W)`` bool at the image size, computed on first access and then kept.

    In fast mode, when no stability threshold had to be decided (``stability_score_thresh
    = 0``), ``stability`` and ``area`` are computed on first access.
    """

    __slots__ = ("score", "_stability", "_area", "bbox", "point", "crop_box", "_logits", "_source", "_mask", "_lock")

    def __init__(
        self,
        score: float,
        stability: float | None,
        area: int | None,
        bbox: tuple[int, int, int, int],
        point: tuple[float, float],
        crop_box: tuple[int, int, int, int],
        logits: np.ndarray | None,
        source: _Source | None,
        mask: np.ndarray | None = None,
    ) -> None:
        self.score = float(score)
        self._stability = None if stability is None else float(stability)
        self._area = None if area is None else int(area)
        self.bbox = tuple(int(v) for v in bbox)
        self.point = (float(point[0]), float(point[1]))
        self.crop_box = tuple(int(v) for v in crop_box)
        self._logits = logits
        self._source = source
        self._mask = mask
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        x, y, w, h = self.bbox
        return (
            f"Proposal(score={self.score:.3f}, stability={self.stability:.3f}, area={self.area}, "
            f"bbox=(x={x}, y={y}, w={w}, h={h}), point=({self.point[0]:.1f}, {self.point[1]:.1f}))"
        )

    @property
    def stability(self) -> float:
        """Stability score (float; NaN for a mask with no pixel above ``mask_threshold -
        stability_score_offset``, as segment_anything computes it)."""
        if self._stability is None:
            self._fill_stats()
        return self._stability

    @property
    def area(self) -> int:
        """Number of mask pixels."""
        if self._area is None:
            if self._mask is not None:
                self._area = int(np.count_nonzero(self._mask))
            else:
                self._fill_stats()
        return self._area

    def _fill_stats(self) -> None:
        stability, area = self._source.stats(self._logits)
        self._stability, self._area = float(stability), int(area)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """``(x0, y0, x1, y1)`` XYXY pixel edges of the mask's bounding box (``x1 = x + width``)."""
        x, y, w, h = self.bbox
        return (x, y, x + w, y + h)

    @property
    def image_size(self) -> tuple[int, int]:
        """``(H, W)`` of the image."""
        return self._source.image_size

    @property
    def logits(self) -> np.ndarray | None:
        """The mask's low-resolution logits ``(h, w)`` float32 (SAM's low-res mask of its crop:
        ``Segmenter.low_res_size`` for a whole-image proposal, usable as ``mask_input[None]`` to
        refine it), or None for a mask changed by ``min_mask_region_area``. A new array each time."""
        return None if self._logits is None else np.array(self._logits, dtype=np.float32)

    @property
    def mask(self) -> np.ndarray:
        """``(H, W)`` bool mask at the image size (computed once, then kept; read-only)."""
        if self._mask is None:
            with self._lock:
                if self._mask is None:
                    m = self._full()
                    m.setflags(write=False)
                    self._mask = m
        return self._mask

    def _full(self) -> np.ndarray:
        src = self._source
        crop = src.full(self._logits)
        if src.whole_image:
            return crop
        x0, y0, x1, y1 = src.crop_box
        out = np.zeros(src.image_size, dtype=bool)
        out[y0:y1, x0:x1] = crop
        return out

    def mask_at_size(self, size: tuple[int, int]) -> np.ndarray:
        """The mask resampled to ``size = (h, w)`` (for display), ``(h, w)`` bool.

        Made from the low-res logits in one resampling (like
        :meth:`Prediction.mask_at_size`), so it costs ``h * w`` work, not the image's;
        edges may differ from ``mask`` by a fraction of a display pixel. At the image's own
        size it is exactly ``mask``.
        """
        h, w = _check_size(size)
        H, W = self.image_size
        if (h, w) == (H, W):
            return self.mask
        if self._mask is not None and self._logits is None:  # an edited mask: no logits
            return np.asarray(Image.fromarray(self._mask).resize((w, h), Image.NEAREST))
        src = self._source
        if src.whole_image:
            return src.display(self._logits, (h, w))
        x0, y0, x1, y1 = src.crop_box
        sy, sx = h / H, w / W
        dy0, dy1 = round(y0 * sy), max(round(y1 * sy), round(y0 * sy) + 1)
        dx0, dx1 = round(x0 * sx), max(round(x1 * sx), round(x0 * sx) + 1)
        out = np.zeros((h, w), dtype=bool)
        part = src.display(self._logits, (dy1 - dy0, dx1 - dx0))
        out[dy0:dy1, dx0:dx1] = part[: h - dy0, : w - dx0]
        return out

    def to_record(self) -> dict[str, Any]:
        """A dict with the keys of ``SamAutomaticMaskGenerator.generate``'s records
        (``segmentation`` the ``(H, W)`` bool mask; ``bbox`` and ``crop_box`` COCO XYWH)."""
        x0, y0, x1, y1 = self.crop_box
        return {
            "segmentation": self.mask,
            "area": self.area,
            "bbox": list(self.bbox),
            "predicted_iou": self.score,
            "point_coords": [list(self.point)],
            "stability_score": self.stability,
            "crop_box": [x0, y0, x1 - x0, y1 - y0],
        }


class Proposals(Sequence):
    """The proposals of one "segment everything" run: a read-only list of :class:`Proposal`.

    Sorted by ``score`` (predicted IoU), highest first (ties keep the order in which the
    masks were decoded).

    Attributes:
      partial: True when the run was cancelled (or this is an intermediate result handed
        to ``on_batch``): only the points decoded so far were used.
      image_size: ``(H, W)`` of the image.
      params: the parameters of the run (a dict, names as in ``SamAutomaticMaskGenerator``).
      stats: counts and timings of the run (points decoded, masks through each filter,
        seconds).
    """

    def __init__(
        self,
        proposals: list[Proposal],
        image_size: tuple[int, int],
        partial: bool,
        params: dict[str, Any],
        stats: dict[str, Any] | None = None,
    ) -> None:
        self._items = list(proposals)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.partial = bool(partial)
        self.params = dict(params)
        self.stats = dict(stats or {})

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Proposal: ...
    @overload
    def __getitem__(self, index: slice) -> list[Proposal]: ...
    def __getitem__(self, index):
        return self._items[index]

    def __iter__(self) -> Iterator[Proposal]:
        return iter(self._items)

    def __repr__(self) -> str:
        H, W = self.image_size
        flag = ", partial" if self.partial else ""
        return f"Proposals({len(self)} proposals on a {W}x{H} image{flag})"

    @property
    def scores(self) -> np.ndarray:
        """``(N,)`` float32 predicted IoU of each proposal."""
        return np.asarray([p.score for p in self._items], dtype=np.float32)

    @property
    def masks(self) -> np.ndarray:
        """``(N, H, W)`` bool stack of every proposal's mask."""
        if not self._items:
            return np.zeros((0, *self.image_size), dtype=bool)
        return np.stack([p.mask for p in self._items])

    def mask_at_size(self, size: tuple[int, int]) -> np.ndarray:
        """``(N, h, w)`` bool: every proposal's mask at a display size (see
        :meth:`Proposal.mask_at_size`)."""
        h, w = _check_size(size)
        if not self._items:
            return np.zeros((0, h, w), dtype=bool)
        return np.stack([p.mask_at_size((h, w)) for p in self._items])

    def label_image(self) -> np.ndarray:
        """``(H, W)`` int32: ``i + 1`` where proposal ``i`` is, 0 for background.

        Where proposals overlap, the smaller one wins (masks are painted largest first), so
        every proposal that is not entirely covered by smaller ones stays visible.
        """
        out = np.zeros(self.image_size, dtype=np.int32)
        order = sorted(range(len(self._items)), key=lambda i: -self._items[i].area)
        for i in order:
            out[self._items[i].mask] = i + 1
        return out


def _check_size(size: Any) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in size)
        ok = all(float(v) == int(v) for v in size)
    except (TypeError, ValueError):
        raise TypeError(f"size must be (height, width) integers, got {size!r}.") from None
    if not ok or h < 1 or w < 1:
        raise ValueError(f"size must be two positive integers (height, width), got {size!r}.")
    return h, w
