"""Session: many images, per-image state, prefetching, editing, bad input -- with no widget.

Every mask is compared bit for bit with an independent ``Segmenter(sam, exact=True)`` on the
same image, prompts and ``mask_input``; prefetching is observed through the engine's own
counters (``Segmenter.stats``), never through timings.
"""

from __future__ import annotations

import gc
import sys
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_image
from sam_widget import CheckpointError, ImageError, Segmenter
from sam_widget.session import Session
from sam_widget.state import object_color

A = make_image(120, 160, seed=11)
B = make_image(90, 130, seed=12)
C = make_image(140, 100, seed=13)


@pytest.fixture
def sessions():
    made: list[Session] = []

    def make(images, **kwargs) -> Session:
        s = Session(images, **kwargs)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def reference(sam, image) -> Segmenter:
    ref = Segmenter(sam, exact=True)
    ref.set_image(image)
    return ref


def expected(ref: Segmenter, s: Session):
    """``ref.predict`` for the session's current prompts with the mask_input it used."""
    slot = s.current.slot
    s.mask  # wait for the answer
    return ref.predict(**s.prompts.as_arrays(), mask_input=slot.mask_input, multimask=slot.multimask)


def write_png(path, rgb) -> str:
    Image.fromarray(rgb).save(path)
    return str(path)


# ============================================================================ many images
def test_each_image_keeps_its_own_prompts_objects_and_history(sessions, tiny_sam):
    s = sessions([A, B, C], segmenter=Segmenter(tiny_sam, exact=True)).wait_ready(30)
    refs = [reference(tiny_sam, im) for im in (A, B, C)]
    assert (s.index, len(s.images), s.images.names) == (0, 3, ["image 1", "image 2", "image 3"])
    assert not s.single and s.image.shape == A.shape

    s.add_point(40, 30)
    a_mask = s.mask
    assert np.array_equal(a_mask, expected(refs[0], s).masks[s.selected])
    obj_a = s.commit("a")
    assert s.next() is True and s.index == 1 and s.image.shape == B.shape
    assert s.objects == () and s.prompts.is_empty and not s.history.can_undo  # a fresh history
    s.add_box(10, 10, 90, 70)
    assert np.array_equal(s.mask, expected(refs[1], s).masks[s.selected]) and s.mask.shape == (90, 130)
    s.commit("b")
    s.add_point(100, 20, label=1)  # left uncommitted on image 1
    s.goto(2)
    s.add_point(50, 100)
    assert np.array_equal(s.mask, expected(refs[2], s).masks[s.selected])
    s.commit("c")

    assert s.prev() is True and s.index == 1
    assert s.prompts.points == ((100.0, 20.0),) and [o.label for o in s.objects] == ["b"]
    assert np.array_equal(s.mask, expected(refs[1], s).masks[s.selected])  # the pending prompt, answered on image 1
    assert s.undo() and s.prompts.is_empty and s.undo() and s.objects == ()  # image 1's history only
    assert s.redo() and [o.label for o in s.objects] == ["b"]
    s.goto(0)
    assert s.objects == (obj_a,) and np.array_equal(s.objects[0].mask, a_mask)
    assert s.prev() is False and s.index == 0
    s.goto(2)
    assert s.next() is False and s.index == 2

    # results: per image, objects, masks and label image at each image's own size
    r = s.results
    assert len(r) == 3 and [len(x.objects) for x in r] == [1, 1, 1]
    assert r[0].labels.shape == (120, 160) and r[1].labels.shape == (90, 130) and r[2].masks.shape == (1, 140, 100)
    assert np.array_equal(r[0].labels, a_mask.astype(np.int32)) and r[0].labels.dtype == np.int32
    assert r[-1].name == "image 3" and r[0].objects[0].color == object_color(0)
    assert (r[0].path, r[0].next_object_id, r[1].next_object_id) == (None, 2, 2)


def test_prefetch_encodes_the_next_image_before_next_and_the_first_click_needs_no_encoding(sessions, tiny_sam):
    seg = GatedPrefetch(tiny_sam)
    seg.gate.set()
    s = sessions([A, B, C], segmenter=seg).wait_ready(30)
    s.wait_prefetch(30)
    assert seg.stats["encoder_calls"] == 2  # image 0, and image 1 in the background before next()
    hits = seg.stats["memory_hits"]
    seg.gate.clear()  # hold image 2's prefetch back: only what next() + the click cost is counted
    s.next()
    s.add_point(60, 40)
    assert seg.stats["encoder_calls"] == 2  # the first click on the next image: no encoder call
    assert "embedding prefetched" in s.status.text()
    assert seg.stats["memory_hits"] > hits
    assert s.mask.shape == (90, 130) and s.mask.any()
    seg.gate.set()
    s.wait_prefetch(30)
    assert seg.stats["encoder_calls"] == 3  # then image 2 (image 0 is still in the memory cache)
    s.prev()
    s.add_point(10, 10)
    assert seg.stats["encoder_calls"] == 3


