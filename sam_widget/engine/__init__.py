"""The engine room: the only part of sam_widget that imports torch.

Names are imported lazily so that ``import sam_widget.engine.cache`` stays light.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "CheckpointError": ".checkpoints",
    "load_sam": ".checkpoints",
    "select_device": ".checkpoints",
    "SamConfig": ".models",
    "build_sam": ".models",
    "random_sam": ".models",
    "Prediction": ".segmenter",
    "Segmenter": ".segmenter",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
