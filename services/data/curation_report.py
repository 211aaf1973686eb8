"""What a curated data set contains and what was left out, as JSON, Markdown and a console table.

Counts are per class × split × source; drops are grouped by the reason's category (the text before
the first ``:``, e.g. ``excluded diagnosis``) and by source (the text before the first ``/`` of the
reference). Duplicates and multi-label lesions come from the manifest's ``extra``, where
:func:`~skingenbench.services.data.core.splitting.combine_manifests` and
:func:`~skingenbench.services.data.core.splitting.split_by_lesion` record them.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from typing import Any

from skingenbench.services.core.classes import CLASSES, REFERENCE_PROPORTIONS, SPLITS
from skingenbench.services.core.manifest import Manifest, Skipped
from skingenbench.services.platform.store import ObjectStore

UNSPLIT = "unsplit"
TOTAL = "total"
REPORT_JSON = "curation_report.json"
REPORT_MARKDOWN = "curation_report.md"
MAX_EXAMPLES = 5


def curation_report(manifest: Manifest, dropped: Iterable[Skipped] | None = None) -> dict[str, Any]:
    """Counts and drops of a manifest; ``dropped`` defaults to the manifest's own skipped list."""
    dropped = list(manifest.skipped if dropped is None else dropped)
    labels, splits, sources = _axes(manifest)
    cells = Counter((item.label, item.split or UNSPLIT, item.source) for item in manifest.items)

    def table(source: str | None) -> dict[str, dict[str, int]]:
        rows = {}
        for label in labels + [TOTAL]:
            row = {
                split: sum(
                    n
                    for (lb, sp, src), n in cells.items()
                    if sp == split and (label == TOTAL or lb == label) and (source is None or src == source)
                )
                for split in splits
            }
            row[TOTAL] = sum(row.values())
            rows[label] = row
        return rows

    lesions_by_split: dict[str, set] = defaultdict(set)
    for item in manifest.items:
        lesions_by_split[item.split or UNSPLIT].add((item.source, item.lesion_id or item.key))
    total = len(manifest.items)
    by_class = Counter(item.label for item in manifest.items)
    return {
        "name": manifest.name,
        "stage": manifest.provenance.stage,
        "classes": labels,
        "splits": splits,
        "sources": sources,
        "totals": {
            "images": total,
            "lesions": len({(i.source, i.lesion_id or i.key) for i in manifest.items}),
            "dropped": len(dropped),
            "lesions_by_split": {split: len(lesions_by_split[split]) for split in splits},
        },
        "class_shares": {
            label: {
                "share": by_class[label] / total if total else 0.0,
                "reference": REFERENCE_PROPORTIONS.get(label),
            }
            for label in labels
        },
        "counts": table(None),
        "counts_by_source": {source: table(source) for source in sources},
        "dropped": _group_dropped(dropped),
        "duplicates": list(manifest.extra.get("duplicates", [])),
        "multi_label_lesions": list((manifest.extra.get("split") or {}).get("multi_label_lesions", [])),
        "small_strata": list((manifest.extra.get("split") or {}).get("small_strata", [])),
    }


def format_report_markdown(report: dict[str, Any]) -> str:
    totals = report["totals"]
    lines = [
        f"# Curation report: {report['name'] or '(unnamed)'}",
        "",
        f"{totals['images']:,} images from {totals['lesions']:,} lesions; {totals['dropped']:,} items dropped.",
        "",
        "## Images per class and split",
        "",
        *_markdown_table(report["counts"], report["splits"]),
        "",
        "## Class shares",
        "",
        "| class | share | reference study |",
        "|---|---:|---:|",
    ]
    for label, share in report["class_shares"].items():
        reference = "—" if share["reference"] is None else f"{share['reference']:.1%}"
        lines.append(f"| {label} | {share['share']:.1%} | {reference} |")
    for source, counts in report["counts_by_source"].items():
        lines += ["", f"## Source `{source}`", "", *_markdown_table(counts, report["splits"])]
    lines += ["", "## Dropped", ""]
    if report["dropped"]:
        lines += ["| reason | count | by source | examples |", "|---|---:|---|---|"]
        for category, group in report["dropped"].items():
            by_source = ", ".join(f"{src or '?'}: {n}" for src, n in group["by_source"].items())
            lines.append(f"| {category} | {group['count']} | {by_source} | {', '.join(group['examples'])} |")
        lines += ["", "Reasons in full:", ""]
        for group in report["dropped"].values():
            lines += [f"- {reason} — {n}" for reason, n in group["reasons"].items()]
    else:
        lines.append("Nothing was dropped.")
    lines += ["", "## Duplicates (same sha256, first copy kept)", ""]
    lines += [
        f"- {d['ref']} = {d['kept']}" + (" (labels differ!)" if d.get("label_conflict") else "")
        for d in report["duplicates"]
    ] or ["None."]
    lines += ["", "## Lesions with images of different labels (majority label used for stratification)", ""]
    lines += [f"- {m['lesion']}: {m['labels']} → {m['majority']}" for m in report["multi_label_lesions"]] or [
        "None."
    ]
    if report["small_strata"]:
        lines += ["", "## Strata with fewer lesions than splits (filled train first)", ""]
        lines += [f"- {' × '.join(s['stratum'])}: {s['lesions']} lesion(s)" for s in report["small_strata"]]
    return "\n".join(lines) + "\n"


