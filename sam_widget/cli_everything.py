"""``sam-widget everything``: every object of an image, written as files.

::

    sam-widget everything --image_path img.jpg --output out/
    sam-widget everything --image_path img.jpg --points-per-side 16 --pred-iou-thresh 0.8
    sam-widget everything --image_path shapes.png --model tiny_shapes --exact

Parameters are ``SamAutomaticMaskGenerator``'s (same names with dashes; the underscore
spellings work too) and go to :meth:`Segmenter.segment_everything`. Outputs in ``--output``
(default ``sam_everything/``), each written atomically (a temporary file renamed):

* ``labels.png`` -- 16-bit grey PNG, image size: ``i + 1`` where proposal ``i`` is, 0 for
  background; where proposals overlap the smaller one wins
  (:meth:`~sam_widget.engine.proposals.Proposals.label_image`);
* ``masks.npy`` -- ``(N, H, W)`` bool, ``masks[i]`` is proposal ``i``; proposals are
  sorted by predicted IoU, highest first;
* ``proposals.csv`` -- one row per proposal: index, label, score (predicted IoU),
  stability, area, COCO bbox ``x, y, width, height``, grid point ``x, y``;
* ``figure.png`` -- the image with every proposal coloured (and outlined);
* with ``--coco PATH``: the proposals as a COCO instances file (:func:`proposals_to_coco`:
  one annotation per proposal, in the same order, RLE masks, ``score`` the predicted IoU,
  the grid point as the prompt, the stability score and the point in the annotation's
  ``"sam_widget"`` field).

A progress bar goes to stderr. Exit status: 0 on success (also when nothing is found),
2 on any error (one ``sam-widget: error: ...`` line), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .images import ImageError, load_image, to_rgb_uint8

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from .engine.proposals import Proposals

__all__ = ["add_everything_parser", "draw_proposals_figure", "proposals_to_coco", "DEFAULT_EVERYTHING_OUTPUT"]

DEFAULT_EVERYTHING_OUTPUT = "sam_everything"
_FIGURE_SIDE = 1600  # the figure shows the image at most this many pixels on its long side

# (flag, parameter, type, help); defaults are SamAutomaticMaskGenerator's
_PARAMS: list[tuple[str, str, Callable[[str], Any], str]] = [
    ("--points-per-side", "points_per_side", int, "grid points along each side of the image (default 32: 1024 points)"),
    ("--points-per-batch", "points_per_batch", int, "points decoded per batch; progress advances per batch (default 64)"),
    ("--pred-iou-thresh", "pred_iou_thresh", float, "keep masks whose predicted IoU is above this, in [0, 1] (default 0.88)"),
    ("--stability-score-thresh", "stability_score_thresh", float, "keep masks at least this stable, in [0, 1] (default 0.95)"),
    ("--stability-score-offset", "stability_score_offset", float, "logit offset of the stability score (default 1.0)"),
    ("--box-nms-thresh", "box_nms_thresh", float, "box IoU above which duplicates are removed, in [0, 1] (default 0.7)"),
    ("--crop-n-layers", "crop_n_layers", int, "also run on 4, 16, ... crops of the image, this many layers (default 0)"),
    ("--crop-nms-thresh", "crop_nms_thresh", float, "box IoU for duplicates between crops, in [0, 1] (default 0.7)"),
    ("--crop-overlap-ratio", "crop_overlap_ratio", float, "overlap of the crops, in [0, 1) (default 512/1500)"),
    ("--crop-n-points-downscale-factor", "crop_n_points_downscale_factor", int, "points per side divided by this in each crop layer (default 1)"),
    ("--min-mask-region-area", "min_mask_region_area", int, "remove holes and islands smaller than this many pixels (default 0: off; needs OpenCV)"),
]

_EXAMPLES = """\
examples:
  sam-widget everything --image_path img.jpg --output out/
  sam-widget everything --image_path img.jpg --points-per-side 16 --pred-iou-thresh 0.8
  sam-widget everything --image_path shapes.png --model tiny_shapes --exact
  sam-widget everything --image_path img.jpg --coco proposals.json
