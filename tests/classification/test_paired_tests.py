from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats
from skingenbench.services.classification.core.bootstrap import resample_counts
from skingenbench.services.classification.core.metrics import roc_auc
from skingenbench.services.classification.core.paired_tests import (
    compare_pipelines,
    delong_covariance,
    delong_test,
    mcnemar_test,
    paired_bootstrap,
    require_same_images,
)
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.errors import InvalidArgument
from sklearn.metrics import roc_auc_score

FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
C = len(CLASSES)
MEL = CLASSES.index("MEL")


def predictions(n: int, separation: float, seed: int, y=None):
    rng = np.random.default_rng(seed)
    if y is None:
        y = rng.choice(C, size=n, p=[0.5, 0.2, 0.12, 0.13, 0.05])
    logits = rng.normal(size=(n, C))
    logits[np.arange(n), y] += separation
    probs = np.exp(logits)
    return y, probs / probs.sum(axis=1, keepdims=True)


def naive_delong(is_positive, scores):
    """DeLong 1988 straight from the definition: O(m·n) structural components."""
    covariances, aucs = [], []
    v10s, v01s = [], []
    for row in np.atleast_2d(scores):
        x, y = row[is_positive], row[~is_positive]
        psi = (x[:, None] > y[None, :]) + 0.5 * (x[:, None] == y[None, :])
        v10s.append(psi.mean(axis=1))
        v01s.append(psi.mean(axis=0))
        aucs.append(psi.mean())
    m, n = len(v10s[0]), len(v01s[0])
    covariances = np.atleast_2d(np.cov(np.array(v10s))) / m + np.atleast_2d(np.cov(np.array(v01s))) / n
    return np.array(aucs), covariances


def test_delong_variance_on_a_hand_example():
    # positives 0.9, 0.6; negatives 0.7, 0.2. V10 = (1, 1/2), V01 = (1/2, 1): AUC = 3/4,
    # S10 = S01 = var(1, 1/2) = 1/8, Var(AUC) = S10/m + S01/n = 1/16 + 1/16.
    aucs, cov = delong_covariance(np.array([True, True, False, False]), np.array([0.9, 0.6, 0.7, 0.2]))
    assert aucs[0] == pytest.approx(0.75)
    assert cov[0, 0] == pytest.approx(0.125)


@FEW
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(4, 80), grid=st.sampled_from([None, 5, 20]))
def test_fast_delong_equals_the_definition_with_ties(seed, n, grid):
    rng = np.random.default_rng(seed)
    is_positive = rng.random(n) < 0.4
    is_positive[:2], is_positive[2:4] = True, False
    scores = rng.random((3, n)) + is_positive * rng.uniform(0, 1, size=(3, 1))
    if grid:
        scores = np.round(scores * grid) / grid
    aucs, cov = delong_covariance(is_positive, scores)
    expected_aucs, expected_cov = naive_delong(is_positive, scores)
    assert aucs == pytest.approx(expected_aucs)
    assert cov == pytest.approx(expected_cov, abs=1e-12)
    assert aucs[0] == pytest.approx(roc_auc_score(is_positive, scores[0]))


def test_identical_predictions_are_not_different():
    y, probs = predictions(300, 2.0, seed=0)
    delong = delong_test(y == MEL, probs[:, MEL], probs[:, MEL])
    assert delong["z"] == 0.0 and delong["p_value"] == 1.0 and delong["difference"] == 0.0
    boot = paired_bootstrap(y, probs, probs, n_resamples=200)
    for entry in boot.values():
        assert entry["difference"] == 0.0 and entry["p_value"] == 1.0
        assert entry["ci_low"] == entry["ci_high"] == 0.0
    assert mcnemar_test(probs.argmax(1) == y, probs.argmax(1) == y)["p_value"] == 1.0


def test_a_clearly_better_model_is_detected_by_every_test():
    y, good = predictions(500, 3.0, seed=1)
    _, poor = predictions(500, 0.7, seed=2, y=y)
    result = compare_pipelines(y, good, poor, n_bootstrap=300, seed=0)
    assert result["delong_roc_auc"]["difference"] > 0.1 and result["delong_roc_auc"]["p_value"] < 1e-6
    for entry in result["paired_bootstrap"].values():
        assert entry["difference"] > 0 and entry["ci_low"] > 0 and entry["p_value"] < 0.01
    assert result["mcnemar"]["only_a_correct"] > result["mcnemar"]["only_b_correct"]
    assert result["mcnemar"]["p_value"] < 1e-6 and result["mcnemar"]["method"].startswith("chi-square")
    json.dumps(result, allow_nan=False)


