"""Finding, downloading, verifying and loading SAM checkpoints.

The one call most code needs::

    from sam_widget.engine.checkpoints import load_sam
    sam = load_sam()                                  # vit_b, downloaded once into the cache
    sam = load_sam("vit_h", device="cuda")
    sam = load_sam(checkpoint="~/models/sam_vit_l_0b3195.pth")   # model type inferred

Where files live
    The official checkpoints are cached in ``$SAM_WIDGET_HOME`` (default
    ``~/.cache/sam_widget``) and fetched from ``$SAM_WIDGET_CHECKPOINT_URL`` (default
    ``https://dl.fbaipublicfiles.com/segment_anything/``) when absent. A download goes to a
    hidden temporary name in the cache directory and is renamed to its final name only once
    its full sha256 matches, so a file under the final name is always a complete,
    verified download.

Safety
    Checkpoints are read with ``torch.load(..., weights_only=True)``: a file holding Python
    objects other than tensors and plain containers is refused, never executed.

Errors
    Every problem with a checkpoint file or its download (missing, truncated, not a
    checkpoint, wrong model, hash mismatch, no network) raises :class:`CheckpointError`, a
    subclass of :class:`RuntimeError`, whose message names the file, says what was expected
    and how to fix it. Bad arguments raise :class:`TypeError` (wrong type) or
    :class:`ValueError` (unknown model type, unusable device).
"""

from __future__ import annotations

import importlib
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.hub
from segment_anything.modeling import Sam

from .models import SamConfig, build_sam
from .registry import (
    DEFAULT_CHECKPOINT_URL,
    HOME_ENV,
    URL_ENV,
    CheckpointError,
    cache_home,
)
from .precision import check_precision, resolve_precision
from .device import _mps_available, select_device  # noqa: F401  (re-exported)
from .download import (  # re-exported: this module's public names before the split
    CHECKPOINTS,
    DOWNLOAD_TIMEOUT_S,  # noqa: F401
    TINY_SHAPES,
    CheckpointSpec,
    _as_path,
    _check_model_type,
    _fix_download_hint,  # noqa: F401
    _socket_timeout,  # noqa: F401
    _spec,  # noqa: F401
    checkpoint_path,
    checkpoint_url,
    download_checkpoint,
    sha256_file,
    valid_model_types,
)

__all__ = [
    "CheckpointError",
    "CheckpointSpec",
    "CHECKPOINTS",
    "TINY_SHAPES",
    "DEFAULT_CHECKPOINT_URL",
    "HOME_ENV",
    "URL_ENV",
    "valid_model_types",
    "cache_home",
    "checkpoint_url",
    "checkpoint_path",
    "sha256_file",
    "download_checkpoint",
    "read_state_dict",
    "infer_model_type",
    "select_device",
    "load_sam",
    "apply_precision",
]

_PATCH_KEY = "image_encoder.patch_embed.proj.weight"
_NECK_KEY = "image_encoder.neck.0.weight"
_BLOCK_RE = re.compile(r"^image_encoder\.blocks\.(\d+)\.")