"""


def add_everything_parser(sub: Any, model_choices: tuple[str, ...], default_model: str, offline_model: str) -> None:
    """Add the ``everything`` command to the ``sam-widget`` subparsers ``sub``."""
    ev = sub.add_parser(
        "everything",
        help="find every object of an image (SAM's automatic mask generator)",
        description="Find every object of an image with SAM's automatic mask generator (a grid "
        "of point prompts, filtered by predicted IoU and stability, duplicates removed) and "
        "write labels.png, masks.npy, proposals.csv and figure.png to --output (and a COCO file "
        "with --coco).",
        epilog=_EXAMPLES + "\nexit status: 0 on success (also when nothing is found), 2 on any error "
        "(one line on stderr), 130 when interrupted.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ev.add_argument("--image_path", "--image-path", required=True, metavar="PATH", help="image file (JPEG, PNG, ...)")
    params = ev.add_argument_group("parameters (those of segment_anything's SamAutomaticMaskGenerator)")
    for flag, name, kind, text in _PARAMS:
        params.add_argument(
            flag, "--" + name, dest=name, type=_typed(kind, flag), default=None,
            metavar="N" if kind is int else "X", help=text,
        )
    params.add_argument(
        "--exact",
        action="store_true",
        help="compute exactly what SamAutomaticMaskGenerator computes (slower); by default the "
        "fast path is used, whose masks match it (IoU >= 0.95)",
    )
    model = ev.add_argument_group("model")
    model.add_argument(
        "--model",
        choices=model_choices,
        default=None,
        help=f"SAM model (default: {default_model}, downloaded on first use; with --checkpoint, "
        f"detected from the file). '{offline_model}' is a small offline model shipped with sam_widget.",
    )
    model.add_argument("--checkpoint", metavar="PATH", help="local SAM checkpoint (.pth) instead of the cached download")
    model.add_argument("--device", default="auto", help="'auto' (default), 'cpu', 'cuda', 'cuda:N' or 'mps'")
    model.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                       help="number format of the image encoder: 'auto' (default) = bf16 where the hardware "
                       "has it natively, else fp32 (--exact always computes in fp32)")
    out = ev.add_argument_group("output")
    out.add_argument(
        "--output",
        default=DEFAULT_EVERYTHING_OUTPUT,
        metavar="DIR",
        help=f"directory for labels.png, masks.npy, proposals.csv and figure.png (default: "
        f"{DEFAULT_EVERYTHING_OUTPUT}/; created if needed, those files are replaced)",
    )
    out.add_argument(
        "--coco",
        metavar="PATH",
        help="also write the proposals as a COCO instances JSON file (RLE masks, score = predicted IoU, "
        "stability and grid point in each annotation's \"sam_widget\" field)",
    )
    out.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    out.add_argument("--show", action="store_true", help="also open the figure in a window")
    ev.set_defaults(func=run_everything)


def _typed(kind: Callable[[str], Any], flag: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        try:
            return kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None

    parse.__name__ = flag  # argparse names the type in its message
    return parse


# ------------------------------------------------------------------------------ run


@dataclass
class _Request:
    image: np.ndarray
    params: Any  # EverythingParams
    model: str | None
    checkpoint: Path | None
    device: str
    output: Path
    exact: bool
    progress: bool
    show: bool
    coco: Path | None = None
    image_path: str | None = None
    precision: str = "auto"


def _validate(args: argparse.Namespace) -> _Request:
    """Check every flag and read the image before any model is loaded. Raises ValueError."""
    from .cli import DEFAULT_MODEL, OFFLINE_MODEL
    from .engine.everything_params import EverythingParams

    given = {name: getattr(args, name) for _, name, _, _ in _PARAMS if getattr(args, name) is not None}
    try:
        params = EverythingParams(**given)
    except ValueError as e:
        text = str(e)
        for flag, name, _, _ in sorted(_PARAMS, key=lambda p: -len(p[1])):
            text = text.replace(name, flag)
        raise ValueError(text) from None
    checkpoint = None
    if args.checkpoint is not None:
        checkpoint = Path(args.checkpoint).expanduser()
        if args.model == OFFLINE_MODEL:
            raise ValueError(f"--model {OFFLINE_MODEL} is shipped with sam_widget and takes no --checkpoint; leave out one of the two.")
        if not checkpoint.is_file():
            what = "does not exist" if not checkpoint.exists() else "is not a file (pass the .pth file itself)"
            raise ValueError(f"--checkpoint {str(checkpoint)!r} {what}.")
    output = Path(args.output).expanduser()
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {str(output)!r} exists and is not a directory.")
    try:
        image = load_image(args.image_path)
    except ImageError as e:
        raise ValueError(f"--image_path: {e}") from None
    coco = None
    if args.coco is not None:
        from .io._common import check_output_file

        try:
            coco = check_output_file(args.coco, "--coco file", creates=output)
        except ValueError as e:
            raise ValueError(str(e)) from None
    model = args.model if args.model is not None else (None if checkpoint is not None else DEFAULT_MODEL)
    return _Request(
        image, params, model, checkpoint, args.device, output, args.exact, not args.no_progress, args.show, coco, args.image_path,
        "fp32" if args.exact else args.precision,  # exact: the official fp32 computations
    )


def run_everything(args: argparse.Namespace) -> int:
    """validate flags -> load the model -> encode -> segment everything -> write -> print."""
    from .cli import CLIError, _load_segmenter, _show
    from .engine.everything import segment_everything
    from .engine.segmenter import Segmenter

    try:
        req = _validate(args)
    except (ValueError, TypeError) as e:
        raise CLIError(str(e)) from None
    loaded = _load_segmenter(req)  # exact: the official computations
    segmenter = loaded if req.exact else Segmenter(loaded.sam, precision=req.precision)
    segmenter.set_image(req.image)
    props = segment_everything(segmenter, req.params, progress=req.progress)
    masks = props.masks
    labels = props.label_image()
    fig = None
    if req.show:
        import matplotlib.pyplot as plt

        fig = plt.figure()
    fig = draw_proposals_figure(req.image, props, figure=fig)
    coco = proposals_to_coco(props, req.image_path, masks=masks) if req.coco is not None else None
    _write(req.output, labels, masks, props, fig)
    if coco is not None:
        from .io._common import atomic_write_bytes, dump_json

        try:
            atomic_write_bytes(req.coco, dump_json(coco))
        except OSError as e:
            raise CLIError(f"cannot write --coco {str(req.coco)!r}: {e.strerror or e}") from None
    if not len(props):
        print("no proposals: nothing passed the filters (try a lower --pred-iou-thresh or --stability-score-thresh).")
    for i, p in enumerate(props):
        x, y, w, h = p.bbox
        print(f"proposal {i}: label {i + 1}, score {p.score:.4f}, stability {p.stability:.4f}, area {p.area} px, bbox x={x} y={y} w={w} h={h}")
    print(f"{len(props)} proposals -> {req.output / 'labels.png'}, masks.npy, proposals.csv, figure.png" + (f", {req.coco}" if coco is not None else ""))
    sys.stdout.flush()
    if req.show:
        _show(req.output / "figure.png")
    return 0


def _write(output: Path, labels: np.ndarray, masks: np.ndarray, props: "Proposals", fig: "Figure") -> None:
    from PIL import Image

    from .cli import CLIError

    if len(props) > np.iinfo(np.uint16).max:  # pragma: no cover - 65535 proposals
        raise CLIError(f"{len(props)} proposals do not fit a 16-bit label image.")
    table = io.StringIO()
    w = csv.writer(table, lineterminator="\n")
    w.writerow(["index", "label", "score", "stability", "area", "bbox_x", "bbox_y", "bbox_w", "bbox_h", "point_x", "point_y"])
    for i, p in enumerate(props):
        w.writerow([i, i + 1, f"{p.score:.6f}", f"{p.stability:.6f}", p.area, *p.bbox, f"{p.point[0]:.2f}", f"{p.point[1]:.2f}"])
    try:
        output.mkdir(parents=True, exist_ok=True)
        _atomic(output / "labels.png", lambda f: Image.fromarray(labels.astype(np.uint16)).save(f, format="PNG"))
        _atomic(output / "masks.npy", lambda f: np.save(f, masks))
        _atomic(output / "proposals.csv", lambda f: f.write(table.getvalue().encode()))
        _atomic(output / "figure.png", lambda f: fig.savefig(f, format="png", dpi=100))
    except OSError as e:
        raise CLIError(f"cannot write the results to {str(output)!r}: {e.strerror or e}") from None


def _atomic(path: Path, write: Callable[[Any], Any]) -> None:
    """Write ``path`` through a temporary file in the same directory, then rename it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "xb") as f:  # unlike mkstemp, honours the umask (0644 files, usually)
            write(f)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ------------------------------------------------------------------------------ COCO


