"""Benchmark: "segment everything" in the widget -- how soon the first proposals are on the page.

Run ``python -m benchmarks.bench_everything_widget`` (vit_b random weights and ``tiny_shapes``:
a few minutes on a CPU) or ``--size tiny`` (seconds). Wrap full runs in
``flock /work/wt/bench.lock`` on the shared machine.

For each model -- ``tiny_shapes`` on a ``shapes_image`` scene, and vit_b with seeded random
weights (``random_sam("vit_b", seed=0)``) on ``make_scene`` with the thresholds lowered so
that proposals exist (``bench_everything``'s "lowered" setting; SAM's defaults keep nothing
of random weights) -- one process, one run per model:

* a ``SamWidget`` on the image whose canvas messages are recorded (``RecordingComm``, the
  comm of ipycanvas' canvas manager: the timestamps are when a message is handed to the
  comm, i.e. when the kernel sends it to the browser); the embedding is computed first;
* t0: the *Everything* button's front-end click message is delivered (``frontend_click``:
  the button widget's own ``_handle_msg``), the real message path of a click in the page;
* **first proposals drawn**: the first message putting an image on the proposals layer;
  **all drawn**: the last one of the run; the run's end; overlays and bytes sent;
* the click path during a run: a box dragged (ipyevents messages, ``EventInjector``) once
  the first proposals are drawn, until its mask is sent (current-mask layer), against the
  same drag after the run;
* the engine alone (``Segmenter.segment_everything``, no widget, same parameters) for the
  cost of drawing;
* peak memory: the highest resident size during the widget's run above the size before it
  (sampled every 5 ms), and the process' peak (VmHWM).

Options: ``--size full|tiny``, ``--threads N`` (torch intra-op threads, default 1 as in
``bench_everything``), ``--json PATH``, ``--no-append`` (else a dated section is appended to
``benchmarks/RESULTS.md``), ``--results PATH``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
from typing import Any

import numpy as np

from benchmarks.bench import _peak_rss_mb, machine_info, make_scene
from benchmarks.bench_everything import SHAPES_SETTINGS, bench_main, SIZES as EVERYTHING_SIZES, PeakRSS

__all__ = ["main", "run", "SIZES", "measure"]

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "cases": [
            {"name": "tiny_shapes", "model": "tiny_shapes", "image": ("shapes", 1, (768, 1024)),
             "params": dict(SHAPES_SETTINGS["lowered"], points_per_side=32)},
            {"name": "vit_b (random weights)", "model": "vit_b", "image": ("scene", 0, (768, 1024)),
             "params": dict(EVERYTHING_SIZES["full"]["settings"]["lowered"])},
        ],
        "display_size": 800,
        "timeout": 1800.0,
    },
    "tiny": {
        "cases": [
            {"name": "tiny_shapes", "model": "tiny_shapes", "image": ("shapes", 1, (256, 256)),
             "params": dict(SHAPES_SETTINGS["lowered"], points_per_side=8, points_per_batch=16)},
            {"name": "tiny (random weights)", "model": "tiny", "image": ("scene", 0, (96, 128)),
             "params": dict(EVERYTHING_SIZES["tiny"]["settings"]["lowered"], points_per_batch=16)},
        ],
        "display_size": 200,
        "timeout": 300.0,
    },
}


def _log(msg: str) -> None:
    print(f"[bench-everything-widget] {msg}", file=sys.stderr, flush=True)


def _sam(model: str) -> Any:
    from sam_widget.engine.checkpoints import load_sam
    from sam_widget.engine.models import TINY_TEST_CONFIG, random_sam

    if model == "tiny_shapes":
        return load_sam("tiny_shapes")
    return random_sam(TINY_TEST_CONFIG if model == "tiny" else model, seed=0)


def _image(spec: tuple) -> np.ndarray:
    kind, seed, (h, w) = spec
    if kind == "shapes":
        from sam_widget.data import shapes_image

        return shapes_image(seed, size=(h, w))[0]
    return make_scene(h, w, seed=seed)


def measure(sam: Any, image: np.ndarray, params: dict, display_size: int, timeout: float) -> dict[str, Any]:
    """One widget run (see the module docstring); the figures as a dict (seconds, bytes, MB)."""
    from sam_widget.engine.segmenter import Segmenter
    from sam_widget.testing import EventInjector, RecordingComm, frontend_click
    from sam_widget.ui.canvas_view import CURRENT, PROPOSALS
    from sam_widget.ui.widget import SamWidget

    H, W = image.shape[:2]
    rec = RecordingComm.install()
    w = None
    try:
        seg = Segmenter(sam)
        t = time.perf_counter()
        w = SamWidget(image, segmenter=seg, display_size=display_size)
        w.wait_ready(timeout)
        encode_s = time.perf_counter() - t
        w.everything_params = params
        proposals_layer, current_layer = w._view.canvas[PROPOSALS], w._view.canvas[CURRENT]
        inj = EventInjector(w, round_css=False)
        box = (W // 4, H // 4, W // 2, H // 2)
        a, b = inj.css_of(box[0], box[1]), inj.css_of(box[2], box[3])

        def drag() -> dict[str, Any]:
            start = rec.mark()
            t0 = time.perf_counter()
            inj.drag(*a, *b)
            msg = rec.wait_for(lambda m: m.touches(current_layer, "putImageData"), timeout, start)
            return {"latency_s": msg.t - t0}

        load0 = os.getloadavg()[0]
        calls = seg.stats["encoder_calls"]
        start = rec.mark()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            frontend_click(w._everything_panel.run_btn)
            handled_s = time.perf_counter() - t0
            first = rec.wait_for(lambda m: m.touches(proposals_layer, "putImageData"), timeout, start)
            run = w.everything_run
            during = drag()
            during["run_still_going"] = run.running
            props = run.wait(timeout)
        finished_s = run.finished_s - t0
        puts = [m for m in rec.since(start) if m.touches(proposals_layer, "putImageData")]  # (nothing else draws there)
        w.clear()
        w.wait_idle(timeout)
        idle = drag()
        t = time.perf_counter()
        alone = seg.segment_everything(progress=False, **params)
        engine_s = time.perf_counter() - t
        assert len(alone) == len(props)
        return {
            "image_hw": [H, W],
            "display_hw": list(w._display_hw),
            "params": params,
            "encode_s": encode_s,
            "button_handled_s": handled_s,
            "first_proposals_drawn_s": first.t - t0,
            "first_batch_s": (run.first_batch_s - t0) if run.first_batch_s is not None else None,
            "all_drawn_s": (puts[-1].t - t0) if puts else None,
            "run_s": finished_s,
            "engine_alone_s": engine_s,
            "batches": run.batches,
            "points_per_batch": props.params["points_per_batch"],
            "proposals": len(props),
            "overlays_sent": len(puts),
            "overlay_bytes": sum(m.nbytes for m in puts),
            "drag_during_run_s": during["latency_s"],
            "drag_during_run_while_running": during["run_still_going"],
            "drag_idle_s": idle["latency_s"],
            "peak_extra_mb": mem.peak_mb,
            "encoder_calls_during_run": seg.stats["encoder_calls"] - calls,
            "loadavg": [load0, os.getloadavg()[0]],
        }
    finally:
        if w is not None:
            w.close()
        rec.uninstall()


def run(size: str = "full", threads: int = 1) -> dict[str, Any]:
    import torch

    torch.set_num_threads(threads)
    cfg = SIZES[size]
    t_start = time.perf_counter()
    res: dict[str, Any] = {
        "meta": {"size": size, "date": _dt.datetime.now().isoformat(timespec="seconds"), "machine": machine_info()},
        "cases": {},
    }
    for case in cfg["cases"]:
        _log(f"{case['name']}: {case['params']} ...")
        r = measure(_sam(case["model"]), _image(case["image"]), case["params"], cfg["display_size"], cfg["timeout"])
        res["cases"][case["name"]] = r
        _log(
            f"{case['name']}: first proposals drawn {r['first_proposals_drawn_s']:.2f} s, run {r['run_s']:.1f} s "
            f"({r['proposals']} proposals, {r['batches']} batches), drag during run {1000 * r['drag_during_run_s']:.0f} ms "
            f"vs idle {1000 * r['drag_idle_s']:.0f} ms, peak +{r['peak_extra_mb']:.0f} MB"
        )
    res["meta"]["loadavg_end"] = list(os.getloadavg())
    res["meta"]["total_s"] = time.perf_counter() - t_start
    res["meta"]["peak_rss_mb"] = _peak_rss_mb()
    return res


def format_section(res: dict) -> str:
    meta, m = res["meta"], res["meta"]["machine"]
    load = lambda v: "/".join(f"{x:.1f}" for x in v) if v else "?"  # noqa: E731
    lines = [
        f"## {meta['date']} — `python -m benchmarks.bench_everything_widget --size {meta['size']}` (segment everything in the widget)",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads); git {m.get('git') or '?'}",
        f"- Load average at start / end: {load(m.get('loadavg_start'))} / {load(meta.get('loadavg_end'))} (shared machine); "
        f"total {meta['total_s']:.0f} s; process peak RSS {meta['peak_rss_mb']:.0f} MB",
        "- t0: the *Everything* button's click message delivered to the widget; times are when canvas messages are "
        "handed to the comm (RecordingComm); one run each, after the embedding was computed",
        "",
        "| model, image, parameters | button handled | first proposals drawn | all drawn | run ends | engine alone | "
        "proposals / batches / overlays (bytes) | box drag -> mask during the run / idle | peak extra RSS | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["cases"].items():
        during = f"{1000 * r['drag_during_run_s']:.0f} ms" + ("" if r["drag_during_run_while_running"] else " (run had ended)")
        all_drawn = f"{r['all_drawn_s']:.2f} s" if r["all_drawn_s"] is not None else "–"
        lines.append(
            f"| {name}, {r['image_hw'][1]}x{r['image_hw'][0]} shown {r['display_hw'][1]}x{r['display_hw'][0]}, {json.dumps(r['params'])} | "
            f"{1000 * r['button_handled_s']:.0f} ms | **{r['first_proposals_drawn_s']:.2f} s** | {all_drawn} | {r['run_s']:.2f} s | "
            f"{r['engine_alone_s']:.2f} s | {r['proposals']} / {r['batches']} / {r['overlays_sent']} ({r['overlay_bytes'] / 1024:.0f} KB) | "
            f"{during} / {1000 * r['drag_idle_s']:.0f} ms | {r['peak_extra_mb']:.0f} MB | {load(r['loadavg'])} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return bench_main("python -m benchmarks.bench_everything_widget", __doc__.split("\n\n")[0], SIZES, run, format_section,
                      argv)


if __name__ == "__main__":
    sys.exit(main())
