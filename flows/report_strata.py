"""Metrics within groups of test images (skin-tone bins, images with or without an artifact).

Shared by the fairness (``report_fairness``) and artifact (``report_artifacts``) sections: what each
test image is (its ITA and its artifacts, joined on the image id from the test manifests) and each
cell's melanoma metrics inside a group with a bootstrap CI.

The bootstrap resamples the images *within* a group (a stratified bootstrap: the group's size is
fixed, as it is in the test set), all seeds of a cell on the same draws, and the cell's value is the
mean over seeds of each replicate (Efron & Tibshirani 1993, ch. 13, percentile interval).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from skingenbench.services.classification.core.bootstrap import bootstrap_replicates, percentile_interval
from skingenbench.services.classification.core.metrics import batched_metrics, positive_index

# The metrics each group reports: melanoma one-vs-rest (decision argmax == MEL) and the macro-F1.
GROUP_METRICS: tuple[tuple[str, str, str], ...] = (
    ("sensitivity", "melanoma", "sensitivity"),
    ("specificity", "melanoma", "specificity"),
    ("roc_auc", "melanoma", "roc_auc"),
    ("macro_f1", "global", "macro_f1"),
)
METRIC_TITLES = {
    "sensitivity": "melanoma sensitivity",
    "specificity": "melanoma specificity",
    "roc_auc": "melanoma ROC-AUC",
    "macro_f1": "macro-F1",
}
# A group says little below these sizes: a sensitivity from fewer than 10 melanomas moves by 0.1 per
# image, and fewer than 30 images leave the other classes' rates as coarse.
MIN_IMAGES = 30
MIN_MELANOMAS = 10
SMALL_GROUP_RULE = f"fewer than {MIN_IMAGES} images or fewer than {MIN_MELANOMAS} melanomas"

# The report's artifact names and where they come from: the phantom's ground truth (``has_<name>`` in
# the imported item's metadata) or the preprocessing service's detectors (``artifact_<name>``).
# ``marks`` is ruler ticks or ink: on real data one detector finds both (preprocessing ``detect_marks``).
ARTIFACT_NAMES = ("hair", "ruler", "ink", "marks", "dark_corners", "bubbles")
PHANTOM_ARTIFACT_COLUMNS = {
    "hair": "has_hair",
    "ruler": "has_ruler",
    "ink": "has_ink",
    "dark_corners": "has_vignette",
    "bubbles": "has_bubbles",
}
ARTIFACT_TITLES = {
    "hair": "hair",
    "ruler": "ruler marks",
    "ink": "ink marks",
    "marks": "ruler or ink marks",
    "dark_corners": "dark corners",
    "bubbles": "bubbles",
}


@dataclass(frozen=True)
class ImageStrata:
    """What one test image is: its ITA (degrees) and which artifacts it shows (None: not known)."""

    ita: float | None
    ita_source: str  # "phantom" (ground truth) or "measured" (preprocessing, skin outside the lesion)
    artifacts: dict[str, bool | None]
    artifact_source: str


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def strata_from_items(
    truth_items: Sequence[Mapping[str, Any]], measured_items: Sequence[Mapping[str, Any]] = ()
) -> dict[str, ImageStrata]:
    """Image id -> strata. ``truth_items`` are the split manifest's items (a phantom's metadata has its
    exact ITA and artifacts); ``measured_items`` a preprocessing manifest's (``ita_degrees`` and the
    ``artifact_<name>`` flags), used where the truth is missing, as on real data."""
    measured = {str(item.get("image_id")): item.get("meta", {}) or {} for item in measured_items}
    out: dict[str, ImageStrata] = {}
    ids = [str(item.get("image_id")) for item in truth_items] or list(measured)
    truth = {str(item.get("image_id")): item.get("meta", {}) or {} for item in truth_items}
    for image_id in ids:
        meta, seen = truth.get(image_id, {}), measured.get(image_id, {})
        ita, ita_source = _number(meta.get("ita")), "phantom"
        if ita is None:
            ita, ita_source = _number(seen.get("ita_degrees")), "measured"
        if all(column in meta for column in PHANTOM_ARTIFACT_COLUMNS.values()):
            flags = {name: bool(int(meta[col])) for name, col in PHANTOM_ARTIFACT_COLUMNS.items()}
            flags["marks"] = flags["ruler"] or flags["ink"]
            flags = {name: flags[name] for name in ARTIFACT_NAMES}
            artifact_source = "phantom"
        else:
            flags = {name: _flag(seen.get(f"artifact_{name}")) for name in ARTIFACT_NAMES}
            artifact_source = "measured"
        out[image_id] = ImageStrata(ita, ita_source, flags, artifact_source)
    return out


def _flag(value: Any) -> bool | None:
    return None if value is None else bool(value)


@dataclass(frozen=True)
class GroupResult:
    """One cell's metrics in one group of images."""

    n: int
    melanomas: int
    small: bool
    point: dict[str, float | None]
    interval: dict[str, tuple[float | None, float | None]]
    replicates: dict[str, np.ndarray]  # [resamples], mean over seeds; for differences between groups


def is_small(n: int, melanomas: int) -> bool:
    return n < MIN_IMAGES or melanomas < MIN_MELANOMAS


