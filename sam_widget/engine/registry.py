"""The one table of models: names, checkpoint files, hashes, the offline model, environment variables.

No torch here (the CLI's ``--help``, the widget's constructor and the demo read it without
loading the engine). :mod:`sam_widget.engine.checkpoints` builds its download specs from
:data:`MODELS`; the CLI offers :func:`model_names`; the demo and the widget check names with
:func:`check_model_name` and devices with :func:`check_device_name`.

Environment variables
    ``$SAM_WIDGET_HOME`` (:data:`HOME_ENV`): where checkpoints (and compiled kernels) are
    cached, default ``~/.cache/sam_widget``. ``$SAM_WIDGET_CHECKPOINT_URL`` (:data:`URL_ENV`):
    a mirror serving the official files. ``$SAM_WIDGET_MODEL`` (:data:`MODEL_ENV`): the model
    the demo notebooks use. ``$SAM_WIDGET_WORKDIR`` (:data:`WORKDIR_ENV`): where
    ``scripts/demo.sh`` puts the notebooks it opens.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "ModelInfo",
    "MODELS",
    "DEFAULT_MODEL",
    "OFFLINE_MODEL",
    "HOME_ENV",
    "URL_ENV",
    "MODEL_ENV",
    "WORKDIR_ENV",
    "DEFAULT_CHECKPOINT_URL",
    "CheckpointError",
    "model_names",
    "check_model_name",
    "check_device_name",
    "cache_home",
]

HOME_ENV = "SAM_WIDGET_HOME"
URL_ENV = "SAM_WIDGET_CHECKPOINT_URL"
MODEL_ENV = "SAM_WIDGET_MODEL"
WORKDIR_ENV = "SAM_WIDGET_WORKDIR"  # where scripts/demo.sh puts the notebooks it opens
DEFAULT_CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
DEFAULT_MODEL = "vit_b"
OFFLINE_MODEL = "tiny_shapes"
"""The small model shipped with the package (``sam_widget.engine.tiny``): no download."""


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, downloaded, verified or loaded.

    The message names the file (or URL), what was expected, and how to fix the problem.
    """


@dataclass(frozen=True)
class ModelInfo:
    """One model: ``name`` (the ``model_type``), its official checkpoint ``filename`` and
    ``sha256`` (None for a shipped model), the file ``size`` in bytes when known, and
    whether it ships with the package (``offline``: nothing to download)."""

    name: str
    filename: str | None
    sha256: str | None
    size: int | None = None
    offline: bool = False


MODELS: dict[str, ModelInfo] = {
    "vit_b": ModelInfo(
        "vit_b", "sam_vit_b_01ec64.pth", "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912", 375_042_383
    ),
    "vit_l": ModelInfo("vit_l", "sam_vit_l_0b3195.pth", "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    "vit_h": ModelInfo("vit_h", "sam_vit_h_4b8939.pth", "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    OFFLINE_MODEL: ModelInfo(OFFLINE_MODEL, None, None, offline=True),
}


def model_names() -> tuple[str, ...]:
    """Every model name, official ones first: ``("vit_b", "vit_l", "vit_h", "tiny_shapes")``."""
    return tuple(MODELS)


def check_model_name(name: object, extra: tuple[str, ...] = ()) -> str:
    """Return ``name`` if it names a model (or one of ``extra``); else TypeError / ValueError."""
    if not isinstance(name, str):
        raise TypeError(f"model must be a model name such as {DEFAULT_MODEL!r}, not {type(name).__name__}.")
    if name not in MODELS and name not in extra:
        raise ValueError(f"unknown model {name!r}; valid models are: {', '.join(model_names() + tuple(extra))}.")
    return name


_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def check_device_name(device: object) -> object:
    """Check the spelling of a device without importing torch: ``"auto"``, ``"cpu"``,
    ``"cuda"``, ``"cuda:N"``, ``"mps"`` (or a ``torch.device``). Raises ValueError/TypeError.

    Whether the device is *available* is checked by ``select_device`` when the model loads.
    """
    if isinstance(device, str):
        if not _DEVICE_RE.match(device.strip().lower()):
            raise ValueError(f"Invalid device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.")
        return device
    if type(device).__name__ == "device" and type(device).__module__ == "torch":
        return device
    raise TypeError(f"device must be a str or torch.device, not {type(device).__name__}.")


def cache_home() -> Path:
    """Return the checkpoint cache directory: ``$SAM_WIDGET_HOME`` or ``~/.cache/sam_widget``.

    The directory is not created here.
    """
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "sam_widget"
