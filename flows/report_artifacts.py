"""The report's artifact section: each classifier's melanoma metrics on test images with and without
each artifact, basic (A) and advanced (B) preprocessing side by side.

This is the direct test of the reference study's claim (SkinGenBench, arXiv 2512.17585) that removing
hair and ruler marks "suppresses clinically relevant texture cues": if it did, B would lose to A on the
images *with* the artifact more than on those without. Which artifacts an image shows is known exactly
on phantoms (the renderer records them) and measured by the preprocessing service on real data
(``report_strata``). Values are means over seeds with a 95% stratified-bootstrap CI; † marks a group
with too few images (``report_strata.SMALL_GROUP_RULE``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from skingenbench.flows.report_strata import (
    ARTIFACT_NAMES,
    ARTIFACT_TITLES,
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
from skingenbench.services.classification.core.bootstrap import DEFAULT_RESAMPLES

RESAMPLE_SEED = 19  # the section's own draws; group (artifact j, with/without) uses [RESAMPLE_SEED, j, w]


def artifact_members(
    ids: list[str], strata: Mapping[str, ImageStrata], artifact: str
) -> dict[str, np.ndarray]:
    """{"with": mask, "without": mask} over ``ids``; images whose flag is unknown are in neither."""
    flags = [strata[i].artifacts.get(artifact) if i in strata else None for i in ids]
    return {
        "with": np.array([f is True for f in flags], dtype=bool),
        "without": np.array([f is False for f in flags], dtype=bool),
    }


def cell_artifacts(
    results_by_seed: Mapping[str, Mapping[str, Any]],
    strata: Mapping[str, ImageStrata],
    n_resamples: int,
    level: float = 0.95,
) -> dict[str, dict[str, GroupResult]]:
    """artifact -> "with"/"without" -> the cell's metrics on those images."""
    ids, classes, labels, probs, positive = aligned_predictions(results_by_seed)
    out: dict[str, dict[str, GroupResult]] = {}
    for j, artifact in enumerate(ARTIFACT_NAMES):
        members = artifact_members(ids, strata, artifact)
        out[artifact] = {
            side: group_metrics(
                labels, probs, classes, positive, mask, n_resamples, [RESAMPLE_SEED, j, w], level
            )
            for w, (side, mask) in enumerate(members.items())
        }
    return out


def artifacts_section(
    results: Mapping[str, Mapping[str, Any]], strata: Mapping[str, ImageStrata], n_resamples: int
) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """(Markdown lines, tables) of the artifact section."""
    md = [
        "Melanoma metrics on test images with and without each artifact, basic preprocessing (A) beside "
        "advanced (B, hair and ruler-mark removal) for the same training data and classifier. Mean over "
        f"seeds with 95% bootstrap CIs ({n_resamples} draws within each group); † marks a group with "
        f"{SMALL_GROUP_RULE}.",
        "",
    ]
    cells = cells_by_classifier(results)
    if not cells or not strata:
        return md + ["_No stored test predictions or no per-image artifacts: nothing to break down._", ""], {}
    sources = sorted({s.artifact_source for s in strata.values()})
    md += [
        f"Artifact source: {', '.join(sources)} (phantom: drawn by the renderer, exact; measured: the "
        "preprocessing service's detectors).",
        "",
    ]
    computed = {key: cell_artifacts(by_seed, strata, n_resamples) for key, by_seed in sorted(cells.items())}
    rows: list[dict[str, Any]] = []
    for (pipeline, classifier), by_artifact in computed.items():
        for artifact, sides in by_artifact.items():
            for side, r in sides.items():
                row: dict[str, Any] = {
                    "pipeline": pipeline,
                    "arm": pipeline[:1],
                    "training": pipeline[1:],
                    "classifier": classifier,
                    "artifact": artifact,
                    "group": side,
                    "images": r.n,
                    "melanomas": r.melanomas,
                    "small": r.small,
                }
                for metric, _, _ in GROUP_METRICS:
                    row[metric], (row[f"{metric}_low"], row[f"{metric}_high"]) = (
                        r.point[metric],
                        r.interval[metric],
                    )
                rows.append(row)
    md += ["#### Test images per group", ""]
    first = next(iter(computed.values()))
    md += _table(
        [
            {
                "artifact": ARTIFACT_TITLES[a],
                "with: images (melanomas)": f"{s['with'].n} ({s['with'].melanomas})",
                "without: images (melanomas)": f"{s['without'].n} ({s['without'].melanomas})",
            }
            for a, s in first.items()
        ]
    )
    pairs = sorted({(r["training"], r["classifier"]) for r in rows})
    columns = ["artifact", "training", "classifier", "A with", "A without", "B with", "B without"]
    for metric, _, _ in GROUP_METRICS:
        if metric == "macro_f1":
            continue  # the section is about melanoma; macro-F1 by artifact stays in the table data
        md += [f"#### {METRIC_TITLES[metric]}: with vs without each artifact, A vs B", ""]
        table = []
        for artifact in ARTIFACT_NAMES:
            for training, classifier in pairs:
                line = {"artifact": ARTIFACT_TITLES[artifact], "training": training, "classifier": classifier}
                for r in rows:
                    if (r["artifact"], r["training"], r["classifier"]) == (artifact, training, classifier):
                        text = formatted(r[metric], (r[f"{metric}_low"], r[f"{metric}_high"]))
                        line[f"{r['arm']} {r['group']}"] = f"{text} †" if r["small"] else text
                table.append(line)
        md += _table(table, columns)
    return md, {"artifact_strata": rows}


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
    md, tables = artifacts_section(ctx.results, load_strata(ctx.store, ctx.run), resamples)
    ctx.tables.update(tables)
    return Section("artifacts", "Artifacts (with vs without, A vs B)", "\n".join(md))
