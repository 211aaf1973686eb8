"""The Markdown summary of an evaluation report: sample-size warnings first, one table row per set, the
sample sizes, then provenance and notes.

Only the columns some set has are shown; the report JSON beside it holds every number.
"""

from __future__ import annotations

from typing import Any

_COLUMNS = (
    ("count", "n", "{:d}"),
    ("fid", "FID", "{:.2f}"),
    ("fid_real_baseline", "real-vs-real FID", "{:.2f}"),
    ("kid_mean", "KID", "{:.4f}"),
    ("isc_mean", "IS", "{:.2f}"),
    ("precision", "precision", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
    ("domain_fid", "domain FID", "{:.2f}"),
    ("domain_fid_real_baseline", "real-vs-real domain FID", "{:.2f}"),
    ("domain_kid_mean", "domain KID", "{:.4f}"),
    ("memorized_share", "memorized", "{:.1%}"),
    ("anchoring_share", "anchored", "{:.1%}"),
)


def report_markdown(report: dict[str, Any]) -> str:
    rows = {"real": report["real"], **report["sets"]}
    columns = [c for c in _COLUMNS if any(c[0] in r for r in rows.values())]
    lines = ["# Evaluation of synthetic sets", ""]
    if report.get("warnings"):
        lines += ["**Sample-size warnings** (numbers below compare only with values at the same N):", ""]
        lines += [f"- ⚠ {warning}" for warning in report["warnings"]] + [""]
    lines += [
        "| set | " + " | ".join(c[1] for c in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for name, row in rows.items():
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            cell = "" if value is None else fmt.format(value)
            if key in ("kid_mean", "domain_kid_mean", "isc_mean") and value is not None:
                std = row.get(key.replace("_mean", "_std"))
                if std is not None:
                    cell += f" ± {std:.4f}"
                elif row.get(key.replace("_mean", "_single_subset")):
                    cell += " (one subset: no std)"
            if key.endswith("_real_baseline") and value is not None:
                count = row.get(f"{key}_count")
                cell += f" (N={count})" if count is not None else ""
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    extractor = report["provenance"]["extractor"]
    if extractor:
        lines += [
            "",
            f"Extractor: {extractor['extractor']} (weights sha256 {extractor['weights_sha256'][:16]}…, "
            f"{'published file' if extractor['weights_upstream'] else 'NOT the published file'}); "
            f"resize: {extractor['resize']}.",
        ]
    domain = report["provenance"]["domain_extractor"]
    if domain:
        lines += [
            "",
            f"Domain space: {domain.get('classifier', 'classifier')} penultimate layer (checkpoint sha256 "
            f"{domain['weights_sha256'][:16]}…); {domain['resize']}.",
        ]
    lines += ["", f"Real set: {report['real']['count']} images."]
    lines += _sample_size_lines(report)
    if report["notes"]:
        lines += ["", "Notes:"] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def _sample_size_lines(report: dict[str, Any]) -> list[str]:
    """The sample sizes each metric was computed at, and what the real-vs-real baseline is."""
    record = report.get("sample_sizes") or {}
    if not record:
        return []
    counts = record.get("counts", {})
    synthetic = ", ".join(f"{name} {n:,}" for name, n in counts.items() if name != "real")
    parts = [f"Sample sizes: real {counts.get('real', 0):,}; synthetic {synthetic}"]
    for metric, settings in record.get("metrics", {}).items():
        if "feature_dimensions" in settings and settings["feature_dimensions"]:
            parts.append(f"{metric} on {settings['feature_dimensions']:,}-d features (minimum N)")
        elif "subset_size" in settings:
            parts.append(
                f"{metric} over {settings['subsets']} subsets of {settings['subset_size']:,} "
                f"(reference {settings['reference_subsets']} × {settings['reference_subset_size']:,})"
            )
        elif "splits" in settings:
            parts.append(
                f"{metric} over {settings['splits']} splits (minimum {settings['minimum']:,} images)"
            )
    lines = [
        "",
        "; ".join(parts)
        + f". Reference protocol: {record.get('reference_images', 5000):,} synthetic images.",
    ]
    if report["real"].get("real_baselines"):
        lines += [
            "",
            "Real-vs-real: the FID between two disjoint random subsets of the real set, each of the synthetic "
            "set's N where the real set has 2N images (else the largest N it allows, shown beside the value): "
            "what sampling alone gives at that N.",
        ]
    return lines
