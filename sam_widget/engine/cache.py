"""Embedding cache: an in-memory LRU bounded in bytes, plus an optional on-disk store.

Keys are strings built by :func:`image_key` (pixels + shape + dtype) and a model
fingerprint (see ``Segmenter``). Values on disk are ``.npz`` files holding the embedding
and a JSON header with the key, the fingerprint and a checksum of the embedding bytes.
A file that is corrupt, truncated, written for another model or for another image is
reported with a warning and treated as a miss; the next ``put`` replaces it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["image_key", "DiskEntry", "MemoryLRU", "DiskCache", "CacheWarning"]

log = logging.getLogger(__name__)
_FORMAT_VERSION = 1


class CacheWarning(UserWarning):
    """A disk-cache entry was unusable and is being recomputed."""


def image_key(image: np.ndarray) -> str:
    """A hex digest of an image's pixels, shape and dtype (``H x W x 3`` uint8 expected)."""
    h = hashlib.blake2b(digest_size=20)
    h.update(repr((image.shape, str(image.dtype))).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


class MemoryLRU:
    """A thread-safe least-recently-used map bounded by the total ``nbytes`` of its values.

    ``put(key, value, nbytes)``; ``get(key)`` returns the value or ``None`` and marks it as
    most recently used. An entry larger than the bound is not kept.
    """

    def __init__(self, max_bytes: int) -> None:
        if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a non-negative int, got {max_bytes!r}.")
        self.max_bytes = max_bytes
        self._items: OrderedDict[str, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    @property
    def nbytes(self) -> int:
        """Total bytes currently held."""
        return self._bytes

    def get(self, key: str) -> Any | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            self._items.move_to_end(key)
            return item[0]

    def put(self, key: str, value: Any, nbytes: int) -> None:
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if nbytes > self.max_bytes:
                return
            self._items[key] = (value, nbytes)
            self._bytes += nbytes
            while self._bytes > self.max_bytes:
                _, (_, n) = self._items.popitem(last=False)
                self._bytes -= n

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0


@dataclass(frozen=True)
class DiskEntry:
    """What the disk cache stores for one (image, model) pair.

    ``features``: float32 ``(1, C, h, w)`` image embedding; ``original_size`` and
    ``input_size`` are ``(H, W)`` before and after SAM's longest-side resize.
    """

    features: np.ndarray
    original_size: tuple[int, int]
    input_size: tuple[int, int]


class DiskCache:
    """One ``.npz`` file per entry under ``directory``, written atomically (temp + rename)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        if not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"cache_dir must be a path, not {type(directory).__name__}.")
        self.directory = Path(directory).expanduser()
        if self.directory.exists() and not self.directory.is_dir():
            raise ValueError(f"cache_dir {str(self.directory)!r} exists and is not a directory.")
        self.directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str, fingerprint: str) -> Path:
        return self.directory / f"{key}-{fingerprint[:16]}.npz"

    def get(self, key: str, fingerprint: str) -> DiskEntry | None:
        """The stored entry, or ``None`` if absent or unusable (a warning says why)."""
        path = self.path_for(key, fingerprint)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z["header"]).decode("utf-8"))
                features = np.array(z["features"])
            problem = self._check(header, features, key, fingerprint)
        except Exception as exc:  # noqa: BLE001 - any failure to read means "recompute"
            problem = f"unreadable ({type(exc).__name__}: {exc})"
        if problem:
            warnings.warn(
                f"Embedding cache file {str(path)!r} is {problem}; recomputing and replacing it.",
                CacheWarning,
                stacklevel=3,
            )
            return None
        return DiskEntry(
            features=features,
            original_size=tuple(header["original_size"]),
            input_size=tuple(header["input_size"]),
        )

    @staticmethod
    def _check(header: dict, features: np.ndarray, key: str, fingerprint: str) -> str:
        if header.get("version") != _FORMAT_VERSION:
            return f"of an unknown format version {header.get('version')!r}"
        if header.get("fingerprint") != fingerprint:
            return "for a different model (fingerprint mismatch)"
        if header.get("image_key") != key:
            return "for a different image (key mismatch)"
        if features.dtype != np.float32 or list(features.shape) != header.get("shape"):
            return "damaged (shape or dtype mismatch)"
        if hashlib.sha256(features.tobytes()).hexdigest() != header.get("sha256"):
            return "damaged (checksum mismatch)"
        return ""

    def put(self, key: str, fingerprint: str, entry: DiskEntry) -> Path:
        """Write an entry atomically; returns its path. Failures warn and do not raise."""
        path = self.path_for(key, fingerprint)
        features = np.ascontiguousarray(entry.features, dtype=np.float32)
        header = {
            "version": _FORMAT_VERSION,
            "fingerprint": fingerprint,
            "image_key": key,
            "shape": list(features.shape),
            "sha256": hashlib.sha256(features.tobytes()).hexdigest(),
            "original_size": list(entry.original_size),
            "input_size": list(entry.input_size),
        }
        buf = io.BytesIO()
        np.savez(buf, features=features, header=np.frombuffer(json.dumps(header).encode(), np.uint8))
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".npz", dir=self.directory)
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getbuffer())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            tmp = None
        except OSError as exc:
            warnings.warn(f"Could not write embedding cache file {str(path)!r}: {exc}", CacheWarning, stacklevel=3)
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
        return path
