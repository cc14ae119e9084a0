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

import hashlib
import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from segment_anything.modeling import ImageEncoderViT, Sam
from segment_anything.utils.transforms import ResizeLongestSide

from ..images import to_rgb_uint8
from .cache import DiskCache, DiskEntry, MemoryLRU, image_key
from .fast import encoder_precision, run_encoder
from .fast_decoder import FastDecoder
from .precision import check_precision, resolve_precision

if TYPE_CHECKING:  # pragma: no cover
    from .proposals import Proposals

__all__ = ["Segmenter", "Prediction", "DEFAULT_MEMORY_CACHE_BYTES"]

DEFAULT_MEMORY_CACHE_BYTES = 256 * 1024 * 1024
_FINGERPRINT_SAMPLES = 65536  # values hashed per tensor (plus a sum over all of them)


class Prediction:
    """The answer to one prompt: up to three candidate masks with their predicted IoU.

    Attributes:
      scores: ``(C,)`` float32 predicted IoU of each candidate.
      logits: ``(C, h, w)`` float32 low-resolution mask logits (``h = w = 256`` for the
        official models); pass ``logits[i:i+1]`` as the next ``mask_input``.
      image_size: ``(H, W)`` of the original image.
      masks: ``(C, H, W)`` bool candidate masks at the original image size. Computed on
        first access and then kept.
      display_size: ``(h, w)`` given to ``Segmenter.predict(display_size=...)``, else None.
      display_masks: ``(C, h, w)`` bool candidate masks at ``display_size``, computed by the
        segmenter inside ``predict`` (under its lock, on the calling thread), or None.
    """

    def __init__(
        self,
        scores: np.ndarray,
        logits: np.ndarray,
        image_size: tuple[int, int],
        upscaler: "_Upscaler",
        masks: np.ndarray | None = None,
        display_masks: np.ndarray | None = None,
    ) -> None:
        self.scores = scores
        self.logits = logits
        self.image_size = image_size
        self._upscaler = upscaler
        self._masks = masks
        self._single: dict[int, np.ndarray] = {}
        self.display_masks = display_masks
        self.display_size: tuple[int, int] | None = (
            None if display_masks is None else (int(display_masks.shape[1]), int(display_masks.shape[2]))
        )

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def __repr__(self) -> str:
        sc = ", ".join(f"{s:.3f}" for s in self.scores)
        return f"Prediction({len(self)} masks of {self.image_size[0]}x{self.image_size[1]}, scores=[{sc}])"

    @property
    def best(self) -> int:
        """Index of the candidate with the highest predicted IoU."""
        return int(np.argmax(self.scores))

    @property
    def masks(self) -> np.ndarray:
        masks = self._masks
        if masks is None:
            masks = self._masks = self._upscaler.full(self.logits)
        return masks

    def mask(self, index: int, threshold: float | None = None) -> np.ndarray:
        """Candidate ``index`` as an ``(H, W)`` bool mask at the original image size.

        Cheaper than ``masks[index]`` when only one candidate is needed. ``threshold``: the
        logit a pixel must exceed (None: the model's ``mask_threshold``, 0.0 for SAM); a
        mask at another threshold is computed each time (not cached), with the same
        upsampling as ``Sam.postprocess_masks``.
        """
        index = self._check_index(index)
        if threshold is not None and float(threshold) != self._upscaler.threshold:
            return self._upscaler.full(self.logits[index : index + 1], float(threshold))[0]
        masks = self._masks
        if masks is not None:
            return masks[index]
        single = self._single
        m = single.get(index)
        if m is None:
            m = single[index] = self._upscaler.full(self.logits[index : index + 1])[0]
        return m

    @property
    def cached_mask_bytes(self) -> int:
        """Bytes of full-size masks this prediction holds now (computed on access, see :meth:`drop_masks`)."""
        masks = self._masks
        return (masks.nbytes if masks is not None else 0) + sum(m.nbytes for m in list(self._single.values()))

    def drop_masks(self) -> None:
        """Forget the full-size masks computed so far (to bound memory; thread-safe).

        They are computed again from :attr:`logits` on the next access, with the same result
        (the exact mode's masks included: the same resampling as ``Sam.postprocess_masks``).
        """
        self._masks = None
        self._single = {}

    def mask_at_size(self, index: int, size: tuple[int, int], threshold: float | None = None) -> np.ndarray:
        """Candidate ``index`` resampled straight from the logits to ``size = (h, w)``.

        For display: costs ``h * w`` work instead of the full image's, resampling the valid
        part of the logits once (the full-size path resamples twice, as SamPredictor does,
        so edges may differ by a fraction of a display pixel). ``(h, w)`` should keep the
        image's aspect ratio. At the image's own size this is exactly ``masks[index]``.
        ``threshold``: as for :meth:`mask`.
        """
        index = self._check_index(index)
        if tuple(size) == tuple(self.image_size):
            return self.mask(index, threshold)
        same = threshold is None or float(threshold) == self._upscaler.threshold
        if same and self.display_masks is not None and tuple(size) == self.display_size:
            return self.display_masks[index]
        return self._upscaler.to_display(self.logits[index : index + 1], size, threshold)[0]

    @property
    def mask_threshold(self) -> float:
        """The model's logit threshold (``Sam.mask_threshold``, 0.0 for SAM)."""
        return float(self._upscaler.threshold)

    def display_mask(self, index: int) -> np.ndarray:
        """Candidate ``index`` at the ``display_size`` given to ``predict``: ``(h, w)`` bool.

        Already computed (no torch work here), and what :meth:`mask_at_size` returns for that
        size. Raises ``ValueError`` if ``predict`` was called without ``display_size``.
        """
        index = self._check_index(index)
        if self.display_masks is None:
            raise ValueError(
                "this prediction has no display masks: call Segmenter.predict(..., display_size=(h, w))."
            )
        return self.display_masks[index]

    def _check_index(self, index: int) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"mask index must be an int, not {type(index).__name__}.")
        if not 0 <= int(index) < len(self):
            raise IndexError(f"mask index {index} out of range for {len(self)} candidates.")
        return int(index)


