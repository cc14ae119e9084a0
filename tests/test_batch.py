"""Batch runs on Dask: precompute embeddings for a folder, on a real LocalCluster.

One cluster of two worker processes serves the module (started once); the worker-kill test
starts its own. Models are tiny random-weight ones, sent to workers as a factory (a
``functools.partial``), so every worker builds bit-identical weights.
"""

from __future__ import annotations

import functools
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from sam_widget import Segmenter, batch
from sam_widget.batch import runner as batch_runner
from sam_widget.batch.spec import ModelSpec, loaded_models
from sam_widget.engine.models import TINY_TEST_CONFIG, random_sam

distributed = pytest.importorskip("distributed")

MODEL = functools.partial(random_sam, TINY_TEST_CONFIG, seed=0)


def _write_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        rng = np.random.default_rng(seed + i)
        p = folder / f"img{i:02d}.png"
        Image.fromarray(rng.integers(0, 256, (48 + 3 * i, 64, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def _cache_files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.glob("*.npz"))}


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def test_precompute_on_two_workers_writes_the_same_embeddings_as_this_process(tmp_path, client):
    paths = _write_images(tmp_path / "imgs", 6)
    local = batch.precompute(tmp_path / "imgs", model=MODEL, cache_dir=tmp_path / "a", scheduler="sync", progress=False)
    dask = batch.precompute(tmp_path / "imgs", model=MODEL, cache_dir=tmp_path / "b", client=client, progress=False)
    assert [r.status for r in local.results] == ["computed"] * 6
    assert [r.status for r in dask.results] == ["computed"] * 6
    assert [r.path for r in dask.results] == [str(p) for p in paths]  # input order, each once
    assert {r.worker for r in dask.results} <= {str(w["name"]) for w in client.scheduler_info()["workers"].values()}
    a, b = _cache_files(tmp_path / "a"), _cache_files(tmp_path / "b")
    assert len(a) == 6 and a == b  # bit for bit

    # ...and they are exactly what Segmenter itself computes and reads back
    seg = Segmenter(MODEL(), cache_dir=tmp_path / "b")
    fresh = Segmenter(MODEL())
    for p in paths:
        seg.set_image(p)
        fresh.set_image(p)
        assert seg._features.equal(fresh._features)
    assert seg.stats["encoder_calls"] == 0 and seg.stats["disk_hits"] == 6


def test_each_worker_loads_the_model_once(tmp_path, client):
    _write_images(tmp_path / "imgs", 8)
    batch.precompute(tmp_path / "imgs", model=MODEL, cache_dir=tmp_path / "c", client=client, progress=False)
    loads = client.run(loaded_models)  # {worker address: {spec key: loads}}
    key = ModelSpec(MODEL, cache_dir=os.fspath((tmp_path / "c").resolve())).key
    per_worker = [d.get(key, 0) for d in loads.values()]
    assert sum(per_worker) >= 1 and max(per_worker) == 1


def test_a_second_run_skips_what_is_cached_and_computes_only_what_is_missing(tmp_path, client):
    _write_images(tmp_path / "imgs", 5)
    emb = tmp_path / "emb"
    first = batch.precompute(tmp_path / "imgs", model=MODEL, cache_dir=emb, client=client, progress=False)
    assert first.count("computed") == 5
    files = sorted(emb.glob("*.npz"))
    kept = {p.name: p.read_bytes() for p in files}
    files[1].unlink()
    files[3].unlink()
    again = batch.precompute(tmp_path / "imgs", model=MODEL, cache_dir=emb, client=client, progress=False)
    # the three untouched embeddings are not recomputed; the two missing ones come back (encoded
    # again, or written from a worker's memory cache where it still had them), byte for byte
    assert again.count("computed") <= 2 and again.count("cached") >= 3 and not again.failed
    assert {p.name: p.read_bytes() for p in emb.glob("*.npz")} == kept


def test_a_corrupt_image_is_reported_and_the_others_complete(tmp_path, client):
    _write_images(tmp_path / "imgs", 3)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    rep = batch.precompute(tmp_path / "imgs", model=MODEL, cache_dir=tmp_path / "e", client=client, progress=False)
    assert rep.count("computed") == 3
    (bad,) = rep.failed
    assert bad.path.endswith("broken.png") and "broken.png" in bad.error
    assert "1 failed" in rep.summary() and "broken.png" in str(rep)


def test_a_client_passed_in_is_not_closed(tmp_path, client):
    _write_images(tmp_path / "imgs", 1)
    batch.precompute(tmp_path / "imgs", model=MODEL, cache_dir=tmp_path / "f", client=client, progress=False)
    assert client.status == "running"


def test_the_widget_opens_a_precomputed_image_with_no_encoder_call(tmp_path, client):
    (path,) = _write_images(tmp_path / "imgs", 1)
    batch.precompute([path], model=MODEL, cache_dir=tmp_path / "g", client=client, progress=False)
    from sam_widget import SamWidget

    seg = Segmenter(MODEL(), cache_dir=tmp_path / "g")
    w = SamWidget(str(path), segmenter=seg)
    try:
        w.wait_ready(30)
        w.add_point(10, 10)
        assert seg.stats["encoder_calls"] == 0 and seg.stats["disk_hits"] == 1
        assert w.mask.shape == (48, 64)
    finally:
        w.close()


def test_two_runs_writing_the_same_cache_at_once_both_succeed(tmp_path):
    _write_images(tmp_path / "imgs", 4)
    reports = []

    def run():
        reports.append(batch.precompute(tmp_path / "imgs", model=MODEL, cache_dir=tmp_path / "h", scheduler="sync", progress=False))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(reports) == 2 and all(not r.failed for r in reports)
    assert len(list((tmp_path / "h").glob("*.npz"))) == 4
    seg = Segmenter(MODEL(), cache_dir=tmp_path / "h")
    for p in sorted((tmp_path / "imgs").glob("*.png")):
        seg.set_image(p)
    assert seg.stats["encoder_calls"] == 0  # every file complete and valid


def test_ctrl_c_closes_the_cluster_it_started_and_keeps_what_was_done(tmp_path, monkeypatch):
    _write_images(tmp_path / "imgs", 6)
    started = []
    real_enter = batch_runner.Runner.__enter__

    def enter(self):
        started.append(real_enter(self))
        return started[-1]

    def interrupt(self, ok):
        raise KeyboardInterrupt

    monkeypatch.setattr(batch_runner.Runner, "__enter__", enter)
    monkeypatch.setattr(batch_runner.Progress, "update", interrupt)
    with pytest.raises(KeyboardInterrupt):
        batch.precompute(tmp_path / "imgs", model=MODEL, cache_dir=tmp_path / "i", workers=1, progress=False)
    (runner,) = started
    assert runner.client.status == "closed" and runner._owned == []
    done = list((tmp_path / "i").glob("*.npz"))
    seg = Segmenter(MODEL(), cache_dir=tmp_path / "i")  # whatever was written is complete
    for p in sorted((tmp_path / "imgs").glob("*.png")):
        seg.set_image(p)
    assert seg.stats["disk_hits"] == len(done) >= 1


def _slow_model():
    time.sleep(0.5)
    return random_sam(TINY_TEST_CONFIG, seed=0)


def test_a_worker_killed_mid_run_loses_no_image_and_duplicates_none(tmp_path):
    paths = _write_images(tmp_path / "imgs", 12)
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    c = distributed.Client(cluster)
    try:
        victim = {}

        def kill_one(self, ok, _orig=batch_runner.Progress.update):
            _orig(self, ok)
            if not victim:
                pids = c.run(os.getpid)
                addr, pid = sorted(pids.items())[0]
                victim[addr] = pid
                os.kill(pid, signal.SIGKILL)

        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(batch_runner.Progress, "update", kill_one)
            rep = batch.precompute(tmp_path / "imgs", model=_slow_model, cache_dir=tmp_path / "k", client=c,
                                   progress=False)
        assert victim, "no worker was killed"
        assert [r.path for r in rep.results] == [str(p) for p in paths]
        assert all(r.ok for r in rep.results), [r.error for r in rep.failed]
        assert len(list((tmp_path / "k").glob("[!.]*.npz"))) == 12  # (a killed write may leave a .tmp- file)
    finally:
        c.close()
        cluster.close()


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(images=[np.zeros((4, 4, 3), np.uint8)]), TypeError, "file paths"),
        (dict(images=[]), ValueError, "empty"),
        (dict(images="{tmp}/nothing-*.png"), ValueError, "matches"),
        (dict(images="{tmp}", cache_dir=None), ValueError, "cache_dir"),
        (dict(images="{tmp}", model="vit_q"), ValueError, "vit_q"),
        (dict(images="{tmp}", scheduler="sync", client=object()), ValueError, "either"),
        (dict(images="{tmp}", workers=0), ValueError, "workers"),
    ],
)
def test_bad_arguments_raise_one_clear_error_before_any_work(tmp_path, kwargs, exc, words):
    _write_images(tmp_path, 1)
    kw = {"model": MODEL, "cache_dir": tmp_path / "emb", "progress": False, "scheduler": "sync"}
    kw.update({k: (v.format(tmp=tmp_path) if isinstance(v, str) and k == "images" else v) for k, v in kwargs.items()})
    if kw.get("client") is not None:
        kw["scheduler"] = "sync"
    with pytest.raises(exc, match=words):
        batch.precompute(**kw)
