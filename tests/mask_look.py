"""Test helper: where a drawn mask's outline and fill are, computed independently of
``sam_widget.render`` (by SciPy's binary erosion with 4-connectivity).

The widget draws every mask inside its own pixels: a 1-pixel dark outer line (pixels with a
4-neighbour outside the mask, or on the array's border), a 2-pixel inner line, then the fill.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["eroded", "edge", "inner_line", "fill", "RIM", "assert_current_look"]

RIM = 3  # outline pixels: 1 dark + 2 light
_CROSS = ndimage.generate_binary_structure(2, 1)


def eroded(mask: np.ndarray, k: int) -> np.ndarray:
    """``mask`` eroded ``k`` times by the 4-neighbour cross; pixels outside the array count as outside."""
    if k == 0:
        return mask.copy()
    return ndimage.binary_erosion(mask, _CROSS, iterations=k, border_value=0)


def edge(mask: np.ndarray) -> np.ndarray:
    """The dark outer line: mask pixels with a 4-neighbour outside the mask."""
    return mask & ~eroded(mask, 1)


def inner_line(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """The light line just inside the edge, ``width`` pixels."""
    return eroded(mask, 1) & ~eroded(mask, 1 + width)


def fill(mask: np.ndarray, rim: int = RIM) -> np.ndarray:
    """The mask's pixels inside its outline."""
    return eroded(mask, rim)


def assert_current_look(shown, mask: np.ndarray, color: tuple[int, int, int] | None = None) -> None:
    """``shown`` (a ``LayerReplay`` of the current-mask layer) shows ``mask`` the way the current
    mask looks: a black edge, 2 pixels of white, the fill in ``color`` (default: the usual blue)."""
    from sam_widget.render import CURRENT_CHOICES, OUTLINE_DARK, OUTLINE_LIGHT

    color = CURRENT_CHOICES[0] if color is None else color
    rgb = shown.rgba[..., :3]
    assert (rgb[edge(mask)] == OUTLINE_DARK).all(), "the edge is not the dark line"
    assert (rgb[inner_line(mask)] == OUTLINE_LIGHT).all(), "no white line inside the edge"
    assert (rgb[fill(mask)] == color).all(), "the fill is not the current-mask colour"
