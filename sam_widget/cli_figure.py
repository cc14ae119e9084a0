"""The ``sam-widget segment`` figure: the image with each mask, the points and the box.

:func:`draw_figure` is re-exported by :mod:`sam_widget.cli`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .images import to_rgb_uint8

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

# Figure colours: mask fill (RGB, alpha), positive / negative points, box.
_MASK_RGB = (30, 144, 255)
_MASK_ALPHA = 0.55
_POSITIVE_COLOR = "#00c000"
_NEGATIVE_COLOR = "#e00000"
_BOX_COLOR = "#00e000"


def draw_figure(
    image: Any,
    masks: np.ndarray,
    scores: Sequence[float] | np.ndarray | None = None,
    points: Sequence[Sequence[float]] | np.ndarray | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
    box: Sequence[float] | np.ndarray | None = None,
    *,
    figure: "Figure | None" = None,
    panel_width: float = 4.8,
) -> "Figure":
    """Draw ``image`` with each mask overlaid, one subplot per mask, side by side.

    Args:
      image: anything :func:`sam_widget.images.to_rgb_uint8` accepts (``H x W x 3``
        uint8 RGB, a PIL image, a path, ...).
      masks: ``(C, H, W)`` or ``(H, W)`` bool masks at the image size.
      scores: ``C`` predicted IoUs; subplot ``i`` is titled ``"Mask i, score s"``.
      points: ``N x 2`` ``(x, y)`` = (column, row) image pixels; drawn as stars, green for
        label 1 (foreground) and red for label 0 (background).
      labels: ``N`` labels, required with ``points``.
      box: ``(x0, y0, x1, y1)`` XYXY image pixels, drawn as a rectangle.
      figure: a Matplotlib figure to draw into (e.g. ``plt.figure()`` to show it in a
        window); by default a new ``matplotlib.figure.Figure`` not managed by pyplot, so it
        is garbage-collected normally and works with any backend.
      panel_width: width of each subplot in inches.

    Returns the figure. Raises ``ValueError`` / ``TypeError`` for inconsistent inputs.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    rgb = to_rgb_uint8(image)
    height, width = rgb.shape[:2]
    m = np.asarray(masks)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or m.shape[1:] != (height, width):
        raise ValueError(
            f"masks must be (C, {height}, {width}) to match the image, got shape {np.shape(masks)}."
        )
    if m.shape[0] == 0:
        raise ValueError("masks is empty: nothing to draw.")
    m = m.astype(bool)
    sc = None
    if scores is not None:
        sc = np.asarray(scores, dtype=np.float64).reshape(-1)
        if sc.shape[0] != m.shape[0]:
            raise ValueError(
                f"scores must hold one value per mask: {m.shape[0]} masks, {sc.shape[0]} scores."
            )
    pts = lbl = None
    if points is not None:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if labels is None:
            raise ValueError("points need labels (1 = foreground, 0 = background).")
        lbl = np.asarray(labels).reshape(-1)
        if lbl.shape[0] != pts.shape[0]:
            raise ValueError(
                f"labels must hold one value per point: {pts.shape[0]} points, {lbl.shape[0]} labels."
            )
    bx = None
    if box is not None:
        bx = np.asarray(box, dtype=np.float64).reshape(-1)
        if bx.shape != (4,):
            raise ValueError(f"box must be 4 numbers (x0, y0, x1, y1), got {box!r}.")

    n = m.shape[0]
    panel_height = panel_width * height / width
    size = (panel_width * n, panel_height + 0.45)
    if figure is None:
        fig = Figure(figsize=size)
    else:
        fig = figure
        fig.clear()
        fig.set_size_inches(*size)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=1 - 0.4 / size[1], wspace=0.02)
    axes = fig.subplots(1, n, squeeze=False)[0]
    star = max(60.0, min(300.0, 18.0 * panel_width * panel_width))
    color = np.asarray(_MASK_RGB, dtype=np.float32)
    base = rgb.astype(np.float32)
    for i, ax in enumerate(axes):
        shown = base.copy()
        shown[m[i]] = shown[m[i]] * (1 - _MASK_ALPHA) + color * _MASK_ALPHA
        ax.imshow(np.rint(shown).astype(np.uint8), interpolation="nearest")
        if pts is not None:
            for value, c in ((1, _POSITIVE_COLOR), (0, _NEGATIVE_COLOR)):
                sel = lbl == value
                if sel.any():
                    ax.scatter(
                        pts[sel, 0],
                        pts[sel, 1],
                        s=star,
                        marker="*",
                        color=c,
                        edgecolor="white",
                        linewidth=1.2,
                        zorder=3,
                        clip_on=False,
                    )
        if bx is not None:
            x0, y0, x1, y1 = bx
            ax.add_patch(
                Rectangle(
                    (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=_BOX_COLOR, linewidth=2, zorder=2
                )
            )
        title = f"Mask {i}" if sc is None else f"Mask {i}, score {sc[i]:.3f}"
        ax.set_title(title, fontsize=11)
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.axis("off")
    return fig
