"""Batch runs answering mistakes: failed runs leave good files alone, bad settings are one
error at the call, stale or damaged results are recomputed. All in this process
(``scheduler="sync"``) with the shipped ``tiny_shapes`` model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam_widget import batch
from sam_widget.data import shapes_image

pytest.importorskip("distributed")

RUN = dict(model="tiny_shapes", scheduler="sync", progress=False)
AMG = dict(points_per_side=4, pred_iou_thresh=0.5, stability_score_thresh=0.5)


def _scenes(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"scene{i}.png"
        Image.fromarray(shapes_image(seed + i)[0]).save(p)
        paths.append(p)
    return paths


def _box_prompts(n: int) -> list[dict]:
    return [{"box": [10, 10, 60, 60], "label": "thing"} for _ in range(n)]


def test_a_run_in_which_every_image_fails_leaves_the_earlier_output_file_untouched(tmp_path):
    from pycocotools.coco import COCO

    _scenes(tmp_path / "imgs", 2)
    out = tmp_path / "out" / "keep.json"
    out.parent.mkdir()
    good = batch.segment(tmp_path / "imgs", _box_prompts(2), output=out, **RUN)
    assert good.count("done") == 2
    before = out.read_bytes()

    # a re-run over files that cannot be read: every image fails
    (tmp_path / "broken").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "broken" / name).write_bytes(b"not a png")
    bad = batch.segment(tmp_path / "broken", _box_prompts(2), output=out, **RUN)
    assert bad.count("failed") == 2
    assert out.read_bytes() == before  # the good file, byte for byte
    assert bad.output is None and "not written" in str(bad)
    assert len(COCO(str(out)).dataset["images"]) == 2