def test_delong_agrees_with_a_bootstrap_of_the_auc_difference():
    y, a = predictions(1500, 2.0, seed=3)
    _, b = predictions(1500, 1.6, seed=4, y=y)
    is_mel = y == MEL
    delong = delong_test(is_mel, a[:, MEL], b[:, MEL])
    counts = np.concatenate(list(resample_counts(len(y), 600, seed=0)))
    differences = roc_auc(a[:, MEL], is_mel, counts) - roc_auc(b[:, MEL], is_mel, counts)
    assert np.std(differences) == pytest.approx(delong["std_error"], rel=0.2)
    assert delong["difference"] == pytest.approx(
        roc_auc_score(is_mel, a[:, MEL]) - roc_auc_score(is_mel, b[:, MEL])
    )
    assert delong["ci_low"] < delong["difference"] < delong["ci_high"]


def test_paired_bootstrap_interval_contains_the_observed_difference():
    y, a = predictions(400, 1.8, seed=5)
    _, b = predictions(400, 1.5, seed=6, y=y)
    result = paired_bootstrap(y, a, b, n_resamples=400, seed=1)
    for name, entry in result.items():
        assert entry["ci_low"] <= entry["difference"] <= entry["ci_high"], name
        assert entry["difference"] == pytest.approx(entry["a"] - entry["b"])
        assert 0 < entry["p_value"] <= 1 and entry["n_undefined"] == 0


def test_mcnemar_exact_on_a_hand_example():
    # 10 images only A gets right, 2 only B, 50 both, 8 neither.
    correct_a = np.array([1] * 10 + [0] * 2 + [1] * 50 + [0] * 8, dtype=bool)
    correct_b = np.array([0] * 10 + [1] * 2 + [1] * 50 + [0] * 8, dtype=bool)
    result = mcnemar_test(correct_a, correct_b)
    assert (result["only_a_correct"], result["only_b_correct"]) == (10, 2)
    assert result["method"] == "exact binomial"
    assert result["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 2**12)  # 2 · P(Binom(12, ½) <= 2)


def test_mcnemar_chi_square_with_continuity_correction():
    correct_a = np.array([1] * 30 + [0] * 10 + [1] * 5, dtype=bool)
    correct_b = np.array([0] * 30 + [1] * 10 + [1] * 5, dtype=bool)
    result = mcnemar_test(correct_a, correct_b)
    assert result["statistic"] == pytest.approx((20 - 1) ** 2 / 40)
    assert result["p_value"] == pytest.approx(stats.chi2.sf(9.025, 1))
    forced = mcnemar_test(correct_a, correct_b, exact=True)
    assert forced["p_value"] == pytest.approx(stats.binomtest(10, 40, 0.5).pvalue)


def test_mismatched_image_ids_are_refused():
    y, a = predictions(4, 2.0, seed=7)
    _, b = predictions(4, 2.0, seed=8, y=y)
    ids = ["ISIC_1", "ISIC_2", "ISIC_3", "ISIC_4"]
    require_same_images(ids, list(ids))
    with pytest.raises(InvalidArgument, match="position 1"):
        compare_pipelines(y, a, b, ids_a=ids, ids_b=["ISIC_1", "ISIC_3", "ISIC_2", "ISIC_4"])
    with pytest.raises(InvalidArgument, match="image counts"):
        require_same_images(ids, ids[:3])
    with pytest.raises(InvalidArgument, match="repeat"):
        require_same_images(["a", "a"], ["a", "a"])
    with pytest.raises(InvalidArgument, match="image ids for"):
        compare_pipelines(y, a, b, ids_a=ids[:3], ids_b=ids[:3])
    with pytest.raises(InvalidArgument):
        compare_pipelines(y, a, b[:3])


def test_too_few_melanomas_skip_delong_with_a_note():
    y, a = predictions(40, 2.0, seed=9)
    y[y == MEL] = 0
    y[0] = MEL
    _, b = predictions(40, 2.0, seed=10, y=y)
    result = compare_pipelines(y, a, b, n_bootstrap=50)
    assert result["delong_roc_auc"] is None and "DeLong" in result["notes"][0]
    json.dumps(result, allow_nan=False)
