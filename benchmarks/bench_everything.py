"""Benchmark: "segment everything" against the official ``SamAutomaticMaskGenerator``.

Run ``python -m benchmarks.bench_everything`` (vit_b: about half an hour on a shared 2-core
CPU, most of it the official generator) or ``--size tiny`` (a minute). Wrap full runs in
``flock /work/wt/bench.lock`` on the shared machine.

What is compared (one process, the two sides on two instances of the same seeded
``random_sam(model, seed=0)`` weights, one run per setting, official first):

* official: ``SamAutomaticMaskGenerator(sam, **params).generate(image)`` after the
  predictor's ``set_image(image)`` (the generator's own ``set_image`` / ``reset_image``
  are skipped, so the encode is not counted; ``crop_n_layers=0``);
* ours: ``Segmenter(sam).segment_everything(**params)`` after ``set_image(image)`` (fast
  mode), then the same with every proposal's full-size mask made (``proposals.masks``),
  since the official generator returns full-size masks and ours makes them on demand;
* agreement: the fraction of official masks that have a proposal of ours with IoU >= 0.95
  (target >= 98 %), and the lowest such IoU;
* peak memory: the highest resident size seen during each call (sampled every 5 ms)
  above the resident size before it.

Settings: SAM's defaults (random weights predict IoUs around 0, so nothing passes 0.88:
both sides decode every point and return nothing), and ``lowered`` thresholds picked for
the random weights so that both sides do real work (a few hundred masks through every
filter; box NMS off because the random weights' noise masks all have the whole image as
box). ``tiny_shapes`` on ``shapes_image`` scenes gives the figures for masks that are
objects (real NMS), plus an exact-mode parity check.

Options: ``--size full|tiny``, ``--threads N`` (torch intra-op threads for both sides,
default 1: on the shared 2-core machine two threads stall whenever another process holds
a core), ``--json PATH``, ``--no-append`` (else a dated section is appended to
``benchmarks/RESULTS.md``), ``--results PATH``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.bench import DEFAULT_RESULTS, machine_info, make_scene

__all__ = ["main", "run", "SIZES", "TARGET_RATIO", "AGREEMENT_IOU", "AGREEMENT_FRACTION"]

TARGET_RATIO = 0.25
AGREEMENT_IOU = 0.95
AGREEMENT_FRACTION = 0.98

SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "model": "vit_b",
        "image_hw": (768, 1024),
        "settings": {
            "defaults": {},
            # random vit_b: predicted IoUs ~0.02 +- 0.02, logits ~+-0.1, noise masks
            "lowered": dict(pred_iou_thresh=0.04, stability_score_offset=0.03, stability_score_thresh=0.6, box_nms_thresh=1.0),
        },
        "shapes_seeds": (0, 1, 2, 3),
        "shapes_points": 32,
    },
    "tiny": {
        "model": "tiny",
        "image_hw": (96, 128),
        "settings": {
            "defaults": dict(points_per_side=8),
            "lowered": dict(points_per_side=8, pred_iou_thresh=0.05, stability_score_offset=0.002, stability_score_thresh=0.4, box_nms_thresh=1.0),
        },
        "shapes_seeds": (0,),
        "shapes_points": 8,
    },
}
SHAPES_SETTINGS = {"defaults": {}, "lowered": dict(pred_iou_thresh=0.6, stability_score_thresh=0.8)}


def _log(msg: str) -> None:
    print(f"[bench-everything] {msg}", file=sys.stderr, flush=True)


class PeakRSS:
    """Highest resident set size seen while the block runs, above the size before it (MB)."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak_mb = 0.0

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "PeakRSS":
        self._base = self._peak = self._rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, self._rss())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._rss())
        self.peak_mb = (self._peak - self._base) / 2**20


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def agreement(records: list[dict], proposals: Any) -> dict[str, Any]:
    """For each official mask, the best IoU of one of our proposals (those from the same
    grid point first: the same prompt gives the same mask; all others only if needed)."""
    by_point: dict[tuple[float, float], list] = {}
    for p in proposals:
        by_point.setdefault((round(p.point[0], 3), round(p.point[1], 3)), []).append(p)
    best = []
    for r in records:
        m = r["segmentation"]
        x, y = r["point_coords"][0]
        same = by_point.get((round(x, 3), round(y, 3)), [])
        b = max((_iou(p.mask, m) for p in same), default=0.0)
        if b < AGREEMENT_IOU:
            b = max([b] + [_iou(p.mask, m) for p in proposals if p not in same])
        best.append(b)
    arr = np.asarray(best)
    return {
        "official_masks": len(records),
        "matched": int((arr >= AGREEMENT_IOU).sum()) if len(arr) else 0,
        "fraction": float((arr >= AGREEMENT_IOU).mean()) if len(arr) else None,
        "min_iou": float(arr.min()) if len(arr) else None,
        "median_iou": float(np.median(arr)) if len(arr) else None,
    }


