"""``tiny_shapes``: a small SAM trained in this repository on synthetic shapes, shipped offline.

It is a real ``segment_anything.modeling.Sam`` (same classes and code paths as the official
models), just much smaller: 256-px input, a 16-px patch (a 16 x 16 embedding grid, so 64 x 64
low-resolution mask logits, upsampled bilinearly to the image as SAM always does). It was trained from scratch by ``scripts/train_tiny_sam.py`` on
images from :func:`sam_widget.data.shapes_image` only, so it segments flat, textured or striped
ellipses, rectangles, polygons, rings and blobs on textured backgrounds; on photographs it
produces plausible-looking but unreliable masks. Its purpose is teaching how prompts behave,
offline demos and geometry tests.

Measured by ``scripts/eval_tiny_sam.py`` (100 held-out images, 403 objects, seed 0), mean IoU:
one click at the object's deepest pixel 0.859, a box with +-5 % jitter 0.870, three
corrective clicks 0.900 (0.89996); image encode + first mask about 10-20 ms on a 2-core CPU.
Masks are coarse (64 x 64 logits): small objects (< 1000 px, click 0.73), polygons with sharp
corners (0.79) and rings (0.81) are its weakest cases.

    from sam_widget.engine.tiny import load_tiny_shapes
    sam = load_tiny_shapes()          # eval mode, on CPU, about 40 ms to build and load
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from segment_anything.modeling import Sam

from .models import SamConfig

__all__ = ["TINY_SHAPES_CONFIG", "TINY_SHAPES_WEIGHTS", "load_tiny_shapes", "tiny_shapes_config"]

TINY_SHAPES_CONFIG = SamConfig(
    encoder_embed_dim=96,
    encoder_depth=4,
    encoder_num_heads=3,
    encoder_global_attn_indexes=(1, 3),
    img_size=256,
    patch_size=16,
    window_size=8,
    prompt_embed_dim=64,
    mask_in_chans=16,
    decoder_depth=2,
    decoder_mlp_dim=256,
    decoder_num_heads=4,
    iou_head_hidden_dim=64,
)
"""Sizes of the ``tiny_shapes`` model (input 256 px, 16 x 16 embedding grid, 64 x 64 logits)."""

_FIXED_FIELDS = ("img_size", "pixel_mean", "pixel_std")


def tiny_shapes_config(overrides: str = "") -> SamConfig:
    """``TINY_SHAPES_CONFIG`` with ``field=value,...`` overrides, for training experiments.

    Values are ints, or ints joined by ``+`` for the tuple field, e.g.
    ``"encoder_embed_dim=128,encoder_depth=6,encoder_global_attn_indexes=2+5"``. The input size
    and pixel statistics are fixed (the training data and evaluation depend on them).

    Raises:
        ValueError: on an unknown or fixed field, a value that is not an int, or several
            ints for a field that takes one.
    """
    changes: dict[str, object] = {}
    for item in filter(None, overrides.split(",")):
        key, _, value = item.partition("=")
        if key not in SamConfig.__dataclass_fields__ or key in _FIXED_FIELDS:
            raise ValueError(f"unknown or fixed SamConfig field {key!r} in {overrides!r}")
        try:
            parsed = tuple(int(v) for v in value.split("+"))
        except ValueError:
            raise ValueError(f"{key} needs an int value (ints joined by '+' for a tuple), got {value!r}") from None
        is_tuple = key.endswith("indexes")
        if len(parsed) > 1 and not is_tuple:
            raise ValueError(f"{key} takes one int, got {value!r}")
        changes[key] = parsed if is_tuple else parsed[0]
    return dataclasses.replace(TINY_SHAPES_CONFIG, **changes)


TINY_SHAPES_WEIGHTS: Path = Path(__file__).resolve().parent.parent / "weights" / "tiny_shapes.pt"
"""The shipped weights: a plain float16 ``state_dict`` of ``build_sam(TINY_SHAPES_CONFIG)``."""


def load_tiny_shapes(device: str | torch.device = "cpu") -> Sam:
    """Build the ``tiny_shapes`` ``Sam`` and load the shipped weights (``weights_only=True``).

    Args:
        device: where to put the model, e.g. ``"cpu"`` or ``torch.device("cuda:0")``.

    Returns:
        A float32 ``Sam`` in eval mode. Use it like any SAM, e.g. with
        ``segment_anything.SamPredictor`` or ``sam_widget.engine.segmenter.Segmenter``.

    Raises:
        TypeError: if ``device`` is not a str or ``torch.device``.
        FileNotFoundError: if the weights file is missing from the installed package.
    """
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str or torch.device, not {type(device).__name__}.")
    device = torch.device(device)
    if not TINY_SHAPES_WEIGHTS.is_file():
        raise FileNotFoundError(
            f"The tiny_shapes weights are missing: {TINY_SHAPES_WEIGHTS} does not exist. "
            "They ship inside the sam_widget package (package data 'weights/*'); reinstall "
            "sam_widget, or regenerate them with scripts/train_tiny_sam.py."
        )
    from .checkpoints import _build_from_state_dict  # (checkpoints imports this module)

    state = torch.load(TINY_SHAPES_WEIGHTS, map_location="cpu", weights_only=True)
    # built on the meta device, weights adopted: no random initialisation, so loading (on a
    # widget's worker thread) never draws from the user's seeded torch generator
    sam = _build_from_state_dict(state, TINY_SHAPES_CONFIG, TINY_SHAPES_WEIGHTS, "tiny_shapes")
    return sam.to(device).eval()
