"""Shared helpers of the io room: the error class, atomic writes, JSON, safe file names.

No torch, no widgets. Heavy modules (pycocotools, OpenCV, scikit-image, pandas) are
imported inside the functions that need them.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import unicodedata
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["FormatError", "atomic_write", "atomic_write_bytes", "read_json", "dump_json", "safe_name"]


class FormatError(ValueError):
    """A file (or in-memory COCO dict) that cannot be read: corrupt, truncated, foreign or
    inconsistent. Subclass of ``ValueError``.

    ``path`` is the file (``None`` for a dict), ``item`` the offending entry (e.g.
    ``"annotations[3] (id 17)"``) or ``None``, ``problem`` the explanation. ``str(error)``
    names all three.
    """

    def __init__(self, path: str | os.PathLike[str] | None, problem: str, item: str | None = None) -> None:
        self.path = None if path is None else str(path)
        self.item = item
        self.problem = problem
        where = f"{self.path!r}" if self.path is not None else "the COCO data"
        super().__init__(f"{where}: {item}: {problem}" if item else f"{where}: {problem}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike[str], write: Callable[[str], None]) -> Path:
    """Write ``path`` atomically: ``write(tmp)`` fills a temporary file in the same
    directory, which is flushed to disk and renamed over ``path`` (``os.replace``).

    A crash (even ``kill -9``) at any moment leaves either the previous file or the new
    complete one, never a torn file. On error the temporary file is removed and ``path``
    is untouched. The new file gets the usual permissions (0666 minus the umask).
    """
    target = Path(path)
    parent = target.parent
    fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return target


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """:func:`atomic_write` of ``data``."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            f.write(data)

    return atomic_write(path, write)


def check_output_file(path: str | os.PathLike[str], what: str = "output file", creates: Path | None = None) -> Path:
    """Check that ``path`` can be written as a file (its directory exists, or is the folder
    ``creates`` -- one the caller makes before writing -- or inside it; it is not a
    directory). Raises ``ValueError`` naming the path. Returns it as a Path."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path (str or os.PathLike), not {type(path).__name__}.")
    p = Path(path).expanduser()
    if p.is_dir():
        raise ValueError(f"{what} {str(p)!r} is a directory; give a file name.")
    parent = p.parent
    if creates is not None and not parent.exists():
        made = Path(creates).expanduser().resolve()
        if parent.resolve() == made:  # a file in the folder the caller creates first
            return p
    if not parent.exists():
        raise ValueError(f"cannot write {what} {str(p)!r}: directory {str(parent)!r} does not exist.")
    if not parent.is_dir():
        raise ValueError(f"cannot write {what} {str(p)!r}: {str(parent)!r} is not a directory.")
    return p


def check_output_dir(path: str | os.PathLike[str], what: str = "output directory") -> Path:
    """Check that ``path`` is a directory or can be created as one (nothing is created
    here). Raises ``ValueError`` when it, or a parent, is an existing file."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path (str or os.PathLike), not {type(path).__name__}.")
    p = Path(path).expanduser()
    probe = p
    while True:
        if probe.exists():
            if not probe.is_dir():
                if probe == p:
                    raise ValueError(f"{what} {str(p)!r} exists and is a file, not a directory.")
                raise ValueError(f"cannot create {what} {str(p)!r}: {str(probe)!r} is a file.")
            break
        if probe.parent == probe:
            break
        probe = probe.parent
    return p


def dump_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON (no NaN/inf: they are not JSON)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file; every problem (missing, unreadable, not UTF-8, truncated or not
    JSON) is a :class:`FormatError` naming the file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FormatError(p, "the file does not exist.")
    if p.is_dir():
        raise FormatError(p, "is a directory, not a JSON file.")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise FormatError(p, f"cannot be read ({e.strerror or e}).") from None
    if not data.strip():
        raise FormatError(p, "the file is empty (an interrupted write?).")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise FormatError(p, f"is not UTF-8 text (byte {e.start}); not a JSON file.") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        truncated = e.pos >= len(text.rstrip()) - 1 or e.msg.startswith("Unterminated")
        hint = " (the file is truncated)" if truncated else ""
        raise FormatError(p, f"is not valid JSON{hint}: {e.msg} (line {e.lineno}, column {e.colno}).") from None
    except RecursionError:
        raise FormatError(p, "is not usable JSON (nested too deeply).") from None


_UNSAFE = re.compile(r"[^\w.\-]+", re.UNICODE)


def safe_name(text: str, fallback: str = "object", max_bytes: int = 80) -> str:
    """A file-name component made from any text: letters, digits (any script), ``_``,
    ``-`` and ``.`` are kept (NFC-normalised); every other run of characters (spaces,
    slashes, control characters, ...) becomes one ``_``. Leading dots and ``_`` are
    removed (no hidden files, no ``..``); an empty result becomes ``fallback``; the result
    is cut to ``max_bytes`` bytes of UTF-8 (a whole number >= 1; ``fallback`` is used
    as given, so it should be short and safe itself).
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)):
        raise TypeError(f"max_bytes must be a whole number of bytes, not {max_bytes!r}.")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes!r}.")
    if not isinstance(fallback, str):
        raise TypeError(f"fallback must be a string, not {type(fallback).__name__}.")
    if not fallback:
        raise ValueError("fallback must be a non-empty string (it replaces an empty name).")
    s = unicodedata.normalize("NFC", str(text))
    s = _UNSAFE.sub("_", s).strip("._")
    if not s:
        s = fallback
    b = s.encode("utf-8")
    if len(b) > max_bytes:
        s = b[:max_bytes].decode("utf-8", errors="ignore").rstrip("._") or fallback
    return s


def json_number(value: Any, where: str, *, integer: bool = False) -> float | int:
    """Check a JSON value is a finite number (an int if ``integer``); ``ValueError`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {_short(value)}.")
    if integer:
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError(f"{where} must be a whole number, got {value!r}.")
            value = int(value)
        return int(value)
    if not math.isfinite(value):
        raise ValueError(f"{where} must be finite, got {value!r}.")
    return value


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def as_bool_mask(mask: Any, where: str) -> np.ndarray:
    """A 2-D mask as C-contiguous bool: bool arrays, or integer arrays holding only 0/1
    or only 0/255. Floats and other values raise ``ValueError`` (threshold them first)."""
    if not isinstance(mask, np.ndarray):
        try:
            mask = np.asarray(mask)
        except Exception:  # pragma: no cover - asarray takes nearly anything
            raise TypeError(f"{where} must be an (H, W) array, not {type(mask).__name__}.") from None
    if mask.ndim != 2:
        raise ValueError(f"{where} must be an (H, W) mask, got an array of shape {mask.shape}.")
    if mask.dtype == np.bool_:
        return np.ascontiguousarray(mask)
    if mask.dtype.kind in "iu":
        nonzero = mask != 0
        for on in (1, 255):
            if (nonzero == (mask == on)).all():
                return np.ascontiguousarray(nonzero)
        raise ValueError(
            f"{where} holds values other than 0 and 1 (or 0 and 255), e.g. "
            f"{np.unique(mask)[:6].tolist()}; a mask must be bool: is it a label image?"
        )
    raise ValueError(f"{where} must be a bool mask, got dtype {mask.dtype} (threshold it first).")
