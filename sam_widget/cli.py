"""The ``sam-widget`` command line.

::

    sam-widget segment --image_path img.jpg --input_point '100,100;110,110;0,0' --input_label '1,1,0'
    sam-widget segment --image_path img.jpg --input_box '10,100,300,300'
    python -m sam_widget segment --image_path img.jpg --input_box '10,100,300,300' --single

Coordinate conventions (the same as :class:`sam_widget.engine.segmenter.Segmenter`):
  * a point is ``"x,y"`` = (column, row) in image pixels, with ``0 <= x <= width`` and
    ``0 <= y <= height``; several points are separated by ``";"``;
  * labels are ``1`` (foreground, "this object") or ``0`` (background), one per point;
  * a box is ``"x0,y0,x1,y1"`` (XYXY: top-left then bottom-right corner) in image pixels.

Outputs (in ``--output``, default ``sam_output/``): ``mask_<i>.png`` (0/255 grey, image
size), ``masks.npy`` (``C x H x W`` bool, ``masks[i]`` is ``mask_<i>.png``) and
``figure.png``. Exit status: 0 on success, 2 on any error, with a single
``sam-widget: error: ...`` line on stderr.

This module imports neither torch nor matplotlib at import time: the model is reached
through :class:`~sam_widget.engine.segmenter.Segmenter` only when a command runs, so
``sam-widget --help`` is instant.
"""

from __future__ import annotations

import argparse
import io
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from .engine.registry import DEFAULT_MODEL, MODELS, OFFLINE_MODEL, model_names
from .images import ImageError, load_image, to_rgb_uint8

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from .engine.segmenter import Segmenter

__all__ = [
    "main",
    "build_parser",
    "draw_figure",
    "parse_points",
    "parse_labels",
    "parse_box",
    "MODEL_CHOICES",
]

PROG = "sam-widget"
MODEL_CHOICES: tuple[str, ...] = model_names()
DEFAULT_OUTPUT = "sam_output"
_MAX_MASKS = 3  # SAM's multimask output
_EXIT_ERROR = 2
_EXIT_INTERRUPTED = 130

# Figure colours: mask fill (RGB, alpha), positive / negative points, box.
_MASK_RGB = (30, 144, 255)
_MASK_ALPHA = 0.55
_POSITIVE_COLOR = "#00c000"
_NEGATIVE_COLOR = "#e00000"
_BOX_COLOR = "#00e000"


class CLIError(Exception):
    """A problem to report to the user as one ``sam-widget: error: ...`` line (exit 2)."""


class _UsageError(CLIError):
    """argparse rejected the command line."""


# ----------------------------------------------------------------------------- parsing


