"""The report's statistics: Holm's correction, the mean over seeds with a seed x test-image interval, and
every paired comparison (DeLong, McNemar, the paired bootstraps) in the report's tables.

``build_run_store`` writes a small finished run the way the services and the flow do (test results with
per-image predictions, a predictions CSV, comparison documents, the run record) with the services' own
metric code and no torch; ``tests/test_report_check.py`` uses it too.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skingenbench.flows.statistics import (
    holm_adjust,
    mean_over_seeds,
    percentile_interval,
    seed_and_image_replicates,
)
from skingenbench.services.classification.core import bootstrap
from skingenbench.services.classification.core.bootstrap import evaluate_predictions
from skingenbench.services.classification.core.paired_tests import compare_pipelines
from skingenbench.services.classification.core.predictions_csv import write_predictions_csv
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.hashing import sha256_bytes
from skingenbench.services.core.manifest import Item, Manifest, Provenance

RESAMPLES = 100


# -- Holm ------------------------------------------------------------------------------------------------
def test_holm_matches_statsmodels_values():
    # statsmodels.stats.multitest.multipletests(p, method="holm")[1] for these inputs (worked by hand:
    # sorted p times m, m-1, ..., 1, then the running maximum, capped at 1).
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.001, 0.2, 0.02, 0.04, 0.5]) == pytest.approx([0.005, 0.4, 0.08, 0.12, 0.5])
    assert holm_adjust([0.3, 0.6, 0.9]) == pytest.approx([0.9, 1.0, 1.0])  # capped at 1
    assert holm_adjust([0.02, 0.02, 0.5]) == pytest.approx([0.06, 0.06, 0.5])  # ties share a value


def _holm_rejects(p_values: list[float], alpha: float) -> set[int]:
    """Holm's (1979) procedure as he stated it: reject in ascending order while p_(j) <= alpha / (m - j + 1)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    rejected = set()
    for rank, index in enumerate(order):
        if p_values[index] > alpha / (len(p_values) - rank):
            break
        rejected.add(index)
    return rejected


def test_holm_adjusted_values_reject_exactly_what_the_sequential_procedure_rejects():
    rng = np.random.default_rng(3)
    for _ in range(200):
        p = list(rng.uniform(0, 0.2, size=int(rng.integers(1, 12))))
        adjusted = holm_adjust(p)
        for alpha in (0.01, 0.05, 0.1):
            assert {i for i, a in enumerate(adjusted) if a <= alpha} == _holm_rejects(p, alpha)


def test_holm_leaves_missing_p_values_out_of_the_family():
    assert holm_adjust([0.01, None, 0.04]) == pytest.approx([0.02, None, 0.04])
    assert holm_adjust([]) == []
    with pytest.raises(ValueError):
        holm_adjust([1.5])


# -- mean over seeds -------------------------------------------------------------------------------------
def test_one_seed_is_the_ordinary_percentile_bootstrap():
    replicates = np.random.default_rng(0).normal(size=(1, 500))
    assert np.array_equal(seed_and_image_replicates(replicates), replicates[0])
    assert percentile_interval(replicates[0]) == bootstrap.percentile_interval(replicates[0])
    summary = mean_over_seeds([0.3], replicates)
    assert (summary["ci_low"], summary["ci_high"]) == bootstrap.percentile_interval(replicates[0])[:2]
    assert summary["mean"] == 0.3 and summary["seed_sd"] is None


def test_the_interval_includes_seed_variation():
    # No test-set variation at all (every resample gives each seed's own value): a test-image bootstrap
    # would give a zero-width interval; the two-way bootstrap gives the spread of a mean of 4 seeds.
    seeds = np.array([0.60, 0.70, 0.80, 0.90])
    replicates = np.repeat(seeds[:, None], 2000, axis=1)
    summary = mean_over_seeds(list(seeds), replicates)
    assert summary["mean"] == pytest.approx(0.75)
    draws = np.random.default_rng(0).integers(0, 4, size=(2000, 4))
    expected = np.percentile(seeds[draws].mean(axis=1), [2.5, 97.5])
    assert (summary["ci_low"], summary["ci_high"]) == pytest.approx(tuple(expected))
    assert summary["ci_high"] - summary["ci_low"] > 0.1
    # Identical seeds: only the test-set variation is left, the same as one seed's bootstrap.
    noise = np.random.default_rng(1).normal(0.7, 0.05, size=2000)
    same = mean_over_seeds([0.7] * 3, np.tile(noise, (3, 1)))
    assert (same["ci_low"], same["ci_high"]) == pytest.approx(percentile_interval(noise)[:2])


