"""Benchmark: sam_widget against the official ``SamPredictor`` on the same seeded weights.

Run ``python -m benchmarks.bench`` (several minutes with vit_b on a CPU) or
``python -m benchmarks.bench --size tiny`` (seconds, the small test model). Both sides use
``random_sam(model, seed=0)`` (two separate instances, so nothing one side does to its
model can touch the other's) in one process; every timed measurement is repeated, the two
sides interleaved, and medians are reported.

Sections (keys of the JSON):

* ``encode``   -- warm ``SamPredictor.set_image`` vs ``Segmenter.set_image`` (1024x768, a new
  image each repetition so no cache hits), plus ``Segmenter``'s first call in a fresh process.
* ``click``    -- a click delivered to a ``SamWidget`` the way a browser delivers it (ipyevents
  message -> widget -> worker -> canvas commands) until the current-mask layer's
  ``putImageData`` is handed to the comm, vs ``SamPredictor.predict`` (3 masks) + a full-size
  RGBA overlay of the best mask, per image size; bytes sent per mask update.
* ``cache``    -- memory hit in this process; disk hit in a new process (encoder calls must be 0).
* ``storm``    -- pointer moves during hover preview, as fast as they can be delivered.
* ``memory``   -- peak resident memory (ru_maxrss).
* ``targets``  -- each target with PASS/MISS.

Options: ``--size tiny|full``, ``--reps N``, ``--json PATH``, ``--no-append`` (else a dated
section is appended to ``benchmarks/RESULTS.md``), ``--results PATH``, ``--storm-events N``,
``--precision auto|fp32|bf16`` (our side, prepared as ``load_sam`` does; the official baseline
is always fp32).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import queue
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["main", "run", "make_scene", "SIZES"]

REPO = Path(__file__).resolve().parents[1]
DEFAULT_RESULTS = REPO / "benchmarks" / "RESULTS.md"

# Image sizes are (H, W).
SIZES: dict[str, dict[str, Any]] = {
    "full": {
        "model": "vit_b",
        "encode_hw": (768, 1024),
        "click_hw": [(480, 640), (1080, 1920), (3000, 4000)],
        "storm_hw": (1080, 1920),
        "target_hw": (1080, 1920),
        "display_size": 800,
        "reps": 3,
        "timeout": 900.0,
    },
    "tiny": {
        "model": "tiny",
        "encode_hw": (96, 128),
        "click_hw": [(48, 64), (108, 192), (300, 400)],
        "storm_hw": (108, 192),
        "target_hw": (108, 192),
        "display_size": 160,
        "reps": 2,
        "paced_events": 60,
        "timeout": 120.0,
    },
}

TARGETS = {
    "encode_ratio": 0.25,  # ours / official fp32 set_image, warm (issue #18)
    "click_ratio": 0.20,  # ours / baseline at the target size (issue #18; was 0.25)
    "growth_exponent": 1.0,  # ours ~ pixels^k, k < 1 (sub-linear)
    "bytes_ratio": 0.01,  # bytes per mask update / display's raw RGBA frame
    "memory_hit_ms": 5.0,
    "disk_hit_ms": 150.0,
    "previews_per_s": 8.0,
}

_OVERLAY_COLOR = (30, 144, 255)
_T_START = time.perf_counter()


def _log(msg: str) -> None:
    print(f"[bench {time.perf_counter() - _T_START:7.1f} s] {msg}", file=sys.stderr, flush=True)


def _median(xs: list[float]) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(statistics.median(xs)) if xs else None


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else float(a) / float(b)


# ====================================================================== inputs
def make_scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A deterministic ``h x w x 3`` uint8 scene: smooth background, a few solid shapes, mild noise."""
    rng = np.random.default_rng(seed)
    yy = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    xx = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    img = np.empty((h, w, 3), np.uint8)
    c0, c1, c2 = rng.uniform(40, 200, 3), rng.uniform(-60, 60, 3), rng.uniform(-60, 60, 3)
    for k in range(3):
        img[..., k] = np.clip(c0[k] + c1[k] * xx + c2[k] * yy, 0, 255).astype(np.uint8)
    for _ in range(6):
        cx, cy = rng.uniform(0.15, 0.85, 2)
        rx, ry = rng.uniform(0.06, 0.22, 2)
        color = rng.integers(0, 256, 3).astype(np.uint8)
        if rng.random() < 0.5:
            inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1.0
        else:
            inside = (np.abs(xx - cx) < rx) & (np.abs(yy - cy) < ry)
        img[inside] = color
    noise = rng.integers(-6, 7, size=(min(h, 256), min(w, 256), 1), dtype=np.int16)
    reps = (math.ceil(h / noise.shape[0]), math.ceil(w / noise.shape[1]), 3)
    tiled = np.tile(noise, reps)[:h, :w]
    return np.clip(img.astype(np.int16) + tiled, 0, 255).astype(np.uint8)


def numpy_overlay(mask: np.ndarray, color=_OVERLAY_COLOR, alpha: float = 0.45) -> np.ndarray:
    """The baseline's full-size RGBA overlay of a mask."""
    rgba = np.zeros((*mask.shape, 4), np.uint8)
    rgba[mask, :3] = color
    rgba[mask, 3] = round(alpha * 255)
    return rgba


def reference_overlay_bytes(display_hw: tuple[int, int], fraction: float = 0.2) -> int:
    """PNG bytes of a smooth ellipse mask covering ``fraction`` of the display, drawn the widget's way.

    ``render.mask_overlay`` then ipycanvas' own encoder: what an object-shaped mask costs,
    for comparison with the (fragmented) masks of random weights.
    """
    from ipycanvas.utils import binary_image

    from sam_widget.render import mask_overlay

    h, w = display_hw
    yy, xx = np.mgrid[0:h, 0:w]
    r = math.sqrt(fraction / math.pi)  # ellipse with semi-axes r*w, r*h covers `fraction`
    mask = ((xx - w / 2) / (r * w)) ** 2 + ((yy - h / 2) / (r * h)) ** 2 < 1.0
    ov = mask_overlay(mask, _OVERLAY_COLOR)
    return len(binary_image(ov.rgba)) if ov is not None else 0


