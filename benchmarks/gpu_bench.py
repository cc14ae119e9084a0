#!/usr/bin/env python
"""The GPU section of the benchmark: vit_b / vit_h encode, decoder, everything mode, parity.

    python benchmarks/gpu_bench.py                       # CUDA, vit_b and vit_h, <= ~6 min
    python benchmarks/gpu_bench.py --device cpu --dry-run   # tiny model, seconds (tested)
    bash benchmarks/gpu.sh                               # install + run on a bare GPU machine

For each model (random weights, ``random_sam(model, seed=0)`` built on the device; one
1024x768 scene):

* encode: ``SamPredictor.set_image`` (official, fp32) vs ``Segmenter.set_image`` with
  ``precision="fp32"`` (the fast encoder), ``"bf16"`` (linear weights converted once, as
  ``load_sam`` does) and bf16 + ``torch.compile`` (``accelerate(..., compile=True)``; the
  first, compiling call is reported on its own). Times are wall clock around the call with
  ``torch.cuda.synchronize()``; medians of ``--reps``.
* decoder: ``Segmenter.predict`` (1 click, 3 masks, display masks at 800x600) in fp32 and
  bf16 vs ``SamPredictor.predict``.
* everything mode: ``Segmenter.segment_everything(points_per_side=32)`` when the Segmenter
  has it (skipped, and said so, when it does not).
* parity: masks of the fast fp32 Segmenter vs ``SamPredictor``, and of bf16 vs exact fp32,
  over ``--prompts`` prompts (points, boxes, points + box): median / min IoU, max score diff.

Results: ``gpu_results.json`` and ``gpu_results.md`` in ``--out`` (default ``$OUT``, else
``./gpu_out``); the markdown is printed as well. ``--budget-s`` (default 400) makes later,
optional steps (vit_h compile, everything mode) skip themselves when time runs short.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

_T0 = time.perf_counter()


def _log(msg: str) -> None:
    print(f"[gpu_bench {time.perf_counter() - _T0:6.1f} s] {msg}", file=sys.stderr, flush=True)


def _elapsed() -> float:
    return time.perf_counter() - _T0


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        import torch

        self.torch = torch
        self.args = args
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.reps = 1 if args.dry_run else args.reps
        self.out_dir: Path | None = getattr(args, "out_dir", None)
        self.res: dict[str, Any] = {"meta": self._meta(), "models": {}}

    # ------------------------------------------------------------------ helpers
    def _meta(self) -> dict[str, Any]:
        torch = self.torch
        meta: dict[str, Any] = {
            "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "device": str(self.device),
            "dry_run": bool(self.args.dry_run),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "host_cpus": os.cpu_count(),
        }
        if self.cuda:
            props = torch.cuda.get_device_properties(self.device)
            meta.update(
                gpu=props.name,
                gpu_memory_gib=round(props.total_memory / 2**30, 1),
                capability=".".join(map(str, torch.cuda.get_device_capability(self.device))),
                cuda=torch.version.cuda,
            )
        try:
            import segment_anything

            meta["segment_anything"] = getattr(segment_anything, "__file__", "?")
        except ImportError:  # pragma: no cover - checked by gpu.sh
            meta["segment_anything"] = None
        return meta

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def timed(self, f: Callable[[], Any], reps: int) -> dict[str, Any]:
        """Median / min wall seconds of ``f`` over ``reps`` calls (synchronised)."""
        ts = []
        for _ in range(reps):
            self.sync()
            t = time.perf_counter()
            f()
            self.sync()
            ts.append(time.perf_counter() - t)
        return {"median_s": float(statistics.median(ts)), "min_s": float(min(ts)), "n": reps}

    def build(self, name: str):
        from sam_widget.engine.models import TINY_TEST_CONFIG, random_sam

        cfg = TINY_TEST_CONFIG if self.args.dry_run else name
        with self.torch.device(self.device):  # initialise on the device (vit_h: 632 M parameters)
            sam = random_sam(cfg, seed=0)
        return sam.to(self.device).eval()

    def scene(self) -> np.ndarray:
        from benchmarks.bench import make_scene

        h, w = (96, 128) if self.args.dry_run else (768, 1024)
        return make_scene(h, w, seed=7)

    # ------------------------------------------------------------------ sections
    def run(self) -> dict[str, Any]:
        """Every model without compiling first, then the compiles (the slowest, optional part),
        writing the results after each step so that a run cut short still leaves figures."""
        kept: dict[str, Any] = {}
        for name in self.args.models:
            entry: dict[str, Any] = {}
            self.res["models"][name] = entry
            try:
                kept[name] = self.model(name, entry)
            except Exception as exc:  # keep the other model's figures; say what failed
                entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["traceback"] = traceback.format_exc()[-4000:]
                _log(f"{name}: FAILED {entry['error']}")
            self.save()
        for name, state in kept.items():
            try:
                self.compiled(name, self.res["models"][name], *state)
            except Exception as exc:
                self.res["models"][name]["encode"]["segmenter_bf16_compiled"] = {"error": f"{type(exc).__name__}: {exc}"}
                _log(f"{name}: compile FAILED {exc}")
            self.save()
            del state
        kept.clear()
        if self.cuda:
            self.torch.cuda.empty_cache()
        self.res["meta"]["total_s"] = _elapsed()
        self.save()
        return self.res

    def save(self) -> None:
        self.res["meta"]["elapsed_s"] = _elapsed()
        if self.out_dir is not None:
            (self.out_dir / "gpu_results.json").write_text(json.dumps(self.res, indent=1, default=str))
            (self.out_dir / "gpu_results.md").write_text(format_markdown(self.res))

    def model(self, name: str, out: dict[str, Any]) -> None:
        import warnings

        from segment_anything import SamPredictor

        from sam_widget.engine.fast import accelerate
        from sam_widget.engine.segmenter import Segmenter

        torch = self.torch
        img = self.scene()
        H, W = img.shape[:2]
        t = time.perf_counter()
        sam = self.build(name)
        self.sync()
        out["build_s"] = time.perf_counter() - t
        out["parameters_m"] = sum(p.numel() for p in sam.parameters()) / 1e6
        out["image_hw"] = [H, W]
        _log(f"{name}: built in {out['build_s']:.1f} s ({out['parameters_m']:.0f} M parameters)")

        # ---- fp32: official vs fast, and the exact reference for parity
        pred = SamPredictor(sam)
        fast32 = Segmenter(sam, precision="fp32", memory_cache_bytes=0)
        exact = Segmenter(sam, exact=True, memory_cache_bytes=0)
        pred.set_image(img)  # warm-up
        fast32.set_image(img)
        enc: dict[str, Any] = {}
        enc["official_fp32"] = self.timed(lambda: pred.set_image(img), self.reps)
        enc["segmenter_fp32"] = self.timed(lambda: fast32.set_image(img), self.reps)
        _log(f"{name}: encode official {enc['official_fp32']['median_s'] * 1000:.1f} ms, fast fp32 {enc['segmenter_fp32']['median_s'] * 1000:.1f} ms")
        exact.set_image(img)
        prompts = _prompts(self.args.prompts, H, W)
        out["parity_fast_fp32_vs_samPredictor"] = _agreement_predictor(pred, fast32, prompts)
        _log(f"{name}: parity fast fp32 vs SamPredictor {_brief(out['parity_fast_fp32_vs_samPredictor'])}")

        click = [[0.5 * W, 0.5 * H]]
        disp = (max(1, round(H * 600 / 768)), max(1, round(W * 600 / 768))) if not self.args.dry_run else (60, 80)
        dec: dict[str, Any] = {}
        pc, pl = np.array(click), np.array([1])
        pred.predict(point_coords=pc, point_labels=pl)
        dec["official_fp32"] = self.timed(lambda: pred.predict(point_coords=pc, point_labels=pl), 3 * self.reps)
        fast32.predict(points=click, labels=[1], display_size=disp)
        dec["segmenter_fp32"] = self.timed(lambda: fast32.predict(points=click, labels=[1], display_size=disp), 3 * self.reps)
        pred = None  # (frees the official predictor's embedding)
        ref_preds = [exact.predict(**p) for p in prompts]
        exact = fast32 = None

        # ---- bf16: the weights converted once (what load_sam does), then compiled
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            accelerate(sam, precision="bf16")
        bf16 = Segmenter(sam, precision="bf16", memory_cache_bytes=0)
        bf16.set_image(img)
        enc["segmenter_bf16"] = self.timed(lambda: bf16.set_image(img), self.reps)
        out["parity_bf16_vs_exact_fp32"] = _agreement(ref_preds, bf16, prompts)
        _log(f"{name}: encode bf16 {enc['segmenter_bf16']['median_s'] * 1000:.1f} ms; parity bf16 vs exact {_brief(out['parity_bf16_vs_exact_fp32'])}")
        bf16.predict(points=click, labels=[1], display_size=disp)
        dec["segmenter_bf16"] = self.timed(lambda: bf16.predict(points=click, labels=[1], display_size=disp), 3 * self.reps)
        if self.cuda:
            out["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated(self.device) / 2**30

        # ---- everything mode (the API of issue #16, when present)
        if not hasattr(bf16, "segment_everything"):
            out["everything"] = {"skipped": "Segmenter has no segment_everything (issue #16 not merged)"}
        elif _elapsed() > self.args.budget_s * 0.85:
            out["everything"] = {"skipped": f"time budget ({_elapsed():.0f} of {self.args.budget_s:.0f} s used)"}
        else:
            pps = 4 if self.args.dry_run else 32
            t = time.perf_counter()
            result = bf16.segment_everything(points_per_side=pps)
            self.sync()
            first = time.perf_counter() - t
            timing = self.timed(lambda: bf16.segment_everything(points_per_side=pps), 1 if self.args.dry_run else 2)
            out["everything"] = {"points_per_side": pps, "first_s": first, **timing, "masks": _count(result)}
        _log(f"{name}: everything {out['everything']}")

        enc["segmenter_bf16_compiled"] = {"skipped": "not reached"}
        base = enc["official_fp32"]["median_s"]
        for v in enc.values():
            if "median_s" in v:
                v["ratio_vs_official"] = v["median_s"] / base
        base = dec["official_fp32"]["median_s"]
        for v in dec.values():
            v["ratio_vs_official"] = v["median_s"] / base
        out["encode"], out["decoder"] = enc, dec
        out["display_hw"] = list(disp)
        return sam, bf16, img, ref_preds, prompts

    def compiled(self, name: str, out: dict[str, Any], sam: Any, bf16: Any, img: np.ndarray, ref_preds: list, prompts: list) -> None:
        """bf16 + ``torch.compile`` (``accelerate(..., compile=True)``), if time allows."""
        from sam_widget.engine.fast import accelerate

        enc = out["encode"]
        remaining = self.args.budget_s - _elapsed()
        need = 240 if name == "vit_h" else 120  # a first compile: ~1-3 min (not measured on an H200 yet)
        if self.args.no_compile or self.args.dry_run:
            enc["segmenter_bf16_compiled"] = {"skipped": "dry run" if self.args.dry_run else "--no-compile"}
            return
        if remaining < need:
            enc["segmenter_bf16_compiled"] = {"skipped": f"time budget ({remaining:.0f} s left, {need} s wanted)"}
            _log(f"{name}: compile skipped ({remaining:.0f} s left)")
            return
        report = accelerate(sam, precision="bf16", compile=True)
        _log(f"{name}: compiling (first call) ...")
        t = time.perf_counter()
        bf16.set_image(img)
        self.sync()
        first = time.perf_counter() - t
        timing = self.timed(lambda: bf16.set_image(img), self.reps)
        timing["ratio_vs_official"] = timing["median_s"] / enc["official_fp32"]["median_s"]
        enc["segmenter_bf16_compiled"] = {
            **timing,
            "first_call_s": first,
            "compiled": bool(report.compile and report.compile_error is None),
            "compile_error": report.compile_error,
        }
        out["parity_bf16_compiled_vs_exact_fp32"] = _agreement(ref_preds, bf16, prompts[: max(3, len(prompts) // 3)])
        _log(f"{name}: bf16 + compile {timing['median_s'] * 1000:.1f} ms (first call {first:.1f} s)")


# ---------------------------------------------------------------------- prompts and parity
def _prompts(n: int, H: int, W: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        bw, bh = rng.uniform(0.15, 0.7) * W, rng.uniform(0.15, 0.7) * H
        x0, y0 = rng.uniform(0, W - bw), rng.uniform(0, H - bh)
        box = [x0, y0, x0 + bw, y0 + bh]
        pt = [[rng.uniform(0, W), rng.uniform(0, H)]]
        out.append(
            [
                {"points": pt, "labels": [1], "multimask": True},
                {"box": box, "multimask": False},
                {"box": box, "points": [[x0 + bw / 2, y0 + bh / 2]], "labels": [1], "multimask": False},
            ][i % 3]
        )
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _summary(ious: list[float], diffs: list[float]) -> dict[str, Any]:
    return {
        "masks": len(ious),
        "median_iou": float(np.median(ious)),
        "min_iou": float(np.min(ious)),
        "max_score_diff": float(max(diffs)),
    }


def _agreement(refs: list[Any], seg: Any, prompts: list[dict[str, Any]]) -> dict[str, Any]:
    ious, diffs = [], []
    for ref, p in zip(refs, prompts):
        got = seg.predict(**p)
        ious += [_iou(ref.masks[i], got.masks[i]) for i in range(len(ref))]
        diffs.append(float(np.abs(ref.scores - got.scores).max()))
    return _summary(ious, diffs)


def _agreement_predictor(pred: Any, seg: Any, prompts: list[dict[str, Any]]) -> dict[str, Any]:
    ious, diffs = [], []
    for p in prompts:
        masks, scores, _ = pred.predict(
            point_coords=None if "points" not in p else np.asarray(p["points"], float),
            point_labels=None if "labels" not in p else np.asarray(p["labels"]),
            box=None if "box" not in p else np.asarray(p["box"], float),
            multimask_output=p["multimask"],
        )
        got = seg.predict(**p)
        ious += [_iou(masks[i], got.masks[i]) for i in range(len(masks))]
        diffs.append(float(np.abs(scores - got.scores).max()))
    return _summary(ious, diffs)


def _brief(a: dict[str, Any]) -> str:
    return f"median IoU {a['median_iou']:.4f}, min {a['min_iou']:.4f}, max score diff {a['max_score_diff']:.2e}"


def _count(result: Any) -> int | None:
    for attr in ("masks", "objects", "records"):
        v = getattr(result, attr, None)
        if v is not None:
            try:
                return len(v)
            except TypeError:
                pass
    try:
        return len(result)
    except TypeError:
        return None


# ---------------------------------------------------------------------- report
def _ms(v: dict[str, Any] | None) -> str:
    if not v or "median_s" not in v:
        return (v or {}).get("skipped", "–") if isinstance(v, dict) else "–"
    return f"{v['median_s'] * 1000:.1f}"


def format_markdown(res: dict[str, Any]) -> str:
    m = res["meta"]
    gpu = f"{m.get('gpu', m['device'])} ({m.get('gpu_memory_gib', '?')} GiB, capability {m.get('capability', '–')}, CUDA {m.get('cuda', '–')})"
    lines = [
        f"## {m['date']} — `benchmarks/gpu.sh` ({'dry run, tiny model' if m['dry_run'] else 'random weights, seed 0'})",
        "",
        f"- Device: {gpu}; torch {m['torch']}, Python {m['python']}, {m['host_cpus']} host CPUs; total {m.get('total_s', 0):.0f} s",
        "",
        "| model | encode (ms): official fp32 | fast fp32 | bf16 | bf16 + compile (first call) | decoder (ms): official | fp32 | bf16 | everything (s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, e in res["models"].items():
        if "error" in e:
            lines.append(f"| {name} | failed: {e['error']} | | | | | | | |")
            continue
        enc, dec = e["encode"], e["decoder"]
        comp = enc.get("segmenter_bf16_compiled", {})
        comp_s = _ms(comp) if "median_s" in comp else comp.get("skipped", comp.get("error", "–"))
        if "median_s" in comp:
            comp_s += f" ({comp['ratio_vs_official']:.2f}×; first call {comp['first_call_s']:.0f} s)"
            if comp.get("compile_error"):
                comp_s += f"; compile failed, eager: {comp['compile_error'][:80]}"
        ev = e.get("everything", {})
        ev_s = f"{ev['median_s']:.2f} ({ev.get('masks')} masks)" if "median_s" in ev else ev.get("skipped", "–")
        lines.append(
            f"| {name} | {_ms(enc['official_fp32'])} | {_ms(enc['segmenter_fp32'])} ({enc['segmenter_fp32']['ratio_vs_official']:.2f}×) | "
            f"{_ms(enc['segmenter_bf16'])} ({enc['segmenter_bf16']['ratio_vs_official']:.2f}×) | {comp_s} | "
            f"{_ms(dec['official_fp32'])} | {_ms(dec['segmenter_fp32'])} | {_ms(dec['segmenter_bf16'])} | {ev_s} |"
        )
    lines += ["", "| model | parity | masks | median IoU | min IoU | max score diff |", "|---|---|---|---|---|---|"]
    for name, e in res["models"].items():
        for key in ("parity_fast_fp32_vs_samPredictor", "parity_bf16_vs_exact_fp32", "parity_bf16_compiled_vs_exact_fp32"):
            a = e.get(key)
            if a:
                lines.append(f"| {name} | {key.replace('parity_', '')} | {a['masks']} | {a['median_iou']:.4f} | {a['min_iou']:.4f} | {a['max_score_diff']:.2e} |")
    mem = [f"{n}: {e['peak_gpu_memory_gib']:.2f} GiB" for n, e in res["models"].items() if "peak_gpu_memory_gib" in e]
    if mem:
        lines += ["", "Peak GPU memory (fp32 + bf16 phases): " + ", ".join(mem)]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--dry-run", action="store_true", help="tiny model, one rep, no compile: checks the script in seconds")
    ap.add_argument("--models", default="vit_b,vit_h", help="comma-separated: vit_b, vit_l, vit_h")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--prompts", type=int, default=30, help="prompts per parity check")
    ap.add_argument("--budget-s", type=float, default=400.0, help="skip optional steps once this much time is used")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--out", default=None, help="output directory (default: $OUT, else ./gpu_out)")
    a = ap.parse_args(argv)
    a.models = [m for m in a.models.split(",") if m]
    bad = [m for m in a.models if m not in ("vit_b", "vit_l", "vit_h")]
    if bad:
        ap.error(f"unknown models {bad}")
    if a.dry_run:
        a.prompts = min(a.prompts, 6)
    out_dir = Path(a.out or os.environ.get("OUT") or "gpu_out")
    out_dir.mkdir(parents=True, exist_ok=True)
    import torch

    if a.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_bench: CUDA is not available here; use --device cpu --dry-run to check the script.", file=sys.stderr)
        return 2
    a.out_dir = out_dir
    res = Bench(a).run()  # writes gpu_results.json / .md after every step
    print(format_markdown(res))
    _log(f"wrote {out_dir / 'gpu_results.json'} and {out_dir / 'gpu_results.md'}")
    return 1 if any("error" in e for e in res["models"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
