"""The report's classifier tables: per cell the mean over seeds, per seed the test job's own numbers, and
one table of every paired comparison per pipeline pair with raw and Holm-adjusted p-values.

A pure function of loaded documents (the test jobs' ``result_json`` and the comparisons'
``comparison_json``), so the report and ``skingenbench report check`` build the tables with the same
code: the report from what the jobs stored, the check from predictions it rescored itself. The metric
code is the classification service's own (``metrics``, ``bootstrap``: numpy only, no torch, so the flow
may import it); the statistics on top are ``flows/statistics.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from skingenbench.flows.statistics import holm_adjust, mean_over_seeds
from skingenbench.services.classification.core.bootstrap import DEFAULT_RESAMPLES, bootstrap_replicates
from skingenbench.services.classification.core.metrics import (
    GLOBAL_METRICS,
    ONE_VS_REST_METRICS,
    batched_metrics,
    positive_index,
    validate_predictions,
)

GLOBAL_COLUMNS = ["macro_f1", "balanced_accuracy", "mcc", "roc_auc", "accuracy", "brier"]
MELANOMA_COLUMNS = ["f1", "sensitivity", "specificity", "precision", "roc_auc", "pr_auc", "dor"]
TABLE_NAMES = (
    "global_metrics",
    "melanoma_metrics",
    "global_metrics_per_seed",
    "melanoma_metrics_per_seed",
    "paired_tests",
)
IMAGE_RESAMPLE_SEED = 0  # the report's own draws of test images (seed 0 = the test job's draws for seed 0)
SEED_DRAW_SEED = 0  # the draws of training seeds in the two-way bootstrap
LEVEL = 0.95
DAGGER = "†"
PAIRED_TESTS = (  # (test label, where the comparison document keeps it)
    ("ROC-AUC (DeLong)", "delong_roc_auc"),
    ("melanoma F1 (paired bootstrap)", "paired_bootstrap.melanoma_f1"),
    ("balanced accuracy (paired bootstrap)", "paired_bootstrap.balanced_accuracy"),
    ("accuracy (McNemar)", "mcnemar"),
)


@dataclass
class ClassifierSection:
    markdown: list[str]  # the metric tables (mean over seeds, then per seed)
    paired_markdown: list[str]  # the paired comparisons, one table per pipeline pair
    tables: dict[str, list[dict[str, Any]]]
    statistics: dict[str, Any] = field(default_factory=dict)


def _split_key(key: str) -> tuple[str, str, str]:
    pipeline, classifier, seed = key.split("/")
    return pipeline, classifier, seed


def _seed_order(seed: str) -> tuple[int, str]:
    return (int(seed), seed) if seed.lstrip("-").isdigit() else (0, seed)


def _number(value: float | None, digits: int = 3, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _interval(value: float | None, low: float | None, high: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    if low is None or high is None:
        return _number(value, signed=signed)
    return f"{_number(value, signed=signed)} [{_number(low, signed=signed)}, {_number(high, signed=signed)}]"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if value >= 1e-4 else f"{value:.1e}"


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "_nothing to show_\n"
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


# -- per cell: mean over seeds -----------------------------------------------------------------------
def _aligned(results_by_seed: Mapping[str, dict[str, Any]]) -> tuple[list[str], np.ndarray, dict, list]:
    """Labels and each seed's probabilities in the first seed's image order; refuses other images."""
    seeds = sorted(results_by_seed, key=_seed_order)
    first = results_by_seed[seeds[0]]
    classes = list(first["classes"])
    ids = [p["image_id"] for p in first["predictions"]]
    labels = np.array([classes.index(p["label"]) for p in first["predictions"]])
    probs = {}
    for seed in seeds:
        result = results_by_seed[seed]
        by_id = {p["image_id"]: p for p in result["predictions"]}
        if list(result["classes"]) != classes or sorted(by_id) != sorted(ids):
            raise ValueError(f"seed {seed} was scored on other images or classes than seed {seeds[0]}")
        if any(classes.index(by_id[i]["label"]) != y for i, y in zip(ids, labels, strict=True)):
            raise ValueError(f"seed {seed} disagrees with seed {seeds[0]} on image labels")
        probs[seed] = np.array([by_id[i]["probs"] for i in ids], dtype=float)
    return classes, labels, probs, seeds


def cell_statistics(
    results_by_seed: Mapping[str, dict[str, Any]], n_resamples: int = DEFAULT_RESAMPLES, level: float = LEVEL
) -> dict[str, Any]:
    """Every metric of one pipeline x classifier cell: mean over seeds and its two-way bootstrap CI.

    All seeds are rescored on the *same* draws of test images (``IMAGE_RESAMPLE_SEED``), which is what
    the crossed two-way bootstrap of ``statistics.mean_over_seeds`` needs.
    """
    classes, labels, probs, seeds = _aligned(results_by_seed)
    positive = results_by_seed[seeds[0]].get("positive", "MEL")
    k = positive_index(classes, positive)
    points, replicates = [], []
    for seed in seeds:
        y, p = validate_predictions(labels, probs[seed], classes)
        points.append(batched_metrics(y, p, k))
        replicates.append(
            bootstrap_replicates(
                lambda counts, y=y, p=p: batched_metrics(y, p, k, counts),
                len(y),
                n_resamples,
                IMAGE_RESAMPLE_SEED,
            )
        )
    out: dict[str, Any] = {"seeds": seeds, "n": int(len(labels)), "positive": positive}
    for section, names in (("global", GLOBAL_METRICS), ("melanoma", ONE_VS_REST_METRICS)):
        out[section] = {}
        for name in names:
            values = [float(point[section][name][0]) for point in points]
            out[section][name] = mean_over_seeds(
                [v if np.isfinite(v) else None for v in values],
                np.stack([r[section][name] for r in replicates]),
                level,
                SEED_DRAW_SEED,
            )
    out["dor_corrected"] = [bool(point["melanoma"]["dor_corrected"][0]) for point in points]
    return out


def _mean_cell(entry: dict[str, Any], dagger: bool = False) -> str:
    text = _interval(entry.get("mean"), entry.get("ci_low"), entry.get("ci_high"))
    return text + DAGGER if dagger and entry.get("mean") is not None else text


def _stored_cell(entry: Any, dagger: bool = False) -> str:
    if isinstance(entry, dict) and "value" in entry:
        text = _interval(entry.get("value"), entry.get("ci_low"), entry.get("ci_high"))
        return text + DAGGER if dagger and entry.get("value") is not None else text
    return "" if entry is None else str(entry)


# -- paired comparisons --------------------------------------------------------------------------------
def _entry(document: dict[str, Any], path: str) -> dict[str, Any] | None:
    value: Any = document
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value if isinstance(value, dict) else None


def _baseline_pipeline(key: str, document: dict[str, Any]) -> str:
    run_name = ((document.get("baseline") or {}).get("run") or {}).get("run_name") or ""
    return run_name.split("/")[0] if "/" in run_name else key[0] + "1"  # the flow's rule: arm + "1"


def comparison_rows(comparisons: Mapping[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per classifier x seed x test of every comparison, numbers unrounded; Holm over all rows."""
    rows = []
    for key in sorted(
        comparisons, key=lambda k: (_split_key(k)[0], _split_key(k)[1], _seed_order(_split_key(k)[2]))
    ):
        document = comparisons[key]
        pipeline, classifier, seed = _split_key(key)
        pair = f"{pipeline} vs {_baseline_pipeline(pipeline, document)}"
        for label, path in PAIRED_TESTS:
            entry = _entry(document, path)
            row: dict[str, Any] = {"pair": pair, "classifier": classifier, "seed": seed, "test": label}
            row.update(estimate=None, ci_low=None, ci_high=None, p_value=None, note="")
            if entry is None:
                row["note"] = "; ".join(document.get("notes") or []) or "not computed"
            elif path == "mcnemar":  # the test has no interval; its effect is the accuracy difference
                n = document.get("n") or 0
                row["estimate"] = (entry["only_a_correct"] - entry["only_b_correct"]) / n if n else None
                row["p_value"] = entry.get("p_value")
                row["note"] = (
                    f"{entry.get('method', '')}; {entry['only_a_correct']} vs {entry['only_b_correct']} discordant"
                )
            else:
                row.update(
                    estimate=entry.get("difference"),
                    ci_low=entry.get("ci_low"),
                    ci_high=entry.get("ci_high"),
                    p_value=entry.get("p_value"),
                )
                if path.startswith("paired_bootstrap") and entry.get("n_undefined"):
                    row["note"] = f"{entry['n_undefined']} of {entry.get('n_resamples')} resamples undefined"
            rows.append(row)
    for row, adjusted in zip(rows, holm_adjust([r["p_value"] for r in rows]), strict=True):
        row["p_holm"] = adjusted
    return rows


