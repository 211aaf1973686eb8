"""The reader study's report as text: one table of readers (and the pool), then agreement and the verdict."""

from __future__ import annotations

from typing import Any

COLUMNS = (
    ("accuracy", "accuracy"),
    ("sensitivity", "sensitivity (syn→syn)"),
    ("specificity", "specificity (real→real)"),
    ("diagnosis_synthetic", "dx = requested (syn)"),
    ("diagnosis_real", "dx = truth (real)"),
)


def _cell(figure: dict[str, Any]) -> str:
    if figure["value"] is None:
        return "—"
    return f"{figure['value']:.2f} [{figure['low']:.2f}, {figure['high']:.2f}] {figure['successes']}/{figure['total']}"


def format_report(report: dict[str, Any]) -> str:
    level = round(report["confidence"] * 100)
    lines = [
        f"Reader study {report['study_id']}: {report['images']} images "
        f"({report['synthetic_images']} synthetic), {len(report['readers'])} reader(s); "
        f"proportions with {level}% Wilson intervals.",
        "",
    ]
    rows = [["reader", "answered", *(title for _, title in COLUMNS)]]
    for name, figures in report["readers"].items():
        rows.append(
            [name, f"{figures['answered']}/{figures['of']}", *(_cell(figures[k]) for k, _ in COLUMNS)]
        )
    pooled = report["pooled"]
    rows.append(["pooled", str(pooled["answered"]), *(_cell(pooled[k]) for k, _ in COLUMNS)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    agreement = report["agreement"]
    kappa = agreement["fleiss_kappa"]
    lines.append("")
    if kappa is None:
        why = "needs 2 or more readers and images they all answered, with both answers given"
        lines.append(
            f"Fleiss' kappa: — ({why}; {agreement['readers']} reader(s), {agreement['images']} common image(s))"
        )
    else:
        lines.append(
            f"Fleiss' kappa (real/synthetic calls): {kappa:.3f} over {agreement['images']} images "
            f"read by all {agreement['readers']} readers"
        )
    accuracy = pooled["accuracy"]
    if accuracy["value"] is not None:
        if report["indistinguishable"]:
            lines.append(
                "Readers could not tell synthetic from real images (the pooled accuracy interval holds 0.5)."
            )
        elif accuracy["low"] > 0.5:
            lines.append("Readers told synthetic from real images apart better than chance.")
        else:  # below chance: readers took one set for the other, systematically
            lines.append(
                "Readers did worse than chance: they took synthetic images for real and real for synthetic."
            )
    return "\n".join(lines)
