"""Measure how well a SAM segments :mod:`sam_widget.data` shapes (default: the ``tiny_shapes`` model).

    from benchmarks.evaluate import evaluate_tiny
    evaluate_tiny(n_images=100, seed=0)
    # {'click_iou': ..., 'box_iou': ..., 'three_click_iou': ..., 'encode_first_mask_s': ...}

Protocol (every object of every image is a trial; an image's objects are its ``masks``):

* ``click_iou``: one positive click at the object's *deepest* pixel (the visible-mask pixel
  farthest from the mask's boundary, the image frame counting as boundary; ties broken by the
  pixel nearest to the tied pixels' centroid), ``multimask=True``, the highest-scoring of the
  three candidates; mean IoU with the true mask.
* ``box_iou``: the true box (XYXY, inclusive max pixel) with every coordinate moved by a
  uniform random amount within +-5 % of the box's width (x) or height (y), ``multimask=False``.
* ``three_click_iou``: the click above, then two more clicks, each at the deepest pixel of the
  larger error region of the previous prediction (positive on missed foreground, negative on
  a false positive), given with all earlier clicks and the previous best low-res logits as
  ``mask_input``, ``multimask=False``; IoU after the third click.
* ``encode_first_mask_s``: median wall time of ``set_image`` (the image encoder) plus the
  first click's ``predict``, per image.

Images are ``shapes_image(EVAL_SEED_OFFSET + seed * 100_000 + i, size)`` for
``i < n_images``; training (``scripts/train_tiny_sam.py``) only uses seeds below
``EVAL_SEED_OFFSET``, so evaluation images are never seen in training.
"""

from __future__ import annotations

import numbers
import time
from typing import Any, Protocol

import numpy as np

from sam_widget.data import EVAL_SEED_OFFSET, shapes_scene

__all__ = ["EVAL_SEED_OFFSET", "evaluate_tiny", "deepest_pixel", "mask_iou"]



