"""Turn committed objects into a Python cell that makes their masks again with plain SAM.

``SamWidget.to_code()`` / ``Session.to_code()`` / ``ObjectRecord.to_code()`` and
:func:`session_file_code` (for a saved session file) write code that uses only
``segment_anything``'s ``sam_model_registry`` and ``SamPredictor`` (plus NumPy, Pillow and
pycocotools for the saved masks):

1. the model: ``sam_model_registry[type](checkpoint=...)``; ``tiny_shapes`` (which ships
   with sam_widget) through ``sam_widget.engine.tiny.load_tiny_shapes``; a model handed to
   sam_widget as an object cannot be named, so the cell asks for it. **Hook**: a
   ``segment_anything`` ``Sam`` assigned to ``sam_model`` before the cell runs is used instead;
2. the image: read from its file the way sam_widget read it, and checked against the
   pixels the masks were made on; an in-memory array has a placeholder (``sam_image``);
3. per object, the exact chain of ``predictor.predict`` calls: the first answered from the
   prompts (three candidates), every refinement with the previous step's kept candidate's
   low-res logits as ``mask_input`` (one mask), the kept candidate, the threshold if it was
   not SAM's 0.0, then an assertion against the saved mask (COCO RLE in the cell):
   ``np.array_equal`` in exact mode (``Segmenter(exact=True)`` computes what SamPredictor
   computes: bit-identical), IoU >= 0.99 in the fast / bf16 modes.

An object brought in as a mask (no prompts) is said to be imported; its saved mask is all
there is. No torch here: this module writes text.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from .session import Session

__all__ = ["object_code", "session_code", "session_file_code", "cell", "ImageEntry", "ObjectEntry", "Step"]

OFFICIAL = ("vit_b", "vit_l", "vit_h")
FAST_IOU = 0.99


# ============================================================================ what the code is made from
@dataclass(frozen=True)
class Step:
    """One ``predict`` call: prompts (image pixels, ``(x, y)`` points, XYXY box) and the
    candidate kept (its logits feed the next step). ``imported``: not a call but the mask a
    refinement started from (``mask``: that ``(H, W)`` bool mask, None when unknown)."""

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    candidate: int | None = None
    imported: bool = False
    mask: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class ObjectEntry:
    """One object: ``id``, ``label``, ``mask`` ``(H, W)`` bool (the saved mask), ``steps`` (oldest
    first; the last one made the mask; empty for an imported mask), ``threshold`` (None: SAM's)."""

    id: int
    label: str
    mask: np.ndarray = field(repr=False)
    steps: tuple[Step, ...] = ()
    threshold: float | None = None

    @property
    def imported(self) -> bool:
        return not self.steps


@dataclass(frozen=True)
class ImageEntry:
    """One image: ``name``; ``path`` (absolute) or None for an in-memory array; ``hw``;
    ``digest``: sha256 of the ``H x W x 3`` uint8 pixels the masks were made on (None: unknown);
    ``plain_pil``: reading ``path`` with Pillow (EXIF orientation, ``convert("RGB")``) gives
    those pixels (else the cell reads it with ``sam_widget.images.load_image``)."""

    name: str
    path: str | None
    hw: tuple[int, int]
    objects: tuple[ObjectEntry, ...]
    digest: str | None = None
    plain_pil: bool = True


def _steps_of(prompts: Any, candidate: Any, chain: Sequence[Any]) -> tuple[Step, ...]:
    steps = []
    for st in chain:
        if isinstance(st, tuple):  # an ObjectRecord's (prompts, candidate) pair (a ChainStep may hold a mask)
            p, cand = st[0], st[1]
        else:  # a PromptRecord step of a session file
            p, cand = st, st.candidate
        empty = not tuple(p.points) and p.box is None
        steps.append(Step(tuple(map(tuple, p.points)), tuple(p.labels), p.box, cand, empty, getattr(st, "mask", None)))
    steps.append(Step(tuple(map(tuple, prompts.points)), tuple(prompts.labels), prompts.box, candidate))
    return tuple(steps)


def entry_of(obj: Any) -> ObjectEntry:
    """An :class:`ObjectEntry` from a ``sam_widget.state.ObjectRecord`` or an
    ``sam_widget.io.SessionObject`` (prompts: a ``PromptRecord`` with candidate and chain)."""
    prompts = getattr(obj, "prompts", None)
    threshold = getattr(obj, "threshold", None)
    if threshold is None:
        threshold = (getattr(obj, "extra", None) or {}).get("threshold")
    mask = np.asarray(obj.mask, bool)
    chain = tuple(getattr(obj, "chain", ()) or ()) or tuple(getattr(prompts, "chain", ()) or ())
    candidate = getattr(obj, "candidate", None)
    if candidate is None:
        candidate = getattr(prompts, "candidate", None)
    if prompts is None or (not tuple(prompts.points) and prompts.box is None and not chain):
        return ObjectEntry(int(obj.id), str(obj.label), mask, (), None)
    return ObjectEntry(int(obj.id), str(obj.label), mask, _steps_of(prompts, candidate, chain), threshold)


# ============================================================================ public entry points
def object_code(obj: Any, predictor: str = "predictor", exact: bool | None = None) -> str:
    """The lines that make ``obj``'s mask again with a ``SamPredictor`` named ``predictor``
    whose image is set (``obj``: an ``ObjectRecord`` or ``SessionObject``), ending with an
    assertion against its saved mask (``exact``: bit for bit; None/False: IoU >= 0.99).
    Self-contained apart from ``predictor`` (and ``model`` for a refinement that started
    from a mask brought in): imports included."""
    e = entry_of(obj)
    lines = ["import numpy as np", "from pycocotools import mask as mask_utils", ""]
    if any(s.imported for s in e.steps):
        lines += _mask_to_logits_def() + [""]
    lines += _object_lines(e, predictor, bool(exact), key=None, placeholder_prefix="sam_start_mask")
    return "\n".join(lines) + "\n"


def session_code(session: "Session", index: int | None = None, objects: Any = None) -> str:
    """The cell for ``session``'s objects (see :meth:`sam_widget.Session.to_code`)."""
    if index is not None:
        indices = [session.images._check(index)]
    else:
        indices = [i for i in range(len(session.images)) if session.objects_of(i)]
    entries = []
    for i in indices:
        objs = session.objects_of(i)
        if objects is not None:
            if index is None:
                raise ValueError("objects= picks objects of one image: give index= too.")
            objs = tuple(objs[_object_pos(k, len(objs))] for k in objects)
        if not objs:
            continue
        rgb = session.images.load(i)
        path = session.images.path(i)
        path = None if path is None else os.path.abspath(os.fspath(path))
        entries.append(ImageEntry(
            name=session.images.names[i], path=path, hw=tuple(rgb.shape[:2]), objects=tuple(entry_of(o) for o in objs),
            digest=pixels_digest(rgb), plain_pil=path is None or _plain_pil_reads(path, rgb),
        ))  # fmt: skip
    return cell(session.model_info(), entries)


def session_file_code(path: str | os.PathLike[str]) -> str:
    """The cell for the objects of a session file (``SamWidget.save`` / ``Session.save``, or
    ``sam_widget.io.write_session`` with ``model=Session.model_info()``; without ``exact:
    true`` in its model entry the cell checks IoU >= 0.99). A refinement that started from a
    mask brought in needs that mask (files do not keep it): the cell asks for it."""
    from .io import read_session

    data = read_session(path)
    entries = []
    for im in data.images:
        if not im.objects:
            continue
        p = None if im.path is None else os.path.abspath(os.fspath(im.path))
        entries.append(ImageEntry(im.file_name, p, (im.height, im.width), tuple(entry_of(o) for o in im.objects)))
    return cell(dict(data.model), entries, source=f"the session file {Path(path).name}")


def pixels_digest(rgb: np.ndarray) -> str:
    """sha256 hex digest of an image's bytes (C order), as the generated cell computes it."""
    return hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).hexdigest()


