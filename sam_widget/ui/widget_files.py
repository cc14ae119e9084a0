"""``SamWidget``'s files: the session file, autosave, COCO, label PNGs, measurements.

:class:`_WidgetFiles` is the part of :class:`~sam_widget.ui.widget.SamWidget` that reads and
writes files (the widget inherits it); the session does the work (see
:mod:`sam_widget.session.files`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..session import Session

if TYPE_CHECKING:  # pragma: no cover
    from .widget import SamWidget

__all__ = ["_WidgetFiles"]


class _WidgetFiles:
    """Save / load / autosave and export / import through the widget (see :mod:`.widget_files`).

    A mixin of ``SamWidget``: relies on ``self._session`` (the
    :class:`~sam_widget.session.Session`) set by ``SamWidget.__init__``; the class methods
    (:meth:`load`, :meth:`from_coco`) build the widget with ``cls(session, hover=...)`` and
    set its ``_owns_session``.
    """

    # ------------------------------------------------------------------ files (the session does the work)
    @property
    def autosave(self) -> Any:
        """The autosave file (a ``Path``), or None."""
        return self._session.autosave

    def save(self, path: Any = None) -> Any:
        """Write the whole session (every image, its objects with masks, labels, colours, scores,
        prompts, ids; the current image; the model) to ``path`` as a session file, atomically;
        ``None``: the autosave file, now. Load it with :meth:`SamWidget.load`. See
        :meth:`Session.save <sam_widget.session.Session.save>`."""
        return self._session.save(path)

    @classmethod
    def load(cls, path: Any, images: Any = None, *, hover: bool = False, **kwargs: Any) -> "SamWidget":
        """A widget over a session saved with :meth:`save` (or by autosave), e.g. in a new
        kernel: same images, objects, prompts, ids and current image; the undo history starts
        fresh. ``images``: the pixels of images that were given in memory (checked by sha256);
        ``kwargs``: the session's arguments (``autosave=True`` keeps saving into ``path``). See
        :meth:`Session.load <sam_widget.session.Session.load>`."""
        return cls._owning(Session.load(path, images, **kwargs), hover)

    def to_coco(self, path: Any = None, **options: Any) -> dict:
        """Every image and its objects as COCO instances JSON (written to ``path`` when given);
        ``polygons=True`` for polygons. See :meth:`Session.to_coco <sam_widget.session.Session.to_coco>`."""
        return self._session.to_coco(path, **options)

    def export_png(self, out_dir: Any, **options: Any) -> list:
        """Per image a label PNG equal to ``results[i].labels`` (``per_object=True``: one mask
        PNG per object) into ``out_dir``. See :meth:`Session.export_png <sam_widget.session.Session.export_png>`."""
        return self._session.export_png(out_dir, **options)

    def measurements(self, **options: Any) -> Any:
        """pandas DataFrame, one row per object of every image (area, bbox, centroid, perimeter,
        ..., mean intensity; ``pixel_size=`` for physical units). See
        :meth:`Session.measurements <sam_widget.session.Session.measurements>`."""
        return self._session.measurements(**options)

    @classmethod
    def from_coco(cls, path: Any, image_dir: Any = None, *, images: Any = None, hover: bool = False, **kwargs: Any) -> "SamWidget":
        """A widget over the images of a COCO file, every annotation an editable object. See
        :meth:`Session.from_coco <sam_widget.session.Session.from_coco>`."""
        return cls._owning(Session.from_coco(path, image_dir, images=images, **kwargs), hover)

    def load_coco(self, path: Any, image_dir: Any = None) -> int:
        """Add a COCO file's annotations as objects of these images; returns how many. See
        :meth:`Session.load_coco <sam_widget.session.Session.load_coco>`."""
        return self._session.load_coco(path, image_dir)

    @classmethod
    def _owning(cls, session: Session, hover: bool) -> "SamWidget":
        try:
            w = cls(session, hover=hover)
        except BaseException:
            session.close()
            raise
        w._owns_session = True  # made here: closing the widget closes it
        return w
