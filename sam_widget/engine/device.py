"""Choosing the torch device to run on (``"auto"``, ``"cpu"``, ``"cuda[:N]"``, ``"mps"``).

Split out of :mod:`sam_widget.engine.checkpoints`, which re-exports :func:`select_device`.
"""

from __future__ import annotations

import torch

__all__ = ["select_device"]


def select_device(device: str | torch.device = "auto") -> torch.device:
    """Return the ``torch.device`` to run on.

    ``"auto"`` picks CUDA if available, then Apple MPS, then the CPU. Explicit devices
    (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a ``torch.device``) are checked: asking
    for one that is not available raises :class:`ValueError` saying so.
    """
    if isinstance(device, str):
        text = device.strip().lower()
        if text == "auto":
            if torch.cuda.is_available():
                return torch.device("cuda")
            if _mps_available():
                return torch.device("mps")
            return torch.device("cpu")
        try:
            dev = torch.device(text)
        except (RuntimeError, ValueError) as e:
            raise ValueError(
                f"Invalid device {device!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
            ) from e
    elif isinstance(device, torch.device):
        dev = device
    else:
        raise TypeError(f"device must be a str or torch.device, not {type(device).__name__}.")

    if dev.type == "cpu":
        return dev
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={str(dev)!r} was requested but CUDA is not available "
                f"(torch.cuda.is_available() is False: no NVIDIA GPU/driver is visible, or "
                f"this PyTorch build has no CUDA support). Use device='cpu' or device='auto'."
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise ValueError(
                f"device={str(dev)!r} was requested but only {count} CUDA device(s) exist "
                f"(cuda:0 … cuda:{count - 1})."
            )
        return dev
    if dev.type == "mps":
        if not _mps_available():
            raise ValueError(
                f"device={str(dev)!r} was requested but Apple MPS is not available. "
                f"Use device='cpu' or device='auto'."
            )
        return dev
    raise ValueError(
        f"Unsupported device {str(dev)!r}; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'."
    )


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())
