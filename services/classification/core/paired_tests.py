"""Paired comparison of two pipelines evaluated on the same test images.

- ROC-AUC: DeLong's test (DeLong, DeLong & Clarke-Pearson 1988, Biometrics 44:837) for two correlated
  AUCs, with the midrank algorithm of Sun & Xu (2014, IEEE Signal Processing Letters 21:1389) that
  computes the structural components in O(N log N) instead of O(m·n).
- F1 of the positive class and balanced accuracy: a paired bootstrap (Efron & Tibshirani 1993):
  both pipelines are scored on the *same* resamples, the difference has a percentile interval and a
  two-sided p-value from the resampled differences centred on the observed one (Hall & Wilson 1991),
  with the +1 correction that keeps p > 0 (Davison & Hinkley 1997, eq. 4.11).
- Correctness: McNemar's test (McNemar 1947) on the discordant images; the exact binomial test when
  there are fewer than 25 of them, else the chi-square with Edwards' (1948) continuity correction.

Inputs must be the same images in the same order: image ids, when given, are compared and any
mismatch is refused rather than silently realigned.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import stats
from skingenbench.services.classification.core.bootstrap import (
    DEFAULT_LEVEL,
    DEFAULT_RESAMPLES,
    bootstrap_replicates,
    percentile_interval,
)
from skingenbench.services.classification.core.metrics import (
    batched_metrics,
    positive_index,
    validate_predictions,
)
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.errors import InvalidArgument

EXACT_MCNEMAR_BELOW = 25  # discordant pairs; the usual threshold for the chi-square approximation
PAIRED_METRICS = {"melanoma_f1": ("melanoma", "f1"), "balanced_accuracy": ("global", "balanced_accuracy")}


def require_same_images(ids_a: Sequence[str] | None, ids_b: Sequence[str] | None) -> None:
    """Refuse predictions of two pipelines that do not list the same image ids in the same order."""
    if ids_a is None or ids_b is None:
        return
    a, b = [str(i) for i in ids_a], [str(i) for i in ids_b]
    if len(a) != len(b):
        raise InvalidArgument(f"the pipelines were scored on different image counts: {len(a)} vs {len(b)}")
    for position, (first, second) in enumerate(zip(a, b, strict=True)):
        if first != second:
            raise InvalidArgument(
                f"image ids differ at position {position}: {first!r} vs {second!r}",
                hint="order both pipelines' predictions by the same test manifest",
            )
    if len(set(a)) != len(a):
        raise InvalidArgument("image ids repeat: a paired test needs each test image once")


def delong_covariance(is_positive, scores) -> tuple[np.ndarray, np.ndarray]:
    """AUCs [K] and their DeLong covariance [K, K] for score rows [K, N] (fast midrank version)."""
    is_positive = np.asarray(is_positive, dtype=bool)
    scores = np.atleast_2d(np.asarray(scores, dtype=float))
    positives, negatives = scores[:, is_positive], scores[:, ~is_positive]
    m, n = positives.shape[1], negatives.shape[1]
    if m < 2 or n < 2:
        raise InvalidArgument(f"DeLong's variance needs >= 2 positives and >= 2 negatives, got {m} and {n}")
    within_pos = stats.rankdata(positives, axis=1)  # midranks: ties count one half, as in the AUC
    within_neg = stats.rankdata(negatives, axis=1)
    pooled = stats.rankdata(np.concatenate([positives, negatives], axis=1), axis=1)
    aucs = (pooled[:, :m].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    v10 = (pooled[:, :m] - within_pos) / n  # per positive: share of negatives it outscores
    v01 = 1.0 - (pooled[:, m:] - within_neg) / m  # per negative: share of positives that outscore it
    covariance = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, covariance


def delong_test(is_positive, scores_a, scores_b, level: float = DEFAULT_LEVEL) -> dict:
    """Two-sided DeLong test of AUC_a = AUC_b for paired scores; also the difference's normal interval."""
    scores_a, scores_b = np.asarray(scores_a, dtype=float), np.asarray(scores_b, dtype=float)
    if scores_a.shape != scores_b.shape or scores_a.shape != np.shape(is_positive):
        raise InvalidArgument(
            f"paired scores need one shape, got {scores_a.shape}, {scores_b.shape}, {np.shape(is_positive)}"
        )
    aucs, cov = delong_covariance(is_positive, np.stack([scores_a, scores_b]))
    difference = float(aucs[0] - aucs[1])
    variance = max(float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1]), 0.0)
    std_error = float(np.sqrt(variance))
    z_crit = float(stats.norm.ppf(0.5 + level / 2.0))
    z: float | None
    if std_error > 1e-12:
        z = difference / std_error
        p_value = float(2.0 * stats.norm.sf(abs(z)))
    else:  # identical rankings (difference 0: p = 1) or a difference with no sampling spread (p = 0)
        z, p_value = (0.0, 1.0) if abs(difference) < 1e-12 else (None, 0.0)
    return {
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "difference": difference,
        "std_error": std_error,
        "z": z,
        "p_value": p_value,
        "ci_low": difference - z_crit * std_error,
        "ci_high": difference + z_crit * std_error,
    }