def describe_manifest(manifest: Manifest) -> str:
    """The counts table of a manifest: classes × splits, overall and per source."""
    report = curation_report(manifest)
    totals = report["totals"]
    lines = [
        f"{manifest.name or '(unnamed)'}: {totals['images']:,} images, {totals['lesions']:,} lesions, "
        f"{len(report['sources'])} source(s), {totals['dropped']:,} dropped"
    ]
    lesions = dict(totals["lesions_by_split"], total=totals["lesions"])
    lines += _text_table({**report["counts"], "lesions": lesions}, report["splits"])
    if len(report["sources"]) > 1:
        for source, counts in report["counts_by_source"].items():
            lines += ["", f"source {source}"] + _text_table(counts, report["splits"])
    if report["dropped"]:
        lines += ["", "dropped"] + [
            f"  {cat:<28} {group['count']:>7,}" for cat, group in report["dropped"].items()
        ]
    return "\n".join(lines) + "\n"


def write_curation_report(store: ObjectStore, prefix: str, report: dict[str, Any]) -> tuple[str, str]:
    """Store the report as ``<prefix>/curation_report.json`` and ``.md``; returns both keys."""
    json_key, markdown_key = f"{prefix}/{REPORT_JSON}", f"{prefix}/{REPORT_MARKDOWN}"
    store.put_bytes(json_key, json.dumps(report, indent=1, sort_keys=True).encode(), "application/json")
    store.put_bytes(markdown_key, format_report_markdown(report).encode(), "text/markdown")
    return json_key, markdown_key


def _axes(manifest: Manifest) -> tuple[list[str], list[str], list[str]]:
    labels = {item.label for item in manifest.items}
    splits = {item.split or UNSPLIT for item in manifest.items}
    # The five classes always show, so an empty class is visible rather than silently absent.
    ordered_labels = list(CLASSES) + sorted(labels - set(CLASSES))
    # A split set shows all three splits, so an empty test split reads as 0 rather than missing.
    ordered_splits = (list(SPLITS) if splits & set(SPLITS) else []) + sorted(splits - set(SPLITS))
    return ordered_labels, ordered_splits, sorted({item.source for item in manifest.items})


def _group_dropped(dropped: list[Skipped]) -> dict[str, dict[str, Any]]:
    groups: dict[str, dict[str, Any]] = {}
    for entry in dropped:
        category = entry.reason.split(":", 1)[0].strip() or "(no reason)"
        source = entry.ref.split("/", 1)[0] if "/" in entry.ref else ""
        group = groups.setdefault(
            category, {"count": 0, "by_source": Counter(), "reasons": Counter(), "examples": []}
        )
        group["count"] += 1
        group["by_source"][source] += 1
        group["reasons"][entry.reason] += 1
        if len(group["examples"]) < MAX_EXAMPLES:
            group["examples"].append(entry.ref)
    for group in groups.values():
        group["by_source"] = dict(sorted(group["by_source"].items()))
        group["reasons"] = dict(group["reasons"].most_common())
    return dict(sorted(groups.items(), key=lambda kv: (-kv[1]["count"], kv[0])))


def _markdown_table(counts: dict[str, dict[str, int]], splits: list[str]) -> list[str]:
    columns = splits + [TOTAL]
    lines = ["| class | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for label, row in counts.items():
        name = f"**{label}**" if label == TOTAL else label
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:,}" for c in columns) + " |")
    return lines


def _text_table(counts: dict[str, dict[str, int]], splits: list[str]) -> list[str]:
    columns = splits + [TOTAL]
    widths = [max(len(c), 7) for c in columns]
    lines = ["class    " + " ".join(f"{c:>{w}}" for c, w in zip(columns, widths, strict=True))]
    for label, row in counts.items():
        lines.append(
            f"{label:<8} " + " ".join(f"{row[c]:>{w},}" for c, w in zip(columns, widths, strict=True))
        )
    return lines