def test_without_prefetch_next_encodes_on_arrival(sessions, tiny_sam):
    seg = Segmenter(tiny_sam)
    s = sessions([A, B], segmenter=seg, prefetch=False).wait_ready(30)
    s.wait_prefetch(30)
    assert seg.stats["encoder_calls"] == 1
    s.next()
    s.add_point(60, 40)
    assert seg.stats["encoder_calls"] == 2


class GatedPrefetch(Segmenter):
    """``prefetch`` waits for ``gate`` (set it to let background encoding go on)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.gate = threading.Event()

    def prefetch(self, image) -> bool:
        assert self.gate.wait(30)
        return super().prefetch(image)


def test_clicks_are_answered_while_the_next_image_is_being_prefetched(sessions, tiny_sam):
    seg = GatedPrefetch(tiny_sam, exact=True)
    s = sessions([A, B], segmenter=seg).wait_ready(30)
    ref = reference(tiny_sam, A)
    s.add_point(50, 50)  # the prefetch of B is stuck at the gate: the click is answered anyway
    assert np.array_equal(s.mask, expected(ref, s).masks[s.selected])
    assert seg.stats["encoder_calls"] == 1
    seg.gate.set()
    s.wait_prefetch(30)
    assert seg.stats["encoder_calls"] == 2


def test_segmenter_prefetch_does_not_change_the_image_and_set_image_waits_for_it(tiny_sam):
    """Engine side: prefetch fills the cache only; a set_image of an image being prefetched reuses it."""
    entered, release = threading.Event(), threading.Event()

    class SlowEncode(Segmenter):
        def _encode(self, rgb):
            if threading.current_thread().name == "prefetcher":
                entered.set()
                assert release.wait(30)
            return super()._encode(rgb)

    seg = SlowEncode(tiny_sam, exact=True)
    seg.set_image(A)
    t = threading.Thread(target=seg.prefetch, args=(B,), name="prefetcher")
    t.start()
    assert entered.wait(30)
    p = seg.predict(points=[[30, 30]], labels=[1])  # the current image answers meanwhile
    assert seg.image_size == (120, 160) and p.masks.shape == (3, 120, 160)
    setter = threading.Thread(target=seg.set_image, args=(B,))
    setter.start()
    setter.join(0.2)
    assert setter.is_alive()  # waiting for the prefetch, not encoding B a second time
    release.set()
    t.join(30)
    setter.join(30)
    assert seg.stats["encoder_calls"] == 2 and seg.image_size == (90, 130)
    assert seg.prefetch(B) is False and seg.prefetch(A) is False and seg.stats["encoder_calls"] == 2
    ref = reference(tiny_sam, B)
    assert np.array_equal(seg.predict(points=[[20, 20]], labels=[1]).masks, ref.predict(points=[[20, 20]], labels=[1]).masks)


def test_a_folder_opens_at_once_and_holds_only_the_images_around_the_current_one(sessions, tiny_sam, tmp_path, monkeypatch):
    import sam_widget.session.images as images_module

    folder = tmp_path / "shots"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(500):
        write_png(folder / f"img{i}.png", rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    reads: list[str] = []
    real = images_module.load_image
    monkeypatch.setattr(images_module, "load_image", lambda p: reads.append(str(p)) or real(p))

    s = sessions(str(folder), segmenter=Segmenter(tiny_sam)).wait_ready(30)
    assert len(s.images) == 500 and s.images.names[:3] == ["img0.png", "img1.png", "img2.png"]  # natural order
    assert s.images.names[10] == "img10.png"
    s.wait_prefetch(30)
    assert len(reads) <= 2 and s.images.in_memory == [0, 1]
    for _ in range(20):
        s.next()
        assert len(s.images.in_memory) <= 3
    s.wait_prefetch(30)
    assert s.index == 20 and s.images.in_memory == [19, 20, 21]
    assert len(reads) <= 23  # each image read once on the way (plus none of the other 477)
    assert s.images.path(20).endswith("img20.png") and s.results[20].path == s.images.path(20)
    assert s.results[400].objects == () and s.results[400].labels.shape == (24, 32)  # from the header alone


def test_a_glob_and_a_list_of_paths_and_pil_images(sessions, tiny_sam, tmp_path):
    pa = write_png(tmp_path / "a.png", A)
    write_png(tmp_path / "b.png", B)
    write_png(tmp_path / "c.jpg", C)
    s = sessions(str(tmp_path / "*.png"), segmenter=Segmenter(tiny_sam))
    assert s.images.names == ["a.png", "b.png"]
    assert np.array_equal(s.images[1], B)
    mixed = sessions([pa, Image.fromarray(C), B], segmenter=Segmenter(tiny_sam, exact=True)).wait_ready(30)
    assert mixed.images.names == ["a.png", "image 2", "image 3"]
    mixed.goto(1)
    mixed.add_point(50, 100)
    assert np.array_equal(mixed.mask, expected(reference(tiny_sam, C), mixed).masks[mixed.selected])


def test_images_of_mixed_sizes_are_fitted_into_one_canvas(sessions, tiny_sam):
    s = sessions([A, C, make_image(30, 40, seed=1)], segmenter=Segmenter(tiny_sam, exact=True), display_size=120)
    assert s.canvas_hw == (90, 120) and s.viewport.display_hw == (90, 120) and s.viewport.offset == (0, 0)
    s.goto(1)  # 140 x 100 (portrait): fitted into the 90 x 120 canvas, centred
    vp = s.viewport
    assert vp.display_hw == (90, 64) and vp.offset == (28, 0) and vp.canvas_hw == (90, 120)
    assert vp.canvas_to_image(28 + 32, 45) == (50, 70) and vp.canvas_to_image(10, 45) is None  # the margin
    s.goto(2)  # smaller than the canvas: never enlarged
    assert s.viewport.display_hw == (30, 40) and s.viewport.offset == (40, 30)
    s.wait_ready(30).add_point(39, 29)
    assert s.mask.shape == (30, 40)


# ============================================================================ bad input
def test_an_unreadable_image_among_others_shows_its_error_and_the_session_goes_on(sessions, tiny_sam, tmp_path):
    write_png(tmp_path / "01.png", A)
    (tmp_path / "02.png").write_bytes(b"\x89PNG broken")
    write_png(tmp_path / "03.png", C)
    s = sessions(str(tmp_path), segmenter=Segmenter(tiny_sam, exact=True)).wait_ready(30)
    s.next()
    st = s.status
    assert st.phase == "unreadable" and "02.png" in st.problem and "cannot show this image" in st.text()
    with pytest.raises(ImageError, match="02.png"):
        s.add_point(5, 5)
    with pytest.raises(ImageError, match="02.png"):
        s.wait_ready(5)
    with pytest.raises(ImageError):
        s.add_object(np.ones((10, 10), bool))
    assert s.results[1].objects == () and s.results[1].labels.shape == (0, 0)
    s.next()
    s.wait_ready(30).add_point(50, 60)
    assert np.array_equal(s.mask, expected(reference(tiny_sam, C), s).masks[s.selected])
    assert s.status.phase == "ready"


def test_a_file_deleted_while_the_session_runs(sessions, tiny_sam, tmp_path):
    paths = [write_png(tmp_path / f"{i}.png", make_image(40, 50, seed=i)) for i in range(5)]
    s = sessions(str(tmp_path), segmenter=Segmenter(tiny_sam)).wait_ready(30)
    (tmp_path / "3.png").unlink()
    s.goto(3)
    assert s.status.phase == "unreadable" and "does not exist" in s.status.problem and "3.png" in s.status.problem
    s.goto(4)
    s.wait_ready(30).add_point(10, 10)
    assert s.mask.shape == (40, 50)
    write_png(paths[3], make_image(40, 50, seed=3))  # back again: readable once more
    s.goto(3)
    assert s.wait_ready(30).status.phase == "ready"


@pytest.mark.parametrize(
    "images, exc, match",
    [
        ([], ValueError, "empty"),
        ("EMPTY_DIR", ValueError, "holds no image files"),
        ("GLOB", ValueError, "no file matches"),
        ([A, None], TypeError, "image 1 of the list"),
        ("MISSING", ImageError, "does not exist"),
        (np.zeros((4, 4, 7), np.uint8), ImageError, "channels"),
    ],
    ids=["empty list", "empty folder", "glob matching nothing", "None in a list", "missing single file", "7 channels"],
)
def test_bad_image_sets_raise_in_the_constructor(tiny_sam, tmp_path, images, exc, match):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    images = {"EMPTY_DIR": str(tmp_path / "empty"), "GLOB": str(tmp_path / "*.tif"), "MISSING": str(tmp_path / "x.png")}.get(
        images, images
    ) if isinstance(images, str) else images
    threads = threading.active_count()
    with pytest.raises(exc, match=match):
        Session(images, segmenter=Segmenter(tiny_sam))
    assert threading.active_count() <= threads


def test_goto_a_missing_image_changes_nothing(sessions, tiny_sam):
    s = sessions([A, B], segmenter=Segmenter(tiny_sam))
    with pytest.raises(IndexError, match="image 999 does not exist; there are 2"):
        s.goto(999)
    with pytest.raises(IndexError):
        s.goto(-1)
    with pytest.raises(TypeError, match="int"):
        s.goto("1")
    with pytest.raises(TypeError, match="int"):
        s.goto(1.0)
    assert s.index == 0


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"model": "vit_q"}, ValueError, "unknown model 'vit_q'"),
        ({"model": 3}, TypeError, "model name"),
        ({"device": "gpu0"}, ValueError, "Invalid device 'gpu0'"),
        ({"device": 0}, TypeError, "device"),
        ({"checkpoint": "MISSING"}, CheckpointError, "does not exist"),
        ({"model": "tiny_shapes", "checkpoint": "FILE"}, ValueError, "takes no checkpoint"),
        ({"display_size": 8}, ValueError, "display_size"),
    ],
    ids=["vit_q", "model 3", "gpu0", "device 0", "missing checkpoint", "tiny_shapes + checkpoint", "display_size 8"],
)
def test_bad_model_arguments_raise_in_the_constructor_not_later(tmp_path, kwargs, exc, match):
    (tmp_path / "sam.pth").write_bytes(b"x")
    kwargs = {k: {"MISSING": str(tmp_path / "nowhere.pth"), "FILE": str(tmp_path / "sam.pth")}.get(v, v) if isinstance(v, str) else v
              for k, v in kwargs.items()}  # fmt: skip
    threads = threading.active_count()
    unraisable: list = []
    old_hook, sys.unraisablehook = sys.unraisablehook, unraisable.append
    try:
        with pytest.raises(exc, match=match):
            Session(A, **kwargs)
        gc.collect()
    finally:
        sys.unraisablehook = old_hook
    assert threading.active_count() <= threads and unraisable == []


def test_model_none_with_a_checkpoint_infers_the_model_type(sessions, tmp_path, monkeypatch):
    from sam_widget.engine import checkpoints
    from sam_widget.engine.models import TINY_TEST_CONFIG, random_sam

    monkeypatch.setitem(
        checkpoints.CHECKPOINTS, "tiny_test", checkpoints.CheckpointSpec("tiny_test", "tiny.pth", "0" * 64, TINY_TEST_CONFIG)
    )
    sam = random_sam(TINY_TEST_CONFIG, seed=3)
    path = tmp_path / "weights.pth"
    torch.save(sam.state_dict(), path)
    s = sessions(A, model=None, checkpoint=str(path), device="cpu").wait_ready(60)
    assert s.segmenter.model_name == "tiny_test" and s.status.model == "tiny_test"
    s.add_point(30, 40)
    ref = reference(sam, A)
    assert np.array_equal(s.mask, ref.predict(points=[[30, 40]], labels=[1]).masks[s.selected])


# ============================================================================ editing and bringing masks in
def test_an_edited_object_is_refined_from_its_logits_and_replaced_in_place_undoably(sessions, tiny_sam):
    s = sessions(A, segmenter=Segmenter(tiny_sam, exact=True)).wait_ready(30)
    ref = reference(tiny_sam, A)
    s.add_point(40, 50)
    s.select(0)
    first = s.commit("cell")
    s.add_point(120, 30)
    second = s.commit()
    r1 = ref.predict(points=[[40, 50]], labels=[1])
    assert np.array_equal(first.logits, r1.logits[0:1])  # the committed candidate's logits are kept

    s.edit(0)
    assert s.editing == 0 and s.prompts == first.prompts
    assert np.array_equal(s.mask, first.mask) and len(s.candidates) == 1
    assert "editing “cell”" in s.status.text()
    s.add_point(60, 70, label=0)
    slot = s.current.slot
    assert slot.multimask is False and np.array_equal(slot.mask_input, first.logits)  # refines the object
    r2 = ref.predict(points=[[40, 50], [60, 70]], labels=[1, 0], mask_input=first.logits, multimask=False)
    assert np.array_equal(s.mask, r2.masks[0])
    replaced = s.commit()
    assert (replaced.id, replaced.label, replaced.color) == (first.id, "cell", first.color)
    assert np.array_equal(replaced.mask, r2.masks[0]) and replaced.prompts.labels == (1, 0)
    assert s.objects == (replaced, second) and s.editing is None and s.prompts.is_empty
    assert s.undo() and s.editing == 0 and s.undo() and s.undo() and s.editing is None
    assert s.objects == (first, second)  # exactly as before the edit
    s.edit(1)
    s.clear()  # Esc: stop editing, nothing changes
    assert s.editing is None and s.objects == (first, second)


def test_a_mask_brought_in_becomes_an_object_and_refining_it_starts_from_the_mask(sessions, tiny_sam):
    seg = Segmenter(tiny_sam, exact=True)
    s = sessions(A, segmenter=seg).wait_ready(30)
    ref = reference(tiny_sam, A)
    yy, xx = np.mgrid[:120, :160]
    disc = (xx - 70) ** 2 + (yy - 60) ** 2 < 30**2
    obj = s.add_object(disc, label="from elsewhere")
    assert (obj.label, obj.id, obj.prompts.is_empty, obj.logits) == ("from elsewhere", 1, True, None)
    assert np.array_equal(obj.mask, disc) and obj.mask is not disc and np.isnan(obj.score)
    disc[0, 0] = True  # the caller's array is not shared
    assert not obj.mask[0, 0]
    s.edit(0)
    s.add_point(70, 60)
    want_input = seg.mask_input_from_mask(obj.mask)
    assert np.array_equal(s.current.slot.mask_input, want_input)
    r = ref.predict(points=[[70, 60]], labels=[1], mask_input=want_input, multimask=False)
    assert np.array_equal(s.mask, r.masks[0])
    assert s.commit().id == 1 and len(s.objects) == 1


def test_set_objects_from_a_label_image_array_or_file(sessions, tiny_sam, tmp_path):
    s = sessions(A, segmenter=Segmenter(tiny_sam)).wait_ready(30)
    labels = np.zeros((120, 160), np.uint16)
    labels[10:30, 10:40] = 7
    labels[50:90, 60:100] = 300
    labels[60:70, 70:80] = 2
    objs = s.set_objects(labels)
    assert [o.id for o in objs] == [1, 2, 3] and s.objects == objs
    assert [int(labels[o.mask][0]) for o in objs] == [2, 7, 300]  # increasing label value
    assert all(np.array_equal(o.mask, labels == v) for o, v in zip(objs, (2, 7, 300)))
    again = s.set_objects(s.labels)  # a round trip through the label image: the same masks
    assert [np.array_equal(a.mask, b.mask) for a, b in zip(again, objs)] == [True] * 3 and len(again) == 3
    path = tmp_path / "labels.png"
    Image.fromarray(labels).save(path)  # a 16-bit PNG
    from_file = s.set_objects(str(path))
    assert [np.array_equal(a.mask, b.mask) for a, b in zip(from_file, objs)] == [True] * 3
    assert s.undo() and s.objects == again and s.undo() and s.objects == objs


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda s: s.add_object(np.ones((10, 10), bool)), ValueError, "shape"),
        (lambda s: s.add_object(np.zeros((120, 160), bool)), ValueError, "empty"),
        (lambda s: s.add_object(np.full((120, 160), 2, np.uint8)), ValueError, "0 / 1"),
        (lambda s: s.add_object([[1]]), TypeError, "NumPy array"),
        (lambda s: s.add_object(np.ones((120, 160), bool), label=5), TypeError, "string"),
        (lambda s: s.set_objects(np.ones((120, 160), np.float32)), TypeError, "integers"),
        (lambda s: s.set_objects(-np.ones((120, 160), np.int32)), ValueError, "negative"),
        (lambda s: s.set_objects(np.ones((12, 16), np.int32)), ValueError, "shape"),
        (lambda s: s.set_objects("/no/such/labels.png"), ValueError, "does not exist"),
        (lambda s: s.edit(5), IndexError, "does not exist"),
    ],
    ids=["wrong shape", "empty", "values 2", "list", "label 5", "float labels", "negative", "label shape", "missing file", "edit 5"],
)
def test_bad_masks_are_refused_and_change_nothing(sessions, tiny_sam, call, exc, match):
    s = sessions(A, segmenter=Segmenter(tiny_sam)).wait_ready(30)
    s.add_object(np.ones((120, 160), bool))
    before, rev = s.current, s.revision
    with pytest.raises(exc, match=match):
        call(s)
    assert s.current is before and s.revision == rev


# ============================================================================ listeners
def test_listeners_and_callbacks_follow_every_change_including_the_image(sessions, tiny_sam):
    s = sessions([A, B], segmenter=Segmenter(tiny_sam)).wait_ready(30)
    seen: list = []

    class View:
        def changed(self, session):
            seen.append(("changed", session.index, len(session.objects)))

        def status(self, session):
            seen.append(("status", session.status.phase))

    s.subscribe(View())
    revs: list[int] = []
    s.on_change(lambda ss: revs.append(ss.revision))
    s.add_point(40, 40)
    assert revs == [1] and ("changed", 0, 0) in seen
    s.commit()
    s.next()
    assert revs == [1, 2, 3] and ("changed", 1, 0) in seen  # the view was told about the new image
    s.prev()
    assert revs[-1] == 4 and s.objects and s.revision == 4


# ============================================================================ memory
def _held_mask_bytes(s: Session) -> int:
    """Bytes of full-size masks the undo history's predictions hold."""
    preds = {id(sn.prediction): sn.prediction for sn in s.history.snapshots() if sn.prediction is not None}
    return sum(p.cached_mask_bytes for p in preds.values())


