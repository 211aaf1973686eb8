from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skingenbench.services.classification.core.bootstrap import evaluate_predictions
from skingenbench.services.classification.core.metrics import (
    average_precision,
    batched_metrics,
    brier_score,
    confusion_matrix,
    diagnostic_odds_ratio,
    global_metrics,
    melanoma_metrics,
    multiclass_brier_score,
    per_class_report,
    roc_auc,
    validate_predictions,
)
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.errors import InvalidArgument
from sklearn import metrics as sk

FEW = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MEL = CLASSES.index("MEL")
C = len(CLASSES)


def random_predictions(seed: int, n: int, *, tied: bool = False, all_classes: bool = True):
    """Labels with every class present (optionally) and probabilities correlated with them."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, size=n)
    if all_classes:
        y[:C] = np.arange(C)
    concentration = np.ones((n, C))
    concentration[np.arange(n), y] += rng.uniform(0.0, 4.0)
    probs = np.stack([rng.dirichlet(a) for a in concentration])
    if tied:  # probabilities on a grid of tenths: many ties, rows still sum to exactly 1
        probs = np.stack([rng.multinomial(10, p) / 10 for p in probs])
    return y, probs


def sklearn_quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


@FEW
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(C, 300), tied=st.booleans())
def test_every_metric_equals_scikit_learn(seed, n, tied):
    y, probs = random_predictions(seed, n, tied=tied)
    pred = probs.argmax(axis=1)
    ours = global_metrics(y, probs)
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert ours["macro_f1"] == pytest.approx(sk.f1_score(y, pred, average="macro", zero_division=0))
    assert ours["balanced_accuracy"] == pytest.approx(sklearn_quiet(sk.balanced_accuracy_score, y, pred))
    assert ours["mcc"] == pytest.approx(sk.matthews_corrcoef(y, pred), abs=1e-12)
    assert ours["roc_auc"] == pytest.approx(sk.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    assert ours["brier_multiclass"] == pytest.approx(sk.brier_score_loss(y, probs, labels=list(range(C))))
    assert ours["brier"] == pytest.approx(np.mean((probs - np.eye(C)[y]) ** 2))

    mel = melanoma_metrics(y, probs)
    is_mel, said_mel = y == MEL, pred == MEL
    assert mel["f1"] == pytest.approx(sk.f1_score(is_mel, said_mel, zero_division=0))
    assert mel["sensitivity"] == pytest.approx(sk.recall_score(is_mel, said_mel))
    assert mel["specificity"] == pytest.approx(sk.recall_score(~is_mel, ~said_mel))
    assert mel["precision"] == pytest.approx(sk.precision_score(is_mel, said_mel, zero_division=0))
    assert mel["roc_auc"] == pytest.approx(sk.roc_auc_score(is_mel, probs[:, MEL]))
    assert mel["pr_auc"] == pytest.approx(sk.average_precision_score(is_mel, probs[:, MEL]))

    report = per_class_report(y, probs)
    precision, recall, f1, support = sk.precision_recall_fscore_support(
        y, pred, labels=range(C), zero_division=0
    )
    for k, name in enumerate(CLASSES):
        assert report[name]["precision"] == pytest.approx(precision[k])
        assert report[name]["recall"] == pytest.approx(recall[k])
        assert report[name]["support"] == support[k]
        if report[name]["f1"] is not None:
            assert report[name]["f1"] == pytest.approx(f1[k])
    assert (confusion_matrix(y, pred, C) == sk.confusion_matrix(y, pred, labels=range(C))).all()


@FEW
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 120), tied=st.booleans())
def test_weighted_ranking_metrics_equal_scikit_learn_with_sample_weight(seed, n, tied):
    y, probs = random_predictions(seed, n, tied=tied, all_classes=False)
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=4).astype(float)  # four bootstrap resamples
    scores, is_pos = probs[:, MEL], y == MEL
    aucs, aps = roc_auc(scores, is_pos, weights), average_precision(scores, is_pos, weights)
    conf = confusion_matrix(y, probs.argmax(axis=1), C, weights)
    for b, w in enumerate(weights):
        assert conf[b] == pytest.approx(
            sk.confusion_matrix(y, probs.argmax(axis=1), labels=range(C), sample_weight=w)
        )
        kept = w > 0
        if is_pos[kept].all() or not is_pos[kept].any():
            assert np.isnan(aucs[b])
            continue
        assert aucs[b] == pytest.approx(sk.roc_auc_score(is_pos, scores, sample_weight=w))
        assert aps[b] == pytest.approx(sk.average_precision_score(is_pos, scores, sample_weight=w))


def test_weights_reproduce_explicitly_resampled_arrays():
    y, probs = random_predictions(3, 400)
    rng = np.random.default_rng(0)
    drawn = rng.integers(0, len(y), size=len(y))
    counts = np.bincount(drawn, minlength=len(y)).astype(float)
    batched = batched_metrics(y, probs, MEL, counts[None, :])
    explicit = batched_metrics(y[drawn], probs[drawn], MEL)
    for section in ("global", "melanoma"):
        for name, values in explicit[section].items():
            assert batched[section][name][0] == pytest.approx(values[0]), (section, name)


def test_specificity_and_dor_on_a_hand_computed_table():
    # 10 melanomas: 8 called MEL, 2 called NV; 90 others: 5 called MEL, 85 called correctly.
    y = np.array([MEL] * 10 + [0] * 50 + [1] * 40)
    said = np.array([MEL] * 8 + [0] * 2 + [MEL] * 5 + [0] * 45 + [1] * 40)
    probs = np.full((100, C), 0.1)
    probs[np.arange(100), said] = 0.6
    mel = melanoma_metrics(y, probs)
    assert mel["sensitivity"] == pytest.approx(0.8)
    assert mel["specificity"] == pytest.approx(85 / 90)
    assert mel["precision"] == pytest.approx(8 / 13)
    assert mel["f1"] == pytest.approx(2 * 8 / (2 * 8 + 5 + 2))
    assert mel["dor"] == pytest.approx((0.8 / 0.2) / ((5 / 90) / (85 / 90)))
    assert mel["dor"] == pytest.approx(68.0)
    assert mel["dor_corrected"] is False


def test_dor_zero_cell_uses_haldane_anscombe_correction_and_flags_it():
    dor, corrected = diagnostic_odds_ratio(tp=10, fp=0, fn=2, tn=30)  # specificity = 1
    assert corrected
    assert dor == pytest.approx(10.5 * 30.5 / (0.5 * 2.5))
    dor, corrected = diagnostic_odds_ratio(tp=10, fp=3, fn=0, tn=30)  # sensitivity = 1
    assert corrected and dor == pytest.approx(10.5 * 30.5 / (3.5 * 0.5))
    dor, corrected = diagnostic_odds_ratio(tp=0, fp=0, fn=5, tn=10)  # no positives predicted
    assert corrected and dor == pytest.approx(10.5 / 5.5)
    dor, corrected = diagnostic_odds_ratio(tp=0, fp=2, fn=0, tn=10)  # no positives at all: undefined
    assert np.isnan(dor) and not corrected


def test_brier_definitions_on_a_hand_example():
    y = np.array([0, 1])
    probs = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0]])
    # per image: 0.09 + 0.04 + 0.01 = 0.14 and 0.25 + 0.25 + 0 = 0.5
    assert multiclass_brier_score(y, probs) == pytest.approx(0.32)
    assert brier_score(y, probs) == pytest.approx(0.32 / 3)
    assert global_metrics(y, probs, classes=("a", "b", "c"))["brier"] == pytest.approx(0.32 / 3)


@FEW
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(C, 200))
def test_sum_form_brier_is_at_least_half_the_error_rate(seed, n):
    """The bound that rules the sum form out for the reference table (Brier 0.0302 at accuracy 0.8985)."""
    y, probs = random_predictions(seed, n)
    error_rate = np.mean(probs.argmax(axis=1) != y)
    assert multiclass_brier_score(y, probs) >= 0.5 * error_rate - 1e-12
    assert brier_score(y, probs) == pytest.approx(multiclass_brier_score(y, probs) / C)


@pytest.mark.filterwarnings("error")
def test_class_absent_from_the_test_set_is_skipped_and_recorded():
    y, probs = random_predictions(5, 300)
    keep = y != CLASSES.index("SCC")
    y, probs = y[keep], probs[keep]
    ours = global_metrics(y, probs)
    present = [k for k in range(C) if k != CLASSES.index("SCC")]
    expected_auc = np.mean([sk.roc_auc_score(y == k, probs[:, k]) for k in present])
    assert ours["roc_auc"] == pytest.approx(expected_auc)
    assert ours["balanced_accuracy"] == pytest.approx(
        sklearn_quiet(sk.balanced_accuracy_score, y, probs.argmax(1))
    )
    result = evaluate_predictions(y, probs, n_bootstrap=50)
    assert any("SCC" in note and "absent" in note for note in result["notes"])
    assert result["per_class"]["SCC"]["recall"] is None
    json.dumps(result, allow_nan=False)


@pytest.mark.filterwarnings("error")
def test_all_predictions_one_class():
    y, _ = random_predictions(7, 200)
    probs = np.tile([0.6, 0.1, 0.1, 0.1, 0.1], (len(y), 1))  # always NV
    ours = global_metrics(y, probs)
    assert ours["accuracy"] == pytest.approx(np.mean(y == 0))
    assert ours["mcc"] == 0.0
    assert ours["macro_f1"] == pytest.approx(
        sk.f1_score(y, np.zeros_like(y), average="macro", zero_division=0)
    )
    assert ours["roc_auc"] == pytest.approx(0.5)  # constant scores rank nothing
    mel = melanoma_metrics(y, probs)
    assert mel["sensitivity"] == 0.0 and mel["precision"] == 0.0 and mel["f1"] == 0.0
    assert mel["specificity"] == 1.0
    fn, tn = np.sum(y == MEL), np.sum(y != MEL)
    assert mel["dor_corrected"] and mel["dor"] == pytest.approx((tn + 0.5) / (fn + 0.5))
    result = evaluate_predictions(y, probs, n_bootstrap=30)
    assert any("MCC is 0" in note for note in result["notes"])
    assert any("Haldane" in note for note in result["notes"])
    json.dumps(result, allow_nan=False)


@pytest.mark.filterwarnings("error")
def test_perfect_classifier_has_a_corrected_finite_dor():
    y, _ = random_predictions(8, 100)
    probs = np.eye(C)[y] * 0.95 + 0.01
    mel = melanoma_metrics(y, probs)
    assert mel["sensitivity"] == mel["specificity"] == mel["roc_auc"] == mel["pr_auc"] == 1.0
    tp, tn = np.sum(y == MEL), np.sum(y != MEL)
    assert mel["dor_corrected"] and mel["dor"] == pytest.approx((tp + 0.5) * (tn + 0.5) / 0.25)


@pytest.mark.filterwarnings("error")
def test_no_melanoma_in_the_test_set_leaves_its_metrics_undefined():
    y, probs = random_predictions(9, 150)
    keep = y != MEL
    result = evaluate_predictions(y[keep], probs[keep], n_bootstrap=20)
    for name in ("sensitivity", "roc_auc", "pr_auc", "dor"):
        assert result["melanoma"][name] == {"value": None, "ci_low": None, "ci_high": None}
    assert result["melanoma"]["specificity"]["value"] is not None
    assert any("undefined" in note for note in result["notes"])
    json.dumps(result, allow_nan=False)


@pytest.mark.filterwarnings("error")
def test_single_class_test_set_has_no_roc_auc_but_no_crash():
    y = np.zeros(20, dtype=int)
    probs = np.tile([0.5, 0.2, 0.1, 0.1, 0.1], (20, 1))
    ours = global_metrics(y, probs)
    assert ours["roc_auc"] is None
    assert ours["accuracy"] == 1.0 and ours["balanced_accuracy"] == 1.0 and ours["mcc"] == 0.0


@pytest.mark.parametrize(
    ("y", "probs", "message"),
    [
        ([0, 1], np.full((3, C), 0.2), "y_true"),
        ([0, 1], np.full((2, 4), 0.25), "shape"),
        ([0, 5], np.full((2, C), 0.2), "labels"),
        ([0, -1], np.full((2, C), 0.2), "labels"),
        ([0.5, 1], np.full((2, C), 0.2), "integer"),
        ([0, 1], np.full((2, C), 0.3), "sum to 1"),
        ([0, 1], np.array([[2.0, -1.0, 0, 0, 0]] * 2), "within"),
        ([0, 1], np.array([[np.nan, 1.0, 0, 0, 0]] * 2), "finite"),
        ([], np.zeros((0, C)), "N = 0"),
    ],
)
def test_bad_inputs_are_refused(y, probs, message):
    with pytest.raises(InvalidArgument, match=message):
        validate_predictions(y, probs)


def test_unknown_positive_class_is_refused():
    y, probs = random_predictions(1, 20)
    with pytest.raises(InvalidArgument, match="positive class"):
        melanoma_metrics(y, probs, positive="AK")
