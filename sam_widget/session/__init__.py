"""The session room: images, per-image state, the segmenter and the background work, with no widgets.

``Session(images, model=...)`` is what ``SamWidget`` shows; scripts can use it directly.
"""

from .core import Preview, Session, SessionListener
from .images import ImageSet
from .pages import ImageResult, Results
from .status import SessionStatus

__all__ = ["Session", "SessionListener", "SessionStatus", "ImageSet", "ImageResult", "Results", "Preview"]
