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


# ------------------------------------------------------------------ segment: prompts -> COCO masks
def _boxes_file(path: Path, image_paths: list[Path], boxes: dict[str, list[tuple[list[float], int]]]) -> Path:
    """A detection dataset's COCO file as another tool writes it: bbox XYWH, no segmentation."""
    images = [{"id": 10 + i, "file_name": p.name, "width": 64, "height": 48 + 3 * i} for i, p in enumerate(image_paths)]
    ids = {p.name: 10 + i for i, p in enumerate(image_paths)}
    anns = []
    for name, items in boxes.items():
        for bbox, cat in items:
            anns.append({"id": 100 + len(anns), "image_id": ids[name], "category_id": cat, "bbox": bbox, "area": bbox[2] * bbox[3], "iscrowd": 0})
    path.write_text(__import__("json").dumps({"images": images, "annotations": anns,
                                              "categories": [{"id": 3, "name": "car"}, {"id": 7, "name": "person"}]}))
    return path


def test_segment_turns_a_coco_box_file_into_coco_masks_equal_to_segmenter_predict(tmp_path, client):
    from pycocotools.coco import COCO

    paths = _write_images(tmp_path / "imgs", 4)
    boxes = {"img00.png": [([2, 3, 30, 20], 3), ([10, 10, 40, 30], 7)], "img02.png": [([0, 0, 63, 50], 7)]}
    src = _boxes_file(tmp_path / "boxes.json", paths, boxes)
    out = tmp_path / "masks.json"
    rep = batch.segment(tmp_path / "imgs", prompts=src, model=MODEL, output=out, client=client, progress=False)
    assert [r.status for r in rep.results] == ["done"] * 4
    coco = COCO(str(out))  # the independent reader
    assert [im["file_name"] for im in coco.dataset["images"]] == [p.name for p in paths]
    assert {c["name"] for c in coco.dataset["categories"]} == {"car", "person"}
    seg = Segmenter(MODEL())
    got = []
    for ann in coco.dataset["annotations"]:
        name = coco.imgs[ann["image_id"]]["file_name"]
        seg.set_image(tmp_path / "imgs" / name)
        box = ann["sam_widget"]["prompts"]["box"]
        pred = seg.predict(box=box, multimask=False)
        assert np.array_equal(coco.annToMask(ann).astype(bool), pred.mask(0))  # bit for bit
        assert ann["score"] == pytest.approx(float(pred.scores[0]))
        got.append((name, coco.cats[ann["category_id"]]["name"], [round(v) for v in box]))
    want = [(n, {3: "car", 7: "person"}[c], [b[0], b[1], b[0] + b[2], b[1] + b[3]]) for n, items in boxes.items() for b, c in items]
    assert sorted(got) == sorted(want)


def test_segment_resumes_only_missing_images_and_gives_the_same_file(tmp_path, client):
    _write_images(tmp_path / "imgs", 5)
    prompts = [{"points": [[5 + i, 6]], "labels": [1], "label": "thing"} for i in range(5)]
    out = tmp_path / "m.json"
    first = batch.segment(tmp_path / "imgs", prompts, model=MODEL, output=out, client=client, progress=False)
    assert first.count("done") == 5
    whole = out.read_bytes()
    parts = sorted((tmp_path / "m.json.parts").glob("*.json"))
    assert len(parts) == 5
    parts[2].unlink()  # as if the run had died with that image in flight
    out.unlink()
    again = batch.segment(tmp_path / "imgs", prompts, model=MODEL, output=out, client=client, progress=False)
    assert again.count("done") == 1 and again.count("skipped") == 4
    assert out.read_bytes() == whole
    changed = batch.segment(tmp_path / "imgs", prompts[:4] + [{"box": [0, 0, 20, 20]}], model=MODEL, output=out,
                            client=client, progress=False)
    assert changed.count("done") == 1 and changed.count("skipped") == 4  # new prompts, new result