def proposals_to_coco(
    proposals: "Proposals", image: Any, *, label: str = "object", masks: np.ndarray | None = None, path: Any = None
) -> dict[str, Any]:
    """The proposals as a COCO instances dict, made by :func:`sam_widget.io.to_coco`.

    ``image``: the image file's path (``file_name`` is its name, the size is read from it),
    an ``(H, W)`` size or a dict with ``file_name``, ``height``, ``width``. One annotation per
    proposal, in the proposals' order (annotation ``id`` ``i + 1`` is label ``i + 1`` of
    ``labels.png``), category ``label``; masks as compressed RLE; ``bbox`` COCO XYWH;
    ``score`` the predicted IoU; the grid point as the prompt (``"sam_widget": {"prompts":
    ...}``, which :func:`sam_widget.io.read_coco` brings back) and, in the same field,
    ``"stability"`` (the stability score, null when undefined) and ``"point"`` ``[x, y]``
    (image pixels). ``masks``: the ``(N, H, W)`` stack if already made. ``path``: also
    write it there (atomically).
    """
    from .io import to_coco
    from .io._common import atomic_write_bytes, check_output_file, dump_json

    target = check_output_file(path, "COCO file") if path is not None else None
    stack = proposals.masks if masks is None else masks
    n = len(proposals)
    coco = to_coco(
        [image],
        [stack],
        labels=[[label] * n],
        scores=[[float(p.score) for p in proposals]],
        prompts=[[{"points": [p.point], "labels": [1], "box": None} for p in proposals]],
    )
    for ann, p in zip(coco["annotations"], proposals):
        stability = float(p.stability)
        ext = ann.setdefault("sam_widget", {})
        ext["stability"] = stability if np.isfinite(stability) else None
        ext["point"] = [float(p.point[0]), float(p.point[1])]
    if target is not None:
        atomic_write_bytes(target, dump_json(coco))
    return coco