# ---------------------------------------------------------------------------- reading


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a checkpoint file safely and return its state dict (tensors on CPU).

    Uses ``torch.load(map_location="cpu", weights_only=True)`` — memory-mapped when the file
    is in torch's zip format, so a 2.5 GB vit_h costs no extra copy. A ``{"model": ...}`` or
    ``{"state_dict": ...}`` wrapper and a ``module.`` key prefix are removed. Raises
    :class:`CheckpointError` for a missing, truncated, unsafe or non-checkpoint file.
    """
    path = _as_path(path, "checkpoint")
    if not path.exists():
        raise CheckpointError(
            f"Checkpoint file {path} does not exist. Pass the path of a SAM .pth file, or "
            f"checkpoint=None to download the official one (see checkpoint_url())."
        )
    if not path.is_file():
        raise CheckpointError(
            f"Checkpoint {path} is not a regular file (is it a directory?). Pass the path of "
            f"the .pth file itself, e.g. {path / 'sam_vit_b_01ec64.pth'}."
        )
    try:
        obj = torch.load(
            str(path), map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path)
        )
    except pickle.UnpicklingError as e:
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            raise CheckpointError(
                f"Refused to load {path}: it contains Python objects other than tensors, "
                f"and unpickling them could run arbitrary code (torch.load weights_only=True "
                f"rejected it: {str(e).splitlines()[0]}). SAM checkpoints hold only tensors; "
                f"only use checkpoints from a source you trust, e.g. the official "
                f"{DEFAULT_CHECKPOINT_URL}."
            ) from e
        raise CheckpointError(_unreadable_message(path, e)) from e
    except Exception as e:  # truncated zip, text file, empty file, I/O error, ...
        raise CheckpointError(_unreadable_message(path, e)) from e

    if isinstance(obj, Mapping) and not any(
        isinstance(k, str) and k.startswith("image_encoder.") for k in obj
    ):
        for wrapper in ("model", "state_dict"):
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    ):
        raise CheckpointError(
            f"{path} is a PyTorch file but not a model state dict (a mapping of parameter "
            f"names to tensors); it holds a {type(obj).__name__}. Pass a SAM checkpoint such "
            f"as sam_vit_b_01ec64.pth."
        )
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _unreadable_message(path: Path, error: BaseException) -> str:
    detail = (str(error).splitlines() or [""])[0]
    detail = re.split(r"(?<=\.) ", detail, maxsplit=1)[0][:160]  # first sentence only
    with open(path, "rb") as f:
        head = f.read(2)
    if not head:
        shape = "it is empty"
    elif head == b"PK":
        shape = "it is a damaged zip archive, most likely truncated (an interrupted download)"
    elif head[:1] == b"\x80":
        shape = "it may be truncated (an interrupted download) or damaged"
    else:
        shape = "it is not a checkpoint (it does not start like a PyTorch or pickle file)"
    return (
        f"Could not read {path} as a PyTorch checkpoint: {shape} "
        f"[{type(error).__name__}: {detail}]. The file is {path.stat().st_size} bytes; "
        f"expected a SAM .pth file such as sam_vit_b_01ec64.pth. To fix: download it again "
        f"(load_sam with checkpoint=None downloads into {cache_home()}), or pass the right file."
    )


# -------------------------------------------------------------------------- inference


def infer_model_type(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Return the registered model type whose architecture fits ``state_dict``.

    Looks at the image encoder's embedding dimension and patch size (the shape of
    ``image_encoder.patch_embed.proj.weight``), its depth (the number of
    ``image_encoder.blocks.N``) and, when present, the neck's output channels. Raises
    :class:`TypeError` for a non-mapping and :class:`ValueError` if no registered model fits.
    """
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping, not {type(state_dict).__name__}.")
    weight = state_dict.get(_PATCH_KEY)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        raise ValueError(
            f"Not a SAM state dict: no 4-d tensor {_PATCH_KEY!r} "
            f"({len(state_dict)} keys, e.g. {list(state_dict)[:3]})."
        )
    embed_dim, patch = int(weight.shape[0]), int(weight.shape[-1])
    depth = 1 + max(
        (int(m.group(1)) for k in state_dict if (m := _BLOCK_RE.match(k))), default=-1
    )
    neck = state_dict.get(_NECK_KEY)
    out_chans = int(neck.shape[0]) if isinstance(neck, torch.Tensor) and neck.dim() else None
    for name, spec in CHECKPOINTS.items():
        c = spec.config
        if (
            c.encoder_embed_dim == embed_dim
            and c.encoder_depth == depth
            and c.patch_size == patch
            and (out_chans is None or c.prompt_embed_dim == out_chans)
        ):
            return name
    known = ", ".join(
        f"{n} (embed dim {s.config.encoder_embed_dim}, {s.config.encoder_depth} blocks)"
        for n, s in CHECKPOINTS.items()
    )
    raise ValueError(
        f"The image encoder has embed dim {embed_dim}, {depth} blocks and patch size {patch}, "
        f"which matches no known model: {known}."
    )


def _describe_mismatch(expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]) -> str:
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [
        (k, tuple(got[k].shape), tuple(v.shape))
        for k, v in expected.items()
        if k in got and tuple(got[k].shape) != tuple(v.shape)
    ]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if shapes:
        k, g, e = shapes[0]
        parts.append(
            f"{len(shapes)} tensors of the wrong shape (e.g. {k}: file has {list(g)}, "
            f"expected {list(e)})"
        )
    return "; ".join(parts)


