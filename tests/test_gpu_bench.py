"""``benchmarks/gpu.sh``: the GPU benchmark script, exercised on the CPU with a tiny model.

The real run needs a CUDA machine (the lead runs it there); this checks that the script
installs nothing in a dry run, runs every section, and writes results an independent reader
(``json``) can read: both models, encode timings, parity figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_dry_run_on_the_cpu_writes_every_section(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(REPO))
    env.pop("OUT", None)
    proc = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu.sh"), "--dry-run", str(out), "--prompts", "3"],
        capture_output=True, text=True, timeout=600, env=env, cwd=str(tmp_path),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads((out / "gpu_results.json").read_text())
    assert res["meta"]["dry_run"] is True and res["meta"]["device"] == "cpu"
    assert set(res["models"]) == {"vit_b", "vit_h"}
    for name, m in res["models"].items():
        assert "error" not in m, m.get("traceback")
        for side in ("official_fp32", "segmenter_fp32", "segmenter_bf16"):
            assert m["encode"][side]["median_s"] > 0
        assert m["encode"]["segmenter_bf16_compiled"] == {"skipped": "dry run"}
        assert set(m["decoder"]) == {"official_fp32", "segmenter_fp32", "segmenter_bf16"}
        fast = m["parity_fast_fp32_vs_samPredictor"]
        assert fast["min_iou"] >= 0.999 and fast["max_score_diff"] <= 1e-3
        bf16 = m["parity_bf16_vs_exact_fp32"]
        assert bf16["masks"] >= 3 and bf16["median_iou"] >= 0.99 and bf16["min_iou"] >= 0.97
        assert "skipped" in m["everything"] or m["everything"]["median_s"] > 0
    md = (out / "gpu_results.md").read_text()
    assert "dry run, tiny model" in md and "| vit_b |" in md and "| vit_h |" in md
    assert "== done" in proc.stdout


def test_asking_for_cuda_without_a_gpu_says_how_to_check_the_script(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_bench.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert proc.returncode == 2 and "--device cpu --dry-run" in proc.stderr