# ============================================================================ the cell
def cell(model: dict[str, Any], images: Sequence[ImageEntry], source: str = "this session") -> str:
    """Python source of a cell reproducing ``images``' objects with ``model`` (a
    ``Session.model_info()`` dict: ``name``, ``checkpoint``, ``exact``, ``precision``, ``device``)."""
    images = [im for im in images if im.objects]
    if not images:
        return (
            "# sam_widget to_code(): there are no objects yet, so there is nothing to reproduce.\n"
            "# Click on an object, keep it (Enter, or commit()), then call to_code() again.\n"
        )
    exact = bool(model.get("exact", False))
    n_obj = sum(len(im.objects) for im in images)
    any_prompted = any(not o.imported for im in images for o in im.objects)
    L = [
        f"# Makes the {n_obj} object mask{'s' if n_obj != 1 else ''} of {source} again with plain segment_anything",
        "# (sam_model_registry + SamPredictor), from the prompts that made them; written by sam_widget's to_code().",
    ]
    L += _mode_comment(model, exact)
    L += [
        "import hashlib",
        "",
        "import numpy as np",
        "from PIL import Image, ImageOps",
        "from pycocotools import mask as mask_utils",
        "from segment_anything import SamPredictor, sam_model_registry",
        "",
        f"EXACT = {exact}  # True: every mask must come out bit for bit; False: IoU >= {FAST_IOU}",
    ]
    L += _model_lines(model) if any_prompted else ["predictor = None  # every object was imported: no model needed"]
    if any(s.imported for im in images for o in im.objects for s in o.steps):
        L += [""] + _mask_to_logits_def()
    L += ["", "reproduced = {}  # " + ("object id -> (H, W) bool mask" if len(images) == 1 else "(image index, object id) -> (H, W) bool mask")]
    for k, im in enumerate(images):
        L += [""] + _image_lines(im, k, len(images), any(not o.imported for o in im.objects))
        for obj in im.objects:
            key = str(obj.id) if len(images) == 1 else f"({k}, {obj.id})"
            L += [""] + _object_lines(obj, "predictor", exact, key=key, placeholder_prefix="sam_start_mask" if len(images) == 1 else f"sam_start_mask_{k}")
    L += ["", f'print(f"{{len(reproduced)}} mask(s) reproduced, " + ("bit for bit" if EXACT else "IoU >= {FAST_IOU}"))']
    return "\n".join(L) + "\n"


