"""Argument checks shared by every room (plain Python and NumPy scalars)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["as_flag", "as_count", "as_timeout", "as_size"]


def as_flag(value: Any, name: str) -> bool:
    """``value`` as a bool: True / False (NumPy bools and the integers 0 / 1 too), else
    ``TypeError`` naming ``name`` -- so ``exact="no"`` is an error, not True."""
    if isinstance(value, bool):
        return value
    if isinstance(value, np.bool_) or (isinstance(value, numbers.Integral) and int(value) in (0, 1)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}.")


def as_count(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int >= ``minimum``: ``TypeError`` for non-integers (bools included),
    ``ValueError`` below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number, got {value!r}.")
    if int(value) < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value!r}.")
    return int(value)


def as_timeout(value: Any, name: str = "timeout") -> float | None:
    """``value`` as seconds (a finite number >= 0) or None (wait forever): ``TypeError`` for
    non-numbers (bools included), ``ValueError`` for negative, NaN or infinite values."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number of seconds or None, got {value!r}.")
    t = float(value)
    if not (t >= 0 and math.isfinite(t)):
        raise ValueError(f"{name} must be a finite number of seconds >= 0 (or None), got {value!r}.")
    return t


def as_size(value: Any, name: str = "size", limit: int = 65536) -> tuple[int, int]:
    """``value`` as ``(h, w)`` ints from 1 to ``limit``: ``TypeError`` for anything but a pair
    of integers (bools included), ``ValueError`` out of range."""
    try:
        h, w = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (h, w) of ints, got {value!r}.") from None
    for v in (h, w):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be a pair (h, w) of ints, got {value!r}.")
    if not (1 <= h <= limit and 1 <= w <= limit):
        raise ValueError(f"{name} must be between 1 and {limit} pixels per side, got {value!r}.")
    return int(h), int(w)
