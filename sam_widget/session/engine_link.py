"""The session's only door to the engine: load the model, encode, predict, prefetch.

Every call into a ``Segmenter`` from a session goes through :class:`EngineLink`, and every
prediction through :meth:`EngineLink.predict` -- one place to adopt new engine options
(display-size masks, precision, segment-everything). torch is imported only when the model
is loaded (on the worker thread), never here at import time.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from ..engine.registry import CheckpointError, check_device_name, check_model_name

__all__ = ["EngineLink"]


class EngineLink:
    """Holds the segmenter (given, or loaded from ``model`` / ``checkpoint`` on first use).

    The constructor checks its arguments without importing torch and raises at once:
    ``TypeError`` for a segmenter that is not a sam_widget ``Segmenter``, ``ValueError`` for
    an unknown model name or a misspelt device, :class:`CheckpointError` for a checkpoint
    path that does not exist. ``model=None`` with a checkpoint: the type is inferred from
    the file (as ``load_sam`` does).
    """

    def __init__(
        self,
        segmenter: Any | None,
        model: str | None,
        checkpoint: str | os.PathLike | None,
        device: Any,
        cache_dir: str | os.PathLike | None,
        precision: str = "auto",
    ) -> None:
        if not isinstance(precision, str) or precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be 'auto', 'fp32' or 'bf16', got {precision!r}.")
        if segmenter is not None:
            from ..engine.segmenter import Segmenter  # torch is loaded already: the user made one

            if not isinstance(segmenter, Segmenter):
                raise TypeError(f"segmenter must be a sam_widget Segmenter, not {type(segmenter).__name__}.")
        else:
            if model is not None:
                check_model_name(model)
            check_device_name(device)
            if isinstance(device, str) and device.strip().lower() not in ("auto", "cpu"):
                from ..engine.checkpoints import select_device  # asked for an accelerator: is it there?

                select_device(device)
            if checkpoint is not None:
                if not isinstance(checkpoint, (str, os.PathLike)):
                    raise TypeError(f"checkpoint must be a path, not {type(checkpoint).__name__}.")
                path = os.path.expanduser(os.fspath(checkpoint))
                if not os.path.exists(path):
                    raise CheckpointError(
                        f"Checkpoint file {path} does not exist. Pass the path of a SAM .pth file, or "
                        f"checkpoint=None to download the official one."
                    )
                if not os.path.isfile(path):
                    raise CheckpointError(f"Checkpoint {path} is not a regular file (pass the .pth file itself).")
                if model == "tiny_shapes":
                    raise ValueError("model='tiny_shapes' ships with sam_widget and takes no checkpoint.")
            elif model is None:
                model = "vit_b"
        self.segmenter = segmenter
        self._spec = (model, checkpoint, device, cache_dir, precision)
        self.last_timing: dict[str, Any] = {}  # what the last predict cost (worker thread), see predict
        self._reset: dict[int, dict[str, Any]] = {}  # page id -> how its image was set again, for its next predict
        if segmenter is not None:
            self.label = segmenter.model_name
        else:
            self.label = model if model is not None else "SAM (from the checkpoint)"

    @property
    def loaded(self) -> bool:
        return self.segmenter is not None

    @property
    def device(self) -> str:
        return str(self.segmenter.device) if self.segmenter is not None else "…"

    @property
    def stats(self) -> dict:
        return self.segmenter.stats if self.segmenter is not None else {}

    def load(self) -> None:
        """Load the model if none was given (worker thread; may take seconds to minutes)."""
        if self.segmenter is None:
            from ..engine.segmenter import Segmenter

            model, checkpoint, device, cache_dir, precision = self._spec
            self.segmenter = Segmenter.from_pretrained(
                model, checkpoint=checkpoint, device=device, cache_dir=cache_dir, precision=precision
            )
            self.label = self.segmenter.model_name

    # ------------------------------------------------------------------ per image
    def set_image(self, page: Any, rgb: np.ndarray) -> None:
        """Make ``rgb`` (page ``page``'s pixels) the segmenter's image: encoded or a cache hit.

        ``page.embedding`` records how the first time (see :meth:`_set_image`); a later set
        (another image took the segmenter meanwhile) is reported by the page's next predict."""
        seg = self.segmenter
        with seg.exclusive():
            record = self._set_image(seg, rgb, getattr(page, "prefetched", False))
            if getattr(page, "embedding", None) is None:
                page.embedding = record
            else:
                self._reset[id(page)] = record
            page.seg_image = seg.image

    @staticmethod
    def _set_image(seg: Any, rgb: np.ndarray, prefetched: bool = False) -> dict[str, Any]:
        """``seg.set_image(rgb)``; returns how the embedding was had: ``source`` ("encoder",
        "memory", "disk", or "prefetch" for a memory hit on an embedding computed in the
        background), ``seconds`` (the whole set_image), and for the encoder ``preprocess_s``
        (resize + normalise) and ``encoder_s`` (the image encoder itself)."""
        st = seg.stats
        before = (st.get("encoder_calls", 0), st.get("disk_hits", 0))
        t0 = time.perf_counter()
        seg.set_image(rgb)
        seconds = time.perf_counter() - t0
        if st.get("encoder_calls", 0) != before[0]:
            pre = st.get("last_preprocess_s") or 0.0
            return {"source": "encoder", "seconds": seconds, "preprocess_s": pre,
                    "encoder_s": max(0.0, (st.get("last_encode_s") or seconds) - pre)}
        source = "disk" if st.get("disk_hits", 0) != before[1] else ("prefetch" if prefetched else "memory")
        return {"source": source, "seconds": seconds}

    def predict(self, page: Any, rgb: np.ndarray, **kwargs: Any) -> Any:
        """``Segmenter.predict(**kwargs)`` on page ``page``'s image (``rgb``).

        A Segmenter holds one image at a time and may be shared (several widgets, the other
        pages of this session): if another image was set since, set ours again first (an
        embedding-cache hit), as one step against other threads.
        """
        seg = self.segmenter
        with seg.exclusive():
            embedding = self._reset.pop(id(page), None)
            if seg.image is None or seg.image is not page.seg_image:
                embedding = self._set_image(seg, rgb)
                page.seg_image = seg.image
            pred = seg.predict(**kwargs)
            st = seg.stats
            self.last_timing = {
                "embedding": embedding,  # None: the image was the segmenter's already
                "decoder_s": st.get("last_decoder_s"),
                "upscale_s": st.get("last_upscale_s"),
            }
            return pred

    def prefetch(self, rgb: np.ndarray) -> bool:
        """Encode ``rgb`` into the embedding cache in the background (True if the encoder ran)."""
        return self.segmenter.prefetch(rgb)

    def mask_input(self, mask: np.ndarray) -> np.ndarray:
        """Low-res logits ``(1, h, w)`` for refining a mask that has none."""
        return self.segmenter.mask_input_from_mask(mask)

    # ------------------------------------------------------------------ segment everything
    @staticmethod
    def everything_params(params: dict[str, Any]) -> Any:
        """Validated ``EverythingParams`` (``TypeError`` for an unknown name, ``ValueError``
        naming a value out of range). Imports the engine (torch) if it is not loaded yet."""
        from ..engine.everything_params import params_from

        return params_from(params)

    def segment_everything(self, page: Any, rgb: np.ndarray, params: Any, **kwargs: Any) -> Any:
        """``segment_everything`` on page ``page``'s image (``rgb``): made the segmenter's
        image (an embedding-cache hit once encoded) as one step with the run's snapshot of
        it, so another image set meanwhile (a click on another page) cannot be segmented
        instead. ``kwargs``: ``progress``, ``cancel``, ``on_batch``. Does not hold the
        segmenter's lock while decoding: predictions go on meanwhile."""
        from ..engine.everything import segment_everything

        def prepare(seg: Any) -> None:
            if seg.image is None or seg.image is not page.seg_image:
                seg.set_image(rgb)
                page.seg_image = seg.image

        return segment_everything(self.segmenter, params, prepare=prepare, **kwargs)

    # ------------------------------------------------------------------ explain view
    def candidate_stats(self, logits: np.ndarray, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
        """``(stability, area)`` of ``(C, h, w)`` logits: segment_anything's stability scores and
        the masks' pixel counts at the model's threshold (``engine.explain.candidate_stats``)."""
        from ..engine.explain import candidate_stats

        return candidate_stats(self.segmenter, logits, image_hw)

    def geometry(self, image_hw: tuple[int, int]) -> Any:
        """Where an image of ``image_hw`` lies on the low-res logits (``engine.explain.LogitGeometry``)."""
        from ..engine.explain import logit_geometry

        return logit_geometry(self.segmenter, image_hw)

    @property
    def mask_threshold(self) -> float:
        """The model's logit threshold (0.0 for SAM); 0.0 until the model is loaded."""
        seg = self.segmenter
        return 0.0 if seg is None else float(seg.sam.mask_threshold)

    def model_info(self) -> dict[str, Any]:
        """How to build this model again: ``name`` ("vit_b", "tiny_shapes", "custom", ...),
        ``checkpoint`` (absolute path or None), ``exact``, ``precision``, ``device``."""
        seg = self.segmenter
        model, checkpoint, device, _cache, precision = self._spec
        if seg is None:
            return {"name": model, "checkpoint": None if checkpoint is None else os.path.abspath(os.fspath(checkpoint)),
                    "exact": False, "precision": precision, "device": str(device)}
        return {
            "name": seg.model_name,
            "checkpoint": getattr(seg.sam, "_sam_widget_checkpoint", None),
            "exact": bool(seg.exact),
            "precision": str(getattr(seg, "precision", "fp32")),
            "device": str(seg.device),
        }