def _mismatch_hint(expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], model_type: str) -> str:
    """How to fix a checkpoint that does not fit ``model_type`` (advice that fits the case)."""
    try:
        actual = infer_model_type(state)
    except ValueError as e:
        return (
            f"The file does not look like any known SAM model ({e}). Pass the checkpoint "
            f"that matches model_type={model_type!r}."
        )
    if actual != model_type:
        return (
            f"The file holds a {actual!r} model: pass model_type={actual!r}, or "
            f"model_type=None to detect it automatically."
        )
    # The encoder has exactly the shape of the model type the caller asked for, so telling
    # them to pass that model type would be no help: the file itself is the problem.
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    if missing and not unexpected and not wrong_shape:
        parts = sorted({k.split(".")[0] for k in missing})
        return (
            f"Its image encoder is a {model_type} encoder, but the file is incomplete: it lacks "
            f"{len(missing)} of the {len(expected)} tensors (in {', '.join(parts)}). It may be "
            "a partial save (e.g. the image encoder alone) or a damaged copy: use the complete "
            f"official {model_type} checkpoint (load_sam({model_type!r}) downloads it), or save "
            "the whole model's state_dict."
        )
    return (
        f"Its image encoder is shaped like {model_type}'s, but the rest does not match SAM's "
        "architecture: the file is probably from another model family built on a SAM encoder "
        "(e.g. a fine-tuned or extended variant), which sam_widget cannot load. Use an official "
        f"{model_type} checkpoint (load_sam({model_type!r}) downloads it)."
    )


# ------------------------------------------------------------------------------- load


def _load_tiny_shapes(device: torch.device) -> Sam:
    try:
        tiny = importlib.import_module("sam_widget.engine.tiny")
    except ModuleNotFoundError as e:
        if e.name not in ("sam_widget.engine.tiny", "sam_widget.engine", "sam_widget"):
            raise
        raise CheckpointError(
            f"model_type={TINY_SHAPES!r} needs the module sam_widget.engine.tiny, which is "
            f"not installed in this copy of sam_widget. Reinstall sam_widget, or use "
            f"model_type='vit_b' (downloaded on first use)."
        ) from e
    loader = getattr(tiny, "load_tiny_shapes", None)
    if not callable(loader):
        raise CheckpointError(
            "sam_widget.engine.tiny has no load_tiny_shapes(device); this copy of sam_widget "
            "is incomplete. Reinstall it, or use model_type='vit_b'."
        )
    try:
        return loader(device)
    except OSError as e:  # the shipped weights file is missing or unreadable
        raise CheckpointError(
            f"model_type={TINY_SHAPES!r}: {e} Reinstall sam_widget, or use model_type='vit_b'."
        ) from e


def _build_from_state_dict(
    state: dict[str, torch.Tensor], config: SamConfig, path: Path, model_type: str
) -> Sam:
    """Build a Sam for ``config`` without allocating its weights, then adopt ``state``'s."""
    with torch.device("meta"):
        sam = build_sam(config)
    expected = sam.state_dict()
    problem = _describe_mismatch(expected, state)
    if problem:
        raise CheckpointError(
            f"Checkpoint {path} does not fit model_type={model_type!r}: {problem}. "
            f"{_mismatch_hint(expected, state, model_type)}"
        )
    # Keep the model float32 even if the file was saved in half precision.
    state = {
        k: (v.float() if v.is_floating_point() and v.dtype != torch.float32 else v)
        for k, v in state.items()
    }
    try:
        sam.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:  # should have been caught above; keep the message useful
        raise CheckpointError(
            f"Checkpoint {path} does not fit model_type={model_type!r}: {e}"
        ) from e
    # Non-persistent buffers are not in the state dict; make sure none is left on "meta".
    for name, buf in list(sam.named_buffers()):
        if buf.is_meta:
            owner_name, _, leaf = name.rpartition(".")
            owner = sam.get_submodule(owner_name) if owner_name else sam
            if leaf == "pixel_mean":
                value = torch.tensor(config.pixel_mean).view(-1, 1, 1)
            elif leaf == "pixel_std":
                value = torch.tensor(config.pixel_std).view(-1, 1, 1)
            else:  # pragma: no cover - segment_anything has no other non-persistent buffers
                raise RuntimeError(f"Buffer {name} was not initialised from {path}.")
            owner._buffers[leaf] = value
    return sam


