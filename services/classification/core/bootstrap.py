"""95 % bootstrap confidence intervals over test images, and ``evaluate_predictions``.

Method: the non-parametric bootstrap with percentile intervals (Efron & Tibshirani 1993, ch. 13).
Test images are resampled with replacement; a resample is represented by its *counts* (how often
each image was drawn), so every metric of ``metrics.batched_metrics`` is evaluated for a whole chunk
of resamples at once with weighted counts. A metric undefined on a resample (e.g. ROC-AUC of a class
that the resample does not contain) is dropped from that metric's interval and counted.

Reproducibility: the draws depend only on (seed, N, number of resamples); the chunking that bounds
memory is a function of N and so does not change them between runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
from skingenbench.services.classification.core.metrics import (
    GLOBAL_METRICS,
    ONE_VS_REST_METRICS,
    batched_metrics,
    confusion_matrix,
    metric_scope,
    per_class_report,
    positive_index,
    validate_predictions,
)
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.errors import InvalidArgument

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95
CELLS_PER_CHUNK = 2_000_000  # resamples x images per chunk: ~16 MB per float array


def resample_counts(
    n_items: int, n_resamples: int, seed: int | np.random.Generator = 0
) -> Iterator[np.ndarray]:
    """Yield chunks [b, N] of draw counts; each row is one resample of N images with replacement."""
    if n_items < 1 or n_resamples < 0:
        raise InvalidArgument(f"need n_items >= 1 and n_resamples >= 0, got {n_items}, {n_resamples}")
    rng = np.random.default_rng(seed)
    chunk = max(1, CELLS_PER_CHUNK // n_items)
    for start in range(0, n_resamples, chunk):
        rows = min(chunk, n_resamples - start)
        drawn = rng.integers(0, n_items, size=(rows, n_items))
        flat = (np.arange(rows)[:, None] * n_items + drawn).ravel()
        yield np.bincount(flat, minlength=rows * n_items).reshape(rows, n_items).astype(float)


def _concatenate(chunks: list):
    if isinstance(chunks[0], dict):
        return {key: _concatenate([chunk[key] for chunk in chunks]) for key in chunks[0]}
    return np.concatenate(chunks)


def bootstrap_replicates(
    statistic: Callable[[np.ndarray], dict],
    n_items: int,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int | np.random.Generator = 0,
) -> dict:
    """Apply ``statistic(counts [b, N]) -> (nested) dict of arrays [b]`` to all resamples; concatenated."""
    if n_resamples < 1:
        raise InvalidArgument(f"a bootstrap needs at least one resample, got {n_resamples}")
    return _concatenate([statistic(counts) for counts in resample_counts(n_items, n_resamples, seed)])


def percentile_interval(replicates, level: float = DEFAULT_LEVEL) -> tuple[float | None, float | None, int]:
    """(low, high, n_undefined): the percentile interval of the finite replicates; NaNs are dropped."""
    if not 0.0 < level < 1.0:
        raise InvalidArgument(f"confidence level must lie in (0, 1), got {level}")
    replicates = np.asarray(replicates, dtype=float)
    finite = replicates[np.isfinite(replicates)]
    undefined = int(replicates.size - finite.size)
    if finite.size == 0:
        return None, None, undefined
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high), undefined


def _summaries(point: dict, replicates: dict | None, names: Sequence[str], level: float) -> tuple[dict, dict]:
    summaries, undefined = {}, {}
    for name in names:
        value = float(point[name][0])
        low = high = None
        if replicates is not None:
            low, high, undefined[name] = percentile_interval(replicates[name], level)
        summaries[name] = {"value": value if np.isfinite(value) else None, "ci_low": low, "ci_high": high}
    return summaries, {name: count for name, count in undefined.items() if count}


def _notes(y_true, y_pred, classes: Sequence[str], positive: str, melanoma: dict, point: dict) -> list[str]:
    scope = metric_scope(y_true, y_pred, len(classes))
    absent = [c for c, present in zip(classes, scope["recall"], strict=True) if not present]
    notes = []
    if absent:
        notes.append(
            f"classes absent from the test set, skipped in macro ROC-AUC and balanced accuracy: {absent}"
        )
    never = [c for c, k in zip(classes, np.bincount(y_pred, minlength=len(classes)), strict=True) if k == 0]
    if never:
        notes.append(f"classes never predicted (their precision counts as 0): {never}")
    if len(set(y_pred.tolist())) == 1 or len(set(y_true.tolist())) == 1:
        notes.append("labels or predictions hold a single class: MCC is 0 by convention")
    if bool(point["dor_corrected"][0]):
        notes.append(
            "a zero cell in the one-vs-rest 2x2 table: DOR uses the Haldane-Anscombe +0.5 correction"
        )
    for name, entry in melanoma.items():
        if entry["value"] is None:
            notes.append(
                f"one-vs-rest {positive} {name} is undefined on this test set (no positives or negatives)"
            )
    return notes


def evaluate_predictions(
    y_true,
    probs,
    classes: Sequence[str] = CLASSES,
    positive: str = "MEL",
    n_bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = DEFAULT_LEVEL,
) -> dict:
    """Every metric with its percentile bootstrap interval, as a JSON-serialisable dict.

    ``{"global": {metric: {"value", "ci_low", "ci_high"}}, "melanoma": {...}, "per_class": {...},
    "confusion_matrix": [[...]] (rows true, columns predicted, in ``classes`` order), "n", "notes",
    "bootstrap": {...}}``. The one-vs-rest section is called "melanoma" whatever ``positive`` is; the
    class is recorded under "positive". ``n_bootstrap=0`` gives point estimates only (intervals None).
    """
    y, p = validate_predictions(y_true, probs, classes)
    k = positive_index(classes, positive)
    if int(n_bootstrap) != n_bootstrap or n_bootstrap < 0:
        raise InvalidArgument(f"n_bootstrap must be a non-negative integer, got {n_bootstrap}")
    point = batched_metrics(y, p, k)
    replicates = None
    if n_bootstrap:
        replicates = bootstrap_replicates(
            lambda counts: batched_metrics(y, p, k, counts), len(y), n_bootstrap, seed
        )
    global_, global_undefined = _summaries(
        point["global"], replicates and replicates["global"], GLOBAL_METRICS, level
    )
    melanoma, ovr_undefined = _summaries(
        point["melanoma"], replicates and replicates["melanoma"], ONE_VS_REST_METRICS, level
    )
    melanoma["dor_corrected"] = bool(point["melanoma"]["dor_corrected"][0])
    y_pred = p.argmax(axis=1)
    notes = _notes(
        y, y_pred, classes, positive, {n: melanoma[n] for n in ONE_VS_REST_METRICS}, point["melanoma"]
    )
    for section, undefined in (("global", global_undefined), (positive, ovr_undefined)):
        for name, count in undefined.items():
            notes.append(
                f"{section} {name}: {count} of {n_bootstrap} bootstrap resamples undefined and dropped"
            )
    return {
        "n": int(len(y)),
        "classes": list(classes),
        "positive": positive,
        "decision": f"argmax of the probabilities; one-vs-rest positive when argmax == {positive}",
        "global": global_,
        "melanoma": melanoma,
        "per_class": per_class_report(y, p, classes),
        "confusion_matrix": confusion_matrix(y, y_pred, len(classes)).tolist(),
        "bootstrap": {
            "method": "percentile",
            "n_resamples": int(n_bootstrap),
            "seed": seed,
            "level": level,
            "undefined": {"global": global_undefined, "melanoma": ovr_undefined},
        },
        "notes": notes,
    }