def _official(predictor: Any, image: np.ndarray, params: dict) -> tuple[list[dict], float, float]:
    """``generate`` with the predictor's image already set: its set_image / reset_image are
    skipped for the call (crop_n_layers=0: the only crop is the image itself)."""
    from segment_anything import SamAutomaticMaskGenerator

    assert params.get("crop_n_layers", 0) == 0
    gen = SamAutomaticMaskGenerator(predictor.model, **params)
    gen.predictor = predictor
    predictor.set_image = lambda *a, **k: None
    predictor.reset_image = lambda: None
    try:
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            records = gen.generate(image)
            dt = time.perf_counter() - t0
    finally:
        del predictor.set_image, predictor.reset_image
    return records, dt, mem.peak_mb


def _ours(seg: Any, params: dict) -> tuple[Any, float, float, float]:
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        props = seg.segment_everything(progress=False, **params)
        dt = time.perf_counter() - t0
        t1 = time.perf_counter()
        props.masks  # every full-size mask, as the official generator returns them
        dt_masks = time.perf_counter() - t1
    return props, dt, dt_masks, mem.peak_mb


def _compare(name: str, predictor: Any, seg: Any, image: np.ndarray, params: dict) -> dict[str, Any]:
    load0 = os.getloadavg()[0]
    _log(f"{name}: official generate ({params or 'defaults'}) ...")
    records, t_off, mem_off = _official(predictor, image, params)
    _log(f"{name}: official {t_off:.1f} s, {len(records)} masks; ours ...")
    props, t_ours, t_masks, mem_ours = _ours(seg, params)
    _log(f"{name}: ours {t_ours:.1f} s (+{t_masks:.1f} s masks), {len(props)} proposals")
    return {
        "params": params,
        "official_s": t_off,
        "ours_s": t_ours,
        "ours_with_masks_s": t_ours + t_masks,
        "ratio": t_ours / t_off,
        "ratio_with_masks": (t_ours + t_masks) / t_off,
        "official_masks": len(records),
        "our_proposals": len(props),
        "masks_through_filters": props.stats.get("masks_kept_by_filters"),
        "agreement": agreement(records, props),
        "peak_mb_official": mem_off,
        "peak_mb_ours": mem_ours,
        "loadavg": [load0, os.getloadavg()[0]],
    }


