"""Per-image artifact flags (issue 18): read off the fractions the detectors measured, None where a
detector did not run; on phantoms, whose artifacts are known, the flags follow the truth in the
part of the image the output shows (the centre crop: a ruler along a long side or dark corners
outside the square are not in the output)."""

from __future__ import annotations

import numpy as np
from skingenbench.services.data.core.phantom import PhantomConfig, render_phantom
from skingenbench.services.preprocessing.core.geometry import resize_mask
from skingenbench.services.preprocessing.core.pipeline_registry import create_pipeline
from skingenbench.services.preprocessing.core.pipelines import ARTIFACT_FLAG_THRESHOLDS, artifact_flags


def test_flags_compare_each_fraction_with_its_threshold_and_are_none_when_not_detected():
    fractions = {"hair_fraction": 0.03, "dark_field_fraction": 0.0, "mark_fraction": 0.004}
    flags = artifact_flags(fractions, ["detect_dark_field", "detect_hair", "remove_marks"])
    assert flags == {"artifact_hair": True, "artifact_dark_corners": False, "artifact_marks": False}
    assert ARTIFACT_FLAG_THRESHOLDS["marks"] > 0.004
    assert artifact_flags(fractions, ["detect_hair"]) == {
        "artifact_hair": True,
        "artifact_dark_corners": None,
        "artifact_marks": None,
    }


def test_phantom_vignettes_and_marks_are_flagged_by_the_advanced_pipeline():
    pipeline = create_pipeline("advanced")
    rng = np.random.default_rng(4)
    agree = {"dark_corners": [], "marks": []}
    for index in range(16):
        with_artifacts = index % 2 == 0
        rate = 1.0 if with_artifacts else 0.0
        config = PhantomConfig(
            width=160,
            height=120,
            hair_rate=0.0,
            ruler_rate=rate,
            ink_rate=0.0,
            vignette_rate=rate,
            bubbles_rate=0.0,
        )
        sample = render_phantom("NV", rng, config)
        measured = pipeline(sample.image, seed=0).measurements
        size = pipeline.config.size
        shown = {
            name: bool(resize_mask(getattr(sample, name) > 0, size).any()) for name in ("vignette", "ruler")
        }
        agree["dark_corners"].append(measured["artifact_dark_corners"] == shown["vignette"])
        agree["marks"].append(measured["artifact_marks"] == shown["ruler"])
    assert np.mean(agree["dark_corners"]) >= 0.8
    assert np.mean(agree["marks"]) >= 0.6
