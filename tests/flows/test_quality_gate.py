"""The synthetic-set quality gate: memorized images (the evaluation core's own memorization report)
and images whose lesion/skin statistics fall outside the real training range are rejected, counted."""

from __future__ import annotations

import numpy as np
import pytest
from skingenbench.flows.quality_gate import apply_quality_gate, gate_markdown, real_ranges
from skingenbench.services.evaluation.core.memorization import memorization_report


def _memorization(copies: list[int], n_synthetic: int = 12, n_train: int = 10) -> list[dict]:
    """The evaluation core's pairs for features where synthetic image i copies training image i."""
    rng = np.random.default_rng(0)
    train = rng.normal(size=(n_train, 16))
    synthetic = rng.normal(size=(n_synthetic, 16))
    synthetic[copies] = train[copies]
    train_images = rng.integers(0, 256, size=(n_train, 24, 24, 3), dtype=np.uint8)
    synthetic_images = rng.integers(0, 256, size=(n_synthetic, 24, 24, 3), dtype=np.uint8)
    synthetic_images[copies] = train_images[copies]
    report = memorization_report(
        synthetic,
        train,
        lambda i: synthetic_images[i],
        lambda j: train_images[j],
        synthetic_ids=[f"s{i}" for i in range(n_synthetic)],
    )
    return report["pairs"]


def test_memorized_and_out_of_range_images_are_rejected_with_their_reasons():
    rng = np.random.default_rng(1)
    real = [
        {"ita_degrees": float(v), "lesion_area_fraction": float(f)}
        for v, f in zip(rng.uniform(10, 50, 30), rng.uniform(0.05, 0.4, 30), strict=True)
    ]
    ids = [f"s{i}" for i in range(12)]
    stats = {i: {"ita_degrees": 30.0, "lesion_area_fraction": 0.2} for i in ids}
    stats["s5"] = {"ita_degrees": 80.0, "lesion_area_fraction": 0.2}  # lighter than every real image
    stats["s6"] = {"ita_degrees": 30.0, "lesion_area_fraction": 0.9}  # a lesion larger than any real one
    stats["s1"] = {"ita_degrees": -40.0, "lesion_area_fraction": 0.2}  # memorized and out of range
    stats["s7"] = {"lesion_area_fraction": 0.2}  # ITA not measured: kept, counted
    gate = apply_quality_gate(
        ids, memorization_pairs=_memorization([1, 3]), synthetic_stats=stats, real_stats=real
    )
    # Independent: the real range by numpy, the memorized set from the evaluation core's flags.
    ita = np.array([r["ita_degrees"] for r in real])
    assert gate["ranges"]["ita_degrees"] == pytest.approx([ita.min(), ita.max()])
    assert gate["rejected"] == {
        "s1": ["memorized", "ita_degrees outside the real training range"],
        "s3": ["memorized"],
        "s5": ["ita_degrees outside the real training range"],
        "s6": ["lesion_area_fraction outside the real training range"],
    }
    assert gate["accepted"] == [i for i in ids if i not in ("s1", "s3", "s5", "s6")]
    assert gate["reason_counts"] == {
        "ita_degrees outside the real training range": 2,
        "lesion_area_fraction outside the real training range": 1,
        "memorized": 2,
    }
    assert gate["rejected_count"] == 4 and gate["unmeasured"]["ita_degrees"] == 1
    assert "| A2-stylegan2_ada | 12 | 4 | ita_degrees outside" in gate_markdown({"A2-stylegan2_ada": gate})