def test_segment_in_process_equals_the_cluster_run(tmp_path, client):
    _write_images(tmp_path / "imgs", 3)
    prompts = [[{"box": [1, 1, 40, 30], "label": "a"}, {"points": [[20, 20], [5, 5]], "labels": [1, 0], "label": "b"}]] * 3
    a = batch.segment(tmp_path / "imgs", prompts, model=MODEL, scheduler="sync", progress=False).coco
    b = batch.segment(tmp_path / "imgs", prompts, model=MODEL, client=client, progress=False).coco
    strip = lambda c: [{k: v for k, v in im.items() if k != "path"} for im in c["images"]]  # noqa: E731
    assert a["annotations"] == b["annotations"] and strip(a) == strip(b) and len(a["annotations"]) == 6


@pytest.mark.parametrize(
    "prompts, exc, words",
    [
        ([None], ValueError, "one entry per image"),
        ([{"labels": [1]}, None], ValueError, "labels"),
        ([{"box": [0, 0, 5]}, None], ValueError, "box"),
        ([{"box": [0, 0, 5, 5], "label": ""}, None], ValueError, "label"),
        ([3, None], TypeError, "prompts\\[0\\]"),
        (42, TypeError, "COCO file path"),
    ],
)
def test_segment_rejects_bad_prompts_before_any_work(tmp_path, prompts, exc, words):
    _write_images(tmp_path / "imgs", 2)
    with pytest.raises(exc, match=words):
        batch.segment(tmp_path / "imgs", prompts, model=MODEL, scheduler="sync", progress=False)


def test_segment_rejects_a_box_file_naming_the_bad_annotation(tmp_path):
    from sam_widget.io import FormatError

    paths = _write_images(tmp_path / "imgs", 2)
    bad = _boxes_file(tmp_path / "b.json", paths, {"img00.png": [([1, 1, 5, 5], 99)]})
    with pytest.raises(FormatError, match=r"annotations\[0\].*category_id 99"):
        batch.segment(tmp_path / "imgs", bad, model=MODEL, scheduler="sync", progress=False)
    other = _boxes_file(tmp_path / "o.json", [tmp_path / "elsewhere.png"], {"elsewhere.png": [([1, 1, 5, 5], 3)]})
    with pytest.raises(ValueError, match="wrong folder"):
        batch.segment(tmp_path / "imgs", other, model=MODEL, scheduler="sync", progress=False)
    (tmp_path / "t.json").write_text('{"images": [')
    with pytest.raises(FormatError, match="truncated"):
        batch.segment(tmp_path / "imgs", tmp_path / "t.json", model=MODEL, scheduler="sync", progress=False)


# ------------------------------------------------------------------ command line
def test_cli_precompute_then_segment_and_the_exit_status_counts_failures(tmp_path, capsys):
    from sam_widget.cli import main

    paths = _write_images(tmp_path / "imgs", 2)
    assert main(["batch", "precompute", str(tmp_path / "imgs"), "--model", "tiny_shapes", "--cache-dir",
                 str(tmp_path / "emb"), "--scheduler", "sync", "--quiet"]) == 0
    assert "2 computed" in capsys.readouterr().out
    (tmp_path / "imgs" / "zz_broken.jpg").write_bytes(b"garbage")
    src = _boxes_file(tmp_path / "boxes.json", paths, {"img01.png": [([4, 4, 30, 30], 3)]})
    rc = main(["batch", "segment", str(tmp_path / "imgs"), "--prompts", str(src), "--coco", str(tmp_path / "m.json"),
               "--model", "tiny_shapes", "--cache-dir", str(tmp_path / "emb"), "--scheduler", "sync", "--quiet"])
    out, err = capsys.readouterr()
    assert rc == 1 and "1 failed" in err and "zz_broken.jpg" in out
    from pycocotools.coco import COCO

    coco = COCO(str(tmp_path / "m.json"))
    assert len(coco.dataset["images"]) == 2 and len(coco.dataset["annotations"]) == 1  # the broken one left out