# ------------------------------------------------------------------------------ figure


def draw_proposals_figure(image: Any, proposals: "Proposals", *, figure: "Figure | None" = None, width: float = 9.0) -> "Figure":
    """The image with every proposal filled in its own colour and outlined.

    ``image``: anything :func:`sam_widget.images.to_rgb_uint8` accepts; ``proposals``: a
    :class:`~sam_widget.engine.proposals.Proposals` for it. Larger proposals are drawn first,
    so smaller ones stay visible (as in ``label_image``). Colours are
    :func:`sam_widget.state.object_color` of the proposal's index. The image is shown at
    most 1600 pixels on its long side.
    """
    from matplotlib.figure import Figure

    from .render import fit_size, objects_overlay, resize_rgb
    from .state import object_color

    rgb = to_rgb_uint8(image)
    H, W = rgb.shape[:2]
    if tuple(proposals.image_size) != (H, W):
        raise ValueError(f"proposals are for a {proposals.image_size[1]}x{proposals.image_size[0]} image, the image is {W}x{H}.")
    size = fit_size((H, W), _FIGURE_SIDE)
    shown = resize_rgb(rgb, size).astype(np.float32)
    order = sorted(range(len(proposals)), key=lambda i: -proposals[i].area)
    if order:
        small = proposals.mask_at_size(size)
        ov = objects_overlay([small[i] for i in order], [object_color(i) for i in order], alpha=0.5)
        if ov is not None:
            x0, y0, x1, y1 = ov.rect
            rgba = ov.rgba.astype(np.float32)
            a = rgba[..., 3:] / 255.0
            shown[y0:y1, x0:x1] = shown[y0:y1, x0:x1] * (1 - a) + rgba[..., :3] * a
    height = width * size[0] / size[1]
    fig = figure if figure is not None else Figure(figsize=(width, height + 0.4))
    fig.clear()
    fig.set_size_inches(width, height + 0.4)
    ax = fig.add_axes((0.0, 0.0, 1.0, height / (height + 0.4)))
    ax.imshow(np.rint(shown).astype(np.uint8), interpolation="nearest")
    flag = " (partial)" if proposals.partial else ""
    ax.set_title(f"{len(proposals)} proposals{flag}", fontsize=11)
    ax.axis("off")
    return fig
