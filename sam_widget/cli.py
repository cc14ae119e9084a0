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
import sys

# Re-exported: everything below used to be defined here (sam_widget.cli_everything and
# the tests import some of these names from sam_widget.cli).
from .cli_args import (  # noqa: F401
    _EXIT_ERROR,
    _EXIT_INTERRUPTED,
    _MAX_MASKS,
    DEFAULT_OUTPUT,
    MODEL_CHOICES,
    PROG,
    CLIError,
    _check_inside,
    _number,
    _UsageError,
    parse_box,
    parse_labels,
    parse_points,
)
from .cli_figure import (  # noqa: F401
    _BOX_COLOR,
    _MASK_ALPHA,
    _MASK_RGB,
    _NEGATIVE_COLOR,
    _POSITIVE_COLOR,
    draw_figure,
)
from .cli_segment import (  # noqa: F401
    _NON_INTERACTIVE,
    _checkpoint_message,
    _HeldStderr,
    _load_segmenter,
    _Request,
    _run_segment,
    _show,
    _validate,
    _write_outputs,
)
from .engine.registry import DEFAULT_MODEL, MODELS, OFFLINE_MODEL, model_names  # noqa: F401
from .images import ImageError, load_image, to_rgb_uint8  # noqa: F401

__all__ = [
    "main",
    "build_parser",
    "draw_figure",
    "parse_points",
    "parse_labels",
    "parse_box",
    "MODEL_CHOICES",
]


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
