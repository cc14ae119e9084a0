"""The widget's segment-everything benchmark runs end to end on the small models and reports
consistent figures (no timing is asserted: the machine is shared and small models say
nothing about speed)."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_everything_widget


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    results = tmp_path_factory.mktemp("bench") / "RESULTS.md"
    assert bench_everything_widget.main(["--size", "tiny", "--json", str(out), "--results", str(results)]) == 0
    return json.loads(out.read_text()), results.read_text()


def test_both_models_are_measured_through_the_widget(tiny):
    res, _ = tiny
    assert set(res["cases"]) == {"tiny_shapes", "tiny (random weights)"}
    for r in res["cases"].values():
        assert r["proposals"] >= 3 and r["batches"] == 4  # 64 points in batches of 16
        assert 0 < r["first_proposals_drawn_s"] <= r["all_drawn_s"]
        assert r["first_batch_s"] <= r["first_proposals_drawn_s"]  # drawn after the batch it shows
        assert 1 <= r["overlays_sent"] <= r["batches"] + 1 and r["overlay_bytes"] > 0
        assert r["drag_during_run_s"] > 0 and r["drag_idle_s"] > 0
        assert r["encoder_calls_during_run"] == 0  # the cached embedding was used
        assert r["peak_extra_mb"] >= 0


def test_the_section_is_appended_as_a_table(tiny):
    _, text = tiny
    assert "segment everything in the widget" in text and "| model, image, parameters |" in text
    assert text.count("\n| ") == 3  # the header and one row per model
