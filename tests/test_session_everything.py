"""Segment everything in a headless Session: runs, proposals, accept / reject / undo, rules.

Every run uses the shipped ``tiny_shapes`` model on ``shapes_image`` scenes; the proposals
are checked against ``Segmenter.segment_everything`` called directly with the same
parameters (the engine's own tests check that against ``SamAutomaticMaskGenerator``).
Runs are paused in the middle with :class:`everything_driver.BatchGate` (no sleeps).
"""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools.coco import COCO

import sam_widget.io as sio
from sam_widget import Segmenter, Session, load_sam
from sam_widget.data import shapes_image

from everything_driver import SHAPES_PARAMS, BatchGate

P = SHAPES_PARAMS
IMAGE, _ = shapes_image(1)


@pytest.fixture(scope="module")
def shapes_sam():
    return load_sam("tiny_shapes")


@pytest.fixture(scope="module")
def reference(shapes_sam):
    """What the engine finds on IMAGE with P, called directly."""
    seg = Segmenter(shapes_sam)
    seg.set_image(IMAGE)
    props = seg.segment_everything(progress=False, **P)
    assert len(props) >= 5 and props.stats["batches"] >= 3
    return props


@pytest.fixture
def make_session(shapes_sam):
    made: list[Session] = []

    def make(images=IMAGE, **kwargs) -> Session:
        kwargs.setdefault("display_size", 128)  # shown at half size: display-size masks differ from full ones
        s = Session(images, segmenter=Segmenter(shapes_sam), **kwargs)
        made.append(s)
        return s.wait_ready(60)

    yield make
    for s in made:
        s.close()
        s._everything.join(30)


def inside(mask: np.ndarray, others: list[np.ndarray] = ()) -> tuple[int, int]:
    """An image pixel ``(x, y)`` of ``mask`` covered by none of ``others``."""
    free = mask.copy()
    for o in others:
        free &= ~o
    ys, xs = np.nonzero(free)
    assert len(xs), "no free pixel"
    k = len(xs) // 2
    return int(xs[k]), int(ys[k])


def same_proposals(a, b) -> bool:
    return len(a) == len(b) and all(p.score == q.score and np.array_equal(p.mask, q.mask) for p, q in zip(a, b))


# ============================================================================ runs
def test_segment_everything_returns_the_engines_proposals_and_shows_them(make_session, reference):
    s = make_session()
    props = s.segment_everything(**P)
    assert same_proposals(props, reference) and not props.partial
    assert s.proposals is props and s.pending_proposals == tuple(range(len(props)))
    run = s.everything_run
    assert run.done and not run.running and run.progress == 1.0 and run.batches == props.stats["batches"]
    assert s.objects == () and s.error is None
    assert f"{len(props)} proposals" in s.status.text()


def test_the_views_are_told_after_every_batch_with_the_proposals_so_far(make_session, monkeypatch):
    s = make_session()
    seen = []

    class Listener:
        def changed(self, session):
            run = session.everything_run
            if run is not None and run.proposals is not None:
                seen.append((run.batches, len(run.proposals), run.proposals.partial))

        def status(self, session):
            pass

    s.subscribe(Listener())
    gate = BatchGate(monkeypatch, pause_after=None)
    props = s.segment_everything(**P)
    batches = [b for b in gate.batches if b[0] == 1]
    assert len(batches) == props.stats["batches"] >= 3
    for _, k, n, _ in batches:  # each batch's partial proposals reached the views
        assert any(b == k and m == n and partial for b, m, partial in seen)
    assert seen[-1] == (props.stats["batches"], len(props), False)  # and then the final result


def test_accepting_a_proposal_makes_an_ordinary_object(make_session, reference, tmp_path):
    s = make_session()
    props = s.segment_everything(**P)
    obj = s.accept(2)
    p = props[2]
    assert obj.label == "object 1" and obj.id == 1 and np.array_equal(obj.mask, p.mask) and obj.mask.shape == IMAGE.shape[:2]
    assert obj.score == pytest.approx(p.score) and obj.prompts.points == (p.point,) and obj.prompts.labels == (1,)
    assert obj.logits.shape == (1, *s.segmenter.low_res_size)  # refining starts from the proposal's logits
    assert 2 not in s.pending_proposals and len(s.pending_proposals) == len(props) - 1
    assert s.accept(0, label="disc").label == "disc"
    # exported like the rest: COCO written by sam_widget.io, read back by pycocotools
    sio.to_coco([IMAGE.shape[:2]], [s.masks], labels=[[o.label for o in s.objects]], path=tmp_path / "a.json")
    coco = COCO(str(tmp_path / "a.json"))
    back = [coco.annToMask(a).astype(bool) for a in coco.loadAnns(coco.getAnnIds())]
    assert np.array_equal(back[0], p.mask) and np.array_equal(back[1], props[0].mask)
    assert np.array_equal(s.results[0].labels > 0, p.mask | props[0].mask)