def _number(text: str, flag: str, whole: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{flag} {whole!r}: {text.strip()!r} is not a number.") from None
    if not math.isfinite(value):
        raise ValueError(f"{flag} {whole!r}: {text.strip()!r} is not a finite number.")
    return value


def parse_points(text: str) -> np.ndarray:
    """Parse ``"x,y;x,y;..."`` into an ``N x 2`` float64 array of ``(x, y)`` pixels.

    ``x`` is the column and ``y`` the row (image pixels, origin at the top-left corner).
    Spaces are ignored and a trailing ``";"`` is allowed. Raises ``ValueError`` naming the
    offending pair.
    """
    if not isinstance(text, str):
        raise TypeError(f"points must be given as a string, not {type(text).__name__}.")
    pairs = [p for p in text.split(";") if p.strip()]
    if not pairs:
        raise ValueError(
            f"--input_point {text!r} holds no point; write x,y pairs like '100,100;110,110'."
        )
    out = []
    for pair in pairs:
        parts = pair.split(",")
        if len(parts) != 2:
            raise ValueError(
                f"--input_point {text!r}: {pair.strip()!r} is not an x,y pair; "
                "write points as x,y separated by ';', e.g. '100,100;110,110'."
            )
        out.append([_number(p, "--input_point", text) for p in parts])
    return np.asarray(out, dtype=np.float64)


def parse_labels(text: str) -> np.ndarray:
    """Parse ``"1,1,0"`` into an ``N`` int64 array: 1 = foreground, 0 = background.

    Raises ``ValueError`` for anything but ``0`` and ``1``.
    """
    if not isinstance(text, str):
        raise TypeError(f"labels must be given as a string, not {type(text).__name__}.")
    items = [t.strip() for t in text.replace(";", ",").split(",")]
    if items and items[-1] == "":
        items = items[:-1]
    if not items:
        raise ValueError(
            f"--input_label {text!r} holds no label; write one 0/1 per point, e.g. '1,1,0'."
        )
    for item in items:
        if item not in ("0", "1"):
            raise ValueError(
                f"--input_label {text!r}: labels must be 1 (foreground) or 0 (background), got {item!r}."
            )
    return np.asarray([int(i) for i in items], dtype=np.int64)


def parse_box(text: str) -> np.ndarray:
    """Parse ``"x0,y0,x1,y1"`` (XYXY: top-left then bottom-right corner, image pixels).

    Returns a float64 array of 4 numbers. Raises ``ValueError`` unless there are exactly
    four numbers with ``x0 <= x1`` and ``y0 <= y1``.
    """
    if not isinstance(text, str):
        raise TypeError(f"box must be given as a string, not {type(text).__name__}.")
    parts = text.split(",")
    if len(parts) != 4:
        raise ValueError(
            f"--input_box {text!r} must be 4 numbers x0,y0,x1,y1 (top-left and bottom-right "
            f"corners), got {len(parts)} value{'s' if len(parts) != 1 else ''}."
        )
    x0, y0, x1, y1 = (_number(p, "--input_box", text) for p in parts)
    if x1 < x0 or y1 < y0:
        raise ValueError(
            f"--input_box {text!r} must have x0 <= x1 and y0 <= y1 (x0,y0 = top-left corner, "
            f"x1,y1 = bottom-right corner)."
        )
    return np.asarray([x0, y0, x1, y1], dtype=np.float64)


def _check_inside(points: np.ndarray | None, box: np.ndarray | None, size: tuple[int, int]) -> None:
    height, width = size
    if points is not None:
        for x, y in points:
            if not (0 <= x <= width and 0 <= y <= height):
                raise ValueError(
                    f"--input_point {x:g},{y:g} lies outside the image, which is {width} wide "
                    f"and {height} high (x must be in [0, {width}], y in [0, {height}])."
                )
    if box is not None:
        x0, y0, x1, y1 = box
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise ValueError(
                f"--input_box {x0:g},{y0:g},{x1:g},{y1:g} reaches outside the image, which is "
                f"{width} wide and {height} high."
            )


# ---------------------------------------------------------------------------- argparse


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that reports errors as one line instead of usage + message."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{message} (see '{self.prog} --help')")


_EXAMPLES = """\
examples:
  sam-widget segment --image_path img.jpg --input_point '100,100;110,110;0,0' --input_label '1,1,0'
  sam-widget segment --image_path img.jpg --input_box '10,100,300,300'
  sam-widget segment --image_path img.jpg --input_point '100,100;110,110;0,0' \\
      --input_label '1,1,0' --input_box '10,100,300,300'
  sam-widget segment --image_path img.jpg --input_box '10,100,300,300' --model tiny_shapes --single
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``sam-widget`` argument parser (commands ``segment`` and ``everything``)."""
    parser = _Parser(
        prog=PROG,
        description="Segment Anything (SAM) from the command line: give an image and a "
        "prompt (points and/or a box), get masks as PNG and NumPy files.",
        epilog=_EXAMPLES + "\nrun 'sam-widget segment --help' or 'sam-widget everything --help' for all options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    seg = sub.add_parser(
        "segment",
        help="segment an image from point and/or box prompts",
        description="Segment an object in an image from point and/or box prompts, and write "
        "the masks (mask_<i>.png, masks.npy) and a figure (figure.png) to --output. "
        "Coordinates are image pixels: x = column, y = row, origin at the top-left corner.",
        epilog=_EXAMPLES + "\nexit status: 0 on success, 2 on any error (one line on stderr).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    prompts = seg.add_argument_group("image and prompts (give points with labels, a box, or both)")
    prompts.add_argument(
        "--image_path", required=True, metavar="PATH", help="image file to segment (JPEG, PNG, ...)"
    )
    prompts.add_argument(
        "--input_point",
        metavar="'X,Y;X,Y;...'",
        help="points as x,y pairs separated by ';' (x = column, y = row), e.g. '100,100;110,110;0,0'",
    )
    prompts.add_argument(
        "--input_label",
        metavar="'L,L,...'",
        help="one label per point: 1 = foreground (part of the object), 0 = background, e.g. '1,1,0'",
    )
    prompts.add_argument(
        "--input_box",
        metavar="'X0,Y0,X1,Y1'",
        help="box around the object: top-left x0,y0 then bottom-right x1,y1, e.g. '10,100,300,300'",
    )
    model = seg.add_argument_group("model")
    model.add_argument(
        "--model",
        choices=MODEL_CHOICES,
        default=None,
        help=f"SAM model (default: {DEFAULT_MODEL}, downloaded on first use; with --checkpoint, "
        f"detected from the file). '{OFFLINE_MODEL}' is a small offline model shipped with "
        "sam_widget, for demos on simple shapes.",
    )
    model.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="local SAM checkpoint (.pth), e.g. sam_vit_b_01ec64.pth, instead of the cached download",
    )
    model.add_argument(
        "--device",
        default="auto",
        help="'auto' (default: CUDA, then MPS, then CPU), 'cpu', 'cuda', 'cuda:N' or 'mps'",
    )
    model.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16"),
        default="auto",
        help="number format of the image encoder: 'auto' (default) = bf16 on GPUs and CPUs with "
        "native bf16, else fp32; 'fp32' gives exactly SamPredictor's masks",
    )
    out = seg.add_argument_group("output")
    out.add_argument(
        "--output",
        default=DEFAULT_OUTPUT,
        metavar="DIR",
        help=f"directory for mask_<i>.png, masks.npy and figure.png (default: {DEFAULT_OUTPUT}/; "
        "created if needed, those files are overwritten)",
    )
    out.add_argument(
        "--single", action="store_true", help="predict one mask instead of three candidates"
    )
    out.add_argument("--show", action="store_true", help="also open the figure in a window")
    out.add_argument(
        "--coco",
        metavar="FILE",
        help="also write the candidate masks as a COCO instances JSON (compressed RLE, with the "
        "prompts and the candidate index of each mask)",
    )
    seg.set_defaults(func=_run_segment)
    from .cli_everything import add_everything_parser

    add_everything_parser(sub, MODEL_CHOICES, DEFAULT_MODEL, OFFLINE_MODEL)
    from .io.commands import add_export_parser

    add_export_parser(sub).set_defaults(func=_run_export)
    from .batch.commands import add_batch_parser

    add_batch_parser(sub, handler=_run_batch)
    return parser