def aligned_predictions(
    results_by_seed: Mapping[str, Mapping[str, Any]],
) -> tuple[list[str], list[str], np.ndarray, list[np.ndarray], str]:
    """(image ids, classes, labels, one probability array per seed in the first seed's order, positive)."""
    seeds = sorted(results_by_seed)
    first = results_by_seed[seeds[0]]
    classes = list(first["classes"])
    ids = [str(p["image_id"]) for p in first["predictions"]]
    labels = np.array([classes.index(p["label"]) for p in first["predictions"]], dtype=int)
    probs = []
    for seed in seeds:
        by_id = {str(p["image_id"]): p for p in results_by_seed[seed]["predictions"]}
        if sorted(by_id) != sorted(ids) or list(results_by_seed[seed]["classes"]) != classes:
            raise ValueError(f"seed {seed} was scored on other images or classes than seed {seeds[0]}")
        probs.append(np.array([by_id[i]["probs"] for i in ids], dtype=float))
    return ids, classes, labels, probs, str(first.get("positive", "MEL"))


def group_metrics(
    labels: np.ndarray,
    probs_by_seed: Sequence[np.ndarray],
    classes: Sequence[str],
    positive: str,
    members: np.ndarray,
    n_resamples: int,
    seed: int | Sequence[int],
    level: float = 0.95,
) -> GroupResult:
    """Metrics of the images ``members`` (bool mask): each seed's point value, mean over seeds; the
    percentile CI of the seed-mean over ``n_resamples`` stratified draws (same draws for every seed)."""
    k = positive_index(classes, positive)
    y = labels[members]
    n, melanomas = int(members.sum()), int((y == k).sum())
    empty = {name: None for name, _, _ in GROUP_METRICS}
    if n == 0:
        nothing = {name: (None, None) for name, _, _ in GROUP_METRICS}
        return GroupResult(0, 0, True, empty, nothing, {name: np.full(0, np.nan) for name in empty})
    points: dict[str, list[float]] = {name: [] for name, _, _ in GROUP_METRICS}
    reps: dict[str, list[np.ndarray]] = {name: [] for name, _, _ in GROUP_METRICS}
    for probs in probs_by_seed:
        p = probs[members]
        point = batched_metrics(y, p, k)
        drawn = bootstrap_replicates(
            lambda counts, p=p: batched_metrics(y, p, k, counts), n, n_resamples, seed
        )
        for name, section, metric in GROUP_METRICS:
            points[name].append(float(point[section][metric][0]))
            reps[name].append(np.asarray(drawn[section][metric], dtype=float))
    out_point, out_interval, out_reps = {}, {}, {}
    for name in points:
        values = np.array(points[name])
        out_point[name] = float(values.mean()) if np.isfinite(values).all() else None
        mean_reps = np.mean(np.vstack(reps[name]), axis=0)  # NaN where any seed is undefined
        out_reps[name] = mean_reps
        low, high, _ = percentile_interval(mean_reps, level)
        out_interval[name] = (low, high)
    return GroupResult(n, melanomas, is_small(n, melanomas), out_point, out_interval, out_reps)


def cells_by_classifier(results: Mapping[str, Mapping[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """``"<pipeline>/<classifier>/<seed>"`` test results grouped as (pipeline, classifier) -> seed -> result;
    only results with stored predictions."""
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for key, result in sorted(results.items()):
        parts = key.split("/")
        if len(parts) != 3 or not isinstance(result.get("predictions"), list) or "classes" not in result:
            continue
        cells.setdefault((parts[0], parts[1]), {})[parts[2]] = result
    return cells


def formatted(value: float | None, interval: tuple[float | None, float | None]) -> str:
    """``0.81 [0.62, 0.93]``; ``—`` where undefined."""
    if value is None:
        return "—"
    low, high = interval
    return f"{value:.2f} [{low:.2f}, {high:.2f}]" if low is not None and high is not None else f"{value:.2f}"


def read_json(store: Any, uri: str) -> dict[str, Any]:
    """A stored JSON document, or {} when it cannot be read (a report is still written without it)."""
    try:
        return json.loads(store.get_bytes(store.key_from_uri(uri)))
    except Exception:  # noqa: BLE001 - one unreadable input must not stop the report
        return {}


def load_strata(store: Any, run: Mapping[str, Any], read_json: Any = read_json) -> dict[str, ImageStrata]:
    """The test images' strata of a run: the split manifest (truth) joined on image id with the arms'
    preprocessing manifests of all images (measurements: the basic arm's first, each value it lacks
    from the next arm, e.g. marks, which only advanced preprocessing detects); any may be missing."""
    truth = _manifest_items(run.get("split", {}), read_json, store)
    arms = run.get("arms", {}) or {}
    merged: dict[str, dict[str, Any]] = {}
    for arm in ("basic", *sorted(set(arms) - {"basic"})):
        for item in _manifest_items((arms.get(arm) or {}).get("all", {}), read_json, store):
            meta = merged.setdefault(str(item.get("image_id")), {})
            for key, value in (item.get("meta") or {}).items():
                if meta.get(key) is None:
                    meta[key] = value
    measured = [{"image_id": image_id, "meta": meta} for image_id, meta in merged.items()]
    return strata_from_items(truth, measured)


def _manifest_items(entry: Mapping[str, Any], read_json: Any, store: Any) -> list[Mapping[str, Any]]:
    uri = (entry.get("manifest") or {}).get("uri") if isinstance(entry, Mapping) else None
    if not uri:
        return []
    return list(read_json(store, uri).get("items", []))
