"""The records that :func:`sam_widget.io.read_coco` returns (plain dataclasses)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .polygons import DEFAULT_TOLERANCE
from .prompts import PromptRecord

__all__ = ["CocoDataset", "CocoImage", "CocoObject", "EXTENSION_KEY"]

EXTENSION_KEY = "sam_widget"  # our extra field, on annotations, images and the top level


@dataclass
class CocoObject:
    """One annotation read back. ``mask`` is ``(H, W)`` bool at the image size; ``label``
    the category name; ``score`` the ``score`` field or ``None``; ``prompts`` the
    :class:`~sam_widget.io.prompts.PromptRecord` stored by sam_widget, or ``None`` (files
    from other tools); ``iscrowd`` the COCO flag; ``id`` / ``category_id`` as in the
    file; ``extra`` every other key of the annotation (e.g. another tool's attributes)."""

    label: str
    mask: np.ndarray = field(repr=False)
    score: float | None = None
    prompts: PromptRecord | None = None
    iscrowd: bool = False
    id: int | None = None
    category_id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass
class CocoImage:
    """One image read back: COCO's ``file_name``, ``height``, ``width``, ``id``; ``path``
    the image file when found (see :func:`read_coco`), else ``None``; its ``objects`` in
    file order; ``extra`` the other keys of the image entry."""

    file_name: str
    height: int
    width: int
    id: int
    path: Path | None = None
    objects: list[CocoObject] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def masks(self) -> np.ndarray:
        """``(N, H, W)`` bool stack of the objects' masks."""
        if not self.objects:
            return np.zeros((0, self.height, self.width), bool)
        return np.stack([o.mask for o in self.objects])

    @property
    def labels(self) -> list[str]:
        return [o.label for o in self.objects]

    @property
    def scores(self) -> list[float | None]:
        return [o.score for o in self.objects]

    @property
    def prompts(self) -> list[PromptRecord | None]:
        return [o.prompts for o in self.objects]


@dataclass
class CocoDataset:
    """What :func:`read_coco` returns: the images with their objects, the file's
    ``categories`` (COCO dicts, kept for a faithful re-export), its ``path`` (or ``None``)
    and ``extra`` (other top-level keys, e.g. ``info``, ``licenses``)."""

    images: list[CocoImage]
    categories: list[dict[str, Any]]
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_coco(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        polygons: bool = False,
        tolerance: float = DEFAULT_TOLERANCE,
        holes: Literal["rle", "extra"] = "rle",
    ) -> dict[str, Any]:
        """Write these images and objects again with :func:`to_coco` (same categories)."""
        from .coco import to_coco

        return to_coco(
            [
                {"file_name": im.file_name, "height": im.height, "width": im.width, "id": im.id,
                 **{k: v for k, v in im.extra.items() if k != EXTENSION_KEY}}
                for im in self.images
            ],
            [[o.mask for o in im.objects] for im in self.images],
            labels=[im.labels for im in self.images],
            scores=[im.scores for im in self.images],
            prompts=[im.prompts for im in self.images],
            categories=self.categories,
            polygons=polygons,
            tolerance=tolerance,
            holes=holes,
            path=path,
        )
