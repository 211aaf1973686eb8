"""The report's dose–response section (issue 18 item 1): melanoma metrics against the synthetic ratio.

Per preprocessing arm × generator × classifier, at every ratio of the grid's ``synthetic_ratio`` axis
(ratio 0 = pipeline 1, real images only): melanoma F1, sensitivity at a fixed specificity of
``SPECIFICITY`` and melanoma ROC-AUC, each the mean over seeds with the crossed two-way bootstrap CI
over seeds and test images of ``statistics.mean_over_seeds`` (Owen 2007), every seed and every ratio
rescored on the *same* draws of test images (``report_tables.IMAGE_RESAMPLE_SEED``).

Sensitivity at fixed specificity: the highest true-positive rate among the ROC operating points whose
false-positive rate is at most 1 − specificity (the melanoma score is the class probability; the
operating point a screening programme would fix, e.g. Esteva et al. 2017 read sensitivities at set
specificities off the ROC curve).

The best ratio is the ratio > 0 with the highest mean melanoma ROC-AUC (threshold-free: the synthetic
melanomas change the class prior and so move every argmax decision, which F1 would reward or punish
for reasons other than ranking). It is tested against ratio 0 on the same test images by the paired
bootstrap of the difference of the means over seeds (seed s at ratio r paired with seed s at ratio 0,
the same image draws for both), with the centred two-sided p-value of the classification core's paired
bootstrap (``paired_tests.paired_bootstrap``); p-values of all ratios of one family are Holm-adjusted
(``statistics.holm_adjust``), because picking the best of k ratios and then testing it is k tests.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from skingenbench.flows.figures import TWO_COLUMN_IN, _new_figure, _save, _styled
from skingenbench.flows.report_tables import IMAGE_RESAMPLE_SEED, LEVEL, SEED_DRAW_SEED
from skingenbench.flows.statistics import holm_adjust, mean_over_seeds, seed_and_image_replicates
from skingenbench.services.classification.core.bootstrap import DEFAULT_RESAMPLES, bootstrap_replicates
from skingenbench.services.classification.core.metrics import batched_metrics, positive_index

SPECIFICITY = 0.9  # the fixed specificity the sensitivity is read at
METRICS = {  # key -> label in tables and figures
    "f1": "melanoma F1",
    "sensitivity_at_specificity": f"sensitivity at specificity {SPECIFICITY:g}",
    "roc_auc": "melanoma ROC-AUC",
}
BEST_BY = "roc_auc"


def sensitivity_at_specificity(
    is_positive, scores, weights=None, specificity: float = SPECIFICITY
) -> np.ndarray:
    """[b] highest sensitivity with specificity >= ``specificity`` per row of ``weights`` [b, N]
    (bootstrap draw counts; None: each image once). NaN where a row has no positive or no negative."""
    positive = np.asarray(is_positive, dtype=bool)
    scores = np.asarray(scores, dtype=float)
    weights = np.ones((1, positive.size)) if weights is None else np.atleast_2d(np.asarray(weights, float))
    order = np.argsort(-scores, kind="mergesort")
    ordered = scores[order]
    # a threshold between distinct scores only: tied images move together
    distinct = np.r_[np.flatnonzero(np.diff(ordered)), ordered.size - 1]
    w = weights[:, order]
    tp = np.cumsum(w * positive[order], axis=1)[:, distinct]
    fp = np.cumsum(w * ~positive[order], axis=1)[:, distinct]
    positives, negatives = tp[:, -1:], fp[:, -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        tpr, fpr = tp / positives, fp / negatives
    allowed = fpr <= (1.0 - specificity) + 1e-12
    best = np.where(allowed, tpr, 0.0).max(axis=1)  # the (0, 0) point is always allowed
    best[(positives[:, 0] == 0) | (negatives[:, 0] == 0)] = np.nan
    return best


def _melanoma_metrics(y: np.ndarray, probs: np.ndarray, k: int, counts=None) -> dict[str, np.ndarray]:
    scored = batched_metrics(y, probs, k, counts)["melanoma"]
    return {
        "f1": np.asarray(scored["f1"], float),
        "roc_auc": np.asarray(scored["roc_auc"], float),
        "sensitivity_at_specificity": sensitivity_at_specificity(y == k, probs[:, k], counts),
    }


def _aligned(results: Sequence[dict[str, Any]]) -> tuple[np.ndarray, list[np.ndarray], int]:
    """Labels and every result's probabilities in the first result's image order (same test images)."""
    first = results[0]
    classes = list(first["classes"])
    ids = [p["image_id"] for p in first["predictions"]]
    labels = np.array([classes.index(p["label"]) for p in first["predictions"]])
    probs = []
    for result in results:
        by_id = {p["image_id"]: p for p in result["predictions"]}
        if list(result["classes"]) != classes or sorted(by_id) != sorted(ids):
            raise ValueError("the ratios of one cell were tested on different images or classes")
        probs.append(np.array([by_id[i]["probs"] for i in ids], dtype=float))
    return labels, probs, positive_index(classes, first.get("positive", "MEL"))


def _centred_p(replicates: np.ndarray, observed: float | None) -> float | None:
    """Two-sided bootstrap p-value, as ``paired_tests.paired_bootstrap``: (1 + #|d* − d| >= |d|) / (B + 1)."""
    finite = replicates[np.isfinite(replicates)]
    if observed is None or not finite.size:
        return None
    return float((1 + (np.abs(finite - observed) >= abs(observed) - 1e-12).sum()) / (finite.size + 1))


def dose_response_family(
    by_ratio: Mapping[float, Mapping[int, dict[str, Any]]],
    n_resamples: int = DEFAULT_RESAMPLES,
    level: float = LEVEL,
) -> dict[str, Any]:
    """One arm × generator × classifier: ``by_ratio[ratio][seed]`` is a test result (with
    ``predictions``). Per ratio, each metric's mean over seeds with its CI; per ratio > 0 the paired
    difference against ratio 0 (when there is one) with CI, p and Holm-adjusted p; the best ratio."""
    ratios = sorted(by_ratio)
    seeds = sorted(set.intersection(*(set(by_ratio[r]) for r in ratios)))
    if not seeds:
        raise ValueError("no seed was tested at every ratio")
    labels, probs, k = _aligned([by_ratio[r][s] for r in ratios for s in seeds])
    points: dict[float, list[dict[str, np.ndarray]]] = {}
    replicates: dict[float, list[dict[str, np.ndarray]]] = {}
    for i, ratio in enumerate(ratios):
        points[ratio], replicates[ratio] = [], []
        for j in range(len(seeds)):
            p = probs[i * len(seeds) + j]
            points[ratio].append(_melanoma_metrics(labels, p, k))
            replicates[ratio].append(
                bootstrap_replicates(
                    lambda counts, p=p: _melanoma_metrics(labels, p, k, counts),
                    len(labels),
                    n_resamples,
                    IMAGE_RESAMPLE_SEED,
                )
            )

    def table(ratio: float, name: str) -> tuple[list[float], np.ndarray]:
        values = [float(point[name][0]) for point in points[ratio]]
        return values, np.stack([r[name] for r in replicates[ratio]])

    rows = {}
    for ratio in ratios:
        rows[ratio] = {
            name: mean_over_seeds(
                [v if np.isfinite(v) else None for v in table(ratio, name)[0]],
                table(ratio, name)[1],
                level,
                SEED_DRAW_SEED,
            )
            for name in METRICS
        }
    tests: dict[float, dict[str, Any]] = {}
    if 0.0 in by_ratio:
        for ratio in (r for r in ratios if r > 0):
            tests[ratio] = {}
            for name in METRICS:
                (a, ra), (b, rb) = table(ratio, name), table(0.0, name)
                diff = np.array(a) - np.array(b)
                summary = mean_over_seeds(
                    [d if np.isfinite(d) else None for d in diff], ra - rb, level, SEED_DRAW_SEED
                )
                pooled = seed_and_image_replicates(ra - rb, SEED_DRAW_SEED)
                tests[ratio][name] = {**summary, "p_value": _centred_p(pooled, summary["mean"])}
        for name in METRICS:
            adjusted = holm_adjust([tests[r][name]["p_value"] for r in tests])
            for ratio, p in zip(tests, adjusted, strict=True):
                tests[ratio][name]["p_holm"] = p
    candidates = [r for r in ratios if r > 0 and rows[r][BEST_BY]["mean"] is not None]
    best = max(candidates, key=lambda r: rows[r][BEST_BY]["mean"]) if candidates else None
    return {
        "ratios": ratios,
        "seeds": seeds,
        "n": int(len(labels)),
        "rows": rows,
        "tests": tests,
        "best": best,
    }


def _load(store, row: dict[str, Any]) -> dict[str, Any] | None:
    test = row.get("test") or {}
    uri = (test.get("outputs") or {}).get("result_json")
    if not uri:
        return None
    try:
        result = json.loads(store.get_bytes(store.key_from_uri(uri)))
    except Exception:
        return None
    return result if isinstance(result.get("predictions"), list) and "classes" in result else None


def dose_response_results(
    store, rows: Sequence[dict[str, Any]], n_resamples: int = DEFAULT_RESAMPLES
) -> tuple[dict[tuple[str, str, str], dict[str, Any]], list[str]]:
    """Families keyed by (arm, generator, classifier) from the flow's ``dose_response`` rows."""
    grouped: dict[tuple[str, str, str], dict[float, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    counts: dict[tuple[str, str, str], dict[float, int]] = defaultdict(dict)
    notes = []
    for row in rows:
        family = (row["arm"], row["generator"], row["classifier"])
        result = _load(store, row)
        if result is None:
            notes.append(f"{row['pipeline']}/{row['classifier']}/seed{row['seed']}: no stored predictions")
            continue
        grouped[family][float(row["ratio"])][int(row["seed"])] = result
        counts[family][float(row["ratio"])] = int(row.get("synthetic_count", 0))
    families = {}
    for family, by_ratio in sorted(grouped.items()):
        if len(by_ratio) < 2:
            continue
        try:
            families[family] = {**dose_response_family(by_ratio, n_resamples), "counts": counts[family]}
        except ValueError as error:
            notes.append(f"{'/'.join(family)}: {error}")
    return families, notes


def _interval(entry: dict[str, Any], signed: bool = False) -> str:
    if entry.get("mean") is None:
        return "n/a"
    fmt = "{:+.3f}" if signed else "{:.3f}"
    text = fmt.format(entry["mean"])
    if entry.get("ci_low") is not None and entry.get("ci_high") is not None:
        text += f" [{entry['ci_low']:.3f}, {entry['ci_high']:.3f}]"
    return text


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def table_rows(families: Mapping[tuple[str, str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for (arm, generator, classifier), family in families.items():
        for ratio in family["ratios"]:
            test = family["tests"].get(ratio, {}).get(BEST_BY, {})
            rows.append(
                {
                    "arm": arm,
                    "generator": generator,
                    "classifier": classifier,
                    "ratio": f"{ratio:g}",
                    "synthetic images": family["counts"].get(ratio, ""),
                    "seeds": len(family["seeds"]),
                    **{label: _interval(family["rows"][ratio][name]) for name, label in METRICS.items()},
                    "Δ AUC vs ratio 0": _interval(test, signed=True) if test else "",
                    "p (Holm)": f"{_p(test.get('p_value'))} ({_p(test.get('p_holm'))})" if test else "",
                    "best": "★" if ratio == family["best"] else "",
                }
            )
    return rows


def best_ratio_lines(families: Mapping[tuple[str, str, str], dict[str, Any]]) -> list[str]:
    lines = []
    for (arm, generator, classifier), family in families.items():
        best = family["best"]
        if best is None:
            lines.append(f"- `{arm}` / {generator} / {classifier}: no ratio > 0 with a defined ROC-AUC")
            continue
        text = (
            f"- `{arm}` / {generator} / {classifier}: **best ratio {best:g}** "
            f"({family['counts'].get(best, '?')} synthetic images; {METRICS[BEST_BY]} "
            f"{_interval(family['rows'][best][BEST_BY])})"
        )
        test = family["tests"].get(best)
        if test:
            t = test[BEST_BY]
            text += (
                f"; against ratio 0 on the same {family['n']} test images: Δ {_interval(t, signed=True)}, "
                f"paired bootstrap p = {_p(t['p_value'])}, Holm-adjusted over "
                f"{len(family['tests'])} ratios p = {_p(t['p_holm'])}"
            )
        else:
            text += "; no ratio-0 cell to test against"
        zero = family["rows"].get(0.0, {}).get(BEST_BY, {}).get("mean")
        if zero is not None and family["rows"][best][BEST_BY]["mean"] < zero:
            text += f" — below ratio 0's {zero:.3f}: no amount of synthetic data tried beat real data alone"
        lines.append(text)
    return lines


def dose_response_figure(families: Mapping[tuple[str, str, str], dict[str, Any]]) -> tuple[bytes, bytes]:
    """Three panels (F1, sensitivity at fixed specificity, ROC-AUC) against the ratio, one line per
    arm/generator/classifier, mean over seeds with its 95% CI as error bars, the best ratio ringed."""

    def draw():
        figure = _new_figure(TWO_COLUMN_IN, TWO_COLUMN_IN * 0.36)
        axes = figure.subplots(1, len(METRICS), sharex=True)
        for axis, (name, label) in zip(axes, METRICS.items(), strict=True):
            for (arm, generator, classifier), family in families.items():
                xs = np.array(family["ratios"])
                entries = [family["rows"][r][name] for r in family["ratios"]]
                ys = np.array([np.nan if e["mean"] is None else e["mean"] for e in entries])
                low = np.array([np.nan if e["ci_low"] is None else e["ci_low"] for e in entries])
                high = np.array([np.nan if e["ci_high"] is None else e["ci_high"] for e in entries])
                bars = np.vstack([np.clip(ys - low, 0, None), np.clip(high - ys, 0, None)])
                line = axis.errorbar(
                    xs,
                    ys,
                    yerr=np.nan_to_num(bars),
                    marker="o",
                    capsize=2,
                    label=f"{arm}/{generator}/{classifier}",
                )
                if family["best"] is not None:
                    i = family["ratios"].index(family["best"])
                    axis.plot(
                        xs[i], ys[i], marker="o", markersize=9, fillstyle="none", color=line[0].get_color()
                    )
            axis.set(xlabel="synthetic ratio", ylabel=label, ylim=(-0.02, 1.02))  # × real melanomas
        figure.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=3, frameon=False)
        return figure

    return _styled(lambda: _save(draw()))


def dose_response_section(ctx) -> Any:
    """The section (None when the grid has no ratio axis): the table, the named best ratios, the figure."""
    from skingenbench.flows.report import Section

    rows = ctx.run.get("dose_response") or []
    if not rows:
        return None
    n_resamples = int(ctx.run.get("grid", {}).get("bootstrap_samples") or DEFAULT_RESAMPLES)
    families, notes = dose_response_results(ctx.store, rows, n_resamples)
    body = [
        "Melanoma metrics against the amount of synthetic melanomas mixed into training (ratio × the real "
        "training melanomas; ratio 0 is pipeline 1, the same job). Mean over seeds with 95% two-way "
        f"bootstrap intervals over seeds and test images (B = {n_resamples}); sensitivity read at "
        f"specificity {SPECIFICITY:g}. The best ratio is the ratio > 0 with the highest mean {METRICS[BEST_BY]}; it is tested "
        "against ratio 0 by the paired bootstrap on the same test images (Holm-adjusted over the ratios).\n",
    ]
    if families:
        table = table_rows(families)
        ctx.tables["dose_response"] = table
        columns = list(table[0])
        body.append("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
        body += ["| " + " | ".join(str(r[c]) for c in columns) + " |" for r in table]
        body.append("\n" + "\n".join(best_ratio_lines(families)))
        ctx.plot(
            "dose-response",
            f"Dose–response: melanoma F1, sensitivity at specificity {SPECIFICITY:g} and ROC-AUC against "
            "the synthetic ratio, mean over seeds with 95% CIs; the best ratio (by ROC-AUC) ringed.",
            dose_response_figure(families),
            TWO_COLUMN_IN,
        )
    else:
        body.append("No cell was tested at two or more ratios.")
    body += [f"\n- {note}" for note in notes]
    return Section("dose-response", "Dose–response: how much synthetic data", "\n".join(body))