@pytest.mark.parametrize("argv, words", [
    (["batch"], "choose what to run"),
    (["batch", "precompute", "x/"], "--cache-dir"),
    (["batch", "segment", "x/", "--coco", "o.json"], "--prompts"),
    (["batch", "precompute", "{tmp}/none-*.png", "--cache-dir", "e"], "matches"),
])
def test_cli_usage_errors_exit_2_with_one_line(tmp_path, capsys, argv, words):
    from sam_widget.cli import main

    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err


# ------------------------------------------------------------------ everything: proposals for a folder
AMG = dict(points_per_side=8, pred_iou_thresh=0.6, stability_score_thresh=0.8)


def _scenes(folder: Path, n: int) -> list[Path]:
    from sam_widget.data import shapes_image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        img, _ = shapes_image(40 + i, size=(192, 256))
        out.append(folder / f"scene{i}.png")
        Image.fromarray(img).save(out[-1])
    return out


def test_everything_for_a_folder_equals_segment_everything_image_by_image(tmp_path, client):
    from pycocotools.coco import COCO

    _scenes(tmp_path / "imgs", 3)
    out = tmp_path / "props.json"
    rep = batch.everything(tmp_path / "imgs", model="tiny_shapes", output=out, client=client, progress=False, **AMG)
    assert [r.status for r in rep.results] == ["done"] * 3
    coco = COCO(str(out))
    seg = Segmenter.from_pretrained("tiny_shapes")
    total = 0
    for im in coco.dataset["images"]:
        seg.set_image(tmp_path / "imgs" / im["file_name"])
        props = seg.segment_everything(progress=False, **AMG)
        anns = coco.imgToAnns[im["id"]]
        assert len(anns) == len(props) > 0
        for ann, p in zip(anns, props):  # same order (by predicted IoU), same pixels, same numbers
            assert np.array_equal(coco.annToMask(ann).astype(bool), p.mask)
            assert ann["score"] == pytest.approx(float(p.score))
            assert ann["sam_widget"]["stability"] == pytest.approx(float(p.stability))
        total += len(anns)
    assert total == len(coco.dataset["annotations"])
    again = batch.everything(tmp_path / "imgs", model="tiny_shapes", output=out, client=client, progress=False, **AMG)
    assert again.count("skipped") == 3  # resumable: nothing recomputed
    other = batch.everything(tmp_path / "imgs", model="tiny_shapes", output=out, client=client, progress=False,
                             **{**AMG, "points_per_side": 6})
    assert other.count("done") == 3  # another parameter, another result


def test_everything_rejects_a_bad_parameter_at_the_call_and_a_good_run_writes_coco(tmp_path, capsys):
    from sam_widget.cli import main

    _scenes(tmp_path / "imgs", 1)
    with pytest.raises(ValueError, match="points_per_side"):
        batch.everything(tmp_path / "imgs", model="tiny_shapes", scheduler="sync", progress=False, points_per_side=0)
    rc = main(["batch", "everything", str(tmp_path / "imgs"), "--model", "tiny_shapes", "--coco", str(tmp_path / "p.json"),
               "--points-per-side", "6", "--pred-iou-thresh", "0.6", "--stability-score-thresh", "0.8",
               "--scheduler", "sync", "--quiet"])
    assert rc == 0 and "1 done" in capsys.readouterr().out
    from pycocotools.coco import COCO

    assert len(COCO(str(tmp_path / "p.json")).dataset["annotations"]) > 0


