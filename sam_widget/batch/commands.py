"""``sam-widget batch precompute|segment|everything IMAGES...``: the batch API on the command line.

Exit status: 0 when every image succeeded, 1 when some images failed (the last line says
"N failed", each failure is listed), 2 for a usage error (nothing was run).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_batch_parser", "run_batch"]

_EXAMPLES = """\
examples:
  sam-widget batch precompute photos/ --cache-dir emb/                      # every embedding, once
  sam-widget batch segment photos/ --prompts boxes.json --coco masks.json   # detection boxes -> masks
  sam-widget batch everything 'photos/*.jpg' --coco proposals.json --points-per-side 16
  sam-widget batch precompute photos/ --cache-dir /shared/emb --scheduler tcp://head:8786
"""


def add_batch_parser(sub: Any, handler: Any = None) -> argparse.ArgumentParser:
    """Add ``batch`` (with its three commands) to an argparse sub-parser collection;
    ``handler(args)`` runs a parsed command (default :func:`run_batch`)."""
    p = sub.add_parser(
        "batch",
        help="whole folders on Dask: precompute embeddings, segment from boxes, segment everything",
        description="Run sam_widget over many images on a Dask cluster: a local one sized to this "
        "machine by default, or the scheduler given with --scheduler. Re-running skips the images "
        "already done.",
        epilog=_EXAMPLES + "\nexit status: 0 all images done, 1 some images failed, 2 usage error.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=handler or run_batch)  # no KIND: run_batch says what to choose
    kinds = p.add_subparsers(dest="batch_command", title="batch commands", metavar="KIND")
    for name, help_text in (
        ("precompute", "compute every image's embedding into --cache-dir"),
        ("segment", "masks from prompts (--prompts: a COCO file of boxes) -> --coco"),
        ("everything", "every object of every image (automatic mask generation) -> --coco"),
    ):
        k = kinds.add_parser(name, help=help_text, description=help_text, epilog=_EXAMPLES,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        k.add_argument("images", nargs="+", metavar="IMAGES", help="folders, glob patterns or image files (each folder's images in name order; a path that does not exist is a usage error)")
        k.add_argument("--model", default="vit_b", help="vit_b (default), vit_l, vit_h or tiny_shapes")
        k.add_argument("--checkpoint", metavar="PATH", help="local checkpoint (readable on every worker)")
        k.add_argument("--device", default="auto", help="device on the workers (default auto)")
        k.add_argument("--cache-dir", metavar="DIR", required=name == "precompute",
                       help="embedding cache shared with Segmenter / SamWidget" + (" (required)" if name == "precompute" else ""))
        if name != "precompute":
            k.add_argument("--coco", metavar="FILE", required=True,
                           help="COCO file to write (per-image parts go to FILE.parts/ as they finish)")
            k.add_argument("--polygons", action="store_true", help="segmentation as polygons instead of RLE")
        if name == "segment":
            k.add_argument("--prompts", metavar="FILE", required=True, help="COCO file whose bbox fields are the box prompts")
        if name == "everything":
            from .amg import add_everything_arguments

            add_everything_arguments(k)
        where = k.add_argument_group("where to run")
        where.add_argument("--scheduler", metavar="ADDRESS",
                           help="a Dask scheduler (tcp://host:8786), or 'sync' to run in this process")
        where.add_argument("--workers", type=int, metavar="N", help="worker processes of the local cluster")
        where.add_argument("--threads", type=int, metavar="N",
                           help="torch threads per worker (default: the local cluster shares out the cores)")
        k.add_argument("--quiet", action="store_true", help="no progress bar")
        k.set_defaults(func=handler or run_batch)
    return p


def run_batch(args: argparse.Namespace) -> int:
    """Run one batch command; returns the exit status. Raises ValueError/TypeError for bad
    arguments (the caller prints them as one line, exit 2)."""
    from . import everything, precompute, segment

    kind = getattr(args, "batch_command", None)
    if kind is None:
        raise ValueError("choose what to run: batch precompute, batch segment or batch everything.")
    images = args.images if len(args.images) > 1 else args.images[0]
    common = dict(model=args.model, checkpoint=args.checkpoint, device=args.device, scheduler=args.scheduler,
                  workers=args.workers, threads=args.threads, progress=not args.quiet)
    if kind == "precompute":
        report = precompute(images, cache_dir=args.cache_dir, **common)
    elif kind == "segment":
        report = segment(images, prompts=args.prompts, output=args.coco, cache_dir=args.cache_dir,
                         polygons=args.polygons, **common)
    else:
        from .amg import everything_params

        report = everything(images, output=args.coco, cache_dir=args.cache_dir, polygons=args.polygons,
                            **everything_params(args), **common)
    print(str(report))
    n = len(report.failed)
    if n:
        print(f"{n} failed", file=sys.stderr)
        return 1
    return 0