def test_an_undefined_seed_makes_the_mean_undefined_and_nan_replicates_are_counted():
    replicates = np.array([[0.1, np.nan, 0.3], [0.2, 0.2, 0.2]])
    summary = mean_over_seeds([0.1, None], replicates)
    assert summary["mean"] is None and summary["n_seeds"] == 2 and summary["n_undefined"] >= 1


# -- a small finished run ------------------------------------------------------------------------------------
def _probabilities(rng, labels: np.ndarray, skill: float, never_mel: bool = False) -> np.ndarray:
    logits = rng.normal(size=(labels.size, len(CLASSES)))
    logits[np.arange(labels.size), labels] += skill
    if never_mel:
        logits[:, CLASSES.index("MEL")] = -10.0
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def build_run_store(root: Path, run_id: str = "small", seeds=(0, 1), never_mel: str = ""):
    """A folder store holding one finished run: A1 and A2, resnet18, ``seeds``; returns (store, record)."""
    from skingenbench.flows.report import build_report, write_report
    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(root)
    rng = np.random.default_rng(7)
    labels = np.array([i % len(CLASSES) for i in range(30)])  # six of each class
    items = [
        Item(
            key=f"images/ISIC_{i:07d}.png",
            sha256="0" * 64,
            label=CLASSES[y],
            lesion_id=f"L{i}",
            split="test",
            image_id=f"ISIC_{i:07d}",
        )
        for i, y in enumerate(labels)
    ] + [
        Item(
            key="images/train.png",
            sha256="0" * 64,
            label="NV",
            lesion_id="T",
            split="train",
            image_id="ISIC_train",
        )
    ]
    raw_manifest = Manifest(items=items, provenance=Provenance(stage="test")).to_json()
    store.put_bytes("data/manifest.json", raw_manifest)
    data = {
        "uri": store.uri("data/manifest.json"),
        "sha256": sha256_bytes(raw_manifest),
        "item_count": len(items),
    }
    ids = [item.image_id for item in items[:-1]]
    tests, results = {}, {}
    for pipeline, skill in (("A1", 1.0), ("A2", 1.6)):
        for seed in seeds:
            key = f"{pipeline}/resnet18/{seed}"
            probs = _probabilities(rng, labels, skill, never_mel == key)
            metrics = evaluate_predictions(labels, probs, CLASSES, "MEL", RESAMPLES, seed)
            result = {
                "run": {
                    "classifier": "resnet18",
                    "run_name": f"{pipeline}/resnet18/seed{seed}",
                    "seed": seed,
                },
                "split": "test",
                "checkpoint": {"uri": store.uri(f"models/{pipeline}{seed}.safetensors"), "sha256": "0" * 64},
                "data": data,
                **metrics,
                "predictions": [
                    {"image_id": i, "label": CLASSES[y], "probs": [float(v) for v in row]}
                    for i, y, row in zip(ids, labels, probs, strict=True)
                ],
            }
            prefix = f"classifier-test/{pipeline}-{seed}"
            store.put_bytes(f"{prefix}/result.json", json.dumps(result, indent=1).encode())
            store.put_bytes(f"{prefix}/predictions.csv", write_predictions_csv(ids, probs, CLASSES).encode())
            tests[key] = {
                "outputs": {
                    "result_json": store.uri(f"{prefix}/result.json"),
                    "predictions_csv": store.uri(f"{prefix}/predictions.csv"),
                },
                "result": {"n": len(ids)},
            }
            results[key] = result
    comparisons = {}
    for seed in seeds:
        baseline, candidate = results[f"A1/resnet18/{seed}"], results[f"A2/resnet18/{seed}"]
        document = {
            "a": "candidate",
            "b": "baseline",
            "differences": "candidate - baseline",
            "baseline": {
                "uri": tests[f"A1/resnet18/{seed}"]["outputs"]["result_json"],
                "run": baseline["run"],
            },
            "candidate": {
                "uri": tests[f"A2/resnet18/{seed}"]["outputs"]["result_json"],
                "run": candidate["run"],
            },
            **compare_pipelines(
                labels,
                [p["probs"] for p in candidate["predictions"]],
                [p["probs"] for p in baseline["predictions"]],
                ids,
                ids,
                CLASSES,
                "MEL",
                RESAMPLES,
                seed,
            ),
        }
        store.put_bytes(f"classifier-compare/{seed}/comparison.json", json.dumps(document, indent=1).encode())
        comparisons[f"A2/resnet18/{seed}"] = {
            "outputs": {"comparison_json": store.uri(f"classifier-compare/{seed}/comparison.json")},
            "result": {},
        }
    record = {
        "run_id": run_id,
        "grid": {
            "name": "small",
            "profile": "tiny",
            "data": {"source": "phantom"},
            "bootstrap_samples": RESAMPLES,
        },
        "notes": [],
        "imported": [],
        "split": {"manifest": data, "outputs": {}},
        "curation": {"counts": {"MEL": {"train": 0, "val": 0, "test": 6, "total": 6}}},
        "arms": {},
        "quality": {},
        "generators": {},
        "tests": tests,
        "comparisons": comparisons,
        "gradcams": {},
        "evaluations": {},
        "controllability": {},
        "endpoints": {},
        "services": {},
    }
    report = build_report(store, record)
    write_report(store, root.parent / "runs" / run_id, run_id, report)
    return store, record, report


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    return build_run_store(tmp_path_factory.mktemp("report") / "store", never_mel="A1/resnet18/1")


