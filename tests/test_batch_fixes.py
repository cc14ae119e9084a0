"""Batch runs answering mistakes: failed runs leave good files alone, bad settings are one
error at the call, stale or damaged results are recomputed. All in this process
(``scheduler="sync"``) with the shipped ``tiny_shapes`` model."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from sam_widget import batch
from sam_widget.data import shapes_image

pytest.importorskip("distributed")

RUN = dict(model="tiny_shapes", scheduler="sync", progress=False)
AMG = dict(points_per_side=4, pred_iou_thresh=0.5, stability_score_thresh=0.5)


def _scenes(folder: Path, n: int, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        p = folder / f"scene{i}.png"
        Image.fromarray(shapes_image(seed + i)[0]).save(p)
        paths.append(p)
    return paths


def _box_prompts(n: int) -> list[dict]:
    return [{"box": [10, 10, 60, 60], "label": "thing"} for _ in range(n)]


def test_a_run_in_which_every_image_fails_leaves_the_earlier_output_file_untouched(tmp_path):
    from pycocotools.coco import COCO

    _scenes(tmp_path / "imgs", 2)
    out = tmp_path / "out" / "keep.json"
    out.parent.mkdir()
    good = batch.segment(tmp_path / "imgs", _box_prompts(2), output=out, **RUN)
    assert good.count("done") == 2
    before = out.read_bytes()

    # a re-run over files that cannot be read: every image fails
    (tmp_path / "broken").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "broken" / name).write_bytes(b"not a png")
    bad = batch.segment(tmp_path / "broken", _box_prompts(2), output=out, **RUN)
    assert bad.count("failed") == 2
    assert out.read_bytes() == before  # the good file, byte for byte
    assert bad.output is None and "not written" in str(bad)
    assert len(COCO(str(out)).dataset["images"]) == 2


# ------------------------------------------------------------------ 2. bad settings: one error at the call
def _failing_model():
    raise RuntimeError("no such weights on this worker")


@pytest.mark.parametrize(
    "kwargs, exc, words",
    [
        (dict(device="banana"), ValueError, "banana"),
        (dict(device="cuda:banana"), ValueError, "cuda:banana"),
        (dict(device=3), TypeError, "device"),
        (dict(checkpoint="sam.pth"), ValueError, "checkpoint"),
        (dict(exactt=True), TypeError, "exactt"),
        (dict(exact="yes"), TypeError, "exact"),
        (dict(precision="fp16"), ValueError, "precision"),
        (dict(progress="no"), TypeError, "progress"),
        (dict(model=lambda: None), TypeError, "picklable"),
    ],
)
def test_bad_settings_raise_one_clear_error_at_the_call_and_write_nothing(tmp_path, kwargs, exc, words):
    _scenes(tmp_path / "imgs", 2)
    for run in (lambda kw: batch.precompute(tmp_path / "imgs", cache_dir=tmp_path / "emb", **kw),
                lambda kw: batch.segment(tmp_path / "imgs", _box_prompts(2), output=tmp_path / "o.json", **kw)):
        with pytest.raises(exc, match=words):
            run({**RUN, **kwargs})
    assert not (tmp_path / "emb").exists() and not (tmp_path / "o.json").exists()
    assert not (tmp_path / "o.json.parts").exists()


@pytest.mark.parametrize(
    "params, exc, name",
    [
        (dict(points_per_side=0), ValueError, "points_per_side"),
        (dict(points_per_side=-1), ValueError, "points_per_side"),
        (dict(points_per_side="4"), ValueError, "points_per_side"),
        (dict(points_per_side=4.5), ValueError, "points_per_side"),
        (dict(points_per_side=True), ValueError, "points_per_side"),
        (dict(pred_iou_thresh=float("nan")), ValueError, "pred_iou_thresh"),
        (dict(pred_iou_thresh=5), ValueError, "pred_iou_thresh"),
        (dict(crop_n_layers=-1), ValueError, "crop_n_layers"),
        (dict(box_nms_thresh=2), ValueError, "box_nms_thresh"),
        (dict(bogus=1), TypeError, "bogus"),
        (dict(segmenter_kwargs=[1]), TypeError, "segmenter_kwargs"),
        (dict(segmenter_kwargs={"exactt": True}), TypeError, "exactt"),
    ],
)
def test_everything_rejects_bad_parameters_at_the_call(tmp_path, params, exc, name):
    _scenes(tmp_path / "imgs", 2)
    with pytest.raises(exc, match=name):
        batch.everything(tmp_path / "imgs", output=tmp_path / "p.json", **RUN, **params)
    assert not (tmp_path / "p.json").exists()


def test_the_command_line_exits_2_with_one_line_for_a_bad_parameter(tmp_path, capsys):
    from sam_widget.cli import main

    _scenes(tmp_path / "imgs", 1)
    rc = main(["batch", "everything", str(tmp_path / "imgs"), "--model", "tiny_shapes", "--coco",
               str(tmp_path / "p.json"), "--points-per-side", "0", "--scheduler", "sync", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "points_per_side" in err and len(err.splitlines()) == 1
    rc = main(["batch", "precompute", str(tmp_path / "imgs"), "--model", "tiny_shapes", "--cache-dir",
               str(tmp_path / "emb"), "--device", "cuda:banana", "--scheduler", "sync", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "cuda:banana" in err and len(err.splitlines()) == 1


def test_a_model_that_fails_to_load_on_the_worker_is_reported_per_image_not_raised(tmp_path):
    from sam_widget.batch.tasks import precompute_task
    from sam_widget.batch.spec import ModelSpec

    paths = _scenes(tmp_path / "imgs", 2)
    # the task itself returns the failure: on a cluster, a raised one would be retried on other workers
    res = precompute_task(str(paths[0]), ModelSpec(_failing_model, cache_dir=str(tmp_path / "emb")))
    assert res.status == "failed" and "no such weights" in res.error and "could not be loaded" in res.error
    rep = batch.segment(tmp_path / "imgs", _box_prompts(2), **{**RUN, "model": _failing_model})
    assert [r.status for r in rep.failed] == ["failed", "failed"]
    assert all("no such weights" in r.error for r in rep.failed)


# ------------------------------------------------------------------ 3. a replaced image is a new image
def test_an_image_replaced_under_the_same_name_is_segmented_again(tmp_path):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    (path,) = _scenes(tmp_path / "imgs", 1)
    out = tmp_path / "masks.json"
    prompts = [{"box": [0, 0, 255, 191], "label": "thing"}]
    first = batch.segment(tmp_path / "imgs", prompts, output=out, **RUN)
    assert first.count("done") == 1
    assert batch.segment(tmp_path / "imgs", prompts, output=out, **RUN).count("skipped") == 1
    old_rle = COCO(str(out)).dataset["annotations"][0]["segmentation"]

    Image.fromarray(shapes_image(7)[0]).save(path)  # another picture, same file name
    again = batch.segment(tmp_path / "imgs", prompts, output=out, **RUN)
    assert again.count("done") == 1 and again.count("skipped") == 0
    ann = COCO(str(out)).dataset["annotations"][0]
    fresh = batch.segment(tmp_path / "imgs", prompts, **RUN).coco["annotations"][0]
    assert ann["segmentation"] == fresh["segmentation"] != old_rle
    assert mask_utils.decode(ann["segmentation"]).any()


def test_forcing_another_precision_does_not_reuse_results(tmp_path, monkeypatch):
    _scenes(tmp_path / "imgs", 1)
    out = tmp_path / "masks.json"
    monkeypatch.setenv("SAM_WIDGET_PRECISION", "fp32")
    assert batch.segment(tmp_path / "imgs", _box_prompts(1), output=out, **RUN).count("done") == 1
    monkeypatch.setenv("SAM_WIDGET_PRECISION", "bf16")
    assert batch.segment(tmp_path / "imgs", _box_prompts(1), output=out, **RUN).count("done") == 1


# ------------------------------------------------------------------ 4. a damaged part is recomputed
@pytest.mark.parametrize(
    "damage",
    [
        lambda part: part["annotations"][0].pop("label"),
        lambda part: part.__setitem__("annotations", [None]),
        lambda part: part["annotations"][0].__setitem__("label", 5),
        lambda part: part.__setitem__("image", "scene0.png"),
        lambda part: part["annotations"][0].__setitem__("segmentation", "garbage"),
        lambda part: part["annotations"][0].pop("bbox"),
    ],
)
def test_a_damaged_part_file_is_recomputed_and_the_coco_file_is_whole(tmp_path, polygons, damage):
    import json

    from pycocotools.coco import COCO

    _scenes(tmp_path / "imgs", 2)
    out = tmp_path / "masks.json"
    first = batch.segment(tmp_path / "imgs", _box_prompts(2), output=out, polygons=polygons, **RUN)
    assert first.count("done") == 2
    good = out.read_bytes()
    part_file = sorted((tmp_path / "masks.json.parts").glob("scene0-*.json"))[0]
    part = json.loads(part_file.read_text())
    damage(part)
    part_file.write_text(json.dumps(part))

    again = batch.segment(tmp_path / "imgs", _box_prompts(2), output=out, polygons=polygons, **RUN)
    assert [r.status for r in again.results] == ["done", "skipped"]
    assert out.read_bytes() == good  # the same file as the first run
    assert len(COCO(str(out)).dataset["annotations"]) == 2


@pytest.fixture(params=[False, True], ids=["rle", "polygons"])
def polygons(request):
    return request.param


# ------------------------------------------------------------------ 5. cache_dir that cannot be a folder
@pytest.mark.parametrize(
    "make, exc",
    [
        (lambda tmp: tmp / "afile", ValueError),  # an existing file
        (lambda tmp: tmp / "afile" / "sub", ValueError),  # below a file
        (lambda tmp: 5, TypeError),
        (lambda tmp: "", ValueError),
    ],
)
def test_a_cache_dir_that_cannot_be_a_folder_is_one_error_naming_it(tmp_path, make, exc):
    from sam_widget.cli import main

    _scenes(tmp_path / "imgs", 1)
    (tmp_path / "afile").write_text("keep me")
    cache_dir = make(tmp_path)
    with pytest.raises(exc, match="cache_dir"):
        batch.precompute(tmp_path / "imgs", cache_dir=cache_dir, **RUN)
    with pytest.raises(exc, match="cache_dir"):
        batch.segment(tmp_path / "imgs", _box_prompts(1), cache_dir=cache_dir, **RUN)
    assert (tmp_path / "afile").read_text() == "keep me"
    if not isinstance(cache_dir, int):
        rc = main(["batch", "precompute", str(tmp_path / "imgs"), "--model", "tiny_shapes", "--cache-dir", str(cache_dir),
                   "--scheduler", "sync", "--quiet"])
        assert rc == 2


# ------------------------------------------------------------------ 6. missing paths, folders among several
def test_a_path_that_does_not_exist_is_one_error_naming_it(tmp_path, capsys):
    from sam_widget.cli import main

    (good,) = _scenes(tmp_path / "imgs", 1)
    with pytest.raises(ValueError, match="nope"):
        batch.precompute(tmp_path / "nope", cache_dir=tmp_path / "emb", **RUN)
    with pytest.raises(ValueError, match="missing.png"):
        batch.segment([good, tmp_path / "missing.png"], _box_prompts(2), **RUN)
    assert not (tmp_path / "emb").exists()
    rc = main(["batch", "precompute", str(tmp_path / "nope") + "/", "--model", "tiny_shapes", "--cache-dir",
               str(tmp_path / "emb"), "--scheduler", "sync", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "nope" in err and len(err.splitlines()) == 1


def test_folders_among_several_images_are_expanded_in_place(tmp_path, capsys):
    from pycocotools.coco import COCO

    from sam_widget.cli import main

    a = _scenes(tmp_path / "a", 2)
    b = _scenes(tmp_path / "b", 1, seed=5)
    assert batch.image_paths([tmp_path / "a", b[0]]) == [str(p) for p in a] + [str(b[0])]
    rc = main(["batch", "everything", str(tmp_path / "a"), str(b[0]), "--model", "tiny_shapes", "--coco",
               str(tmp_path / "p.json"), "--points-per-side", "4", "--pred-iou-thresh", "0.5",
               "--stability-score-thresh", "0.5", "--scheduler", "sync", "--quiet"])
    assert rc == 0, capsys.readouterr()
    names = [im["file_name"] for im in COCO(str(tmp_path / "p.json")).dataset["images"]]
    assert names == ["scene0.png", "scene1.png", "scene0.png"]


# ------------------------------------------------------------------ 7. ObjectPrompt: checked, and accepted
@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(points="xx"), "points"),
        (dict(box=(float("nan"), 0, 1, 1)), "box"),
        (dict(points=[(1, 2)], labels=[5]), "labels"),
        (dict(points=[(1, 2)]), "labels"),
        (dict(box=(0, 0, 5, 5), label=""), "label"),
        (dict(), "neither"),
    ],
)
def test_an_object_prompt_made_of_garbage_is_refused_when_made(kwargs, words):
    with pytest.raises((ValueError, TypeError), match=words):
        batch.ObjectPrompt(**kwargs)


def test_segment_takes_object_prompts_and_gives_what_the_dicts_give(tmp_path):
    from pycocotools.coco import COCO

    _scenes(tmp_path / "imgs", 2)
    objs = [batch.ObjectPrompt(box=[10, 10, 60, 60], label="thing"),
            [batch.ObjectPrompt(points=[(30, 30)], labels=[1], label="dot"), {"box": [10, 10, 60, 60], "label": "thing"}]]
    dicts = [{"box": [10, 10, 60, 60], "label": "thing"},
             [{"points": [[30, 30]], "labels": [1], "label": "dot"}, {"box": [10, 10, 60, 60], "label": "thing"}]]
    rep = batch.segment(tmp_path / "imgs", objs, output=tmp_path / "o.json", **RUN)
    ref = batch.segment(tmp_path / "imgs", dicts, output=tmp_path / "d.json", **RUN)
    assert rep.count("done") == 2
    assert (tmp_path / "o.json").read_bytes() == (tmp_path / "d.json").read_bytes()
    coco = COCO(str(tmp_path / "o.json"))
    assert sorted(c["name"] for c in coco.dataset["categories"]) == ["dot", "thing"]
    assert len(coco.dataset["annotations"]) == 3 and ref.count("done") == 2
