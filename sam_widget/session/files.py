"""What a session reads and writes: its save file, autosave, COCO, label PNGs, measurements.

:class:`SessionFiles` is the part of :class:`~sam_widget.session.Session` that deals with
files (the session inherits it); the work is done by :mod:`.persist` (the save file),
:mod:`.autosave` and :mod:`.exchange` (COCO / PNG / measurements through
:mod:`sam_widget.io`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ..io import DEFAULT_TOLERANCE, read_session
from ..io._common import check_output_file
from .autosave import Autosaver
from .persist import RestorePlan, apply_plan, load_sources, plan_load, read_autosave, save_session

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = ["SessionFiles", "FilesState"]

_FROM_FILE: Any = object()  # "as saved in the file"


@dataclass
class FilesState:
    """A session's file bookkeeping: the autosave file and its writer, the sha256 of in-memory
    images, image sizes known from a file (for images that cannot be read now), the
    categories and image keys of an imported COCO file, and the "restored ..." notice."""

    autosave_path: Path | None = None
    autosaver: Autosaver | None = None
    sha: dict[int, str] = field(default_factory=dict)
    known_hw: dict[int, tuple[int, int]] = field(default_factory=dict)
    categories: list[dict[str, Any]] | None = None
    coco_images: dict[int, dict[str, Any]] = field(default_factory=dict)
    notice: str | None = None
    notice_state: tuple[int, Any] | None = None


class SessionFiles:
    """Save / load / autosave and export / import for a session (see :mod:`.files`)."""

    _files: FilesState

    # ------------------------------------------------------------------ set-up (Session.__init__)
    def _init_files(self, autosave: Any, restore: RestorePlan | None) -> int:
        """Check the autosave path, restore an existing autosave file (or ``restore``); before
        any thread starts. Returns the image to show first. Raises, with nothing written."""
        self._files = FilesState()
        target = None
        if autosave is not None:
            if isinstance(autosave, bool) or not isinstance(autosave, (str, os.PathLike)):
                raise TypeError(f"autosave must be a file path (e.g. 'work.json') or None, not {type(autosave).__name__}.")
            target = check_output_file(autosave, "autosave file").absolute()  # fixed now: cells may %cd later
            if restore is None:
                restore = read_autosave(self.images, target)  # type: ignore[attr-defined]
            elif target.exists() and (restore.source is None or os.path.realpath(restore.source) != os.path.realpath(target)):
                raise ValueError(
                    f"the autosave file {str(target)!r} exists and holds other work; it would be overwritten. "
                    "Choose another autosave file, or open that one with Session.load(...)."
                )
        index = 0
        if restore is not None:
            index = apply_plan(self, restore)  # type: ignore[arg-type]
            self._files.categories = restore.categories
            self._files.coco_images = dict(restore.coco_images)
            self._files.notice = restore.notice
        self._files.autosave_path = target
        return index

    def _start_files(self) -> None:
        """After the threads started: remember the restored state (for the notice), start autosaving."""
        files = self._files
        files.notice_state = (self.index, self.current.objects)  # type: ignore[attr-defined]
        if files.autosave_path is not None:
            files.autosaver = Autosaver(self, files.autosave_path).start()  # type: ignore[arg-type]
            self.subscribe(files.autosaver)  # type: ignore[attr-defined]

    def _close_files(self) -> None:
        saver = self._files.autosaver
        if saver is not None:
            self.unsubscribe(saver)  # type: ignore[attr-defined]
            saver.close()  # writes what is pending

    @property
    def notice(self) -> str | None:
        """What the status line says about where the objects came from ("restored 12 objects on
        3 images from work.json"), until the first change; else None."""
        files = self._files
        state = files.notice_state
        if files.notice and state is not None and state[0] == self.index and state[1] is self.current.objects:  # type: ignore[attr-defined]
            return files.notice
        return None

    @property
    def autosave(self) -> Path | None:
        """The autosave file, or None."""
        return self._files.autosave_path

    # ------------------------------------------------------------------ the save file
    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write the whole session to ``path`` (``None``: the autosave file, now) as a session
        file -- a COCO instances JSON with the sam_widget fields, see
        :func:`sam_widget.io.write_session`: every image (path; for an image given in memory the
        sha256 of its pixels and its size), its objects (id, label, colour, exact mask, score,
        prompts with the chosen candidate and the refinement chain) and next object id, the
        current image, the model (name, checkpoint, precision).

        Not saved: the undo history and the current, uncommitted prompts. Written atomically.
        ``ValueError`` for a path in a missing directory or a directory (nothing written).
        """
        if path is None:
            if self._files.autosave_path is None:
                raise ValueError("save() needs a path (this session has no autosave file).")
            saver = self._files.autosaver
            if saver is not None:
                saver.touch()
                saver.flush()
                if saver.error is not None:
                    raise OSError(saver.error)
                return self._files.autosave_path
            path = self._files.autosave_path
        return save_session(self, path)  # type: ignore[arg-type]

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        images: Any = None,
        *,
        segmenter: Any = None,
        model: Any = _FROM_FILE,
        checkpoint: Any = _FROM_FILE,
        autosave: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Open a session saved with :meth:`save` (or by autosave), in this or a new process:
        the same images, objects (masks, labels, colours, scores, prompts, ids), next ids and
        current image. Editing continues; the undo history starts fresh.

        Args:
          path: the session file.
          images: needed when the session had images given in memory (the file holds only their
            sha256 and size): one array per in-memory image, in order; or one entry per image
            (None: as saved; a path: the file moved); or ``{index or name: image}``. Each
            array's sha256 is checked.
          segmenter / model / checkpoint: by default the model named in the file (``model`` and
            ``checkpoint`` as saved).
          autosave: keep saving every change into ``path``.
          kwargs: the other ``Session`` arguments (``device``, ``display_size``, ...).

        Raises :class:`~sam_widget.io.FormatError` (a ``ValueError``) naming the file for a
        missing, corrupt, truncated or foreign file; ``ValueError`` for missing or different
        in-memory images, or an image file whose size no longer fits its saved masks. Image
        files that cannot be read any more show their error when shown (their objects stay).
        """
        if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"load takes the path of a session file, not {type(path).__name__}.")
        if not isinstance(autosave, bool):
            raise TypeError("autosave must be True or False here (it saves into the loaded file).")
        file = Path(path).expanduser()
        data = read_session(file)
        sources = load_sources(data, file, images)
        if segmenter is None and model is _FROM_FILE:
            from ..engine.registry import check_model_name

            model = data.model.get("name") or "vit_b"
            checkpoint = data.model.get("checkpoint") if checkpoint is _FROM_FILE else checkpoint
            try:
                check_model_name(model)
            except ValueError:
                raise ValueError(
                    f"{str(file)!r} was made with the model {model!r}, which cannot be loaded by name: "
                    "pass segmenter= (or model= and checkpoint=)."
                ) from None
            saved = data.model.get("precision")
            if "precision" not in kwargs and saved in ("fp32", "bf16"):
                kwargs["precision"] = saved  # the same numbers as when the masks were made
        model = None if model is _FROM_FILE else model
        checkpoint = None if checkpoint is _FROM_FILE else checkpoint
        single = bool(data.extra.get("single")) and len(sources) == 1
        return cls(  # type: ignore[call-arg]
            sources[0] if single else sources, segmenter, model, checkpoint,
            autosave=file if autosave else None, _restore=plan_load(data, file), **kwargs,
        )

    # ------------------------------------------------------------------ export / import
    def to_coco(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        polygons: bool = False,
        tolerance: float = DEFAULT_TOLERANCE,
        holes: Literal["rle", "extra"] = "rle",
        categories: Any = None,
    ) -> dict[str, Any]:
        """Every image of the session and its objects as a COCO instances dict (written
        atomically to ``path`` when given): one ``images`` entry per image, one annotation per
        object (compressed RLE, or ``polygons=True`` with ``tolerance`` px; ``bbox`` is COCO's
        XYWH), one category per label, the score and the prompts in ``"sam_widget"``. See
        :func:`sam_widget.io.to_coco` and :mod:`sam_widget.session.exchange` for names and ids."""
        from . import exchange

        return exchange.to_coco(self, path, polygons=polygons, tolerance=tolerance, holes=holes, categories=categories)

    def export_png(self, out_dir: str | os.PathLike[str], *, per_object: bool = False, bits: Literal[1, 8] = 8) -> list[Path]:
        """Per image ``<stem>_labels.png`` (8-bit up to 255 objects, else 16-bit; equal to
        ``results[i].labels``) and with ``per_object`` one ``<stem>_<i>_<label>.png`` mask per
        object, into ``out_dir`` (created). See :func:`sam_widget.io.export_png`."""
        from . import exchange

        return exchange.export_png(self, out_dir, per_object=per_object, bits=bits)

    def measurements(self, *, pixel_size: float | None = None, unit: str = "um") -> "pd.DataFrame":
        """A pandas DataFrame, one row per object of every image: label, image, area, bbox,
        centroid (x, y), perimeter, equivalent diameter, eccentricity, solidity, mean intensity
        per channel (of the image's pixels as given or stored), predicted IoU; physical units
        with ``pixel_size``. See :func:`sam_widget.io.measurements` for the columns."""
        from . import exchange

        return exchange.measurements(self, pixel_size=pixel_size, unit=unit)

    @classmethod
    def from_coco(
        cls, path: str | os.PathLike[str], image_dir: str | os.PathLike[str] | None = None, *, images: Any = None, **kwargs: Any
    ) -> Any:
        """A new session over the images of a COCO instances file, every annotation an editable
        object (RLE, uncompressed RLE, polygons, ``iscrowd`` ones too; label = category name;
        prompts, candidate and chain when sam_widget wrote them). Image files are looked up in
        ``image_dir`` (default: next to the COCO file); ``images`` gives them instead (one entry
        per image, or ``{file_name: image}``). ``kwargs``: the ``Session`` arguments.

        Raises :class:`~sam_widget.io.FormatError` for a bad file (naming it and the entry),
        ``ValueError`` for images not found or whose size differs from the file's."""
        from .exchange import plan_coco

        sources, plan = plan_coco(path, image_dir, images)
        return cls(sources[0] if len(sources) == 1 else sources, _restore=plan, **kwargs)  # type: ignore[call-arg]

    def load_coco(self, path: str | os.PathLike[str], image_dir: str | os.PathLike[str] | None = None) -> int:
        """Add the annotations of a COCO file as objects of this session's images (matched by
        path, with ``image_dir``, or by file name); one undo step per image. Returns how many
        objects were added. ``ValueError`` (nothing added) for images not in the session or
        of another size; :class:`~sam_widget.io.FormatError` for a bad file."""
        from .exchange import load_coco

        self._check_open()  # type: ignore[attr-defined]
        return load_coco(self, path, image_dir)  # type: ignore[arg-type]