class _Upscaler:
    """Turns low-res logits into masks exactly as ``Sam.postprocess_masks`` does."""

    def __init__(self, sam: Sam, input_size: tuple[int, int], original_size: tuple[int, int]):
        self.img_size = sam.image_encoder.img_size
        self.threshold = sam.mask_threshold
        self.input_size = input_size
        self.original_size = original_size

    @torch.no_grad()
    def to_size(
        self, logits: np.ndarray | torch.Tensor, size: tuple[int, int], threshold: float | None = None
    ) -> np.ndarray:
        # candidates as a batch of one-channel planes: the same bilinear maths per plane, and
        # up to ~3x faster than one 3-channel image with torch's CPU kernel (measured, 1 thread)
        if isinstance(logits, torch.Tensor):
            t = logits.float()[:, None]
        else:
            t = torch.from_numpy(np.ascontiguousarray(logits))[:, None]
        t = F.interpolate(t, (self.img_size, self.img_size), mode="bilinear", align_corners=False)
        t = t[..., : self.input_size[0], : self.input_size[1]]
        t = F.interpolate(t, tuple(size), mode="bilinear", align_corners=False)
        return (t[:, 0] > (self.threshold if threshold is None else threshold)).cpu().numpy()

    def full(self, logits: np.ndarray | torch.Tensor, threshold: float | None = None) -> np.ndarray:
        return self.to_size(logits, self.original_size, threshold)

    @torch.no_grad()
    def to_display(
        self, logits: np.ndarray | torch.Tensor, size: tuple[int, int], threshold: float | None = None
    ) -> np.ndarray:
        """One resampling from the valid low-res crop straight to ``size`` (for display).

        Skips the ``img_size``² intermediate of :meth:`to_size`; the crop is rounded up to
        whole low-res pixels and the overshoot sliced off after resampling, so the geometry
        matches to a fraction of a display pixel. ``logits``: ``(C, h, w)`` array or tensor.
        """
        lr_h, lr_w = logits.shape[-2:]
        rows = self.input_size[0] * lr_h / self.img_size  # valid low-res extent (float)
        cols = self.input_size[1] * lr_w / self.img_size
        r, c = math.ceil(rows - 1e-9), math.ceil(cols - 1e-9)
        out_h, out_w = round(size[0] * r / rows), round(size[1] * c / cols)
        if isinstance(logits, torch.Tensor):
            t = logits[:, None, :r, :c].float()
        else:
            t = torch.from_numpy(np.ascontiguousarray(logits[..., :r, :c]))[:, None]
        t = F.interpolate(t, (out_h, out_w), mode="bilinear", align_corners=False)
        return (t[:, 0, : size[0], : size[1]] > (self.threshold if threshold is None else threshold)).cpu().numpy()


