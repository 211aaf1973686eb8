"""The run report: Markdown and a self-contained HTML file (figures embedded), written to the store
and to ``runs/<run-id>/``, with the tables also returned as rows for Prefect table artifacts."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skingenbench.services.core.version import code_version
from skingenbench.services.platform.store import ObjectStore


@dataclass
class Report:
    markdown: str
    html: str
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)


def _json(store: ObjectStore, uri: str) -> dict[str, Any]:
    try:
        return json.loads(store.get_bytes(store.key_from_uri(uri)))
    except Exception as exc:  # a report must still be written when one input is unreadable
        return {"error": f"unreadable: {exc}"}


def _text(store: ObjectStore, uri: str) -> str:
    try:
        return store.get_bytes(store.key_from_uri(uri)).decode()
    except Exception as exc:
        return f"_unreadable: {exc}_"


def _table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    if not rows:
        return "_nothing to show_\n"
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(row.get(c, "")) for c in columns) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _counts_rows(curation: dict[str, Any]) -> list[dict[str, Any]]:
    counts = curation.get("counts", {})
    return [
        {"class": label, **{s: counts[label].get(s, 0) for s in ("train", "val", "test", "total")}}
        for label in counts
    ]


def _metrics_section(results: dict[str, Any]) -> dict[str, Any]:
    """The evaluate_predictions part of a test result, wherever the service nests it."""
    for key in ("metrics", "evaluation"):
        if isinstance(results.get(key), dict) and "global" in results[key]:
            return results[key]
    return results


def _cell(entry: Any) -> str:
    if isinstance(entry, dict) and "value" in entry:
        value, low, high = entry.get("value"), entry.get("ci_low"), entry.get("ci_high")
        if value is None:
            return "n/a"
        return (
            f"{value:.3f} [{low:.3f}, {high:.3f}]" if low is not None and high is not None else f"{value:.3f}"
        )
    return "" if entry is None else str(entry)


GLOBAL_COLUMNS = ["macro_f1", "balanced_accuracy", "mcc", "roc_auc", "accuracy", "brier"]
MELANOMA_COLUMNS = ["f1", "sensitivity", "specificity", "precision", "roc_auc", "pr_auc", "dor"]


def _embed_pngs(store: ObjectStore, manifest_uri: str, limit: int = 6) -> list[str]:
    try:
        manifest = json.loads(store.get_bytes(store.key_from_uri(manifest_uri)))
    except Exception:
        return []
    images = []
    for item in manifest.get("items", [])[:limit]:
        data = store.get_bytes(item["key"])
        images.append(base64.b64encode(data).decode())
    return images


def build_report(store: ObjectStore, run: dict[str, Any]) -> Report:
    grid = run["grid"]
    md: list[str] = [f"# SkinGenBench report — {run['run_id']}", ""]
    md.append(
        f"Grid `{grid['name']}` (profile `{grid['profile']}`), data `{grid['data']['source']}`, "
        f"code {code_version()}."
    )
    md.append("")
    for note in run.get("notes", []):
        md.append(f"> **Note:** {note}")
    tables: dict[str, list[dict[str, Any]]] = {}
    figures: list[tuple[str, str]] = []

    md += ["", "## Data and splits", ""]
    tables["curation"] = _counts_rows(run["curation"])
    md.append(_table(tables["curation"]))
    md.append(
        f"Split manifest: `{run['split']['manifest']['uri']}` (sha256 `{run['split']['manifest']['sha256'][:16]}…`)"
    )

    md += ["", "## Preprocessing", ""]
    tables["preprocessing"] = [
        {
            "arm": prep,
            "manifest": kind,
            "items": arm[kind]["result"].get("item_count"),
            "skipped": arm[kind]["result"].get("skipped"),
        }
        for prep, arm in run["arms"].items()
        for kind in ("all", "train", "augmented")
    ]
    md.append(_table(tables["preprocessing"]))
    for prep, quality in run.get("quality", {}).items():
        md += [
            f"### Artifact removal on phantom ground truth: `{prep}`",
            "",
            _text(store, quality["outputs"]["report_md"]),
            "",
        ]
    tables["artifact_removal"] = [
        {"pipeline": prep, **{k: round(v, 3) for k, v in q["result"].items()}}
        for prep, q in run.get("quality", {}).items()
    ]

    md += ["", "## Generative models", ""]
    if run.get("generators"):
        tables["synthetic_sets"] = [
            {"set": name, "images": r["manifest"]["item_count"], "manifest": r["manifest"]["uri"]}
            for name, r in run["generators"].items()
        ]
        md.append(_table(tables["synthetic_sets"]))
    else:
        md.append("_no generator ran_")
    for prep, evaluation in run.get("evaluations", {}).items():
        md += [
            f"### Generative metrics: `{prep}`",
            "",
            _text(store, evaluation["outputs"].get("report_md", "")),
            "",
        ]
        for name, uri in evaluation["outputs"].items():
            if uri.endswith(".png"):
                figures.append(
                    (f"{prep}: {name}", base64.b64encode(store.get_bytes(store.key_from_uri(uri))).decode())
                )

    md += _controllability_section(store, run.get("controllability", {}), tables, figures)

    md += ["", "## Classifiers", ""]
    results = {
        key: _metrics_section(_json(store, r["outputs"]["result_json"])) for key, r in run["tests"].items()
    }
    by_pipeline: dict[str, dict[str, Any]] = {}
    for key, result in results.items():
        pipeline, classifier, seed = key.split("/")
        by_pipeline.setdefault(pipeline, {})[f"{classifier} {seed}"] = result
    global_rows, melanoma_rows = [], []
    for pipeline in sorted(by_pipeline):
        for model, result in sorted(by_pipeline[pipeline].items()):
            global_rows.append(
                {
                    "pipeline": pipeline,
                    "model": model,
                    **{c: _cell(result.get("global", {}).get(c)) for c in GLOBAL_COLUMNS},
                }
            )
            melanoma_rows.append(
                {
                    "pipeline": pipeline,
                    "model": model,
                    **{c: _cell(result.get("melanoma", {}).get(c)) for c in MELANOMA_COLUMNS},
                }
            )
    tables["global_metrics"], tables["melanoma_metrics"] = global_rows, melanoma_rows
    md += [
        "### Global metrics (95% bootstrap CI over test images)",
        "",
        _table(global_rows),
        "### Melanoma one-vs-rest",
        "",
        _table(melanoma_rows),
    ]
    comparison_rows = []
    for key, comparison in run.get("comparisons", {}).items():
        body = _json(store, comparison["outputs"]["comparison_json"])
        row = {"cell": key}
        for name, value in body.items():
            if isinstance(value, dict):
                for field_name in ("difference", "p_value"):
                    if field_name in value and isinstance(value[field_name], (int, float)):
                        row[f"{name} {field_name}"] = round(float(value[field_name]), 4)
        comparison_rows.append(row)
    tables["paired_tests"] = comparison_rows
    md += ["### Against each arm's real-only baseline (paired tests)", "", _table(comparison_rows)]
    figures += _classifier_figures(results)
    for name, cam in run.get("gradcams", {}).items():
        for png in _embed_pngs(store, cam["manifest"]["uri"]):
            figures.append((f"Grad-CAM {name}", png))

    md += [
        "",
        "## Provenance",
        "",
        "```json",
        json.dumps(
            {
                "grid": grid,
                "endpoints": run.get("endpoints", {}),
                "services": run.get("services", {}),
                "imported": run["imported"],
            },
            indent=1,
        ),
        "```",
    ]
    markdown = "\n".join(md) + "\n"
    return Report(markdown, _html(run["run_id"], markdown, figures), tables, {"results": results})


def _controllability_section(
    store: ObjectStore,
    controls: dict[str, Any],
    tables: dict[str, list[dict[str, Any]]],
    figures: list[tuple[str, str]],
) -> list[str]:
    """DermGAN: requested vs measured per attribute, and whether a real-data classifier sees the class."""
    if not controls:
        return []
    md, rows = ["", "## DermGAN controllability", ""], []
    for prep, control in controls.items():
        report = _json(store, control["outputs"]["report_json"])
        for attribute, agreement in report.get("attributes", {}).items():
            rows.append(
                {
                    "arm": prep,
                    "attribute": attribute,
                    "measured": agreement.get("count"),
                    "failures": agreement.get("failures"),
                    **{
                        k: None if agreement.get(k) is None else round(agreement[k], 4)
                        for k in ("mean_absolute_error", "bias", "pearson", "spearman")
                    },
                }
            )
        md += [_text(store, control["outputs"]["report_md"]).replace("### ", f"### `{prep}`: ", 1), ""]
        if "montage" in control["outputs"]:
            png = store.get_bytes(store.key_from_uri(control["outputs"]["montage"]))
            figures.append(
                (
                    f"DermGAN {prep}: requested tone (rows, dark to light) x lesion size (columns)",
                    base64.b64encode(png).decode(),
                )
            )
        anchoring = control.get("anchoring")
        if anchoring:
            body = _json(store, anchoring["outputs"]["report_json"]).get("class_anchoring", {})
            for result in body.values():
                shares = ", ".join(
                    f"{label} {r['share_intended']:.1%} (n={r['count']})"
                    for label, r in result.get("per_label", {}).items()
                )
                md += [f"Classified as the requested class by the arm's real-only classifier: {shares}.", ""]
        else:
            md += ["_Class anchoring not run (no evaluation service or no real-only classifier)._", ""]
    tables["controllability"] = rows
    return md


def _classifier_figures(results: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """Melanoma ROC curves per arm and confusion matrices, for the first classifier and seed."""
    from skingenbench.flows.figures import confusion_png, melanoma_roc_png

    usable = {key: r for key, r in results.items() if "predictions" in r and "confusion_matrix" in r}
    if not usable:
        return []
    reference = sorted(usable)[0].split("/", 1)[1]  # "<classifier>/<seed>" of the first cell
    chosen = {key.split("/", 1)[0]: r for key, r in usable.items() if key.split("/", 1)[1] == reference}
    figures = []
    for arm in sorted({pipeline[0] for pipeline in chosen}):
        arm_results = {p: r for p, r in chosen.items() if p.startswith(arm)}
        figures.append(
            (
                f"melanoma ROC, arm {arm}, {reference}",
                melanoma_roc_png(arm_results, f"MEL one-vs-rest, arm {arm}"),
            )
        )
    for pipeline, result in sorted(chosen.items()):
        figures.append((f"confusion matrix {pipeline} {reference}", confusion_png(result, pipeline)))
    return figures


def _html(run_id: str, markdown: str, figures: list[tuple[str, str]]) -> str:
    import html

    import markdown as markdown_lib

    body = markdown_lib.markdown(markdown, extensions=["tables", "fenced_code"])
    images = "".join(
        f'<figure><img src="data:image/png;base64,{png}" alt="{html.escape(title)}">'
        f"<figcaption>{html.escape(title)}</figcaption></figure>"
        for title, png in figures
    )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:3px 6px}"
        "figure{display:inline-block;margin:.5em}img{max-width:256px;image-rendering:pixelated}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>SkinGenBench {html.escape(run_id)}</title>"
        f"<style>{style}</style></head><body>{body}<h2>Figures</h2>{images or '<p>none</p>'}</body></html>"
    )


def write_report(store: ObjectStore, folder: Path, run_id: str, report: Report) -> Path:
    """Write the report locally and to the store (``runs/<run-id>/``): files first, index last."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "report.html": report.html.encode(),
        "tables.json": json.dumps(report.tables, indent=1).encode(),
        "results.json": json.dumps(report.results, indent=1, default=str).encode(),
        "report.md": report.markdown.encode(),
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
        store.put_bytes(f"runs/{run_id}/{name}", data)
    return folder
