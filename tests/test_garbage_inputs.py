"""Garbage in: one clear error at the call that received it, state and files untouched.

Cases an audit found slipping through (each test names the user's call): a closed session
that still took changes (and never autosaved them), hover points checked only on the
worker thread, listeners without methods, display sizes / thresholds handed to torch,
non-mask arrays turned into mask inputs, strings and bools taken as coordinates or flags.
Every model here is the shipped ``tiny_shapes`` (no download, CPU).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from sam_widget import Segmenter, Session
from sam_widget.data import shapes_image

IMAGE, _ = shapes_image(3)
H, W = IMAGE.shape[:2]


@pytest.fixture
def session(shapes_seg):
    made = []

    def make(**kwargs) -> Session:
        s = Session(IMAGE, segmenter=shapes_seg, **kwargs).wait_ready(60)
        made.append(s)
        return s

    yield make
    for s in made:
        s.close()


def labels_in(path) -> list[str]:
    """The object labels a session file holds (it is COCO JSON: annotations -> categories)."""
    data = json.loads(path.read_text())
    names = {c["id"]: c["name"] for c in data["categories"]}
    return [names[a["category_id"]] for a in data["annotations"]]


def blob(h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[h // 4 : h // 2, w // 4 : w // 2] = True
    return m


# ============================================================================ a closed session
def test_a_closed_session_refuses_every_change_and_its_autosave_file_keeps_the_last_state(session, tmp_path):
    auto = tmp_path / "auto.json"
    s = session(autosave=auto)
    s.add_object(blob(), "a")
    s.close()  # writes what autosave has pending
    saved = auto.read_bytes()
    assert labels_in(auto) == ["a"]
    changes = [
        lambda: s.add_object(blob(), "b"),
        lambda: s.delete(0),
        lambda: s.rename(0, "c"),
        lambda: s.undo(),
        lambda: s.redo(),
        lambda: s.add_point(30, 20),
        lambda: setattr(s, "threshold", 0.5),
        lambda: s.set_objects(blob().astype(np.uint8)),
    ]
    for change in changes:
        with pytest.raises(RuntimeError, match="session was closed"):
            change()
    assert [o.label for o in s.objects] == ["a"] and s.threshold == 0.0
    assert auto.read_bytes() == saved


def test_a_closed_session_can_still_be_read_and_saved(session, tmp_path):
    s = session()
    s.add_object(blob(), "a")
    s.close()
    assert s.objects[0].label == "a" and s.prompts.is_empty
    assert labels_in(s.save(tmp_path / "after_close.json")) == ["a"]


# ============================================================================ session calls
@pytest.mark.parametrize(
    "point, error",
    [((float("nan"), 1), ValueError), ((W + 100, 1), ValueError), (5, TypeError), ((1, 2, 3), TypeError),
     (("a", 1), TypeError), ((True, 1), TypeError), ("ab", TypeError)],
)
def test_a_hover_point_that_is_not_a_pixel_of_the_image_is_refused_at_the_call(session, point, error):
    s = session()
    with pytest.raises(error, match="point"):
        s.request_preview(point)
    assert s.preview is None and s.error is None


def test_a_hover_point_inside_the_image_gives_a_preview(session):
    s = session()
    s.request_preview((W // 2, H // 2))
    s.wait_idle(60)
    assert s.preview is not None and s.preview.point == (W // 2, H // 2)


@pytest.mark.parametrize("listener", [5, "view", object()])
def test_subscribing_something_that_is_not_a_view_is_a_type_error(session, listener):
    s = session()
    with pytest.raises(TypeError, match="changed.*status"):
        s.subscribe(listener)
    s.add_point(W // 2, H // 2)  # the session goes on working
    assert s.mask is not None and s.error is None


@pytest.mark.parametrize("x, y, error", [(float("nan"), 3, ValueError), (float("inf"), 3, ValueError),
                                         ("a", 3, TypeError), (True, 3, TypeError), (None, 3, TypeError)])
def test_object_at_answers_a_non_pixel_with_one_clear_error(session, x, y, error):
    s = session()
    s.add_object(blob(), "a")
    with pytest.raises(error, match="x and y"):
        s.object_at(x, y)
    assert s.object_at(W * 3 // 8, H * 3 // 8) == 0 and s.object_at(-5, 3) is None and s.object_at(W, 0) is None


@pytest.mark.parametrize("size, error", [(5, TypeError), ((0, 0), ValueError), ((2.5, 4), TypeError),
                                         ((True, 4), TypeError), ((10**6, 4), ValueError)])
def test_explain_with_a_size_that_is_not_h_w_pixels(session, size, error):
    s = session()
    s.add_point(W // 2, H // 2)
    with pytest.raises(error, match="size"):
        s.explain(size=size)
    assert s.explain(size=(40, 50)).masks.shape[1:] == (40, 50)


@pytest.mark.parametrize("timeout, error", [("x", TypeError), (True, TypeError), (-1, ValueError),
                                            (float("nan"), ValueError)])
def test_waiting_with_a_timeout_that_is_not_seconds(session, timeout, error):
    s = session()
    for wait in (s.wait_ready, s.wait_idle, s.wait_prefetch):
        with pytest.raises(error, match="timeout"):
            wait(timeout)
    assert s.wait_idle(5.0) is s and s.wait_ready(None) is s


@pytest.mark.parametrize("kwargs, error, word", [
    ({"history_limit": -1}, ValueError, "history_limit"), ({"history_limit": 0}, ValueError, "history_limit"),
    ({"history_limit": "x"}, TypeError, "history_limit"), ({"history_limit": True}, TypeError, "history_limit"),
    ({"refine": "no"}, TypeError, "refine"), ({"prefetch": "yes"}, TypeError, "prefetch"),
])
def test_session_options_of_the_wrong_kind_are_refused_when_it_is_made(shapes_seg, kwargs, error, word):
    with pytest.raises(error, match=word):
        Session(IMAGE, segmenter=shapes_seg, **kwargs)


def test_a_history_limit_of_one_still_undoes_one_step(session):
    s = session(history_limit=1)
    s.add_object(blob(), "a")
    assert s.undo() and not s.objects and not s.undo()


def test_refine_is_a_flag(session):
    s = session(refine=np.bool_(False))
    assert s.refine is False
    s.refine = 1
    assert s.refine is True
    with pytest.raises(TypeError, match="refine"):
        s.refine = "no"
    assert s.refine is True


# ============================================================================ the engine
def test_segmenter_exact_must_be_a_flag(shapes_seg):
    with pytest.raises(TypeError, match="exact"):
        Segmenter(shapes_seg.sam, exact="no")
    assert Segmenter(shapes_seg.sam, exact=0, precision="fp32").exact is False


@pytest.mark.parametrize("points, box", [([["1", "2"]], None), ([[True, True]], None), (None, [False, False, True, True]),
                                         ([[1, None]], None), ([[1 + 2j, 3]], None)])
def test_predict_takes_numbers_only_as_coordinates(shapes_seg, points, box):
    shapes_seg.set_image(IMAGE)
    with pytest.raises(TypeError, match="real numbers"):
        shapes_seg.predict(points=points, labels=None if points is None else [1], box=box)
    p = shapes_seg.predict(points=np.array([[W // 2, H // 2]], np.int32), labels=[1])
    assert p.masks.shape == (3, H, W)


@pytest.mark.parametrize("size, error", [((0, 5), ValueError), ((5.5, 5), TypeError), ((True, 5), TypeError),
                                         (7, TypeError)])
def test_mask_at_size_needs_h_w_pixels(shapes_seg, size, error):
    shapes_seg.set_image(IMAGE)
    p = shapes_seg.predict(box=[10, 10, W // 2, H // 2])
    with pytest.raises(error, match="size"):
        p.mask_at_size(0, size)
    assert p.mask_at_size(0, (H // 2, W // 2)).shape == (H // 2, W // 2)


@pytest.mark.parametrize("threshold, error", [(float("nan"), ValueError), (float("inf"), ValueError),
                                              ("0.5", TypeError), (True, TypeError)])
def test_a_mask_threshold_must_be_a_finite_logit(shapes_seg, threshold, error):
    shapes_seg.set_image(IMAGE)
    p = shapes_seg.predict(box=[10, 10, W // 2, H // 2])
    for call in (lambda: p.mask(0, threshold=threshold), lambda: p.mask_at_size(0, (20, 30), threshold=threshold)):
        with pytest.raises(error, match="threshold"):
            call()
    assert np.array_equal(p.mask(0, threshold=0.0), p.masks[0])


@pytest.mark.parametrize("mask, error", [(np.full((5, 5), np.nan), ValueError), (np.array([[None]]), TypeError),
                                         (np.full((5, 5), 7.0), ValueError), (np.full((5, 5), 3, np.uint8), ValueError),
                                         (np.ones((2, 5, 5), bool), ValueError)])
def test_mask_input_from_mask_takes_masks_only(shapes_seg, mask, error):
    shapes_seg.set_image(IMAGE)
    with pytest.raises(error, match="mask"):
        shapes_seg.mask_input_from_mask(mask)
    a = shapes_seg.mask_input_from_mask(blob())
    b = shapes_seg.mask_input_from_mask(blob().astype(np.uint8) * 255)
    assert np.array_equal(a, b) and np.isfinite(a).all()


def test_prefetch_of_a_too_thin_image_says_what_set_image_says(shapes_seg):
    thin = np.zeros((1, 5000, 3), np.uint8)
    with pytest.raises(ValueError) as direct:
        shapes_seg.set_image(thin)
    with pytest.raises(ValueError) as ahead:
        shapes_seg.prefetch(thin)
    assert str(ahead.value) == str(direct.value) and "thin" in str(ahead.value)


@pytest.mark.parametrize("name", ["points_per_side", "points_per_batch"])
def test_everything_counts_are_not_bools(shapes_seg, name):
    shapes_seg.set_image(IMAGE)
    with pytest.raises(ValueError, match=name):
        shapes_seg.segment_everything(**{name: True})


def test_widget_switches_are_flags(comm, shapes_seg):
    from sam_widget import SamWidget

    with pytest.raises(TypeError, match="hover"):
        SamWidget(IMAGE, segmenter=shapes_seg, hover="no")
    w = SamWidget(IMAGE, segmenter=shapes_seg).wait_ready(60)
    try:
        for name in ("refine", "hover"):
            with pytest.raises(TypeError, match=name):
                setattr(w, name, "no")
        w.hover = True
        w.refine = False
        assert w.hover is True and w.refine is False and w._session.refine is False
        with pytest.raises(TypeError, match="on"):
            w.show_explain("yes")
        assert not w._explain.visible
    finally:
        w.close()


# ============================================================================ process-wide state
def test_loading_tiny_shapes_draws_nothing_from_the_users_seeded_generator():
    import torch

    from sam_widget import load_sam

    torch.manual_seed(1234)
    want = torch.rand(5)
    torch.manual_seed(1234)
    load_sam("tiny_shapes", precision="fp32")  # what a widget's worker does while the user's cells run
    assert torch.equal(torch.rand(5), want)


def test_loading_in_bf16_leaves_the_process_warning_filters_alone(monkeypatch):
    """``warnings.catch_warnings`` swaps the process-wide filter list: on a worker thread it
    can drop or leak the filters of the cell running at the same time."""
    import sys
    import warnings

    from sam_widget import load_sam
    from sam_widget.engine.fast_accelerate import encoder_precision

    original, callers = warnings.catch_warnings, []

    def recording(*a, **k):
        callers.append(sys._getframe(1).f_globals.get("__name__", ""))
        return original(*a, **k)

    monkeypatch.setattr(warnings, "catch_warnings", recording)
    with original():  # the test's own scope ("bf16 without native support" warns on some CPUs)
        warnings.simplefilter("ignore", RuntimeWarning)
        sam = load_sam("tiny_shapes", precision="bf16")
    monkeypatch.undo()
    assert [c for c in callers if c.startswith("sam_widget")] == []
    assert encoder_precision(sam.image_encoder) == "bf16"


def test_relative_paths_keep_pointing_where_they_did_when_the_session_was_made(shapes_seg, tmp_path, monkeypatch):
    """Images are read (and autosave writes) later, on background threads; a ``%cd`` in a
    cell meanwhile must not swap the images or move the work file."""
    from PIL import Image

    a, b = tmp_path / "projA", tmp_path / "projB"
    for root, value in ((a, 201), (b, 61)):
        (root / "imgs").mkdir(parents=True)
        for name in ("1.png", "2.png"):
            Image.fromarray(np.full((40, 50, 3), value, np.uint8)).save(root / "imgs" / name)
    monkeypatch.chdir(a)
    s = Session("imgs", segmenter=shapes_seg, autosave="work.json", prefetch=False).wait_ready(60)
    try:
        monkeypatch.chdir(b)  # the user's %cd
        assert s.next()
        s.wait_ready(60)
        assert (s.image == 201).all()  # projA's second image, not projB's
        s.add_object(np.pad(np.ones((10, 10), bool), ((5, 25), (5, 35))), "x")
    finally:
        s.close()
    assert (a / "work.json").is_file() and not (b / "work.json").exists()
    assert labels_in(a / "work.json") == ["x"]


# ============================================================================ a cell and a click at once
class GatedSegmenter(Segmenter):
    """``predict`` waits for :attr:`gate` (no sleeps: the test opens it)."""

    def __init__(self, sam) -> None:
        super().__init__(sam)
        import threading

        self.gate = threading.Event()

    def predict(self, *args, **kwargs):
        assert self.gate.wait(60)
        return super().predict(*args, **kwargs)


def test_a_click_on_the_page_while_a_cell_commits_is_not_lost(shapes_seg):
    """``commit()`` in a cell waits for the mask; a click on the canvas meanwhile (the
    subshell thread) must end up in the committed object, not vanish."""
    import threading

    seg = GatedSegmenter(shapes_seg.sam)
    s = Session(IMAGE, segmenter=seg).wait_ready(60)
    try:
        a, b = (W * 3 / 8, H * 3 / 8), (W * 5 / 8, H * 5 / 8)
        s._push_prompts(lambda p: p.with_point(*a, 1))  # what a click on the page does
        waiting, wait_slot = threading.Event(), s._wait_slot

        def wait_and_tell(slot):
            waiting.set()
            return wait_slot(slot)

        s._wait_slot = wait_and_tell
        got = {}
        cell = threading.Thread(target=lambda: got.setdefault("obj", s.commit("x")))
        cell.start()
        assert waiting.wait(30)  # the cell's commit is waiting for the first click's mask
        s._push_prompts(lambda p: p.with_point(*b, 1))  # the second click arrives meanwhile
        seg.gate.set()
        cell.join(60)
        obj = got["obj"]
        assert obj.prompts.points == (a, b) and obj.label == "x"  # both clicks are in the object
        assert s.prompts.is_empty and [o.label for o in s.objects] == ["x"]
        assert np.array_equal(obj.mask, s.objects[0].mask) and obj.mask.any()
    finally:
        seg.gate.set()
        s.close()


def test_prompts_from_the_page_and_from_a_cell_at_the_same_moment_are_all_kept_and_the_cell_returns(shapes_seg):
    """``add_point`` in a cell waits for its mask; clicks on the page meanwhile replace its
    state with newer ones. Before, the cell then waited forever (nobody answered the
    replaced state) and a point could be dropped."""
    import threading

    s = Session(IMAGE, segmenter=shapes_seg).wait_ready(60)
    try:
        start = threading.Barrier(2)
        points = [[(10 + k, 20 + i) for k in range(15)] for i in range(2)]

        def add(mine, ui):
            start.wait()
            for x, y in mine:
                if ui:
                    s._push_prompts(lambda p, x=x, y=y: p.with_point(x, y, 1))
                else:
                    s.add_point(x, y)

        threads = [threading.Thread(target=add, args=(points[i], i == 0)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads), "add_point never returned"
        s.wait_idle(60)
        got, want = sorted(s.prompts.points), sorted(p for ps in points for p in ps)
        assert len(got) == len(want) and got == want, (len(got), set(want) - set(got))  # 30 points, none dropped
    finally:
        s.close()
