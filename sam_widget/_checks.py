"""Argument checks shared by every room (plain Python and NumPy scalars)."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = ["as_flag", "as_count", "as_timeout"]


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