def _mode_comment(model: dict[str, Any], exact: bool) -> list[str]:
    if exact:
        return [
            "# Exact mode: sam_widget computed these masks exactly as SamPredictor does, so this cell",
            "# reproduces every mask bit for bit (np.array_equal below), on the same device.",
        ]
    prec = str(model.get("precision") or "fp32")
    what = "bf16 encoder" if prec == "bf16" else "sam_widget's speed-ups (SDPA encoder attention, fast mask decoder)"
    return [
        f"# Fast mode ({what}): plain SamPredictor gives each mask again with",
        f"# IoU >= {FAST_IOU} (checked below), not bit for bit. Segmenter(sam, exact=True) makes masks this cell reproduces exactly.",
    ]


def _model_lines(model: dict[str, Any]) -> list[str]:
    name = model.get("name") or "custom"
    checkpoint = model.get("checkpoint")
    device = str(model.get("device") or "cpu")
    L = ["", f"DEVICE = {device!r}"]
    hook = "model = globals().get(\"sam_model\")  # hook: a segment_anything Sam assigned to `sam_model` before this cell is used instead"
    if name in OFFICIAL:
        if checkpoint is None:
            from .engine.registry import MODELS

            checkpoint = MODELS[name].filename
            L.append(f"CHECKPOINT = {checkpoint!r}  # PLACEHOLDER: the path of the official {name} checkpoint file")
        else:
            L.append(f"CHECKPOINT = {str(checkpoint)!r}")
        L += [hook, "if model is None:", f"    model = sam_model_registry[{name!r}](checkpoint=CHECKPOINT)"]
    elif name == "tiny_shapes":
        L += [
            hook,
            "if model is None:  # tiny_shapes ships with sam_widget: a segment_anything Sam (its own classes), 256-px input",
            "    from sam_widget.engine.tiny import load_tiny_shapes",
            "",
            "    model = load_tiny_shapes()",
        ]
    else:
        L += [
            hook,
            "if model is None:",
            "    raise RuntimeError(",
            f"        \"this session's model ({name}) was handed to sam_widget as an object, not loaded from a checkpoint file: \"",
            "        \"assign that segment_anything Sam to `sam_model` before running this cell.\"",
            "    )",
        ]
    L += ["model.to(DEVICE).eval()", "predictor = SamPredictor(model)"]
    return L


