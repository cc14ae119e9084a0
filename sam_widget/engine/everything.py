"""Segment everything: SAM's automatic mask generator on the Segmenter's current image.

``Segmenter.segment_everything(**params)`` calls :func:`segment_everything` here. The
parameters and their meaning are those of ``segment_anything.SamAutomaticMaskGenerator``
(crop layers included); the result is a :class:`~.proposals.Proposals` list.

How it runs
  * The image embedding is the Segmenter's (cached): "everything" on the current image
    costs no encode. Crops (``crop_n_layers > 0``) are encoded through the same caches.
  * ``exact=True`` Segmenters run the official generator's computations step for step
    (:class:`~.everything_crop.ExactCrop`): the masks equal
    ``SamAutomaticMaskGenerator(sam, same params).generate(image)``'s, mask for mask.
  * The default (fast) mode decodes through the fast decoder, filters on predicted IoU
    before computing any mask, and takes stability scores, areas and boxes from the low-res
    logits over each mask's window (:class:`~.everything_crop.FastCrop`); image-size masks
    are made only for the kept proposals, when asked.
  * Progress: a ``tqdm.auto`` bar (terminal or notebook) advanced once per batch of
    ``points_per_batch`` points. ``on_batch(proposals_so_far)`` is called after every batch
    with the proposals found so far (a partial :class:`Proposals`, NMS applied), e.g. to
    draw them while the run goes on.
  * ``cancel`` (a ``threading.Event``): checked before every batch and every crop; once
    set, the run stops and returns what it found, with ``partial=True``.

Threading
  * The run works on a snapshot of the current image taken when it starts; it does NOT hold
    the Segmenter's lock while decoding, so ``predict`` calls (clicks) from other threads are
    answered between and during batches, and a ``set_image`` meanwhile does not change
    what the run segments (its proposals are for the image current at the call).
  * Two runs on one Segmenter do not overlap: a second call waits until the first has
    finished (its own ``cancel`` is honoured while it waits: set, it returns an empty
    partial result). To replace a running call, set the first call's ``cancel``.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any, Callable

import numpy as np
import torch
from segment_anything.utils.amg import (
    MaskData,
    batch_iterator,
    generate_crop_boxes,
    mask_to_rle_pytorch,
    rle_to_mask,
    uncrop_boxes_xyxy,
    uncrop_points,
)
from torchvision.ops.boxes import batched_nms, box_area
from tqdm.auto import tqdm

from .cache import image_key
from .everything_crop import ExactCrop, FastCrop
from .everything_params import MAX_CROP_LAYERS, MAX_POINTS_PER_SIDE, EverythingParams, params_from
from .proposals import Proposal, Proposals, _Source

__all__ = ["EverythingParams", "params_from", "segment_everything", "MAX_POINTS_PER_SIDE", "MAX_CROP_LAYERS"]

_WAIT_POLL_S = 0.05


# ------------------------------------------------------------------------------ locking
_RUN_LOCKS: "weakref.WeakKeyDictionary[Any, threading.Lock]" = weakref.WeakKeyDictionary()
_RUN_LOCKS_GUARD = threading.Lock()


def _run_lock(seg: Any) -> threading.Lock:
    with _RUN_LOCKS_GUARD:
        lock = _RUN_LOCKS.get(seg)
        if lock is None:
            lock = _RUN_LOCKS[seg] = threading.Lock()
        return lock


def _wait_turn(lock: threading.Lock, cancel: Any) -> bool:
    """Acquire ``lock``; False (not acquired) if ``cancel`` gets set while waiting."""
    while not lock.acquire(timeout=_WAIT_POLL_S):
        if cancel is not None and cancel.is_set():
            return False
    return True


# ------------------------------------------------------------------------------ the run
def segment_everything(
    seg: Any,
    params: EverythingParams,
    *,
    progress: bool = True,
    cancel: Any = None,
    on_batch: Callable[[Proposals], Any] | None = None,
    prepare: Callable[[Any], Any] | None = None,
) -> Proposals:
    """Run "segment everything" on ``seg``'s current image (see the module docstring).

    ``prepare(seg)``, if given, runs under the Segmenter's lock just before the snapshot of
    the current image is taken (e.g. to set the image to segment, as one step with it).
    """
    if not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True or False, not {progress!r}.")
    if cancel is not None and not callable(getattr(cancel, "is_set", None)):
        raise TypeError(f"cancel must be a threading.Event (or None), not {type(cancel).__name__}.")
    if on_batch is not None and not callable(on_batch):
        raise TypeError(f"on_batch must be callable (or None), not {type(on_batch).__name__}.")
    if prepare is not None and not callable(prepare):
        raise TypeError(f"prepare must be callable (or None), not {type(prepare).__name__}.")
    with seg.exclusive():
        if prepare is not None:
            prepare(seg)
        if seg._features is None:
            raise RuntimeError("No image is set: call set_image(image) before segment_everything().")
        snap = _Snapshot(seg)
    if cancel is not None and cancel.is_set():
        return _Run(seg, snap, params, cancel, on_batch).empty()
    lock = _run_lock(seg)
    if not _wait_turn(lock, cancel):
        return _Run(seg, snap, params, cancel, on_batch).empty()
    try:
        return _Run(seg, snap, params, cancel, on_batch).run(bool(progress))
    finally:
        lock.release()


class _Snapshot:
    """The Segmenter's current image and its embedding, taken under its lock."""

    def __init__(self, seg: Any) -> None:
        self.image = seg._image
        self.features = seg._features
        self.image_size = tuple(seg._original_size)
        self.input_size = tuple(seg._input_size)
        self.state = None
        if not seg.exact:
            if seg._decoder_state is None:  # shared with predict(): made once per image
                seg._decoder_state = seg._fast_decoder.prepare(seg._features)
            self.state = seg._decoder_state


