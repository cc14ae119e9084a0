"""``Session.explain()`` / ``SamWidget.explain()``: what the model did for the current prompts.

Everything the *Explain* panel shows, as data a notebook can plot without a browser: the
candidates with their predicted IoU and stability score, the chosen candidate's low-res
logits (with the prompts placed on them), the mask at the current threshold, what the last
prediction cost stage by stage, and the totals since the model was loaded. No torch and no
widgets here: the numbers come from the engine through the session's ``EngineLink``.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .._checks import as_size
from ..state import Prompts

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from .core import Session

__all__ = ["Explanation", "explain", "STAGES"]

STAGES = (
    "preprocessing",
    "image encoder",
    "prompt encoder + mask decoder",
    "upscaling",
    "overlay encoding",
    "bytes sent",
)
"""The rows of :attr:`Explanation.timings`, in order."""


@dataclass(frozen=True)
class Explanation:
    """A look inside one answer of the model (see :meth:`sam_widget.Session.explain`).

    Candidates (empty without prompts):
      candidates: ``pandas.DataFrame``, one row per candidate (index 1, 2, 3 as the widget
        numbers them), columns ``predicted_iou`` (the model's own guess of the mask's
        quality), ``stability`` (segment_anything's stability score: the IoU of the mask cut
        at ``mask_threshold + 1`` with the one cut at ``mask_threshold - 1``, on image-size
        logits, as the automatic mask generator computes it), ``area`` (pixels, at the
        model's threshold) and ``chosen``.
      scores, stability: ``(C,)`` float32 arrays of the same numbers.
      masks: ``(C, h, w)`` bool candidates at the model's threshold, at ``size`` (default
        the image's ``(H, W)``).
      chosen: index (0-based) of the chosen candidate, or None.

    The chosen candidate:
      logits: ``(lh, lw)`` float32 low-res logits (256 x 256 for the official models, 64 x
        64 for ``tiny_shapes``), or None. Only the top-left ``valid_hw`` part covers the
        image (the model's input is padded to a square).
      logits_range: ``(min, max)`` of ``logits`` (the thresholds :attr:`Session.threshold`
        accepts), or None.
      threshold / mask_threshold: the threshold the mask is cut at, and the model's own (0.0).
      mask: ``(h, w)`` bool, the chosen candidate at ``threshold`` (what the canvas shows).
      mask_input: ``(lh, lw)`` float32 logits this answer refined (the previous step's kept
        candidate), or None when it was answered from the prompts alone.
      prompts: the prompts (image pixels); markers: ``[(x, y, label), ...]`` the points in
        the logits' ``(column, row)`` coordinates (pixel centres at integers, as
        ``matplotlib.pyplot.imshow`` draws them); box_lr: the box there, XYXY, or None.

    Costs:
      timings: ``pandas.DataFrame`` indexed by :data:`STAGES`, columns ``seconds``,
        ``bytes`` (only for "bytes sent"), ``note`` (a few words: "ran, once per image",
        "memory cache hit", "3 candidates") and ``detail`` (a sentence); NaN where a stage
        did not happen or is not known (a session without a view sends nothing).
      embedding: how this image's embedding was had when it was first set: ``source``
        ("encoder", "memory", "disk", "prefetch"), ``seconds`` (all of set_image), and for the
        encoder ``preprocess_s`` and ``encoder_s``; None before that. (``timings`` shows this
        too unless the last prediction had to set the image again: a shared segmenter.)
      totals: counts since the model was loaded: ``encoder_calls``, ``memory_hits``,
        ``disk_hits``, ``decoder_calls`` (every prediction, previews included), and this
        session's ``predictions``.
    """

    candidates: "pd.DataFrame"
    scores: np.ndarray = field(repr=False)
    stability: np.ndarray = field(repr=False)
    masks: np.ndarray = field(repr=False)
    chosen: int | None
    logits: np.ndarray | None = field(repr=False)
    logits_range: tuple[float, float] | None
    threshold: float
    mask_threshold: float
    mask: np.ndarray | None = field(repr=False)
    mask_input: np.ndarray | None = field(repr=False)
    prompts: Prompts
    markers: list[tuple[float, float, int]]
    box_lr: tuple[float, float, float, float] | None
    valid_hw: tuple[float, float] | None
    image_hw: tuple[int, int]
    timings: "pd.DataFrame"
    totals: dict[str, int]
    embedding: dict[str, Any] | None = None

    @property
    def bytes_sent(self) -> int | None:
        """Bytes of the message that drew the last mask on the canvas (None without a view)."""
        b = self.timings.loc["bytes sent", "bytes"]
        return None if b is None or (isinstance(b, float) and math.isnan(b)) else int(b)

    def __repr__(self) -> str:
        n = len(self.scores)
        if n == 0:
            return f"Explanation(no prompts; totals {self.totals})"
        lg = "no logits" if self.logits is None else (
            f"logits {self.logits.shape[1]}x{self.logits.shape[0]} in [{self.logits_range[0]:.3g}, {self.logits_range[1]:.3g}]")
        return (f"Explanation({n} candidate(s), chosen {self.chosen + 1}, threshold {self.threshold:g}, {lg}; "
                f"predicted IoU {[round(float(v), 3) for v in self.scores]}, stability {[round(float(v), 3) for v in self.stability]})")

    def _repr_html_(self) -> str:
        return (
            f"<b>candidates</b> (threshold {self.threshold:g}){self.candidates.to_html(float_format='%.3f')}"
            f"<b>last prediction</b>{self.timings.to_html(float_format='%.4f', na_rep='–')}"
            f"<b>since the model was loaded</b>: {', '.join(f'{k} {v}' for k, v in self.totals.items())}"
        )


def explain(session: "Session", size: tuple[int, int] | None = None, view: dict[str, Any] | None = None) -> Explanation:
    """The :class:`Explanation` of ``session``'s current answer; ``view``: what the widget's
    painter recorded of its last current-mask update (``{"key", "overlay_s", "bytes"}``)."""
    import pandas as pd

    from .core import selected_of

    s = session
    snap = s.current
    if snap.slot is not None:
        s._wait_slot(snap.slot)
    H, W = s.image.shape[:2]
    hw = (H, W) if size is None else as_size(size, "size")
    link = s._engine
    slot, pred = snap.slot, snap.prediction
    mask_threshold = link.mask_threshold
    threshold = s.threshold
    prompts = snap.prompts
    if pred is None:
        scores = stability = np.zeros(0, np.float32)
        area = np.zeros(0, np.int64)
        masks = np.zeros((0, *hw), bool)
        chosen = logits = logits_range = mask = mask_input = None
        markers, box_lr, valid = [], None, None
    else:
        from .threshold import cut_mask

        chosen = selected_of(snap)
        scores = np.asarray(pred.scores, np.float32)
        masks = np.stack([pred.mask_at_size(i, hw) for i in range(len(pred))]) if len(pred) else np.zeros((0, *hw), bool)
        mask = cut_mask(pred, chosen, s._threshold, hw)
        all_logits = getattr(pred, "logits", None)
        if all_logits is not None and link.loaded:
            stability, area = _cached_stats(link, pred, all_logits, (H, W))
            logits = np.asarray(all_logits[chosen], np.float32)
            logits_range = (float(logits.min()), float(logits.max()))
            geo = link.geometry((H, W))
            valid = geo.valid_hw
            markers = [(*geo.to_low_res(x, y), int(lab)) for (x, y), lab in zip(prompts.points, prompts.labels)]
            box_lr = None
            if prompts.box is not None:
                x0, y0, x1, y1 = prompts.box
                box_lr = (*geo.to_low_res(x0, y0), *geo.to_low_res(x1, y1))
        else:  # a mask brought in, being edited: no logits yet
            stability = np.full(len(scores), np.nan, np.float32)
            area = np.array([int(pred.mask(i).sum()) for i in range(len(scores))], np.int64)
            logits = logits_range = valid = box_lr = None
            markers = []
        mi = slot.mask_input
        mask_input = None if mi is None else np.asarray(mi, np.float32).reshape(mi.shape[-2:])
    candidates = pd.DataFrame(
        {
            "predicted_iou": scores.astype(float),
            "stability": np.asarray(stability, float),
            "area": np.asarray(area, np.int64),
            "chosen": [i == chosen for i in range(len(scores))],
        },
        index=pd.RangeIndex(1, len(scores) + 1, name="candidate"),
    )
    page = s._page(s.index)
    return Explanation(
        candidates=candidates,
        scores=scores,
        stability=np.asarray(stability, np.float32),
        masks=masks,
        chosen=chosen,
        logits=logits,
        logits_range=logits_range,
        threshold=float(threshold),
        mask_threshold=float(mask_threshold),
        mask=mask,
        mask_input=mask_input,
        prompts=prompts,
        markers=markers,
        box_lr=box_lr,
        valid_hw=valid,
        image_hw=(H, W),
        timings=_timings(slot, page, view, s),
        totals=_totals(s),
        embedding=None if getattr(page, "embedding", None) is None else dict(page.embedding),
    )


_STATS: "weakref.WeakKeyDictionary[Any, tuple[Any, tuple[np.ndarray, np.ndarray]]]" = weakref.WeakKeyDictionary()
_STATS_LOCK = threading.Lock()


def _cached_stats(link: Any, pred: Any, logits: np.ndarray, image_hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Stability and area of a prediction's candidates, computed once per prediction (they do
    not depend on the threshold being looked at; at 12 megapixels they take about a second)."""
    with _STATS_LOCK:
        hit = _STATS.get(pred)
    if hit is None or hit[0] is not logits:
        stats = link.candidate_stats(logits, image_hw)
        hit = (logits, stats)
        with _STATS_LOCK:
            _STATS[pred] = hit
    return hit[1]


def _totals(s: "Session") -> dict[str, int]:
    st = s._engine.stats
    return {
        "encoder_calls": int(st.get("encoder_calls", 0)),
        "memory_hits": int(st.get("memory_hits", 0)),
        "disk_hits": int(st.get("disk_hits", 0)),
        "decoder_calls": int(st.get("decoder_calls", 0)),
        "predictions": int(s.stats.get("predictions", 0)),
    }


_NOTES = {"memory": "memory cache hit", "disk": "disk cache hit", "prefetch": "prefetched"}
_SOURCES = {
    "encoder": "encoder ran",
    "memory": "memory cache hit",
    "disk": "disk cache hit",
    "prefetch": "computed in the background while another image was shown (prefetch)",
}


def _timings(slot: Any, page: Any, view: dict[str, Any] | None, s: "Session") -> "pd.DataFrame":
    import pandas as pd

    nan = float("nan")
    rows: dict[str, tuple[float, float, str, str]] = {}  # stage -> (seconds, bytes, note, detail)
    t = slot.timings if slot is not None else {}
    emb = t.get("embedding")
    when = "for this prediction"
    if emb is None:  # the image was the segmenter's already: how it got there
        emb, when = getattr(page, "embedding", None), "when this image was set (once)"
    if emb is None:
        rows["preprocessing"] = (nan, nan, "not known", "not known")
        rows["image encoder"] = (nan, nan, "not known", "not known")
    elif emb["source"] == "encoder":
        once = "once per image" if when.startswith("when") else "this prediction"
        rows["preprocessing"] = (emb["preprocess_s"], nan, once, f"resize to the model's input side + normalise, {when}")
        rows["image encoder"] = (emb["encoder_s"], nan, f"ran, {once}", f"encoder ran, {when}")
    else:
        rows["preprocessing"] = (0.0, nan, "cached", "none: the embedding was cached")
        rows["image encoder"] = (emb["seconds"], nan, _NOTES[emb["source"]], f"{_SOURCES[emb['source']]}, {when}")
    if slot is None or slot.prediction is None:
        rows["prompt encoder + mask decoder"] = (nan, nan, "no prompts", "no prompts")
        rows["upscaling"] = (nan, nan, "no prompts", "no prompts")
    elif "decoder_s" not in t:
        rows["prompt encoder + mask decoder"] = (0.0, nan, "kept mask", "none: an object's kept mask, being edited")
        rows["upscaling"] = (t.get("display_s", nan), nan, "display", "kept mask resampled for display")
    else:
        n = len(slot.prediction)
        refined = slot.mask_input is not None
        how = "1 mask, refining the previous logits (mask_input)" if refined else f"{n} candidates from the prompts"
        note = "1 mask, refined" if refined else f"{n} candidates"
        rows["prompt encoder + mask decoder"] = (t.get("decoder_s") or 0.0, nan, note, how)
        exact = bool(getattr(s.segmenter, "exact", False))
        engine_up = (t.get("upscale_s") or 0.0) if exact else 0.0
        disp = t.get("display_s")
        parts = []
        if exact:
            parts.append(f"full-size masks {engine_up * 1000:.1f} ms (exact mode)")
        if disp is not None:
            h, w = t.get("display_hw", (0, 0))
            parts.append(f"display mask {w}×{h} {disp * 1000:.1f} ms")
        else:
            parts.append("no display (full-size masks are made when asked for)")
        note = ("full size + " if exact else "") + (f"display {t.get('display_hw', (0, 0))[1]}×{t.get('display_hw', (0, 0))[0]}" if disp is not None else "no display")
        rows["upscaling"] = (engine_up + (disp or 0.0), nan, note, "; ".join(parts))
    if view is not None and slot is not None and view.get("key") is not None and view["key"][0] is slot:
        rows["overlay encoding"] = (view["overlay_s"], nan, "PNG patch", "mask -> PNG patch of its bounding box")
        b = view.get("bytes")
        rows["bytes sent"] = (nan, nan if b is None else float(b), "to the browser", "the canvas message that drew it (JSON + PNG)")
    else:
        why = "no view (headless session)" if view is None else "not drawn yet"
        rows["overlay encoding"] = (nan, nan, why.split(" (")[0], why)
        rows["bytes sent"] = (nan, nan, why.split(" (")[0], why)
    df = pd.DataFrame.from_dict(rows, orient="index", columns=["seconds", "bytes", "note", "detail"])
    df.index.name = "stage"
    return df.reindex(list(STAGES))