def _display_comparison(row: dict[str, Any]) -> dict[str, str]:
    ci = (
        "—"
        if row["ci_low"] is None or row["ci_high"] is None
        else f"[{_number(row['ci_low'], signed=True)}, {_number(row['ci_high'], signed=True)}]"
    )
    return {
        "pair": row["pair"],
        "classifier": row["classifier"],
        "seed": row["seed"],
        "test": row["test"],
        "difference": _number(row["estimate"], signed=True),
        "95% CI": ci,
        "p": _p(row["p_value"]),
        "p (Holm)": _p(row["p_holm"]),
        "note": row["note"],
    }


# -- the section ---------------------------------------------------------------------------------------
def classifier_section(
    results: Mapping[str, dict[str, Any]],
    comparisons: Mapping[str, dict[str, Any]],
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = LEVEL,
) -> ClassifierSection:
    """The classifier part of the report from test results (``pipeline/classifier/seed`` -> result with
    ``predictions``) and comparison documents (candidate key -> ``comparison_json`` body)."""
    md: list[str] = []
    notes: list[str] = []
    cells: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for key, result in results.items():
        pipeline, classifier, seed = _split_key(key)
        cells.setdefault((pipeline, classifier), {})[seed] = result
    statistics: dict[str, Any] = {"cells": {}, "comparisons": [], "method": {}}
    mean_global, mean_melanoma, any_corrected = [], [], False
    for pipeline, classifier in sorted(cells):
        by_seed = cells[(pipeline, classifier)]
        usable = {
            s: r for s, r in by_seed.items() if isinstance(r.get("predictions"), list) and "classes" in r
        }
        if not usable:
            notes.append(f"{pipeline}/{classifier}: no stored predictions, no mean over seeds")
            continue
        try:
            stats = cell_statistics(usable, n_resamples, level)
        except ValueError as error:
            notes.append(f"{pipeline}/{classifier}: {error}; no mean over seeds")
            continue
        statistics["cells"][f"{pipeline}/{classifier}"] = stats
        corrected = any(stats["dor_corrected"])
        any_corrected |= corrected
        head = {"pipeline": pipeline, "classifier": classifier, "seeds": len(stats["seeds"])}
        mean_global.append({**head, **{c: _mean_cell(stats["global"][c]) for c in GLOBAL_COLUMNS}})
        mean_melanoma.append(
            {
                **head,
                **{c: _mean_cell(stats["melanoma"][c], c == "dor" and corrected) for c in MELANOMA_COLUMNS},
            }
        )

    per_seed_global, per_seed_melanoma = [], []
    for pipeline, classifier in sorted(cells):
        for seed in sorted(cells[(pipeline, classifier)], key=_seed_order):
            result = cells[(pipeline, classifier)][seed]
            head = {"pipeline": pipeline, "model": f"{classifier} {seed}"}
            melanoma = result.get("melanoma", {})
            corrected = bool(melanoma.get("dor_corrected"))
            per_seed_global.append(
                {**head, **{c: _stored_cell(result.get("global", {}).get(c)) for c in GLOBAL_COLUMNS}}
            )
            per_seed_melanoma.append(
                {
                    **head,
                    **{c: _stored_cell(melanoma.get(c), c == "dor" and corrected) for c in MELANOMA_COLUMNS},
                }
            )

    rows = comparison_rows(comparisons)
    statistics["comparisons"] = rows
    family = sum(r["p_value"] is not None for r in rows)
    seeds_seen = sorted({s for by_seed in cells.values() for s in by_seed}, key=_seed_order)
    statistics["method"] = {
        "cell_interval": "two-way (pigeonhole) bootstrap over training seeds and test images, percentile",
        "cell_interval_reference": "Owen 2007, Ann. Appl. Stat. 1:386-411; Davison & Hinkley 1997, sec. 3.8",
        "n_resamples": int(n_resamples),
        "image_resample_seed": IMAGE_RESAMPLE_SEED,
        "seed_draw_seed": SEED_DRAW_SEED,
        "level": level,
        "multiplicity": "Holm step-down over every p-value of the paired tables",
        "multiplicity_reference": "Holm 1979, Scand. J. Statist. 6:65-70",
        "family_size": family,
    }

    dor_note = (
        f"{DAGGER} DOR with the Haldane-Anscombe correction: a zero cell in the one-vs-rest 2x2 table "
        "(for at least one seed), so 0.5 was added to all four cells (Haldane 1956; Anscombe 1956), as "
        "Glas et al. (2003) recommend. Beside a sensitivity or specificity of 0 or 1 such a DOR reflects "
        "the correction, not discrimination."
    )
    seed_text = (
        " With one seed this is the percentile bootstrap over test images only: seed variation is not "
        "estimated."
        if len(seeds_seen) <= 1
        else f" {len(seeds_seen)} seeds."
    )
    md += [
        "### Global metrics: mean over seeds (95% CI over seeds and test images)",
        "",
        _table(mean_global),
        f"Each cell is the mean over training seeds of the metric on the test set; the interval is a "
        f"two-way (pigeonhole) bootstrap (Owen 2007; cf. Davison & Hinkley 1997, sec. 3.8): each of "
        f"B = {n_resamples} replicates redraws the test images (one draw shared by all seeds, which are "
        f"scored on the same images) and the seeds, both with replacement, and averages over the drawn "
        f"seeds; percentile interval. It combines test-set and training-seed variation.{seed_text}",
        "",
        "### Melanoma one-vs-rest: mean over seeds",
        "",
        _table(mean_melanoma),
    ]
    if any_corrected:
        md += [dor_note, ""]
    md += [
        "### Per seed (each test job's own 95% percentile bootstrap CI over test images)",
        "",
        _table(per_seed_global),
        "",
        _table(per_seed_melanoma),
    ]
    if any(bool(r.get("melanoma", {}).get("dor_corrected")) for r in results.values()):
        md += [dor_note, ""]
    for note in notes:
        md.append(f"> **Note:** {note}")
    paired: list[str] = [
        f"Differences are pipeline minus baseline on the same test images (positive: the pipeline "
        f"scores higher). ROC-AUC: DeLong's test for correlated AUCs "
        f"(DeLong et al. 1988) with its normal 95% interval. Melanoma F1 and balanced accuracy: paired "
        f"bootstrap (both pipelines on the same resamples), percentile interval, two-sided p from the "
        f"centred resampled differences; with B resamples the smallest possible p is 1/(B+1). Accuracy: "
        f"McNemar's test on the discordant images (exact binomial below 25); the difference is the "
        f"accuracy difference and the test gives no interval. Each row is one training seed. "
        f"**p (Holm)**: Holm's (1979) step-down adjustment over the report's whole family of "
        f"m = {family} p-values (every row of every table below), which holds under any dependence "
        f"between the tests.",
        "",
    ]
    display = [_display_comparison(r) for r in rows]
    for pair in sorted({r["pair"] for r in display}):
        paired += [
            f"### {pair}",
            "",
            _table([{k: v for k, v in r.items() if k != "pair"} for r in display if r["pair"] == pair]),
        ]
    if not display:
        paired.append("_no comparisons_\n")
    tables = {
        "global_metrics": mean_global,
        "melanoma_metrics": mean_melanoma,
        "global_metrics_per_seed": per_seed_global,
        "melanoma_metrics_per_seed": per_seed_melanoma,
        "paired_tests": display,
    }
    return ClassifierSection(md, paired, tables, statistics)