def _shapes(size: dict) -> dict[str, Any]:
    """tiny_shapes on shapes_image scenes: speed, agreement, and exact-mode parity."""
    from segment_anything import SamAutomaticMaskGenerator, SamPredictor

    from sam_widget.data import shapes_image
    from sam_widget.engine.checkpoints import load_sam
    from sam_widget.engine.segmenter import Segmenter

    # fp32 weights on both sides: the official generator is the fp32 reference and exact mode
    # needs them (load_sam's "auto" would convert the encoder to bf16 on a bf16 machine)
    sam_a, sam_b = load_sam("tiny_shapes", precision="fp32"), load_sam("tiny_shapes", precision="fp32")
    out: dict[str, Any] = {}
    for name, extra in SHAPES_SETTINGS.items():
        params = dict(extra, points_per_side=size["shapes_points"])
        rows = []
        for seed in size["shapes_seeds"]:
            image, _ = shapes_image(seed)
            predictor = SamPredictor(sam_a)
            predictor.set_image(image)
            seg = Segmenter(sam_b)
            seg.set_image(image)
            row = _compare(f"tiny_shapes seed {seed} {name}", predictor, seg, image, params)
            exact = Segmenter(sam_b, exact=True)
            exact.set_image(image)
            mine = exact.segment_everything(progress=False, **params)
            ref = SamAutomaticMaskGenerator(sam_a, **params).generate(image)
            row["exact_parity"] = len(mine) == len(ref) and all(
                sum(np.array_equal(p.mask, r["segmentation"]) for p in mine) == 1 for r in ref
            )
            rows.append(row)
        agree = [r["agreement"] for r in rows]
        n = sum(a["official_masks"] for a in agree)
        out[name] = {
            "params": params,
            "rows": rows,
            "official_s": sum(r["official_s"] for r in rows),
            "ours_s": sum(r["ours_s"] for r in rows),
            "ours_with_masks_s": sum(r["ours_with_masks_s"] for r in rows),
            "official_masks": n,
            "our_proposals": sum(r["our_proposals"] for r in rows),
            "agreement_fraction": sum(a["matched"] for a in agree) / n if n else None,
            "min_iou": min((a["min_iou"] for a in agree if a["min_iou"] is not None), default=None),
            "exact_parity": all(r["exact_parity"] for r in rows),
        }
        out[name]["ratio"] = out[name]["ours_s"] / out[name]["official_s"]
        out[name]["ratio_with_masks"] = out[name]["ours_with_masks_s"] / out[name]["official_s"]
    return out


def run(size: str = "full", threads: int = 1) -> dict[str, Any]:
    import torch
    from segment_anything import SamPredictor

    from sam_widget.engine.models import TINY_TEST_CONFIG, random_sam
    from sam_widget.engine.segmenter import Segmenter

    torch.set_num_threads(threads)
    cfg = SIZES[size]
    t_start = time.perf_counter()
    res: dict[str, Any] = {"meta": {"size": size, "date": _dt.datetime.now().isoformat(timespec="seconds"), "machine": machine_info()}}
    config = TINY_TEST_CONFIG if cfg["model"] == "tiny" else cfg["model"]
    sam_a, sam_b = random_sam(config, seed=0), random_sam(config, seed=0)
    image = make_scene(*cfg["image_hw"])
    predictor = SamPredictor(sam_a)
    t0 = time.perf_counter()
    predictor.set_image(image)
    t_enc_off = time.perf_counter() - t0
    seg = Segmenter(sam_b)
    t0 = time.perf_counter()
    seg.set_image(image)
    t_enc_ours = time.perf_counter() - t0
    res["encode"] = {"official_s": t_enc_off, "ours_s": t_enc_ours, "image_hw": list(cfg["image_hw"])}
    _log(f"encode: official {t_enc_off:.1f} s, ours {t_enc_ours:.1f} s")
    calls = seg.stats["encoder_calls"]
    res["random"] = {name: _compare(name, predictor, seg, image, params) for name, params in cfg["settings"].items()}
    res["meta"]["encoder_calls_during_everything"] = seg.stats["encoder_calls"] - calls
    res["shapes"] = _shapes(cfg)
    res["meta"]["loadavg_end"] = list(os.getloadavg())
    res["meta"]["total_s"] = time.perf_counter() - t_start
    res["meta"]["model"] = cfg["model"]
    return res


# ====================================================================== report
def _pass(ok: bool | None) -> str:
    return "–" if ok is None else ("PASS" if ok else "MISS")


