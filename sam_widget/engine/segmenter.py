"""``Segmenter``: encode an image once, answer prompts fast, exactly like SamPredictor.

Coordinate conventions (the same as segment_anything):
  * images are ``H x W x 3`` uint8 RGB (anything :func:`sam_widget.images.to_rgb_uint8`
    accepts is converted first);
  * points are ``N x 2`` arrays of ``(x, y)`` = (column, row) in image pixels;
  * boxes are ``(x0, y0, x1, y1)`` (XYXY) in image pixels;
  * masks are ``(C, H, W)`` bool at the original image size; low-resolution logits are
    ``(C, 4g, 4g)`` float32 (``256 x 256`` for the official models, ``g`` being the
    embedding grid side), usable as the next ``mask_input``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import ImageEncoderViT, Sam
from segment_anything.utils.transforms import ResizeLongestSide

from .._checks import as_flag
from .cache import DiskCache, MemoryLRU
from .fast import encoder_precision
from .fast_decoder import FastDecoder
from .precision import check_precision, resolve_precision
from .prediction import Prediction, _Upscaler  # noqa: F401 - _Upscaler is imported from here (engine.everything, tests)
from .segmenter_everything import _SegmenterEverything
from .segmenter_images import _SegmenterImages
from .segmenter_prompts import _SegmenterPrompts

__all__ = ["Segmenter", "Prediction", "DEFAULT_MEMORY_CACHE_BYTES"]

DEFAULT_MEMORY_CACHE_BYTES = 256 * 1024 * 1024


class Segmenter(_SegmenterImages, _SegmenterPrompts, _SegmenterEverything):
    """Wraps any segment_anything ``Sam``: encode once (cached), then predict per prompt.

    Args:
      sam: a ``segment_anything.modeling.Sam`` (official or custom sizes), any device.
      cache_dir: directory for the on-disk embedding cache, or ``None`` for memory only.
      exact: if True, every computation is the one ``SamPredictor`` does, so results are
        bit-identical to it; if False (default), speed-ups are used: in fp32 their results
        differ from SamPredictor by at most 0.1 % of mask pixels and 1e-3 in scores (bf16:
        see ``precision``).
      memory_cache_bytes: bound of the in-memory LRU of embeddings (4 MiB per image for
        the official models).
      precision: ``"auto"`` (default), ``"fp32"`` or ``"bf16"``: the number format of the
        image encoder's linear layers and of the mask decoder's image side (the tokens, the
        IoU head and softmax statistics stay fp32; so do the encoder's attention on CPUs, its
        residual stream and layer norms). ``"auto"`` is bf16 where the device computes bf16
        natively (CUDA compute capability >= 8.0; CPUs with AVX-512 BF16 or AMX; see
        :mod:`sam_widget.engine.precision`) and fp32 elsewhere; a model whose encoder weights
        were converted to bf16 (``load_sam(..., precision="bf16")``, the default ``"auto"``
        on such hardware) is always run in bf16. bf16 masks agree with fp32 ones to a median
        IoU >= 0.99 (see ``benchmarks/RESULTS.md``). ``exact=True`` is always fp32.

    Thread safety: ``set_image`` and ``predict`` may be called from different threads
    (e.g. encoding in the background while the UI waits); they serialise on a lock.
    """

    def __init__(
        self,
        sam: Sam,
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        exact: bool = False,
        memory_cache_bytes: int = DEFAULT_MEMORY_CACHE_BYTES,
        precision: str = "auto",
    ) -> None:
        if not isinstance(sam, Sam):
            raise TypeError(
                f"Segmenter needs a segment_anything Sam model, not {type(sam).__name__}; "
                "use Segmenter.from_pretrained('vit_b') or load_sam(...)."
            )
        check_precision(precision)
        exact = as_flag(exact, "exact")
        weights = encoder_precision(sam.image_encoder)
        if weights == "bf16":  # converted at load: the fp32 weights are gone
            if exact or precision == "fp32":
                what = "exact=True" if exact else "precision='fp32'"
                raise ValueError(
                    f"{what} needs the encoder's fp32 weights, but this model's were converted "
                    "to bf16 when it was loaded (load_sam's precision='auto' does that on CPUs "
                    "and GPUs with native bf16). Load it with load_sam(..., precision='fp32'), "
                    f"or use Segmenter.from_pretrained(..., {what})."
                )
            precision = "bf16"
        elif weights is None:  # not an ImageEncoderViT: its own forward, in its own dtype
            if exact and precision == "bf16":
                resolve_precision(precision, sam.device, exact=True)  # raises the usual error
            precision = "fp32"
        else:
            precision = resolve_precision(precision, sam.device, exact=exact)
        self.precision = precision
        self.sam = sam.eval()
        self.exact = exact
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)
        self._memory = MemoryLRU(memory_cache_bytes)
        self._disk = DiskCache(cache_dir) if cache_dir is not None else None
        self._lock = threading.RLock()
        self._inflight: dict[str, threading.Event] = {}  # embeddings being prefetched, by cache key
        self._inflight_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._fingerprint: str | None = None
        self._image: np.ndarray | None = None
        self._key: str | None = None
        self._features: torch.Tensor | None = None
        # bf16 also pays in the decoder's image side (keys after the first block, their
        # products with the tokens, the output upscaling): see benchmarks/RESULTS.md. The
        # tokens, softmax statistics and the IoU head stay fp32.
        self._fast_decoder = (
            None
            if self.exact
            else FastDecoder(sam, image_dtype=torch.bfloat16 if precision == "bf16" else None)
        )
        self._decoder_state: Any = None
        self._fp32_decoder: FastDecoder | None = None  # segment_everything's, when the other is bf16
        self._original_size: tuple[int, int] | None = None
        self._input_size: tuple[int, int] | None = None
        self.model_name: str = getattr(sam, "_sam_widget_model_type", "custom")
        self.stats: dict[str, Any] = {
            "encoder_calls": 0,
            "memory_hits": 0,
            "disk_hits": 0,
            "decoder_calls": 0,
            "last_encode_s": None,
            "last_decode_s": None,
            "last_set_image_s": None,
            "last_preprocess_s": None,
            "last_decoder_s": None,
            "last_upscale_s": None,
        }

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pretrained(
        cls,
        model_type: str = "vit_b",
        checkpoint: str | os.PathLike[str] | None = None,
        device: str | torch.device = "auto",
        cache_dir: str | os.PathLike[str] | None = None,
        *,
        precision: str = "auto",
        exact: bool = False,
        **kwargs: Any,
    ) -> "Segmenter":
        """Load a model with :func:`sam_widget.load_sam` and wrap it.

        ``precision`` (``"auto"``, ``"fp32"``, ``"bf16"``) is passed to ``load_sam``, which
        converts the encoder's weights to bf16 once when it resolves to bf16 (half the
        memory); ``exact=True`` loads fp32 weights.
        """
        from .checkpoints import load_sam

        check_precision(precision)
        load_precision = "fp32" if exact else precision
        sam = load_sam(model_type, checkpoint=checkpoint, device=device, precision=load_precision)
        return cls(sam, cache_dir=cache_dir, exact=exact, precision=precision, **kwargs)

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return self.sam.device


    def exclusive(self) -> threading.RLock:
        """A context manager making several calls one step against other threads.

        ``with seg.exclusive(): seg.set_image(img); pred = seg.predict(...)`` guarantees the
        prediction is on ``img`` even when other threads share this Segmenter (e.g. several
        widgets). Re-entrant: set_image / predict take the same lock inside.
        """
        return self._lock

    @property
    def speedups(self) -> tuple[str, ...]:
        """Names of the speed-ups in use (empty in exact mode)."""
        if self.exact:
            return ()
        out = ["fast mask decoder", "lazy full-size masks", "display-size masks for overlays"]
        if isinstance(self.sam.image_encoder, ImageEncoderViT):
            out.insert(0, "SDPA encoder attention")
            if self.precision == "bf16":
                out.insert(1, "bf16 encoder matrix products")
                out.insert(3, "bf16 mask decoder image side")
        return tuple(out)

    @property
    def is_image_set(self) -> bool:
        return self._features is not None

    @property
    def image(self) -> np.ndarray | None:
        """The current image as ``H x W x 3`` uint8 RGB (read-only), or ``None``."""
        return self._image

    @property
    def image_size(self) -> tuple[int, int] | None:
        """``(H, W)`` of the current image, or ``None``."""
        return self._original_size

    @property
    def low_res_size(self) -> tuple[int, int]:
        """``(h, w)`` of the low-resolution logits and of a ``mask_input``."""
        side = 4 * self.sam.prompt_encoder.image_embedding_size[0]
        return (side, side)
