"""The Markdown summary of an evaluation report: one table row per set, then provenance and notes.

Only the columns some set has are shown; the report JSON beside it holds every number.
"""

from __future__ import annotations

from typing import Any

_COLUMNS = (
    ("count", "n", "{:d}"),
    ("fid", "FID", "{:.2f}"),
    ("kid_mean", "KID", "{:.4f}"),
    ("isc_mean", "IS", "{:.2f}"),
    ("precision", "precision", "{:.3f}"),
    ("recall", "recall", "{:.3f}"),
    ("domain_fid", "domain FID", "{:.2f}"),
    ("domain_kid_mean", "domain KID", "{:.4f}"),
    ("memorized_share", "memorized", "{:.1%}"),
    ("anchoring_share", "anchored", "{:.1%}"),
)


def report_markdown(report: dict[str, Any]) -> str:
    rows = {"real": report["real"], **report["sets"]}
    columns = [c for c in _COLUMNS if any(c[0] in r for r in rows.values())]
    lines = [
        "# Evaluation of synthetic sets",
        "",
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
                cell += f" ± {std:.4f}" if std is not None else ""
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
    lines += [
        "",
        f"Real set: {report['real']['count']} images"
        + (
            f"; FID between its random halves {report['real']['fid_real_halves']:.2f}"
            if "fid_real_halves" in report["real"]
            else ""
        )
        + ".",
    ]
    if report["notes"]:
        lines += ["", "Notes:"] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"
