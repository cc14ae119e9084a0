"""What a worker needs to build its Segmenter, and the per-process cache that builds it once.

A :class:`ModelSpec` is small and picklable: it travels with every task, and each worker
process turns it into a ``Segmenter`` the first time it sees it and keeps it for every later
task (a model is loaded once per worker, not once per image). No torch is imported here
until a worker builds the model.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["ModelSpec", "worker_segmenter", "loaded_models"]


@dataclass(frozen=True)
class ModelSpec:
    """How to build the model on a worker.

    ``model``: a model name (``"vit_b"``, ``"vit_l"``, ``"vit_h"``, ``"tiny_shapes"``) or a
    picklable zero-argument callable returning a ``segment_anything`` ``Sam`` (e.g.
    ``functools.partial(random_sam, config, seed=0)``) — the callable travels, not the weights.
    ``checkpoint``: a path readable on every worker, or None for the official file (downloaded
    once per worker host into the normal cache). ``cache_dir``: the shared embedding cache
    (the same directory ``Segmenter`` and ``SamWidget`` read). ``segmenter_kwargs``: extra
    ``Segmenter`` keywords (e.g. ``exact=True``), as a tuple of pairs so the spec stays hashable.
    """

    model: str | Callable[[], Any] = "vit_b"
    checkpoint: str | None = None
    device: str = "auto"
    cache_dir: str | None = None
    segmenter_kwargs: tuple[tuple[str, Any], ...] = field(default=())
    torch_threads: int | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.model, str) or callable(self.model)):
            raise TypeError(
                f"model must be a model name such as 'vit_b' or a callable returning a Sam, not {type(self.model).__name__}."
            )
        if self.checkpoint is not None and not isinstance(self.checkpoint, (str, os.PathLike)):
            raise TypeError(f"checkpoint must be a path, not {type(self.checkpoint).__name__}.")
        if self.cache_dir is not None and not isinstance(self.cache_dir, (str, os.PathLike)):
            raise TypeError(f"cache_dir must be a path, not {type(self.cache_dir).__name__}.")

    @property
    def key(self) -> str:
        """A stable identity of this spec across processes (callables by their pickle)."""
        model = self.model if isinstance(self.model, str) else pickle.dumps(self.model)
        raw = pickle.dumps((model, self.checkpoint and os.fspath(self.checkpoint), self.device,
                            self.cache_dir and os.fspath(self.cache_dir), self.segmenter_kwargs))
        return hashlib.sha1(raw).hexdigest()

    @property
    def label(self) -> str:
        """A short human-readable name for reports."""
        if isinstance(self.model, str):
            return self.model
        return getattr(self.model, "__name__", None) or getattr(getattr(self.model, "func", None), "__name__", "custom")

    def build(self) -> Any:
        """A new ``Segmenter`` for this spec (loads the model; imports torch)."""
        from ..engine.segmenter import Segmenter

        kwargs = dict(self.segmenter_kwargs)
        if isinstance(self.model, str):
            return Segmenter.from_pretrained(
                self.model, checkpoint=self.checkpoint, device=self.device, cache_dir=self.cache_dir, **kwargs
            )
        from segment_anything.modeling import Sam

        sam = self.model()
        if not isinstance(sam, Sam):
            raise TypeError(f"the model factory returned {type(sam).__name__}, not a segment_anything Sam.")
        if self.device != "auto":
            from ..engine.checkpoints import select_device

            sam = sam.to(select_device(self.device))
        return Segmenter(sam, cache_dir=self.cache_dir, **kwargs)


_LOCK = threading.Lock()
_SEGMENTERS: dict[str, Any] = {}
_LOADS: dict[str, int] = {}


def worker_segmenter(spec: ModelSpec) -> Any:
    """This process's ``Segmenter`` for ``spec``, built on first use and then kept.

    Thread-safe: worker threads of one process share one model (its lock serialises them).
    """
    key = spec.key
    seg = _SEGMENTERS.get(key)
    if seg is not None:
        return seg
    with _LOCK:
        seg = _SEGMENTERS.get(key)
        if seg is None:
            if spec.torch_threads is not None:
                import torch

                torch.set_num_threads(spec.torch_threads)
            seg = _SEGMENTERS[key] = spec.build()
            _LOADS[key] = _LOADS.get(key, 0) + 1
    return seg


def loaded_models() -> dict[str, int]:
    """``{spec key: times loaded}`` in this process (a worker loads each spec once)."""
    return dict(_LOADS)