# ------------------------------------------------------------------------------ segment


@dataclass
class _Request:
    image: np.ndarray
    points: np.ndarray | None
    labels: np.ndarray | None
    box: np.ndarray | None
    model: str | None
    checkpoint: Path | None
    device: str
    output: Path
    multimask: bool
    show: bool
    coco: Path | None = None
    precision: str = "auto"


def _validate(args: argparse.Namespace) -> _Request:
    """Check every flag and read the image, before any model is loaded. Raises ValueError."""
    points = parse_points(args.input_point) if args.input_point is not None else None
    labels = parse_labels(args.input_label) if args.input_label is not None else None
    box = parse_box(args.input_box) if args.input_box is not None else None
    if points is not None and labels is None:
        raise ValueError(
            f"--input_point needs --input_label: one label per point (1 = foreground, 0 = "
            f"background), e.g. --input_label '{','.join('1' * len(points))}'."
        )
    if labels is not None and points is None:
        raise ValueError("--input_label was given without --input_point.")
    if points is not None and len(points) != len(labels):
        raise ValueError(
            f"--input_point has {len(points)} point{'s' if len(points) != 1 else ''} but "
            f"--input_label has {len(labels)} label{'s' if len(labels) != 1 else ''}; "
            "give one label per point."
        )
    if points is None and box is None:
        raise ValueError(
            "no prompt: give --input_point with --input_label, and/or --input_box "
            "(see 'sam-widget segment --help')."
        )
    checkpoint = None
    if args.checkpoint is not None:
        checkpoint = Path(args.checkpoint).expanduser()
        if args.model == OFFLINE_MODEL:
            raise ValueError(
                f"--model {OFFLINE_MODEL} is shipped with sam_widget and takes no --checkpoint; "
                "leave out one of the two."
            )
        if not checkpoint.exists():
            raise ValueError(f"--checkpoint {str(checkpoint)!r} does not exist.")
        if not checkpoint.is_file():
            raise ValueError(
                f"--checkpoint {str(checkpoint)!r} is not a file (pass the .pth file itself)."
            )
    output = Path(args.output).expanduser()
    if output.exists() and not output.is_dir():
        raise ValueError(f"--output {str(output)!r} exists and is not a directory.")
    coco = None
    if getattr(args, "coco", None) is not None:
        from .io._common import check_output_file

        coco = check_output_file(args.coco, "--coco")
    try:
        image = load_image(args.image_path)
    except ImageError as e:
        raise ValueError(f"--image_path: {e}") from None
    _check_inside(points, box, (int(image.shape[0]), int(image.shape[1])))
    model = args.model if args.model is not None else (None if checkpoint is not None else DEFAULT_MODEL)
    return _Request(
        image=image,
        points=points,
        labels=labels,
        box=box,
        model=model,
        checkpoint=checkpoint,
        device=args.device,
        output=output,
        multimask=not args.single,
        show=args.show,
        coco=coco,
        precision=getattr(args, "precision", "auto"),
    )