def test_an_accepted_proposal_can_be_edited_like_a_clicked_object(make_session):
    s = make_session()
    props = s.segment_everything(**P)
    s.accept(0)
    s.edit(0)
    assert s.prompts.points == (props[0].point,) and np.array_equal(s.mask, props[0].mask)
    x, y = inside(~props[0].mask)
    s.add_point(x, y, 0)  # refined from the proposal's logits
    refined = s.mask
    s.commit()
    assert len(s.objects) == 1 and s.objects[0].id == 1 and np.array_equal(s.objects[0].mask, refined)


def test_rejecting_hides_a_proposal_and_an_accepted_one_cannot_be_rejected(make_session):
    s = make_session()
    props = s.segment_everything(**P)
    s.reject(1)
    assert 1 not in s.pending_proposals and s.objects == ()
    s.reject(1)  # again: nothing happens
    s.accept(3)
    before = (s.current, s.history.can_redo)
    with pytest.raises(ValueError, match="proposal 3 was accepted"):
        s.reject(3)
    with pytest.raises(ValueError, match="accepted already"):
        s.accept(3)
    assert (s.current, s.history.can_redo) == before
    assert s.pending_proposals == tuple(i for i in range(len(props)) if i not in (1, 3))


def test_accept_all_is_one_step_largest_first_and_undo_brings_the_proposals_back(make_session):
    s = make_session()
    props = s.segment_everything(**P)
    s.reject(0)
    objs = s.accept_all()
    want = sorted((i for i in range(1, len(props))), key=lambda i: -props[i].area)
    assert [o.id for o in objs] == list(range(1, len(props)))
    assert all(np.array_equal(o.mask, props[i].mask) for o, i in zip(objs, want))
    assert s.pending_proposals == () and s.accept_all() == ()
    labels = s.labels  # later objects on top: every smaller proposal stays visible
    assert all((labels == k + 1).any() for k in range(len(objs)))
    assert s.undo() and s.objects == () and s.pending_proposals == tuple(range(1, len(props)))
    assert s.undo() and s.pending_proposals == tuple(range(len(props)))  # the rejection undone
    assert s.redo() and s.redo() and len(s.objects) == len(props) - 1


def test_undo_of_an_accept_shows_the_proposal_again_and_clear_proposals_is_undoable(make_session):
    s = make_session()
    props = s.segment_everything(**P)
    s.accept(1)
    assert s.undo() and s.objects == () and 1 in s.pending_proposals
    s.clear_proposals()
    assert s.proposals is None and s.pending_proposals == () and s.proposal_at(*props[0].point) is None
    assert s.undo() and s.proposals is props
    assert s.undo() and s.proposals is None  # before the run: no proposals
    assert s.redo() and s.proposals is props


def test_a_click_position_finds_the_proposal_drawn_on_top(make_session):
    s = make_session()
    props = s.segment_everything(**P)
    for i in s.pending_proposals:
        smaller = [q.mask for q in props if q.area < props[i].area]
        if (props[i].mask & ~np.any(smaller, axis=0) if smaller else props[i].mask).any():
            x, y = inside(props[i].mask, smaller)
            assert s.proposal_at(x, y) == i
    bg = ~np.any(props.masks, axis=0)
    assert s.proposal_at(*inside(bg)) is None
    assert s.proposal_at(-1, 5) is None and s.proposal_at(10_000, 5) is None


def test_stop_keeps_what_was_found_and_flags_it_partial(make_session, monkeypatch, reference):
    s = make_session()
    gate = BatchGate(monkeypatch, pause_after=2)
    run = s.start_everything(**P)
    gate.wait_paused()
    assert run.running and s.stop_everything()
    gate.release()
    props = run.wait(60)
    assert props.partial and run.partial and run.stopped and props.stats["batches"] == 2
    assert run.points == 2 * P["points_per_batch"] < run.points_total
    assert s.proposals is props and "stopped at 50 %" in s.status.text()
    assert not s.stop_everything()  # nothing running any more
    s.accept(0)  # partial proposals are proposals like the others
    assert len(s.objects) == 1


