"""The shipped notebooks run top to bottom, headless (nbclient), without a single click."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
TINY_WEIGHTS = Path(__file__).resolve().parent.parent / "sam_widget" / "weights" / "tiny_shapes.pt"


def run_notebook(name: str, monkeypatch: pytest.MonkeyPatch, model: str | None) -> str:
    if model is None:
        monkeypatch.delenv("SAM_WIDGET_MODEL", raising=False)
    else:
        monkeypatch.setenv("SAM_WIDGET_MODEL", model)
    monkeypatch.setenv("MPLBACKEND", "agg")
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    text = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.get("output_type") != "error", f"{name}: {out.get('ename')}: {out.get('evalue')}"
            text.append(out.get("text", "") or str(out.get("data", {}).get("text/plain", "")))
    return "\n".join(text)


def test_quickstart_runs_and_the_mask_reaches_the_next_cell(monkeypatch):
    out = run_notebook("quickstart", monkeypatch, "random_tiny")
    assert "RANDOM weights" in out  # honest about what it shows
    area = int(re.search(r"area: (\d+) pixels", out).group(1))
    assert area > 0
    assert "masks: (1, 480, 640)" in out  # one committed object, full sample-image size
    assert re.search(r"bounding box \(x0, y0, x1, y1\): \(\d+, \d+, \d+, \d+\)", out)


def test_teaching_runs_with_a_random_tiny_model(monkeypatch):
    out = run_notebook("teaching", monkeypatch, "random_tiny")
    assert "selected candidate:" in out
    assert re.search(r"image encoder: 1 call\(s\)", out)  # encoded once, every prompt only decoded


@pytest.mark.skipif(not TINY_WEIGHTS.exists(), reason="tiny_shapes weights not built yet")
def test_teaching_runs_offline_by_default_and_finds_the_shape(monkeypatch):
    out = run_notebook("teaching", monkeypatch, None)
    assert "offline demo" in out
    true_ious = [float(v) for v in re.findall(r"true IoU ([0-9.]+)", out)]
    assert len(true_ious) == 3
    assert max(true_ious) >= 0.8  # a click inside a shape gives that shape