def build_model(name: str, seed: int = 0, precision: str | None = None):
    """``random_sam`` of ``name``; with ``precision``, prepared as ``load_sam`` would
    (bf16: the encoder's linear weights converted once, in place)."""
    from sam_widget.engine.models import TINY_TEST_CONFIG, random_sam

    sam = random_sam(TINY_TEST_CONFIG if name == "tiny" else name, seed=seed)
    if precision is not None:
        from sam_widget.engine.checkpoints import apply_precision

        apply_precision(sam, precision)
    return sam


# ====================================================================== machine
def machine_info() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or "unknown"
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("unknown", "", platform.machine()):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    git = None
    try:
        git = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "simd": sorted(f for f in flags if f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "fma")),
        "ram_bytes": ram,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_start": load,
        "git": git,
    }


def segmenter_mode(seg: Any) -> dict[str, Any]:
    """Which mode / accelerations the Segmenter runs with (whatever attributes it has)."""
    info: dict[str, Any] = {"exact": getattr(seg, "exact", None)}
    for name in ("mode", "accelerations", "acceleration", "speedups", "fast", "compiled", "backend", "encoder_mode"):
        if hasattr(type(seg), name) or name in getattr(seg, "__dict__", {}):
            try:
                v = getattr(seg, name)
            except Exception as exc:  # noqa: BLE001 - report, never fail on introspection
                v = f"<error {type(exc).__name__}>"
            if callable(v):
                continue
            try:
                json.dumps(v)
            except TypeError:
                v = repr(v)
            info[name] = v
    enc = seg.sam.image_encoder
    info["encoder_class"] = f"{type(enc).__module__}.{type(enc).__qualname__}"
    info["fast_module_loaded"] = "sam_widget.engine.fast" in sys.modules
    return info


def _describe_mode(m: dict[str, Any]) -> str:
    parts = ["exact" if m.get("exact") else "default (exact=False)"]
    for k, v in m.items():
        if k not in ("exact",):
            parts.append(f"{k}={v}")
    return ", ".join(parts)


