"""The ``sam-widget segment`` command line (sam_widget.cli) and the sample image.

Most tests run ``main([...])`` in-process with ``Segmenter.from_pretrained`` replaced by the
shared tiny random model (``random_sam(TINY_TEST_CONFIG, seed=0)`` in exact mode), and check
real effects: files written, their contents against ``Segmenter.predict`` at the same
coordinates, printed lines, exit status, and one-line errors with no output directory.
A few run ``python -m sam_widget`` as a real subprocess.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import sam_widget
from sam_widget import cli
from sam_widget.engine.checkpoints import CheckpointError
from sam_widget.engine.segmenter import Segmenter
from sam_widget.images import load_image, sample_image_path

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
LINE_RE = re.compile(r"^mask (\d+): score (-?\d+\.\d{4}), area (\d+) px -> (.+)$")

EX_POINTS = ["--input_point", "100,100;110,110;0,0", "--input_label", "1,1,0"]
EX_BOX = ["--input_box", "10,100,300,300"]


# ------------------------------------------------------------------------------ fixtures


class FakeLoader:
    """Stands in for ``Segmenter.from_pretrained``: records calls, returns the tiny model."""

    def __init__(self, sam):
        self.sam = sam
        self.calls: list[tuple[tuple, dict]] = []
        self.before = None  # optional callable run first (to print or raise)

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        if self.before is not None:
            self.before()
        return Segmenter(self.sam, exact=True)


@pytest.fixture
def loader(monkeypatch, tiny_sam) -> FakeLoader:
    fake = FakeLoader(tiny_sam)
    monkeypatch.setattr(Segmenter, "from_pretrained", classmethod(lambda cls, *a, **k: fake(*a, **k)))
    return fake


@pytest.fixture(scope="module")
def sample_path() -> Path:
    return sample_image_path()


@pytest.fixture
def small_image(tmp_path) -> Path:
    """The sample scene at 160 x 120 (width x height), as a PNG file."""
    path = tmp_path / "small.png"
    with Image.open(sample_image_path()) as im:
        im.convert("RGB").resize((160, 120), Image.Resampling.BILINEAR).save(path)
    return path


def expected(sam, image_path, points=None, labels=None, box=None, multimask=True):
    seg = Segmenter(sam, exact=True)
    seg.set_image(load_image(image_path))
    return seg.predict(points, labels, box, multimask=multimask)


def run(argv, capsys) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def check_outputs(out_dir: Path, stdout: str, pred, image_size: tuple[int, int]) -> np.ndarray:
    """Assert that everything written and printed matches ``pred``; return masks.npy."""
    h, w = image_size
    masks = np.load(out_dir / "masks.npy")
    assert masks.dtype == np.bool_
    assert masks.shape == (len(pred), h, w)
    np.testing.assert_array_equal(masks, pred.masks)
    lines = stdout.splitlines()
    assert len(lines) == len(pred)
    for i, line in enumerate(lines):
        m = LINE_RE.match(line)
        assert m, line
        assert int(m.group(1)) == i
        assert float(m.group(2)) == pytest.approx(float(pred.scores[i]), abs=5.1e-5)
        assert int(m.group(3)) == int(masks[i].sum())
        assert Path(m.group(4)) == out_dir / f"mask_{i}.png"
        with Image.open(out_dir / f"mask_{i}.png") as im:
            assert im.format == "PNG" and im.mode == "L" and im.size == (w, h)
            png = np.asarray(im)
        assert set(np.unique(png).tolist()) <= {0, 255}
        np.testing.assert_array_equal(png == 255, masks[i])
    assert sorted(p.name for p in out_dir.glob("mask_*.png")) == [
        f"mask_{i}.png" for i in range(len(pred))
    ]
    with Image.open(out_dir / "figure.png") as fig:
        assert fig.format == "PNG" and fig.mode in ("RGB", "RGBA")
        fw, fh = fig.size
    # One panel per mask, each about 480 px wide and keeping the image's aspect ratio.
    assert fw == pytest.approx(480 * len(pred), abs=2)
    assert fh == pytest.approx(480 * h / w + 45, abs=2)
    return masks


# ------------------------------------------------------------------- the seed's examples


def test_points_and_labels(loader, tiny_sam, sample_path, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run(
        ["segment", "--image_path", sample_path, *EX_POINTS, "--output", out], capsys
    )
    assert (code, stderr) == (0, "")
    pred = expected(tiny_sam, sample_path, [[100, 100], [110, 110], [0, 0]], [1, 1, 0])
    check_outputs(out, stdout, pred, (480, 640))
    ((args, kwargs),) = loader.calls
    assert args == ("vit_b", None, "auto")
    # --precision auto: exactly SamPredictor's computation where it resolves to fp32, the fast
    # path where the hardware does bf16 natively (tests/test_precision.py mocks both cases)
    assert kwargs in ({"exact": True, "precision": "fp32"}, {"exact": False, "precision": "bf16"})


def test_box(loader, tiny_sam, sample_path, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, stderr = run(
        ["segment", "--image_path", sample_path, *EX_BOX, "--output", out], capsys
    )
    assert (code, stderr) == (0, "")
    check_outputs(out, stdout, expected(tiny_sam, sample_path, box=[10, 100, 300, 300]), (480, 640))


def test_a_coco_file_inside_the_new_output_folder(loader, tiny_sam, sample_path, tmp_path, capsys):
    from pycocotools.coco import COCO

    out = tmp_path / "new" / "run"  # does not exist yet: segment creates it, then writes the COCO file in it
    code, stdout, stderr = run(
        ["segment", "--image_path", sample_path, *EX_BOX, "--output", out, "--coco", out / "c.json"], capsys
    )
    assert (code, stderr) == (0, "")
    anns = COCO(str(out / "c.json")).dataset["annotations"]
    assert len(anns) == len(np.load(out / "masks.npy")) and str(out / "c.json") in stdout
    code, _, stderr = run(
        ["segment", "--image_path", sample_path, *EX_BOX, "--output", out, "--coco", tmp_path / "other" / "c.json"], capsys
    )
    assert code == 2 and "does not exist" in stderr  # any other missing folder is still an error


def test_points_labels_and_box(loader, tiny_sam, sample_path, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["segment", "--image_path", sample_path, *EX_POINTS, *EX_BOX, "--output", out]
    code, stdout, stderr = run(argv, capsys)
    assert (code, stderr) == (0, "")
    pred = expected(
        tiny_sam, sample_path, [[100, 100], [110, 110], [0, 0]], [1, 1, 0], [10, 100, 300, 300]
    )
    check_outputs(out, stdout, pred, (480, 640))


def test_default_output_dir_is_sam_output(loader, small_image, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, stdout, _ = run(["segment", "--image_path", small_image, "--input_box", "10,10,80,60"], capsys)
    assert code == 0
    assert sorted(p.name for p in (tmp_path / "sam_output").iterdir()) == [
        "figure.png",
        "mask_0.png",
        "mask_1.png",
        "mask_2.png",
        "masks.npy",
    ]
    assert stdout.splitlines()[0].endswith(str(Path("sam_output") / "mask_0.png"))


def test_coordinates_are_x_then_y(loader, tiny_sam, small_image, tmp_path, capsys):
    """'100,30' is column 100, row 30: the masks are those of (x=100, y=30), not (30, 100)."""
    right = expected(tiny_sam, small_image, [[100, 30]], [1])
    swapped = expected(tiny_sam, small_image, [[30, 100]], [1])
    assert not np.array_equal(right.masks, swapped.masks)  # the check below can tell them apart
    out = tmp_path / "out"
    code, stdout, _ = run(
        [
            "segment",
            "--image_path",
            small_image,
            "--input_point",
            "100,30",
            "--input_label",
            "1",
            "--output",
            out,
        ],
        capsys,
    )
    assert code == 0
    check_outputs(out, stdout, right, (120, 160))


def test_box_is_xyxy(loader, tiny_sam, small_image, tmp_path, capsys):
    # x1 = 150 > height 120: only valid if read as x; a transposed reading would be rejected.
    out = tmp_path / "out"
    code, stdout, _ = run(
        ["segment", "--image_path", small_image, "--input_box", "20,5,150,60", "--output", out], capsys
    )
    assert code == 0
    check_outputs(out, stdout, expected(tiny_sam, small_image, box=[20, 5, 150, 60]), (120, 160))


def test_fractional_coordinates_and_spaces(loader, tiny_sam, small_image, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "segment",
        "--image_path",
        small_image,
        "--input_point",
        " 12.5, 40 ; 159.9,119.5;",
        "--input_label",
        "1, 0",
        "--output",
        out,
    ]
    code, stdout, _ = run(argv, capsys)
    assert code == 0
    check_outputs(
        out, stdout, expected(tiny_sam, small_image, [[12.5, 40], [159.9, 119.5]], [1, 0]), (120, 160)
    )


def test_single_gives_one_mask_and_removes_stale_ones(loader, tiny_sam, small_image, tmp_path, capsys):
    out = tmp_path / "out"
    base = [
        "segment",
        "--image_path",
        small_image,
        "--input_point",
        "50,60",
        "--input_label",
        "1",
        "--output",
        out,
    ]
    assert run(base, capsys)[0] == 0
    assert len(list(out.glob("mask_*.png"))) == 3
    (out / "notes.txt").write_text("keep me")
    code, stdout, _ = run([*base, "--single"], capsys)
    assert code == 0
    pred = expected(tiny_sam, small_image, [[50, 60]], [1], multimask=False)
    assert len(pred) == 1
    check_outputs(out, stdout, pred, (120, 160))  # also: only mask_0.png is left
    assert (out / "notes.txt").read_text() == "keep me"


def test_model_checkpoint_and_device_are_passed_on(loader, small_image, tmp_path, capsys):
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"not read by the fake loader")
    common = [
        "segment",
        "--image_path",
        small_image,
        "--input_box",
        "1,1,50,50",
        "--output",
        tmp_path / "o",
    ]
    assert run([*common, "--model", "vit_l", "--checkpoint", ckpt, "--device", "cpu"], capsys)[0] == 0
    assert run([*common, "--checkpoint", ckpt], capsys)[0] == 0  # model type detected from the file
    assert run([*common, "--model", "tiny_shapes"], capsys)[0] == 0
    assert [c[0] for c in loader.calls] == [
        ("vit_l", ckpt, "cpu"),
        (None, ckpt, "auto"),
        ("tiny_shapes", None, "auto"),
    ]


# -------------------------------------------------------------------------------- figure


def test_draw_figure_contents(sample_path):
    image = load_image(sample_path)
    masks = np.zeros((3, 480, 640), bool)
    masks[0, 100:200, 50:150] = True
    masks[1, 300:, :] = True
    masks[2, 0, 0] = True
    points = [[100, 150], [120, 160], [600, 20]]
    fig = cli.draw_figure(image, masks, [0.9, 0.5, 0.25], points, [1, 1, 0], [10, 100, 300, 300])
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == [
        "Mask 0, score 0.900",
        "Mask 1, score 0.500",
        "Mask 2, score 0.250",
    ]
    for i, ax in enumerate(axes):
        shown = np.asarray(ax.images[0].get_array())
        assert shown.shape == (480, 640, 3)
        np.testing.assert_array_equal(shown[~masks[i]], image[~masks[i]])  # untouched outside
        assert (shown[masks[i]] != image[masks[i]]).any(axis=-1).all()  # tinted inside
        stars = {tuple(c.get_facecolor()[0][:3].round(3)): c.get_offsets() for c in ax.collections}
        green, red = (0.0, 0.753, 0.0), (0.878, 0.0, 0.0)
        np.testing.assert_array_equal(stars[green], [[100, 150], [120, 160]])  # (x, y) = (col, row)
        np.testing.assert_array_equal(stars[red], [[600, 20]])
        (rect,) = ax.patches
        assert (rect.get_x(), rect.get_y(), rect.get_width(), rect.get_height()) == (10, 100, 290, 200)
        assert ax.get_xlim() == (-0.5, 639.5) and ax.get_ylim() == (479.5, -0.5)


def test_draw_figure_single_mask_without_prompts(rng_image):
    fig = cli.draw_figure(rng_image(30, 40), np.ones((30, 40), bool))
    (ax,) = fig.get_axes()
    assert ax.get_title() == "Mask 0" and not ax.collections and not ax.patches


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"masks": np.zeros((1, 30, 41), bool)}, "masks must be"),
        ({"masks": np.zeros((0, 30, 40), bool)}, "empty"),
        ({"scores": [0.1, 0.2]}, "one value per mask"),
        ({"points": [[1, 2]]}, "need labels"),
        ({"points": [[1, 2]], "labels": [1, 0]}, "one value per point"),
        ({"box": [1, 2, 3]}, "4 numbers"),
    ],
)
def test_draw_figure_rejects_inconsistent_input(rng_image, kwargs, message):
    args = {"image": rng_image(30, 40), "masks": np.zeros((1, 30, 40), bool), **kwargs}
    with pytest.raises(ValueError, match=message):
        cli.draw_figure(**args)


def test_show_without_display_prints_a_note(loader, small_image, tmp_path, capsys, monkeypatch):
    import matplotlib

    monkeypatch.setattr(matplotlib, "get_backend", lambda: "agg")
    out = tmp_path / "o"
    code, stdout, stderr = run(
        ["segment", "--image_path", small_image, "--input_box", "1,1,50,50", "--output", out, "--show"],
        capsys,
    )
    assert code == 0 and len(stdout.splitlines()) == 3
    assert stderr.startswith("sam-widget: note: --show needs a display") and stderr.count("\n") == 1
    assert (out / "figure.png").is_file()


def test_show_opens_the_window(loader, small_image, tmp_path, capsys, monkeypatch):
    import matplotlib
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(matplotlib, "get_backend", lambda: "tkagg")
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(plt.gcf()))
    out = tmp_path / "o"
    code, _, stderr = run(
        [
            "segment",
            "--image_path",
            small_image,
            "--input_box",
            "1,1,50,50",
            "--output",
            out,
            "--show",
            "--single",
        ],
        capsys,
    )
    try:
        assert (code, stderr) == (0, "")
        (fig,) = shown
        assert [ax.get_title()[:6] for ax in fig.get_axes()] == ["Mask 0"]
    finally:
        plt.close("all")


# -------------------------------------------------------------------------------- errors


@pytest.fixture
def err_env(tmp_path, small_image):
    junk = tmp_path / "junk.jpg"
    junk.write_text("this is not a JPEG")
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"x")
    afile = tmp_path / "afile"
    afile.write_text("x")
    return {
        "IMG": str(small_image),
        "JUNK": str(junk),
        "DIR": str(tmp_path),
        "CKPT": str(ckpt),
        "FILE": str(afile),
    }


ERROR_CASES = [
    # (argv with placeholders, expected fragment of the message)
    (
        "segment --image_path IMG --input_point 10,10;20,20;30,30 --input_label 1,1",
        "3 points but --input_label has 2 labels",
    ),
    (
        "segment --image_path IMG --input_point 10,10 --input_label 1,0",
        "1 point but --input_label has 2 labels",
    ),
    (
        "segment --image_path IMG --input_point 10,10;20,20 --input_label 1,2",
        "must be 1 (foreground) or 0 (background), got '2'",
    ),
    ("segment --image_path IMG --input_point 10,10 --input_label yes", "got 'yes'"),
    ("segment --image_path IMG --input_point 10,10 --input_label 1.0", "got '1.0'"),
    ("segment --image_path IMG --input_point 10,10", "--input_point needs --input_label"),
    ("segment --image_path IMG --input_label 1", "--input_label was given without --input_point"),
    ("segment --image_path IMG --input_point 10,a --input_label 1", "'a' is not a number"),
    ("segment --image_path IMG --input_point 10,nan --input_label 1", "'nan' is not a finite number"),
    ("segment --image_path IMG --input_point 10,20,30 --input_label 1", "is not an x,y pair"),
    ("segment --image_path IMG --input_point 10 --input_label 1", "'10' is not an x,y pair"),
    ("segment --image_path IMG --input_point ; --input_label 1", "holds no point"),
    (
        "segment --image_path IMG --input_point 161,10 --input_label 1",
        "161,10 lies outside the image, which is 160 wide and 120 high",
    ),
    ("segment --image_path IMG --input_point 10,121 --input_label 1", "10,121 lies outside the image"),
    ("segment --image_path IMG --input_point=-1,10 --input_label 1", "-1,10 lies outside the image"),
    ("segment --image_path IMG --input_box 1,2,3", "must be 4 numbers x0,y0,x1,y1"),
    ("segment --image_path IMG --input_box 1,2,3,4,5", "got 5 values"),
    ("segment --image_path IMG --input_box 1,2,3,x", "'x' is not a number"),
    ("segment --image_path IMG --input_box 50,10,40,60", "must have x0 <= x1 and y0 <= y1"),
    ("segment --image_path IMG --input_box 10,60,40,50", "must have x0 <= x1 and y0 <= y1"),
    ("segment --image_path IMG --input_box 10,10,161,50", "reaches outside the image"),
    ("segment --image_path IMG", "no prompt: give --input_point with --input_label, and/or --input_box"),
    ("segment --image_path DIR/missing.jpg --input_box 1,1,5,5", "--image_path: Image file"),
    ("segment --image_path JUNK --input_box 1,1,5,5", "--image_path: Could not read"),
    ("segment --image_path DIR --input_box 1,1,5,5", "is a directory, not an image file"),
    ("segment --input_box 1,1,5,5", "the following arguments are required: --image_path"),
    (
        "segment --image_path IMG --input_box 1,1,5,5 --model vit_x",
        "argument --model: invalid choice: 'vit_x'",
    ),
    (
        "segment --image_path IMG --input_box 1,1,5,5 --frobnicate",
        "unrecognized arguments: --frobnicate",
    ),
    ("segment --image_path IMG --input_box", "expected one argument"),
    (
        "segment --image_path IMG --input_box 1,1,5,5 --model tiny_shapes --checkpoint CKPT",
        "takes no --checkpoint",
    ),
    (
        "segment --image_path IMG --input_box 1,1,5,5 --checkpoint DIR/nope.pth",
        "nope.pth' does not exist",
    ),
    ("segment --image_path IMG --input_box 1,1,5,5 --checkpoint DIR", "is not a file"),
    ("segment --image_path IMG --input_box 1,1,5,5 --output FILE", "exists and is not a directory"),
    ("", "choose a command: segment, everything, export or batch"),
    ("explode", "invalid choice: 'explode'"),
]


@pytest.mark.parametrize("argv, fragment", ERROR_CASES, ids=[c[1][:40] for c in ERROR_CASES])
def test_bad_flags_exit_2_with_one_line(argv, fragment, err_env, loader, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "never"
    args = [err_env.get(a, a) for a in argv.split()]
    args = [a.replace("DIR/", err_env["DIR"] + "/") for a in args]
    if args and args[0] == "segment" and "--output" not in args:
        args += ["--output", str(out)]
    code, stdout, stderr = run(args, capsys)
    assert code == 2
    assert stdout == ""
    assert stderr.count("\n") == 1 and stderr.startswith("sam-widget: error: "), stderr
    assert fragment in stderr
    assert "Traceback" not in stderr
    assert not out.exists() and not (tmp_path / "sam_output").exists()
    assert loader.calls == []  # rejected before any model is loaded


def test_help_reads_well(capsys):
    assert cli.main(["--help"]) == 0
    top = capsys.readouterr().out
    assert "segment" in top and "examples:" in top and "--input_point '100,100;110,110;0,0'" in top
    assert cli.main(["segment", "--help"]) == 0
    sub = capsys.readouterr().out
    for flag in (
        "--image_path",
        "--input_point",
        "--input_label",
        "--input_box",
        "--model",
        "--checkpoint",
        "--device",
        "--output",
        "--single",
        "--show",
        "x = column",
        "tiny_shapes",
        "sam_output/",
    ):
        assert flag in sub, flag
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"sam-widget {sam_widget.__version__}"


DOWNLOAD_FAILED = CheckpointError(
    "Could not download https://example.invalid/sam_vit_b_01ec64.pth to /cache/sam_vit_b_01ec64.pth: "
    "[Errno -2] Name or service not known. To fix: check the network connection (and proxy\nsettings)..."
)


@pytest.mark.parametrize(
    "extra, error, fragments",
    [
        (
            [],
            DOWNLOAD_FAILED,
            [
                "cannot get the vit_b model: Could not download",
                "Name or service not known.",
                "pass --checkpoint PATH",
                "--model tiny_shapes",
            ],
        ),
        (["--model", "vit_h"], DOWNLOAD_FAILED, ["cannot get the vit_h model", "sam_vit_h_4b8939.pth"]),
        (
            ["--checkpoint", "CKPT"],
            CheckpointError("Cannot tell which SAM model x.pth holds."),
            ["cannot load --checkpoint", "Cannot tell which SAM model"],
        ),
        (
            ["--model", "tiny_shapes"],
            CheckpointError("needs the module sam_widget.engine.tiny"),
            ["cannot load --model tiny_shapes: needs the module"],
        ),
        (
            ["--model", "tiny_shapes"],
            FileNotFoundError("The tiny_shapes weights are missing: .../tiny_shapes.pt does not exist."),
            ["cannot load the tiny_shapes model: The tiny_shapes weights are missing"],
        ),
        (
            ["--device", "cuda"],
            ValueError("device='cuda' was requested but CUDA is not available"),
            ["cannot load the vit_b model: device='cuda'"],
        ),
    ],
)
def test_model_load_failure_exit_2_with_one_line(
    extra, error, fragments, loader, small_image, tmp_path, capsys
):
    ckpt = tmp_path / "model.pth"
    ckpt.write_bytes(b"x")
    extra = [str(ckpt) if a == "CKPT" else a for a in extra]

    def fail():
        # What a download does first: announce itself on stderr. The CLI must hold it back.
        sys.stderr.write('Downloading "https://example.invalid/sam_vit_b_01ec64.pth" to /cache\n')
        raise error

    loader.before = fail
    out = tmp_path / "out"
    code, stdout, stderr = run(
        ["segment", "--image_path", small_image, "--input_box", "1,1,5,5", "--output", out, *extra],
        capsys,
    )
    assert (code, stdout) == (2, "")
    assert stderr.count("\n") == 1 and stderr.startswith("sam-widget: error: "), stderr
    for fragment in fragments:
        assert fragment in stderr
    assert not out.exists()


def test_download_progress_is_shown_once_it_starts(loader, small_image, tmp_path, capsys):
    def progress():
        sys.stderr.write("Downloading x\n")
        sys.stderr.write("  0%|          | 0/100\n")

    loader.before = progress
    code, _, stderr = run(
        ["segment", "--image_path", small_image, "--input_box", "1,1,5,5", "--output", tmp_path / "o"],
        capsys,
    )
    assert code == 0
    assert stderr == "Downloading x\n  0%|          | 0/100\n"


def test_unwritable_output_exit_2(loader, small_image, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, stderr = run(
        ["segment", "--image_path", small_image, "--input_box", "1,1,5,5", "--output", blocker / "sub"],
        capsys,
    )
    assert code == 2 and stderr.count("\n") == 1 and "cannot write the results to" in stderr


# ------------------------------------------------------------------ real model loading


@pytest.fixture
def tiny_checkpoint(tiny_sam, tmp_path) -> Path:
    import torch

    path = tmp_path / "tiny.pth"
    torch.save(tiny_sam.state_dict(), path)
    return path


def test_real_loading_of_an_unusable_checkpoint_exit_2(tiny_checkpoint, small_image, tmp_path, capsys):
    """No fake loader: load_sam reads the file, finds no official model of that size."""
    code, stdout, stderr = run(
        [
            "segment",
            "--image_path",
            small_image,
            "--input_box",
            "1,1,100,100",
            "--checkpoint",
            tiny_checkpoint,
            "--output",
            tmp_path / "out",
        ],
        capsys,
    )
    assert (code, stdout) == (2, "")
    assert stderr.count("\n") == 1 and stderr.startswith("sam-widget: error: cannot load --checkpoint")
    assert "Cannot tell which SAM model" in stderr
    assert not (tmp_path / "out").exists()


def test_real_loading_end_to_end(tiny_sam, tiny_checkpoint, small_image, tmp_path, capsys, monkeypatch):
    """No fake loader: the checkpoint is read by load_sam (model type detected from it)."""
    from sam_widget.engine import checkpoints
    from sam_widget.engine.models import TINY_TEST_CONFIG

    spec = checkpoints.CheckpointSpec("tiny_test", "tiny.pth", "0" * 64, TINY_TEST_CONFIG)
    monkeypatch.setitem(checkpoints.CHECKPOINTS, "tiny_test", spec)
    out = tmp_path / "out"
    code, stdout, stderr = run(
        [
            "segment",
            "--image_path",
            small_image,
            "--input_point",
            "100,30;20,90",
            "--input_label",
            "1,0",
            "--checkpoint",
            tiny_checkpoint,
            "--device",
            "cpu",
            "--precision",
            "fp32",  # exactly SamPredictor's masks (auto may pick bf16 on this hardware)
            "--output",
            out,
        ],
        capsys,
    )
    assert (code, stderr) == (0, "")
    check_outputs(
        out, stdout, expected(tiny_sam, small_image, [[100, 30], [20, 90]], [1, 0]), (120, 160)
    )


def test_real_loading_of_a_damaged_cached_download_exit_2(small_image, tmp_path, capsys, monkeypatch):
    """No fake loader: the cached vit_b file is junk (e.g. an interrupted copy)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "sam_vit_b_01ec64.pth").write_bytes(b"<html>proxy error</html>")
    monkeypatch.setenv("SAM_WIDGET_HOME", str(home))
    code, stdout, stderr = run(
        ["segment", "--image_path", small_image, "--input_box", "1,1,9,9", "--output", tmp_path / "o"],
        capsys,
    )
    assert (code, stdout) == (2, "")
    assert stderr.count("\n") == 1 and stderr.startswith(
        "sam-widget: error: cannot get the vit_b model: "
    )
    assert f"To fix: delete {home / 'sam_vit_b_01ec64.pth'} and run again" in stderr
    assert "--checkpoint PATH" in stderr and "--model tiny_shapes" in stderr
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- subprocess


