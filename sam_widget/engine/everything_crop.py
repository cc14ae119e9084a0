"""One crop of "segment everything": decode a batch of grid points and filter the masks.

Two implementations with the same output (a segment_anything ``MaskData`` per batch, with
the fields ``iou_preds``, ``points``, ``stability_score``, ``boxes``, ``areas``,
``logits``):

* :class:`ExactCrop` runs exactly what ``SamAutomaticMaskGenerator._process_batch`` runs
  (the official prompt encoder, mask decoder, ``postprocess_masks``, and segment_anything's
  own ``calculate_stability_score`` / ``batched_mask_to_box`` / ``is_box_near_crop_edge``),
  so its masks and numbers are bit-identical to the official generator's.
* :class:`FastCrop` decodes through :class:`~.fast_decoder.FastDecoder` (the per-crop
  precompute made once and reused by every batch), applies the predicted-IoU filter before
  the mask upscaling (masks that fail it are never multiplied out; a point none of whose
  three masks pass skips the upscaling altogether), and computes the stability score, area
  and box of each remaining mask from its low-res logits with :class:`~.resample.Resampler`
  (the image-size logits only over the mask's window, with two small matmuls) instead of
  interpolating every mask to the image size. Decisions equal the official ones except for
  pixels within ~1e-6 of a threshold.

Boxes here are segment_anything's: ``(x0, y0, x1, y1)`` with inclusive ``x1, y1``, in the
crop's pixels. Points are ``(x, y)`` crop pixels (float64).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from segment_anything.utils.amg import (
    MaskData,
    batched_mask_to_box,
    calculate_stability_score,
    is_box_near_crop_edge,
)

from .resample import Resampler

__all__ = ["ExactCrop", "FastCrop"]


class _Crop:
    def __init__(
        self,
        seg: Any,
        features: torch.Tensor,
        input_size: tuple[int, int],
        crop_box: tuple[int, int, int, int],
        image_size: tuple[int, int],
        params: Any,
    ) -> None:
        self.seg = seg
        self.sam = seg.sam
        self.features = features
        self.input_size = tuple(input_size)
        self.crop_box = list(crop_box)
        x0, y0, x1, y1 = crop_box
        self.crop_size = (y1 - y0, x1 - x0)
        self.image_size = tuple(image_size)
        self.p = params
        self.threshold = float(self.sam.mask_threshold)

    def _edge_filter(self, data: MaskData) -> None:
        H, W = self.image_size
        keep = ~is_box_near_crop_edge(data["boxes"], self.crop_box, [0, 0, W, H])
        if not torch.all(keep):
            data.filter(keep)

    def _in_points(self, points: np.ndarray) -> torch.Tensor:
        coords = self.seg.transform.apply_coords(points, self.crop_size)
        return torch.as_tensor(coords, device=self.sam.device)


class ExactCrop(_Crop):
    """``SamAutomaticMaskGenerator._process_batch``, step for step (bit-identical)."""

    @torch.no_grad()
    def batch(self, points: np.ndarray) -> MaskData:
        sam, p = self.sam, self.p
        in_points = self._in_points(points)
        in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
        sparse, dense = sam.prompt_encoder(points=(in_points[:, None, :], in_labels[:, None]), boxes=None, masks=None)
        low_res, iou_preds = sam.mask_decoder(
            image_embeddings=self.features,
            image_pe=sam.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        masks = sam.postprocess_masks(low_res, self.input_size, self.crop_size)
        data = MaskData(
            masks=masks.flatten(0, 1),
            iou_preds=iou_preds.flatten(0, 1),
            points=torch.as_tensor(points.repeat(masks.shape[1], axis=0)),
            logits=low_res.flatten(0, 1),
        )
        del masks
        if p.pred_iou_thresh > 0.0:
            data.filter(data["iou_preds"] > p.pred_iou_thresh)
        data["stability_score"] = calculate_stability_score(data["masks"], self.threshold, p.stability_score_offset)
        if p.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= p.stability_score_thresh)
        data["masks"] = data["masks"] > self.threshold
        data["boxes"] = batched_mask_to_box(data["masks"])
        self._edge_filter(data)
        data["areas"] = data["masks"].flatten(1).sum(1)
        del data["masks"]
        for key in ("iou_preds", "stability_score", "boxes", "areas", "logits"):  # the rest runs on the CPU
            data[key] = data[key].cpu()
        return data

    @torch.no_grad()
    def full_mask(self, logits: np.ndarray) -> np.ndarray:
        """``postprocess_masks`` of one mask, thresholded: ``(h, w)`` bool at the crop's size."""
        t = torch.as_tensor(logits, device=self.sam.device)[None, None]
        m = self.sam.postprocess_masks(t, self.input_size, self.crop_size)[0, 0]
        return (m > self.threshold).cpu().numpy()


