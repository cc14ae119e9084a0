"""The checkpoint registry and downloads: model types, URLs, cache paths, sha256 checks.

Split out of :mod:`sam_widget.engine.checkpoints` (which re-exports every name here, so
``from sam_widget.engine.checkpoints import download_checkpoint`` keeps working). See that
module's docstring for where files live and how downloads are verified.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import socket
import sys
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.hub

from .models import MODEL_CONFIGS, SamConfig
from .registry import (
    DEFAULT_CHECKPOINT_URL,
    HOME_ENV,
    MODELS,
    OFFLINE_MODEL,
    URL_ENV,
    CheckpointError,
    cache_home,
)

__all__ = [
    "CheckpointSpec",
    "CHECKPOINTS",
    "TINY_SHAPES",
    "DOWNLOAD_TIMEOUT_S",
    "valid_model_types",
    "checkpoint_url",
    "checkpoint_path",
    "sha256_file",
    "download_checkpoint",
]


TINY_SHAPES = OFFLINE_MODEL
"""The model type of the small model shipped with the package (``sam_widget.engine.tiny``)."""

@dataclass(frozen=True)
class CheckpointSpec:
    """A downloadable checkpoint: its model type, file name, sha256 and model config.

    ``size`` is the file size in bytes when known; it only sharpens error messages (an
    interrupted download is reported as such) — the sha256 is what decides validity.
    """

    model_type: str
    filename: str
    sha256: str
    config: SamConfig
    size: int | None = None


CHECKPOINTS: dict[str, CheckpointSpec] = {
    name: CheckpointSpec(name, info.filename, info.sha256, MODEL_CONFIGS[name], size=info.size)
    for name, info in MODELS.items()
    if not info.offline
}
"""Registered checkpoints by model type. Tests and plugins may add entries."""


# --------------------------------------------------------------------------- small helpers


def valid_model_types() -> list[str]:
    """Return every accepted ``model_type``: the registered checkpoints plus ``"tiny_shapes"``."""
    return list(CHECKPOINTS) + [TINY_SHAPES]


def _check_model_type(model_type: object) -> str:
    if not isinstance(model_type, str):
        raise TypeError(f"model_type must be a str, not {type(model_type).__name__}.")
    if model_type not in CHECKPOINTS and model_type != TINY_SHAPES:
        raise ValueError(
            f"Unknown model_type {model_type!r}; valid model types are: "
            f"{', '.join(valid_model_types())}."
        )
    return model_type


def _spec(model_type: object) -> CheckpointSpec:
    model_type = _check_model_type(model_type)
    if model_type == TINY_SHAPES:
        raise ValueError(
            f"{TINY_SHAPES!r} ships with sam_widget and has no checkpoint to download; "
            f"use load_sam({TINY_SHAPES!r})."
        )
    return CHECKPOINTS[model_type]


def _as_path(value: object, what: str) -> Path:
    if isinstance(value, (str, os.PathLike)):
        path = os.fspath(value)
        if isinstance(path, str):
            return Path(path).expanduser()
    raise TypeError(f"{what} must be a str or os.PathLike path, not {type(value).__name__}.")


def checkpoint_url(model_type: str) -> str:
    """Return the download URL of ``model_type``'s checkpoint.

    The base is ``$SAM_WIDGET_CHECKPOINT_URL`` (for mirrors) or the official location.
    """
    spec = _spec(model_type)
    base = os.environ.get(URL_ENV) or DEFAULT_CHECKPOINT_URL
    return base.rstrip("/") + "/" + spec.filename


def checkpoint_path(model_type: str, dest_dir: str | os.PathLike | None = None) -> Path:
    """Return where ``model_type``'s checkpoint lives once downloaded (it may not exist yet)."""
    spec = _spec(model_type)
    directory = cache_home() if dest_dir is None else _as_path(dest_dir, "dest_dir")
    return directory / spec.filename


