"""The engine room: the only part of sam_widget that imports torch.

Names are imported lazily so that ``import sam_widget.engine.cache`` stays light.
"""

from .._lazy import lazy_getattr

_EXPORTS = {
    "CheckpointError": ".checkpoints",
    "load_sam": ".checkpoints",
    "select_device": ".checkpoints",
    "apply_precision": ".checkpoints",
    "resolve_precision": ".precision",
    "SamConfig": ".models",
    "build_sam": ".models",
    "random_sam": ".models",
    "Prediction": ".segmenter",
    "Proposal": ".proposals",
    "Proposals": ".proposals",
    "Segmenter": ".segmenter",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)
