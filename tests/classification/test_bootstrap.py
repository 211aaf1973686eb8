from __future__ import annotations

import json
import time

import numpy as np
import pytest
from skingenbench.services.classification.core.bootstrap import (
    bootstrap_replicates,
    evaluate_predictions,
    percentile_interval,
    resample_counts,
)
from skingenbench.services.classification.core.metrics import GLOBAL_METRICS, ONE_VS_REST_METRICS
from skingenbench.services.classification.core.report_tables import (
    GLOBAL_COLUMNS,
    MELANOMA_COLUMNS,
    format_cell,
    global_rows,
    global_table,
    melanoma_rows,
    melanoma_table,
)
from skingenbench.services.core.classes import CLASSES, REFERENCE_PROPORTIONS
from skingenbench.services.core.errors import InvalidArgument

C = len(CLASSES)


def realistic_predictions(n: int, seed: int = 0, separation: float = 2.5):
    """Reference class shares; accuracy ~0.87, ROC-AUC ~0.98, DOR ~300 (near the reference's A2 rows)."""
    rng = np.random.default_rng(seed)
    y = rng.choice(C, size=n, p=[REFERENCE_PROPORTIONS[c] for c in CLASSES])
    logits = rng.normal(size=(n, C))
    logits[np.arange(n), y] += separation
    probs = np.exp(logits)
    return y, probs / probs.sum(axis=1, keepdims=True)


def entries(result):
    for section, names in (("global", GLOBAL_METRICS), ("melanoma", ONE_VS_REST_METRICS)):
        for name in names:
            yield f"{section}.{name}", result[section][name]


def test_resample_counts_are_draws_with_replacement():
    chunks = list(resample_counts(50, 7, seed=1))
    counts = np.concatenate(chunks)
    assert counts.shape == (7, 50)
    assert (counts.sum(axis=1) == 50).all() and (counts >= 0).all()
    assert not (counts == 1).all()  # not the identity
    again = np.concatenate(list(resample_counts(50, 7, seed=1)))
    assert (counts == again).all()
    assert not (counts == np.concatenate(list(resample_counts(50, 7, seed=2)))).all()


def test_percentile_interval_drops_and_counts_undefined_replicates():
    low, high, undefined = percentile_interval(np.r_[np.arange(101.0), np.nan, np.inf])
    assert (low, high, undefined) == (pytest.approx(2.5), pytest.approx(97.5), 2)
    assert percentile_interval([np.nan, np.nan]) == (None, None, 2)
    with pytest.raises(InvalidArgument):
        percentile_interval([1.0], level=1.5)


def test_bootstrap_replicates_concatenate_nested_statistics_over_chunks():
    values = np.arange(10.0)
    result = bootstrap_replicates(lambda w: {"a": {"mean": w @ values / 10}}, 10, n_resamples=25, seed=0)
    assert result["a"]["mean"].shape == (25,)
    assert abs(result["a"]["mean"].mean() - 4.5) < 0.5


def test_intervals_contain_the_point_estimate_and_the_result_is_json():
    y, probs = realistic_predictions(600)
    result = evaluate_predictions(y, probs, n_bootstrap=300, seed=0)
    for name, entry in entries(result):
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], name
    assert result["n"] == 600 and result["bootstrap"]["n_resamples"] == 300
    assert np.sum(result["confusion_matrix"]) == 600
    assert set(result["per_class"]) == set(CLASSES)
    json.dumps(result, allow_nan=False)


def test_intervals_narrow_with_more_test_images():
    # a weaker classifier than the reference's: near AUC = 1 a small sample's interval hits the ceiling
    y, probs = realistic_predictions(2000, seed=1, separation=1.5)
    small = evaluate_predictions(y[:200], probs[:200], n_bootstrap=300, seed=0)
    large = evaluate_predictions(y, probs, n_bootstrap=300, seed=0)
    for (name, s), (_, big) in zip(entries(small), entries(large), strict=True):
        # sqrt(10) fewer in width expected; demand at least 1.6x narrower
        assert (big["ci_high"] - big["ci_low"]) * 1.6 < s["ci_high"] - s["ci_low"], name