def test_every_paired_comparison_reaches_the_report_with_holm_adjusted_p_values(small_run):
    store, record, report = small_run
    rows = report.tables["paired_tests"]
    tests = {row["test"] for row in rows}
    assert tests == {
        "ROC-AUC (DeLong)",
        "melanoma F1 (paired bootstrap)",
        "balanced accuracy (paired bootstrap)",
        "accuracy (McNemar)",
    }
    assert len(rows) == 2 * 4  # two seeds x four tests, one pipeline pair
    document = json.loads(store.get_bytes("classifier-compare/0/comparison.json"))
    f1 = next(r for r in rows if r["seed"] == "0" and r["test"] == "melanoma F1 (paired bootstrap)")
    nested = document["paired_bootstrap"]["melanoma_f1"]  # one level below the top: the dropped numbers
    assert f1["difference"] == f"{nested['difference']:+.3f}"
    assert f1["95% CI"] == f"[{nested['ci_low']:+.3f}, {nested['ci_high']:+.3f}]"
    assert f1["p"] == f"{nested['p_value']:.4f}"
    raw = [r["p_value"] for r in report.results["statistics"]["comparisons"]]
    assert [r["p_holm"] for r in report.results["statistics"]["comparisons"]] == holm_adjust(raw)
    assert report.results["statistics"]["method"]["family_size"] == len(rows)
    assert "### A2 vs A1" in report.markdown and "| balanced accuracy (paired bootstrap) |" in report.markdown
    assert "Holm's (1979)" in report.markdown and "p (Holm)" in report.markdown


def test_cells_are_means_over_seeds_with_the_two_way_interval(small_run):
    store, record, report = small_run
    (row,) = [r for r in report.tables["global_metrics"] if r["pipeline"] == "A2"]
    assert row["classifier"] == "resnet18" and row["seeds"] == 2
    per_seed = [json.loads(store.get_bytes(f"classifier-test/A2-{s}/result.json")) for s in (0, 1)]
    mean = np.mean([r["global"]["macro_f1"]["value"] for r in per_seed])
    cell = report.results["statistics"]["cells"]["A2/resnet18"]["global"]["macro_f1"]
    assert cell["mean"] == pytest.approx(mean) and row["macro_f1"].startswith(f"{mean:.3f} [")
    assert cell["ci_low"] <= cell["mean"] <= cell["ci_high"] and cell["n_resamples"] == RESAMPLES
    assert "pigeonhole" in report.markdown and "Owen 2007" in report.markdown
    # The per-seed tables keep each test job's own interval.
    assert "| A2 | resnet18 0 |" in report.markdown and len(report.tables["global_metrics_per_seed"]) == 4


def test_a_haldane_corrected_dor_is_marked_and_explained(small_run):
    store, record, report = small_run
    (a1,) = [r for r in report.tables["melanoma_metrics"] if r["pipeline"] == "A1"]
    (a2,) = [r for r in report.tables["melanoma_metrics"] if r["pipeline"] == "A2"]
    assert a1["dor"].endswith("†") and not a2["dor"].endswith("†")  # A1 seed 1 never predicts MEL
    assert "Haldane-Anscombe correction" in report.markdown and "Glas et al. (2003)" in report.markdown


def test_the_statistics_modules_import_no_torch():
    import subprocess
    import sys

    code = (
        "import sys; import skingenbench.flows.statistics, skingenbench.flows.report_tables; "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