class _HeldStderr(io.TextIOBase):
    """Holds back what is written to stderr while the model loads.

    A checkpoint download first announces itself on stderr and then shows a progress bar
    once the server answers. Held text is released as soon as a second write arrives (the
    progress bar: the download is really under way) or when loading succeeds; if loading
    fails, the caller drops it, so the user sees only the one-line error.
    """

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._held: list[str] | None = []

    def write(self, text: str) -> int:
        if self._held is not None:
            self._held.append(text)
            if len(self._held) < 2:
                return len(text)
            self.release()
            return len(text)
        return self._stream.write(text)

    def release(self) -> None:
        if self._held:
            self._stream.write("".join(self._held))
            self._stream.flush()
        self._held = None

    def drop(self) -> None:
        self._held = None

    def flush(self) -> None:
        if self._held is None:
            self._stream.flush()

    def isatty(self) -> bool:
        return bool(getattr(self._stream, "isatty", lambda: False)())

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8") or "utf-8"

    def fileno(self) -> int:
        return self._stream.fileno()


def _load_segmenter(req: _Request) -> "Segmenter":
    """``Segmenter.from_pretrained`` with every failure turned into a :class:`CLIError`."""
    from .engine.checkpoints import CheckpointError
    from .engine.segmenter import Segmenter

    label = req.model or "SAM"
    real_stderr = sys.stderr
    held = _HeldStderr(real_stderr)
    sys.stderr = held
    try:
        from .engine.checkpoints import select_device
        from .engine.precision import resolve_precision

        # fp32 is SamPredictor's computation exactly (exact=True); bf16 is the fast path
        precision = resolve_precision(req.precision, select_device(req.device))
        segmenter = Segmenter.from_pretrained(
            req.model, req.checkpoint, req.device, exact=precision == "fp32", precision=precision
        )
    except CheckpointError as e:
        held.drop()
        raise CLIError(_checkpoint_message(e, req)) from None
    except (ValueError, TypeError, OSError) as e:  # bad device; a missing file of the model
        held.drop()
        raise CLIError(f"cannot load the {label} model: {e}") from None
    except BaseException:
        held.drop()
        raise
    finally:
        sys.stderr = real_stderr
    held.release()
    return segmenter


def _checkpoint_message(error: Exception, req: _Request) -> str:
    text = " ".join(str(error).split())
    if req.checkpoint is not None:
        return f"cannot load --checkpoint {str(req.checkpoint)!r}: {text}"
    if req.model == OFFLINE_MODEL:
        return f"cannot load --model {OFFLINE_MODEL}: {text}"
    # The official checkpoint could not be downloaded, or its cached copy is damaged.
    from .engine.checkpoints import checkpoint_path

    model = req.model or DEFAULT_MODEL
    cut = text.find(" To fix:")
    reason = text[:cut] if cut >= 0 else text
    info = MODELS.get(model)
    filename = info.filename if info is not None and info.filename else f"the {model} checkpoint"
    try:
        cached = checkpoint_path(model)
    except (ValueError, TypeError):  # pragma: no cover - model types come from MODEL_CHOICES
        cached = None
    again = (
        f"delete {cached} and run again to download it afresh, " if cached and cached.exists() else ""
    )
    return (
        f"cannot get the {model} model: {reason} To fix: {again}download {filename} yourself and "
        f"pass --checkpoint PATH, or use --model {OFFLINE_MODEL} (small, offline, no download)."
    )


