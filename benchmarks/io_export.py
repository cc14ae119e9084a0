"""Export / import timings and file sizes of sam_widget.io on large images.

    python benchmarks/io_export.py                       # 100 objects on one 4000x3000 (12 MP) image
    python benchmarks/io_export.py --objects 100 --size 3000x4000 --images 1 --json /tmp/io.json
    python benchmarks/io_export.py --size 300x400 --objects 5     # a few seconds (used by the tests)

Objects are random blobs (smoothed noise inside an ellipse, 40-700 px across, a fifth of
them with a hole), placed at random; every figure is the median of ``--reps`` runs. It
reports: to_coco RLE and polygons (tolerance 0.25 / 0.5 / 1 px: time, file size, mean
and minimum IoU of the polygons rasterised back by pycocotools), read_coco, the session
file (write / read), export_png, measurements. Run heavy sizes under
``flock /work/wt/bench.lock`` on a shared machine; the load average is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sam_widget.io as sio  # noqa: E402


def blob_masks(n: int, height: int, width: int, seed: int = 0) -> list[np.ndarray]:
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        size = int(rng.uniform(40, min(700, height - 2, width - 2)))
        bh = max(8, int(size * rng.uniform(0.6, 1.0)))
        bw = max(8, int(size * rng.uniform(0.6, 1.0)))
        noise = cv2.resize(rng.standard_normal((6, 6)).astype(np.float32), (bw, bh), interpolation=cv2.INTER_CUBIC)
        yy, xx = np.mgrid[:bh, :bw]
        env = 1 - (((yy - bh / 2) / (bh / 2)) ** 2 + ((xx - bw / 2) / (bw / 2)) ** 2)
        blob = (env + 0.35 * noise) > 0.25
        if k % 5 == 0:  # a hole
            blob &= ((yy - bh / 2) ** 2 + (xx - bw / 2) ** 2) > (min(bh, bw) / 6) ** 2
        m = np.zeros((height, width), bool)
        y0 = int(rng.integers(0, height - bh))
        x0 = int(rng.integers(0, width - bw))
        m[y0 : y0 + bh, x0 : x0 + bw] = blob
        out.append(m)
    return out


def timed(fn, reps):
    times, result = [], None
    for _ in range(reps):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def iou(a, b):
    u = np.logical_or(a, b).sum()
    return 1.0 if u == 0 else np.logical_and(a, b).sum() / u


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="3000x4000", help="HxW (default 3000x4000 = 12 MP)")
    ap.add_argument("--objects", type=int, default=100, help="objects per image")
    ap.add_argument("--images", type=int, default=1)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=None, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    h, w = (int(v) for v in args.size.lower().split("x"))
    load0 = os.getloadavg()
    masks = [blob_masks(args.objects, h, w, seed=i) for i in range(args.images)]
    images = [{"file_name": f"img_{i}.jpg", "height": h, "width": w} for i in range(args.images)]
    labels = [[f"class {k % 4}" for k in range(args.objects)] for _ in range(args.images)]
    scores = [[0.9] * args.objects for _ in range(args.images)]
    prompts = [[{"points": [(10.0, 20.0)], "labels": [1], "box": None}] * args.objects for _ in range(args.images)]
    image = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    rows = []
    n_obj = args.images * args.objects
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)

        def export(name, **kw):
            path = tmp / f"{name}.json"
            t, _ = timed(lambda: sio.to_coco(images, masks, labels=labels, scores=scores, prompts=prompts, path=path, **kw), args.reps)
            return t, path

        t, rle_path = export("rle")
        rows.append({"what": "to_coco RLE (write file)", "seconds": t, "bytes": rle_path.stat().st_size})
        t, _ = timed(lambda: sio.read_coco(rle_path), args.reps)
        rows.append({"what": "read_coco RLE", "seconds": t})
        for tol in (0.25, 0.5, 1.0):
            t, path = export(f"poly{tol}", polygons=True, tolerance=tol)
            ds = sio.read_coco(path)
            ious = [iou(o.mask, m) for im, ms in zip(ds.images, masks) for o, m in zip(im.objects, ms)]
            n_poly = sum(isinstance(a["segmentation"], list) for a in json.loads(path.read_text())["annotations"])
            rows.append({"what": f"to_coco polygons, tolerance {tol} px (holes as RLE)", "seconds": t,
                         "bytes": path.stat().st_size, "iou_mean": float(np.mean(ious)), "iou_min": float(np.min(ious)),
                         "polygon_annotations": n_poly})
        t, path = export("polyx", polygons=True, holes="extra")
        rows.append({"what": "to_coco polygons 0.25 px, holes in extra field", "seconds": t, "bytes": path.stat().st_size})
        session_images = [
            {"file_name": im["file_name"], "height": h, "width": w, "path": tmp / im["file_name"],
             "objects": [{"id": k + 1, "label": lab, "color": (1, 2, 3), "mask": m, "score": 0.9, "prompts": p}
                         for k, (m, lab, p) in enumerate(zip(ms, labs, ps))]}
            for im, ms, labs, ps in zip(images, masks, labels, prompts)
        ]
        work = tmp / "work.json"
        t, _ = timed(lambda: sio.write_session(work, session_images, model={"name": "vit_b"}), args.reps)
        rows.append({"what": "write_session", "seconds": t, "bytes": work.stat().st_size})
        t, _ = timed(lambda: sio.read_session(work), args.reps)
        rows.append({"what": "read_session", "seconds": t})
        t, _ = timed(lambda: sio.export_png(tmp / "png", images, masks, labels=labels), args.reps)
        rows.append({"what": "export_png (label images)", "seconds": t,
                     "bytes": sum(p.stat().st_size for p in (tmp / "png").iterdir())})
        t, _ = timed(lambda: sio.measurements([image] * args.images, masks, labels=labels, scores=scores), args.reps)
        rows.append({"what": "measurements (with RGB intensities)", "seconds": t})
    load1 = os.getloadavg()
    print(f"sam_widget.io, {n_obj} objects on {args.images} image(s) of {h}x{w} ({h * w / 1e6:.0f} MP), "
          f"median of {args.reps}; load average {load0[0]:.2f} -> {load1[0]:.2f}")
    print("| what | time (s) | per object (ms) | file size | polygon IoU mean / min |")
    print("|---|---|---|---|---|")
    for r in rows:
        size = f"{r['bytes'] / 1024:.0f} KiB" if "bytes" in r else ""
        io_ = f"{r['iou_mean']:.4f} / {r['iou_min']:.4f}" if "iou_mean" in r else ""
        print(f"| {r['what']} | {r['seconds']:.3f} | {1000 * r['seconds'] / n_obj:.1f} | {size} | {io_} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"size": [h, w], "objects": n_obj, "load": [load0, load1], "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