def test_same_seed_same_intervals_other_seed_other_intervals():
    y, probs = realistic_predictions(300)
    first = evaluate_predictions(y, probs, n_bootstrap=100, seed=4)
    assert first == evaluate_predictions(y, probs, n_bootstrap=100, seed=4)
    assert (
        first["global"]["accuracy"]
        != evaluate_predictions(y, probs, n_bootstrap=100, seed=5)["global"]["accuracy"]
    )


def test_zero_resamples_gives_point_estimates_only():
    result = evaluate_predictions(*realistic_predictions(100), n_bootstrap=0)
    assert result["global"]["accuracy"]["value"] is not None
    assert result["global"]["accuracy"]["ci_low"] is None
    with pytest.raises(InvalidArgument):
        evaluate_predictions(*realistic_predictions(100), n_bootstrap=-1)


def test_resamples_where_a_metric_is_undefined_are_dropped_and_counted():
    y, probs = realistic_predictions(60, seed=2)
    y[y == CLASSES.index("SCC")] = 0
    y[0] = CLASSES.index("SCC")  # one SCC image: about 37 % of resamples miss it
    result = evaluate_predictions(y, probs, n_bootstrap=200, seed=0)
    undefined = result["bootstrap"]["undefined"]["global"]
    assert 30 < undefined["roc_auc"] < 120
    assert undefined["balanced_accuracy"] == undefined["roc_auc"]
    assert any("roc_auc" in note and "dropped" in note for note in result["notes"])
    assert result["global"]["roc_auc"]["ci_low"] is not None


def test_one_thousand_resamples_of_two_thousand_images_take_seconds():
    y, probs = realistic_predictions(2000)
    start = time.perf_counter()
    evaluate_predictions(y, probs, n_bootstrap=1000, seed=0)
    assert time.perf_counter() - start < 15.0


def test_tables_follow_the_reference_column_order_and_cell_format():
    results = {
        "ViT-B/16": evaluate_predictions(*realistic_predictions(300), n_bootstrap=50),
        "always NV": evaluate_predictions(
            realistic_predictions(300)[0], np.tile([0.6, 0.1, 0.1, 0.1, 0.1], (300, 1)), n_bootstrap=50
        ),
    }
    table = global_table(results).splitlines()
    assert table[0] == "| model | macro-F1 | balanced acc | MCC | ROC-AUC | accuracy | Brier |"
    assert table[2].startswith("| ViT-B/16 | ") and len(table) == 4
    cell = table[2].split(" | ")[1]
    entry = results["ViT-B/16"]["global"]["macro_f1"]
    assert cell == f"{entry['value']:.4f} [{entry['ci_low']:.4f}, {entry['ci_high']:.4f}]"
    melanoma = melanoma_table(results).splitlines()
    assert melanoma[0] == "| model | F1 | sensitivity | specificity | precision | ROC-AUC | PR-AUC | DOR |"
    assert melanoma[3].endswith("\u2020 |") and "Haldane" in melanoma[-1]
    rows = global_rows(results) + melanoma_rows(results)
    assert [key for key, _ in GLOBAL_COLUMNS] == list(rows[0])[1:]
    assert [key for key, _ in MELANOMA_COLUMNS] == list(rows[2])[1:-1]
    json.dumps(rows, allow_nan=False)


def test_cells_without_interval_or_value():
    assert format_cell({"value": 0.5, "ci_low": None, "ci_high": None}) == "0.5000"
    assert format_cell({"value": None, "ci_low": None, "ci_high": None}) == "n/a"
    assert (
        format_cell({"value": 288.94, "ci_low": 150.0, "ci_high": 400.126}, digits=2)
        == "288.94 [150.00, 400.13]"
    )


def test_tables_refuse_results_of_another_shape():
    with pytest.raises(InvalidArgument, match="section"):
        global_table({"model": {"accuracy": 0.9}})
