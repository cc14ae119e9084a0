"""``sam-widget everything``: files written and read back by independent readers.

Runs ``main([...])`` in-process with the shipped ``tiny_shapes`` model (real loading, no
network) on a ``shapes_image`` scene, and checks the files against
``Segmenter.segment_everything`` with the same parameters (``--exact``: against
``SamAutomaticMaskGenerator``): labels.png through Pillow, masks.npy through NumPy,
proposals.csv through the csv module.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from segment_anything import SamAutomaticMaskGenerator

from sam_widget import Segmenter, load_sam
from sam_widget.cli import main
from sam_widget.data import shapes_image

REPO = Path(__file__).resolve().parents[1]
FLAGS = ["--model", "tiny_shapes", "--points-per-side", "8", "--pred-iou-thresh", "0.6", "--stability-score-thresh", "0.8"]
PARAMS = dict(points_per_side=8, pred_iou_thresh=0.6, stability_score_thresh=0.8)
FILES = ("labels.png", "masks.npy", "proposals.csv", "figure.png")


@pytest.fixture(scope="module")
def shapes_sam():
    return load_sam("tiny_shapes")


@pytest.fixture
def scene(tmp_path) -> tuple[Path, np.ndarray]:
    image, _ = shapes_image(1)
    path = tmp_path / "scene.png"
    Image.fromarray(image).save(path)
    return path, image


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_everything_writes_labels_masks_table_and_figure(shapes_sam, scene, tmp_path, capsys):
    path, image = scene
    out_dir = tmp_path / "out"
    code, out, err = run(["everything", "--image_path", str(path), "--output", str(out_dir), *FLAGS], capsys)
    assert code == 0, err
    seg = Segmenter(shapes_sam)
    seg.set_image(image)
    props = seg.segment_everything(progress=False, **PARAMS)
    assert len(props) >= 3
    with Image.open(out_dir / "labels.png") as im:
        assert im.size == (image.shape[1], image.shape[0])
        labels = np.asarray(im).astype(np.int64)
    assert np.array_equal(labels, props.label_image())
    masks = np.load(out_dir / "masks.npy")
    assert masks.shape == (len(props), *image.shape[:2]) and masks.dtype == np.bool_
    assert np.array_equal(masks, props.masks)
    with open(out_dir / "proposals.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["label"]) for r in rows] == list(range(1, len(props) + 1))
    for r, p, m in zip(rows, props, masks):
        assert int(r["area"]) == p.area == m.sum()
        assert (int(r["bbox_x"]), int(r["bbox_y"]), int(r["bbox_w"]), int(r["bbox_h"])) == p.bbox
        assert float(r["score"]) == pytest.approx(p.score, abs=1e-6)
    with Image.open(out_dir / "figure.png") as fig:
        assert fig.size[0] > 300
    assert len([line for line in out.splitlines() if line.startswith("proposal ")]) == len(props)
    assert "segment everything" in err  # the progress bar
    assert sorted(os.listdir(out_dir)) == sorted(FILES)  # no temporary files left


def test_exact_gives_the_official_generator_masks(shapes_sam, scene, tmp_path, capsys):
    path, image = scene
    code, _, err = run(["everything", "--image_path", str(path), "--output", str(tmp_path), "--exact", "--no-progress", *FLAGS], capsys)
    assert code == 0, err
    assert "segment everything" not in err
    masks = np.load(tmp_path / "masks.npy")
    records = SamAutomaticMaskGenerator(shapes_sam, **PARAMS).generate(image)
    assert len(masks) == len(records) > 0
    for r in records:
        assert sum(np.array_equal(m, r["segmentation"]) for m in masks) == 1


def test_underscore_spellings_work_too(scene, tmp_path, capsys):
    path, _ = scene
    flags = ["--model", "tiny_shapes", "--points_per_side", "4", "--pred_iou_thresh", "0.6", "--no-progress"]
    code, out, err = run(["everything", "--image-path", str(path), "--output", str(tmp_path), *flags], capsys)
    assert code == 0, err
    assert out.strip().endswith("figure.png")


def test_a_flat_image_writes_empty_results(tmp_path, capsys):
    path = tmp_path / "flat.png"
    Image.fromarray(np.full((60, 90, 3), 200, np.uint8)).save(path)
    code, out, err = run(["everything", "--image_path", str(path), "--output", str(tmp_path / "o"), "--no-progress", *FLAGS], capsys)
    assert code == 0, err
    assert "no proposals" in out
    assert np.load(tmp_path / "o" / "masks.npy").shape == (0, 60, 90)
    with Image.open(tmp_path / "o" / "labels.png") as im:
        assert not np.asarray(im).any()


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--points-per-side", "0"], "--points-per-side must be in [1, 512]"),
        (["--points-per-side", "10000"], "--points-per-side"),
        (["--pred-iou-thresh", "1.5"], "--pred-iou-thresh must be a number in [0.0, 1.0]"),
        (["--stability-score-thresh", "nan"], "--stability-score-thresh"),
        (["--box-nms-thresh", "-0.1"], "--box-nms-thresh"),
        (["--crop-n-layers", "-1"], "--crop-n-layers"),
        (["--points-per-side", "abc"], "'abc' is not a whole number"),
        (["--pred-iou-thresh", "high"], "'high' is not a number"),
        (["--checkpoint", "x.pth"], "takes no --checkpoint"),
    ],
)
def test_bad_flags_exit_2_with_one_line_and_write_nothing(scene, tmp_path, capsys, extra, fragment):
    path, _ = scene
    out_dir = tmp_path / "never"
    code, out, err = run(["everything", "--image_path", str(path), "--output", str(out_dir), *FLAGS, *extra], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sam-widget: error: ") and fragment in lines[0], err
    assert not out_dir.exists()


def test_missing_image_and_output_that_is_a_file_exit_2(scene, tmp_path, capsys):
    path, _ = scene
    code, _, err = run(["everything", "--image_path", str(tmp_path / "nope.png"), *FLAGS], capsys)
    assert code == 2 and "--image_path" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(["everything", "--image_path", str(path), "--output", str(blocker), *FLAGS], capsys)
    assert code == 2 and "not a directory" in err
    code, _, err = run(["everything", *FLAGS], capsys)
    assert code == 2 and "--image_path" in err


def test_help_lists_the_parameters(capsys):
    code, out, _ = run(["everything", "--help"], capsys)
    assert code == 0
    for flag in ("--points-per-side", "--pred-iou-thresh", "--stability-score-thresh", "--box-nms-thresh", "--crop-n-layers", "--min-mask-region-area", "--exact"):
        assert flag in out
    code, out, _ = run(["--help"], capsys)
    assert "everything" in out


def test_subprocess_python_m(scene, tmp_path):
    path, _ = scene
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "sam_widget", "everything", "--image_path", str(path), "--output", str(tmp_path), *FLAGS],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "proposals ->" in proc.stdout
    assert (tmp_path / "labels.png").stat().st_mode & 0o044  # readable by others (umask), not 0600


def test_coco_output_is_read_back_by_pycocotools(shapes_sam, scene, tmp_path, capsys):
    from pycocotools.coco import COCO

    import sam_widget.io as sio

    path, image = scene
    target = tmp_path / "proposals.json"
    code, out, err = run(["everything", "--image_path", str(path), "--output", str(tmp_path / "o"), "--coco", str(target), "--no-progress", *FLAGS], capsys)
    assert code == 0, err
    assert str(target) in out
    seg = Segmenter(shapes_sam)
    seg.set_image(image)
    props = seg.segment_everything(progress=False, **PARAMS)
    coco = COCO(str(target))
    assert coco.imgs[1]["file_name"] == "scene.png" and (coco.imgs[1]["height"], coco.imgs[1]["width"]) == image.shape[:2]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[1]))
    assert [a["id"] for a in anns] == list(range(1, len(props) + 1)) and len(props) >= 3
    labels = np.asarray(Image.open(tmp_path / "o" / "labels.png")).astype(np.int64)
    for a, p in zip(anns, props):
        assert np.array_equal(coco.annToMask(a).astype(bool), p.mask)
        assert a["score"] == pytest.approx(p.score, abs=1e-6) and a["area"] == p.area and tuple(a["bbox"]) == p.bbox
        assert a["sam_widget"]["stability"] == pytest.approx(p.stability, abs=1e-6)
        assert a["sam_widget"]["point"] == pytest.approx(list(p.point))
        assert p.mask[labels == a["id"]].all()  # annotation id i + 1 is label i + 1 of labels.png
    back = sio.read_coco(target)  # sam_widget's own reader: the grid point is the prompt
    assert [o.prompts.points for o in back.images[0].objects] == [(p.point,) for p in props]
    assert sorted(os.listdir(tmp_path)) == ["o", "proposals.json", "scene.png"]  # no temporary file left


def test_a_coco_path_in_a_missing_folder_exits_2_before_any_work(scene, tmp_path, capsys):
    path, _ = scene
    code, _, err = run(["everything", "--image_path", str(path), "--output", str(tmp_path / "o"), "--coco", str(tmp_path / "no" / "x.json"), *FLAGS], capsys)
    assert code == 2 and "--coco file" in err and "does not exist" in err
    assert not (tmp_path / "o").exists()


def test_a_coco_file_inside_the_new_output_folder(scene, tmp_path, capsys):
    from pycocotools.coco import COCO

    path, _ = scene
    out = tmp_path / "new" / "run"
    code, _, err = run(["everything", "--image_path", str(path), "--output", str(out), "--coco", str(out / "p.json"),
                        "--no-progress", *FLAGS], capsys)
    assert code == 0, err
    assert len(COCO(str(out / "p.json")).dataset["annotations"]) == int(np.asarray(Image.open(out / "labels.png")).max())
