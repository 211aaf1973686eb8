"""The reference study's two classification tables, as Markdown and as JSON-ready rows.

Columns follow REFERENCE.md: global = macro-F1, balanced accuracy, MCC, ROC-AUC, accuracy, Brier;
melanoma one-vs-rest = F1, sensitivity, specificity, precision, ROC-AUC, PR-AUC, DOR. A cell reads
"value [low, high]" (the point estimate and its 95 % bootstrap interval), "value" when no interval
was computed, and "n/a" when the metric is undefined. A DOR that needed the Haldane-Anscombe
correction is marked with a dagger and explained under the table.

Input: ``{model name: evaluate_predictions(...) result}``, rows in the mapping's order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from skingenbench.services.core.errors import InvalidArgument

GLOBAL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("macro_f1", "macro-F1"),
    ("balanced_accuracy", "balanced acc"),
    ("mcc", "MCC"),
    ("roc_auc", "ROC-AUC"),
    ("accuracy", "accuracy"),
    ("brier", "Brier"),
)
MELANOMA_COLUMNS: tuple[tuple[str, str], ...] = (
    ("f1", "F1"),
    ("sensitivity", "sensitivity"),
    ("specificity", "specificity"),
    ("precision", "precision"),
    ("roc_auc", "ROC-AUC"),
    ("pr_auc", "PR-AUC"),
    ("dor", "DOR"),
)
DIGITS = 4
DOR_DIGITS = 2  # the reference prints DOR like 288.94
CORRECTED_MARK = "\u2020"
UNDEFINED = "n/a"


def format_cell(entry: Mapping | None, digits: int = DIGITS) -> str:
    """ "0.8393 [0.8211, 0.8560]" from {"value", "ci_low", "ci_high"}; "n/a" for an undefined value."""
    if entry is None or entry.get("value") is None:
        return UNDEFINED
    text = f"{entry['value']:.{digits}f}"
    if entry.get("ci_low") is not None and entry.get("ci_high") is not None:
        text += f" [{entry['ci_low']:.{digits}f}, {entry['ci_high']:.{digits}f}]"
    return text


def _rows(
    results_by_model: Mapping[str, Mapping], section: str, columns: Sequence[tuple[str, str]]
) -> list[dict]:
    rows = []
    for model, result in results_by_model.items():
        if section not in result:
            raise InvalidArgument(
                f"the result for {model!r} has no {section!r} section",
                hint="pass the dicts that evaluate_predictions returns",
            )
        metrics = result[section]
        row: dict = {"model": model}
        for key, _ in columns:
            entry = metrics.get(key) or {}
            row[key] = {
                "value": entry.get("value"),
                "ci_low": entry.get("ci_low"),
                "ci_high": entry.get("ci_high"),
            }
        if section == "melanoma":
            row["dor_corrected"] = bool(metrics.get("dor_corrected", False))
        rows.append(row)
    return rows


def global_rows(results_by_model: Mapping[str, Mapping]) -> list[dict]:
    """JSON-ready rows of the global table: {"model", metric: {"value", "ci_low", "ci_high"}, ...}."""
    return _rows(results_by_model, "global", GLOBAL_COLUMNS)


def melanoma_rows(results_by_model: Mapping[str, Mapping]) -> list[dict]:
    """JSON-ready rows of the melanoma table, plus "dor_corrected" per model."""
    return _rows(results_by_model, "melanoma", MELANOMA_COLUMNS)


def _markdown(rows: list[dict], columns: Sequence[tuple[str, str]], digits: int) -> list[str]:
    lines = ["| model | " + " | ".join(label for _, label in columns) + " |", "|---|" + "---|" * len(columns)]
    for row in rows:
        cells = []
        for key, _ in columns:
            cell = format_cell(row[key], DOR_DIGITS if key == "dor" else digits)
            if key == "dor" and row.get("dor_corrected") and cell != UNDEFINED:
                cell += CORRECTED_MARK
            cells.append(cell)
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    return lines


def global_table(results_by_model: Mapping[str, Mapping], digits: int = DIGITS) -> str:
    """The global metrics table in Markdown (REFERENCE.md column order)."""
    return "\n".join(_markdown(global_rows(results_by_model), GLOBAL_COLUMNS, digits)) + "\n"


def melanoma_table(results_by_model: Mapping[str, Mapping], digits: int = DIGITS) -> str:
    """The melanoma one-vs-rest table in Markdown (REFERENCE.md column order)."""
    rows = melanoma_rows(results_by_model)
    lines = _markdown(rows, MELANOMA_COLUMNS, digits)
    if any(row["dor_corrected"] for row in rows):
        lines += [
            "",
            f"{CORRECTED_MARK} a zero cell in the 2x2 table: DOR with the Haldane-Anscombe +0.5 correction.",
        ]
    return "\n".join(lines) + "\n"
