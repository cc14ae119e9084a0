"""state.py: prompts, prediction slots, objects and the undo history (no widgets, no torch)."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sam_widget.render import bbox
from sam_widget.state import History, ObjectRecord, PredictionSlot, Prompts, Snapshot, object_color


# ---------------------------------------------------------------------------- Prompts
def test_prompts_start_empty_and_grow_without_mutating():
    p0 = Prompts()
    assert p0.is_empty and p0.points == () and p0.labels == () and p0.box is None
    p1 = p0.with_point(3, 4, 1)
    p2 = p1.with_point(10.5, 2, 0)
    assert p0.is_empty  # frozen: the old value is unchanged
    assert p1.points == ((3.0, 4.0),) and p1.labels == (1,)
    assert p2.points == ((3.0, 4.0), (10.5, 2.0)) and p2.labels == (1, 0)
    assert all(isinstance(v, float) for pt in p2.points for v in pt)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p2.box = (0, 0, 1, 1)


def test_prompts_box_replaces_and_can_be_removed():
    p = Prompts().with_point(1, 1, 1).with_box((1, 2, 30, 40))
    assert p.box == (1.0, 2.0, 30.0, 40.0) and not p.is_empty
    q = p.with_box((5, 5, 6, 6))
    assert q.box == (5.0, 5.0, 6.0, 6.0) and q.points == p.points
    assert Prompts().with_box((0, 0, 1, 1)).with_box(None).is_empty


def test_prompts_equality_is_by_value():
    assert Prompts().with_point(1, 2, 1) == Prompts().with_point(1.0, 2.0, 1)
    assert Prompts().with_point(1, 2, 1) != Prompts().with_point(1, 2, 0)


def test_prompts_as_arrays_match_segmenter_predict_arguments():
    p = Prompts().with_point(3, 4, 1).with_point(5, 6, 0).with_box((0, 1, 7, 8))
    a = p.as_arrays()
    assert a["points"].shape == (2, 2) and a["points"].dtype == np.float64
    assert a["points"].tolist() == [[3, 4], [5, 6]]
    assert a["labels"].tolist() == [1, 0] and a["labels"].dtype == np.int64
    assert a["box"].tolist() == [0, 1, 7, 8]
    e = Prompts().as_arrays()
    assert e == {"points": None, "labels": None, "box": None}
    b = Prompts().with_box((0, 1, 2, 3)).as_arrays()
    assert b["points"] is None and b["labels"] is None and b["box"].shape == (4,)


# ---------------------------------------------------------------------------- PredictionSlot
def test_prediction_slot_fill_and_wait():
    slot = PredictionSlot()
    assert not slot.done and slot.prediction is None and slot.base is None
    assert slot.wait(0.01) is False
    logits = np.zeros((1, 8, 8), np.float32)
    t = threading.Timer(0.05, lambda: slot.fill("PRED", logits, False))
    t.start()
    assert slot.wait(5) is True
    t.join()
    assert slot.done and slot.prediction == "PRED" and slot.mask_input is logits and slot.multimask is False
    assert slot.error is None


def test_prediction_slot_fail_releases_waiters_with_a_message():
    base = PredictionSlot()
    slot = PredictionSlot(base=(base, 2))
    assert slot.base == (base, 2)
    slot.fail("boom")
    assert slot.wait(0) and slot.done and slot.error == "boom" and slot.prediction is None


# ---------------------------------------------------------------------------- objects
def _record(mask, label="a", n=1):
    mask = np.asarray(mask, bool)
    return ObjectRecord(label, object_color(n - 1), mask, 0.9, Prompts().with_point(0, 0, 1), n)


def test_object_record_area_and_bbox():
    m = np.zeros((10, 12), bool)
    m[2:5, 3:9] = True
    m[7, 1] = True
    o = _record(m)
    assert o.area == 3 * 6 + 1
    assert o.bbox == (1, 2, 9, 8) == bbox(m)
    assert _record(np.zeros((4, 4))).bbox is None


@given(st.integers(1, 20), st.integers(1, 20), st.data())
@settings(max_examples=60, deadline=None)
def test_object_record_bbox_matches_render_bbox(h, w, data):
    bits = data.draw(st.lists(st.booleans(), min_size=h * w, max_size=h * w))
    m = np.array(bits, bool).reshape(h, w)
    o = _record(m)
    assert o.bbox == bbox(m)
    assert o.area == int(m.sum())


def test_object_colors_are_distinct_bright_rgb():
    colors = [object_color(i) for i in range(24)]
    assert len(set(colors)) == 24
    for c in colors:
        assert len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)
        assert max(c) >= 200  # bright
        assert max(c) - min(c) >= 120  # saturated, visible on gray images
    # neighbours in the sequence differ clearly (golden-ratio hues)
    for a, b in zip(colors, colors[1:]):
        assert sum(abs(x - y) for x, y in zip(a, b)) > 100
    assert object_color(3) == object_color(3)  # deterministic


# ---------------------------------------------------------------------------- Snapshot
def test_snapshot_defaults_and_prediction():
    s = Snapshot()
    assert s.prompts.is_empty and s.slot is None and s.selected is None and s.objects == () and s.next_object_id == 1
    assert s.prediction is None
    slot = PredictionSlot()
    slot.fill("P", None, True)
    assert Snapshot(Prompts().with_point(1, 1, 1), slot).prediction == "P"


# ---------------------------------------------------------------------------- History
def _snap(i: int) -> Snapshot:
    return Snapshot(next_object_id=i)


def test_history_undo_redo_walks_back_and_forth():
    h = History()
    first = h.current
    assert not h.can_undo and not h.can_redo
    assert h.undo() is False and h.redo() is False and h.current is first
    a, b = _snap(2), _snap(3)
    assert h.push(a) is a and h.push(b) is b
    assert h.current is b and h.can_undo and not h.can_redo
    assert h.undo() and h.current is a
    assert h.undo() and h.current is first
    assert h.undo() is False and h.current is first
    assert h.redo() and h.current is a
    assert h.redo() and h.current is b
    assert h.redo() is False and h.current is b


def test_history_push_after_undo_drops_the_redo_branch():
    h = History()
    a, b, c = _snap(2), _snap(3), _snap(4)
    h.push(a)
    h.push(b)
    h.undo()
    h.push(c)
    assert h.current is c and not h.can_redo
    assert h.undo() and h.current is a


def test_history_initial_snapshot_and_limit():
    start = _snap(100)
    h = History(start, limit=3)
    assert h.current is start
    for i in range(10):
        h.push(_snap(i))
    steps = 0
    while h.undo():
        steps += 1
    assert steps == 3  # only the last `limit` states can be restored
    assert h.current.next_object_id == 6


@given(st.lists(st.sampled_from(["push", "undo", "redo"]), max_size=40))
@settings(max_examples=150, deadline=None)
def test_history_behaves_like_two_stacks(ops):
    h = History(_snap(0))
    past, now, future = [], 0, []
    n = 1
    for op in ops:
        if op == "push":
            h.push(_snap(n))
            past.append(now)
            now, future = n, []
            n += 1
        elif op == "undo":
            ok = h.undo()
            assert ok == bool(past)
            if past:
                future.append(now)
                now = past.pop()
        else:
            ok = h.redo()
            assert ok == bool(future)
            if future:
                past.append(now)
                now = future.pop()
        assert h.current.next_object_id == now
        assert h.can_undo == bool(past) and h.can_redo == bool(future)


def test_history_is_thread_safe():
    h = History()
    errors = []

    def worker(k):
        try:
            for i in range(300):
                h.push(_snap(k * 1000 + i))
                if i % 3 == 0:
                    h.undo()
                if i % 5 == 0:
                    h.redo()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    # every state is reachable by undo without error and the chain ends
    count = 0
    while h.undo():
        count += 1
    assert count <= 500


# ---------------------------------------------------------------------------- transitions
def _answered(pred="P") -> PredictionSlot:
    slot = PredictionSlot(prompts=Prompts().with_point(1, 1, 1))
    slot.fill(pred, None, True)
    return slot


def _blob(h=6, w=8, rows=slice(1, 3), cols=slice(2, 5)) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[rows, cols] = True
    return m


def test_commit_appends_an_object_clears_the_prompts_and_leaves_the_old_snapshot_alone():
    p = Prompts().with_point(3, 2, 1)
    s0 = Snapshot().with_prompts(p, _answered())
    mask = _blob()
    logits = np.ones((1, 4, 4), np.float32)
    s1 = s0.commit(mask, 0.75, None, logits)
    assert s0.prompts == p and s0.objects == () and s0.next_object_id == 1  # unchanged
    assert s1.prompts.is_empty and s1.slot is None and s1.editing is None and s1.next_object_id == 2
    (o,) = s1.objects
    assert (o.label, o.color, o.id, o.score, o.prompts) == ("object 1", object_color(0), 1, 0.75, p)
    assert o.mask is mask and not o.mask.flags.writeable and o.logits is logits
    s2 = s1.with_prompts(Prompts().with_point(5, 5, 1), _answered()).commit(_blob(cols=slice(0, 1)), 0.5, "  cat ")
    assert [x.label for x in s2.objects] == ["object 1", "cat"] and s2.objects[0] is o  # shared, not copied
    with pytest.raises(ValueError, match="empty"):
        s1.with_prompts(p, _answered()).commit(np.zeros((6, 8), bool), 0.5)


def test_editing_brings_the_prompts_back_and_commit_replaces_the_object_in_place():
    p = Prompts().with_point(3, 2, 1)
    s = Snapshot().with_prompts(p, _answered()).commit(_blob(), 0.7, "a")
    s = s.with_prompts(Prompts().with_box((0, 0, 4, 4)), _answered()).commit(_blob(cols=slice(6, 8)), 0.6, "b")
    stored = _answered("STORED")
    e = s.edit(0, stored)
    assert e.editing == s.objects[0].id == 1 and e.editing_index == 0
    assert e.prompts == p and e.slot is stored and e.selected is None
    refined = Prompts().with_point(3, 2, 1).with_point(1, 1, 0)
    e2 = e.with_prompts(refined, _answered())
    assert e2.editing == 1  # further prompts keep editing the same object
    new_mask = _blob(rows=slice(0, 4))
    done = e2.commit(new_mask, 0.9)
    a, b = done.objects
    assert (a.id, a.label, a.color, a.prompts, a.score) == (1, "a", object_color(0), refined, 0.9)
    assert a.mask is new_mask and b is s.objects[1] and done.next_object_id == 3 and done.editing is None
    assert e2.with_prompts(refined, _answered()).commit(new_mask, 0.9, "renamed").objects[0].label == "renamed"
    # Esc (cleared) stops editing without touching the object; deleting the edited one too
    assert e2.cleared().editing is None and e2.cleared().objects is e2.objects
    gone = e2.delete(0)
    assert gone.editing is None and [o.label for o in gone.objects] == ["b"] and gone.prompts == refined
    assert e2.delete(1).editing == 1
    with pytest.raises(IndexError, match="does not exist"):
        s.edit(2, stored)
    with pytest.raises(TypeError, match="int"):
        s.edit("0", stored)


def test_select_rename_delete_and_cleared_are_pure():
    s = Snapshot().with_prompts(Prompts().with_point(1, 1, 1), _answered()).commit(_blob(), 0.5)
    slot = _answered()
    s = s.with_prompts(Prompts().with_point(2, 2, 0), slot)
    assert s.select(2).selected == 2 and s.selected is None and s.select(2).slot is slot
    r = s.rename(0, "  dog ")
    assert r.objects[0].label == "dog" and r.objects[0].mask is s.objects[0].mask and s.objects[0].label == "object 1"
    with pytest.raises(ValueError, match="non-empty"):
        s.rename(0, " ")
    with pytest.raises(IndexError):
        s.rename(1, "x")
    d = s.delete(0)
    assert d.objects == () and d.prompts == s.prompts and d.slot is slot and d.next_object_id == 2
    c = s.cleared()
    assert c.prompts.is_empty and c.slot is None and c.objects is s.objects


def test_objects_brought_in_have_no_prompts_and_set_objects_replaces_them():
    s = Snapshot().with_prompts(Prompts().with_point(1, 1, 1), _answered())
    m1, m2 = _blob(), _blob(cols=slice(6, 8))
    a = s.add_objects([m1, m2], ["cell", None])
    assert [(o.label, o.id, o.prompts.is_empty, o.logits) for o in a.objects] == [("cell", 1, True, None), ("object 2", 2, True, None)]
    assert np.isnan(a.objects[0].score) and a.prompts == s.prompts and a.next_object_id == 3
    b = a.without_objects().add_objects([m2])
    assert [(o.label, o.id) for o in b.objects] == [("object 3", 3)]  # ids are never reused (colours follow ids)