def sha256_file(path: str | os.PathLike) -> str:
    """Return the hex sha256 digest of the file at ``path`` (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(_as_path(path, "path"), "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ------------------------------------------------------------------------------- download


def _fix_download_hint(url: str, final: Path) -> str:
    return (
        f"To fix: check the network connection (and proxy settings) and try again; or "
        f"download {url} yourself (e.g. `curl -L -o '{final}' '{url}'`) and place it at "
        f"{final}, or pass checkpoint='/path/to/{final.name}' to load_sam; or set "
        f"${URL_ENV} to a mirror that serves {final.name}."
    )


DOWNLOAD_TIMEOUT_S = 60.0  # a server that sends nothing for this long is given up on


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    """torch.hub's urlopen takes no timeout; use the socket default while downloading."""
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def download_checkpoint(
    model_type: str,
    dest_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Path:
    """Make sure ``model_type``'s official checkpoint is on disk and return its path.

    If ``dest_dir / filename`` (``dest_dir`` defaults to :func:`cache_home`) already exists
    it is returned as is — files only ever get there after verification. Otherwise the file
    is downloaded from :func:`checkpoint_url` (with a tqdm progress bar on stderr when
    ``progress``) into a temporary file in ``dest_dir``, its sha256 is checked, and it is
    renamed into place. On any failure the temporary file is removed and
    :class:`CheckpointError` is raised; nothing is left under the final name.
    """
    spec = _spec(model_type)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be a bool, not {type(progress).__name__}.")
    final = checkpoint_path(model_type, dest_dir)
    if final.is_file():
        return final
    url = checkpoint_url(model_type)
    if final.exists():
        raise CheckpointError(
            f"Cannot download {url}: {final} exists but is not a regular file. "
            f"Remove it, or set ${HOME_ENV} to another directory."
        )
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(
            f"Cannot create the checkpoint directory {final.parent} ({e}). "
            f"Set ${HOME_ENV} to a writable directory, or pass checkpoint=… to load_sam."
        ) from e

    tmp = final.parent / f".{final.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.download"
    try:
        try:
            with _socket_timeout(DOWNLOAD_TIMEOUT_S):
                if progress:
                    # Announce the download only once the server answers: offline, the
                    # CheckpointError below is then the only thing the user reads.
                    try:
                        urllib.request.urlopen(urllib.request.Request(url, method="HEAD")).close()
                    except urllib.error.HTTPError:
                        pass  # the GET below reports what the server says
                    sys.stderr.write(f'Downloading "{url}" to {final}\n')
                # Looked up at call time so that the progress bar is torch's own.
                torch.hub.download_url_to_file(url, str(tmp), hash_prefix=None, progress=progress)
        except urllib.error.HTTPError as e:
            raise CheckpointError(
                f"Could not download {url} to {final}: the server answered HTTP {e.code} "
                f"{e.reason}. {_fix_download_hint(url, final)}"
            ) from e
        except urllib.error.URLError as e:
            raise CheckpointError(
                f"Could not download {url} to {final}: {e.reason}. "
                f"{_fix_download_hint(url, final)}"
            ) from e
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise CheckpointError(
                f"Could not download {url} to {final}: {type(e).__name__}: {e}. "
                f"{_fix_download_hint(url, final)}"
            ) from e

        received = tmp.stat().st_size
        if spec.size is not None and received != spec.size:
            what = "was interrupted" if received < spec.size else "returned too many bytes"
            raise CheckpointError(
                f"The download of {url} {what}: received {received} bytes, expected "
                f"{spec.size} bytes (sha256 {spec.sha256}). The partial file was discarded; "
                f"nothing was written to {final}. {_fix_download_hint(url, final)}"
            )
        digest = sha256_file(tmp)
        if digest != spec.sha256:
            raise CheckpointError(
                f"The file downloaded from {url} for {final} is not the expected checkpoint: "
                f"sha256 {digest}, expected {spec.sha256} ({received} bytes received). It was "
                f"discarded; nothing was written to {final}. The download may have been "
                f"corrupted, or the server (${URL_ENV}={os.environ.get(URL_ENV) or '<unset>'}) "
                f"serves a different file. {_fix_download_hint(url, final)}"
            )
        os.replace(tmp, final)
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
    return final