def test_checks_can_be_switched_off_and_the_margin_widens_the_range():
    real = [{"ita_degrees": 10.0}, {"ita_degrees": 50.0}]
    stats = {"a": {"ita_degrees": 52.0}, "b": {"ita_degrees": 60.0}}
    pairs = [{"synthetic": "a", "flagged": True}, {"synthetic": "b", "flagged": False}]
    assert real_ranges(real, margin=0.1)["ita_degrees"] == pytest.approx((6.0, 54.0))
    gate = apply_quality_gate(
        ["a", "b"], memorization_pairs=pairs, synthetic_stats=stats, real_stats=real, config={"margin": 0.1}
    )
    assert gate["rejected"] == {"a": ["memorized"], "b": ["ita_degrees outside the real training range"]}
    gate = apply_quality_gate(
        ["a", "b"],
        memorization_pairs=pairs,
        synthetic_stats=stats,
        real_stats=real,
        config={"memorization": False, "ita_degrees": False},
    )
    assert gate["rejected"] == {} and gate["accepted"] == ["a", "b"]


def test_gate_inputs_pair_the_mix_its_measurement_and_the_real_training_images():
    from skingenbench.flows.quality_gate import gate_inputs

    synthetic = {
        "items": [
            {"key": "sample/a.png", "image_id": "a", "label": "MEL"},
            {"key": "sample/b.png", "image_id": "", "label": "MEL"},  # named by its key
        ]
    }
    measured = {  # preprocessing's output: each item names its parent's key; one failed to measure
        "items": [
            {
                "key": "pre/a.png",
                "meta": {"parent_key": "sample/a.png", "ita_degrees": 30.0, "hair_fraction": 0},
            },
            {"key": "pre/b.png", "meta": {"parent_key": "sample/b.png", "lesion_area_fraction": 0.2}},
        ]
    }
    real = {
        "items": [
            {"key": "r1", "label": "MEL", "split": "train", "meta": {"ita_degrees": 10.0}},
            {"key": "r2", "label": "NV", "split": "train", "meta": {"ita_degrees": 80.0}},  # not the label
            {"key": "r3", "label": "MEL", "split": "val", "meta": {"ita_degrees": -60.0}},  # not training
            {"key": "r4", "label": "MEL", "split": "train", "meta": {"ita_degrees": 40.0}},
        ]
    }
    ids, stats, real_stats = gate_inputs(synthetic, measured, real, "MEL")
    assert ids == ["a", "sample/b.png"]
    assert stats == {
        "a": {"lesion_area_fraction": None, "ita_degrees": 30.0},
        "sample/b.png": {"lesion_area_fraction": 0.2, "ita_degrees": None},
    }
    assert [s["ita_degrees"] for s in real_stats] == [10.0, 40.0]
    gate = apply_quality_gate(ids, synthetic_stats=stats, real_stats=real_stats)
    assert gate["ranges"] == {"ita_degrees": [10.0, 40.0]} and gate["rejected_count"] == 0


def test_the_report_section_counts_rejections_and_names_short_sets():
    from types import SimpleNamespace

    from skingenbench.flows.quality_gate import gate_summary, report_section

    gate = apply_quality_gate(
        ["s0", "s1", "s2"],
        synthetic_stats={"s0": {"ita_degrees": 90.0}, "s1": {"ita_degrees": 20.0}, "s2": {}},
        real_stats=[{"ita_degrees": 10.0}, {"ita_degrees": 40.0}],
        config={"lesion_area_fraction": False},
    )
    ctx = SimpleNamespace(
        run={"quality_gate": {"A2-ddpm": gate_summary(gate, 3)}, "grid": {"quality_gate": {"enabled": True}}},
        tables={},
    )
    section = report_section(ctx)
    assert section.title == "Synthetic-set quality gate"
    assert "| A2-ddpm | 3 | 1 | ita_degrees outside the real training range: 1 |" in section.body
    assert "A2-ddpm: 2 of its 3 images passed" in section.body and "ita_degrees [10, 40]" in section.body
    assert ctx.tables["quality_gate"] == [
        {
            "synthetic_set": "A2-ddpm",
            "checked": 3,
            "accepted": 2,
            "rejected": 1,
            "rejected_ita_degrees outside the real training range": 1,
        }
    ]
    assert report_section(SimpleNamespace(run={}, tables={})) is None
