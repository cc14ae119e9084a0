#!/usr/bin/env python
"""bf16 against fp32: encode time, mask agreement, tiny_shapes quality, memory, decoder.

    python benchmarks/precision.py                    # everything (vit_b: ~10 min on 2 cores)
    python benchmarks/precision.py --sections agreement,tiny
    python benchmarks/precision.py --size tiny        # the small test model, seconds
    flock /work/wt/bench.lock python benchmarks/precision.py --append   # + benchmarks/RESULTS.md

Sections (``--sections``, comma-separated; JSON keys of the result):

* ``encode``    -- one process, interleaved reps on a new 1024x768 image each time (no cache
  hit): the official ``SamPredictor.set_image`` (fp32) and ``Segmenter.set_image`` with
  ``precision="fp32"`` and ``precision="bf16"`` (the model converted once, as ``load_sam``
  does), plus plain ``torch.autocast("cpu", bfloat16)`` around the official encoder for
  reference; wall and CPU seconds, medians.
* ``agreement`` -- masks of the bf16 Segmenter against ``exact=True`` (fp32, SamPredictor's
  numbers) on the same seeded weights: >= 100 prompts (single points, boxes, points + box),
  IoU of every candidate by index; median / min / 5th percentile.
* ``tiny``      -- ``benchmarks.evaluate.evaluate_tiny`` on ``tiny_shapes`` in fp32 and bf16
  (click / box / three clicks, 100 held-out images).
* ``memory``    -- fresh processes: model ready (fp32 / bf16 converted at load), then one
  encode; resident memory after loading and the peak during the encode (``VmHWM`` reset
  through ``/proc/self/clear_refs`` when allowed), plus the process's overall peak.
* ``decoder``   -- ``Segmenter.predict`` latency (1 click, 3 masks, display masks at 800x450).
* ``matmul``    -- one encoder-sized linear (4096 x 768 -> 3072) in fp32, bf16 and int8
  (``torch.ao.quantization.quantize_dynamic``, VNNI): is int8 worth trying?

Both sides use ``random_sam(model, seed=0)`` as separate instances. Wrap heavy runs in
``flock /work/wt/bench.lock`` on the shared machine; the load average is recorded.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.bench import machine_info, make_scene  # noqa: E402

SIZES = {
    "full": {"model": "vit_b", "hw": (768, 1024), "reps": 3, "prompts": 120, "display": (450, 800)},
    "tiny": {"model": "tiny", "hw": (96, 128), "reps": 2, "prompts": 30, "display": (60, 80)},
}
SECTIONS = ("matmul", "encode", "agreement", "tiny", "memory", "decoder")


def _log(msg: str) -> None:
    print(f"[precision {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _model(name: str):
    from sam_widget.engine.models import TINY_TEST_CONFIG, random_sam

    return random_sam(TINY_TEST_CONFIG if name == "tiny" else name, seed=0)


def _bf16_model(name: str):
    """The model as ``load_sam(precision="bf16")`` leaves it: encoder linears converted once."""
    import warnings

    from sam_widget.engine.fast import accelerate

    sam = _model(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a CPU without native bf16: measured anyway
        accelerate(sam, precision="bf16")
    return sam


def _load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _median(xs):
    return float(statistics.median(xs)) if xs else None


# ---------------------------------------------------------------------------- matmul
def matmul_section(reps: int = 7) -> dict[str, Any]:
    import torch

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 768, generator=g)
    lin = torch.nn.Linear(768, 3072)
    flops = 2 * 4096 * 768 * 3072
    out: dict[str, Any] = {"shape": [4096, 768, 3072], "threads": torch.get_num_threads()}
    variants: dict[str, Any] = {"fp32": (lin, x)}
    import copy

    variants["bf16"] = (copy.deepcopy(lin).to(torch.bfloat16), x.to(torch.bfloat16))
    try:
        from torch.ao.quantization import quantize_dynamic

        q = quantize_dynamic(torch.nn.Sequential(lin), {torch.nn.Linear}, dtype=torch.qint8)
        variants["int8_dynamic"] = (q, x)
    except Exception as exc:  # noqa: BLE001 - a build without quantized engines
        out["int8_dynamic"] = {"skipped": f"{type(exc).__name__}: {exc}"}
    with torch.no_grad():
        ref = lin(x)
        for name, (mod, inp) in variants.items():
            mod(inp)
            ts = []
            for _ in range(reps):
                t = time.perf_counter()
                y = mod(inp)
                ts.append(time.perf_counter() - t)
            err = ((y.float() - ref).norm() / ref.norm()).item()
            out[name] = {"median_ms": 1000 * _median(ts), "gflops": flops / _median(ts) / 1e9, "rel_error": err}
    _log(f"matmul: {out}")
    return out


# ---------------------------------------------------------------------------- encode
def encode_section(cfg: dict, reps: int) -> dict[str, Any]:
    import torch
    from segment_anything import SamPredictor

    from sam_widget.engine.segmenter import Segmenter

    name, (h, w) = cfg["model"], cfg["hw"]
    official = SamPredictor(_model(name))
    autocast_pred = SamPredictor(_model(name))
    fp32 = Segmenter(_model(name), precision="fp32")
    bf16 = Segmenter(_bf16_model(name), precision="bf16")

    def run_autocast(img):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast_pred.set_image(img)

    sides = {
        "official_fp32": official.set_image,
        "autocast_official": run_autocast,
        "segmenter_fp32": fp32.set_image,
        "segmenter_bf16": bf16.set_image,
    }
    warm = make_scene(h, w, seed=499)
    for f in sides.values():  # first calls: one-off costs out of the way
        f(warm)
    wall: dict[str, list[float]] = {k: [] for k in sides}
    cpu: dict[str, list[float]] = {k: [] for k in sides}
    names = list(sides)
    for r in range(reps):
        img = make_scene(h, w, seed=500 + r)
        order = names[r % len(names):] + names[: r % len(names)]
        for k in order:
            t, c = time.perf_counter(), time.process_time()
            sides[k](img)
            wall[k].append(time.perf_counter() - t)
            cpu[k].append(time.process_time() - c)
        _log(f"encode rep {r}: " + ", ".join(f"{k} {wall[k][-1]:.2f} s" for k in names) + f" (load {_load()})")
    base_w, base_c = _median(wall["official_fp32"]), _median(cpu["official_fp32"])
    out: dict[str, Any] = {"image_hw": [h, w], "reps": reps, "threads": torch.get_num_threads(), "sides": {}}
    for k in names:
        mw, mc = _median(wall[k]), _median(cpu[k])
        out["sides"][k] = {
            "wall_s": wall[k],
            "cpu_s": cpu[k],
            "median_wall_s": mw,
            "median_cpu_s": mc,
            "ratio_wall": mw / base_w,
            "ratio_cpu": mc / base_c,
        }
    out["encoder_only_bf16_s"] = bf16.stats.get("last_encode_s")
    return out


# ---------------------------------------------------------------------------- agreement
def _prompts(n: int, H: int, W: int, seed: int = 0) -> list[dict[str, Any]]:
    """n prompts: 40 % single points, 30 % boxes, 30 % a box with 1-2 points inside it."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        kind = ("point", "box", "points_box")[0 if i < 0.4 * n else (1 if i < 0.7 * n else 2)]
        if kind == "point":
            out.append({"points": [[rng.uniform(0, W), rng.uniform(0, H)]], "labels": [1], "multimask": True})
            continue
        bw, bh = rng.uniform(0.1, 0.7) * W, rng.uniform(0.1, 0.7) * H
        x0, y0 = rng.uniform(0, W - bw), rng.uniform(0, H - bh)
        box = [x0, y0, x0 + bw, y0 + bh]
        if kind == "box":
            out.append({"box": box, "multimask": False})
        else:
            k = int(rng.integers(1, 3))
            pts = [[rng.uniform(x0, x0 + bw), rng.uniform(y0, y0 + bh)] for _ in range(k)]
            out.append({"box": box, "points": pts, "labels": [1] + [0] * (k - 1), "multimask": False})
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def agreement(exact_seg: Any, other_seg: Any, images: list[np.ndarray], n_prompts: int) -> dict[str, Any]:
    """IoU of ``other_seg``'s masks against ``exact_seg``'s over ``n_prompts`` prompts per image."""
    ious: dict[str, list[float]] = {"point": [], "box": [], "points_box": []}
    score_diff: list[float] = []
    for img in images:
        H, W = img.shape[:2]
        exact_seg.set_image(img)
        other_seg.set_image(img)
        for p in _prompts(n_prompts, H, W, seed=H * 7 + W):
            kind = "point" if "box" not in p else ("box" if "points" not in p else "points_box")
            a, b = exact_seg.predict(**p), other_seg.predict(**p)
            for i in range(len(a)):
                ious[kind].append(_iou(a.masks[i], b.masks[i]))
            score_diff.append(float(np.abs(a.scores - b.scores).max()))
    every = [x for v in ious.values() for x in v]
    arr = np.array(every)
    return {
        "prompts": n_prompts * len(images),
        "masks_compared": len(every),
        "median_iou": float(np.median(arr)),
        "min_iou": float(arr.min()),
        "p5_iou": float(np.percentile(arr, 5)),
        "mean_iou": float(arr.mean()),
        "by_kind": {k: {"n": len(v), "median": float(np.median(v)), "min": float(np.min(v))} for k, v in ious.items() if v},
        "max_score_diff": float(max(score_diff)),
    }