def load_sam(
    model_type: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    device: str | torch.device = "auto",
    *,
    progress: bool = True,
    precision: str = "auto",
) -> Sam:
    """Load a SAM model and return it in eval mode on the selected device.

    ``model_type`` is one of :func:`valid_model_types` (``"vit_b"``, ``"vit_l"``,
    ``"vit_h"``, ``"tiny_shapes"``) or None. ``checkpoint`` is a local ``.pth`` path, or None
    to use the official file from :func:`cache_home`, downloading it (with a progress bar
    when ``progress``) if absent. With a path and ``model_type=None`` the type is inferred
    from the weights' shapes; with neither, ``"vit_b"`` is used. ``"tiny_shapes"`` is the
    small offline model shipped in ``sam_widget.engine.tiny`` and takes no checkpoint.
    ``device`` is as for :func:`select_device`.

    ``precision`` (``"auto"``, ``"fp32"``, ``"bf16"``; see :mod:`sam_widget.engine.precision`):
    when it resolves to bf16 (``"auto"`` does on CUDA GPUs and CPUs with native bf16), the
    image encoder's linear weights are converted to bf16 once, here, in place (the model
    takes about half the memory) and the encoder is switched to sam_widget's fast forward
    (:func:`sam_widget.engine.fast.accelerate`), so ``SamPredictor`` and the automatic mask
    generator still take fp32 images and give fp32 embeddings. Such a model cannot give
    fp32-exact results: pass ``precision="fp32"`` for ``Segmenter(sam, exact=True)``.

    Raises :class:`CheckpointError` for any problem with the file or the download,
    :class:`ValueError` for an unknown model type or unavailable device, :class:`TypeError`
    for arguments of the wrong type.
    """
    if model_type is not None:
        _check_model_type(model_type)
    path = None if checkpoint is None else _as_path(checkpoint, "checkpoint")
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, not {type(progress).__name__}.")
    check_precision(precision)
    dev = select_device(device)

    if model_type == TINY_SHAPES:
        if path is not None:
            raise ValueError(
                f"model_type={TINY_SHAPES!r} is shipped with sam_widget and takes no "
                f"checkpoint; pass checkpoint=None, or model_type=None to load {path}."
            )
        sam = _load_tiny_shapes(dev).eval()
        sam._sam_widget_model_type = TINY_SHAPES  # read by Segmenter.model_name
        return _apply_precision(sam, precision, dev)

    downloaded = path is None
    if path is None:
        model_type = model_type or "vit_b"
        path = download_checkpoint(model_type, progress=progress)
    try:
        state = read_state_dict(path)
    except CheckpointError as e:
        if downloaded:
            raise CheckpointError(
                f"{e} (This is the cached download for {model_type!r}: delete {path} and "
                f"call load_sam again to download it afresh.)"
            ) from e.__cause__
        raise

    if model_type is None:
        try:
            model_type = infer_model_type(state)
        except ValueError as e:
            raise CheckpointError(
                f"Cannot tell which SAM model {path} holds: {e} Pass model_type= one of "
                f"{', '.join(sorted(CHECKPOINTS))}, or use an official SAM checkpoint."
            ) from e

    sam = _build_from_state_dict(state, CHECKPOINTS[model_type].config, path, model_type)
    del state  # the model holds the tensors now; let a bf16 conversion free the fp32 ones
    sam._sam_widget_model_type = model_type  # read by Segmenter.model_name
    sam._sam_widget_checkpoint = os.path.abspath(os.fspath(path))  # read by provenance (to_code)
    return _apply_precision(sam.to(dev).eval(), precision, dev)


def _apply_precision(sam: Sam, precision: str, dev: torch.device) -> Sam:
    apply_precision(sam, precision, dev)
    return sam


def apply_precision(sam: Sam, precision: str = "auto", device: str | torch.device | None = None) -> str:
    """What :func:`load_sam` does with ``precision``, for a model built some other way.

    Resolves ``precision`` on ``device`` (default: the model's) and, for bf16, converts the
    image encoder's linear weights to bf16 in place and switches it to the fast forward
    (:func:`sam_widget.engine.fast.accelerate`). Returns ``"fp32"`` or ``"bf16"``.
    """
    check_precision(precision)
    dev = torch.device(device) if device is not None else sam.device
    resolved = resolve_precision(precision, dev)
    if resolved == "bf16":
        from .fast import accelerate

        # no warnings.catch_warnings() here: it swaps the process-wide filter list, and this
        # runs on a widget's worker thread while the user's cells run (their filters would be
        # lost or leak); resolve_precision above already warned if it had to
        accelerate(sam, precision="bf16", _resolved=True)
    return resolved