# ====================================================================== child processes
def _child(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh interpreter: import, build, then one timed ``set_image``."""
    t0 = time.perf_counter()
    import torch
    import segment_anything  # noqa: F401

    from sam_widget.engine.segmenter import Segmenter

    import_s = time.perf_counter() - t0
    torch.set_num_threads(int(args["threads"]))
    t0 = time.perf_counter()
    precision = args.get("precision", "auto")
    sam = build_model(args["model"], precision=precision)
    build_s = time.perf_counter() - t0
    img = make_scene(*args["hw"], seed=int(args["seed"]))
    out: dict[str, Any] = {"import_s": import_s, "build_s": build_s, "rss_model_ready_mb": _rss_mb()}
    seg = Segmenter(sam, cache_dir=args.get("cache_dir"), precision=precision)
    t0 = time.perf_counter()
    seg.set_image(img)
    out["set_image_s"] = time.perf_counter() - t0
    out["stats"] = {k: v for k, v in seg.stats.items() if isinstance(v, (int, float, type(None)))}
    out["mode"] = segmenter_mode(seg)
    if kind == "disk":
        # Where the time goes: the model fingerprint (hash of the encoder weights) vs the rest.
        seg2 = Segmenter(sam, cache_dir=args.get("cache_dir"), precision=precision)
        if hasattr(type(seg2), "fingerprint"):
            t0 = time.perf_counter()
            seg2.fingerprint  # noqa: B018 - computed lazily
            out["fingerprint_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        seg2.set_image(img)
        out["set_image_fingerprint_known_s"] = time.perf_counter() - t0
    out["peak_rss_mb"] = _peak_rss_mb()
    return out


def _rss_mb() -> float | None:
    """This process's current resident memory (VmRSS), or None where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: reset by exec, unlike ru_maxrss of a forked child)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _run_child(kind: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--child", kind, "--child-args", json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=str(REPO),
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark child {kind!r} failed:\n{proc.stderr[-4000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall
    return out


class _ThreadRunner:
    """Runs calls on one long-lived thread (the baseline gets the same thread context as the widget's worker).

    On a loaded 2-core machine, torch ops issued from the interpreter's main thread with 2
    intra-op threads were several times slower for the mask decoder than from a worker thread,
    so timing one side on each would compare thread contexts, not code.
    """

    def __init__(self, name: str = "bench-baseline") -> None:
        self._q: queue.Queue = queue.Queue()
        self._t = threading.Thread(target=self._loop, name=name, daemon=True)
        self._t.start()

    def _loop(self) -> None:
        while True:
            f, box, ev = self._q.get()
            if f is None:
                return
            try:
                box.append((True, f()))
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller
                box.append((False, exc))
            ev.set()

    def call(self, f: Callable[[], Any]) -> Any:
        box: list = []
        ev = threading.Event()
        self._q.put((f, box, ev))
        ev.wait()
        ok, value = box[0]
        if not ok:
            raise value
        return value

    def close(self) -> None:
        self._q.put((None, None, None))


# ====================================================================== the benchmark
class _Bench:
    def __init__(self, size: str, reps: int | None, storm_events: int, precision: str = "auto") -> None:
        self.precision = precision
        self.cfg = dict(SIZES[size])
        self.size = size
        self.reps = int(reps or self.cfg["reps"])
        self.click_reps = max(3, 3 * self.reps)
        self.storm_events = int(storm_events)
        self.timeout = float(self.cfg["timeout"])
        self.tmp = tempfile.TemporaryDirectory(prefix="sam_widget_bench_")
        self.cache_dir = os.path.join(self.tmp.name, "cache")

    # ------------------------------------------------------------------ sections
    def run(self) -> dict[str, Any]:
        import torch
        from segment_anything import SamPredictor

        from sam_widget.engine.segmenter import Segmenter
        from sam_widget.testing import RecordingComm

        res: dict[str, Any] = {"meta": {}, "encode": {}, "click": {}, "bytes": {}, "cache": {}, "storm": {}, "memory": {}}
        meta = res["meta"]
        meta.update(
            date=_dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            size=self.size,
            model=self.cfg["model"],
            weights="random_sam(seed=0), separate instances for baseline and ours",
            reps=self.reps,
            click_reps=self.click_reps,
            display_size=self.cfg["display_size"],
            machine=machine_info(),
        )
        _log(f"size={self.size} model={self.cfg['model']} reps={self.reps} threads={torch.get_num_threads()}")
        t0 = time.perf_counter()
        sam_base = build_model(self.cfg["model"])
        sam_ours = build_model(self.cfg["model"], precision=self.precision)  # as load_sam prepares it
        meta["build_two_models_s"] = time.perf_counter() - t0
        predictor = SamPredictor(sam_base)
        seg = Segmenter(sam_ours, cache_dir=self.cache_dir, precision=self.precision)
        from sam_widget.engine.precision import cpu_bf16_support

        meta["precision"] = {"asked": self.precision, "resolved": seg.precision, "cpu_bf16": "%s (%s)" % cpu_bf16_support()}
        meta["segmenter_mode"] = segmenter_mode(seg)
        _log(f"segmenter mode: {_describe_mode(meta['segmenter_mode'])}")

        rec = RecordingComm.install()
        try:
            click_imgs = [make_scene(h, w, seed=10 + i) for i, (h, w) in enumerate(self.cfg["click_hw"])]
            # Warm-up: the first call of each side in this process (also the first click size's embedding).
            t = time.perf_counter()
            predictor.set_image(click_imgs[0])
            base_first = time.perf_counter() - t
            t = time.perf_counter()
            seg.set_image(click_imgs[0])
            ours_first = time.perf_counter() - t
            res["encode"]["first_call_in_process_s"] = {"baseline": base_first, "ours": ours_first}
            _log(f"warm-up encodes: baseline {base_first:.2f} s, ours {ours_first:.2f} s")
            self._encode(res["encode"], predictor, seg)
            res["encode"]["mode_after"] = segmenter_mode(seg)
            for i, img in enumerate(click_imgs):
                self._click_size(res, predictor, seg, rec, img, first=(i == 0))
            self._growth(res["click"])
            self._memory_hit(res["cache"], seg)
        finally:
            rec.uninstall()
        self._subprocesses(res, torch.get_num_threads())
        res["memory"] = {
            "ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "fresh_process_peak_rss_mb": res["encode"]["fresh_process"]["peak_rss_mb"],
            "fresh_process_rss_model_ready_mb": res["encode"]["fresh_process"].get("rss_model_ready_mb"),
            "disk_hit_process_peak_rss_mb": res["cache"]["disk_hit"]["peak_rss_mb"],
        }
        res["segmenter_stats"] = {k: v for k, v in seg.stats.items() if isinstance(v, (int, float, type(None)))}
        try:
            meta["loadavg_end"] = list(os.getloadavg())
        except OSError:
            pass
        meta["total_s"] = time.perf_counter() - _T_START
        res["targets"] = evaluate_targets(res)
        return res

    def _encode(self, out: dict, predictor: Any, seg: Any) -> None:
        h, w = self.cfg["encode_hw"]
        base, ours, ours_enc = [], [], []
        for r in range(self.reps):
            img = make_scene(h, w, seed=100 + r)
            calls = seg.stats.get("encoder_calls")

            def b() -> None:
                t = time.perf_counter()
                predictor.set_image(img)
                base.append(time.perf_counter() - t)

            def o() -> None:
                t = time.perf_counter()
                seg.set_image(img)
                ours.append(time.perf_counter() - t)
                ours_enc.append(seg.stats.get("last_encode_s"))

            for f in (b, o) if r % 2 == 0 else (o, b):
                f()
            if calls is not None and seg.stats.get("encoder_calls") != calls + 1:
                raise RuntimeError("Segmenter.set_image did not encode a new image (cache hit?)")
            _log(f"encode rep {r}: baseline {base[-1]:.2f} s, ours {ours[-1]:.2f} s")
        out.update(
            image_hw=[h, w],
            baseline_s=base,
            ours_s=ours,
            ours_encoder_only_s=ours_enc,
            baseline_median_s=_median(base),
            ours_median_s=_median(ours),
            ratio=_ratio(_median(ours), _median(base)),
        )

    def _choose_point(self, seg: Any, img: np.ndarray, display_hw: tuple[int, int]) -> tuple[tuple[int, int], float]:
        """An image point whose best mask is not empty (closest to 20 % of the image)."""
        H, W = img.shape[:2]
        best = None
        for fx, fy in ((0.5, 0.5), (0.35, 0.4), (0.65, 0.6), (0.4, 0.7), (0.6, 0.3), (0.25, 0.25), (0.75, 0.75)):
            pt = (int(fx * W), int(fy * H))
            pred = seg.predict(points=[pt], labels=[1], multimask=True)
            frac = float(pred.mask_at_size(pred.best, display_hw).mean())
            score = abs(frac - 0.2) if frac > 0 else 10.0
            if best is None or score < best[0]:
                best = (score, pt, frac)
        return best[1], best[2]

    def _click_size(self, res: dict, predictor: Any, seg: Any, rec: Any, img: np.ndarray, first: bool) -> None:
        from sam_widget.testing import EventInjector
        from sam_widget.ui.widget import SamWidget

        H, W = img.shape[:2]
        if not first:
            t = time.perf_counter()
            predictor.set_image(img)
            tb = time.perf_counter() - t
            t = time.perf_counter()
            seg.set_image(img)
            _log(f"{W}x{H}: embeddings computed (baseline {tb:.1f} s, ours {time.perf_counter() - t:.1f} s)")
        w = SamWidget(img, segmenter=seg, display_size=self.cfg["display_size"])
        try:
            w.wait_ready(self.timeout)
            inj = EventInjector(w, round_css=False)  # CSS px == display px, unrounded: exact image positions
            dh, dw = w._display_hw
            current = w._view.canvas[2]  # the current-mask layer (canvas_view.CURRENT)
            prompts_layer = w._view.canvas[3]
            (ix, iy), frac = self._choose_point(seg, img, (dh, dw))
            pc, pl = np.array([[ix, iy]], dtype=np.float64), np.array([1])

            def baseline() -> float:
                t = time.perf_counter()
                masks, scores, _ = predictor.predict(point_coords=pc, point_labels=pl, multimask_output=True)
                numpy_overlay(masks[int(np.argmax(scores))])
                return time.perf_counter() - t

            def ours() -> dict[str, Any]:
                w.clear()
                w.wait_idle(self.timeout)
                start = rec.mark()
                t0 = time.perf_counter()
                inj.click_image(ix, iy)
                t_events = time.perf_counter() - t0
                w.wait_idle(self.timeout)
                msg = rec.find(lambda m: m.touches(current, "putImageData"), start)
                if msg is None:  # an empty mask: the update is only a clearRect, if anything
                    msg = rec.find(lambda m: m.touches(current), start)
                pmsg = rec.find(lambda m: m.touches(prompts_layer), start)
                return {
                    "latency_s": (msg.t - t0) if msg is not None else None,
                    "events_handled_s": t_events,
                    "prompt_marker_s": (pmsg.t - t0) if pmsg is not None else None,
                    "segmenter_decode_s": seg.stats.get("last_decode_s"),
                    "bytes": msg.nbytes if msg is not None else None,
                    "put_image_data": bool(msg is not None and msg.touches(current, "putImageData")),
                }

            runner = _ThreadRunner()
            try:
                runner.call(baseline)  # warm this size's code paths on both sides
                baseline()
                ours()
                base_s, base_main, runs = [], [], []
                steps = [
                    lambda: base_s.append(runner.call(baseline)),
                    lambda: runs.append(ours()),
                    lambda: base_main.append(baseline()),
                ]
                for r in range(self.click_reps):
                    for i in range(3):
                        steps[(r + i) % 3]()
            finally:
                runner.close()
            ours_s = [x["latency_s"] for x in runs]
            entry = {
                "image_hw": [H, W],
                "display_hw": [dh, dw],
                "point_xy": [ix, iy],
                "mask_fraction_display": frac,
                "baseline_ms": [x * 1000 for x in base_s],
                "ours_ms": [x * 1000 if x is not None else None for x in ours_s],
                "baseline_median_ms": _median(base_s) * 1000,
                "baseline_thread": "worker thread (like the widget's)",
                "baseline_main_thread_ms": [x * 1000 for x in base_main],
                "baseline_main_thread_median_ms": _median(base_main) * 1000,
                "ours_median_ms": (_median(ours_s) or 0.0) * 1000,
                "events_handled_median_ms": _median([x["events_handled_s"] for x in runs]) * 1000,
                "prompt_marker_median_ms": (_median([x["prompt_marker_s"] for x in runs]) or 0.0) * 1000,
                "segmenter_decode_median_ms": (_median([x["segmenter_decode_s"] for x in runs]) or 0.0) * 1000,
                "put_image_data": all(x["put_image_data"] for x in runs),
            }
            entry["ratio"] = _ratio(entry["ours_median_ms"], entry["baseline_median_ms"])
            key = f"{W}x{H}"
            res["click"].setdefault("sizes", {})[key] = entry
            raw = dh * dw * 4
            nb = _median([x["bytes"] for x in runs])
            res["bytes"].setdefault("sizes", {})[key] = {
                "image_hw": [H, W],
                "display_hw": [dh, dw],
                "bytes_per_update": nb,
                "raw_rgba_frame_bytes": raw,
                "ratio": _ratio(nb, raw),
                "mask_fraction_display": frac,
                "full_size_rgba_bytes": H * W * 4,
                "reference_smooth_mask_bytes": reference_overlay_bytes((dh, dw)),
            }
            _log(
                f"{key}: click->overlay ours {entry['ours_median_ms']:.1f} ms vs baseline "
                f"{entry['baseline_median_ms']:.1f} ms (x{entry['ratio']:.3f}); {nb} B/update "
                f"({100 * (nb or 0) / raw:.2f} % of raw), mask {100 * frac:.1f} %"
            )
            if (H, W) == tuple(self.cfg["storm_hw"]):
                self._storm(res["storm"], w, inj, seg, rec, current)
        finally:
            w.close()

    def _storm(self, out: dict, w: Any, inj: Any, seg: Any, rec: Any, current: Any) -> None:
        """Pointer moves during hover preview: a flood (as fast as they can be delivered), then paced."""
        out.update(self._storm_run(w, inj, seg, rec, current, self.storm_events, 0.0, phase=0.0))
        o = out
        _log(
            f"storm (flood): {o['events']} moves in {o['deliver_s']:.3f} s, {o['previews_computed']} previews "
            f"({o['previews_drawn']} drawn), idle {o['time_to_idle_after_last_event_s']:.2f} s after the last, "
            f"{o['previews_per_s']:.1f} previews/s, final correct={o['final_state_correct']}"
        )
        p = self._storm_run(w, inj, seg, rec, current, self.cfg.get("paced_events", self.storm_events), 1 / 120, phase=0.5)
        out["paced"] = p
        _log(
            f"storm (paced 120 Hz): {p['events']} moves in {p['deliver_s']:.2f} s, {p['previews_computed']} previews "
            f"({p['previews_drawn']} drawn), idle {p['time_to_idle_after_last_event_s']:.2f} s after the last, "
            f"{p['previews_per_s']:.1f} previews/s, final correct={p['final_state_correct']}"
        )

    def _storm_run(self, w: Any, inj: Any, seg: Any, rec: Any, current: Any, n: int, interval: float, phase: float) -> dict:
        from sam_widget.testing import LayerReplay

        H, W = w.image.shape[:2]
        dh, dw = w._display_hw
        w.clear()
        w.wait_idle(self.timeout)
        w.hover = True
        k = np.arange(n)
        xs = dw * (0.1 + 0.8 * k / max(1, n - 1))
        ys = dh * (0.5 + 0.35 * np.sin(2 * np.pi * (3 * k / max(1, n) + phase)))
        previews0 = w.stats.get("previews", 0)
        start = rec.mark()
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(zip(xs, ys)):
            if interval:
                delay = t0 + i * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            inj.mouse_move(float(x), float(y))  # display px == CSS px here
        t_delivered = time.perf_counter() - t0
        w.wait_idle(self.timeout)
        t_idle = time.perf_counter() - t0
        previews = w.stats.get("previews", 0) - previews0
        drawn = [m for m in rec.since(start) if m.touches(current, "putImageData")]
        # replay the layer from its very first command
        shown = LayerReplay((dh, dw)).apply(rec.commands(canvas=current)).covered
        # What the last pointer position should show (the widget's own CSS -> image mapping).
        ix, iy = w._viewport.canvas_to_image(float(xs[-1]), float(ys[-1]))
        pred = seg.predict(points=[(ix, iy)], labels=[1], multimask=True)
        expected = pred.mask_at_size(pred.best, (dh, dw))
        mismatch = int((shown != expected).sum())
        state = getattr(w, "_shown", {}).get("current")
        state_ok = state is None or state == ("preview", (ix, iy))
        w.hover = False
        return {
            "image_hw": [H, W],
            "display_hw": [dh, dw],
            "events": int(n),
            "interval_s": interval,
            "deliver_s": t_delivered,
            "handler_ms_per_event": 1000 * t_delivered / n if not interval else None,
            "events_pending_after_last": 0,  # delivered synchronously: each handler returned before the next event
            "time_to_idle_after_last_event_s": t_idle - t_delivered,
            "total_s": t_idle,
            "previews_computed": int(previews),
            "previews_drawn": len(drawn),
            "previews_per_s": previews / t_idle if t_idle > 0 else None,
            "previews_drawn_per_s": len(drawn) / t_idle if t_idle > 0 else None,
            "last_pointer_image_xy": [ix, iy],
            "final_mask_pixels_expected": int(expected.sum()),
            "final_mismatch_pixels": mismatch,
            "final_state_recorded": repr(state),
            "final_state_correct": bool(previews > 0 and len(drawn) > 0 and mismatch == 0 and state_ok),
        }

    def _growth(self, out: dict) -> None:
        sizes = list(out.get("sizes", {}).values())
        px = np.array([e["image_hw"][0] * e["image_hw"][1] for e in sizes], float)
        ours = np.array([e["ours_median_ms"] for e in sizes], float)
        base = np.array([e["baseline_median_ms"] for e in sizes], float)
        if len(sizes) >= 2 and (ours > 0).all() and (base > 0).all():
            out["growth_exponent_ours"] = float(np.polyfit(np.log(px), np.log(ours), 1)[0])
            out["growth_exponent_baseline"] = float(np.polyfit(np.log(px), np.log(base), 1)[0])
            out["pixels_ratio_largest_smallest"] = float(px[-1] / px[0])
            out["ours_ratio_largest_smallest"] = float(ours[-1] / ours[0])

    def _memory_hit(self, out: dict, seg: Any) -> None:
        h, w = self.cfg["encode_hw"]
        a, b = make_scene(h, w, seed=100), make_scene(h, w, seed=101 if self.reps > 1 else 10)
        seg.set_image(b)
        hits0 = seg.stats.get("memory_hits", 0)
        calls0 = seg.stats.get("encoder_calls", 0)
        times = []
        for r in range(max(5, self.click_reps)):
            t = time.perf_counter()
            seg.set_image(a if r % 2 == 0 else b)
            times.append(time.perf_counter() - t)
        out["memory_hit"] = {
            "image_hw": [h, w],
            "ms": [x * 1000 for x in times],
            "median_ms": _median(times) * 1000,
            "min_ms": min(times) * 1000,
            "memory_hits": seg.stats.get("memory_hits", 0) - hits0,
            "encoder_calls": seg.stats.get("encoder_calls", 0) - calls0,
        }
        big = make_scene(*self.cfg["click_hw"][-1], seed=10 + len(self.cfg["click_hw"]) - 1)
        times = []
        for r in range(3):
            seg.set_image(a)
            t = time.perf_counter()
            seg.set_image(big)
            times.append(time.perf_counter() - t)
        out["memory_hit_largest"] = {"image_hw": list(big.shape[:2]), "median_ms": _median(times) * 1000}
        _log(f"memory hit {out['memory_hit']['median_ms']:.2f} ms ({h}x{w}), {out['memory_hit_largest']['median_ms']:.1f} ms ({big.shape[0]}x{big.shape[1]})")

    def _subprocesses(self, res: dict, threads: int) -> None:
        h, w = self.cfg["encode_hw"]
        common = {"model": self.cfg["model"], "hw": [h, w], "threads": threads, "precision": self.precision}
        _log("disk hit in a new process ...")
        disk = _run_child("disk", {**common, "seed": 100, "cache_dir": self.cache_dir}, self.timeout)
        res["cache"]["disk_hit"] = {
            "image_hw": [h, w],
            "set_image_ms": disk["set_image_s"] * 1000,
            "encoder_calls": disk["stats"].get("encoder_calls"),
            "disk_hits": disk["stats"].get("disk_hits"),
            "import_s": disk["import_s"],
            "model_build_s": disk["build_s"],
            "process_wall_s": disk["process_wall_s"],
            "fingerprint_ms": disk["fingerprint_s"] * 1000 if "fingerprint_s" in disk else None,
            "set_image_fingerprint_known_ms": disk["set_image_fingerprint_known_s"] * 1000,
            "peak_rss_mb": disk["peak_rss_mb"],
            "mode": disk["mode"],
        }
        _log(f"disk hit: set_image {disk['set_image_s'] * 1000:.1f} ms, encoder calls {disk['stats'].get('encoder_calls')}")
        _log("first encode in a fresh process ...")
        fresh = _run_child("fresh", {**common, "seed": 900}, self.timeout)
        res["encode"]["fresh_process"] = {
            "image_hw": [h, w],
            "first_set_image_s": fresh["set_image_s"],
            "encoder_s": fresh["stats"].get("last_encode_s"),
            "encoder_calls": fresh["stats"].get("encoder_calls"),
            "import_s": fresh["import_s"],
            "model_build_s": fresh["build_s"],
            "process_wall_s": fresh["process_wall_s"],
            "peak_rss_mb": fresh["peak_rss_mb"],
            "rss_model_ready_mb": fresh.get("rss_model_ready_mb"),
            "mode": fresh["mode"],
        }
        _log(f"fresh process: first set_image {fresh['set_image_s']:.2f} s")


# ====================================================================== targets and report
def evaluate_targets(res: dict) -> list[dict[str, Any]]:
    """Each target: name, value, target text, pass (True/False/None when not measured)."""
    out: list[dict[str, Any]] = []

    def add(name: str, value: Any, target: str, ok: bool | None) -> None:
        out.append({"name": name, "value": value, "target": target, "pass": ok})

    er = res["encode"].get("ratio")
    add("encode / official set_image (warm)", er, f"<= {TARGETS['encode_ratio']}", None if er is None else er <= TARGETS["encode_ratio"])
    sizes = res["click"].get("sizes", {})
    tgt = SIZES[res["meta"]["size"]]["target_hw"]
    key = f"{tgt[1]}x{tgt[0]}"
    r = sizes.get(key, {}).get("ratio")
    add(f"click->overlay / baseline at {key}", r, f"<= {TARGETS['click_ratio']}", None if r is None else r <= TARGETS["click_ratio"])
    g = res["click"].get("growth_exponent_ours")
    add("click->overlay growth exponent vs image pixels", g, f"< {TARGETS['growth_exponent']:g} (sub-linear)", None if g is None else g < TARGETS["growth_exponent"])
    for k, e in res["bytes"].get("sizes", {}).items():
        br = e.get("ratio")
        add(f"bytes per mask update / raw RGBA frame at {k}", br, f"<= {TARGETS['bytes_ratio']:.0%}", None if br is None else br <= TARGETS["bytes_ratio"])
    mh = res["cache"].get("memory_hit", {}).get("median_ms")
    add("cache memory hit (ms)", mh, f"<= {TARGETS['memory_hit_ms']:g} ms", None if mh is None else mh <= TARGETS["memory_hit_ms"])
    dh = res["cache"].get("disk_hit", {})
    dm = dh.get("set_image_ms")
    add("cache disk hit, new process (ms)", dm, f"<= {TARGETS['disk_hit_ms']:g} ms", None if dm is None else dm <= TARGETS["disk_hit_ms"])
    add("disk hit encoder calls", dh.get("encoder_calls"), "== 0", None if dh.get("encoder_calls") is None else dh["encoder_calls"] == 0)
    st = res["storm"]
    ps = st.get("previews_per_s")
    add("pointer storm previews/s", ps, f">= {TARGETS['previews_per_s']:g}/s", None if ps is None else ps >= TARGETS["previews_per_s"])
    fc = st.get("final_state_correct")
    add("pointer storm final state correct", fc, "last preview = last pointer position", fc)
    pp = st.get("paced", {}).get("previews_per_s")
    add("pointer storm (paced 120 Hz) previews/s", pp, f">= {TARGETS['previews_per_s']:g}/s", None if pp is None else pp >= TARGETS["previews_per_s"])
    pd = st.get("paced", {}).get("previews_drawn_per_s")
    add("pointer storm (paced 120 Hz) previews drawn/s", pd, f">= {TARGETS['previews_per_s']:g}/s (what the user sees)", None if pd is None else pd >= TARGETS["previews_per_s"])
    pc = st.get("paced", {}).get("final_state_correct")
    add("pointer storm (paced) final state correct", pc, "last preview = last pointer position", pc)
    return out


def _f(v: Any, nd: int = 1, unit: str = "") -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v}{unit}"
    return f"{v:.{nd}f}{unit}"


def _pass(ok: bool | None) -> str:
    return "–" if ok is None else ("PASS" if ok else "MISS")


def format_table(res: dict) -> str:
    """The results as a Markdown table: metric, baseline, ours, ratio, target, result."""
    tg = {t["name"]: t for t in res.get("targets", [])}
    rows: list[tuple[str, str, str, str, str, str]] = []

    def t_of(name: str) -> tuple[str, str]:
        t = tg.get(name)
        return (t["target"], _pass(t["pass"])) if t else ("–", "–")

    enc = res["encode"]
    eh = enc.get("image_hw", ["?", "?"])
    target, ok = t_of("encode / official set_image (warm)")
    rows.append((f"encode {eh[1]}x{eh[0]}, warm (s)", _f(enc.get("baseline_median_s"), 2), _f(enc.get("ours_median_s"), 2), _f(enc.get("ratio"), 2, "×"), target, ok))
    fp = enc.get("fresh_process", {})
    if fp:
        rows.append(("encode, first call in a fresh process (s)", "–", _f(fp.get("first_set_image_s"), 2), "–", "–", "–"))
        rows.append(("  fresh process: import / model build (s)", "–", f"{_f(fp.get('import_s'), 2)} / {_f(fp.get('model_build_s'), 2)}", "–", "–", "–"))
    first = enc.get("first_call_in_process_s", {})
    if first:
        rows.append(("encode, first call in this process (s)", _f(first.get("baseline"), 2), _f(first.get("ours"), 2), _f(_ratio(first.get("ours"), first.get("baseline")), 2, "×"), "–", "–"))
    tgt = SIZES[res["meta"]["size"]]["target_hw"]
    for k, e in res["click"].get("sizes", {}).items():
        name = f"click->overlay / baseline at {k}"
        target, ok = t_of(name) if k == f"{tgt[1]}x{tgt[0]}" else ("–", "–")
        d = e["display_hw"]
        rows.append((f"click → overlay {k} (display {d[1]}x{d[0]}) (ms)", _f(e["baseline_median_ms"]), _f(e["ours_median_ms"]), _f(e.get("ratio"), 3, "×"), target, ok))
        rows.append(("  of which Segmenter.predict (decoder) (ms)", "–", _f(e.get("segmenter_decode_median_ms")), "–", "–", "–"))
        if e.get("baseline_main_thread_median_ms") is not None:
            rows.append(("  baseline called on the main thread instead (ms)", _f(e["baseline_main_thread_median_ms"]), "–", _f(_ratio(e["ours_median_ms"], e["baseline_main_thread_median_ms"]), 3, "×"), "–", "–"))
    g = res["click"].get("growth_exponent_ours")
    if g is not None:
        target, ok = t_of("click->overlay growth exponent vs image pixels")
        rows.append(("click → overlay growth exponent (time ∝ pixels^k)", _f(res["click"].get("growth_exponent_baseline"), 2), _f(g, 2), "–", target, ok))
    for k, e in res["bytes"].get("sizes", {}).items():
        target, ok = t_of(f"bytes per mask update / raw RGBA frame at {k}")
        rows.append(
            (
                f"bytes per mask update {k} (mask {100 * e['mask_fraction_display']:.0f} % of display)",
                f"{e['raw_rgba_frame_bytes']} (raw RGBA)",
                _f(e.get("bytes_per_update"), 0),
                _f(100 * e["ratio"] if e.get("ratio") is not None else None, 2, " %"),
                target,
                ok,
            )
        )
        ref = e.get("reference_smooth_mask_bytes")
        if ref:
            rows.append((f"  reference: smooth 20 % ellipse mask, same render path, {k}", "–", str(ref), _f(100 * ref / e["raw_rgba_frame_bytes"], 2, " %"), "–", "–"))
    mh = res["cache"].get("memory_hit", {})
    if mh:
        target, ok = t_of("cache memory hit (ms)")
        hw = mh["image_hw"]
        rows.append((f"cache memory hit {hw[1]}x{hw[0]} (ms; min {_f(mh.get('min_ms'), 2)})", "–", _f(mh.get("median_ms"), 2), "–", target, ok))
    ml = res["cache"].get("memory_hit_largest", {})
    if ml:
        hw = ml["image_hw"]
        rows.append((f"cache memory hit {hw[1]}x{hw[0]} (ms, info)", "–", _f(ml.get("median_ms"), 1), "–", "–", "–"))
    dh = res["cache"].get("disk_hit", {})
    if dh:
        target, ok = t_of("cache disk hit, new process (ms)")
        rows.append(("cache disk hit, new process: set_image (ms)", "–", _f(dh.get("set_image_ms"), 1), "–", target, ok))
        target, ok = t_of("disk hit encoder calls")
        rows.append(("  disk hit: encoder calls", "–", _f(dh.get("encoder_calls")), "–", target, ok))
        rows.append(("  disk hit: of which weight fingerprint (ms)", "–", _f(dh.get("fingerprint_ms"), 1), "–", "–", "–"))
        rows.append(("  disk hit: set_image with fingerprint known (ms)", "–", _f(dh.get("set_image_fingerprint_known_ms"), 1), "–", "–", "–"))
        rows.append(("  new process: import / model build (s)", "–", f"{_f(dh.get('import_s'), 2)} / {_f(dh.get('model_build_s'), 2)}", "–", "–", "–"))
    st = res["storm"]
    if st:
        hw = st["image_hw"]
        target, ok = t_of("pointer storm previews/s")
        rows.append((f"pointer storm {st['events']} moves as fast as possible, {hw[1]}x{hw[0]}: previews/s", "–", _f(st.get("previews_per_s"), 1), "–", target, ok))
        rows.append(("  storm: previews computed / drawn", "–", f"{st['previews_computed']} / {st['previews_drawn']}", "–", "–", "–"))
        rows.append(("  storm: delivery (s) / handler per event (ms)", "–", f"{_f(st['deliver_s'], 2)} / {_f(st['handler_ms_per_event'], 2)}", "–", "–", "–"))
        rows.append(("  storm: backlog — idle after last event (s)", "–", _f(st.get("time_to_idle_after_last_event_s"), 2), "–", "–", "–"))
        target, ok = t_of("pointer storm final state correct")
        rows.append(("  storm: final state correct", "–", _f(st.get("final_state_correct")), "–", target, ok))
        pa = st.get("paced")
        if pa:
            target, ok = t_of("pointer storm (paced 120 Hz) previews/s")
            rows.append((f"pointer storm paced at 120 Hz ({pa['events']} moves, {pa['deliver_s']:.1f} s): previews/s", "–", _f(pa.get("previews_per_s"), 1), "–", target, ok))
            rows.append(("  paced: previews computed / drawn; idle after last (s)", "–", f"{pa['previews_computed']} / {pa['previews_drawn']}; {_f(pa['time_to_idle_after_last_event_s'], 2)}", "–", "–", "–"))
            target, ok = t_of("pointer storm (paced 120 Hz) previews drawn/s")
            rows.append(("  paced: previews drawn/s", "–", _f(pa.get("previews_drawn_per_s"), 1), "–", target, ok))
            target, ok = t_of("pointer storm (paced) final state correct")
            rows.append(("  paced: final state correct", "–", _f(pa.get("final_state_correct")), "–", target, ok))
    mem = res.get("memory", {})
    if mem:
        rows.append(("peak memory ru_maxrss, this process (both models) (MB)", "–", _f(mem.get("ru_maxrss_mb"), 0), "–", "–", "–"))
        rows.append(("  peak RSS: fresh-process encode / disk-hit process (MB)", "–", f"{_f(mem.get('fresh_process_peak_rss_mb'), 0)} / {_f(mem.get('disk_hit_process_peak_rss_mb'), 0)}", "–", "–", "–"))
        if mem.get("fresh_process_rss_model_ready_mb") is not None:
            rows.append(("  RSS of the fresh process with the model ready, before encoding (MB)", "–", _f(mem.get("fresh_process_rss_model_ready_mb"), 0), "–", "–", "–"))
    head = ("Metric", "Baseline", "Ours", "Ratio", "Target", "Result")
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def format_section(res: dict) -> str:
    meta = res["meta"]
    m = meta["machine"]
    ram = f"{m['ram_bytes'] / 2**30:.1f} GiB RAM" if m.get("ram_bytes") else "RAM unknown"
    load = lambda v: "/".join(f"{x:.1f}" for x in v) if v else "?"  # noqa: E731
    lines = [
        f"## {meta['date']} — `python -m benchmarks.bench --size {meta['size']}` ({meta['model']}, reps {meta['reps']}, clicks ×{meta['click_reps']})",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores ({', '.join(m.get('simd') or []) or 'no AVX2 reported'}), {ram}; "
        f"torch {m['torch']} ({m['torch_threads']} threads), Python {m['python']}, {m['platform']}; git {m.get('git') or '?'}",
        f"- Load average at start / end: {load(m.get('loadavg_start'))} / {load(meta.get('loadavg_end'))} (shared machine: timings are noisy)",
        f"- Segmenter: {_describe_mode(meta['segmenter_mode'])}",
        f"- Precision: {meta.get('precision', {}).get('asked', 'auto')} -> {meta.get('precision', {}).get('resolved', '?')}; CPU native bf16: {meta.get('precision', {}).get('cpu_bf16', '?')}",
        f"- Weights: {meta['weights']}; display size {meta['display_size']} px; total run {meta.get('total_s', 0):.0f} s",
        "",
        format_table(res),
        "",
    ]
    return "\n".join(lines)


def append_results(res: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        path.write_text(
            "# Benchmark results\n\nAppended by `python -m benchmarks.bench` (see `benchmarks/README.md`). "
            "Newest last.\n\n"
        )
    with path.open("a") as f:
        f.write("\n" + format_section(res))


# ====================================================================== entry points
def run(size: str = "full", reps: int | None = None, storm_events: int = 500, precision: str = "auto") -> dict[str, Any]:
    """Run the whole benchmark in this process (plus two child processes); returns the results."""
    bench = _Bench(size, reps, storm_events, precision)
    try:
        return bench.run()
    finally:
        bench.tmp.cleanup()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--size", choices=sorted(SIZES), default="full", help="full: vit_b, real sizes; tiny: test model, seconds")
    p.add_argument("--reps", type=int, default=None, help="repetitions of warm encodes (clicks and cache hits: 3x this)")
    p.add_argument("--json", dest="json_path", default=None, help="write all results as JSON here")
    p.add_argument("--no-append", action="store_true", help=f"do not append to {DEFAULT_RESULTS.relative_to(REPO)}")
    p.add_argument("--results", default=str(DEFAULT_RESULTS), help="Markdown file the dated section is appended to")
    p.add_argument("--storm-events", type=int, default=500, help="pointer moves in the storm")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="our side's precision (the baseline is always fp32)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--child-args", default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(_child(a.child, json.loads(a.child_args))))
        return 0
    if a.reps is not None and a.reps < 1:
        p.error("--reps must be at least 1")
    if a.storm_events < 2:
        p.error("--storm-events must be at least 2")
    res = run(a.size, a.reps, a.storm_events, a.precision)
    print(format_section(res))
    if a.json_path:
        Path(a.json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json_path).write_text(json.dumps(res, indent=2, default=str))
    if not a.no_append:
        append_results(res, Path(a.results))
        _log(f"appended to {a.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
