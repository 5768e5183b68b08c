"""The speed benchmark's report says what was timed: with and without a cascade."""

from __future__ import annotations

from pathlib import Path

from benchmarks.speed import markdown

RESULT = {
    "segments": 675,
    "promofilter_segments_per_s": 2100.0,
    "promofilter_without_cascade_segments_per_s": 510.0,
    "pipeline_segments_per_s": 34.0,
    "speedup": 61.8,
    "speedup_without_cascade": 15.0,
    "skipped_by_cascade": 0.77,
    "has_cascade": True,
    "target_speedup": 15,
    "model_layers": 3,
}


def test_a_model_with_a_cascade_is_reported_with_and_without_it() -> None:
    report = markdown(RESULT, Path("models/default"))
    assert "skips the encoder for 77% of these segments) | 2100.0 |" in report
    assert "`cascade=False` (the encoder on every segment) | 510.0 |" in report
    assert "Speed-up **61.8x** (15.0x without the cascade); it meets the 15x target" in report


def test_a_model_without_a_cascade_gets_one_row_and_no_cascade_claims() -> None:
    result = {**RESULT, "has_cascade": False, "speedup": 14.2, "skipped_by_cascade": 0.0}
    report = markdown(result, Path("models/default"))
    assert "no cascade: the encoder runs on every segment) | 2100.0 |" in report
    assert "cascade=False" not in report and "the cascade," not in report
    assert "Speed-up **14.2x**; it MISSES the 15x target" in report
