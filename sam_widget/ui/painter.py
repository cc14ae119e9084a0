"""Draws a session's current state on the canvas layers, redrawing only what changed.

Called under the session's lock (``Session.lock``) from whichever thread changed the state,
so the last call draws the newest state: a worker finishing an older answer never paints over
a newer one. Masks come from the session (``display_mask``, ``preview``) or are committed
masks resampled for display; nothing here runs the model.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from ..render import CURRENT_CHOICES, DEFAULT_OPACITY, contrasting_color, mask_overlay, objects_overlay, resize_mask, resize_rgb
from ..render_static import compose_snapshot
from ..state import ObjectRecord
from .canvas_view import CURRENT, OBJECTS, CanvasView

if TYPE_CHECKING:  # pragma: no cover
    from ..session import Session

__all__ = ["Painter", "CURRENT_COLOR", "PREVIEW_COLOR"]

CURRENT_COLOR = CURRENT_CHOICES[0]  # the current mask's usual colour (another where the image is blue)
PREVIEW_COLOR = (250, 204, 21)


class Painter:
    """Keeps the four layers of ``view`` in line with ``session``.

    ``shown`` records what each layer shows (the image index, the objects tuple and the
    edited object, the current-mask key -- ``(slot, candidate)``, ``("preview", point)`` or
    None -- the prompts, the fill opacity and the highlighted object), so a call that changes
    nothing sends nothing.

    Style (set by the view, then :meth:`render`): :attr:`opacity` is the fill opacity of the
    masks; :attr:`highlight` the id of the object singled out (the object list's selection):
    it is drawn with a thicker white-and-colour outline over the others, which are dimmed --
    as they are while an object is being edited.
    """

    def __init__(self, view: CanvasView, session: "Session", hover_on: Callable[[], bool]) -> None:
        self.view = view
        self.session = session
        self.hover_on = hover_on
        self.shown: dict[str, Any] = self._blank()
        self._display_rgb: tuple[int, np.ndarray | None] | None = None
        self._display_masks: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.opacity: float = DEFAULT_OPACITY
        self.highlight: int | None = None
        # the last current-mask update sent: {"key", "overlay_s", "bytes"} (the explain view's timings)
        self.last_update: dict[str, Any] | None = None

    @staticmethod
    def _blank() -> dict[str, Any]:
        return {"page": None, "objects": None, "current": None, "prompts": None, "opacity": None, "highlight": None}

    def render(self, rubber: tuple[float, float, float, float] | None = None) -> None:
        """Draw what differs from :attr:`shown` (``rubber``: a dashed box being dragged, canvas px)."""
        s = self.session
        with s.lock:
            snap, index = s.current, s.index
            shown = self.shown
            new_page = shown["page"] != index
            vp = s.viewport
            if new_page:
                shown.update(self._blank())
            objects_key = (snap.objects, snap.editing)
            old_objects = shown["objects"]
            draw_objects = old_objects is None or old_objects[0] is not snap.objects or old_objects[1] != snap.editing
            reopaque = shown["opacity"] != self.opacity
            draw_objects = draw_objects or reopaque or shown["highlight"] != self.highlight
            cur_key = self._current_key(snap, index, shown["current"])
            draw_current = cur_key != shown["current"] or (reopaque and cur_key is not None)
            draw_prompts = snap.prompts != shown["prompts"] or rubber is not None
            obj_overlay = cur_overlay = None
            if draw_objects:
                visible = [o for o in snap.objects if o.id != snap.editing]
                hi, dim = self._focus(snap, visible)
                obj_overlay = objects_overlay([self._display_mask(index, o, vp.display_hw) for o in visible], [o.color for o in visible],
                                              alpha=self.opacity, highlight=hi, dim=dim)
            overlay_s = None
            if draw_current and cur_key is not None:
                if cur_key[0] == "preview":
                    cur_overlay = mask_overlay(s.preview.mask, PREVIEW_COLOR, alpha=0.75 * self.opacity, light=PREVIEW_COLOR)
                else:
                    m = s.display_mask()
                    t0 = time.perf_counter()
                    cur_overlay = mask_overlay(m, self._current_fill(index, vp.display_hw, m), alpha=self.opacity)
                    overlay_s = time.perf_counter() - t0
            image = self._page_rgb(index, vp.display_hw) if new_page else None

            def draw() -> None:
                if new_page:
                    self.view.offset = vp.offset
                    self.view.clear_layers()
                    self.view.draw_image(image)
                if draw_objects:
                    self.view.draw_overlay(OBJECTS, obj_overlay)
                if draw_current:
                    self.view.draw_overlay(CURRENT, cur_overlay)
                if draw_prompts:
                    self._draw_prompts(snap.prompts, vp, rubber)

            if new_page or draw_objects or draw_current or draw_prompts:
                self.view.batch(draw)
                if overlay_s is not None:
                    png_s = (self.view.encode_s.get(CURRENT) or 0.0) if cur_overlay is not None else 0.0
                    self.last_update = {"key": cur_key, "overlay_s": overlay_s + png_s, "bytes": self.view.last_batch_bytes}
            shown.update(page=index, objects=objects_key, current=cur_key, prompts=snap.prompts, opacity=self.opacity,
                         highlight=self.highlight)

    def _current_key(self, snap: Any, index: int, old: Any) -> Any:
        if snap.prediction is not None:
            from ..session.core import selected_of

            return (snap.slot, selected_of(snap), self.session._threshold)
        if snap.slot is not None and not snap.slot.done:
            return old  # keep the old mask until the new one arrives
        p = self.session.preview
        if snap.slot is None and p is not None and p.index == index and self.hover_on():
            return ("preview", p.point)
        return None

    def picture(self, full_size: bool = False) -> np.ndarray:
        """The current image with what the layers show (objects, the current mask as far as it
        is answered, prompts) as one ``h x w x 3`` uint8 picture: at the display size, or at the
        image's size with full-resolution masks (``full_size``). Never waits for the model."""
        from ..session.core import selected_of

        s = self.session
        with s.lock:
            snap, index, image = s.current, s.index, s.image
            hw = image.shape[:2] if full_size else s.viewport.display_hw
            display_hw = s.viewport.display_hw
            visible = [o for o in snap.objects if o.id != snap.editing]
            masks = [o.mask if full_size else self._display_mask(index, o, hw) for o in visible]
            hi, dim = self._focus(snap, visible)
            pred = snap.prediction
            cur, color = None, CURRENT_COLOR
            if pred is not None:
                from ..session.threshold import cut_mask

                sel, t = selected_of(snap), s._threshold
                shown_mask = cut_mask(pred, sel, t, display_hw)
                color = self._current_fill(index, display_hw, shown_mask)  # as on the canvas, at any size
                cur = cut_mask(pred, sel, t) if full_size else shown_mask
            return compose_snapshot(image, masks, [o.color for o in visible], cur, current_color=color,
                                    points=snap.prompts.points, labels=snap.prompts.labels, box=snap.prompts.box,
                                    size_hw=hw, object_alpha=self.opacity, current_alpha=self.opacity,
                                    highlight=hi, dim_objects=dim)

    def redraw_all(self) -> None:
        """A browser (re)connected: its layers are blank, so paint everything again."""
        with self.session.lock:
            self.view.forget()
            self.shown = self._blank()
            self.render()

    def draw_rubber(self, rect: tuple[float, float, float, float] | None) -> None:
        """The prompt layer with a dashed rubber band ``rect`` (canvas px), or without one."""
        with self.session.lock:
            vp = self.session.viewport
            self.view.batch(lambda: self._draw_prompts(self.session.prompts, vp, rect))

    def _draw_prompts(self, prompts: Any, vp: Any, rubber: tuple[float, float, float, float] | None) -> None:
        pts = [(*vp.image_to_canvas(x, y), lab) for (x, y), lab in zip(prompts.points, prompts.labels)]
        box = None
        if prompts.box is not None:
            x0, y0, x1, y1 = prompts.box
            box = (*vp.image_to_canvas(x0, y0), *vp.image_to_canvas(x1, y1))
        self.view.draw_prompts(pts, box, rubber)

    def _focus(self, snap: Any, visible: list[ObjectRecord]) -> tuple[int | None, bool]:
        """(position in ``visible`` of the highlighted object or None, whether to dim the others)."""
        hi = next((k for k, o in enumerate(visible) if o.id == self.highlight), None)
        return hi, hi is not None or snap.editing is not None

    def _current_fill(self, index: int, display_hw: tuple[int, int], mask: np.ndarray | None) -> tuple[int, int, int]:
        """The current mask's fill colour: one that stands out from the image under it."""
        rgb = self._page_rgb(index, display_hw)
        if rgb is None or mask is None or rgb.shape[:2] != mask.shape:
            return CURRENT_COLOR
        return contrasting_color(rgb, mask)

    def _page_rgb(self, index: int, display_hw: tuple[int, int]) -> np.ndarray | None:
        """The image at display size (None when it cannot be read); the last one is kept."""
        if self._display_rgb is None or self._display_rgb[0] != index:
            try:
                rgb = resize_rgb(self.session.image, display_hw)
            except ValueError:  # ImageError: shown as a grey field, the status line says why
                rgb = None
            self._display_rgb = (index, rgb)
            self._display_masks.clear()
        return self._display_rgb[1]

    def _display_mask(self, index: int, obj: ObjectRecord, display_hw: tuple[int, int]) -> np.ndarray:
        key = (index, obj.id)
        hit = self._display_masks.get(key)
        if hit is None or hit[0] is not obj.mask:  # an edited object keeps its id, not its mask
            hit = self._display_masks[key] = (obj.mask, resize_mask(obj.mask, display_hw))
        return hit[1]
