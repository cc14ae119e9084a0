"""The *Explain* panel beside the canvas: what the model did for the current prompts.

Shows :meth:`sam_widget.Session.explain`'s content: the candidates as thumbnails with their
predicted IoU and stability score, the chosen candidate's low-res logits as a heatmap with
the prompts on it and a threshold slider (the canvas' mask follows it: the slider sets
``session.threshold``, the session asks the engine for the mask at that threshold and the
painter draws it), the per-stage timings of the last prediction and the totals. Nothing here
computes a mask; it is redrawn only while open, and only when the answer, the choice, the
threshold or the image changed.
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
import numpy as np

from ..render import resize_rgb
from ..render_explain import heatmap_picture, png, thumbnail_picture
from ..viewport import fit_size

if TYPE_CHECKING:  # pragma: no cover
    from .widget import SamWidget

__all__ = ["ExplainPanel", "THUMB", "PRESETS"]

THUMB = 88  # longest side of a candidate thumbnail, screen pixels
HEATMAP = 192  # about this many screen pixels for the logits' side
STEP = 0.01  # the slider's step (its range is rounded inwards to it)
PRESETS = (-0.5, 0.0, 0.5)  # threshold buttons: SAM's 0.0 and what 0.5 either way does


class ExplainPanel:
    """``toggle`` (the toolbar's *Explain* button) shows / hides ``box`` (the panel)."""

    def __init__(self, widget: "SamWidget") -> None:
        self.w = widget
        self.toggle = widgets.ToggleButton(
            description="Explain", icon="eye", tooltip="what the model did: candidates, logits, threshold, timings (X)",
            layout=widgets.Layout(width="auto"),
        )
        self.title = widgets.HTML("<b>Explain</b>")
        self.thumbs = [widgets.Image(format="png", layout=widgets.Layout(border="2px solid transparent")) for _ in range(3)]
        self.captions = [widgets.HTML() for _ in range(3)]
        self.cards = [
            widgets.VBox([im, cap], layout=widgets.Layout(align_items="center", margin="0 4px 0 0"))
            for im, cap in zip(self.thumbs, self.captions)
        ]
        self.heat_caption = widgets.HTML()
        self.heatmap = widgets.Image(format="png")
        self.scale = widgets.HTML()
        self.slider = widgets.FloatSlider(
            value=0.0, min=-1.0, max=1.0, step=STEP, description="threshold", continuous_update=True,
            readout_format=".2f", layout=widgets.Layout(width="280px"), style={"description_width": "62px"},
        )
        self.presets = [
            widgets.Button(description=f"{t:+.1f}" if t else "0 (SAM)", tooltip=f"threshold {t:g}", layout=widgets.Layout(width="auto"))
            for t in PRESETS
        ]
        self.timings = widgets.HTML()
        self.box = widgets.VBox(
            [
                self.title,
                widgets.HBox(self.cards),
                self.heat_caption,
                self.heatmap,
                self.scale,
                self.slider,
                widgets.HBox(self.presets),
                self.timings,
            ],
            layout=widgets.Layout(display="none", margin="0 0 0 12px", width="300px"),
        )
        self.box.add_class("sam-explain")
        self.syncing = False
        self._key: Any = None
        self._thumb_rgb: tuple[Any, np.ndarray] | None = None
        self.toggle.observe(lambda ch: self.show(bool(ch["new"])), "value")
        self.slider.observe(self._slider_moved, "value")
        for t, b in zip(PRESETS, self.presets):
            b.on_click(lambda _b, t=t: self.w._ui_call(setattr, self.w, "threshold", t))

    @property
    def visible(self) -> bool:
        return bool(self.toggle.value)

    def show(self, on: bool) -> None:
        """Open (and fill) or close the panel."""
        if self.toggle.value != on:
            self.toggle.value = on  # comes back here through the observer
            return
        self.box.layout.display = "flex" if on else "none"
        if on:
            self._key = None
            self.sync()

    # ------------------------------------------------------------------ the slider
    def _slider_moved(self, change: dict) -> None:
        if self.syncing:
            return
        value = round(float(change["new"]), 2)  # the slider's steps are whole hundredths
        if abs(value - self.w.session.threshold) < STEP / 2:
            return  # the page echoing a value set from here (a preset, w.threshold), snapped to a step
        self.w._ui_call(setattr, self.w, "threshold", value)

    # ------------------------------------------------------------------ filling it
    def sync(self) -> None:
        """Bring the panel in line with the session (only while open; cheap when nothing changed)."""
        if not self.visible:
            return
        s = self.w.session
        snap = s.current
        if snap.slot is not None and not snap.slot.done:
            return  # the answer is on its way: the next change fills the panel
        view = self.w._painter.last_update
        key = (s.index, snap.slot, snap.selected, s._threshold, None if view is None else (view.get("key"), view.get("bytes")))
        if key == self._key:
            return
        self._key = key
        e = self.w.explain(size=self._thumb_hw())
        self.syncing = True
        try:
            self._fill_candidates(e)
            self._fill_logits(e)
            self._fill_timings(e)
        finally:
            self.syncing = False

    def _thumb_hw(self) -> tuple[int, int]:
        return fit_size(self.w.session.image.shape[:2], THUMB)

    def _image_thumb(self) -> np.ndarray:
        s = self.w.session
        if self._thumb_rgb is None or self._thumb_rgb[0] != s.index:
            self._thumb_rgb = (s.index, resize_rgb(s.image, self._thumb_hw()))
        return self._thumb_rgb[1]

    def _fill_candidates(self, e: Any) -> None:
        n = len(e.scores)
        for i in range(3):
            card = self.cards[i]
            if i >= n:
                card.layout.display = "none"
                continue
            card.layout.display = "flex"
            self.thumbs[i].value = png(thumbnail_picture(self._image_thumb(), e.masks[i]))
            chosen = i == e.chosen
            self.thumbs[i].layout.border = "2px solid #1e90ff" if chosen else "2px solid transparent"
            stab = "–" if math.isnan(float(e.stability[i])) else f"{float(e.stability[i]):.3f}"
            weight = "bold" if chosen else "normal"
            self.captions[i].value = (
                f"<div style='text-align:center;font-weight:{weight};line-height:1.2'>{i + 1}"
                f"{' (chosen)' if chosen else ''}<br>IoU {float(e.scores[i]):.3f}<br>stability {stab}</div>"
            )
        if n == 0:
            self.title.value = "<b>Explain</b>: click on an object (no prompts yet)"
        else:
            self.title.value = "<b>Explain</b>: the candidates"

    def _fill_logits(self, e: Any) -> None:
        has = e.logits is not None
        self.heatmap.layout.display = "block" if has else "none"
        self.slider.disabled = not has
        for b in self.presets:
            b.disabled = not has
        if not has:
            self.heat_caption.value = "" if e.chosen is None else "<i>a kept mask brought in: no logits until it is refined</i>"
            self.scale.value = ""
            return
        lo, hi = e.logits_range
        lh, lw = e.logits.shape
        self.heatmap.value = png(
            heatmap_picture(e.logits, e.threshold, valid_hw=e.valid_hw, markers=e.markers, box=e.box_lr, side=HEATMAP)
        )
        self.heat_caption.value = (
            f"<div style='line-height:1.25'><b>low-res logits</b> of candidate {e.chosen + 1} ({lw}×{lh}); "
            "black line: above the threshold; grey: padding, not the image"
            f"{'; refining the previous mask (mask_input)' if e.mask_input is not None else ''}</div>"
        )
        self.scale.value = (
            "<div style='font-size:90%'><span style='color:#2166ac'>■</span> "
            f"{lo:.1f} … <span style='color:#bbb'>■</span> 0 … <span style='color:#b2182b'>■</span> {hi:.1f}"
            f" &nbsp; threshold <b>{e.threshold:g}</b> (SAM: {e.mask_threshold:g})</div>"
        )
        s = self.slider
        smin, smax = math.ceil(lo / STEP) * STEP, math.floor(hi / STEP) * STEP  # inside the logits' range
        smin, smax = round(smin, 2), round(max(smax, smin), 2)
        if smin > s.max:
            s.max = smax
            s.min = smin
        else:
            s.min = smin
            s.max = smax
        s.value = min(max(e.threshold, smin), smax)

    def _fill_timings(self, e: Any) -> None:
        rows = []
        for stage, r in e.timings.iterrows():
            if stage == "bytes sent":
                value = "–" if math.isnan(r["bytes"]) else f"{int(r['bytes']):,} B"
            else:
                value = "–" if math.isnan(r["seconds"]) else f"{r['seconds'] * 1000:.1f} ms"
            detail, short = str(r["detail"]), str(r["note"])
            rows.append(
                f"<tr title='{html.escape(detail, quote=True)}'><td style='padding-right:6px'>{html.escape(str(stage))}</td>"
                f"<td style='text-align:right;padding-right:6px;white-space:nowrap'>{value}</td>"
                f"<td style='color:#666;font-size:85%;line-height:1.2'>{html.escape(short)}</td></tr>"
            )
        t = e.totals
        self.timings.value = (
            "<b>last prediction</b> <span style='color:#888;font-size:85%'>(hover for details)</span>"
            "<table style='border-collapse:collapse;line-height:1.3'>" + "".join(rows) + "</table>"
            f"<div style='font-size:90%'>since the model was loaded: encoder {t['encoder_calls']}×, cache hits "
            f"{t['memory_hits']} memory / {t['disk_hits']} disk, decoder {t['decoder_calls']}×</div>"
        )