class Segmenter:
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
            precision = resolve_precision(precision, sam.device, exact=bool(exact))
        self.precision = precision
        self.sam = sam.eval()
        self.exact = bool(exact)
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

    @property
    def fingerprint(self) -> str:
        """Hex digest of the encoder weights, preprocessing (incl. image_format) and mode.

        Computed once, on first use, from every weight's sum and a sample of the values.
        Changing the model's weights in place afterwards is not detected; call
        :meth:`refresh_fingerprint` if you do that.
        """
        if self._fingerprint is None:
            self._fingerprint = self._compute_fingerprint()
        return self._fingerprint

    def refresh_fingerprint(self) -> str:
        """Recompute :attr:`fingerprint` (after changing weights in place) and forget cached embeddings."""
        with self._lock:
            self._fingerprint = None
            self._memory.clear()
            return self.fingerprint

    @torch.no_grad()
    def _compute_fingerprint(self) -> str:
        # Every weight counts through a per-tensor float64 sum, plus names, shapes, dtypes and
        # a strided sample of the values (small tensors whole): ~0.1 s for vit_b instead of
        # the ~1 s it takes to hash all 342 MiB, which a disk-cache hit in a new process pays.
        h = hashlib.sha256()
        h.update(
            f"mode={'exact' if self.exact else 'fast'};img={self.sam.image_encoder.img_size};"
            f"format={self.sam.image_format};precision={self.precision}".encode()  # a BGR model encodes flipped pixels
        )
        for name, t in list(self.sam.image_encoder.state_dict().items()) + [
            ("pixel_mean", self.sam.pixel_mean),
            ("pixel_std", self.sam.pixel_std),
        ]:
            flat = t.detach().reshape(-1)
            step = max(1, flat.numel() // _FINGERPRINT_SAMPLES)
            if flat.device.type != "cpu":  # sum on the device, bring only the sample over
                total, values = flat.float().sum().item(), flat[::step].float().cpu().numpy()
            else:  # numpy: single-threaded, where torch's threads stall on busy cores
                values = flat.float().numpy()
                total, values = float(values.sum()), values[::step]
            h.update(f"{name};{tuple(t.shape)};{t.dtype};{total!r}".encode())
            h.update(values.tobytes())
        return h.hexdigest()[:40]

    # ------------------------------------------------------------------ images
    def set_image(self, image: Any) -> None:
        """Make ``image`` the current image, encoding it unless it is cached.

        ``image``: ndarray ``H x W``, ``H x W x 1``, ``H x W x 3``, ``H x W x 4`` (uint8,
        uint16, bool or float in [0, 1]), a PIL image, or a path. Raises ``TypeError`` /
        ``ValueError`` for anything else; the previous image then stays current.
        """
        rgb = to_rgb_uint8(image)
        self._check_image_size(rgb.shape[:2])
        rgb.setflags(write=False)
        key = image_key(rgb)
        t0 = time.perf_counter()
        with self._lock:
            cached = self._embedding(rgb, key)
            self._features, self._original_size, self._input_size = cached
            self._decoder_state = None  # prepared on the first predict (keeps cache hits ~ms)
            self._image, self._key = rgb, key
            self.stats["last_set_image_s"] = time.perf_counter() - t0

    def prefetch(self, image: Any) -> bool:
        """Compute ``image``'s embedding into the caches without making it the current image.

        For sessions over many images: encode the next image in a background thread while
        the current one is being clicked on. Does not hold the lock that ``set_image`` and
        ``predict`` take, so predictions on the current image go on meanwhile; a
        ``set_image`` of the same image waits for this encoding instead of repeating it.
        Returns True if the encoder ran, False if the embedding was cached already (memory or
        disk). Same arguments and errors as :meth:`set_image`.
        """
        rgb = to_rgb_uint8(image)
        key = image_key(rgb)
        fp = self.fingerprint
        with self._inflight_lock:
            if key + fp in self._memory:
                return False
            gate = self._inflight.get(key + fp)
            owner = gate is None
            if owner:
                gate = self._inflight[key + fp] = threading.Event()
        if not owner:
            gate.wait()
            return False
        try:
            if self._disk is not None and (entry := self._disk.get(key, fp)) is not None:
                feats = torch.from_numpy(entry.features).to(self.device)
                self._remember(key, fp, (feats, entry.original_size, entry.input_size))
                with self._stats_lock:
                    self.stats["disk_hits"] += 1
                return False
            cached = self._encode(rgb)
            self._remember(key, fp, cached)
            if self._disk is not None:
                self._disk.put(key, fp, DiskEntry(cached[0].detach().cpu().numpy(), cached[1], cached[2]))
            return True
        finally:
            with self._inflight_lock:
                self._inflight.pop(key + fp, None)
            gate.set()

    def _wait_for_prefetch(self, cache_key: str) -> tuple | None:
        """If a :meth:`prefetch` of this image is running, wait for it and return its result."""
        with self._inflight_lock:
            gate = self._inflight.get(cache_key)
        if gate is None:
            return None
        gate.wait()
        return self._memory.get(cache_key)

    @torch.no_grad()
    def mask_input_from_mask(self, mask: np.ndarray) -> np.ndarray:
        """Low-resolution logits ``(1, h, w)`` float32 (see :attr:`low_res_size`) describing an
        ``(H, W)`` bool mask of an ``H x W`` image: usable as ``predict(mask_input=...)``.

        For refining a mask that did not come from this model (drawn elsewhere, loaded from a
        file): each low-res cell gets the logit of the fraction of it the mask covers (1e-3 ..
        1 - 1e-3, i.e. about +-6.9), laid out like the model's own logits (the image resized
        to the longest side, padding right and below is background). Upsampled the way
        predictions are, these logits give back the mask up to the low-res cell size.
        """
        m = np.asarray(mask)
        if m.ndim != 2 or m.size == 0:
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

    def _embedding(self, rgb: np.ndarray, key: str) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        """``(features, original_size, input_size)`` of ``rgb`` from the caches (or from a
        :meth:`prefetch` of it in flight), else encoded (and cached). Does not change the
        current image; callers other than set_image (the crops of segment_everything) call it
        without holding the lock."""
        fp = self.fingerprint
        cached = self._memory.get(key + fp)
        if cached is not None:
            self.stats["memory_hits"] += 1
            if self._disk is not None and not self._disk.path_for(key, fp).exists():
                # deleted meanwhile (or written by another process's run): keep disk complete
                self._disk.put(key, fp, DiskEntry(cached[0].detach().cpu().numpy(), cached[1], cached[2]))
        elif self._disk is not None and (entry := self._disk.get(key, fp)) is not None:
            cached = (
                torch.from_numpy(entry.features).to(self.device),
                entry.original_size,
                entry.input_size,
            )
            self.stats["disk_hits"] += 1
            self._remember(key, fp, cached)
        elif (cached := self._wait_for_prefetch(key + fp)) is not None:
            self.stats["memory_hits"] += 1
        else:
            cached = self._encode(rgb)
            self._remember(key, fp, cached)
            if self._disk is not None:
                self._disk.put(key, fp, DiskEntry(cached[0].detach().cpu().numpy(), cached[1], cached[2]))
        return cached

    def _check_image_size(self, hw: tuple[int, int]) -> None:
        """Refuse images the model's resize would squash to 0 px on their short side."""
        H, W = int(hw[0]), int(hw[1])
        side = self.sam.image_encoder.img_size
        h, w = ResizeLongestSide.get_preprocess_shape(H, W, side)
        if h < 1 or w < 1:
            long_side, short = max(H, W), min(H, W)
            need = math.ceil(long_side / (2 * side))
            raise ValueError(
                f"The image is {H} x {W} (height x width): too thin for this model, which "
                f"resizes the longer side to {side} px, so the shorter side would become 0 px. "
                f"The shorter side must be at least 1/{2 * side} of the longer one: at least "
                f"{need} px for a longer side of {long_side} px (it is {short} px). Pad or crop "
                "the image."
            )

    def _remember(self, key: str, fp: str, value: tuple) -> None:
        feats = value[0]
        self._memory.put(key + fp, value, feats.element_size() * feats.nelement())

    @torch.no_grad()
    def _encode(self, rgb: np.ndarray) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
        t0 = time.perf_counter()
        if self.sam.image_format != "RGB":
            rgb = rgb[..., ::-1]
        input_image = self.transform.apply_image(rgb)
        x = torch.as_tensor(input_image, device=self.device).permute(2, 0, 1).contiguous()[None]
        input_size = (int(x.shape[-2]), int(x.shape[-1]))
        x = self.sam.preprocess(x)
        preprocess_s = time.perf_counter() - t0
        enc = self.sam.image_encoder
        if not isinstance(enc, ImageEncoderViT):
            features = enc(x)
        elif self.exact:  # segment_anything's own forward, even if the model was accelerate()d
            features = ImageEncoderViT.forward(enc, x)
        else:  # SDPA attention with the relative-position bias as a mask; bf16 linears if asked
            features = run_encoder(enc, x, self.precision)
        with self._stats_lock:
            self.stats["encoder_calls"] += 1
            self.stats["last_encode_s"] = time.perf_counter() - t0
            self.stats["last_preprocess_s"] = preprocess_s  # resize + normalise, part of last_encode_s
        return features, (int(rgb.shape[0]), int(rgb.shape[1])), input_size

    def reset_image(self) -> None:
        """Forget the current image (cached embeddings are kept)."""
        with self._lock:
            self._features = self._image = self._key = self._decoder_state = None
            self._original_size = self._input_size = None

    # ------------------------------------------------------------------ prompts
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
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be numbers, got {value!r}.") from None
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


def _check_display_size(size: Any) -> tuple[int, int] | None:
    if size is None:
        return None
    try:
        h, w = size
    except (TypeError, ValueError):
        raise TypeError(f"display_size must be a pair (h, w) of ints, got {size!r}.") from None
    for v in (h, w):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"display_size must be a pair (h, w) of ints, got {size!r}.")
    if not (1 <= h <= 65536 and 1 <= w <= 65536):
        raise ValueError(f"display_size must be between 1 and 65536 pixels per side, got {size!r}.")
    return int(h), int(w)


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
