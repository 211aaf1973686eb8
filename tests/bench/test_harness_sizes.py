"""The bench harness measures what it says: requested sizes are processed sizes, and a child's peak
memory is its own (issue 20, item 3: both "1k" and "10k" once processed the same 200 images, and every
peak was the bench parent's)."""

from __future__ import annotations

import pytest

from bench.fresh import alternating_pairs, measure_in_fresh_process, spread
from bench.preprocessing import peak_memory, service_vs_in_process


def test_peak_memory_processes_the_requested_counts():
    result = peak_memory((6, 14))
    assert result["images_imported"] == {"6": 6, "14": 14}
    assert result["images_processed"] == {"6": 6, "14": 14}
    assert all(peak > 0 for peak in result["peak_rss_mib"].values())


def test_peak_memory_processes_the_requested_counts_beyond_the_rendered_images():
    # The 10k run renders 1k phantoms and names them again under new ids: every named item is processed.
    result = peak_memory((6, 14), distinct=4)
    assert result["distinct_images"] == 4
    assert result["images_imported"] == {"6": 6, "14": 14}
    assert result["images_processed"] == {"6": 6, "14": 14}


def test_service_comparison_divides_by_what_was_processed():
    result = service_vs_in_process(count=10, pairs=1)
    split_sizes = result["images_processed"]
    # The service and the core processed the same items of the same split (all of them, no splits chosen).
    assert split_sizes == [10]
    assert result["service_over_in_process"]["pairs"] == 1


def hold_and_measure(megabytes: int) -> float:
    """Allocate and touch ``megabytes`` in this process, then measure a fresh child's peak."""
    ballast = bytearray(megabytes * 1024 * 1024)
    ballast[::4096] = b"x" * len(ballast[::4096])
    return measure_in_fresh_process("bench.fresh:own_peak_rss_mib")["peak_rss_mib"]


def test_a_child_reports_its_own_peak_not_its_parents():
    baseline = measure_in_fresh_process("bench.fresh:own_peak_rss_mib")["peak_rss_mib"]
    # ru_maxrss would carry the parent's 400 MiB over fork + exec; VmHWM belongs to the child alone.
    assert hold_and_measure(400) < baseline + 100


def test_alternating_pairs_report_the_median_ratio_and_spread():
    project = iter([2.0, 4.0, 6.0])
    peer = iter([1.0, 1.0, 2.0])
    summary = alternating_pairs(lambda: next(project), lambda: next(peer), pairs=3)
    assert summary["ratio"]["values"] == [2.0, 4.0, 3.0]
    assert summary["ratio"]["median"] == 3.0 and summary["ratio"]["min"] == 2.0
    assert spread([1.0, 5.0])["max"] == 5.0


def test_a_failing_child_is_an_error():
    with pytest.raises(RuntimeError, match="failed"):
        measure_in_fresh_process("bench.fresh:no_such_function")
