"""``Segmenter``'s segment-everything entry point: SAM's automatic mask generator.

:class:`_SegmenterEverything` is the part of :class:`~sam_widget.engine.segmenter.Segmenter`
that starts a segment-everything run (the segmenter inherits it); the run itself is
:mod:`.everything`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import torch

from .fast_decoder import FastDecoder

if TYPE_CHECKING:  # pragma: no cover
    from .proposals import Proposals

__all__ = ["_SegmenterEverything"]


class _SegmenterEverything:
    """:meth:`segment_everything` and the decoder it batches through (see :mod:`.segmenter_everything`).

    A mixin of ``Segmenter``: relies on ``self.sam``, ``self._fast_decoder`` and
    ``self._fp32_decoder``, set by ``Segmenter.__init__``; :mod:`.everything` uses the rest
    of the segmenter (its lock, current image, embeddings and stats).
    """

    # ------------------------------------------------------------------ segment everything
    @property
    def _everything_decoder(self) -> FastDecoder | None:
        """The fast decoder ``segment_everything`` batches prompts through: the click path's own
        one, or an fp32 twin of it when that one computes its image side in bf16 (the batched
        path is fp32 throughout). None in exact mode."""
        dec = self._fast_decoder
        if dec is None or dec.image_dtype in (None, torch.float32):
            return dec
        if self._fp32_decoder is None:
            self._fp32_decoder = FastDecoder(self.sam)
        return self._fp32_decoder

    def segment_everything(
        self,
        points_per_side: int | None = 32,
        pred_iou_thresh: float = 0.88,
        stability_score_thresh: float = 0.95,
        box_nms_thresh: float = 0.7,
        min_mask_region_area: int = 0,
        crop_n_layers: int = 0,
        progress: bool = True,
        cancel: threading.Event | None = None,
        *,
        on_batch: Any = None,
        prepare: Any = None,
        **params: Any,
    ) -> "Proposals":
        """Every object of the current image: SAM's automatic mask generator.

        Parameters and their meaning are ``segment_anything.SamAutomaticMaskGenerator``'s
        (``points_per_batch``, ``stability_score_offset``, ``crop_nms_thresh``,
        ``crop_overlap_ratio``, ``crop_n_points_downscale_factor``, ``point_grids`` go in
        ``**params``); with ``exact=True`` the masks equal its ``generate(image)``'s. Uses
        the cached embedding (no encode for the current image).

        Args:
          progress: show a tqdm progress bar (terminal or notebook), advanced per batch.
          cancel: a ``threading.Event``; once set, the run stops before its next batch and
            returns what it found, with ``partial=True``.
          on_batch: called with the proposals found so far (a partial ``Proposals``) after
            every batch, on this thread.
          prepare: called as ``prepare(segmenter)`` under the Segmenter's lock just before
            the run takes its snapshot of the current image, e.g. to ``set_image`` the image
            to segment when other threads share this Segmenter (as one step with the snapshot).

        Returns a :class:`~sam_widget.engine.proposals.Proposals` sorted by predicted IoU,
        highest first (each with ``.mask``, ``.score``, ``.stability``, ``.bbox`` COCO
        XYWH, ``.area``, ``.point``). Raises ``ValueError`` naming a bad parameter and
        ``RuntimeError`` if no image is set. Does not hold the Segmenter's lock while it
        decodes; a second call waits for the first (see :mod:`sam_widget.engine.everything`).
        """
        from .everything import params_from, segment_everything

        p = params_from(
            dict(
                points_per_side=points_per_side,
                pred_iou_thresh=pred_iou_thresh,
                stability_score_thresh=stability_score_thresh,
                box_nms_thresh=box_nms_thresh,
                min_mask_region_area=min_mask_region_area,
                crop_n_layers=crop_n_layers,
                **params,
            )
        )
        return segment_everything(self, p, progress=progress, cancel=cancel, on_batch=on_batch, prepare=prepare)
