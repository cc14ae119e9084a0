"""What the demo notebooks show: the real SAM on the sample photo, or the offline demo.

``demo_setup()`` decides, in this order:

1. ``$SAM_WIDGET_MODEL`` (or the ``model`` argument) names the model. ``"random_tiny"`` is
   for tests only: a tiny model with seeded *random* weights (its masks are meaningless,
   and the description says so).
2. An official model (default ``vit_b``): its checkpoint is used when it is on disk or can
   be downloaded; then the image is the bundled sample photo.
3. Otherwise one line says why, and the offline demo is used: a synthetic shapes image
   with the ``tiny_shapes`` model trained on such images. Toy masks are never shown on a
   photo as if they were SAM's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .engine.registry import DEFAULT_MODEL, MODEL_ENV, OFFLINE_MODEL, check_model_name
from .images import load_image, sample_image_path

__all__ = ["Demo", "demo_setup", "MODEL_ENV"]

RANDOM_TINY = "random_tiny"


@dataclass
class Demo:
    """``image``: H x W x 3 uint8; ``segmenter``: a ready Segmenter; ``model``: its name;
    ``description``: one sentence for the reader; ``true_masks``: (N, H, W) bool ground
    truth for synthetic images, else None."""

    image: np.ndarray
    segmenter: object
    model: str
    description: str
    true_masks: np.ndarray | None = None

    def suggest_point(self) -> tuple[int, int]:
        """An ``(x, y)`` pixel well inside an object, for cells that click on the reader's behalf.

        For synthetic images: the deepest interior pixel of the largest true object; for the
        sample photo: the red ball.
        """
        if self.true_masks is None or not len(self.true_masks):
            H, W = self.image.shape[:2]
            return (int(W * 330 / 640), int(H * 420 / 480))
        m = self.true_masks[int(np.argmax(self.true_masks.sum(axis=(1, 2))))]
        return _deepest_pixel(m)


def _deepest_pixel(mask: np.ndarray) -> tuple[int, int]:
    """``(x, y)`` of a pixel that survives the most 4-neighbour erosions of ``mask``."""
    core = mask
    while True:
        p = np.pad(core, 1)
        nxt = core & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]
        if not nxt.any():
            ys, xs = np.nonzero(core)
            i = len(ys) // 2
            return int(xs[i]), int(ys[i])
        core = nxt


def demo_setup(model: str | None = None, *, seed: int = 7, verbose: bool = True) -> Demo:
    """Choose model and image for a demo (see the module docstring). Prints at most one line."""
    from .engine.checkpoints import CheckpointError
    from .engine.segmenter import Segmenter

    name = model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    if name == RANDOM_TINY:
        from .engine.models import TINY_TEST_CONFIG, random_sam

        seg = Segmenter(random_sam(TINY_TEST_CONFIG, seed=0))
        return Demo(load_image(sample_image_path()), seg, name, "a tiny model with RANDOM weights (tests only: masks are meaningless)")
    if name == OFFLINE_MODEL:
        return _offline(seed, "the offline demo: synthetic shapes with the tiny_shapes model")
    check_model_name(name, extra=(RANDOM_TINY,))
    try:
        seg = Segmenter.from_pretrained(name)
    except CheckpointError as exc:
        reason = str(exc).split(". ")[0]
        if verbose:
            print(f"No official SAM checkpoint available ({reason}); opening the offline demo (synthetic shapes + tiny_shapes model).")
        return _offline(seed, f"the offline demo, because the {name} checkpoint could not be had")
    return Demo(load_image(sample_image_path()), seg, name, f"the official SAM {name} on the bundled sample photo")


def _offline(seed: int, description: str) -> Demo:
    from .data import shapes_image
    from .engine.segmenter import Segmenter

    image, masks = shapes_image(seed, size=(384, 512))
    return Demo(image, Segmenter.from_pretrained(OFFLINE_MODEL), OFFLINE_MODEL, description, masks)
