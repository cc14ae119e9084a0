"""Numbers for the teaching / provenance features (run by hand; prints a small report).

1. Fast mode: how close plain SamPredictor comes to sam_widget's fast-mode masks when it
   replays to_code()'s predict calls (the cell promises IoU >= 0.99): tiny_shapes on
   ``--scenes`` synthetic scenes, a click on every object, then a refinement click.
2. What an open Explain panel costs per answer: ``ExplainPanel.sync`` (explain() at
   thumbnail size + thumbnails + heatmap PNGs) on images of several sizes, fast and exact mode.

    .venv/bin/python scripts/measure_teaching.py [--scenes 20]

Wrap it in ``flock /work/wt/bench.lock`` on a shared machine; note the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def fast_mode_iou(scenes: int) -> list[float]:
    from sam_widget import Segmenter, Session, load_sam
    from sam_widget.data import shapes_image
    from sam_widget.demo import _deepest_pixel

    sam = load_sam("tiny_shapes")
    seg = Segmenter(sam)  # fast mode
    ious = []
    for seed in range(scenes):
        image, truth = shapes_image(seed, size=(384, 512))
        s = Session(image, segmenter=seg)
        s.wait_ready(60)
        for m in truth:
            if m.sum() < 200:
                continue
            x, y = _deepest_pixel(m)
            s.add_point(x, y)
            ys, xs = np.nonzero(m)
            s.add_point(int(xs[len(xs) // 3]), int(ys[len(ys) // 3]))  # a refinement click inside it
            if not s.mask.any():
                s.clear()
                continue
            s.commit()
        code = s.to_code().replace("assert iou >= 0.99", "pass  # measured instead:")
        ns = {"sam_image": image, "sam_model": sam}
        exec(code, ns)
        for o in s.objects:
            a, b = ns["reproduced"][o.id], o.mask
            ious.append(float((a & b).sum() / max(1, (a | b).sum())))
        s.close()
    return ious


def panel_cost(sizes: list[tuple[int, int]], repeats: int = 5) -> list[tuple[str, str, float, float]]:
    from sam_widget import SamWidget, Segmenter
    from sam_widget.engine.models import random_sam
    from sam_widget.testing import RecordingComm

    sam = random_sam("vit_b", seed=0)  # official geometry: 1024 input, 256 x 256 logits
    out = []
    with RecordingComm.install():
        for exact in (False, True):
            seg = Segmenter(sam, exact=exact)
            for H, W in sizes:
                image = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
                w = SamWidget(image, segmenter=seg)
                w.wait_ready(600)
                w.add_point(W // 2, H // 2)
                w.wait_idle()
                w.show_explain()
                from sam_widget.session import explain as ex

                times, moves = [], []
                lo, hi = w.explain().logits_range
                for k in range(repeats):
                    ex._STATS.clear()  # a new answer: everything computed again
                    w._explain._key = None
                    t = time.perf_counter()
                    w._explain.sync()
                    times.append(time.perf_counter() - t)
                    t = time.perf_counter()  # a slider move: the mask at another threshold, drawn + the panel
                    w.threshold = lo + (hi - lo) * (0.4 + 0.1 * (k % 2))
                    moves.append(time.perf_counter() - t)
                w.threshold = 0.0
                out.append(("exact" if exact else "fast", f"{W}x{H}", statistics.median(times), statistics.median(moves)))
                w.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenes", type=int, default=20)
    ap.add_argument("--no-panel", action="store_true", help="skip the panel cost (needs a vit_b-sized encode per mode)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    print(f"load average at start: {open('/proc/loadavg').read().split()[:3]}")
    ious = fast_mode_iou(args.scenes)
    q = np.quantile(ious, [0.0, 0.01, 0.5])
    print(f"fast mode replayed by SamPredictor: {len(ious)} objects from {args.scenes} scenes, IoU min {q[0]:.4f}, "
          f"1st percentile {q[1]:.4f}, median {q[2]:.4f}; below 0.99: {sum(i < 0.99 for i in ious)}")
    if not args.no_panel:
        for mode, size, s, m in panel_cost([(480, 640), (1080, 1920), (3000, 4000)]):
            print(f"Explain panel, {mode:5s} {size:>9s}: refill for a new answer {s * 1000:.0f} ms, "
                  f"a threshold move (canvas + panel) {m * 1000:.0f} ms (medians of 5)")
    print(f"load average at end: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