def _image_lines(im: ImageEntry, k: int, n: int, needs_model: bool) -> list[str]:
    H, W = im.hw
    L = [f"# ---- image {k + 1} of {n}: {im.name} ({W} x {H} pixels)" if n > 1 else f"# ---- the image: {im.name} ({W} x {H} pixels)"]
    if im.path is not None:
        if im.plain_pil:
            L.append(f"image = np.array(ImageOps.exif_transpose(Image.open({im.path!r})).convert(\"RGB\"))")
        else:
            L += [
                "from sam_widget.images import load_image  # this file needs sam_widget's reading (16-bit / float / alpha)",
                "",
                f"image = load_image({im.path!r})",
            ]
    else:
        var = "sam_image" if n == 1 else f"sam_image_{k}"
        L += [
            f"image = globals().get({var!r})  # PLACEHOLDER: the image was an in-memory array, not a file:",
            f"if image is None:  # assign it ({H} x {W} x 3 uint8 RGB) to `{var}` before running this cell",
            f"    raise ValueError(\"assign the image the masks were made on to `{var}` ({H} x {W} x 3 uint8 RGB) first.\")",
        ]
    if im.digest is not None:
        L += [
            f"assert image.shape == ({H}, {W}, 3) and hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest() == (",
            f"    {im.digest!r}",
            "), \"this is not the image the masks were made on (its pixels differ)\"",
        ]
    else:
        L.append(f"assert image.shape[:2] == ({H}, {W}), \"this is not the image the masks were made on (its size differs)\"")
    if needs_model:
        L.append("predictor.set_image(image)")
    return L


def _fmt_points(points: Sequence[tuple[float, float]]) -> str:
    return "[" + ", ".join(f"[{float(x)!r}, {float(y)!r}]" for x, y in points) + "]"


def _object_lines(e: ObjectEntry, predictor: str, exact: bool, key: str | None, placeholder_prefix: str) -> list[str]:
    """The lines for one object; the mask ends up in ``mask`` (and ``reproduced[key]`` unless
    ``key`` is None)."""
    H, W = e.mask.shape
    title = f"# ---- object {e.id} {e.label!r}"
    rle = _rle(e.mask)
    if e.imported:
        return [
            f"{title}: imported from a mask (add_object, set_objects or a file), not made by prompts:",
            "# there is no predict() call to replay; its mask is the saved one.",
            f"mask = mask_utils.decode({rle}).astype(bool)",
        ] + ([] if key is None else [f"reproduced[{key}] = mask"])
    calls = [s for s in e.steps if not s.imported]
    n = len(calls)
    L = [f"{title}: {n} predict() call{'s' if n != 1 else ''}"
         + ("; each refinement passes the kept candidate's low-res logits of the call before as mask_input" if n > 1 else "")]
    first = 0
    if e.steps and e.steps[0].imported:
        start = e.steps[0]
        L.append("# The refinement started from a mask given as is (brought in, or kept without its logits);")
        L.append("# sam_widget made its mask prompt with Segmenter.mask_input_from_mask, replayed by mask_to_logits.")
        if start.mask is not None:
            L.append(f"start = mask_utils.decode({_rle(start.mask)}).astype(bool)  # the mask it started from")
        else:
            var = f"{placeholder_prefix}_{e.id}"
            L += [
                f"start = globals().get({var!r})  # PLACEHOLDER: that mask is not in the session file",
                "if start is None:",
                f"    raise ValueError(\"assign the ({H}, {W}) bool mask object {e.id} started from to `{var}` first.\")",
            ]
        L.append("mask_input = mask_to_logits(start, model)")
        first = 1
    threshold = e.threshold
    for j, s in enumerate(e.steps[first:]):
        last = j == len(e.steps) - first - 1
        refine = first == 1 or j > 0
        args = []
        if s.points:
            args += [f"point_coords=np.array({_fmt_points(s.points)})", f"point_labels=np.array({list(map(int, s.labels))})"]
        if s.box is not None:
            args.append(f"box=np.array([{', '.join(repr(float(v)) for v in s.box)}])")
        if refine:
            args.append("mask_input=mask_input")
        args.append(f"multimask_output={not refine}")
        if last and threshold is not None:
            args.append("return_logits=True")
        L.append(f"masks, scores, low_res = {predictor}.predict(")
        L += [f"    {a}," for a in args]
        L.append(")")
        if refine:
            L.append("k = 0")  # a refinement answers with one mask
        elif s.candidate is None:
            L.append("k = int(np.argmax(scores))  # the kept candidate was not recorded: the best-scoring one (the widget's default)")
        else:
            L.append(f"k = {int(s.candidate)}  # candidate {int(s.candidate) + 1} of 3 was kept (scores: predicted IoU)")
        if not last:
            L.append("mask_input = low_res[k][None, :, :]  # its (1, h, w) low-res logits refine the next call")
    if threshold is not None:
        L.append(f"mask = masks[k] > {float(threshold)!r}  # cut at threshold {float(threshold)!r} (SAM's is 0.0)")
    else:
        L.append("mask = masks[k]")
    L.append(f"saved = mask_utils.decode({rle}).astype(bool)")
    if exact:
        L.append(f"assert np.array_equal(mask, saved), f\"object {e.id}: {{int((mask != saved).sum())}} pixels differ from the saved mask\"")
    else:
        L += [
            "iou = (mask & saved).sum() / max(1, (mask | saved).sum())",
            f"assert iou >= {FAST_IOU}, f\"object {e.id}: IoU {{iou:.4f}} with the saved mask (fast mode promises >= {FAST_IOU})\"",
        ]
    if key is not None:
        L.append(f"reproduced[{key}] = mask")
    return L


