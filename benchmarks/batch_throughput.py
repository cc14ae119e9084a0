"""Throughput of ``batch.precompute``: a plain in-process loop against Dask LocalClusters.

    python benchmarks/batch_throughput.py --model tiny_shapes --images 20
    python benchmarks/batch_throughput.py --model vit_b --images 20        # random vit_b weights

Same images, same model (seeded random vit_b weights, or the shipped tiny_shapes), a fresh
cache folder per configuration:
  * loop: ``Segmenter(...).set_image(path)`` for each image in this process (torch's default
    threads, i.e. every core) — what a user would write without Dask;
  * LocalClusters through ``batch.precompute``: 1 worker with 2 torch threads, 2 workers with 1.
Reported: wall time, images/min (cluster start excluded and included), Dask's overhead per
image (measured with a task that does no work), the bytes a task sends and returns, and the
peak RSS of each worker. Prints one markdown table.
"""

from __future__ import annotations

import argparse
import functools
import os
import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image


def _images(folder: Path, n: int, size: tuple[int, int]) -> list[Path]:
    from sam_widget.data import shapes_image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img, _ = shapes_image(1000 + i, size=size)
        p = folder / f"img{i:03d}.png"
        Image.fromarray(img).save(p)
        out.append(p)
    return out


def _model(name: str):
    if name == "tiny_shapes":
        return "tiny_shapes"
    from sam_widget.engine.models import random_sam

    return functools.partial(random_sam, name, seed=0)


def _noop(path: str) -> str:
    return path


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny_shapes", help="tiny_shapes, vit_b, vit_l, vit_h")
    ap.add_argument("--images", type=int, default=20)
    ap.add_argument("--workers", default="1x2,2x1", help="local clusters to try: WORKERSxTHREADS, comma-separated")
    args = ap.parse_args(argv)

    import distributed

    from sam_widget import batch
    from sam_widget.batch.runner import local_cluster
    from sam_widget.batch.spec import ModelSpec

    size = (256, 256) if args.model == "tiny_shapes" else (768, 1024)
    tmp = Path(tempfile.mkdtemp(prefix="batch-bench-"))
    paths = _images(tmp / "imgs", args.images, size)
    model = _model(args.model)
    rows = []
    print(f"load average at start: {os.getloadavg()}", file=sys.stderr)

    # 1. the plain loop (model build excluded from the timing, as a worker's is)
    spec = ModelSpec(model, cache_dir=str(tmp / "loop"))
    seg = spec.build()
    t0 = time.perf_counter()
    for p in paths:
        seg.set_image(p)
    loop_s = time.perf_counter() - t0
    rows.append(("plain loop (this process)", loop_s, loop_s, seg.stats["encoder_calls"], f"{_maxrss_mb():.0f} (this process)"))
    del seg

    # 2. local clusters
    for conf in args.workers.split(","):
        n, threads = (int(v) for v in conf.split("x"))
        t_start = time.perf_counter()
        cluster = local_cluster(n)  # the cluster batch starts for client=None (profiler off, no malloc trim)
        client = distributed.Client(cluster)
        try:
            client.run(lambda: __import__("torch").get_num_threads())  # workers up and torch imported
            # warm each worker's model once, outside the timing (a real run pays it once per worker)
            warm = tmp / f"warm{n}"
            batch.precompute(paths[: n], model=model, cache_dir=warm, client=client, threads=threads, progress=False)
            startup = time.perf_counter() - t_start
            t0 = time.perf_counter()
            rep = batch.precompute(paths, model=model, cache_dir=tmp / f"dask{conf}", client=client, threads=threads,
                                   progress=False)
            run_s = time.perf_counter() - t0
            assert rep.count("computed") == len(paths), rep
            rss = client.run(_maxrss_mb)
            # Dask's own cost per task: a task that does nothing
            t0 = time.perf_counter()
            futs = client.map(_noop, [str(p) for p in paths] * 5, pure=False)
            client.gather(futs)
            noop_ms = 1000 * (time.perf_counter() - t0) / (5 * len(paths))
            rows.append((f"LocalCluster, {n} worker{'s' * (n > 1)} x {threads} torch thread{'s' * (threads > 1)}", run_s, run_s + startup, len(paths),
                         ", ".join(f"{v:.0f}" for v in rss.values()) + f"; Dask per task {noop_ms:.1f} ms"))
        finally:
            client.close()
            cluster.close()

    spec_bytes = len(pickle.dumps(ModelSpec(model, cache_dir=str(tmp))))
    print(f"load average at end: {os.getloadavg()}", file=sys.stderr)
    print(f"\n### batch.precompute, {args.images} images of {size[1]}x{size[0]}, model {args.model} "
          f"(load {os.getloadavg()[0]:.1f})\n")
    print("| configuration | wall (s) | images/min | with start-up | encodes | peak RSS MB (per worker) |")
    print("|---|---|---|---|---|---|")
    for name, run_s, total_s, enc, rss in rows:
        print(f"| {name} | {run_s:.1f} | {60 * args.images / run_s:.1f} | {60 * args.images / total_s:.1f} | {enc} | {rss} |")
    print(f"\nper task sent: the path + a {spec_bytes}-byte model spec; returned: a ~300-byte result "
          "(precompute writes the 4 MiB embedding to the shared cache folder itself)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