class FastCrop(_Crop):
    """The same filters on the fast decoder's output, with window-limited upscaling."""

    def __init__(self, seg: Any, features: torch.Tensor, input_size, crop_box, image_size, params, state: Any) -> None:
        super().__init__(seg, features, input_size, crop_box, image_size, params)
        self.decoder = seg._everything_decoder
        self.state = state  # the crop's DecoderState (prepared once, reused by every batch)
        side = 4 * int(self.sam.prompt_encoder.image_embedding_size[0])
        self.resampler = Resampler((side, side), self.sam.image_encoder.img_size, self.input_size, self.crop_size)
        off = float(params.stability_score_offset)
        # thresholds as float32 scalars, as segment_anything compares them with float32 tensors
        self._t_hi = float(np.float32(self.threshold + off))
        self._t_lo = float(np.float32(self.threshold - off))
        self._iou_thresh = float(np.float32(params.pred_iou_thresh))
        self._stab_thresh = np.float32(params.stability_score_thresh)

    def _select(self, iou: torch.Tensor) -> torch.Tensor:
        multi = iou[1:4]  # multimask outputs = mask tokens 1..3
        if self.p.pred_iou_thresh > 0.0:
            return torch.nonzero(multi > self._iou_thresh).flatten() + 1
        return torch.arange(1, 4, device=iou.device)

    @torch.no_grad()
    def batch(self, points: np.ndarray) -> MaskData:
        sam = self.sam
        in_points = self._in_points(points).to(torch.float)
        labels = torch.ones(in_points.shape[0], 1, dtype=torch.int, device=in_points.device)
        sparse, _ = sam.prompt_encoder(points=(in_points[:, None, :], labels), boxes=None, masks=None)
        decoded = self.decoder.decode_selected(self.state, sparse, self._select)
        ious, pts, stabs, boxes, areas, logits = [], [], [], [], [], []
        for b, (iou, tokens, low_res) in enumerate(decoded):
            if low_res is None:
                continue
            low_res = low_res.cpu()
            for j, tok in enumerate(tokens.tolist()):
                lr = low_res[j]
                if self.p.stability_score_thresh > 0.0:  # decided here: exact counts
                    stab, area, box = self._stats(lr)
                    if not stab >= self._stab_thresh:
                        continue
                else:  # nothing to decide: the box (for NMS) now, the rest when asked
                    box = self.resampler.box(lr, self.threshold)
                    if box is None:  # an empty mask: cheap, and settles the area
                        stab, area, box = self._stats(lr)
                    else:
                        stab, area = np.float32("nan"), -1
                ious.append(iou[tok])
                pts.append(points[b])
                stabs.append(float(stab))
                boxes.append(box)
                areas.append(area)
                logits.append(lr.clone())
        n = len(ious)
        h, w = self.resampler.low_res
        data = MaskData(
            iou_preds=torch.stack(ious).cpu() if n else torch.zeros(0),
            points=torch.as_tensor(np.asarray(pts, dtype=np.float64).reshape(n, 2)),
            stability_score=torch.tensor(stabs, dtype=torch.float32),
            boxes=torch.tensor(boxes, dtype=torch.int64).reshape(n, 4),
            areas=torch.tensor(areas, dtype=torch.int64),
            logits=torch.stack(logits) if n else torch.zeros(0, h, w),
        )
        if n:
            self._edge_filter(data)
        return data

    def _stats(self, logits: torch.Tensor) -> tuple[np.float32, int, tuple[int, int, int, int]]:
        """Stability (float32, NaN if nothing is above the low cutoff), area and box."""
        st = self.resampler.stats(logits, (self._t_hi, self._t_lo, self.threshold), self.threshold)
        inter, union, area = st.counts
        stab = np.float32(inter) / np.float32(union) if union else np.float32("nan")
        return stab, area, st.box

    def lazy_stats(self, logits: np.ndarray) -> tuple[float, int]:
        """``(stability, area)`` of a proposal whose run did not need them."""
        stab, area, _ = self._stats(torch.as_tensor(logits))
        return float(stab), int(area)

    def full_mask(self, logits: np.ndarray) -> np.ndarray:
        """The ``(h, w)`` bool mask at the crop's size, from the same window evaluation
        that gave the proposal's area and box (so ``mask.sum() == area``)."""
        return self.resampler.mask(torch.as_tensor(logits), self.threshold)