def mcnemar_test(correct_a, correct_b, exact: bool | None = None) -> dict:
    """McNemar's test on paired correctness; ``exact=None`` picks the binomial test below 25 discordant."""
    correct_a, correct_b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if correct_a.shape != correct_b.shape:
        raise InvalidArgument(
            f"paired correctness needs one shape, got {correct_a.shape} and {correct_b.shape}"
        )
    only_a, only_b = int((correct_a & ~correct_b).sum()), int((~correct_a & correct_b).sum())
    discordant = only_a + only_b
    use_exact = discordant < EXACT_MCNEMAR_BELOW if exact is None else exact
    if discordant == 0:
        statistic, p_value = 0.0, 1.0
    elif use_exact:  # under H0 each discordant image favours A with probability 1/2
        statistic = float(min(only_a, only_b))
        p_value = min(1.0, 2.0 * float(stats.binom.cdf(min(only_a, only_b), discordant, 0.5)))
    else:
        statistic = max(abs(only_a - only_b) - 1.0, 0.0) ** 2 / discordant
        p_value = float(stats.chi2.sf(statistic, df=1))
    return {
        "only_a_correct": only_a,
        "only_b_correct": only_b,
        "statistic": statistic,
        "p_value": p_value,
        "method": "exact binomial" if use_exact else "chi-square with continuity correction",
    }


def paired_bootstrap(
    y_true,
    probs_a,
    probs_b,
    classes: Sequence[str] = CLASSES,
    positive: str = "MEL",
    metrics: Sequence[str] = tuple(PAIRED_METRICS),
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> dict[str, dict]:
    """Difference A - B of each metric, with a percentile interval and a two-sided p-value."""
    unknown = sorted(set(metrics) - set(PAIRED_METRICS))
    if unknown:
        raise InvalidArgument(f"unknown paired metrics {unknown}; choose from {sorted(PAIRED_METRICS)}")
    y, a = validate_predictions(y_true, probs_a, classes)
    _, b = validate_predictions(y, probs_b, classes)
    k = positive_index(classes, positive)

    def differences(counts=None) -> dict:
        scored_a = batched_metrics(y, a, k, counts, ranking=False)
        scored_b = batched_metrics(y, b, k, counts, ranking=False)
        return {
            name: {
                "a": scored_a[PAIRED_METRICS[name][0]][PAIRED_METRICS[name][1]],
                "b": scored_b[PAIRED_METRICS[name][0]][PAIRED_METRICS[name][1]],
            }
            for name in metrics
        }

    observed = differences()
    resampled = bootstrap_replicates(differences, len(y), n_resamples, seed)
    results = {}
    for name in metrics:
        value_a, value_b = float(observed[name]["a"][0]), float(observed[name]["b"][0])
        delta = resampled[name]["a"] - resampled[name]["b"]
        low, high, undefined = percentile_interval(delta, level)
        finite = delta[np.isfinite(delta)]
        diff = value_a - value_b
        p_value = None
        if finite.size and np.isfinite(diff):
            extreme = (
                np.abs(finite - diff) >= abs(diff) - 1e-12
            )  # as far from the truth as observed, under H0
            p_value = float((1 + extreme.sum()) / (finite.size + 1))
        results[name] = {
            "a": value_a,
            "b": value_b,
            "difference": diff if np.isfinite(diff) else None,
            "ci_low": low,
            "ci_high": high,
            "p_value": p_value,
            "n_resamples": int(n_resamples),
            "n_undefined": undefined,
        }
    return results


def compare_pipelines(
    y_true,
    probs_a,
    probs_b,
    ids_a: Sequence[str] | None = None,
    ids_b: Sequence[str] | None = None,
    classes: Sequence[str] = CLASSES,
    positive: str = "MEL",
    n_bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> dict:
    """All paired tests of pipeline A against B as a JSON-serialisable dict (differences are A - B)."""
    require_same_images(ids_a, ids_b)
    y, a = validate_predictions(y_true, probs_a, classes)
    _, b = validate_predictions(y, probs_b, classes)
    if ids_a is not None and len(ids_a) != len(y):
        raise InvalidArgument(f"{len(ids_a)} image ids for {len(y)} predictions")
    k = positive_index(classes, positive)
    notes = []
    try:
        delong = delong_test(y == k, a[:, k], b[:, k], level)
    except InvalidArgument as error:  # too few positives or negatives: report, do not crash the comparison
        delong, notes = None, [f"DeLong test skipped: {error}"]
    return {
        "n": int(len(y)),
        "positive": positive,
        "delong_roc_auc": delong,
        "paired_bootstrap": paired_bootstrap(
            y, a, b, classes, positive, n_resamples=n_bootstrap, seed=seed, level=level
        ),
        "mcnemar": mcnemar_test(a.argmax(axis=1) == y, b.argmax(axis=1) == y),
        "notes": notes,
    }