def _run_segment(args: argparse.Namespace) -> int:
    """validate flags -> load the model -> encode -> predict -> write outputs -> print."""
    try:
        req = _validate(args)
    except (ValueError, TypeError) as e:  # ImageError is a ValueError
        raise CLIError(str(e)) from None
    segmenter = _load_segmenter(req)
    try:
        segmenter.set_image(req.image)
        prediction = segmenter.predict(req.points, req.labels, req.box, multimask=req.multimask)
    except (ValueError, TypeError) as e:  # already checked above; kept as a safety net
        raise CLIError(f"cannot segment {args.image_path!r}: {e}") from None
    masks = np.ascontiguousarray(prediction.masks, dtype=bool)
    scores = np.asarray(prediction.scores, dtype=np.float64)

    fig = None
    if req.show:
        import matplotlib.pyplot as plt

        fig = plt.figure()
    fig = draw_figure(req.image, masks, scores, req.points, req.labels, req.box, figure=fig)
    paths = _write_outputs(req.output, masks, fig)
    for i, (score, mask) in enumerate(zip(scores, masks, strict=True)):
        print(f"mask {i}: score {score:.4f}, area {int(mask.sum())} px -> {paths[i]}")
    if req.coco is not None:
        from .io.commands import write_segment_coco

        try:
            write_segment_coco(req.coco, args.image_path, req.image.shape[:2], masks, scores,
                               req.points, req.labels, req.box)
        except OSError as e:
            raise CLIError(f"cannot write --coco {str(req.coco)!r}: {e.strerror or e}") from None
        print(f"COCO ({len(masks)} candidate{'s' * (len(masks) != 1)}) -> {req.coco}")
    sys.stdout.flush()
    if req.show:
        _show(req.output / "figure.png")
    return 0


def _run_batch(args: argparse.Namespace) -> int:
    """``sam-widget batch ...``: 0 all done, 1 some images failed, 2 bad arguments."""
    from .batch.commands import run_batch

    try:
        return run_batch(args)
    except (ValueError, TypeError) as e:
        raise CLIError(str(e)) from None


def _run_export(args: argparse.Namespace) -> int:
    """``sam-widget export``: a session (or COCO) file to COCO / PNG / CSV; never loads a model."""
    from .io.commands import run_export

    try:
        return run_export(args)
    except (ValueError, TypeError) as e:  # FormatError is a ValueError
        raise CLIError(str(e)) from None
    except OSError as e:
        raise CLIError(f"cannot write the export: {e.strerror or e} ({e.filename or ''})") from None


def _write_outputs(output: Path, masks: np.ndarray, fig: "Figure") -> list[Path]:
    """Write mask_<i>.png, masks.npy and figure.png; remove stale mask_<i>.png of a previous run."""
    from PIL import Image

    try:
        output.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, mask in enumerate(masks):
            path = output / f"mask_{i}.png"
            Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(path)
            paths.append(path)
        for i in range(len(masks), _MAX_MASKS):
            stale = output / f"mask_{i}.png"
            if stale.is_file():
                stale.unlink()
        np.save(output / "masks.npy", masks)
        fig.savefig(output / "figure.png", dpi=100)
    except OSError as e:
        raise CLIError(f"cannot write the results to {str(output)!r}: {e.strerror or e}") from None
    return paths


_NON_INTERACTIVE = {"agg", "cairo", "pdf", "pgf", "ps", "svg", "template"}


def _show(saved: Path) -> None:
    import matplotlib
    import matplotlib.pyplot as plt

    backend = str(matplotlib.get_backend()).lower()
    if backend in _NON_INTERACTIVE:
        print(
            f"{PROG}: note: --show needs a display (matplotlib backend is {backend!r}); "
            f"the figure is in {saved}.",
            file=sys.stderr,
        )
        plt.close("all")
        return
    plt.show()


# ------------------------------------------------------------------------------ figure


