"""sam_widget: Segment Anything inside the notebook.

>>> from sam_widget import SamWidget
>>> w = SamWidget(image)          # click on the object you care about
>>> w.mask                         # (H, W) bool NumPy array in the next cell

Public names are loaded lazily (torch is imported only when the engine is used).
"""

from ._lazy import lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    "load_sam": ".engine.checkpoints",
    "CheckpointError": ".engine.checkpoints",
    "Segmenter": ".engine.segmenter",
    "Prediction": ".engine.segmenter",
    "Proposal": ".engine.proposals",
    "Proposals": ".engine.proposals",
    "SamWidget": ".ui.widget",
    "Session": ".session",
    "ImageError": ".images",
    "sample_image_path": ".images",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
