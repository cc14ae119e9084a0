"""``Segmenter``'s prompts: predict, mask_input_from_mask, and the checks of their arguments.

:class:`_SegmenterPrompts` is the part of :class:`~sam_widget.engine.segmenter.Segmenter`
that answers prompts on the current image (the segmenter inherits it), with the fast decoder
(:mod:`.fast_decoder`) or segment_anything's own; the answer is a
:class:`~sam_widget.engine.prediction.Prediction`.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.utils.transforms import ResizeLongestSide

from .prediction import Prediction, _check_display_size, _Upscaler

__all__ = ["_SegmenterPrompts"]


class _SegmenterPrompts:
    """:meth:`predict` and :meth:`mask_input_from_mask` (see :mod:`.segmenter_prompts`).

    A mixin of ``Segmenter``: relies on ``self.sam``, ``self.exact``, ``self.transform``,
    ``self._lock``, ``self._features``, ``self._original_size``, ``self._input_size``,
    ``self._fast_decoder``, ``self._decoder_state`` and ``self.stats``, all set by
    ``Segmenter.__init__`` (the image ones by ``set_image``), and on its ``device`` and
    ``low_res_size``.
    """

    # ------------------------------------------------------------------ prompts
    @torch.no_grad()
    def mask_input_from_mask(self, mask: np.ndarray) -> np.ndarray:
        """Low-resolution logits ``(1, h, w)`` float32 (see :attr:`low_res_size`) describing an
        ``(H, W)`` bool mask of an ``H x W`` image: usable as ``predict(mask_input=...)``.
        Integer masks holding only 0/1 (or 0/255) are taken too; anything else (floats, NaN,
        label images) raises ``ValueError`` / ``TypeError``.

        For refining a mask that did not come from this model (drawn elsewhere, loaded from a
        file): each low-res cell gets the logit of the fraction of it the mask covers (1e-3 ..
        1 - 1e-3, i.e. about +-6.9), laid out like the model's own logits (the image resized
        to the longest side, padding right and below is background). Upsampled the way
        predictions are, these logits give back the mask up to the low-res cell size.
        """
        from ..io._common import as_bool_mask  # NumPy only: the package's one mask check

        if isinstance(mask, np.ndarray) and mask.dtype == object:
            raise TypeError("mask must be an (H, W) bool array, not an array of Python objects.")
        m = as_bool_mask(mask, "mask")
        if m.size == 0:
            raise ValueError(f"mask must be an (H, W) array, got shape {m.shape}.")
        H, W = m.shape
        img = self.sam.image_encoder.img_size
        side_h, side_w = self.low_res_size
        h, w = ResizeLongestSide.get_preprocess_shape(H, W, img)
        rows, cols = max(1, round(h * side_h / img)), max(1, round(w * side_w / img))
        t = torch.from_numpy(np.ascontiguousarray(m, dtype=np.float32))[None, None]
        frac = F.interpolate(t, size=(rows, cols), mode="area")[0, 0].clamp(1e-3, 1 - 1e-3)
        out = torch.full((1, side_h, side_w), math.log(1e-3 / (1 - 1e-3)), dtype=torch.float32)
        out[0, :rows, :cols] = torch.log(frac / (1 - frac))
        return out.numpy()

    def predict(
        self,
        points: Sequence[Sequence[float]] | np.ndarray | None = None,
        labels: Sequence[int] | np.ndarray | None = None,
        box: Sequence[float] | np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask: bool = True,
        *,
        display_size: tuple[int, int] | None = None,
    ) -> Prediction:
        """Predict masks for prompts on the current image.

        Args:
          points: ``N x 2`` ``(x, y)`` image pixels (column, row), inside the image.
          labels: ``N`` values, 1 = foreground, 0 = background. Required with ``points``.
          box: ``(x0, y0, x1, y1)`` XYXY image pixels with ``x0 <= x1`` and ``y0 <= y1``.
          mask_input: low-res logits ``(1, h, w)`` or ``(h, w)`` (see :attr:`low_res_size`),
            typically ``prediction.logits[i:i+1]`` of an earlier prediction.
          multimask: three candidates if True, else one.
          display_size: ``(h, w)``: also compute every candidate at this size, straight from
            the low-res logits (one bilinear resampling, see :meth:`Prediction.mask_at_size`),
            here, under the segmenter's lock: :attr:`Prediction.display_masks` /
            :meth:`Prediction.display_mask`. For overlays, so that no UI code runs torch.
            Full-size masks stay lazy (computed when ``masks`` / ``mask(i)`` is read).

        Returns a :class:`Prediction`. Raises ``RuntimeError`` if no image is set and
        ``ValueError``/``TypeError`` for malformed prompts.
        """
        with self._lock:
            if self._features is None:
                raise RuntimeError("No image is set: call set_image(image) before predict().")
            H, W = self._original_size
            pts, lbl = _check_points(points, labels, (H, W))
            bx = _check_box(box, (H, W))
            mi = _check_mask_input(mask_input, self.low_res_size)
            if pts is None and bx is None and mi is None:
                raise ValueError("Give at least one prompt: points with labels, a box, or a mask_input.")
            if not isinstance(multimask, (bool, np.bool_)):
                raise TypeError(f"multimask must be True or False, not {multimask!r}.")
            ds = _check_display_size(display_size)
            return self._predict(pts, lbl, bx, mi, bool(multimask), ds)

    @torch.no_grad()
    def _predict(self, pts, lbl, bx, mi, multimask: bool, display_size=None) -> Prediction:
        t0 = time.perf_counter()
        dev = self.device
        orig = self._original_size
        point_arg = None
        if pts is not None:
            coords = self.transform.apply_coords(pts, orig)
            point_arg = (
                torch.as_tensor(coords, dtype=torch.float, device=dev)[None],
                torch.as_tensor(lbl, dtype=torch.int, device=dev)[None],
            )
        box_t = None
        if bx is not None:
            box_t = torch.as_tensor(self.transform.apply_boxes(bx, orig), dtype=torch.float, device=dev)[None]
        mask_t = None
        if mi is not None:
            mask_t = torch.as_tensor(mi, dtype=torch.float, device=dev)[None]
        if self._fast_decoder is not None:
            if self._decoder_state is None:
                self._decoder_state = self._fast_decoder.prepare(self._features)
            low_res, iou = self._fast_decoder.predict(
                self._decoder_state, points=point_arg, boxes=box_t, masks=mask_t, multimask=multimask
            )
        else:
            sparse, dense = self.sam.prompt_encoder(points=point_arg, boxes=box_t, masks=mask_t)
            low_res, iou = self.sam.mask_decoder(
                image_embeddings=self._features,
                image_pe=self.sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
            )
        t1 = time.perf_counter()
        upscaler = _Upscaler(self.sam, self._input_size, orig)
        masks = None
        if self.exact:
            full = self.sam.postprocess_masks(low_res, self._input_size, orig)
            masks = (full > self.sam.mask_threshold)[0].cpu().numpy()
        display = None
        if display_size == orig:  # the image's own size: the full-size masks themselves
            if masks is None:
                masks = upscaler.full(low_res[0])
            display = masks
        elif display_size is not None:
            display = upscaler.to_display(low_res[0], display_size)
        t2 = time.perf_counter()
        pred = Prediction(
            scores=iou[0].float().cpu().numpy(),
            logits=low_res[0].float().cpu().numpy(),
            image_size=orig,
            upscaler=upscaler,
            masks=masks,
            display_masks=display,
        )
        self.stats["decoder_calls"] += 1
        self.stats["last_decode_s"] = time.perf_counter() - t0
        self.stats["last_decoder_s"] = t1 - t0  # prompt encoder + mask decoder
        self.stats["last_upscale_s"] = t2 - t1  # display masks, and full-size ones in exact mode (lazy otherwise)
        return pred


# ---------------------------------------------------------------------- validation
def _as_float_array(value: Any, what: str) -> np.ndarray:
    try:
        raw = np.asarray(value)
    except (TypeError, ValueError):  # ragged nesting
        raise TypeError(f"{what} must be numbers, got {value!r}.") from None
    if raw.dtype.kind not in "iuf":  # bools, strings, objects (None), complex, datetimes
        raise TypeError(f"{what} must be real numbers (image pixels), not {raw.dtype} values: {value!r}.")
    arr = raw.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what} contains NaN or infinite values: {value!r}.")
    return arr


def _check_points(points: Any, labels: Any, size: tuple[int, int]):
    if points is None and labels is None:
        return None, None
    if points is None:
        raise ValueError("labels were given without points.")
    if labels is None:
        raise ValueError("points were given without labels (1 = foreground, 0 = background).")
    pts = _as_float_array(points, "points")
    if pts.ndim == 1 and pts.shape == (2,):
        pts = pts[None]
    if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] == 0:
        raise ValueError(f"points must be an N x 2 array of (x, y), got shape {pts.shape}.")
    lbl = np.asarray(labels)
    if lbl.ndim == 0:
        lbl = lbl[None]
    if lbl.ndim != 1 or lbl.shape[0] != pts.shape[0]:
        raise ValueError(f"labels must hold one value per point: {pts.shape[0]} points, labels shape {lbl.shape}.")
    if lbl.dtype.kind not in "biuf" or not np.isin(lbl, (0, 1)).all():
        raise ValueError(f"labels must be 1 (foreground) or 0 (background), got {labels!r}.")
    H, W = size
    bad = (pts[:, 0] < 0) | (pts[:, 0] > W) | (pts[:, 1] < 0) | (pts[:, 1] > H)
    if bad.any():
        x, y = pts[np.argmax(bad)]
        raise ValueError(f"point ({x:g}, {y:g}) lies outside the {W}x{H} (width x height) image.")
    return pts, lbl.astype(np.int64)


def _check_box(box: Any, size: tuple[int, int]) -> np.ndarray | None:
    if box is None:
        return None
    b = _as_float_array(box, "box").reshape(-1)
    if b.shape != (4,):
        raise ValueError(f"box must be 4 numbers (x0, y0, x1, y1), got {box!r}.")
    x0, y0, x1, y1 = b
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box must have x0 <= x1 and y0 <= y1 (XYXY), got {tuple(float(v) for v in b)}.")
    H, W = size
    if x0 < 0 or y0 < 0 or x1 > W or y1 > H:
        raise ValueError(f"box {tuple(float(v) for v in b)} reaches outside the {W}x{H} (width x height) image.")
    return b


def _check_mask_input(mask_input: Any, low_res: tuple[int, int]) -> np.ndarray | None:
    if mask_input is None:
        return None
    if not isinstance(mask_input, np.ndarray):
        raise TypeError(f"mask_input must be a NumPy array of logits, not {type(mask_input).__name__}.")
    if mask_input.dtype.kind not in "biuf":  # strings, datetimes, complex, structured, objects
        raise TypeError(
            f"mask_input must hold real numbers (low-res logits, e.g. float32), not dtype "
            f"{mask_input.dtype} ({mask_input.dtype.name})."
        )
    m = mask_input.astype(np.float32, copy=False)
    if m.ndim == 2:
        m = m[None]
    if m.shape != (1, *low_res):
        raise ValueError(f"mask_input must have shape (1, {low_res[0]}, {low_res[1]}), got {mask_input.shape}.")
    if not np.isfinite(m).all():
        raise ValueError("mask_input contains NaN or infinite values.")
    return m
