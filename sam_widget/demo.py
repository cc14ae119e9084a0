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

import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

import numpy as np

from .engine.registry import DEFAULT_MODEL, MODEL_ENV, OFFLINE_MODEL, WORKDIR_ENV, check_model_name
from .images import load_image, sample_image_path

__all__ = ["Demo", "demo_setup", "prepare_workdir", "MODEL_ENV", "WORKDIR_ENV"]

RANDOM_TINY = "random_tiny"


@dataclass
class Demo:
    """``image``: H x W x 3 uint8; ``segmenter``: a ready Segmenter; ``model``: its name;
    ``description``: one sentence for the reader; ``true_masks``: (N, H, W) bool ground
    truth of ``image`` for synthetic images, else None; ``images``: a small set of images to
    annotate, ``image`` first (just ``[image]`` unless given)."""

    image: np.ndarray
    segmenter: object
    model: str
    description: str
    true_masks: np.ndarray | None = None
    images: list[np.ndarray] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.images:
            self.images = [self.image]

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


def demo_setup(model: str | None = None, *, seed: int = 7, verbose: bool = True, **segmenter_kwargs: Any) -> Demo:
    """Choose model and image for a demo (see the module docstring).

    With ``verbose`` it prints exactly one line: what the demo shows, or, when the official
    checkpoint cannot be had, why not and that the offline demo opens instead.
    ``segmenter_kwargs`` go to ``Segmenter.from_pretrained`` (e.g. ``exact=True`` for
    SamPredictor's own fp32 computations, ``precision="fp32"``).
    """
    from .engine.checkpoints import CheckpointError
    from .engine.segmenter import Segmenter

    name = model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    if name == RANDOM_TINY:
        from .engine.models import TINY_TEST_CONFIG, random_sam

        seg = Segmenter(random_sam(TINY_TEST_CONFIG, seed=0), **segmenter_kwargs)
        demo = Demo(load_image(sample_image_path()), seg, name, "a tiny model with RANDOM weights (tests only: masks are meaningless)")
        demo.images += _more_scenes(seed)
    elif name == OFFLINE_MODEL:
        demo = _offline(seed, "the offline demo: synthetic shapes with the tiny_shapes model", segmenter_kwargs)
    else:
        check_model_name(name, extra=(RANDOM_TINY,))
        try:
            seg = Segmenter.from_pretrained(name, **segmenter_kwargs)
        except CheckpointError as exc:
            if verbose:
                print(
                    f"No official SAM checkpoint available ({_why_unavailable(name, exc)}); "
                    "opening the offline demo (synthetic shapes + tiny_shapes model)."
                )
            return _offline(seed, f"the offline demo, because the {name} checkpoint could not be had", segmenter_kwargs)
        demo = Demo(load_image(sample_image_path()), seg, name, f"the official SAM {name} on the bundled sample photo")
        demo.images += _more_scenes(seed)  # SAM segments the synthetic scenes too
    if verbose:
        print(f"Showing {demo.description}.")
    return demo


def _why_unavailable(name: str, exc: Exception) -> str:
    """A short, plain reason why ``name``'s checkpoint could not be had (no raw OS error text)."""
    import socket
    import urllib.error

    from .engine.checkpoints import checkpoint_path

    cause = exc.__cause__
    where = checkpoint_path(name)
    if isinstance(cause, urllib.error.HTTPError):
        how = f"the server answered HTTP {cause.code}"
    elif isinstance(cause, urllib.error.URLError):
        reason = cause.reason
        if isinstance(reason, socket.gaierror):
            how = "no network (the download host could not be found)"
        elif isinstance(reason, (TimeoutError, socket.timeout)):
            how = "the download server did not answer in time"
        else:
            how = "the download server could not be reached"
    elif isinstance(cause, (TimeoutError, socket.timeout)):
        how = "the download server did not answer in time"
    elif isinstance(cause, ConnectionError):
        how = "the download was cut off"
    else:  # a damaged file, an unwritable directory...: the error's own first sentence
        return str(exc).split(". ")[0]
    return f"{name} is not in {where.parent} and could not be downloaded: {how}"


def _more_scenes(seed: int, count: int = 2) -> list[np.ndarray]:
    """The synthetic scenes after ``seed`` (the rest of the demo's small set of images)."""
    from .data import shapes_image

    return [shapes_image(seed + k, size=(384, 512))[0] for k in range(1, count + 1)]


