"""``batch.everything``: ``Segmenter.segment_everything`` over a folder, proposals as COCO.

Each proposal becomes one annotation (label ``"object"``, ``score`` = predicted IoU) with
its stability score and the grid point that found it in ``annotation["sam_widget"]``.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from ..images import ImageError
from .runner import ImageResult
from .spec import ModelSpec

__all__ = ["everything_task", "AMG_DEFAULTS", "add_everything_arguments", "everything_params"]

AMG_DEFAULTS: dict[str, Any] = {
    "points_per_side": 32,
    "pred_iou_thresh": 0.88,
    "stability_score_thresh": 0.95,
    "box_nms_thresh": 0.7,
    "min_mask_region_area": 0,
    "crop_n_layers": 0,
}
"""The parameters the command line exposes (``Segmenter.segment_everything`` takes more)."""


def _finite(x: float) -> float | None:
    """JSON has no NaN: a score that is not a finite number is written as ``null``."""
    x = float(x)
    return x if math.isfinite(x) else None


def everything_task(path: str, spec: ModelSpec, params: dict[str, Any], polygons: bool) -> ImageResult:
    """All proposals of one image; ``data`` is the image's part (see :mod:`.outputs`)."""
    from .outputs import image_annotations
    from .tasks import segmenter_or_failure, worker_name

    t0 = time.perf_counter()
    seg, failure = segmenter_or_failure(path, spec, t0)
    if failure is not None:
        return failure
    try:
        with seg.exclusive():
            seg.set_image(path)
            shape = seg.image_size
            props = seg.segment_everything(progress=False, **params)
            masks = [p.mask for p in props]
            extras = [{"stability": _finite(p.stability), "point": [float(v) for v in p.point]} for p in props]
            part = image_annotations(path, shape, masks, ["object"] * len(masks), [_finite(p.score) for p in props],
                                     extras=extras, polygons=polygons)
            seg.reset_image()
    except (ImageError, OSError, ValueError, TypeError) as exc:
        return ImageResult(path, "failed", error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - t0,
                           worker=worker_name())
    return ImageResult(path, "done", seconds=time.perf_counter() - t0, worker=worker_name(), data=part)


def add_everything_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("segment-everything parameters (as SamAutomaticMaskGenerator)")
    for name, default in AMG_DEFAULTS.items():
        g.add_argument("--" + name.replace("_", "-"), type=type(default), default=default, metavar="V",
                       help=f"default {default}")


def everything_params(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, name) for name in AMG_DEFAULTS}
