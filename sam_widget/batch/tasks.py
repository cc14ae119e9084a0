"""The per-image work that runs on a Dask worker (or in this process with ``scheduler="sync"``).

Each task builds nothing itself: it takes this process's Segmenter for the spec (loaded once
per worker, :func:`~sam_widget.batch.spec.worker_segmenter`), does one image, and returns an
:class:`~sam_widget.batch.runner.ImageResult`. A problem with the image (unreadable, corrupt,
wrong prompts) is *returned* as a failed result — retrying would fail the same way; only a
worker's death makes Dask run the task again elsewhere.
"""

from __future__ import annotations

import time
from typing import Any

from ..images import ImageError
from .runner import ImageResult
from .spec import ModelSpec, worker_segmenter

__all__ = ["precompute_task"]

_IMAGE_PROBLEMS = (ImageError, OSError, ValueError, TypeError)


def worker_name() -> str:
    """The Dask worker's name, or ``"local"`` outside a worker."""
    try:
        from distributed import get_worker

        return str(get_worker().name)
    except (ImportError, ValueError):
        return "local"


def segmenter_or_failure(path: str, spec: ModelSpec, t0: float) -> tuple[Any, ImageResult | None]:
    """This worker's Segmenter, or a failed result saying why it could not be built (a
    missing checkpoint, an unavailable device...): returned, not raised, so Dask does not
    retry the task on another worker, where it would fail the same way."""
    try:
        return worker_segmenter(spec), None
    except Exception as exc:  # whatever the model loader raised: reported with the image
        return None, ImageResult(path, "failed", error=f"the model could not be loaded: {type(exc).__name__}: {exc}",
                                 seconds=time.perf_counter() - t0, worker=worker_name())


def precompute_task(path: str, spec: ModelSpec) -> ImageResult:
    """Encode ``path`` into the spec's disk cache unless its embedding is there already."""
    t0 = time.perf_counter()
    seg, failure = segmenter_or_failure(path, spec, t0)
    if failure is not None:
        return failure
    try:
        with seg.exclusive():
            before = seg.stats["encoder_calls"]
            seg.set_image(path)
            computed = seg.stats["encoder_calls"] > before
            seg.reset_image()
    except _IMAGE_PROBLEMS as exc:
        return ImageResult(path, "failed", error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - t0,
                           worker=worker_name())
    return ImageResult(path, "computed" if computed else "cached", seconds=time.perf_counter() - t0, worker=worker_name())


def failed(path: str, exc: BaseException) -> ImageResult:
    """A result for a task that did not return (a worker died too often, or the task raised)."""
    return ImageResult(path, "failed", error=f"{type(exc).__name__}: {exc}")


def as_result(path: str, value: Any) -> ImageResult:
    return value if isinstance(value, ImageResult) else failed(path, value)


def segment_task(item: tuple[str, list[Any]], spec: ModelSpec, polygons: bool) -> ImageResult:
    """Segment each object prompt of one image; the result's ``data`` is the image's part
    (COCO annotations with RLE, see :mod:`sam_widget.batch.outputs`).

    A box, or several points, ask for one mask; a single point asks for three candidates
    and keeps the best-scoring one (SAM's advice for ambiguous prompts)."""
    from .outputs import image_annotations

    path, objects = item
    t0 = time.perf_counter()
    seg, failure = segmenter_or_failure(path, spec, t0)
    if failure is not None:
        return failure
    masks, labels, scores, prompts = [], [], [], []
    try:
        with seg.exclusive():
            seg.set_image(path)
            shape = seg.image_size
            for obj in objects:
                single_click = obj.box is None and len(obj.points) == 1
                pred = seg.predict(points=list(obj.points) or None, labels=list(obj.labels) or None,
                                   box=obj.box, multimask=single_click)
                best = pred.best
                masks.append(pred.mask(best))
                labels.append(obj.label)
                scores.append(float(pred.scores[best]))
                p = {"points": obj.points, "labels": obj.labels, "box": obj.box}
                if single_click:
                    p["candidate"] = best
                prompts.append(p)
            seg.reset_image()
        part = image_annotations(path, shape, masks, labels, scores, prompts, polygons=polygons)
    except _IMAGE_PROBLEMS as exc:
        return ImageResult(path, "failed", error=f"{type(exc).__name__}: {exc}", seconds=time.perf_counter() - t0,
                           worker=worker_name())
    return ImageResult(path, "done", seconds=time.perf_counter() - t0, worker=worker_name(), data=part)
