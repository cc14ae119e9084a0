"""The benchmark runs end to end (tiny model) and reports sane numbers; the test utilities work.

No timing is asserted: the machine is shared and the tiny model says nothing about speed.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import bench
from sam_widget.testing import EventInjector, RecordingComm, decode_commands


@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    before = bench.DEFAULT_RESULTS.read_text() if bench.DEFAULT_RESULTS.exists() else None
    assert bench.main(["--size", "tiny", "--no-append", "--json", str(out)]) == 0
    after = bench.DEFAULT_RESULTS.read_text() if bench.DEFAULT_RESULTS.exists() else None
    assert before == after, "--no-append must not touch benchmarks/RESULTS.md"
    return json.loads(out.read_text())


def _pos(v):
    return isinstance(v, (int, float)) and v > 0 and np.isfinite(v)


def test_every_section_present(tiny_results):
    for key in ("meta", "encode", "click", "bytes", "cache", "storm", "memory", "targets"):
        assert key in tiny_results, key
    meta = tiny_results["meta"]
    assert meta["size"] == "tiny"
    assert meta["machine"]["cores"] >= 1 and meta["machine"]["torch"]
    assert "exact" in meta["segmenter_mode"]


def test_encode(tiny_results):
    enc = tiny_results["encode"]
    assert len(enc["baseline_s"]) == len(enc["ours_s"]) == tiny_results["meta"]["reps"]
    assert _pos(enc["baseline_median_s"]) and _pos(enc["ours_median_s"]) and _pos(enc["ratio"])
    fresh = enc["fresh_process"]
    assert _pos(fresh["first_set_image_s"]) and _pos(fresh["import_s"]) and _pos(fresh["model_build_s"])
    assert fresh["encoder_calls"] == 1


def test_click_and_bytes(tiny_results):
    sizes = tiny_results["click"]["sizes"]
    assert len(sizes) == 3
    for key, e in sizes.items():
        assert _pos(e["baseline_median_ms"]) and _pos(e["ours_median_ms"]), key
        assert all(_pos(x) for x in e["ours_ms"]), key
        assert e["ours_median_ms"] >= e["events_handled_median_ms"], key
        assert e["put_image_data"] == (e["mask_fraction_display"] > 0), key
        b = tiny_results["bytes"]["sizes"][key]
        assert _pos(b["bytes_per_update"]) and 0 < b["ratio"] < 1, key
        assert b["raw_rgba_frame_bytes"] == 4 * b["display_hw"][0] * b["display_hw"][1]
    assert np.isfinite(tiny_results["click"]["growth_exponent_ours"])


def test_cache(tiny_results):
    mem = tiny_results["cache"]["memory_hit"]
    assert _pos(mem["median_ms"]) and mem["memory_hits"] > 0 and mem["encoder_calls"] == 0
    disk = tiny_results["cache"]["disk_hit"]
    assert disk["encoder_calls"] == 0
    assert disk["disk_hits"] == 1
    assert _pos(disk["set_image_ms"]) and _pos(disk["import_s"]) and _pos(disk["model_build_s"])


def test_storm(tiny_results):
    st = tiny_results["storm"]
    assert st["events"] == 500
    assert st["previews_computed"] >= 1 and st["previews_drawn"] >= 1
    assert _pos(st["previews_per_s"]) and st["time_to_idle_after_last_event_s"] >= 0
    assert st["final_state_correct"] is True, st
    assert st["paced"]["final_state_correct"] is True, st["paced"]
    assert st["paced"]["previews_computed"] >= 1


def test_memory_and_targets(tiny_results):
    assert _pos(tiny_results["memory"]["ru_maxrss_mb"])
    names = {t["name"] for t in tiny_results["targets"]}
    assert "cache disk hit, new process (ms)" in names and "pointer storm previews/s" in names
    assert all(t["pass"] in (True, False, None) for t in tiny_results["targets"])
    table = bench.format_table(tiny_results)
    assert "| Metric |" in table and ("PASS" in table or "MISS" in table)


# ---------------------------------------------------------------------- sam_widget.testing
def test_decode_commands_batch_and_single():
    from ipycanvas.canvas import COMMANDS

    batch = [[COMMANDS["switchCanvas"], ["IPY_MODEL_abc"]], [COMMANDS["clearRect"], [1, 2, 3, 4], 0], [COMMANDS["putImageData"], [5, 6], 1]]
    cmds, cur = decode_commands([json.dumps(batch).encode(), b"PNGDATA"])
    assert cur == "abc"
    assert [c.name for c in cmds] == ["switchCanvas", "clearRect", "putImageData"]
    assert cmds[2].canvas == "abc" and cmds[2].buffers == [b"PNGDATA"] and cmds[2].xy == (5.0, 6.0)
    single, cur2 = decode_commands([json.dumps([COMMANDS["fillRect"], [0, 0, 1, 1], 0]).encode()], cur)
    assert single[0].name == "fillRect" and single[0].canvas == "abc" and cur2 == "abc"


def test_recorder_and_injector_drive_a_widget(tiny_sam, sample_rgb):
    import ipycanvas

    from sam_widget import SamWidget, Segmenter

    manager = ipycanvas.canvas._CANVAS_MANAGER
    original = manager.comm
    with RecordingComm.install() as rec:
        assert manager.comm is rec and rec.comm_id == original.comm_id
        w = SamWidget(sample_rgb, segmenter=Segmenter(tiny_sam), display_size=120)
        try:
            w.wait_ready(60)
            inj = EventInjector(w, css_scale=2.0)  # the page shows the canvas at twice its size
            start = rec.mark()
            inj.click_image(70, 90)
            w.wait_idle(60)
            assert w.prompts.points == ((70.0, 90.0),) and w.prompts.labels == (1,)
            current = w._view.canvas[2]
            msg = rec.find(lambda m: m.touches(current), start)
            assert msg is not None and msg.nbytes > 0 and msg.thread != ""
            puts = rec.commands("putImageData", canvas=current, start=start)
            if w.mask.any():
                img = puts[-1].image
                assert img.ndim == 3 and img.shape[2] == 4
            inj.click_image(200, 80, button=2)  # right click: negative point
            w.wait_idle(60)
            assert w.prompts.labels == (1, 0)
            inj.key("z", ctrl=True)
            w.wait_idle(60)
            assert w.prompts.labels == (1,)
            inj.key("Escape")
            assert w.prompts.is_empty
        finally:
            w.close()
    assert manager.comm is original