class _Run:
    def __init__(self, seg: Any, snap: _Snapshot, params: EverythingParams, cancel: Any, on_batch) -> None:
        self.seg, self.snap, self.p = seg, snap, params
        self.cancel, self.on_batch = cancel, on_batch
        self.done = MaskData()  # kept masks of finished crops, in image coordinates
        self.sources: list[_Source] = []
        self.stats: dict[str, Any] = {
            "mode": "exact" if seg.exact else "fast",
            "points": 0,
            "points_total": 0,
            "batches": 0,
            "masks_kept_by_filters": 0,
            "crops": 0,
            "crop_encodes": 0,
            "seconds": 0.0,
        }
        self.t0 = time.perf_counter()

    def _cancelled(self) -> bool:
        return self.cancel is not None and self.cancel.is_set()

    def empty(self) -> Proposals:
        return Proposals([], self.snap.image_size, True, self.p.as_dict(), self.stats)

    def run(self, progress: bool) -> Proposals:
        H, W = self.snap.image_size
        crop_boxes, layer_idxs = generate_crop_boxes((H, W), self.p.crop_n_layers, self.p.crop_overlap_ratio)
        grids = self.p.grids()
        self.stats["points_total"] = total = sum(len(grids[i]) for i in layer_idxs)
        self.n_crops = len(crop_boxes)
        partial = False
        bar = tqdm(total=total, unit="pt", desc="segment everything", disable=not progress, leave=True)
        try:
            for ci, (crop_box, layer) in enumerate(zip(crop_boxes, layer_idxs)):
                if self._cancelled():
                    partial = True
                    break
                if self.n_crops > 1:
                    bar.set_description(f"segment everything (crop {ci + 1}/{self.n_crops})")
                crop = self._crop(tuple(crop_box))
                source = self._source(crop)
                self.sources.append(source)
                data = MaskData()
                cw, ch = crop_box[2] - crop_box[0], crop_box[3] - crop_box[1]
                points_for_image = grids[layer] * np.array([[cw, ch]])
                for (points,) in batch_iterator(self.p.points_per_batch, points_for_image):
                    if self._cancelled():
                        partial = True
                        break
                    batch = crop.batch(points)
                    batch["source"] = [ci] * len(batch["iou_preds"])
                    data.cat(batch)
                    self.stats["points"] += len(points)
                    self.stats["batches"] += 1
                    self.stats["masks_kept_by_filters"] += len(batch["iou_preds"])
                    bar.update(len(points))
                    bar.set_postfix(masks=self.stats["masks_kept_by_filters"], refresh=False)
                    if self.on_batch is not None:
                        self.on_batch(self._assemble(self._merged(self._finish_crop(data, crop_box, source)), True))
                self.done = self._merged(self._finish_crop(data, crop_box, source))
                self.stats["crops"] += 1
                if partial:
                    break
        finally:
            bar.close()
        return self._assemble(self.done, partial)

    # -------------------------------------------------------------- crops
    def _crop(self, crop_box: tuple[int, int, int, int]):
        snap, seg = self.snap, self.seg
        H, W = snap.image_size
        if crop_box == (0, 0, W, H):
            features, input_size, state = snap.features, snap.input_size, snap.state
        else:
            x0, y0, x1, y1 = crop_box
            rgb = np.ascontiguousarray(snap.image[y0:y1, x0:x1])
            calls = seg.stats["encoder_calls"]
            features, _, input_size = seg._embedding(rgb, image_key(rgb))
            self.stats["crop_encodes"] += seg.stats["encoder_calls"] - calls
            state = None if seg.exact else seg._fast_decoder.prepare(features)
        if seg.exact:
            return ExactCrop(seg, features, input_size, crop_box, (H, W), self.p)
        return FastCrop(seg, features, input_size, crop_box, (H, W), self.p, state)

    def _source(self, crop) -> _Source:
        from .segmenter import _Upscaler

        up = _Upscaler(self.seg.sam, crop.input_size, crop.crop_size)
        return _Source(
            full=crop.full_mask,
            display=lambda logits, size: up.to_display(logits[None], size)[0],
            stats=getattr(crop, "lazy_stats", None),
            crop_box=tuple(crop.crop_box),
            image_size=self.snap.image_size,
        )

    def _finish_crop(self, data: MaskData, crop_box, source: _Source) -> MaskData:
        """NMS within the crop, then to image coordinates (``_process_crop``'s tail)."""
        if len(data._stats) == 0 or len(data["iou_preds"]) == 0:
            return MaskData()
        keep = batched_nms(
            data["boxes"].float(),
            data["iou_preds"],
            torch.zeros(len(data["boxes"])),
            iou_threshold=self.p.box_nms_thresh,
        )
        out = MaskData(**{k: v for k, v in data.items()})
        out.filter(keep)
        out["boxes"] = uncrop_boxes_xyxy(out["boxes"], list(crop_box))
        out["points"] = uncrop_points(out["points"], list(crop_box))
        out["crop_boxes"] = torch.tensor([list(crop_box) for _ in range(len(out["iou_preds"]))])
        return out

    def _merged(self, crop_data: MaskData) -> MaskData:
        out = MaskData(**{k: v for k, v in self.done.items()})
        if len(crop_data._stats) and len(crop_data["iou_preds"]):
            out.cat(crop_data)
        return out

    # -------------------------------------------------------------- result
    def _assemble(self, data: MaskData, partial: bool) -> Proposals:
        """Cross-crop NMS, small-region postprocessing, sorting (``generate``'s tail)."""
        empty = len(data._stats) == 0 or len(data["iou_preds"]) == 0
        if not empty and self.n_crops > 1:
            scores = 1 / box_area(data["crop_boxes"])
            keep = batched_nms(
                data["boxes"].float(), scores, torch.zeros(len(data["boxes"])), iou_threshold=self.p.crop_nms_thresh
            )
            data = MaskData(**{k: v for k, v in data.items()})
            data.filter(keep)
        proposals: list[Proposal] = []
        if not empty:
            proposals = self._proposals(data)
            if self.p.min_mask_region_area > 0:
                proposals = _remove_small_regions(proposals, self.p)
        order = sorted(range(len(proposals)), key=lambda i: -proposals[i].score)
        stats = dict(self.stats, seconds=time.perf_counter() - self.t0, proposals=len(proposals))
        return Proposals([proposals[i] for i in order], self.snap.image_size, partial, self.p.as_dict(), stats)

    def _proposals(self, data: MaskData) -> list[Proposal]:
        out = []
        n = len(data["iou_preds"])
        for i in range(n):
            x0, y0, x1, y1 = (int(v) for v in data["boxes"][i])
            area = int(data["areas"][i])  # -1: not computed (lazy)
            stability = float(data["stability_score"][i])
            bbox = (0, 0, 0, 0) if area == 0 else (x0, y0, x1 - x0 + 1, y1 - y0 + 1)
            source = self.sources[int(data["source"][i])]
            out.append(
                Proposal(
                    score=float(data["iou_preds"][i]),
                    stability=None if area < 0 else stability,
                    area=None if area < 0 else area,
                    bbox=bbox,
                    point=tuple(float(v) for v in data["points"][i]),
                    crop_box=tuple(int(v) for v in data["crop_boxes"][i]),
                    logits=data["logits"][i].numpy(),
                    source=source,
                )
            )
        return out


