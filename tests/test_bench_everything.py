"""The segment-everything benchmark runs end to end on the small models and reports sane
figures (no timing is asserted: the machine is shared and small models say nothing about
speed)."""

from __future__ import annotations

import json

import pytest

from benchmarks import bench_everything


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "tiny.json"
    results = tmp_path_factory.mktemp("bench") / "RESULTS.md"
    with pytest.MonkeyPatch.context() as mp:  # as on a bf16 machine without the suite's fp32 pin
        mp.setenv("SAM_WIDGET_PRECISION", "bf16")
        assert bench_everything.main(["--size", "tiny", "--json", str(out), "--results", str(results)]) == 0
    return json.loads(out.read_text()), results.read_text()


def test_every_setting_is_measured_on_both_sides(tiny):
    res, _ = tiny
    assert set(res["random"]) == {"defaults", "lowered"} and set(res["shapes"]) == {"defaults", "lowered"}
    for r in res["random"].values():
        assert r["official_s"] > 0 and r["ours_s"] > 0 and r["ratio"] == pytest.approx(r["ours_s"] / r["official_s"])
        assert r["ours_with_masks_s"] >= r["ours_s"]
        assert r["peak_mb_official"] >= 0 and r["peak_mb_ours"] >= 0
    assert res["meta"]["encoder_calls_during_everything"] == 0  # the cached embedding was used


def test_lowered_thresholds_give_real_work_and_full_agreement(tiny):
    res, _ = tiny
    low = res["random"]["lowered"]
    assert low["official_masks"] >= 10 and low["our_proposals"] >= 10
    assert low["agreement"]["fraction"] >= bench_everything.AGREEMENT_FRACTION
    shapes = res["shapes"]["lowered"]
    assert shapes["official_masks"] >= 3 and shapes["exact_parity"] is True
    assert shapes["agreement_fraction"] >= bench_everything.AGREEMENT_FRACTION


def test_the_section_is_appended_as_a_table(tiny):
    _, text = tiny
    assert "segment everything" in text and "| setting |" in text
    assert text.count("\n| ") == 5  # the header and 4 rows (2 random-weight settings, 2 tiny_shapes)
