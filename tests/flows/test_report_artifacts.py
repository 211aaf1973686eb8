"""Artifact section: with/without groups scored against scikit-learn on the same draws, unknown flags
left out, and A beside B in the rendered tables."""

from __future__ import annotations

import numpy as np
import pytest
from skingenbench.flows.report_artifacts import RESAMPLE_SEED, artifacts_section, cell_artifacts
from skingenbench.flows.report_strata import ARTIFACT_NAMES, ImageStrata
from sklearn.metrics import recall_score, roc_auc_score

CLASSES = ["NV", "BCC", "BKL", "MEL", "SCC"]
MEL = 3
RESAMPLES = 150


def _data(n: int = 240, seed: int = 1):
    rng = np.random.default_rng(seed)
    labels = rng.choice(5, size=n, p=[0.45, 0.15, 0.1, 0.25, 0.05])
    flags = {name: rng.random(n) < 0.4 for name in ARTIFACT_NAMES}
    unknown = rng.random(n) < 0.1  # the bubbles flag is unknown for some images (as on real data)
    strata = {
        f"I{i:04d}": ImageStrata(
            30.0,
            "measured",
            {
                name: (None if name == "bubbles" and unknown[i] else bool(flags[name][i]))
                for name in ARTIFACT_NAMES
            },
            "measured",
        )
        for i in range(n)
    }
    results = {}
    for pipeline, strength in (("A1", 2.0), ("B1", 1.0)):
        logits = rng.normal(size=(n, 5)) + strength * np.eye(5)[labels]
        probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        results[f"{pipeline}/resnet18/0"] = {
            "classes": CLASSES,
            "predictions": [
                {"image_id": f"I{i:04d}", "label": CLASSES[y], "probs": p.tolist()}
                for i, (y, p) in enumerate(zip(labels, probs, strict=True))
            ],
        }
    return results, strata, labels, flags, unknown


def test_with_and_without_groups_match_sklearn_on_the_same_draws():
    results, strata, labels, flags, unknown = _data()
    probs = np.array([p["probs"] for p in results["B1/resnet18/0"]["predictions"]])
    cell = cell_artifacts({"0": results["B1/resnet18/0"]}, strata, RESAMPLES)
    for j, name in enumerate(ARTIFACT_NAMES):
        known = ~unknown if name == "bubbles" else np.ones(len(labels), bool)
        for w, (side, members) in enumerate(
            (("with", flags[name] & known), ("without", ~flags[name] & known))
        ):
            r = cell[name][side]
            y, p = labels[members], probs[members]
            assert r.n == members.sum() and r.melanomas == (y == MEL).sum()
            pred = p.argmax(axis=1)
            assert r.point["sensitivity"] == pytest.approx(recall_score(y == MEL, pred == MEL))
            assert r.point["specificity"] == pytest.approx(recall_score(y != MEL, pred != MEL))
            assert r.point["roc_auc"] == pytest.approx(roc_auc_score(y == MEL, p[:, MEL]))
            draws = np.random.default_rng([RESAMPLE_SEED, j, w]).integers(0, len(y), size=(RESAMPLES, len(y)))
            aucs = [
                roc_auc_score(y[idx] == MEL, p[idx, MEL])
                for idx in draws
                if 0 < (y[idx] == MEL).sum() < len(idx)
            ]
            assert r.interval["roc_auc"] == pytest.approx(tuple(np.percentile(aucs, [2.5, 97.5])), abs=1e-9)
    assert cell["bubbles"]["with"].n + cell["bubbles"]["without"].n == (~unknown).sum()


def test_section_puts_a_and_b_side_by_side():
    results, strata, *_ = _data()
    md, tables = artifacts_section(results, strata, 40)
    text = "\n".join(md)
    assert "| artifact | training | classifier | A with | A without | B with | B without |" in text
    hair_rows = [line for line in md if line.startswith("| hair | 1 | resnet18 |")]
    assert len(hair_rows) == 3  # sensitivity, specificity, ROC-AUC
    assert all(cell.strip() not in ("", "—") for cell in hair_rows[0].split("|")[4:8])
    assert {r["arm"] for r in tables["artifact_strata"]} == {"A", "B"}


def test_no_predictions_says_so():
    md, tables = artifacts_section({}, {}, 10)
    assert tables == {} and "nothing to break down" in "\n".join(md)