def _remove_small_regions(proposals: list[Proposal], p: EverythingParams) -> list[Proposal]:
    """``SamAutomaticMaskGenerator.postprocess_small_regions`` on the proposals' masks."""
    from segment_anything import SamAutomaticMaskGenerator

    masks = torch.as_tensor(np.stack([q.mask for q in proposals]))
    boxes = np.asarray([[*q.box[:2], q.box[2] - 1, q.box[3] - 1] if q.area else [0, 0, 0, 0] for q in proposals])
    data = MaskData(rles=mask_to_rle_pytorch(masks), boxes=boxes, index=np.arange(len(proposals)))
    data = SamAutomaticMaskGenerator.postprocess_small_regions(data, p.min_mask_region_area, max(p.box_nms_thresh, p.crop_nms_thresh))
    out = []
    for rle, box, i in zip(data["rles"], data["boxes"], data["index"]):
        q = proposals[int(i)]
        mask = rle_to_mask(rle)
        if np.array_equal(mask, q.mask):
            out.append(q)
            continue
        area = int(mask.sum())
        x0, y0, x1, y1 = (int(v) for v in box)
        bbox = (x0, y0, x1 - x0 + 1, y1 - y0 + 1) if area else (0, 0, 0, 0)
        mask.setflags(write=False)
        out.append(Proposal(q.score, q.stability, area, bbox, q.point, q.crop_box, None, q._source, mask=mask))
    return out
