"""The widget's buttons and lists: toolbar, image navigation, candidates, objects, status, help.

Building them and bringing them in line with a session's state; what they *do* is wired by
``SamWidget`` (every button goes through one error-reporting entry point there).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

import ipywidgets as widgets

from ..render import DEFAULT_OPACITY

if TYPE_CHECKING:  # pragma: no cover
    from ..session import Session

__all__ = ["Controls", "SHORTCUTS"]

SHORTCUTS: list[tuple[str, str]] = [
    ("Left click", "positive point (in the mode shown by the toolbar)"),
    ("Right click / Shift + click", "negative point"),
    ("Press, drag, release", "box (replaces the previous box; combines with points)"),
    ("Alt + click", "edit the object under the pointer (its prompts come back; clicks refine it)"),
    ("1 / 2 / 3", "choose candidate mask"),
    ("Enter", "add the current mask as an object (replaces the object being edited)"),
    ("Click in the object list", "highlight that object (the others dim); Edit / Rename / Delete act on it"),
    ("Esc", "clear the current prompts (stop editing, no highlight)"),
    ("Ctrl+Z", "undo"),
    ("Ctrl+Shift+Z / Ctrl+Y", "redo"),
    ("← / →", "previous / next image"),
    ("P / N / B", "mode: positive / negative / box"),
    ("H", "hover preview on / off"),
    ("E", "segment everything: proposals for every object (Stop keeps what was found)"),
    ("Click / Shift + click on a proposal", "accept it as an object / reject it (while no prompts are given)"),
    ("X", "explain panel on / off: candidates, logits, threshold, timings"),
    ("?", "show / hide this help"),
]


class Controls:
    """Every ipywidget around the canvas. ``multi``: show the ◀ / ▶ image navigation."""

    def __init__(self, refine: bool, hover: bool, multi: bool) -> None:
        lay = widgets.Layout(width="auto")
        self.mode = widgets.ToggleButtons(
            options=[("+ positive", "positive"), ("- negative", "negative"), ("▭ box", "box")],
            value="positive",
            tooltips=["click adds a positive point (P)", "click adds a negative point (N)", "drag draws a box (B)"],
            style={"button_width": "92px"},
        )
        self.prev_btn = widgets.Button(icon="chevron-left", tooltip="previous image (←)", layout=widgets.Layout(width="36px"))
        self.next_btn = widgets.Button(icon="chevron-right", tooltip="next image (→)", layout=widgets.Layout(width="36px"))
        self.nav_label = widgets.HTML()
        self.nav = widgets.HBox(
            [self.prev_btn, self.nav_label, self.next_btn],
            layout=widgets.Layout(display="flex" if multi else "none", align_items="center", margin="0 8px 0 0"),
        )
        self.undo_btn = widgets.Button(description="Undo", icon="undo", layout=lay, tooltip="Ctrl+Z")
        self.redo_btn = widgets.Button(description="Redo", icon="repeat", layout=lay, tooltip="Ctrl+Shift+Z / Ctrl+Y")
        self.clear_btn = widgets.Button(description="Clear", icon="eraser", layout=lay, tooltip="Esc")
        self.refine_box = widgets.Checkbox(value=bool(refine), description="refine", indent=False, layout=lay)
        self.hover_box = widgets.Checkbox(value=bool(hover), description="hover", indent=False, layout=lay)
        self.help_btn = widgets.ToggleButton(description="?", tooltip="keyboard shortcuts", layout=widgets.Layout(width="36px"))
        self.opacity_slider = widgets.FloatSlider(
            value=DEFAULT_OPACITY, min=0.0, max=1.0, step=0.05, description="opacity", readout=False,
            tooltip="fill opacity of the masks", style={"description_width": "auto"},
            layout=widgets.Layout(width="160px", margin="2px 4px 2px 14px"),
        )
        self.opacity_slider.add_class("sam-opacity")
        self.toolbar = widgets.HBox(
            [self.nav, self.mode, self.undo_btn, self.redo_btn, self.clear_btn, self.refine_box, self.hover_box,
             self.opacity_slider, self.help_btn],
            # a narrow output area wraps the toolbar onto a second line instead of squeezing
            # every button into "Un..." / "Cl..." and the mode buttons onto two rows
            layout=widgets.Layout(flex_flow="row wrap", align_items="center"),
        )
        # ToggleButtons never drops its buttons in the page when its options become empty (the
        # front end rebuilds them only for a non-empty list), so without candidates it is hidden
        # and a hint shown instead: the page's buttons always match the kernel's candidates.
        self.cand = widgets.ToggleButtons(options=[], description="", style={"button_width": "150px"},
                                          layout=widgets.Layout(display="none"))
        self.cand_hint = widgets.HTML("<i style='color:#6b7280'>none: click on an object</i>")
        self.label_text = widgets.Text(placeholder="object 1", layout=widgets.Layout(width="150px"))
        self.add_btn = widgets.Button(description="Add", icon="plus", button_style="success", tooltip="Enter", layout=lay)
        self.obj_list = widgets.Select(options=[], rows=8, layout=widgets.Layout(width="210px"))
        self.rename_btn = widgets.Button(description="Rename", layout=lay)
        self.edit_btn = widgets.Button(description="Edit", icon="pencil", layout=lay, tooltip="refine this object (Alt + click on it)")
        self.delete_btn = widgets.Button(description="Delete", icon="trash", button_style="danger", layout=lay)
        self.side = widgets.VBox(
            [
                widgets.HTML("<b>Candidates</b> (predicted IoU)"),
                self.cand,
                self.cand_hint,
                widgets.HTML("<b>Objects</b>"),
                widgets.HBox([self.label_text, self.add_btn]),
                self.obj_list,
                widgets.HBox([self.rename_btn, self.edit_btn, self.delete_btn]),
            ],
            layout=widgets.Layout(margin="0 0 0 8px"),
        )
        self.status = widgets.HTML()
        key_td = "style='white-space:nowrap;padding:1px 16px 1px 0;vertical-align:top'"
        rows = "".join(f"<tr><td {key_td}><kbd>{html.escape(k)}</kbd></td><td>{html.escape(v)}</td></tr>" for k, v in SHORTCUTS)
        self.help = widgets.HTML(f"<table style='border-collapse:collapse'>{rows}</table>", layout=widgets.Layout(display="none"))
        self.help_btn.observe(lambda ch: setattr(self.help.layout, "display", "block" if ch["new"] else "none"), "value")
        self.syncing = False  # True while sync() sets values: their observers must not act

    def sync(self, session: "Session", highlight: int | None = None) -> None:
        """Bring every control in line with the session's current image and state;
        ``highlight``: the id of the object selected in the list (None: no selection)."""
        from ..session.core import selected_of

        snap = session.current
        self.syncing = True
        try:
            pred = snap.prediction
            if pred is not None:
                opts = [(f"{i + 1} · IoU {s:.3f}", i) for i, s in enumerate(pred.scores)]
                if self.cand.options != tuple(opts):
                    self.cand.options = opts
                self.cand.value = selected_of(snap)
                self.cand.layout.display = None
                self.cand_hint.layout.display = "none"
            elif snap.slot is None:
                if self.cand.options:
                    self.cand.options = []
                self.cand.layout.display = "none"
                self.cand_hint.layout.display = None
            history = session.history
            self.undo_btn.disabled = not history.can_undo
            self.redo_btn.disabled = not history.can_redo
            opts = [
                (f"{i}: {o.label} ({o.area} px){' ✎' if o.id == snap.editing else ''}", i) for i, o in enumerate(snap.objects)
            ]
            if self.obj_list.options != tuple(opts):
                self.obj_list.options = opts
            at = next((i for i, o in enumerate(snap.objects) if o.id == highlight), None)
            if self.obj_list.value != at:
                self.obj_list.value = at
            self.label_text.placeholder = f"object {snap.next_object_id}" if snap.editing is None else "(keep the label)"
            self.delete_btn.disabled = self.rename_btn.disabled = self.edit_btn.disabled = not snap.objects
            n, i = len(session.images), session.index
            self.nav_label.value = f"<b>{i + 1} / {n}</b> {html.escape(session.name)}"
            self.prev_btn.disabled = i == 0
            self.next_btn.disabled = i + 1 >= n
        finally:
            self.syncing = False
        self.show_status(session)

    def show_status(self, session: "Session") -> None:
        parts = session.status.parts()
        self.status.value = " · ".join(
            f"<span style='color:#dc2626'>{html.escape(t)}</span>" if bad else html.escape(t) for t, bad in parts
        )
