"""The report's skin-tone section: every classifier's melanoma metrics per ITA category.

Each test image's individual typology angle (ITA = arctan((L* - 50) / b*), Chardon, Cretois &
Hourseau 1991) puts it in one of six categories with the cut-offs of Del Bino et al. (2006) and Del
Bino & Bernerd (2013, Br. J. Dermatol. 169 Suppl 3:33-40): very light > 55 deg, light 41-55,
intermediate 28-41, tan 10-28, brown -30-10, dark < -30 (a bound belongs to the darker bin). Kinyanjui
et al. (2020, MICCAI, "Fairness of classifiers across skin tones in dermatology") measured ITA this way
on ISIC and found the dermoscopy archives dominated by the light categories, which is why the bins
need counts and a small-bin flag beside every number.

Per pipeline x classifier and bin: melanoma sensitivity, specificity, ROC-AUC and the macro-F1, mean
over seeds with a 95% stratified-bootstrap CI (``report_strata``). The gap is the best bin minus the
worst (by the point value) among the bins that are not small, with the percentile CI of the difference
of their (independent) replicates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from skingenbench.flows.report_strata import (
    GROUP_METRICS,
    METRIC_TITLES,
    SMALL_GROUP_RULE,
    GroupResult,
    ImageStrata,
    aligned_predictions,
    cells_by_classifier,
    formatted,
    group_metrics,
    load_strata,
)
from skingenbench.services.classification.core.bootstrap import DEFAULT_RESAMPLES, percentile_interval
from skingenbench.services.core.imaging.skin_tone import SKIN_TYPES, skin_type_from_ita

ITA_BIN_RANGES = {
    "very_light": "> 55°",
    "light": "41–55°",
    "intermediate": "28–41°",
    "tan": "10–28°",
    "brown": "−30–10°",
    "dark": "< −30°",
}
RESAMPLE_SEED = 18  # the section's own draws of test images; bin i uses [RESAMPLE_SEED, i]


def ita_bin(ita: float | None) -> str | None:
    return None if ita is None else skin_type_from_ita(ita)


def bin_members(ids: list[str], strata: Mapping[str, ImageStrata]) -> dict[str, np.ndarray]:
    """Bin name -> bool mask over ``ids`` (images without an ITA are in no bin)."""
    names = [ita_bin(strata[i].ita) if i in strata else None for i in ids]
    return {name: np.array([n == name for n in names], dtype=bool) for name in SKIN_TYPES}


def cell_fairness(
    results_by_seed: Mapping[str, Mapping[str, Any]],
    strata: Mapping[str, ImageStrata],
    n_resamples: int,
    level: float = 0.95,
) -> dict[str, Any]:
    """One cell's per-bin results and the best-worst gap per metric."""
    ids, classes, labels, probs, positive = aligned_predictions(results_by_seed)
    members = bin_members(ids, strata)
    bins = {
        name: group_metrics(labels, probs, classes, positive, mask, n_resamples, [RESAMPLE_SEED, i], level)
        for i, (name, mask) in enumerate(members.items())
    }
    return {"bins": bins, "gaps": {name: best_worst_gap(bins, name, level) for name, _, _ in GROUP_METRICS}}


def best_worst_gap(bins: Mapping[str, GroupResult], metric: str, level: float = 0.95) -> dict[str, Any]:
    """Best minus worst bin on ``metric`` among the bins that are not small; None without two such bins."""
    usable = {name: r for name, r in bins.items() if not r.small and r.point[metric] is not None}
    if len(usable) < 2:
        return {"gap": None, "low": None, "high": None, "best": None, "worst": None, "bins": len(usable)}
    best = max(usable, key=lambda name: usable[name].point[metric])
    worst = min(usable, key=lambda name: usable[name].point[metric])
    difference = usable[best].replicates[metric] - usable[worst].replicates[metric]
    low, high, _ = percentile_interval(difference, level)
    gap = usable[best].point[metric] - usable[worst].point[metric]
    return {"gap": gap, "low": low, "high": high, "best": best, "worst": worst, "bins": len(usable)}


