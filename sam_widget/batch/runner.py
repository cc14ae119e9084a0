"""Running one task per image on Dask (or in this process), results streamed as they finish.

Where the work runs:
  * ``client=None`` (default): a ``distributed.LocalCluster`` of worker *processes* sized to
    this machine is started for the run and closed after it (also on Ctrl+C).
  * ``client=<distributed.Client>``: any cluster (LocalCluster, dask-jobqueue, Kubernetes, a
    scheduler you started); it is used as it is and never closed by us.
  * ``scheduler="tcp://host:8786"``: connect a new client to that scheduler (closed after the
    run; the cluster itself is left running).
  * ``scheduler="sync"``: no Dask at all, every task in this process, one after another (for
    debugging; the results are the same).

Torch threads: each worker runs one task at a time; torch's intra-op threads per worker are
``threads=`` (default for a local cluster: the cores shared out among its workers, so they
never oversubscribe the machine; Dask's own workers otherwise start with ``OMP_NUM_THREADS=1``).
The local cluster has one worker per core by default, fewer if memory does not hold that
many models (``workers=`` sets it).

Worker settings for torch: the local cluster's workers run without Dask's sampling profiler
and without the ``MALLOC_TRIM_THRESHOLD_`` that Dask's nanny otherwise puts in their
environment (:data:`WORKER_CONFIG`). Measured on a 2-core worker with 2 torch threads, a bf16
matmul / a conv took 51 / 31 ms with Dask's defaults, 46 / 28 ms without the profiler and
43 / 22 ms in a plain process; the trim threshold alone costs the plain process 46 / 28 ms
(it turns off glibc's adaptive mmap threshold, so every large tensor is fresh zeroed pages).
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

__all__ = ["ImageResult", "BatchReport", "Runner", "default_workers", "local_cluster", "WORKER_CONFIG"]

WORKER_CONFIG: dict[str, Any] = {
    "distributed.worker.profile.enabled": False,
    "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,  # None: not set at all
}
"""Dask settings for the workers of the local clusters that ``sam_widget.batch`` starts (see
the module docstring for why); pass them to your own cluster with ``dask.config.set``."""

_MODEL_BYTES = 2_500_000_000  # a vit_b worker's resident memory, with headroom (measured peak 2.07 GB: README, "What it costs")


@dataclass
class ImageResult:
    """What happened to one image: ``status`` is ``"computed"``, ``"cached"`` (precompute:
    the embedding was already there), ``"done"`` (segment / everything), ``"skipped"`` (a
    result from an earlier run was reused) or ``"failed"`` (``error`` says why)."""

    path: str
    status: str
    error: str | None = None
    seconds: float = 0.0
    worker: str | None = None
    data: Any = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status != "failed"


@dataclass
class BatchReport:
    """The outcome of a batch run, one :class:`ImageResult` per image, in input order."""

    kind: str
    results: list[ImageResult]
    elapsed_s: float
    output: str | None = None
    coco: dict[str, Any] | None = field(default=None, repr=False)  # segment / everything: the COCO dict
    note: str | None = None  # e.g. why the output file was not written

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.results)

    @property
    def failed(self) -> list[ImageResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def images_per_min(self) -> float:
        """Images processed (not skipped or failed) per minute of wall time."""
        work = sum(r.status in ("computed", "done") for r in self.results)
        return 60.0 * work / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary(self) -> str:
        parts = [f"{len(self.results)} images"]
        for status in ("computed", "cached", "done", "skipped", "failed"):
            n = self.count(status)
            if n:
                parts.append(f"{n} {status}")
        parts.append(f"{self.elapsed_s:.1f} s ({self.images_per_min:.1f} images/min)")
        text = f"{self.kind}: " + ", ".join(parts)
        if self.output:
            text += f"; output {self.output}"
        if self.note:
            text += f"; {self.note}"
        return text

    def __str__(self) -> str:
        lines = [self.summary()]
        lines += [f"  failed: {r.path}: {r.error}" for r in self.failed]
        return "\n".join(lines)


def default_workers(model_bytes: int = _MODEL_BYTES) -> int:
    """Worker processes for a local cluster: one per core, as many as memory holds."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        avail = cores * model_bytes
    return max(1, min(cores, int(avail // model_bytes)))


def local_cluster(n_workers: int) -> Any:
    """A ``distributed.LocalCluster`` of ``n_workers`` single-threaded worker processes with
    :data:`WORKER_CONFIG` (the one ``client=None`` starts). The caller closes it."""
    import dask
    from distributed import LocalCluster

    if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 1:
        raise ValueError(f"n_workers must be a whole number >= 1, not {n_workers!r}.")
    # Dask's nanny also writes its pre-spawn variables into *this* process's environment, so a
    # cluster started earlier (by anyone) leaves MALLOC_TRIM_THRESHOLD_ here for our workers to
    # inherit: drop it when it holds exactly Dask's default (a value of the user's own stays).
    dask_default = dask.config.get("distributed.nanny.pre-spawn-environ", {}).get("MALLOC_TRIM_THRESHOLD_")
    if dask_default is not None and os.environ.get("MALLOC_TRIM_THRESHOLD_") == str(dask_default):
        os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with dask.config.set(WORKER_CONFIG):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                            silence_logs=logging.ERROR)


class Runner:
    """A context manager that runs ``fn(item, *args)`` for every item on the chosen scheduler.

    ``map`` yields ``(index, result)`` as tasks finish (not in input order). A task that
    raises, or whose worker died more often than Dask allows, yields an exception object as
    its result; the run goes on with the other items.
    """

    def __init__(
        self,
        client: Any = None,
        scheduler: str | None = None,
        workers: int | None = None,
        retries: int = 2,
    ) -> None:
        if client is not None and scheduler is not None:
            raise ValueError("give either client= or scheduler=, not both.")
        if scheduler is not None and not isinstance(scheduler, str):
            raise TypeError(f"scheduler must be 'sync' or an address such as 'tcp://host:8786', not {type(scheduler).__name__}.")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be a positive int, got {workers!r}.")
        if client is not None:
            from distributed import Client

            if not isinstance(client, Client):
                raise TypeError(f"client must be a distributed.Client, not {type(client).__name__}.")
        self._given_client = client
        self._scheduler = scheduler
        self._workers = workers
        self._retries = retries
        self.client: Any = None
        self._owned: list[Any] = []  # what we started and must close

    @property
    def in_process(self) -> bool:
        return self._scheduler == "sync"

    def __enter__(self) -> "Runner":
        if self.in_process:
            return self
        if self._given_client is not None:
            self.client = self._given_client
            return self
        from distributed import Client

        try:
            if self._scheduler is None:
                cluster = local_cluster(self._workers or default_workers())
                self._owned.append(cluster)
                self.client = Client(cluster)
            else:
                self.client = Client(self._scheduler)
            self._owned.insert(0, self.client)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the client and cluster this runner started (never a client it was given)."""
        while self._owned:
            obj = self._owned.pop(0)
            try:
                obj.close()
            except Exception:  # noqa: BLE001 - closing is best effort; the run's result stands
                pass

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *args: Any) -> Iterator[tuple[int, Any]]:
        if self.in_process:
            for i, item in enumerate(items):
                try:
                    yield i, fn(item, *args)
                except Exception as exc:  # noqa: BLE001 - reported per image, the run goes on
                    yield i, exc
            return
        from distributed import as_completed

        futures = [self.client.submit(fn, item, *args, pure=False, retries=self._retries) for item in items]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for fut in as_completed(futures):
                try:
                    res = fut.result()
                except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker after too many deaths
                    res = exc
                yield index[fut.key], res
        finally:
            for f in futures:  # on Ctrl+C or an error: stop what is still queued
                if not f.done():
                    f.cancel()


def rate(done: int, seconds: float) -> str:
    """``"12.3 img/min"`` for a progress bar."""
    return f"{60.0 * done / seconds:.1f} img/min" if seconds > 0 and not math.isclose(seconds, 0.0) else "–"


class Progress:
    """A tqdm bar (terminal or notebook) counting images done and failed, with images/min."""

    def __init__(self, total: int, desc: str, enabled: bool = True) -> None:
        self._bar = None
        if enabled:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit="img")
        self._t0 = time.perf_counter()
        self.done = 0
        self.failed = 0

    def update(self, ok: bool) -> None:
        if ok:
            self.done += 1
        else:
            self.failed += 1
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix_str(f"failed {self.failed}, {rate(self.done, time.perf_counter() - self._t0)}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
