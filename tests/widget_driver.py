"""Test-only extras for driving a ``SamWidget``; the driver itself is :mod:`sam_widget.testing`.

:mod:`sam_widget.testing` records what the canvases send (``RecordingComm``, ``layer_commands``,
``prompt_layer``, ``LayerReplay``) and sends what a page sends (``EventInjector``,
``frontend_update``, ``frontend_click``). What stays here needs torch / the model code:

* :class:`SlowSegmenter`: a ``Segmenter`` whose ``set_image`` waits on a gate and whose
  ``predict`` can be slowed down, for tests of background encoding and event coalescing.
* :func:`blob_sam` / :class:`BlobDecoder`: a tiny ``Sam`` whose masks are round blobs around
  the prompts (small, predictable masks).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import torch

from sam_widget.engine.segmenter import Segmenter

__all__ = ["SlowSegmenter", "BlobDecoder", "blob_sam"]


# ============================================================== a controllable Segmenter
class SlowSegmenter(Segmenter):
    """A ``Segmenter`` for timing tests.

    ``set_image`` first waits for :attr:`gate` (a ``threading.Event``; set it to let the
    encoding finish — it is set already unless ``gated=True``); ``predict`` sleeps
    :attr:`predict_delay` seconds first and counts its calls in :attr:`predict_calls`.
    """

    def __init__(self, sam: Any, *, gated: bool = False, predict_delay: float = 0.0, **kwargs: Any) -> None:
        kwargs.setdefault("exact", True)
        super().__init__(sam, **kwargs)
        self.gate = threading.Event()
        if not gated:
            self.gate.set()
        self.predict_delay = predict_delay
        self.predict_calls = 0
        self.predict_threads: set[str] = set()
        self.set_image_threads: list[str] = []

    def set_image(self, image: Any) -> None:
        self.set_image_threads.append(threading.current_thread().name)
        if not self.gate.wait(60):
            raise TimeoutError("SlowSegmenter gate was never opened")
        super().set_image(image)

    def predict(self, *args: Any, **kwargs: Any):
        self.predict_calls += 1
        self.predict_threads.add(threading.current_thread().name)
        if self.predict_delay:
            time.sleep(self.predict_delay)
        return super().predict(*args, **kwargs)


# ============================================================== a model with predictable masks
class BlobDecoder(torch.nn.Module):
    """Stands in for SAM's ``MaskDecoder``: each candidate is a round blob around the prompt points.

    Uses segment_anything's own prompt encoding: with the point/label embeddings set to zero
    (see :func:`blob_sam`) a point's token is its random-Fourier positional encoding, and its
    dot product with the dense positional encoding of a grid cell is a smooth kernel of the
    distance (1 at the point, ~exp(-79 d^2) for a distance ``d`` in units of the padded input
    side). Candidate ``i`` is where the strongest token's kernel exceeds ``thresholds[i]``
    (large, middle, small blob); its predicted IoU is ``scores[i]``. Every point (positive or
    negative) and both box corners attract a blob; ``mask_input`` is accepted and ignored.
    """

    def __init__(self, thresholds=(0.5, 0.65, 0.8), scores=(0.80, 0.90, 0.85)) -> None:
        super().__init__()
        self.thresholds = tuple(thresholds)
        self.scores = tuple(scores)

    def forward(self, image_embeddings, image_pe, sparse_prompt_embeddings, dense_prompt_embeddings, multimask_output):
        pe = image_pe[0]  # C x g x g
        c = pe.shape[0]
        tokens = sparse_prompt_embeddings[0]  # N x C
        valid = tokens.abs().sum(-1) > 0
        g = pe.shape[1:]
        if bool(valid.any()):
            k = torch.einsum("nc,chw->nhw", tokens[valid], pe) / (c / 2)
            kmax = k.max(0).values
        else:
            kmax = torch.full(g, -1.0)
        low = torch.nn.functional.interpolate(kmax[None, None], scale_factor=4, mode="bilinear", align_corners=False)[0, 0]
        idx = [0, 1, 2] if multimask_output else [1]
        logits = torch.stack([(low - self.thresholds[i]) * 20.0 for i in idx])[None]
        iou = torch.tensor([[self.scores[i] for i in idx]], dtype=torch.float32)
        return logits.to(image_embeddings.dtype), iou


def blob_sam(seed: int = 0) -> Any:
    """A tiny ``Sam`` (``random_sam(TINY_TEST_CONFIG, seed)``) whose masks are blobs around the clicks.

    For tests that need masks covering a small, predictable part of the image (cropped
    overlay patches, several distinct objects). Built fresh each call (never shared).
    """
    from sam_widget.engine.models import TINY_TEST_CONFIG, random_sam

    sam = random_sam(TINY_TEST_CONFIG, seed=seed)
    with torch.no_grad():
        for emb in list(sam.prompt_encoder.point_embeddings) + [sam.prompt_encoder.not_a_point_embed]:
            emb.weight.zero_()
    sam.mask_decoder = BlobDecoder()
    return sam.eval()
