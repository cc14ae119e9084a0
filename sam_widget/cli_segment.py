"""The ``sam-widget segment`` command: validate flags, load the model, predict, write outputs.

Re-exported by :mod:`sam_widget.cli`.
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .cli_args import _MAX_MASKS, PROG, CLIError, _check_inside, parse_box, parse_labels, parse_points
from .cli_figure import draw_figure
from .engine.registry import DEFAULT_MODEL, MODELS, OFFLINE_MODEL
from .images import ImageError, load_image

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from .engine.segmenter import Segmenter

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

        coco = check_output_file(args.coco, "--coco", creates=output)
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
