"""``Segmenter``'s images: set_image, prefetch, the embedding caches, encoding, the fingerprint.

:class:`_SegmenterImages` is the part of :class:`~sam_widget.engine.segmenter.Segmenter`
that turns an image into the model's embedding (the segmenter inherits it): from the
in-memory LRU or the disk cache (:mod:`.cache`), from a :meth:`prefetch` in flight, or by
running the image encoder (:mod:`.fast`); the cache keys include :attr:`fingerprint`.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from typing import Any

import numpy as np
import torch
from segment_anything.modeling import ImageEncoderViT
from segment_anything.utils.transforms import ResizeLongestSide

from ..images import to_rgb_uint8
from .cache import DiskEntry, image_key
from .fast import run_encoder

__all__ = ["_SegmenterImages"]

_FINGERPRINT_SAMPLES = 65536  # values hashed per tensor (plus a sum over all of them)


class _SegmenterImages:
    """The current image, the embedding caches and the encoder (see :mod:`.segmenter_images`).

    A mixin of ``Segmenter``: relies on ``self.sam``, ``self.exact``, ``self.precision``,
    ``self.transform``, ``self._memory`` / ``self._disk`` (the caches), ``self._lock``,
    ``self._inflight`` / ``self._inflight_lock``, ``self._stats_lock``, ``self._fingerprint``,
    ``self._image``, ``self._key``, ``self._features``, ``self._decoder_state``,
    ``self._original_size``, ``self._input_size`` and ``self.stats``, all set by
    ``Segmenter.__init__``, and on its ``device``.
    """

    # ------------------------------------------------------------------ fingerprint
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
        self._check_image_size(rgb.shape[:2])
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