def draw_figure(
    image: Any,
    masks: np.ndarray,
    scores: Sequence[float] | np.ndarray | None = None,
    points: Sequence[Sequence[float]] | np.ndarray | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
    box: Sequence[float] | np.ndarray | None = None,
    *,
    figure: "Figure | None" = None,
    panel_width: float = 4.8,
) -> "Figure":
    """Draw ``image`` with each mask overlaid, one subplot per mask, side by side.

    Args:
      image: anything :func:`sam_widget.images.to_rgb_uint8` accepts (``H x W x 3``
        uint8 RGB, a PIL image, a path, ...).
      masks: ``(C, H, W)`` or ``(H, W)`` bool masks at the image size.
      scores: ``C`` predicted IoUs; subplot ``i`` is titled ``"Mask i, score s"``.
      points: ``N x 2`` ``(x, y)`` = (column, row) image pixels; drawn as stars, green for
        label 1 (foreground) and red for label 0 (background).
      labels: ``N`` labels, required with ``points``.
      box: ``(x0, y0, x1, y1)`` XYXY image pixels, drawn as a rectangle.
      figure: a Matplotlib figure to draw into (e.g. ``plt.figure()`` to show it in a
        window); by default a new ``matplotlib.figure.Figure`` not managed by pyplot, so it
        is garbage-collected normally and works with any backend.
      panel_width: width of each subplot in inches.

    Returns the figure. Raises ``ValueError`` / ``TypeError`` for inconsistent inputs.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    rgb = to_rgb_uint8(image)
    height, width = rgb.shape[:2]
    m = np.asarray(masks)
    if m.ndim == 2:
        m = m[None]
    if m.ndim != 3 or m.shape[1:] != (height, width):
        raise ValueError(
            f"masks must be (C, {height}, {width}) to match the image, got shape {np.shape(masks)}."
        )
    if m.shape[0] == 0:
        raise ValueError("masks is empty: nothing to draw.")
    m = m.astype(bool)
    sc = None
    if scores is not None:
        sc = np.asarray(scores, dtype=np.float64).reshape(-1)
        if sc.shape[0] != m.shape[0]:
            raise ValueError(
                f"scores must hold one value per mask: {m.shape[0]} masks, {sc.shape[0]} scores."
            )
    pts = lbl = None
    if points is not None:
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if labels is None:
            raise ValueError("points need labels (1 = foreground, 0 = background).")
        lbl = np.asarray(labels).reshape(-1)
        if lbl.shape[0] != pts.shape[0]:
            raise ValueError(
                f"labels must hold one value per point: {pts.shape[0]} points, {lbl.shape[0]} labels."
            )
    bx = None
    if box is not None:
        bx = np.asarray(box, dtype=np.float64).reshape(-1)
        if bx.shape != (4,):
            raise ValueError(f"box must be 4 numbers (x0, y0, x1, y1), got {box!r}.")

    n = m.shape[0]
    panel_height = panel_width * height / width
    size = (panel_width * n, panel_height + 0.45)
    if figure is None:
        fig = Figure(figsize=size)
    else:
        fig = figure
        fig.clear()
        fig.set_size_inches(*size)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.005, top=1 - 0.4 / size[1], wspace=0.02)
    axes = fig.subplots(1, n, squeeze=False)[0]
    star = max(60.0, min(300.0, 18.0 * panel_width * panel_width))
    color = np.asarray(_MASK_RGB, dtype=np.float32)
    base = rgb.astype(np.float32)
    for i, ax in enumerate(axes):
        shown = base.copy()
        shown[m[i]] = shown[m[i]] * (1 - _MASK_ALPHA) + color * _MASK_ALPHA
        ax.imshow(np.rint(shown).astype(np.uint8), interpolation="nearest")
        if pts is not None:
            for value, c in ((1, _POSITIVE_COLOR), (0, _NEGATIVE_COLOR)):
                sel = lbl == value
                if sel.any():
                    ax.scatter(
                        pts[sel, 0],
                        pts[sel, 1],
                        s=star,
                        marker="*",
                        color=c,
                        edgecolor="white",
                        linewidth=1.2,
                        zorder=3,
                        clip_on=False,
                    )
        if bx is not None:
            x0, y0, x1, y1 = bx
            ax.add_patch(
                Rectangle(
                    (x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor=_BOX_COLOR, linewidth=2, zorder=2
                )
            )
        title = f"Mask {i}" if sc is None else f"Mask {i}, score {sc[i]:.3f}"
        ax.set_title(title, fontsize=11)
        ax.set_xlim(-0.5, width - 0.5)
        ax.set_ylim(height - 0.5, -0.5)
        ax.axis("off")
    return fig


# -------------------------------------------------------------------------------- main


def _fail(message: object) -> int:
    text = " ".join(str(message).split())
    print(f"{PROG}: error: {text}", file=sys.stderr)
    return _EXIT_ERROR


def main(argv: list[str] | None = None) -> int:
    """Run the ``sam-widget`` command line and return its exit status (0 ok, 2 error).

    ``argv`` excludes the program name (default: ``sys.argv[1:]``). Errors are printed as
    one ``sam-widget: error: ...`` line on stderr; nothing is written to ``--output``
    unless segmentation succeeded.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except _UsageError as e:
        return _fail(e)
    except SystemExit as e:  # --help / --version
        return e.code if isinstance(e.code, int) else 0
    if args.command is None:
        return _fail("choose a command: segment, everything, export or batch (see 'sam-widget --help').")
    try:
        return args.func(args)
    except CLIError as e:
        return _fail(e)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return _EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
