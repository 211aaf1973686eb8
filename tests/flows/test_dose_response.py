"""The dose–response statistics against independent computations (scikit-learn), and the section."""

from __future__ import annotations

import json

import numpy as np
import pytest
from skingenbench.flows.report_dose_response import (
    SPECIFICITY,
    dose_response_family,
    dose_response_section,
    sensitivity_at_specificity,
)
from skingenbench.flows.report_tables import IMAGE_RESAMPLE_SEED
from skingenbench.services.classification.core.bootstrap import resample_counts
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.platform.store import store_from_uri
from sklearn.metrics import f1_score, roc_auc_score, roc_curve

MEL = CLASSES.index("MEL")


def _sklearn_sensitivity(y, s, weights=None) -> float:
    fpr, tpr, _ = roc_curve(y, s, sample_weight=weights, drop_intermediate=False)
    return float(tpr[fpr <= 1 - SPECIFICITY + 1e-9].max())


def _predictions(n: int, skill: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """Labels and softmax probabilities whose melanoma column separates melanomas by ``skill``."""
    labels = rng.integers(0, len(CLASSES), n)
    labels[: n // 3] = MEL
    logits = rng.normal(size=(n, len(CLASSES)))
    logits[:, MEL] += skill * (labels == MEL) + 0.3
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return labels, np.round(probs, 3) / np.round(probs, 3).sum(axis=1, keepdims=True)  # ties in the scores


def _result(labels, probs) -> dict:
    return {
        "classes": list(CLASSES),
        "positive": "MEL",
        "predictions": [
            {"image_id": f"img{i}", "label": CLASSES[y], "probs": [float(v) for v in p]}
            for i, (y, p) in enumerate(zip(labels, probs, strict=True))
        ],
    }


def test_sensitivity_at_fixed_specificity_matches_sklearn_roc_curve():
    rng = np.random.default_rng(1)
    for _ in range(20):
        y = rng.random(60) < 0.3
        s = np.round(rng.random(60) + 0.4 * y, 1)  # many tied scores
        assert sensitivity_at_specificity(y, s)[0] == pytest.approx(_sklearn_sensitivity(y, s))
        counts = next(resample_counts(60, 5, int(rng.integers(1000))))
        got = sensitivity_at_specificity(y, s, counts)
        for row, value in zip(counts, got, strict=True):
            assert value == pytest.approx(_sklearn_sensitivity(y, s, row))
    assert np.isnan(sensitivity_at_specificity(np.zeros(5, bool), np.arange(5.0))[0])


def test_family_means_intervals_and_paired_test_match_an_independent_loop():
    rng = np.random.default_rng(0)
    labels, weak = _predictions(80, 0.5, rng)
    _, strong = _predictions(80, 3.0, np.random.default_rng(7))
    _, middle = _predictions(80, 1.5, np.random.default_rng(8))
    by_ratio = {
        0.0: {0: _result(labels, weak)},
        1.0: {0: _result(labels, middle)},
        2.0: {0: _result(labels, strong)},
    }
    family = dose_response_family(by_ratio, n_resamples=200)
    assert family["best"] == 2.0 and family["n"] == 80
    is_mel = labels == MEL
    draws = np.concatenate(list(resample_counts(80, 200, IMAGE_RESAMPLE_SEED)))

    def sk(probs, weights=None):
        pred = probs.argmax(axis=1) == MEL
        return {
            "f1": f1_score(is_mel, pred, sample_weight=weights, zero_division=0),
            "roc_auc": roc_auc_score(is_mel, probs[:, MEL], sample_weight=weights),
            "sensitivity_at_specificity": _sklearn_sensitivity(is_mel, probs[:, MEL], weights),
        }

    for ratio, probs in ((0.0, weak), (2.0, strong)):
        expected = sk(probs)
        replicates = {name: [] for name in expected}
        for row in draws:
            for name, value in sk(probs, row).items():
                replicates[name].append(value)
        for name, value in expected.items():
            entry = family["rows"][ratio][name]
            assert entry["mean"] == pytest.approx(value)
            # one seed: the two-way interval is the percentile interval over the image draws
            low, high = np.percentile(replicates[name], [2.5, 97.5])
            assert (entry["ci_low"], entry["ci_high"]) == (pytest.approx(low), pytest.approx(high))
    # The paired test of ratio 2 against ratio 0: the same draws for both, the centred bootstrap p.
    a = np.array([sk(strong, row)["roc_auc"] for row in draws])
    b = np.array([sk(weak, row)["roc_auc"] for row in draws])
    test = family["tests"][2.0]["roc_auc"]
    observed = sk(strong)["roc_auc"] - sk(weak)["roc_auc"]
    assert test["mean"] == pytest.approx(observed) and observed > 0.2
    assert (test["ci_low"], test["ci_high"]) == tuple(
        pytest.approx(v) for v in np.percentile(a - b, [2.5, 97.5])
    )
    expected_p = (1 + (np.abs((a - b) - observed) >= abs(observed) - 1e-12).sum()) / (len(draws) + 1)
    assert test["p_value"] == pytest.approx(expected_p) and test["p_value"] < 0.05
    # Holm over the two ratios: the larger of 2p_(1) and p_(2), as statsmodels' multipletests.
    from statsmodels.stats.multitest import multipletests

    ps = [family["tests"][r]["roc_auc"]["p_value"] for r in (1.0, 2.0)]
    holm = multipletests(ps, method="holm")[1]
    assert [family["tests"][r]["roc_auc"]["p_holm"] for r in (1.0, 2.0)] == pytest.approx(list(holm))


def test_two_seeds_pair_seed_with_seed_and_refuse_other_images():
    rng = np.random.default_rng(3)
    labels, p0 = _predictions(40, 0.5, rng)
    _, p1 = _predictions(40, 2.0, rng)
    by_ratio = {
        0.0: {0: _result(labels, p0), 1: _result(labels, p1)},
        1.0: {0: _result(labels, p1), 1: _result(labels, p0)},
    }
    family = dose_response_family(by_ratio, n_resamples=100)
    auc = [roc_auc_score(labels == MEL, p[:, MEL]) for p in (p0, p1)]
    assert family["rows"][0.0]["roc_auc"]["mean"] == pytest.approx(np.mean(auc))
    assert family["tests"][1.0]["roc_auc"]["mean"] == pytest.approx(0.0, abs=1e-12)  # (p1-p0)+(p0-p1)
    other = _result(labels, p0)
    other["predictions"][0]["image_id"] = "elsewhere"
    with pytest.raises(ValueError, match="different images"):
        dose_response_family({0.0: {0: _result(labels, p0)}, 1.0: {0: other}}, n_resamples=10)


def test_section_names_the_best_ratio_and_draws_the_figure(tmp_path):
    from skingenbench.flows.report import ReportContext

    store = store_from_uri(str(tmp_path / "store"))
    rng = np.random.default_rng(5)
    labels, _ = _predictions(60, 0.0, rng)
    rows = []
    for ratio, skill in ((0.0, 0.2), (0.5, 1.0), (1.0, 1.5), (2.0, 3.5)):
        for seed in (0, 1):
            _, probs = _predictions(60, skill, np.random.default_rng(int(ratio * 10) + seed))
            key = f"tests/{ratio}-{seed}.json"
            store.put_bytes(key, json.dumps(_result(labels, probs)).encode())
            rows.append(
                {
                    "pipeline": "A1" if ratio == 0 else f"A2@r{ratio:g}",
                    "arm": "basic",
                    "generator": "stylegan2_ada",
                    "classifier": "resnet18",
                    "seed": seed,
                    "ratio": ratio,
                    "synthetic_count": int(ratio * 10),
                    "test": {"outputs": {"result_json": store.uri(key)}},
                }
            )
    ctx = ReportContext(store, {"dose_response": rows, "grid": {"bootstrap_samples": 100}})
    section = dose_response_section(ctx)
    assert "**best ratio 2** (20 synthetic images" in section.body
    assert "against ratio 0 on the same 60 test images" in section.body
    assert len(ctx.tables["dose_response"]) == 4 and ctx.tables["dose_response"][3]["best"] == "★"
    assert [f.name for f in ctx.figures] == ["dose-response"] and ctx.figures[0].png.startswith(b"\x89PNG")
    assert dose_response_section(ReportContext(store, {"dose_response": []})) is None


def test_a_best_ratio_below_ratio_zero_says_no_amount_beat_real_data():
    from skingenbench.flows.report_dose_response import best_ratio_lines

    def metric(mean):
        return {"mean": mean, "low": mean - 0.1, "high": mean + 0.1}

    family = {
        "rows": {0.0: {"roc_auc": metric(0.8)}, 1.0: {"roc_auc": metric(0.6)}, 2.0: {"roc_auc": metric(0.7)}},
        "counts": {1.0: 10, 2.0: 20},
        "tests": {},
        "best": 2.0,
        "n": 30,
    }
    (line,) = best_ratio_lines({("basic", "ddpm", "resnet18"): family})
    assert "**best ratio 2**" in line and "below ratio 0's 0.800: no amount of synthetic data tried" in line
    family["rows"][0.0] = {"roc_auc": metric(0.65)}
    (line,) = best_ratio_lines({("basic", "ddpm", "resnet18"): family})
    assert "below ratio 0" not in line
