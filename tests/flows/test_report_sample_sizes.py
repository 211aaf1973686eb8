"""The report's synthetic counts and sample-size warnings: both counts (training mix, evaluation) in the
setup lines and in results.json, and the evaluation service's warnings grouped by metric."""

from __future__ import annotations

import yaml
from skingenbench.flows.benchmark import _synthetic_counts
from skingenbench.flows.grid import GRIDS_DIR, parse_grid
from skingenbench.flows.report_sample_sizes import sample_size_lines, sample_size_results
from skingenbench.services.evaluation.core.metrics import METRICS
from skingenbench.services.evaluation.core.sample_size import sample_size_warnings


def _grid(**change):
    data = yaml.safe_load((GRIDS_DIR / "smoke.yaml").read_text())
    data.update(change)
    return parse_grid(data)


def test_the_two_counts_are_separate_and_the_evaluation_set_has_seeds_from_zero():
    counts = _synthetic_counts(_grid(split={"seed": 3}), 12, 12)
    assert counts["training_mix"] == 12 and counts["training_mix_seeds"] == [3, 14]
    assert counts["evaluation"] == 64 and counts["evaluation_seeds"] == [0, 63]
    assert "as many as the real training MEL images (12)" in counts["training_mix_rule"]
    # evaluation_count 0: the training mix itself is evaluated (same count and seeds: one sampling job).
    same = _synthetic_counts(_grid(evaluation_count=0, synthetic_count=20), 20, 12)
    assert (same["evaluation"], same["evaluation_first_seed"]) == (20, 0) and same["training_mix_rule"] == (
        "grid synthetic_count"
    )


def test_the_report_states_both_counts_and_shows_the_warnings():
    counts = _synthetic_counts(_grid(), 12, 12)
    configs = {m: METRICS.config(m, "tiny") for m in ("fid", "kid", "isc")}
    warnings = sample_size_warnings(
        ["fid", "kid", "isc"], {"real": 12, "A2-ddpm": 64}, {"extractor": 2048, "domain": None}, configs
    )
    result = {
        "warnings": [w.message for w in warnings],
        "sample_sizes": {
            "counts": {"real": 12, "A2-ddpm": 64},
            "below_minimum": [w.as_dict() for w in warnings],
        },
    }
    run = {"synthetic_counts": counts, "evaluations": {"basic": {"outputs": {}, "result": result}}}
    text = "\n".join(sample_size_lines(run))
    assert "**12 mixed into training**" in text and "**64 for FID/KID/IS** (seeds 0–63" in text
    assert "reference study used 5,000, seeds 0–4999" in text
    assert "⚠ Generative metrics below their documented sample-size minimums" in text
    assert "`fid`: 2 × (N = 12–64; minimum 2,048) — basic/A2-ddpm, basic/real." in text
    stored = sample_size_results(run)
    assert stored["synthetic_counts"]["evaluation"] == 64 and stored["synthetic_counts"]["training_mix"] == 12
    assert stored["generative_sample_sizes"]["basic"]["warnings"] == result["warnings"]
    # A run without the counts (an older run) still renders.
    assert sample_size_lines({"evaluations": {}}) == []