def _run_module(args, cwd, env_extra=None, timeout=120):
    env = dict(os.environ)
    env.pop("MPLBACKEND", None)
    env.update(env_extra or {})
    return subprocess.run(
        [PYTHON, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_cli_import_is_light(tmp_path):
    code = "import sys, sam_widget.cli; print(sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))"
    proc = _run_module(["-c", code], tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr


def test_subprocess_no_network_exit_2(small_image, tmp_path):
    """vit_b is not cached and the (mirror) server is unreachable: one line saying what to do."""
    with socket.socket() as s:  # a local port nobody listens on: connection refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    home = tmp_path / "home"
    proc = _run_module(
        [
            "-m",
            "sam_widget",
            "segment",
            "--image_path",
            str(small_image),
            *EX_POINTS[:1],
            "10,10",
            "--input_label",
            "1",
        ],
        tmp_path,
        {"SAM_WIDGET_HOME": str(home), "SAM_WIDGET_CHECKPOINT_URL": f"http://127.0.0.1:{port}/"},
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith("sam-widget: error: cannot get the vit_b model: Could not download")
    assert "--checkpoint PATH" in proc.stderr and "--model tiny_shapes" in proc.stderr
    assert not any(home.glob("*.pth")) and not (tmp_path / "sam_output").exists()


TINY_WEIGHTS = Path(sam_widget.__file__).parent / "weights" / "tiny_shapes.pt"


@pytest.mark.skipif(
    not TINY_WEIGHTS.is_file() or importlib.util.find_spec("sam_widget.engine.tiny") is None,
    reason=f"the offline tiny_shapes model is not in this checkout yet "
    f"({TINY_WEIGHTS} or sam_widget.engine.tiny missing)",
)
def test_subprocess_tiny_shapes(sample_path, tmp_path):
    out = tmp_path / "out"
    proc = _run_module(
        [
            "-m",
            "sam_widget",
            "segment",
            "--image_path",
            str(sample_path),
            "--input_point",
            "332,420",
            "--input_label",
            "1",
            "--model",
            "tiny_shapes",
            "--device",
            "cpu",
            "--output",
            str(out),
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 3 and all(LINE_RE.match(line) for line in lines)
    masks = np.load(out / "masks.npy")
    assert masks.shape == (3, 480, 640)
    for i, line in enumerate(lines):
        assert int(LINE_RE.match(line).group(3)) == int(masks[i].sum())


def test_console_script(tmp_path):
    exe = Path(PYTHON).parent / "sam-widget"
    if not exe.exists():
        pytest.skip(f"console script not installed next to {PYTHON}")
    proc = subprocess.run(
        [str(exe), "segment", "--image_path", "x.jpg"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr == (
        "sam-widget: error: no prompt: give --input_point with --input_label, and/or --input_box "
        "(see 'sam-widget segment --help').\n"
    )


# -------------------------------------------------------------------------- sample image


def test_sample_image_is_shipped_and_reproducible():
    path = sample_image_path()
    assert path.is_file() and path.stat().st_size <= 300_000
    with Image.open(path) as im:
        assert (im.format, im.mode, im.size) == ("PNG", "RGB", (640, 480))
        shipped = np.asarray(im)
    spec = importlib.util.spec_from_file_location(
        "make_sample_image", REPO / "scripts" / "make_sample_image.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    np.testing.assert_array_equal(module.render(), shipped)
    # Not flat: plenty of distinct colours, and the objects have their colours where drawn.
    assert len(np.unique(shipped.reshape(-1, 3), axis=0)) > 5000
    bx, by, _ = module.BALL
    r, g, b = shipped[int(by), int(bx) - 10].astype(int)
    assert r > 2 * g and r > 2 * b  # the red ball
    sx, sy, _ = module.SUN
    r, g, b = shipped[int(sy), int(sx)].astype(int)
    assert r > 200 and g > 180 and b < 160  # the yellow sun
