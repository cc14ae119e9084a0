#!/usr/bin/env python
"""Sessions over many images: time from ``next()`` to the first mask, and memory per undo step.

    python benchmarks/session_bench.py next   --model tiny_shapes            # seconds
    python benchmarks/session_bench.py next   --model vit_b --reps 2         # random vit_b weights, minutes
    python benchmarks/session_bench.py memory --steps 90 [--budget-mb 64] [--code-root /work/main]

``next``: a widget over four 768x1024 images. The user works on image ``i`` longer than one
encode (the script waits until the background prefetch is done), then presses "next" and
clicks: the time from ``next()`` until ``add_point`` returns the mask (the call waits for it)
is measured with prefetching on and off, with the engine's encoder-call count.

``memory``: one 3000x4000 image, a callback reading ``w.mask`` after every change, and N rounds
of click + clear (the situation of issue #14): the process RSS after each round, and its growth
per round (least-squares slope over the second half). ``--code-root`` runs the same script
against another checkout (e.g. the code before the mask budget) in a child process.

Every run prints the machine's load average: the machine is shared, compare within a run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _load() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def _segmenter(model: str):
    from sam_widget import Segmenter

    if model == "vit_b":  # no real weights here: the official architecture with seeded random weights
        from sam_widget.engine.models import MODEL_CONFIGS, random_sam

        return Segmenter(random_sam(MODEL_CONFIGS["vit_b"], seed=0))
    return Segmenter.from_pretrained(model, device="cpu")


def bench_next(model: str, reps: int) -> dict:
    from sam_widget import SamWidget
    from sam_widget.data import shapes_image
    from sam_widget.testing import RecordingComm

    images = [shapes_image(seed, size=(768, 1024))[0] for seed in range(2 * reps + 2)]
    out: dict = {"model": model, "image_hw": [768, 1024], "load_start": _load()}
    with RecordingComm.install():
        for prefetch in (True, False):
            seg = _segmenter(model)
            w = SamWidget(images, segmenter=seg, prefetch=prefetch).wait_ready(600)
            w.add_point(500, 380)  # warm the decoder on image 0
            times, encodes = [], []
            for _ in range(reps):
                w.session.wait_prefetch(600)  # the user spent longer than one encode on this image
                calls = seg.stats["encoder_calls"]
                t0 = time.perf_counter()
                w.next()
                w.add_point(500, 380)
                times.append(time.perf_counter() - t0)
                encodes.append(seg.stats["encoder_calls"] - calls)
                w.next()  # skip one: the next measurement starts on an image worked on for a while
                w.wait_ready(600)
            w.close()
            key = "prefetch" if prefetch else "no_prefetch"
            out[key] = {"next_to_mask_s": times, "median_s": statistics.median(times), "encoder_calls_after_next": encodes}
            print(f"{model} {key}: next() -> first mask median {statistics.median(times) * 1000:.0f} ms "
                  f"({', '.join(f'{t * 1000:.0f}' for t in times)} ms), encoder calls after next(): {encodes}", flush=True)
    out["load_end"] = _load()
    return out


def bench_memory(steps: int, budget_mb: float | None, model: str) -> dict:
    from sam_widget import SamWidget
    from sam_widget.testing import RecordingComm

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (3000, 4000, 3), dtype=np.uint8)
    kwargs = {} if budget_mb is None else {"mask_cache_bytes": int(budget_mb * 2**20)}
    with RecordingComm.install():
        w = SamWidget(image, segmenter=_segmenter(model), **kwargs).wait_ready(600)
        w.on_change(lambda ww: ww.mask)
        rss = [_rss_mb()]
        for k in range(steps):
            w.add_point(float(rng.uniform(0, 4000)), float(rng.uniform(0, 3000)))
            w.clear()
            rss.append(_rss_mb())
        w.close()
    half = steps // 2
    slope = float(np.polyfit(np.arange(half, steps + 1), rss[half:], 1)[0])
    return {"steps": steps, "budget_mb": budget_mb, "model": model, "rss_mb_start": rss[0], "rss_mb_end": rss[-1],
            "rss_mb_growth_per_step": slope, "rss_mb": rss, "load": _load()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["next", "memory"])
    ap.add_argument("--model", default="tiny_shapes", help="tiny_shapes (default) or vit_b (random weights)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--steps", type=int, default=90)
    ap.add_argument("--budget-mb", type=float, default=None, help="mask_cache_bytes in MiB (default: the session's)")
    ap.add_argument("--code-root", type=Path, default=None, help="run against this checkout (child process)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.code_root is not None:
        env = dict(os.environ, PYTHONPATH=str(args.code_root.resolve()))
        cmd = [sys.executable, __file__, args.what, "--model", args.model, "--reps", str(args.reps), "--steps", str(args.steps)]
        if args.budget_mb is not None:
            cmd += ["--budget-mb", str(args.budget_mb)]
        if args.json is not None:
            cmd += ["--json", str(args.json)]
        raise SystemExit(subprocess.call(cmd, env=env))
    import torch

    torch.set_num_threads(int(os.environ.get("SAM_BENCH_THREADS", "2")))
    import sam_widget

    print(f"sam_widget from {Path(sam_widget.__file__).parent}; load average {_load()}", flush=True)
    if args.what == "next":
        res = bench_next(args.model, args.reps)
    else:
        res = bench_memory(args.steps, args.budget_mb, args.model)
        print(f"memory: {args.steps} click+clear rounds on 4000x3000 reading w.mask each time: RSS {res['rss_mb_start']:.0f} -> "
              f"{res['rss_mb_end']:.0f} MB, {res['rss_mb_growth_per_step']:.2f} MB per step (load {res['load']})")
    if args.json is not None:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