def test_clicks_are_answered_while_a_run_is_in_the_middle(make_session, monkeypatch, reference):
    s = make_session()
    gate = BatchGate(monkeypatch, pause_after=1)
    run = s.start_everything(**P)
    gate.wait_paused()
    s.add_point(*inside(reference[0].mask))  # waits for its mask: the worker answers mid-run
    assert s.mask.any() and run.running
    gate.release()
    run.wait(60)


def test_a_second_run_stops_the_first_which_keeps_its_partial_result(make_session, monkeypatch, reference):
    s = make_session()
    gate = BatchGate(monkeypatch, pause_after=1)
    first = s.start_everything(**P)
    gate.wait_paused()
    second = s.start_everything(**P)
    assert first.stopped and second.running
    gate.release()
    assert first.wait(60).partial and first.proposals.stats["batches"] == 1
    props = second.wait(60)
    assert not props.partial and same_proposals(props, reference)
    assert s.everything_run is second and s.proposals is props
    assert s.undo() and s.everything_run is first  # the first run's proposals stay in the history


def test_another_image_stops_a_run_whose_proposals_stay_with_their_image(make_session, monkeypatch):
    other, _ = shapes_image(2)
    s = make_session([IMAGE, other])
    gate = BatchGate(monkeypatch, pause_after=1)
    run = s.start_everything(**P)
    gate.wait_paused()
    assert s.next() and run.stopped
    gate.release()
    run.wait(60)
    assert s.proposals is None and s.everything_run is None  # image 2 has none
    assert s.prev() and s.everything_run is run and s.proposals.partial and len(s.proposals) >= 1
    s.accept(0)
    assert len(s.results[0].objects) == 1 and s.results[1].objects == ()


def test_a_flat_image_gives_no_proposals_and_a_status_message_not_an_error(make_session):
    s = make_session(np.full((90, 120, 3), 128, np.uint8))
    props = s.segment_everything(**P)
    assert len(props) == 0 and not props.partial and s.error is None
    part = s.status.everything
    assert part is not None and not part[1] and "no proposals" in part[0] and "nothing passed the filters" in part[0]
    assert s.accept_all() == ()
    with pytest.raises(IndexError, match="the run found none"):
        s.accept(0)


@pytest.mark.parametrize(
    "kwargs, error, name",
    [
        (dict(points_per_side=0), ValueError, "points_per_side"),
        (dict(points_per_side=10_000), ValueError, "points_per_side"),
        (dict(pred_iou_thresh=1.5), ValueError, "pred_iou_thresh"),
        (dict(stability_score_thresh=float("nan")), ValueError, "stability_score_thresh"),
        (dict(crop_n_layers=-1), ValueError, "crop_n_layers"),
        (dict(points_per_sid=8), TypeError, "points_per_sid"),
        (dict(progress="yes"), TypeError, "progress"),
    ],
)
def test_bad_parameters_raise_at_the_call_and_change_nothing(make_session, kwargs, error, name):
    s = make_session()
    before = s.current
    with pytest.raises(error, match=name):
        s.segment_everything(**kwargs)
    assert s.current is before and s.everything_run is None and not s.history.can_undo


def test_accept_and_reject_answer_bad_input_with_one_clear_error(make_session):
    s = make_session()
    with pytest.raises(ValueError, match="no proposals"):
        s.accept(0)
    with pytest.raises(ValueError, match="no proposals"):
        s.reject(0)
    s.segment_everything(**P)
    n = len(s.proposals)
    with pytest.raises(IndexError, match=f"proposal {n} does not exist"):
        s.accept(n)
    with pytest.raises(TypeError, match="proposal index must be an int"):
        s.accept("0")
    with pytest.raises(TypeError, match="label must be a string"):
        s.accept(0, label=3)
    assert s.objects == () and s.pending_proposals == tuple(range(n))


def test_after_close_a_run_cannot_start(make_session):
    s = make_session()
    s.close()
    with pytest.raises(RuntimeError, match="closed"):
        s.segment_everything(**P)


def test_checking_parameters_does_not_import_torch():
    """The widget checks parameters on the kernel's main thread while the model may still be
    imported on the worker: importing torch from two threads at once can deadlock
    ("deadlock detected by _ModuleLock", seen in JupyterLab), so the check must not import it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from sam_widget.session.engine_link import EngineLink\n"
        "p = EngineLink.everything_params(dict(points_per_side=8, pred_iou_thresh=0.5))\n"
        "assert p.points_per_side == 8\n"
        "try:\n"
        "    EngineLink.everything_params(dict(points_per_side=0))\n"
        "except ValueError as e:\n"
        "    assert 'points_per_side' in str(e)\n"
        "print(sorted(m for m in ('torch', 'segment_anything') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