def agreement_section(cfg: dict) -> dict[str, Any]:
    from sam_widget.engine.segmenter import Segmenter

    name, (h, w) = cfg["model"], cfg["hw"]
    exact = Segmenter(_model(name), exact=True)
    bf16 = Segmenter(_bf16_model(name), precision="bf16")
    fp32 = Segmenter(_model(name), precision="fp32")
    img = make_scene(h, w, seed=7)
    t = time.perf_counter()
    out = {"bf16_vs_exact": agreement(exact, bf16, [img], cfg["prompts"])}
    _log(f"agreement bf16 vs exact: {out['bf16_vs_exact']['median_iou']:.4f} median, {out['bf16_vs_exact']['min_iou']:.4f} min ({time.perf_counter() - t:.0f} s)")
    out["fp32_fast_vs_exact"] = agreement(exact, fp32, [img], cfg["prompts"])
    _log(f"agreement fp32 fast vs exact: {out['fp32_fast_vs_exact']['median_iou']:.4f} median, {out['fp32_fast_vs_exact']['min_iou']:.4f} min")
    out["image_hw"] = [h, w]
    return out


# ---------------------------------------------------------------------------- tiny_shapes
def tiny_section(n_images: int = 100) -> dict[str, Any]:
    from sam_widget.engine.checkpoints import load_sam
    from sam_widget.engine.segmenter import Segmenter
    from benchmarks.evaluate import evaluate_tiny

    out: dict[str, Any] = {"n_images": n_images}
    for prec in ("fp32", "bf16"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            seg = Segmenter(load_sam("tiny_shapes", device="cpu", precision=prec), precision=prec)
        res = evaluate_tiny(n_images, 0, segmenter=seg)
        out[prec] = {k: res[k] for k in ("click_iou", "box_iou", "three_click_iou", "encode_first_mask_s", "n_objects")}
        _log(f"tiny_shapes {prec}: {out[prec]}")
    out["diff"] = {k: out["bf16"][k] - out["fp32"][k] for k in ("click_iou", "box_iou", "three_click_iou")}
    return out


# ---------------------------------------------------------------------------- memory
def _child(args: dict) -> dict[str, Any]:
    """Fresh process: build the model as the product would, then one encode."""
    import torch

    torch.set_num_threads(int(args["threads"]))

    def status(key: str) -> float | None:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
        return None

    kind, name = args["kind"], args["model"]
    if kind == "official_fp32":
        from segment_anything import SamPredictor

        seg = SamPredictor(_model(name))
    else:
        from sam_widget.engine.segmenter import Segmenter

        prec = "bf16" if kind == "segmenter_bf16" else "fp32"
        seg = Segmenter(_bf16_model(name) if prec == "bf16" else _model(name), precision=prec)
    import gc

    gc.collect()
    out: dict[str, Any] = {"rss_model_ready_mb": status("VmRSS"), "peak_before_encode_mb": status("VmHWM")}
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        out["hwm_reset"] = True
    except OSError:
        out["hwm_reset"] = False
    img = make_scene(*args["hw"], seed=900)
    t = time.perf_counter()
    seg.set_image(img)
    out["encode_s"] = time.perf_counter() - t
    out["peak_during_encode_mb"] = status("VmHWM") if out["hwm_reset"] else None
    out["rss_after_encode_mb"] = status("VmRSS")
    return out


def memory_section(cfg: dict, threads: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in ("official_fp32", "segmenter_fp32", "segmenter_bf16"):
        args = {"kind": kind, "model": cfg["model"], "hw": list(cfg["hw"]), "threads": threads}
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(args)],
            capture_output=True, text=True, timeout=1800, cwd=str(REPO),
        )
        if proc.returncode != 0:
            raise RuntimeError(f"memory child {kind} failed:\n{proc.stderr[-3000:]}")
        out[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
        _log(f"memory {kind}: {out[kind]}")
    return out


# ---------------------------------------------------------------------------- decoder
def decoder_section(cfg: dict, reps: int = 30) -> dict[str, Any]:
    """``Segmenter.predict`` (1 click, 3 masks) in fp32 and bf16, interleaved, on one embedding."""
    import torch

    from sam_widget.engine.segmenter import Segmenter

    name, (h, w) = cfg["model"], (1080, 1920) if cfg["model"] != "tiny" else cfg["hw"]
    segs = {"fp32": Segmenter(_model(name), precision="fp32"), "bf16": Segmenter(_bf16_model(name), precision="bf16")}
    img = make_scene(h, w, seed=11)
    segs["bf16"].set_image(img)
    with segs["bf16"].exclusive():  # the same embedding for both: only the decoders differ
        feats = segs["bf16"]._features
    s32 = segs["fp32"]
    s32._features, s32._original_size, s32._input_size = feats, segs["bf16"]._original_size, segs["bf16"]._input_size
    s32._decoder_state, s32._image = None, segs["bf16"]._image
    pt = [[0.5 * w, 0.5 * h]]
    disp = tuple(cfg["display"])
    variants = {
        f"{p}{'_display' if d else ''}": (segs[p], {"display_size": disp} if d else {})
        for p in ("fp32", "bf16")
        for d in (False, True)
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for seg, kw in variants.values():
        for _ in range(3):
            seg.predict(points=pt, labels=[1], **kw)
    keys = list(variants)
    for r in range(reps):
        for k in keys[r % len(keys):] + keys[: r % len(keys)]:
            seg, kw = variants[k]
            t = time.perf_counter()
            seg.predict(points=pt, labels=[1], **kw)
            times[k].append(time.perf_counter() - t)
    out: dict[str, Any] = {"image_hw": [h, w], "display_hw": list(disp), "threads": torch.get_num_threads(), "reps": reps}
    for k, ts in times.items():
        out[k] = {"median_ms": 1000 * _median(ts), "min_ms": 1000 * min(ts)}
    a, b = variants["fp32"][0].predict(points=pt, labels=[1]), variants["bf16"][0].predict(points=pt, labels=[1])
    out["bf16_vs_fp32_decoder_iou"] = [_iou(a.masks[i], b.masks[i]) for i in range(len(a))]
    _log(f"decoder: {out}")
    return out


# ---------------------------------------------------------------------------- report
def format_section(res: dict) -> str:
    m = res["meta"]
    lines = [
        f"## {m['date']} — `python benchmarks/precision.py --size {m['size']}` (bf16 vs fp32, {m['model']})",
        "",
        f"- Machine: {m['machine']['cpu']}, {m['machine']['cores']} cores ({', '.join(m['machine'].get('simd') or [])}); "
        f"torch {m['machine']['torch']} ({m['machine']['torch_threads']} threads); git {m['machine'].get('git')}",
        f"- bf16 decision on this machine: {m['bf16_native']}",
        f"- Load average at start / end: {m['load_start']} / {m.get('load_end')}",
        "",
    ]
    mm = res.get("matmul")
    if mm:
        lines += [f"| linear {mm['shape'][0]}x{mm['shape'][1]} -> {mm['shape'][2]} ({mm['threads']} threads) | ms | GFLOP/s | rel. error vs fp32 |", "|---|---|---|---|"]
        for k in ("fp32", "bf16", "int8_dynamic"):
            v = mm.get(k, {})
            if "median_ms" in v:
                lines.append(f"| {k} | {v['median_ms']:.1f} | {v['gflops']:.0f} | {v['rel_error']:.1e} |")
            elif v:
                lines.append(f"| {k} | {v.get('skipped')} | | |")
        lines.append("")
    enc = res.get("encode")
    if enc:
        lines += ["| encode 1024x768 (median of %d, interleaved) | wall (s) | × official | CPU (s) | × official |" % enc["reps"], "|---|---|---|---|---|"]
        for k, v in enc["sides"].items():
            lines.append(f"| {k} | {v['median_wall_s']:.2f} | {v['ratio_wall']:.2f}× | {v['median_cpu_s']:.2f} | {v['ratio_cpu']:.2f}× |")
        lines.append("")
    ag = res.get("agreement")
    if ag:
        lines += ["| masks vs exact (fp32) mode | prompts | masks | median IoU | 5th pct | min IoU | max score diff |", "|---|---|---|---|---|---|---|"]
        for k in ("bf16_vs_exact", "fp32_fast_vs_exact"):
            a = ag[k]
            lines.append(f"| {k} | {a['prompts']} | {a['masks_compared']} | {a['median_iou']:.4f} | {a['p5_iou']:.4f} | {a['min_iou']:.4f} | {a['max_score_diff']:.4f} |")
        kinds = ", ".join(f"{k}: median {v['median']:.4f} / min {v['min']:.4f} (n={v['n']})" for k, v in ag["bf16_vs_exact"]["by_kind"].items())
        lines += ["", f"bf16 by prompt kind: {kinds}", ""]
    ti = res.get("tiny")
    if ti:
        lines += ["| tiny_shapes (100 images) | click | box | three clicks | encode + first mask |", "|---|---|---|---|---|"]
        for k in ("fp32", "bf16"):
            v = ti[k]
            lines.append(f"| {k} | {v['click_iou']:.4f} | {v['box_iou']:.4f} | {v['three_click_iou']:.4f} | {1000 * v['encode_first_mask_s']:.1f} ms |")
        d = ti["diff"]
        lines += [f"| bf16 − fp32 | {d['click_iou']:+.4f} | {d['box_iou']:+.4f} | {d['three_click_iou']:+.4f} | – |", ""]
    me = res.get("memory")
    if me:
        lines += ["| fresh process | RSS, model ready (MB) | peak during encode (MB) | process peak (MB) | encode (s) |", "|---|---|---|---|---|"]
        for k, v in me.items():
            pe = f"{v['peak_during_encode_mb']:.0f}" if v.get("peak_during_encode_mb") else "–"
            lines.append(f"| {k} | {v['rss_model_ready_mb']:.0f} | {pe} | {max(v['peak_before_encode_mb'], v.get('peak_during_encode_mb') or 0):.0f} | {v['encode_s']:.2f} |")
        lines.append("")
    de = res.get("decoder")
    if de:
        dw, dh = de["display_hw"][1], de["display_hw"][0]
        lines += [
            f"| Segmenter.predict, 1 click, 3 masks, {de['image_hw'][1]}x{de['image_hw'][0]}, same embedding ({de['threads']} threads, {de['reps']} interleaved reps) | median (ms) | min (ms) |",
            "|---|---|---|",
        ]
        for k in ("fp32", "bf16", "fp32_display", "bf16_display"):
            label = k.replace("_display", f" + display masks {dw}x{dh}")
            lines.append(f"| {label} | {de[k]['median_ms']:.1f} | {de[k]['min_ms']:.1f} |")
        ious = ", ".join(f"{x:.4f}" for x in de["bf16_vs_fp32_decoder_iou"])
        lines += ["", f"bf16 vs fp32 decoder on the same embedding, mask IoU per candidate: {ious}", ""]
    return "\n".join(lines)


def run(size: str, sections: list[str], reps: int | None) -> dict[str, Any]:
    import torch

    from sam_widget.engine.precision import cpu_bf16_support

    cfg = SIZES[size]
    res: dict[str, Any] = {
        "meta": {
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "size": size,
            "model": cfg["model"],
            "machine": machine_info(),
            "bf16_native": "native: %s (%s)" % cpu_bf16_support(),
            "load_start": _load(),
            "sections": sections,
        }
    }
    threads = torch.get_num_threads()
    if "matmul" in sections:
        res["matmul"] = matmul_section()
    if "agreement" in sections:
        res["agreement"] = agreement_section(cfg)
    if "tiny" in sections:
        res["tiny"] = tiny_section(100 if size == "full" else 5)
    if "decoder" in sections:
        res["decoder"] = decoder_section(cfg)
    if "encode" in sections:
        res["encode"] = encode_section(cfg, reps or cfg["reps"])
    if "memory" in sections:
        res["memory"] = memory_section(cfg, threads)
    res["meta"]["load_end"] = _load()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", choices=sorted(SIZES), default="full")
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {','.join(SECTIONS)}")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--json", default=None, help="write the results as JSON here")
    ap.add_argument("--append", action="store_true", help="append a dated section to benchmarks/RESULTS.md")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(_child(json.loads(a.child))))
        return 0
    sections = [s for s in a.sections.split(",") if s]
    bad = [s for s in sections if s not in SECTIONS]
    if bad:
        ap.error(f"unknown sections {bad}; choose from {SECTIONS}")
    res = run(a.size, sections, a.reps)
    text = format_section(res)
    print(text)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1, default=str))
    if a.append:
        with (REPO / "benchmarks" / "RESULTS.md").open("a") as f:
            f.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