def fairness_section(
    results: Mapping[str, Mapping[str, Any]], strata: Mapping[str, ImageStrata], n_resamples: int
) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """(Markdown lines, tables) of the skin-tone section."""
    cells = cells_by_classifier(results)
    md = [
        "Test images by skin tone: ITA (Chardon et al. 1991) in the categories of Del Bino et al. (2006) "
        "and Del Bino & Bernerd (2013). Each value is the mean over seeds with its 95% bootstrap CI "
        f"(images resampled within the bin, {n_resamples} draws). Bins marked † hold {SMALL_GROUP_RULE}: "
        "too few to say anything, and they are left out of the gap.",
        "",
    ]
    if not cells or not strata:
        return md + ["_No stored test predictions or no per-image ITA: nothing to break down._", ""], {}
    sources = sorted({s.ita_source for s in strata.values() if s.ita is not None})
    md += [
        f"ITA source: {', '.join(sources) or 'none'} (phantom: the rendered skin's exact ITA; "
        "measured: the preprocessing service's median ITA of the skin outside the lesion).",
        "",
    ]
    bin_rows: list[dict[str, Any]] = []
    gap_rows: list[dict[str, Any]] = []
    counts_written = False
    for (pipeline, classifier), by_seed in sorted(cells.items()):
        cell = cell_fairness(by_seed, strata, n_resamples)
        if not counts_written:
            md += ["#### Test images per bin", ""]
            md += _table(
                [
                    {
                        "bin": name,
                        "ITA": ITA_BIN_RANGES[name],
                        "images": r.n,
                        "melanomas": r.melanomas,
                        "small": "†" if r.small else "",
                    }
                    for name, r in cell["bins"].items()
                ]
            )
            counts_written = True
        for name, r in cell["bins"].items():
            row: dict[str, Any] = {
                "pipeline": pipeline,
                "classifier": classifier,
                "bin": name,
                "images": r.n,
                "melanomas": r.melanomas,
                "small": r.small,
            }
            for metric, _, _ in GROUP_METRICS:
                row[metric], (row[f"{metric}_low"], row[f"{metric}_high"]) = (
                    r.point[metric],
                    r.interval[metric],
                )
            bin_rows.append(row)
        for metric, gap in cell["gaps"].items():
            gap_rows.append({"pipeline": pipeline, "classifier": classifier, "metric": metric, **gap})
    for metric, _, _ in GROUP_METRICS:
        md += [f"#### {METRIC_TITLES[metric]} by skin tone", ""]
        rows = []
        for pipeline, classifier in sorted(cells):
            row = {"pipeline": pipeline, "classifier": classifier}
            for r in (r for r in bin_rows if r["pipeline"] == pipeline and r["classifier"] == classifier):
                text = formatted(r[metric], (r[f"{metric}_low"], r[f"{metric}_high"]))
                row[r["bin"]] = f"{text} †" if r["small"] else text
            rows.append(row)
        md += _table(rows, ["pipeline", "classifier", *SKIN_TYPES])
    md += ["#### Best minus worst bin (bins that are not small)", ""]
    md += _table(
        [
            {
                "pipeline": g["pipeline"],
                "classifier": g["classifier"],
                "metric": METRIC_TITLES[g["metric"]],
                "gap [95% CI]": formatted(g["gap"], (g["low"], g["high"]))
                if g["gap"] is not None
                else f"— ({g['bins']} bin(s) large enough)",
                "best": g["best"] or "",
                "worst": g["worst"] or "",
            }
            for g in gap_rows
        ]
    )
    return md, {"skin_tone_bins": bin_rows, "skin_tone_gaps": gap_rows}


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> list[str]:
    if not rows:
        return ["_nothing to show_", ""]
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return [*lines, ""]


def report_section(ctx: Any) -> Any:
    """The section for ``flows/report.py`` (its ReportContext in, its Section out); tables to ``ctx.tables``."""
    from skingenbench.flows.report import Section  # here: report.py imports this module

    resamples = int(ctx.run.get("grid", {}).get("bootstrap_samples") or DEFAULT_RESAMPLES)
    md, tables = fairness_section(ctx.results, load_strata(ctx.store, ctx.run), resamples)
    ctx.tables.update(tables)
    return Section("skin-tone", "Skin tone (ITA categories)", "\n".join(md))