def format_section(res: dict) -> str:
    meta, m = res["meta"], res["meta"]["machine"]
    load = lambda v: "/".join(f"{x:.1f}" for x in v) if v else "?"  # noqa: E731
    lines = [
        f"## {meta['date']} — `python -m benchmarks.bench_everything --size {meta['size']}` (segment everything, {meta['model']} random weights seed 0)",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads, both sides); git {m.get('git') or '?'}",
        f"- Load average at start / end: {load(m.get('loadavg_start'))} / {load(meta.get('loadavg_end'))} (shared machine); total run {meta['total_s']:.0f} s",
        f"- Image {res['encode']['image_hw'][1]}x{res['encode']['image_hw'][0]} (`make_scene`); encode (not counted below): official {res['encode']['official_s']:.1f} s, ours {res['encode']['ours_s']:.1f} s; encoder calls during everything: {meta['encoder_calls_during_everything']}",
        "",
        "| setting | official generate (s) | ours (s) | ratio | ours + all full masks (s) | ratio | official masks / our proposals | agreement (IoU >= 0.95) | min IoU | peak extra RSS official / ours (MB) | load | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in res["random"].items():
        a = r["agreement"]
        frac = f"{a['fraction']:.1%} ({a['matched']}/{a['official_masks']})" if a["fraction"] is not None else "– (no masks)"
        mn = f"{a['min_iou']:.4f}" if a["min_iou"] is not None else "–"
        ok = r["ratio"] <= TARGET_RATIO and (a["fraction"] is None or a["fraction"] >= AGREEMENT_FRACTION)
        lines.append(
            f"| {meta['model']} {name} {json.dumps(r['params']) if r['params'] else ''} | {r['official_s']:.1f} | {r['ours_s']:.1f} | {r['ratio']:.3f}× | "
            f"{r['ours_with_masks_s']:.1f} | {r['ratio_with_masks']:.3f}× | {r['official_masks']} / {r['our_proposals']} | {frac} | {mn} | "
            f"{r['peak_mb_official']:.0f} / {r['peak_mb_ours']:.0f} | {load(r['loadavg'])} | ≤ {TARGET_RATIO}×, ≥ 98 %: {_pass(ok)} |"
        )
    for name, r in res["shapes"].items():
        frac = f"{r['agreement_fraction']:.1%}" if r["agreement_fraction"] is not None else "–"
        mn = f"{r['min_iou']:.4f}" if r["min_iou"] is not None else "–"
        peak_o = max(x["peak_mb_official"] for x in r["rows"])
        peak_u = max(x["peak_mb_ours"] for x in r["rows"])
        lines.append(
            f"| tiny_shapes {name} {json.dumps(r['params'])}, {len(r['rows'])} scenes | {r['official_s']:.1f} | {r['ours_s']:.1f} | {r['ratio']:.3f}× | "
            f"{r['ours_with_masks_s']:.1f} | {r['ratio_with_masks']:.3f}× | {r['official_masks']} / {r['our_proposals']} | {frac} | {mn} | "
            f"{peak_o:.0f} / {peak_u:.0f} | – | exact mode = official: {'yes' if r['exact_parity'] else 'NO'} |"
        )
    return "\n".join(lines) + "\n"


def bench_main(prog: str, description: str, sizes: dict[str, Any], run: Any, format_section: Any,
               argv: list[str] | None, threads_help: str = "torch intra-op threads (default 1)") -> int:
    """The command line both everything benchmarks share: ``--size``, ``--threads``, ``--json``,
    ``--no-append``, ``--results``; runs ``run(size, threads)``, prints ``format_section(res)`` and
    appends it to the results file."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--size", choices=sorted(sizes), default="full")
    p.add_argument("--threads", type=int, default=1, help=threads_help)
    p.add_argument("--json", dest="json_path", default=None, help="write all results as JSON here")
    p.add_argument("--no-append", action="store_true", help=f"do not append to {DEFAULT_RESULTS.name}")
    p.add_argument("--results", default=str(DEFAULT_RESULTS), help="Markdown file the dated section is appended to")
    a = p.parse_args(argv)
    if a.threads < 1:
        p.error("--threads must be at least 1")
    res = run(a.size, a.threads)
    text = format_section(res)
    print(text)
    if a.json_path:
        Path(a.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json_path).write_text(json.dumps(res, indent=2, default=str))
    if not a.no_append:
        with Path(a.results).open("a") as f:
            f.write("\n" + text)
        _log(f"appended to {a.results}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return bench_main("python -m benchmarks.bench_everything", __doc__.split("\n\n")[0], SIZES, run, format_section, argv,
                      "torch intra-op threads (both sides; default 1)")


if __name__ == "__main__":
    sys.exit(main())
