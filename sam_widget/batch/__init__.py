"""Whole datasets on Dask: precompute embeddings, segment from prompts, segment everything.

::

    from sam_widget import batch
    report = batch.precompute("photos/", model="vit_b", cache_dir="emb/")      # a LocalCluster
    report = batch.precompute("photos/*.jpg", model="vit_b", cache_dir="emb/", client=client)
    w = SamWidget("photos/", cache_dir="emb/")      # opens every image with no encoder call

``images`` is a folder, a glob pattern or a list of file paths (workers read the files
themselves, so arrays are not accepted). Where the work runs is chosen by ``client`` /
``scheduler`` / ``workers`` (see :mod:`sam_widget.batch.runner`). Each worker loads the model
once. Runs are resumable: an image whose embedding (or result) is already there is skipped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

from .runner import BatchReport, ImageResult, Progress, Runner, default_workers
from .spec import ModelSpec
from .outputs import PartStore, assemble_coco, part_key
from .prompts import ObjectPrompt, prompts_per_image
from .tasks import as_result, precompute_task, segment_task

__all__ = ["precompute", "segment", "everything", "BatchReport", "ImageResult", "ModelSpec", "ObjectPrompt", "default_workers",
           "image_paths"]


def image_paths(images: Any) -> list[str]:
    """The image files named by ``images``: a folder (its image files, in natural name order),
    a glob pattern, a single file path, or a list of any of these (each folder or pattern in
    the list expanded in place, as ``sam-widget batch ... dirA/ dirB/ x.png`` means) -- the
    rules of ``SamWidget``/``Session`` (:func:`sam_widget.session.images.resolve_images`), but
    files only: workers read them themselves. Raises ``TypeError`` for arrays and other
    non-paths, ``ValueError`` naming a path that does not exist, an empty list, an empty
    folder or a glob that matches nothing."""
    from ..session.images import resolve_images

    if not isinstance(images, (str, os.PathLike, list, tuple)):
        raise TypeError(f"images must be a folder, a glob pattern or a list of file paths, not {type(images).__name__}.")
    if isinstance(images, (list, tuple)):
        resolve_images(images)  # an empty list, nested lists: its errors
        out: list[str] = []
        for k, item in enumerate(images):
            if not isinstance(item, (str, os.PathLike)):
                raise TypeError(
                    f"image {k} is a {type(item).__name__}: batch runs take file paths (workers read the files themselves)."
                )
            out += _expand(item, f"image {k}", resolve_images)
        return out
    return _expand(images, "images", resolve_images)


def _expand(item: str | os.PathLike[str], where: str, resolve_images: Callable[[Any], tuple[list[Any], bool]]) -> list[str]:
    """One path of ``images``: a folder's or a pattern's files, or the file itself."""
    text = os.fspath(item)
    if isinstance(text, bytes):
        raise TypeError("image paths must be str or os.PathLike, not bytes.")
    p = Path(text).expanduser()
    if p.is_dir() or (not p.exists() and any(c in text for c in "*?[")):
        return [os.fspath(f) for f in resolve_images(item)[0]]
    if not p.exists():
        raise ValueError(f"{where}: {text!r} does not exist (neither a file, a folder nor a glob pattern).")
    return [text]


def _threads(threads: Any, client: Any, scheduler: Any, workers: Any) -> int | None:
    """torch threads per worker: as given, else the cores shared out among a local cluster's
    workers (a cluster of your own keeps its workers' setting)."""
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int, got {threads!r}.")
        return threads
    if client is None and scheduler is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        n = workers if isinstance(workers, int) and not isinstance(workers, bool) and workers > 0 else default_workers()
        return max(1, cores // n)
    return None


_SEGMENTER_KWARGS = ("exact", "precision", "memory_cache_bytes")
"""The ``Segmenter`` keywords a batch run passes on (``Segmenter.__init__``'s own)."""


def _segmenter_kwargs(kwargs: Any) -> dict[str, Any]:
    """Check the extra ``Segmenter`` keywords here, at the call (a worker would otherwise
    fail every image with the same message)."""
    from .._checks import as_count, as_flag

    if not isinstance(kwargs, dict):
        raise TypeError(f"segmenter_kwargs must be a dict of Segmenter keywords, not {type(kwargs).__name__}.")
    unknown = sorted(str(k) for k in kwargs if k not in _SEGMENTER_KWARGS)
    if unknown:
        raise TypeError(f"unknown Segmenter keyword(s) {', '.join(unknown)}; batch runs take {', '.join(_SEGMENTER_KWARGS)}.")
    out = dict(kwargs)
    if "exact" in out:
        out["exact"] = as_flag(out["exact"], "exact")
    if "memory_cache_bytes" in out:
        as_count(out["memory_cache_bytes"], "memory_cache_bytes", minimum=0)
    if "precision" in out:
        prec = out["precision"]
        if not isinstance(prec, str) or prec not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be one of 'auto', 'fp32', 'bf16', got {prec!r}.")
        if out.get("exact") and prec == "bf16":
            raise ValueError("precision='bf16' cannot be combined with exact=True (exact mode is fp32).")
    return out


def _spec(model: str | Callable[[], Any], checkpoint: Any, device: Any, cache_dir: Any, kwargs: Any,
          threads: int | None = None) -> ModelSpec:
    """The run's :class:`ModelSpec`, every setting checked here, once: a bad one is one
    ``ValueError``/``TypeError`` at the call, not the same failure on every image."""
    import pickle

    from ..engine.registry import OFFLINE_MODEL, check_device_name

    if isinstance(model, str):
        from ..engine.checkpoints import valid_model_types

        if model not in valid_model_types():
            raise ValueError(f"unknown model {model!r}; choose one of {valid_model_types()}.")
        if model == OFFLINE_MODEL and checkpoint is not None:
            raise ValueError(f"model={OFFLINE_MODEL!r} is shipped with sam_widget and takes no checkpoint; "
                             f"got checkpoint={checkpoint!r}.")
    if cache_dir is not None:
        from ..io._common import check_output_dir

        if isinstance(cache_dir, (str, os.PathLike)) and not os.fspath(cache_dir).strip():
            raise ValueError("cache_dir is empty; give the folder where the embeddings are kept (or None).")
        check_output_dir(cache_dir, "cache_dir")  # TypeError / ValueError naming it
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(f"checkpoint must be a path, not {type(checkpoint).__name__}.")
    if isinstance(device, str) and device.strip().lower() == "auto":
        device = "auto"
    check_device_name(device)
    if not isinstance(device, str):
        device = str(device)  # a torch.device travels by its name
    spec = ModelSpec(
        model=model,
        checkpoint=None if checkpoint is None else os.fspath(Path(os.fspath(checkpoint)).expanduser()),
        device=device,
        cache_dir=None if cache_dir is None else os.fspath(Path(os.fspath(cache_dir)).expanduser().resolve()),
        segmenter_kwargs=tuple(sorted(_segmenter_kwargs(kwargs).items())),
        torch_threads=threads,
    )
    try:
        pickle.dumps(spec)  # it travels to every worker
    except Exception as exc:  # PicklingError, AttributeError, TypeError: which one depends on the object
        raise TypeError(f"model {spec.label!r} cannot be sent to the workers: it must be picklable (a "
                        f"module-level function or functools.partial, not a lambda): {exc}") from None
    return spec


def _progress(progress: Any) -> bool:
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, not {progress!r}.")
    return progress


def precompute(
    images: Any,
    model: str | Callable[[], Any] = "vit_b",
    cache_dir: str | os.PathLike[str] | None = None,
    *,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str = "auto",
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    **segmenter_kwargs: Any,
) -> BatchReport:
    """Compute every image's embedding into ``cache_dir`` (the disk cache that ``Segmenter``
    and ``SamWidget(..., cache_dir=...)`` read), skipping images already there.

    Returns a :class:`BatchReport`: per image ``"computed"``, ``"cached"`` (was already there)
    or ``"failed"`` with the reason (an unreadable file does not stop the run).
    """
    if cache_dir is None:
        raise ValueError("precompute needs cache_dir=: the folder where the embeddings are kept.")
    paths = image_paths(images)
    _progress(progress)
    spec = _spec(model, checkpoint, device, cache_dir, segmenter_kwargs, _threads(threads, client, scheduler, workers))
    Path(spec.cache_dir).mkdir(parents=True, exist_ok=True)
    return _run("precompute", paths, precompute_task, (spec,), client, scheduler, workers, progress)


def segment(
    images: Any,
    prompts: Any,
    model: str | Callable[[], Any] = "vit_b",
    *,
    output: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    polygons: bool = False,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    **segmenter_kwargs: Any,
) -> BatchReport:
    """Masks from prompts for every image: e.g. a detection dataset's boxes (a COCO file)
    turned into a COCO file of masks.

    ``prompts``: a COCO file of boxes, or one entry per image (see
    :mod:`sam_widget.batch.prompts`). ``output``: the COCO file to write (atomically, at the
    end); each image's result is also kept in ``<output>.parts/`` as soon as it is done, and
    a re-run with the same prompts and model skips those images. Without ``output`` nothing
    is written and the result is only in ``report.coco``. ``cache_dir``: an embedding cache
    to use (e.g. one filled by :func:`precompute`): cached images are not encoded again.

    Returns a :class:`BatchReport` (``report.coco`` is the COCO dict: images in input order,
    failed images left out; ``report.failed`` says why they failed).
    """
    paths = image_paths(images)
    objects = prompts_per_image(prompts, paths)
    _progress(progress)
    if not isinstance(polygons, bool):
        raise TypeError(f"polygons must be True or False, not {polygons!r}.")
    spec = _spec(model, checkpoint, device, cache_dir, segmenter_kwargs, _threads(threads, client, scheduler, workers))
    store = PartStore(output)
    keys = [part_key(p, [o.as_json() for o in objs], spec.key, polygons) for p, objs in zip(paths, objects)]
    return _run_parts("segment", paths, list(zip(paths, objects)), keys, store, segment_task, (spec, polygons),
                      client, scheduler, workers, progress)


def everything(
    images: Any,
    model: str | Callable[[], Any] = "vit_b",
    *,
    output: str | os.PathLike[str] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    device: str = "auto",
    cache_dir: str | os.PathLike[str] | None = None,
    polygons: bool = False,
    client: Any = None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    segmenter_kwargs: dict[str, Any] | None = None,
    **amg_params: Any,
) -> BatchReport:
    """Every object of every image (``Segmenter.segment_everything`` with ``amg_params``,
    the ``SamAutomaticMaskGenerator`` parameters), as one COCO file of proposals.

    Parts, resuming and ``output`` work as for :func:`segment`; changing a parameter means
    new results. Parameters (and every other setting) are checked at the call: a bad one
    raises ``TypeError``/``ValueError`` naming it before any work (the command line exits 2).
    """
    from .amg import everything_task

    from ..engine.everything_params import params_from

    paths = image_paths(images)
    _progress(progress)
    if not isinstance(polygons, bool):
        raise TypeError(f"polygons must be True or False, not {polygons!r}.")
    spec = _spec(model, checkpoint, device, cache_dir, {} if segmenter_kwargs is None else segmenter_kwargs,
                 _threads(threads, client, scheduler, workers))
    params_from(amg_params)  # the engine's own check: TypeError / ValueError naming the parameter
    store = PartStore(output)
    params = dict(sorted(amg_params.items()))
    keys = [part_key(p, "everything", params, spec.key, polygons) for p in paths]
    return _run_parts("everything", paths, paths, keys, store, everything_task, (spec, params, polygons),
                      client, scheduler, workers, progress)


def _run_parts(kind: str, paths: list[str], items: list[Any], keys: list[str], store: PartStore,
               task: Callable[..., Any], args: tuple, client: Any, scheduler: Any, workers: Any,
               progress: bool) -> BatchReport:
    """Run ``task`` for the items whose part is missing, store each part as it arrives,
    then assemble the COCO file from every part (in input order)."""
    t0 = time.perf_counter()
    results: list[ImageResult | None] = [None] * len(paths)
    parts: list[dict | None] = [None] * len(paths)
    todo = []
    for i, key in enumerate(keys):
        parts[i] = store.get(key)
        if parts[i] is not None:
            results[i] = ImageResult(paths[i], "skipped", data=parts[i])
        else:
            todo.append(i)
    bar = Progress(len(todo), kind, enabled=progress)
    try:
        if todo:
            with Runner(client=client, scheduler=scheduler, workers=workers) as runner:
                for j, value in runner.map(task, [items[i] for i in todo], *args):
                    i = todo[j]
                    res = results[i] = as_result(paths[i], value)
                    if res.ok:
                        store.put(keys[i], res.data)
                        parts[i] = res.data
                    bar.update(res.ok)
    finally:
        bar.close()
    done = [p for p in parts if p is not None]
    # a run in which no image succeeded writes nothing: an existing output file (say, a good
    # earlier run's) is left as it was, and the report says that no file was written
    write = store.output if done or not paths else None
    coco = assemble_coco(done, write)
    report = BatchReport(kind, [r for r in results if r is not None], time.perf_counter() - t0,
                         None if write is None else str(write), coco)
    if store.output is not None and write is None:
        report.note = f"every image failed: {str(store.output)!r} was not written"
    return report


def _run(kind: str, paths: list[str], task: Callable[..., Any], args: tuple, client: Any, scheduler: Any,
         workers: Any, progress: bool, output: str | None = None) -> BatchReport:
    results: list[ImageResult | None] = [None] * len(paths)
    t0 = time.perf_counter()
    bar = Progress(len(paths), kind, enabled=progress)
    try:
        with Runner(client=client, scheduler=scheduler, workers=workers) as runner:
            for i, value in runner.map(task, paths, *args):
                res = results[i] = as_result(paths[i], value)
                bar.update(res.ok)
    finally:
        bar.close()
    done = [r for r in results if r is not None]
    return BatchReport(kind, done, time.perf_counter() - t0, output)