@pytest.mark.parametrize("budget, bounded", [(2_000_000, True), (10**12, False)], ids=["2 MB budget", "no budget"])
def test_full_size_masks_in_the_history_stay_under_the_budget(sessions, tiny_sam, budget, bounded):
    """A callback reading ``mask`` after every click: 30 click+clear rounds on a 600 x 800 image."""
    image = make_image(600, 800, seed=5)
    s = sessions(image, segmenter=Segmenter(tiny_sam, exact=True), mask_cache_bytes=budget).wait_ready(30)
    s.on_change(lambda ss: ss.mask)
    mask_bytes = 600 * 800
    rng = np.random.default_rng(1)
    for _ in range(30):
        s.add_point(*rng.uniform(0, [800, 600]))
        s.clear()
    held = _held_mask_bytes(s)
    if bounded:
        assert held <= budget
        assert s.mask_budget.nbytes <= budget
    else:  # what happened before the budget: every mask ever read stays
        assert held >= 30 * mask_bytes
    # older steps still give their exact masks back (recomputed from the logits)
    while s.undo():
        pass
    s.redo()
    ref = reference(tiny_sam, image)
    assert np.array_equal(s.mask, ref.predict(**s.prompts.as_arrays(), multimask=True).masks[s.selected])


def test_a_single_image_file_keeps_its_path_and_name(sessions, tiny_sam, tmp_path):
    path = write_png(tmp_path / "cells.png", A)
    s = sessions(path, segmenter=Segmenter(tiny_sam))
    assert s.single and s.images.names == ["cells.png"] and s.images.path(0) == path and s.name == "cells.png"
    assert np.array_equal(s.image, A) and s.images.in_memory == [0]
    arr = A.copy()
    t = sessions(arr, segmenter=Segmenter(tiny_sam))
    arr[:] = 0  # the caller's array is copied for a single image, as always
    assert np.array_equal(t.image, A) and t.images.path(0) is None and t.name == "image 1"


def test_a_script_that_exits_while_the_background_threads_work_ends_cleanly(tmp_path):
    """Python used to abort ("terminate called without an active exception", exit 134) about one
    run in four when a script ended while the prefetch thread was inside torch."""
    import subprocess
    import sys

    script = tmp_path / "s.py"
    script.write_text(
        "from sam_widget.session import Session\n"
        "from sam_widget.data import shapes_image\n"
        "s = Session([shapes_image(i, size=(600, 800))[0] for i in range(4)], model='tiny_shapes')\n"
        "s.wait_ready(60)\n"
        "s.next()  # the neighbours' prefetch is in flight when the script ends\n"
    )
    for _ in range(4):
        r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "terminate" not in r.stderr, (r.returncode, r.stderr[-500:])
