"""Command-line parts of the io room: ``sam-widget export`` and the COCO output of
``sam-widget segment --coco``. No torch here: ``export`` converts a saved session (or
any COCO file) with no model loaded."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ._common import atomic_write, check_output_dir, check_output_file, read_json
from .polygons import DEFAULT_TOLERANCE

__all__ = ["add_export_parser", "run_export", "write_segment_coco"]

_EXPORT_EXAMPLES = """\
examples:
  sam-widget export work.json --coco out.json --png out/ --csv measurements.csv
  sam-widget export work.json --coco out.json --polygons --tolerance 0.5
  sam-widget export annotations.json --png labels/ --masks --bits 1     # any COCO file works too
  sam-widget export work.json --csv sizes.csv --pixel-size 0.65 --unit um
"""


def add_export_parser(sub: Any, formatter: Any = argparse.RawDescriptionHelpFormatter) -> argparse.ArgumentParser:
    """Add the ``export`` command to an argparse sub-parser collection."""
    exp = sub.add_parser(
        "export",
        help="convert a saved session (or a COCO file) to COCO, label PNGs and a measurement CSV",
        description="Convert a session file saved by sam_widget (w.save / autosave), or any COCO "
        "instances file, into COCO JSON, PNG label images and a CSV table of measurements. "
        "No model is loaded.",
        epilog=_EXPORT_EXAMPLES + "\nexit status: 0 on success, 2 on any error (one line on stderr).",
        formatter_class=formatter,
    )
    exp.add_argument("source", metavar="SESSION.json", help="session file (or COCO instances file) to convert")
    out = exp.add_argument_group("outputs (give at least one)")
    out.add_argument("--coco", metavar="FILE", help="write a COCO instances JSON (masks as compressed RLE)")
    out.add_argument("--png", metavar="DIR", help="write <stem>_labels.png per image into DIR (created if needed)")
    out.add_argument("--csv", metavar="FILE", help="write one row of measurements per object")
    opts = exp.add_argument_group("export options")
    opts.add_argument("--polygons", action="store_true", help="COCO segmentation as polygons instead of RLE")
    opts.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE, metavar="PX",
                      help=f"polygon simplification in pixels (default {DEFAULT_TOLERANCE}: exact)")
    opts.add_argument("--masks", action="store_true", help="with --png: also one <stem>_<i>_<label>.png per object")
    opts.add_argument("--bits", type=int, choices=(1, 8), default=8, help="with --masks: 1-bit or 8-bit masks (default 8)")
    opts.add_argument("--pixel-size", type=float, default=None, metavar="S",
                      help="with --csv: side of one pixel in --unit, adds physical-unit columns")
    opts.add_argument("--unit", default="um", help="unit of --pixel-size (default um)")
    return exp


def _load(path: Path) -> tuple[list[dict[str, Any]], list[Any], list[list[np.ndarray]], list[list[str]], list[list[Any]], list[list[Any]]]:
    """Images (COCO dicts), image sources for intensities, masks, labels, scores, prompts."""
    from ._coco_read import parse_coco
    from .records import EXTENSION_KEY
    from .session import SESSION_FORMAT, read_session

    data = read_json(path)
    head = data.get(EXTENSION_KEY) if isinstance(data, dict) else None
    if isinstance(head, dict) and head.get("format") == SESSION_FORMAT:
        session = read_session(path)
        images = [{"file_name": im.file_name, "height": im.height, "width": im.width} for im in session.images]
        sources: list[Any] = [im.path if im.path is not None and im.path.is_file() else None for im in session.images]
        masks = [[o.mask for o in im.objects] for im in session.images]
        labels = [[o.label for o in im.objects] for im in session.images]
        scores = [[o.score for o in im.objects] for im in session.images]
        prompts = [[o.prompts for o in im.objects] for im in session.images]
        return images, sources, masks, labels, scores, prompts
    ds = parse_coco(data, path)
    images = [{"file_name": im.file_name, "height": im.height, "width": im.width} for im in ds.images]
    sources = [im.path for im in ds.images]
    return (images, sources, [[o.mask for o in im.objects] for im in ds.images], [im.labels for im in ds.images],
            [im.scores for im in ds.images], [im.prompts for im in ds.images])


def run_export(args: argparse.Namespace) -> int:
    """``sam-widget export``: check every output first, read, then write. Raises
    ``ValueError`` (incl. :class:`~sam_widget.io.FormatError`) with a one-line message."""
    from .coco import to_coco
    from .measure import measurements
    from .png import export_png

    if not (args.coco or args.png or args.csv):
        raise ValueError("nothing to do: give --coco FILE, --png DIR and/or --csv FILE.")
    if args.tolerance < 0 or not np.isfinite(args.tolerance):
        raise ValueError(f"--tolerance must be >= 0 pixels, got {args.tolerance}.")
    if args.pixel_size is not None and not (args.pixel_size > 0 and np.isfinite(args.pixel_size)):
        raise ValueError(f"--pixel-size must be > 0, got {args.pixel_size}.")
    coco_path = check_output_file(args.coco, "--coco") if args.coco else None
    csv_path = check_output_file(args.csv, "--csv") if args.csv else None
    png_dir = check_output_dir(args.png, "--png directory") if args.png else None
    source = Path(args.source).expanduser()
    images, sources, masks, labels, scores, prompts = _load(source)
    n_obj = sum(len(m) for m in masks)
    if coco_path is not None:
        to_coco(images, masks, labels=labels, scores=scores, prompts=prompts,
                polygons=args.polygons, tolerance=args.tolerance, path=coco_path)
        print(f"{coco_path}: COCO, {len(images)} image{'s' * (len(images) != 1)}, {n_obj} object{'s' * (n_obj != 1)}")
    if png_dir is not None:
        written = export_png(png_dir, images, masks, labels=labels, per_object=args.masks, bits=args.bits)
        print(f"{png_dir}: {len(written)} PNG file{'s' * (len(written) != 1)}")
    if csv_path is not None:
        with_pixels = [{**im, "path": src} for im, src in zip(images, sources)]
        df = measurements(with_pixels, masks, labels=labels, scores=scores, pixel_size=args.pixel_size, unit=args.unit)
        atomic_write(csv_path, lambda tmp: df.to_csv(tmp, index=False))
        missing = sum(src is None for src, m in zip(sources, masks) if m)
        note = f" (no image file for {missing} image{'s' * (missing != 1)}: no mean intensities there)" if missing else ""
        print(f"{csv_path}: {len(df)} row{'s' * (len(df) != 1)}{note}")
    return 0


def write_segment_coco(
    path: Path, image_path: str, size: tuple[int, int], masks: np.ndarray, scores: Sequence[float],
    points: np.ndarray | None, labels: np.ndarray | None, box: np.ndarray | None,
) -> dict[str, Any]:
    """The candidates of one ``sam-widget segment`` run as a COCO file: one image, one
    annotation per candidate (label ``object``), each with the run's prompts and its
    ``candidate`` index."""
    from .coco import to_coco

    base = {
        "points": [] if points is None else [tuple(map(float, p)) for p in points],
        "labels": [] if labels is None else [int(v) for v in labels],
        "box": None if box is None else [float(v) for v in box],
    }
    prompts = [{**base, "candidate": i} for i in range(len(masks))]
    return to_coco(
        [{"file_name": Path(image_path).name, "height": int(size[0]), "width": int(size[1])}],
        [masks], scores=[[float(s) for s in scores]], prompts=[prompts], path=path,
    )
