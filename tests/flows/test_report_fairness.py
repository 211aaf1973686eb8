"""Skin-tone section: per-bin metrics, bootstrap CIs and the best-worst gap against scikit-learn on the
same draws of images, the small-bin rule, and the strata joined from manifest items."""

from __future__ import annotations

import numpy as np
import pytest
from skingenbench.flows.report_fairness import RESAMPLE_SEED, cell_fairness, fairness_section, ita_bin
from skingenbench.flows.report_strata import MIN_IMAGES, MIN_MELANOMAS, ImageStrata, strata_from_items
from sklearn.metrics import f1_score, recall_score, roc_auc_score

CLASSES = ["NV", "BCC", "BKL", "MEL", "SCC"]
MEL = 3
RESAMPLES = 200


def _results(n: int = 260, seed: int = 0, seeds: int = 1):
    """Test predictions that carry some signal, ITA skewed light, and random artifacts."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(5, size=n, p=[0.45, 0.15, 0.1, 0.25, 0.05])
    ita = rng.choice([60.0, 48.0, 35.0, 20.0, -10.0, -40.0], size=n, p=[0.35, 0.3, 0.2, 0.1, 0.04, 0.01])
    results = {}
    for s in range(seeds):
        logits = rng.normal(size=(n, 5)) + 1.5 * np.eye(5)[labels]
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        predictions = [
            {"image_id": f"I{i:04d}", "label": CLASSES[y], "probs": p.tolist()}
            for i, (y, p) in enumerate(zip(labels, probs, strict=True))
        ]
        results[f"A1/resnet18/{s}"] = {"classes": CLASSES, "positive": "MEL", "predictions": predictions}
    strata = {
        f"I{i:04d}": ImageStrata(float(t), "phantom", {"hair": bool(rng.random() < 0.5)}, "phantom")
        for i, t in enumerate(ita)
    }
    return results, strata, labels, ita


def _seed_results(results):
    return {key.split("/")[2]: r for key, r in results.items()}


def _sk_metrics(y, probs):
    pred = probs.argmax(axis=1)
    return {
        "sensitivity": recall_score(y == MEL, pred == MEL, zero_division=np.nan),
        "specificity": recall_score(y != MEL, pred != MEL, zero_division=np.nan),
        "roc_auc": roc_auc_score(y == MEL, probs[:, MEL]) if 0 < (y == MEL).sum() < len(y) else np.nan,
        "macro_f1": f1_score(y, pred, average="macro"),
    }


def test_ita_bins_follow_the_del_bino_cut_offs():
    assert [ita_bin(v) for v in (56, 55, 41.5, 41, 28.1, 10.1, 10, -30, -30.1)] == [
        "very_light",
        "light",
        "light",
        "intermediate",
        "intermediate",
        "tan",
        "brown",
        "dark",
        "dark",
    ]
    assert ita_bin(None) is None


def test_bin_points_and_intervals_match_sklearn_on_the_same_draws():
    results, strata, labels, ita = _results()
    probs = np.array([p["probs"] for p in results["A1/resnet18/0"]["predictions"]])
    cell = cell_fairness(_seed_results(results), strata, RESAMPLES)
    names = ["very_light", "light", "intermediate", "tan", "brown", "dark"]
    for i, name in enumerate(names):
        members = np.array([ita_bin(v) == name for v in ita])
        r = cell["bins"][name]
        y, p = labels[members], probs[members]
        assert r.n == members.sum() and r.melanomas == (y == MEL).sum()
        assert r.small == (r.n < MIN_IMAGES or r.melanomas < MIN_MELANOMAS)
        if r.n == 0:
            continue
        expected = _sk_metrics(y, p)
        for metric in ("sensitivity", "specificity", "roc_auc", "macro_f1"):
            if np.isnan(expected[metric]):
                assert r.point[metric] is None
            else:
                assert r.point[metric] == pytest.approx(expected[metric], abs=1e-12)
        # The same resamples re-drawn here, each scored by scikit-learn.
        draws = np.random.default_rng([RESAMPLE_SEED, i]).integers(0, len(y), size=(RESAMPLES, len(y)))
        sens = []
        for idx in draws:
            yy, pp = y[idx], p[idx]
            if (yy == MEL).any():
                sens.append(recall_score(yy == MEL, pp.argmax(axis=1) == MEL))
        low, high = np.percentile(sens, [2.5, 97.5])
        assert r.interval["sensitivity"] == pytest.approx((low, high), abs=1e-12)
    # Small bins are flagged: the rare dark bin here cannot hold 30 images.
    assert cell["bins"]["dark"].small


def test_gap_is_best_minus_worst_of_large_bins_with_the_difference_ci():
    results, strata, labels, ita = _results(n=900, seed=3)
    cell = cell_fairness(_seed_results(results), strata, RESAMPLES)
    gap = cell["gaps"]["sensitivity"]
    large = {k: b for k, b in cell["bins"].items() if not b.small}
    assert len(large) >= 2 and gap["bins"] == len(large)
    values = {k: b.point["sensitivity"] for k, b in large.items()}
    assert gap["best"] == max(values, key=values.get) and gap["worst"] == min(values, key=values.get)
    assert gap["gap"] == pytest.approx(max(values.values()) - min(values.values()))
    diff = large[gap["best"]].replicates["sensitivity"] - large[gap["worst"]].replicates["sensitivity"]
    assert (gap["low"], gap["high"]) == pytest.approx(tuple(np.nanpercentile(diff, [2.5, 97.5])))
    assert gap["low"] <= gap["gap"] <= gap["high"]


def test_two_seeds_average_points_and_share_draws():
    results, strata, _, _ = _results(seeds=2)
    both = cell_fairness(_seed_results(results), strata, RESAMPLES)["bins"]["very_light"]
    one = [
        cell_fairness({"s": results[f"A1/resnet18/{s}"]}, strata, RESAMPLES)["bins"]["very_light"]
        for s in (0, 1)
    ]
    assert both.point["roc_auc"] == pytest.approx((one[0].point["roc_auc"] + one[1].point["roc_auc"]) / 2)
    np.testing.assert_allclose(
        both.replicates["roc_auc"], (one[0].replicates["roc_auc"] + one[1].replicates["roc_auc"]) / 2
    )


def test_section_renders_counts_cis_small_flags_and_gap():
    results, strata, _, _ = _results()
    md, tables = fairness_section(results, strata, 50)
    text = "\n".join(md)
    assert "Test images per bin" in text and "†" in text and "Best minus worst" in text
    assert "[" in text  # intervals are shown
    assert {r["bin"] for r in tables["skin_tone_bins"]} == {
        "very_light",
        "light",
        "intermediate",
        "tan",
        "brown",
        "dark",
    }


def test_strata_prefer_phantom_truth_and_fall_back_to_measurements():
    truth = [
        {
            "image_id": "a",
            "meta": {
                "ita": 50.0,
                "has_hair": 1,
                "has_ruler": 0,
                "has_ink": 0,
                "has_vignette": 1,
                "has_bubbles": 0,
            },
        },
        {"image_id": "b", "meta": {"age": 40}},
    ]
    measured = [
        {"image_id": "a", "meta": {"ita_degrees": 10.0}},
        {"image_id": "b", "meta": {"ita_degrees": 12.5, "artifact_hair": True, "artifact_ruler": False}},
    ]
    strata = strata_from_items(truth, measured)
    assert strata["a"].ita == 50.0 and strata["a"].ita_source == "phantom"
    assert strata["a"].artifacts == {
        "hair": True,
        "ruler": False,
        "ink": False,
        "marks": False,
        "dark_corners": True,
        "bubbles": False,
    }
    assert strata["b"].ita == 12.5 and strata["b"].ita_source == "measured"
    assert strata["b"].artifacts["hair"] is True and strata["b"].artifacts["bubbles"] is None


def test_report_section_joins_the_split_manifest_from_the_store(tmp_path):
    import json

    from skingenbench.flows.report import RESULT_SECTIONS, ReportContext
    from skingenbench.flows.report_fairness import report_section
    from skingenbench.services.platform.store import LocalFolderStore

    assert report_section in RESULT_SECTIONS
    results, strata, _, ita = _results(n=80)
    store = LocalFolderStore(tmp_path)
    items = [{"image_id": i, "meta": {"ita": s.ita}} for i, s in strata.items()]
    store.put_bytes("split/x/manifest.json", json.dumps({"items": items}).encode())
    run = {
        "grid": {"bootstrap_samples": 30},
        "split": {"manifest": {"uri": store.uri("split/x/manifest.json")}},
    }
    ctx = ReportContext(store, run, results=results)
    section = report_section(ctx)
    rows = ctx.tables["skin_tone_bins"]
    assert section.key == "skin-tone" and "| very_light |" in section.body
    assert sum(r["images"] for r in rows) == len(ita)


def test_load_strata_fills_what_the_basic_arm_lacks_from_the_advanced_arm(tmp_path):
    import json

    from skingenbench.flows.report_strata import load_strata
    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(tmp_path)
    basic = [{"image_id": "a", "meta": {"ita_degrees": 20.0, "artifact_hair": False, "artifact_marks": None}}]
    advanced = [
        {"image_id": "a", "meta": {"ita_degrees": 25.0, "artifact_hair": True, "artifact_marks": True}}
    ]
    run = {"arms": {}}
    for arm, items in (("basic", basic), ("advanced", advanced)):
        store.put_bytes(f"{arm}/manifest.json", json.dumps({"items": items}).encode())
        run["arms"][arm] = {"all": {"manifest": {"uri": store.uri(f"{arm}/manifest.json")}}}
    strata = load_strata(store, run)["a"]
    assert strata.ita == 20.0  # the basic arm's, measured before any cleaning
    assert strata.artifacts["hair"] is False and strata.artifacts["marks"] is True