class _PredictorLike(Protocol):
    def set_image(self, image: np.ndarray) -> None: ...

    def predict(self, points=None, labels=None, box=None, mask_input=None, multimask=True) -> Any: ...


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two same-shape bool masks (1.0 if both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def deepest_pixel(mask: np.ndarray) -> tuple[tuple[int, int], int]:
    """The pixel of a (H, W) bool mask farthest from its boundary, as ``((x, y), depth)``.

    Depth is measured by repeated erosion alternating a 3x3 square and a plus-shaped
    structuring element (an octagonal approximation of the Euclidean distance); pixels
    outside the image count as background. Among the deepest pixels the one nearest to their
    centroid is returned (first in row-major order on ties). ``x`` is the column, ``y`` the row.

    Raises:
        ValueError: if ``mask`` is not 2-D or has no True pixel.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}.")
    if not mask.any():
        raise ValueError("mask is empty.")
    cur = mask
    depth = 0
    while True:
        p = np.pad(cur, 1, constant_values=False)
        # a pixel survives if its 4 neighbours (plus-shaped step) or 8 neighbours (square
        # step) are all inside the mask
        nxt = cur & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        if depth % 2 == 0:
            nxt &= p[:-2, :-2] & p[:-2, 2:] & p[2:, :-2] & p[2:, 2:]
        if not nxt.any():
            break
        cur, depth = nxt, depth + 1
    ys, xs = np.nonzero(cur)
    cy, cx = ys.mean(), xs.mean()
    i = int(np.argmin((ys - cy) ** 2 + (xs - cx) ** 2))
    return (int(xs[i]), int(ys[i])), depth + 1


def _check_int(name: str, value: object, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}.")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}.")
    return int(value)


def _make_segmenter(sam: Any) -> _PredictorLike:
    try:
        from sam_widget.engine.segmenter import Segmenter
    except ImportError:  # pragma: no cover - fallback while the engine is incomplete
        return _PredictorAdapter(sam)
    return Segmenter(sam, exact=False)


class _PredictorAdapter:
    """segment_anything.SamPredictor behind the Segmenter call signature."""

    def __init__(self, sam: Any) -> None:
        from segment_anything import SamPredictor

        self._p = SamPredictor(sam)

    def set_image(self, image: np.ndarray) -> None:
        self._p.set_image(image)

    def predict(self, points=None, labels=None, box=None, mask_input=None, multimask=True):
        masks, scores, logits = self._p.predict(
            point_coords=None if points is None else np.asarray(points, dtype=np.float32),
            point_labels=None if labels is None else np.asarray(labels),
            box=None if box is None else np.asarray(box, dtype=np.float32),
            mask_input=mask_input,
            multimask_output=multimask,
        )

        class _P:
            pass

        out = _P()
        out.masks, out.scores, out.logits = masks, scores, logits
        return out


def _error_click(pred: np.ndarray, gt: np.ndarray) -> tuple[tuple[int, int], int] | None:
    fn = gt & ~pred
    fp = pred & ~gt
    best = None
    for region, label in ((fn, 1), (fp, 0)):
        if region.any():
            xy, depth = deepest_pixel(region)
            if best is None or depth > best[2]:
                best = (xy, label, depth)
    return None if best is None else (best[0], best[1])


def evaluate_tiny(
    n_images: int = 100,
    seed: int = 0,
    sam: Any = None,
    *,
    size: tuple[int, int] = (256, 256),
    segmenter: _PredictorLike | None = None,
    details: bool = False,
) -> dict[str, Any]:
    """Evaluate a SAM on ``n_images`` held-out synthetic images (see the module docstring).

    Args:
        n_images: number of images (1..100000); every object in them is evaluated.
        seed: evaluation seed (0..9999); images never used in training.
        sam: a ``segment_anything`` ``Sam``; ``None`` loads the shipped ``tiny_shapes`` model.
        size: ``(height, width)`` of the synthetic images (the model input is 256 px; other
            sizes go through the usual resize of the longest side).
        segmenter: instead of ``sam``, any object with ``set_image(image)`` and
            ``predict(points, labels, box, mask_input, multimask)`` returning ``.masks``
            ``(C, H, W)`` bool, ``.scores`` ``(C,)``, ``.logits`` ``(C, h, w)``, like
            :class:`sam_widget.engine.segmenter.Segmenter` (used when ``sam`` is given).
        details: also return ``"objects"``: one ``{"kind", "area", "click", "click_best",
            "box", "three"}`` dict per object (its shape kind, visible area in pixels, its
            three IoUs and the IoU of the best of the three click candidates, i.e. the click
            IoU a perfect choice among the candidates would give).

    Returns:
        ``{"click_iou", "box_iou", "three_click_iou", "encode_first_mask_s", "n_images",
        "n_objects", "seed"}``: mean IoUs over all objects, median seconds per image (plus
        ``"objects"`` with ``details=True``).
    """
    n_images = _check_int("n_images", n_images, 1, 100_000)
    seed = _check_int("seed", seed, 0, 9_999)
    if segmenter is None:
        if sam is None:
            from sam_widget.engine.tiny import load_tiny_shapes

            sam = load_tiny_shapes()
        segmenter = _make_segmenter(sam)
    elif sam is not None:
        raise ValueError("Give either sam or segmenter, not both.")

    rng = np.random.default_rng((EVAL_SEED_OFFSET, seed))
    times: list[float] = []
    objects: list[dict[str, Any]] = []  # one trial record per object
    for i in range(n_images):
        scene = shapes_scene(EVAL_SEED_OFFSET + seed * 100_000 + i, size)
        targets = [(m, deepest_pixel(m)[0]) for m in scene.masks]
        t0 = time.perf_counter()
        segmenter.set_image(scene.image)
        for j, (gt, xy) in enumerate(targets):
            pred = segmenter.predict(points=[xy], labels=[1], multimask=True)
            if j == 0:
                times.append(time.perf_counter() - t0)
            best = int(np.argmax(pred.scores))
            mask, logits = np.asarray(pred.masks[best]), np.asarray(pred.logits[best])
            click_iou = mask_iou(mask, gt)
            record: dict[str, Any] = {"kind": scene.kinds[j], "area": int(gt.sum()), "click": click_iou}
            if details:
                record["click_best"] = max(mask_iou(np.asarray(m), gt) for m in pred.masks)

            points, labels = [xy], [1]
            for _ in range(2):
                click = _error_click(mask, gt)
                if click is None:
                    break
                points.append(click[0])
                labels.append(click[1])
                p = segmenter.predict(
                    points=points, labels=labels, mask_input=logits[None], multimask=False
                )
                mask, logits = np.asarray(p.masks[0]), np.asarray(p.logits[0])
            three_iou = mask_iou(mask, gt)

            ys, xs = np.nonzero(gt)
            x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
            w, h = x1 - x0, y1 - y0
            jit = rng.uniform(-0.05, 0.05, size=4) * np.array([w, h, w, h])
            box = np.array([x0, y0, x1, y1], dtype=np.float64) + jit
            box = np.clip(box, 0, [size[1] - 1, size[0] - 1, size[1] - 1, size[0] - 1])
            p = segmenter.predict(box=box, multimask=False)
            record |= {"box": mask_iou(np.asarray(p.masks[0]), gt), "three": three_iou}
            objects.append(record)
    out: dict[str, Any] = {
        "click_iou": float(np.mean([o["click"] for o in objects])),
        "box_iou": float(np.mean([o["box"] for o in objects])),
        "three_click_iou": float(np.mean([o["three"] for o in objects])),
        "encode_first_mask_s": float(np.median(times)),
        "n_images": n_images,
        "n_objects": len(objects),
        "seed": seed,
    }
    if details:
        out["objects"] = objects
    return out
