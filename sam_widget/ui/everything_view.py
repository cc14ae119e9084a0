"""The widget's "segment everything" pieces: its small group of controls and its canvas layer.

* :class:`EverythingPanel` -- *Everything* (key E), a progress bar, *Stop*, *Accept all*,
  *Clear proposals* and a line saying how many proposals there are; what the buttons do is
  wired by ``SamWidget`` (through its one error-reporting entry point).
* :class:`ProposalsLayer` -- draws the current image's pending proposals on the proposals
  layer (:data:`~sam_widget.ui.canvas_view.PROPOSALS`) from their display-size masks,
  redrawing only when they changed (a new batch of a run, a decision, undo, another image).

Both follow the session (:mod:`sam_widget.session.everything` holds the logic); nothing here
computes a mask.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import numpy as np

from ..render import DEFAULT_OPACITY
from ..render_proposals import proposal_alpha, proposals_overlay
from ..render_static import composite
from .canvas_view import PROPOSALS, CanvasView

if TYPE_CHECKING:  # pragma: no cover
    from ..session import Session

__all__ = ["EverythingPanel", "ProposalsLayer", "EVERYTHING_KEY", "with_proposals"]

EVERYTHING_KEY = "e"


class EverythingPanel:
    """The *Everything* group of buttons, its progress bar and its summary line."""

    def __init__(self) -> None:
        lay = widgets.Layout(width="auto")
        self.run_btn = widgets.Button(
            description="Everything", icon="th", layout=lay, tooltip="find every object: proposals to accept (E)"
        )
        self.progress = widgets.FloatProgress(
            value=0.0, min=0.0, max=1.0, layout=widgets.Layout(width="140px", display="none")
        )
        self.stop_btn = widgets.Button(description="Stop", icon="stop", layout=lay, disabled=True, tooltip="stop; keep what was found")
        self.accept_all_btn = widgets.Button(
            description="Accept all", icon="check", layout=lay, disabled=True, tooltip="every proposal shown becomes an object"
        )
        self.clear_btn = widgets.Button(
            description="Clear proposals", icon="times", layout=lay, disabled=True, tooltip="hide the proposals (undoable)"
        )
        self.info = widgets.HTML()
        self.box = widgets.HBox(
            [self.run_btn, self.stop_btn, self.accept_all_btn, self.clear_btn, self.progress, self.info],
            layout=widgets.Layout(align_items="center"),
        )

    def widgets(self) -> list[widgets.Widget]:
        return [self.box]

    def sync(self, session: "Session") -> None:
        """Bring the buttons, the bar and the line in line with the session."""
        ctl = session._everything
        active = ctl.active
        running = active is not None and active.running
        run = ctl.run
        shown = active if running else run
        pending = ctl.pending()
        self.stop_btn.disabled = not running
        self.accept_all_btn.disabled = not pending
        self.clear_btn.disabled = ctl.state is None
        if shown is None:
            self.progress.layout.display = "none"
            self.info.value = ""
            return
        self.progress.layout.display = "" if (running or shown.partial) else "none"
        self.progress.value = float(shown.progress)
        self.progress.bar_style = "" if running else ("warning" if shown.partial else "success")
        n = len(shown.proposals) if shown.proposals is not None else 0
        if running:
            text = f"{100 * shown.progress:.0f} % · {n} found"
        elif shown.error is not None:
            text = "failed"
        else:
            text = f"{len(pending)} of {n} proposals shown" if n else "no proposals"
        self.info.value = f"<span style='color:#4b5563'>{html.escape(text)}</span>"


def with_proposals(picture: np.ndarray, session: "Session", full_size: bool = False,
                   opacity: float = DEFAULT_OPACITY) -> np.ndarray:
    """``picture`` (the widget's still picture, ``h x w x 3`` uint8 at the display size, or at
    the image's size with ``full_size``) with the pending proposals laid over it as the
    proposals layer shows them (the top layer, stripes at the fill ``opacity``, 0 to 1);
    ``picture`` itself when there are none."""
    ctl = session._everything
    if not ctl.pending():
        return picture
    if not full_size:
        pieces, colors = ctl.display_pieces()
    else:
        st = ctl.state
        props = st.run.proposals
        pieces, colors = [], []
        for i in sorted(st.pending(), key=lambda i: -props[i].area):
            x0, y0, x1, y1 = props[i].box
            pieces.append((x0, y0, props[i].mask[y0:y1, x0:x1]))
            colors.append(st.run.color(props[i]))
    return composite(picture, [proposals_overlay(pieces, colors, alpha=proposal_alpha(opacity))])


class ProposalsLayer:
    """Keeps the proposals layer of ``view`` in line with ``session`` (called under its lock)."""

    def __init__(self, view: CanvasView, session: "Session") -> None:
        self.view = view
        self.session = session
        self.shown: Any = None
        self.opacity: float = DEFAULT_OPACITY  # the widget's fill opacity (set by the view, then render)
        self.draws = 0  # overlays sent (tests count them)

    def render(self) -> None:
        """Draw the pending proposals if they differ from what the layer shows."""
        s = self.session
        with s.lock:
            key = (s._everything.display_key(), self.opacity)
            if key == self.shown:
                return
            pieces, colors = s._everything.display_pieces()
            overlay = proposals_overlay(pieces, colors, alpha=proposal_alpha(self.opacity))
            self.view.batch(lambda: self.view.draw_overlay(PROPOSALS, overlay))
            self.shown = key
            self.draws += 1

    def forget(self) -> None:
        """The layer was blanked (a browser reconnected): draw everything again next time."""
        self.shown = None