def _rle(mask: np.ndarray) -> str:
    from .io.rle import encode_mask

    r = encode_mask(np.asarray(mask, bool))
    counts = r["counts"].decode() if isinstance(r["counts"], bytes) else r["counts"]
    return "{" + f"\"size\": [{int(r['size'][0])}, {int(r['size'][1])}], \"counts\": {counts!r}" + "}"


def _mask_to_logits_def() -> list[str]:
    return [
        "def mask_to_logits(mask, model):",
        "    \"\"\"(1, h, w) low-res logits describing an (H, W) bool mask: sam_widget's Segmenter.mask_input_from_mask.\"\"\"",
        "    import math",
        "",
        "    import torch",
        "    import torch.nn.functional as F",
        "    from segment_anything.utils.transforms import ResizeLongestSide",
        "",
        "    H, W = mask.shape",
        "    img = model.image_encoder.img_size",
        "    side = 4 * model.prompt_encoder.image_embedding_size[0]",
        "    h, w = ResizeLongestSide.get_preprocess_shape(H, W, img)",
        "    rows, cols = max(1, round(h * side / img)), max(1, round(w * side / img))",
        "    t = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]",
        "    frac = F.interpolate(t, size=(rows, cols), mode=\"area\")[0, 0].clamp(1e-3, 1 - 1e-3)",
        "    out = torch.full((1, side, side), math.log(1e-3 / (1 - 1e-3)), dtype=torch.float32)",
        "    out[0, :rows, :cols] = torch.log(frac / (1 - frac))",
        "    return out.numpy()",
    ]


def _object_pos(k: Any, n: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"object positions must be ints, not {type(k).__name__}.")
    if not 0 <= k < n:
        raise IndexError(f"object {k} does not exist; there are {n} objects.")
    return int(k)


def _plain_pil_reads(path: str, rgb: np.ndarray) -> bool:
    """Whether Pillow's plain reading (EXIF transpose, convert("RGB")) gives exactly ``rgb``."""
    try:
        from PIL import Image, ImageOps

        with Image.open(path) as im:
            plain = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        return plain.shape == rgb.shape and bool(np.array_equal(plain, rgb))
    except Exception:  # noqa: BLE001 - unreadable now: use sam_widget's reader in the cell
        return False
