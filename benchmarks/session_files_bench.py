#!/usr/bin/env python
"""Saving and loading a session: 100 objects on 12-megapixel images.

    flock /work/wt/bench.lock .venv/bin/python benchmarks/session_files_bench.py               # 100 objects, 4 images of 3000x4000
    .venv/bin/python benchmarks/session_files_bench.py --size 300x400 --objects 10 --reps 1   # seconds (run by the tests)

A ``Session`` (the offline ``tiny_shapes`` model, prefetch off) over ``--images`` PNG files
of ``--size`` (H x W), with ``--objects`` random blobs (40-700 px across, a fifth with a
hole; ``benchmarks/io_export.py``'s) spread over the images, each with prompts and a
one-step refinement chain. Measured (medians of ``--reps``):

* ``save``: ``Session.save(path)`` -- what autosave does on its own thread -- and the file size;
* ``commit with autosave``: the caller's time of one ``add_object`` with autosave on and off
  (the write happens later, off the click path);
* ``load, new process``: ``Session.load(path)`` in a fresh Python process until it returns
  (every mask decoded, the current image read), then until ``wait_ready()`` (model loaded,
  current image encoded), and the process's RSS;
* ``load, same process``: ``Session.load`` again in this process (imports warm).

Prints a Markdown table with the load average; ``--json PATH`` keeps the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
from sam_widget import Session
t1 = time.perf_counter()
s = Session.load(sys.argv[1], prefetch=False)
t2 = time.perf_counter()
s.wait_ready(600)
t3 = time.perf_counter()
n = sum(len(s.objects_of(i)) for i in range(len(s.images)))
with open("/proc/self/statm") as f:
    rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "ready_s": t3 - t1, "objects": n, "rss_mb": rss}), flush=True)
os._exit(0)
"""


def _load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def _median(fn, reps: int) -> float:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def build(folder: Path, n_images: int, n_objects: int, hw: tuple[int, int]):
    """Image files and the objects (as records with prompts and a chain) per image."""
    from PIL import Image

    from io_export import blob_masks
    from sam_widget.data import shapes_image

    paths = []
    for k in range(n_images):
        img = shapes_image(k, size=(min(hw[0], 1024), min(hw[1], 1024)))[0]
        big = np.asarray(Image.fromarray(img).resize((hw[1], hw[0]), Image.BILINEAR))
        p = folder / f"image_{k}.png"
        Image.fromarray(big).save(p, compress_level=1)
        paths.append(str(p))
    masks = blob_masks(n_objects, hw[0], hw[1], seed=1)
    return paths, masks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--objects", type=int, default=100)
    ap.add_argument("--size", default="3000x4000", help="H x W of each image")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    hw = tuple(int(v) for v in args.size.lower().split("x"))
    from dataclasses import replace

    from sam_widget import Session
    from sam_widget.state import Prompts

    load0 = _load()
    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory(prefix="sam_widget_bench_") as tmp:
        folder = Path(tmp)
        paths, masks = build(folder, args.images, args.objects, hw)
        s = Session(paths, model="tiny_shapes", prefetch=False)
        s.wait_ready(600)
        per = [masks[k :: args.images] for k in range(args.images)]
        for i, group in enumerate(per):
            s.goto(i)
            for j, m in enumerate(group):
                obj = s.add_object(m, f"blob {j % 5}")
                ys, xs = np.nonzero(m)
                p0 = Prompts(((float(xs[len(xs) // 2]), float(ys[len(ys) // 2])),), (1,))
                p1 = p0.with_point(p0.points[0][0] + 3, p0.points[0][1] + 3, 1)
                with_prompts = replace(obj, prompts=p1, candidate=0, chain=((p0, 2),), score=0.9)
                snap = s.current
                s._push(replace(snap, objects=snap.objects[:-1] + (with_prompts,)))
        s.goto(0)
        work = folder / "work.json"
        t_save = _median(lambda: s.save(work), args.reps)
        size = work.stat().st_size
        rows.append(("save (`Session.save`, what autosave does off the click path)", t_save,
                     f"{size / 1024:.0f} KiB"))

        blob = np.zeros(hw, bool)
        blob[10:50, 10:50] = True

        def add_and_delete(session):
            session.add_object(blob, "x")
            session.delete(len(session.objects) - 1)

        t_plain = _median(lambda: add_and_delete(s), 5 * args.reps)
        a = Session(paths, model="tiny_shapes", prefetch=False, autosave=folder / "auto.json")
        try:
            a.wait_ready(600)
            t_auto = _median(lambda: add_and_delete(a), 5 * args.reps)
            a.save()  # (wait for the last write)
            writes = a._files.autosaver.writes
        finally:
            a.close()
        rows.append(("add_object + delete on the caller's thread, autosave off / on", t_plain, f"{1000 * t_auto:.1f} ms with autosave ({writes} writes for {10 * args.reps} changes)"))

        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        children = []
        for _ in range(args.reps):
            res = subprocess.run([sys.executable, "-c", CHILD, str(work)], capture_output=True, text=True, env=env, timeout=1200)
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
                return 1
            children.append(json.loads(res.stdout))
        med = {k: statistics.median(c[k] for c in children) for k in ("import_s", "load_s", "ready_s", "rss_mb")}
        assert all(c["objects"] == args.objects for c in children)
        rows.append(("load, new process: `Session.load` returns (masks decoded, current image read)", med["load_s"],
                     f"+ {med['import_s']:.2f} s `import sam_widget`; RSS {med['rss_mb']:.0f} MB"))
        rows.append(("load, new process: until `wait_ready()` (model loaded, image encoded)", med["ready_s"], ""))

        def load_here():
            t = Session.load(work, segmenter=s.segmenter, prefetch=False)
            t.close()

        rows.append(("load, same process (imports warm, model given)", _median(load_here, args.reps), ""))
        s.close()
    load1 = _load()
    mp = hw[0] * hw[1] / 1e6
    print(f"Session save / load: {args.objects} objects on {args.images} image(s) of {hw[0]}x{hw[1]} ({mp:.0f} MP), "
          f"median of {args.reps}; load average {load0} -> {load1}")
    print()
    print("| what | time | notes |")
    print("|---|---|---|")
    for what, sec, note in rows:
        print(f"| {what} | {sec * 1000:.1f} ms | {note} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "load": [load0, load1], "args": vars(args)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
