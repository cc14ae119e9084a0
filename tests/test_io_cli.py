"""Command line of the io room: ``sam-widget export`` (a saved session to COCO / PNG /
CSV with no model loaded, torch never imported) and ``sam-widget segment --coco``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pycocotools.coco import COCO

import sam_widget.io as sio
from sam_widget import cli
from sam_widget.data import shapes_image
from sam_widget.engine.segmenter import Segmenter

REPO = Path(__file__).resolve().parents[1]


def session_file(tmp_path):
    img, masks = shapes_image(1, (90, 120), 5)
    Image.fromarray(img).save(tmp_path / "a.png")
    objs = [{"id": i + 1, "label": ["cell", "cell", "debris"][i % 3], "color": (9, 9, 9), "mask": m,
             "score": 0.8, "prompts": {"points": [(5, 6)], "labels": [1], "box": None}} for i, m in enumerate(masks)]
    images = [
        {"file_name": "a.png", "height": 90, "width": 120, "path": tmp_path / "a.png", "objects": objs},
        {"file_name": "array_1", "height": 40, "width": 50, "path": None,
         "objects": [{"id": 1, "label": "cell", "color": (1, 1, 1), "mask": np.pad(np.ones((10, 10), bool), ((15, 15), (20, 20))),
                      "score": None, "prompts": None}]},
    ]
    path = tmp_path / "work.json"
    sio.write_session(path, images, model={"name": "tiny_shapes"})
    return path, img, masks


def test_export_in_a_fresh_process_writes_coco_png_csv_without_importing_torch(tmp_path):
    work, img, masks = session_file(tmp_path)
    code = (
        "import sys\n"
        "from sam_widget.cli import main\n"
        f"rc = main(['export', {str(work)!r}, '--coco', {str(tmp_path / 'out.json')!r}, '--png', "
        f"{str(tmp_path / 'png')!r}, '--masks', '--csv', {str(tmp_path / 'm.csv')!r}])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(rc)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "2 images, 6 objects" in res.stdout
    api = COCO(str(tmp_path / "out.json"))
    anns = api.loadAnns(api.getAnnIds(imgIds=[1]))
    assert [api.cats[a["category_id"]]["name"] for a in anns] == ["cell", "cell", "debris", "cell", "cell"]
    for a, m in zip(anns, masks):
        assert np.array_equal(api.annToMask(a).astype(bool), m)
        assert a["sam_widget"]["prompts"]["points"] == [[5.0, 6.0]]
    with Image.open(tmp_path / "png" / "a_labels.png") as im:
        assert np.array_equal(np.asarray(im), sio.label_image(masks))
    assert (tmp_path / "png" / "a_3_debris.png").is_file() and (tmp_path / "png" / "array_1_labels.png").is_file()
    df = pd.read_csv(tmp_path / "m.csv")
    assert list(df["label"]) == ["cell", "cell", "debris", "cell", "cell", "cell"]
    assert list(df["area_px"]) == [int(m.sum()) for m in masks] + [100]
    # mean intensities from the image file for a.png; none for the in-memory image
    for k, m in enumerate(masks):
        assert df["mean_r"][k] == pytest.approx(img[m][:, 0].mean())
    assert np.isnan(df["mean_r"][5])


def test_export_polygons_and_a_plain_coco_input(tmp_path, capsys):
    work, _, masks = session_file(tmp_path)
    assert cli.main(["export", str(work), "--coco", str(tmp_path / "p.json"), "--polygons"]) == 0
    ds = sio.read_coco(tmp_path / "p.json")
    assert all(isinstance(a["segmentation"], list) or a["segmentation"].get("counts")
               for a in COCO(str(tmp_path / "p.json")).dataset["annotations"])
    assert np.array_equal(ds.images[0].masks, masks)  # exact at the default tolerance
    # any COCO file can be converted too
    assert cli.main(["export", str(tmp_path / "p.json"), "--png", str(tmp_path / "lab")]) == 0
    assert (tmp_path / "lab" / "a_labels.png").is_file()


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "nothing to do"),
        (["--png", "{blocker}"], "exists and is a file"),
        (["--coco", "{tmp}/missing/x.json"], "does not exist"),
        (["--csv", "{tmp}"], "is a directory"),
    ],
)
def test_export_bad_outputs_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, extra, message):
    work, *_ = session_file(tmp_path)
    (tmp_path / "blocker").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    args = [a.format(blocker=tmp_path / "blocker", tmp=tmp_path) for a in extra]
    assert cli.main(["export", str(work), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("sam-widget: error:") and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_export_of_a_corrupt_session_file_names_it(tmp_path, capsys):
    bad = tmp_path / "work.json"
    bad.write_text('{"images": [')
    assert cli.main(["export", str(bad), "--coco", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "truncated" in err
    assert not (tmp_path / "o.json").exists()


# ------------------------------------------------------------------------------ segment


@pytest.fixture
def loader(monkeypatch, tiny_sam):
    calls = []

    def fake(cls, *a, **k):
        calls.append((a, k))
        return Segmenter(tiny_sam, exact=True)

    monkeypatch.setattr(Segmenter, "from_pretrained", classmethod(fake))
    return calls


def test_segment_coco_writes_the_candidates_of_the_run(loader, tmp_path, capsys):
    img, _ = shapes_image(3, (64, 80), 3)
    Image.fromarray(img).save(tmp_path / "in.png")
    out = tmp_path / "out"
    rc = cli.main(["segment", "--image_path", str(tmp_path / "in.png"), "--input_point", "20,30;5,5",
                   "--input_label", "1,0", "--input_box", "2,3,60,50", "--output", str(out),
                   "--coco", str(tmp_path / "cands.json")])
    assert rc == 0, capsys.readouterr().err
    masks = np.load(out / "masks.npy")
    api = COCO(str(tmp_path / "cands.json"))
    assert api.dataset["images"] == [{"id": 1, "file_name": "in.png", "height": 64, "width": 80}]
    anns = api.loadAnns(api.getAnnIds())
    assert len(anns) == len(masks) == 3
    for i, (a, m) in enumerate(zip(anns, masks)):
        assert np.array_equal(api.annToMask(a).astype(bool), m)
        assert a["sam_widget"]["prompts"] == {"points": [[20.0, 30.0], [5.0, 5.0]], "labels": [1, 0],
                                              "box": [2.0, 3.0, 60.0, 50.0], "candidate": i}
    printed = capsys.readouterr().out
    scores = [float(line.split("score ")[1].split(",")[0]) for line in printed.splitlines() if line.startswith("mask ")]
    assert [round(a["score"], 4) for a in anns] == scores


def test_segment_coco_in_a_missing_directory_fails_before_loading_the_model(loader, tmp_path, capsys):
    Image.new("RGB", (40, 30)).save(tmp_path / "in.png")
    rc = cli.main(["segment", "--image_path", str(tmp_path / "in.png"), "--input_box", "1,1,20,20",
                   "--output", str(tmp_path / "out"), "--coco", str(tmp_path / "nope" / "c.json")])
    assert rc == 2 and loader == []
    assert "--coco" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_importing_sam_widget_io_stays_light():
    """No torch, no widgets, and the heavy format libraries only when a function needs them."""
    code = (
        "import sys, sam_widget, sam_widget.io, sam_widget.cli\n"
        "sam_widget.cli.build_parser()\n"
        "heavy = [m for m in ('torch', 'ipywidgets', 'cv2', 'skimage', 'pandas', 'pycocotools') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == ""


def test_io_benchmark_script_runs_at_a_small_size(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "io_export.py"), "--size", "120x160", "--objects", "4",
         "--reps", "1", "--json", str(tmp_path / "b.json")],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert res.returncode == 0, res.stderr
    import json

    rows = {r["what"]: r for r in json.loads((tmp_path / "b.json").read_text())["rows"]}
    assert rows["to_coco polygons, tolerance 0.25 px (holes as RLE)"]["iou_min"] == 1.0
    assert rows["to_coco RLE (write file)"]["bytes"] > 0 and "| read_session |" in res.stdout
