"""The ``sam-widget`` command line: shared constants, errors and prompt parsing.

``--input_point``, ``--input_label`` and ``--input_box`` parsing and the image-bounds check,
used by :mod:`sam_widget.cli` (re-exported there).
"""

from __future__ import annotations

import math

import numpy as np

from .engine.registry import model_names

PROG = "sam-widget"
MODEL_CHOICES: tuple[str, ...] = model_names()
DEFAULT_OUTPUT = "sam_output"
_MAX_MASKS = 3  # SAM's multimask output
_EXIT_ERROR = 2
_EXIT_INTERRUPTED = 130


class CLIError(Exception):
    """A problem to report to the user as one ``sam-widget: error: ...`` line (exit 2)."""


class _UsageError(CLIError):
    """argparse rejected the command line."""


# ----------------------------------------------------------------------------- parsing


def _number(text: str, flag: str, whole: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{flag} {whole!r}: {text.strip()!r} is not a number.") from None
    if not math.isfinite(value):
        raise ValueError(f"{flag} {whole!r}: {text.strip()!r} is not a finite number.")
    return value


def parse_points(text: str) -> np.ndarray:
    """Parse ``"x,y;x,y;..."`` into an ``N x 2`` float64 array of ``(x, y)`` pixels.

    ``x`` is the column and ``y`` the row (image pixels, origin at the top-left corner).
    Spaces are ignored and a trailing ``";"`` is allowed. Raises ``ValueError`` naming the
    offending pair.
    """
    if not isinstance(text, str):
        raise TypeError(f"points must be given as a string, not {type(text).__name__}.")
    pairs = [p for p in text.split(";") if p.strip()]
    if not pairs:
        raise ValueError(
            f"--input_point {text!r} holds no point; write x,y pairs like '100,100;110,110'."
        )
    out = []
    for pair in pairs:
        parts = pair.split(",")
        if len(parts) != 2:
            raise ValueError(
                f"--input_point {text!r}: {pair.strip()!r} is not an x,y pair; "
                "write points as x,y separated by ';', e.g. '100,100;110,110'."
            )
        out.append([_number(p, "--input_point", text) for p in parts])
    return np.asarray(out, dtype=np.float64)


def parse_labels(text: str) -> np.ndarray:
    """Parse ``"1,1,0"`` into an ``N`` int64 array: 1 = foreground, 0 = background.

    Raises ``ValueError`` for anything but ``0`` and ``1``.
    """
    if not isinstance(text, str):
        raise TypeError(f"labels must be given as a string, not {type(text).__name__}.")
    items = [t.strip() for t in text.replace(";", ",").split(",")]
    if items and items[-1] == "":
        items = items[:-1]
    if not items:
        raise ValueError(
            f"--input_label {text!r} holds no label; write one 0/1 per point, e.g. '1,1,0'."
        )
    for item in items:
        if item not in ("0", "1"):
            raise ValueError(
                f"--input_label {text!r}: labels must be 1 (foreground) or 0 (background), got {item!r}."
            )
    return np.asarray([int(i) for i in items], dtype=np.int64)


def parse_box(text: str) -> np.ndarray:
    """Parse ``"x0,y0,x1,y1"`` (XYXY: top-left then bottom-right corner, image pixels).

    Returns a float64 array of 4 numbers. Raises ``ValueError`` unless there are exactly
    four numbers with ``x0 <= x1`` and ``y0 <= y1``.
    """
    if not isinstance(text, str):
        raise TypeError(f"box must be given as a string, not {type(text).__name__}.")
    parts = text.split(",")
    if len(parts) != 4:
        raise ValueError(
            f"--input_box {text!r} must be 4 numbers x0,y0,x1,y1 (top-left and bottom-right "
            f"corners), got {len(parts)} value{'s' if len(parts) != 1 else ''}."
        )
    x0, y0, x1, y1 = (_number(p, "--input_box", text) for p in parts)
    if x1 < x0 or y1 < y0:
        raise ValueError(
            f"--input_box {text!r} must have x0 <= x1 and y0 <= y1 (x0,y0 = top-left corner, "
            f"x1,y1 = bottom-right corner)."
        )
    return np.asarray([x0, y0, x1, y1], dtype=np.float64)


def _check_inside(points: np.ndarray | None, box: np.ndarray | None, size: tuple[int, int]) -> None:
    height, width = size
    if points is not None:
        for x, y in points:
            if not (0 <= x <= width and 0 <= y <= height):
                raise ValueError(
                    f"--input_point {x:g},{y:g} lies outside the image, which is {width} wide "
                    f"and {height} high (x must be in [0, {width}], y in [0, {height}])."
                )
    if box is not None:
        x0, y0, x1, y1 = box
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise ValueError(
                f"--input_box {x0:g},{y0:g},{x1:g},{y1:g} reaches outside the image, which is "
                f"{width} wide and {height} high."
            )