def test_a_folder_precomputed_on_the_cluster_opens_in_the_widget_with_no_encoder_call(tmp_path, client):
    from sam_widget import SamWidget

    _scenes(tmp_path / "imgs", 3)
    emb = tmp_path / "emb"
    batch.precompute(tmp_path / "imgs", model="tiny_shapes", cache_dir=emb, client=client, progress=False)
    w = SamWidget(str(tmp_path / "imgs"), model="tiny_shapes", cache_dir=str(emb))
    try:
        w.wait_ready(60)
        for _ in range(3):
            w.add_point(100, 100)
            w.next()
            w.wait_ready(60)
        stats = w.segmenter.stats
        assert stats["encoder_calls"] == 0 and stats["disk_hits"] == 3
    finally:
        w.close()


def test_a_local_cluster_shares_the_cores_out_among_its_workers(tmp_path, monkeypatch):
    from sam_widget.batch import _threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert _threads(None, None, None, 2) == 4 and _threads(None, None, None, 8) == 1
    assert _threads(3, None, None, 2) == 3  # as given
    assert _threads(None, object(), None, None) is None and _threads(None, None, "sync", None) is None
    with pytest.raises(ValueError, match="threads"):
        _threads(0, None, None, None)


def test_workers_run_torch_with_the_threads_asked_for(tmp_path, client):
    _write_images(tmp_path / "imgs", 4)
    spec_model = functools.partial(random_sam, TINY_TEST_CONFIG, seed=1)  # a model no earlier test loaded
    batch.precompute(tmp_path / "imgs", model=spec_model, cache_dir=tmp_path / "t", client=client, threads=2, progress=False)

    key = ModelSpec(spec_model, cache_dir=os.fspath((tmp_path / "t").resolve())).key

    def threads_where_loaded():
        from sam_widget.batch.spec import loaded_models

        return __import__("torch").get_num_threads() if key in loaded_models() else None

    seen = {v for v in client.run(threads_where_loaded).values() if v is not None}
    assert seen == {2}


def test_a_proposal_whose_score_is_not_a_number_is_written_as_null(tmp_path, monkeypatch):
    """JSON has no NaN: a non-finite stability/score becomes null and the file stays readable."""
    from types import SimpleNamespace

    from pycocotools.coco import COCO

    _scenes(tmp_path / "imgs", 1)
    real = Segmenter.segment_everything

    def with_a_nan(self, *a, **kw):
        props = list(real(self, *a, **kw))
        odd = SimpleNamespace(mask=props[0].mask, score=float("nan"), stability=float("inf"), point=props[0].point)
        return [odd] + props[1:]

    monkeypatch.setattr(Segmenter, "segment_everything", with_a_nan)
    out = tmp_path / "props.json"
    rep = batch.everything(tmp_path / "imgs", model="tiny_shapes", output=out, scheduler="sync", progress=False, **AMG)
    assert rep.count("done") == 1
    anns = COCO(str(out)).dataset["annotations"]
    assert anns[0].get("score") is None and anns[0]["sam_widget"]["stability"] is None  # no score, not NaN
    assert all(isinstance(a["score"], float) for a in anns[1:])


def test_the_local_cluster_batch_starts_runs_workers_without_the_profiler_or_the_malloc_trim(client):
    """Dask's defaults slow torch in a worker (sampling profiler; MALLOC_TRIM_THRESHOLD_ turns
    off glibc's adaptive mmap threshold). A plain LocalCluster has both, even after ours ran;
    the one batch starts for client=None has neither, even after a plain one ran here."""
    from sam_widget.batch.runner import local_cluster

    def settings():
        import dask

        return os.environ.get("MALLOC_TRIM_THRESHOLD_"), dask.config.get("distributed.worker.profile.enabled")

    plain = set(client.run(settings).values())
    assert plain == {("65536", True)}  # Dask's defaults (what the fix is against)
    cluster = local_cluster(1)
    try:
        with distributed.Client(cluster) as ours:
            assert set(ours.run(settings).values()) == {(None, False)}
    finally:
        cluster.close()
    with pytest.raises(ValueError, match="n_workers"):
        local_cluster(0)