def _offline(seed: int, description: str, segmenter_kwargs: dict[str, Any] | None = None) -> Demo:
    from .data import shapes_image
    from .engine.segmenter import Segmenter

    image, masks = shapes_image(seed, size=(384, 512))
    return Demo(image, Segmenter.from_pretrained(OFFLINE_MODEL, **(segmenter_kwargs or {})), OFFLINE_MODEL, description, masks, [image, *_more_scenes(seed)])


# ------------------------------------------------------------------ the demo's working folder

_STAMP_KEY = "sam_widget_demo"  # notebook metadata: what prepare_workdir wrote


def _cells_digest(nb: dict) -> str:
    cells = [(c.get("cell_type"), "".join(c.get("source", ""))) for c in nb.get("cells", [])]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def _clean_notebook(nb: dict) -> dict:
    """``nb`` without outputs, execution counts or saved widget state (a fresh copy)."""
    nb = json.loads(json.dumps(nb))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        cell.get("metadata", {}).pop("execution", None)
    nb.get("metadata", {}).pop("widgets", None)
    return nb


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def prepare_workdir(
    workdir: str | os.PathLike[str],
    notebooks: list[str | os.PathLike[str]],
    *,
    repo: str | os.PathLike[str] | None = None,
    verbose: bool = True,
) -> list[Path]:
    """Put fresh copies of ``notebooks`` into ``workdir`` for a JupyterLab session; return them.

    What ``scripts/demo.sh`` opens, so that JupyterLab's autosave never writes into the
    repository and every launch starts clean: each copy has no outputs, no execution counts
    and no saved widget state (saved widget views are what JupyterLab shows as "Error
    displaying widget: model not found" in a new kernel). A copy from an earlier launch is
    replaced when only its outputs changed; if its cells were edited it is kept, renamed to
    ``<name>-edited-<YYYYmmdd-HHMMSS>.ipynb`` (one line on stderr says so). Checkpoints of the replaced
    copies (``.ipynb_checkpoints``) are removed, and so are saved JupyterLab workspaces under
    ``workdir/.jupyter/workspaces`` (point ``$JUPYTERLAB_WORKSPACES_DIR`` there), so no layout
    from a previous session is restored.

    Raises ``ValueError`` if ``workdir`` lies inside ``repo`` (the copies must not become
    files of the repository) and ``FileNotFoundError`` for a missing notebook; nothing is
    written then.
    """
    work = Path(workdir).expanduser().resolve()
    sources = [Path(p) for p in notebooks]
    for src in sources:
        if not src.is_file():
            raise FileNotFoundError(f"notebook {src} does not exist.")
    if repo is not None:
        root = Path(repo).resolve()
        if work == root or root in work.parents:
            raise ValueError(
                f"the demo's working folder {work} is inside the repository {root}; choose a "
                f"folder outside it (${WORKDIR_ENV}), so that notebooks saved there never "
                "change the repository's files."
            )
    work.mkdir(parents=True, exist_ok=True)
    workspaces = work / ".jupyter" / "workspaces"
    workspaces.mkdir(parents=True, exist_ok=True)
    for old in workspaces.iterdir():
        if old.is_file():
            old.unlink()
    written = []
    for src in sources:
        fresh = _clean_notebook(json.loads(src.read_text(encoding="utf-8")))
        fresh.setdefault("metadata", {})[_STAMP_KEY] = {"cells_sha256": _cells_digest(fresh)}
        dest = work / src.name
        if dest.exists():
            try:
                old = json.loads(dest.read_text(encoding="utf-8"))
                wrote = old.get("metadata", {}).get(_STAMP_KEY, {}).get("cells_sha256")
                edited = wrote != _cells_digest(old)
            except (ValueError, AttributeError):
                edited = True  # not a notebook we can read: keep it
            if edited:
                stamp, n = time.strftime("%Y%m%d-%H%M%S"), 1
                kept = dest.with_name(f"{dest.stem}-edited-{stamp}{dest.suffix}")
                while kept.exists():
                    n += 1
                    kept = dest.with_name(f"{dest.stem}-edited-{stamp}-{n}{dest.suffix}")
                os.replace(dest, kept)
                if verbose:
                    print(f"demo: your edited {dest.name} was kept as {kept}", file=sys.stderr)
        _write_json_atomic(dest, fresh)
        (work / ".ipynb_checkpoints" / f"{dest.stem}-checkpoint{dest.suffix}").unlink(missing_ok=True)
        written.append(dest)
    return written
