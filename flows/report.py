"""The run report: Markdown and a self-contained HTML file, written to the store and to ``runs/<run-id>/``
with every figure beside them as ``figures/<name>.png`` (300 dpi) and ``.pdf``, and the tables also
returned as rows for Prefect table artifacts.

The report is a list of ``Section``s in four parts, assembled in this order whatever order they were
built in: the front matter (title, notes, the legend of pipeline codes), the results (tables), the
figures (one caption each), and the provenance (last; collapsible in HTML). A part of the report is a
function ``(ReportContext) -> Section | None`` in ``RESULT_SECTIONS``; a new table (the statistics
tables, say) is one more function in that list, and its figures go to ``ctx.figures``.
"""

from __future__ import annotations

import base64
import html as html_lib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from skingenbench.flows import quality_gate, report_artifacts, report_fairness
from skingenbench.flows.figures import (
    COLUMN_IN,
    TWO_COLUMN_IN,
    Figure,
    confusion_figure,
    embedding_figure,
    melanoma_roc_figure,
    raster_figure,
    safe_name,
)
from skingenbench.flows.grid import GENERATOR_NUMBERS, PREPROCESSING_LETTERS
from skingenbench.flows.reference_departures import departure_lines
from skingenbench.flows.report_dose_response import dose_response_section
from skingenbench.flows.report_sample_sizes import sample_size_lines, sample_size_results
from skingenbench.flows.report_tables import ClassifierSection, classifier_section
from skingenbench.services.classification.core.bootstrap import DEFAULT_RESAMPLES
from skingenbench.services.core.version import code_version
from skingenbench.services.platform.store import ObjectStore

FIGURES_DIR = "figures"  # beside report.md / report.html, locally and under the store's runs/<run-id>/
PARTS = ("front", "results", "figures", "provenance")  # the order of the report's parts


@dataclass
class Section:
    key: str  # a stable id (the HTML anchor): "data", "classifiers", "provenance", ...
    title: str  # its H2 heading ("" for the front matter, which follows the document title)
    body: str  # Markdown; headings inside start at H3
    part: str = "results"  # one of PARTS


@dataclass
class Report:
    markdown: str
    html: str
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)  # more files beside the report (grid.yaml)


@dataclass
class ReportContext:
    """What the section builders share: the inputs, and the tables and figures they add to."""

    store: ObjectStore
    run: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(
        default_factory=dict
    )  # test results by "<pipeline>/<clf>/<seed>"
    classifier_tables: ClassifierSection | None = None  # flows/report_tables.py, built by _classifiers

    def add_figure(self, figure: Figure) -> None:
        """Add a figure, its name made unique (a second ``roc`` becomes ``roc-2``)."""
        names = {f.name for f in self.figures}
        name, index = figure.name, 2
        while name in names:
            name, index = f"{figure.name}-{index}", index + 1
        self.figures.append(Figure(**{**figure.__dict__, "name": name}))

    def plot(
        self, name: str, caption: str, rendered: tuple[bytes, bytes], width_in: float = COLUMN_IN
    ) -> None:
        self.add_figure(Figure(safe_name(name), caption, rendered[0], rendered[1], width_in))

    def image(self, name: str, caption: str, png: bytes, group: str = "") -> None:
        """A service's image as a figure (same pixels, 300 dpi metadata, a PDF beside it)."""
        out_png, out_pdf, width = raster_figure(png)
        self.add_figure(Figure(safe_name(name), caption, out_png, out_pdf, width / 300, True, group))


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


def _bytes(store: ObjectStore, uri: str) -> bytes | None:
    try:
        return store.get_bytes(store.key_from_uri(uri))
    except Exception:
        return None


def _nested(markdown: str, top: int = 3) -> str:
    """A service's Markdown with its headings shifted so the highest is level ``top`` (a service's
    ``# Title`` inside the report's ``##`` section must not become a second document title)."""
    levels = [len(m.group(1)) for m in re.finditer(r"^(#{1,6})\s", markdown, flags=re.M)]
    if not levels:
        return markdown
    shift = top - min(levels)
    return re.sub(
        r"^(#{1,6})(?=\s)", lambda m: "#" * min(6, max(1, len(m.group(1)) + shift)), markdown, flags=re.M
    )


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


# The classifier tables' cells and columns: flows/report_tables.py.

# The pipeline codes (DESIGN.md, science rules): letter = preprocessing arm, digit = training data.
PREPROCESSING_MEANING = {
    "basic": "basic preprocessing (geometric: resize, crop)",
    "advanced": "advanced preprocessing (DullRazor hair removal and ruler-mark removal)",
}
TRAINING_DATA_MEANING = {
    1: "real images only",
    GENERATOR_NUMBERS["stylegan2_ada"]: "real + StyleGAN2-ADA synthetic melanomas",
    GENERATOR_NUMBERS["ddpm"]: "real + DDPM synthetic melanomas",
    4: "real + classic augmentation (no synthetic images)",
    GENERATOR_NUMBERS["dermgan"]: "real + DermGAN synthetic melanomas (this platform's addition)",
}


# -- front matter -----------------------------------------------------------------------------------------
def pipeline_legend() -> str:
    """The legend of the pipeline codes A1–A5/B1–B5 as Markdown."""
    letters = ", ".join(
        f"**{letter}** = {PREPROCESSING_MEANING[prep]}" for prep, letter in PREPROCESSING_LETTERS.items()
    )
    digits = "; ".join(f"**{n}** = {meaning}" for n, meaning in sorted(TRAINING_DATA_MEANING.items()))
    return (
        f"**Pipeline codes.** The letter is the preprocessing arm: {letters}. The digit is the training "
        f"data: {digits}. So A2 = basic preprocessing, real + StyleGAN2-ADA. Every pipeline is tested on "
        "the same held-out real test split of its arm."
    )


def _front(ctx: ReportContext) -> Section:
    run, grid = ctx.run, ctx.run["grid"]
    lines = [
        f"Grid `{grid['name']}` (profile `{grid['profile']}`), data `{grid['data']['source']}`, "
        f"code {code_version()}. Results first (tables, then figures); provenance at the end.",
        "",
    ]
    lines += departure_lines(ctx.store, run)  # random-init classifiers, generators from scratch: first
    lines += [f"> **Note:** {note}" for note in run.get("notes", [])]
    lines += sample_size_lines(
        run
    )  # the synthetic counts (training mix, evaluation) and sample-size warnings
    lines += ["", pipeline_legend(), ""]
    return Section("overview", "", "\n".join(lines), "front")


# -- results -------------------------------------------------------------------------------------------------
def _data(ctx: ReportContext) -> Section:
    run = ctx.run
    ctx.tables["curation"] = _counts_rows(run["curation"])
    manifest = run["split"]["manifest"]
    body = [
        _table(ctx.tables["curation"]),
        f"Split manifest: `{manifest['uri']}` (sha256 `{manifest['sha256'][:16]}…`)",
    ]
    return Section("data", "Data and splits", "\n".join(body))


def _preprocessing(ctx: ReportContext) -> Section:
    run = ctx.run
    ctx.tables["preprocessing"] = [
        {
            "arm": prep,
            "manifest": kind,
            "items": arm[kind]["result"].get("item_count"),
            "skipped": arm[kind]["result"].get("skipped"),
        }
        for prep, arm in run["arms"].items()
        for kind in ("all", "train", "augmented")
        if kind in arm  # a run of selected pipelines makes only the manifests they need
    ]
    body = [_table(ctx.tables["preprocessing"])]
    for prep, quality in run.get("quality", {}).items():
        body += [
            f"### Artifact removal on phantom ground truth: `{prep}`",
            "",
            _nested(_text(ctx.store, quality["outputs"]["report_md"]), 4),
            "",
        ]
    ctx.tables["artifact_removal"] = [
        {"pipeline": prep, **{k: round(v, 3) for k, v in q["result"].items()}}
        for prep, q in run.get("quality", {}).items()
    ]
    return Section("preprocessing", "Preprocessing", "\n".join(body))


EVALUATION_IMAGE_CAPTIONS = {
    "samples": "Randomly chosen images of {set}",
    "memorization": "The images of {set} closest to a real training melanoma, closest first (synthetic "
    "left, nearest real right; feature distance and SSIM above each pair)",
    "anchoring": "Histogram of the confidence of the arm's real-only classifier that each synthetic image "
    "shows the intended class, per synthetic set",
}
# The order of an evaluation's figures: feature space, then samples, memorization, class anchoring.
EVALUATION_FIGURE_ORDER = ("pca", "tsne", "samples", "memorization", "anchoring")


def _evaluation_figures(ctx: ReportContext, prep: str, evaluation: dict[str, Any]) -> None:
    """PCA/t-SNE redrawn for print from the points the evaluation stored (its own PNG where it stored
    none), and its image grids as they are."""
    report = (
        _json(ctx.store, evaluation["outputs"].get("report_json", ""))
        if "report_json" in evaluation["outputs"]
        else {}
    )
    spaces = report.get("feature_space", {}) if isinstance(report.get("feature_space"), dict) else {}
    redrawn = set()
    for space, numbers in spaces.items():
        points = numbers.get("points", {}) if isinstance(numbers, dict) else {}
        explained = numbers.get("pca_explained_variance", [])
        if points.get("pca"):
            labels = [f"PC{i + 1} ({v:.0%} of variance)" for i, v in enumerate(explained)] + ["", ""]
            ctx.plot(
                f"pca-{space}-{prep}",
                f"PCA of the {space} features: the {prep} arm's real training melanomas (grey) and each "
                f"synthetic set; points per set in the legend.",
                embedding_figure(points["pca"], f"PCA, {space} features, {prep} arm", labels[:2]),
            )
            redrawn.add(f"pca_{space}")
        if points.get("tsne"):
            perplexity = numbers.get("tsne_perplexity")
            ctx.plot(
                f"tsne-{space}-{prep}",
                f"t-SNE of the {space} features (perplexity {perplexity:.1f}): the {prep} arm's real "
                "training melanomas (grey) and each synthetic set."
                if isinstance(perplexity, (int, float))
                else f"t-SNE of the {space} features, {prep} arm: real (grey) and each synthetic set.",
                embedding_figure(
                    points["tsne"], f"t-SNE, {space} features, {prep} arm", ("t-SNE 1", "t-SNE 2")
                ),
            )
            redrawn.add(f"tsne_{space}")

    def order(entry: tuple[str, str]) -> tuple[int, str]:
        kind = entry[0].split("_", 1)[0]
        return (EVALUATION_FIGURE_ORDER.index(kind) if kind in EVALUATION_FIGURE_ORDER else 99, entry[0])

    for name, uri in sorted(evaluation["outputs"].items(), key=order):
        if name in redrawn or not uri.endswith(".png"):
            continue
        png = _bytes(ctx.store, uri)
        if png is None:
            continue
        kind, _, set_name = name.partition("_")
        if kind in ("samples", "memorization"):
            caption = EVALUATION_IMAGE_CAPTIONS[kind].format(set=f"`{set_name}`") + f" ({prep} arm)."
        elif name.startswith("anchoring"):
            caption = EVALUATION_IMAGE_CAPTIONS["anchoring"] + f" ({prep} arm)."
        elif kind in ("pca", "tsne"):
            caption = f"{kind.upper() if kind == 'pca' else 't-SNE'} of the {set_name} features, {prep} arm."
        else:
            caption = f"Evaluation output `{name}`, {prep} arm."
        ctx.image(f"{name}-{prep}", caption, png)


def _generative(ctx: ReportContext) -> Section:
    run, body = ctx.run, []
    if run.get("generators"):
        ctx.tables["synthetic_sets"] = [
            {"set": name, "images": r["manifest"]["item_count"], "manifest": r["manifest"]["uri"]}
            for name, r in run["generators"].items()
        ]
        body.append(_table(ctx.tables["synthetic_sets"]))
    else:
        body.append("_no generator ran_")
    for prep, evaluation in run.get("evaluations", {}).items():
        body += [
            f"### Generative metrics: `{prep}`",
            "",
            _nested(_text(ctx.store, evaluation["outputs"].get("report_md", "")), 4),
            "",
        ]
        _evaluation_figures(ctx, prep, evaluation)
    return Section("generative", "Generative models", "\n".join(body))


def _controllability(ctx: ReportContext) -> Section | None:
    """DermGAN: requested vs measured per attribute, and whether a real-data classifier sees the class."""
    controls = ctx.run.get("controllability", {})
    if not controls:
        return None
    md, rows = [], []
    for prep, control in controls.items():
        report = _json(ctx.store, control["outputs"]["report_json"])
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
        text = _nested(_text(ctx.store, control["outputs"]["report_md"]), 3)
        md += [re.sub(r"^### ", f"### `{prep}`: ", text, count=1, flags=re.M), ""]
        if "montage" in control["outputs"]:
            png = _bytes(ctx.store, control["outputs"]["montage"])
            if png is not None:
                ctx.image(
                    f"dermgan-montage-{prep}",
                    f"DermGAN, {prep} arm: images drawn for a requested skin tone (rows, dark to light) "
                    "and lesion size (columns).",
                    png,
                )
        anchoring = control.get("anchoring")
        if anchoring:
            body = _json(ctx.store, anchoring["outputs"]["report_json"]).get("class_anchoring", {})
            for result in body.values():
                shares = ", ".join(
                    f"{label} {r['share_intended']:.1%} (n={r['count']})"
                    for label, r in result.get("per_label", {}).items()
                )
                md += [f"Classified as the requested class by the arm's real-only classifier: {shares}.", ""]
        else:
            md += ["_Class anchoring not run (no evaluation service or no real-only classifier)._", ""]
    ctx.tables["controllability"] = rows
    return Section("controllability", "DermGAN controllability", "\n".join(md))


def _classifiers(ctx: ReportContext) -> Section:
    """Per cell the mean over seeds, per seed the test jobs' numbers (flows/report_tables.py: the same
    code `skingenbench report check` rebuilds the tables with from the stored predictions)."""
    comparisons = {
        key: _json(ctx.store, comparison["outputs"]["comparison_json"])
        for key, comparison in ctx.run.get("comparisons", {}).items()
    }
    resamples = int(ctx.run["grid"].get("bootstrap_samples") or DEFAULT_RESAMPLES)
    ctx.classifier_tables = classifier_section(ctx.results, comparisons, resamples)
    ctx.tables.update(ctx.classifier_tables.tables)
    _classifier_figures(ctx)
    return Section("classifiers", "Classifiers", "\n".join(ctx.classifier_tables.markdown))


def _paired_tests(ctx: ReportContext) -> Section:
    """Every paired comparison, one table per pipeline pair, with raw and Holm-adjusted p-values."""
    body = ctx.classifier_tables.paired_markdown if ctx.classifier_tables else ["_no comparisons_"]
    return Section("paired-tests", "Against each arm's real-only baseline (paired tests)", "\n".join(body))


def _gradcam_figures(ctx: ReportContext) -> None:
    """One figure per Grad-CAM overlay, each captioned with its classifier, pipeline, true and predicted
    class (the overlay explains the predicted class)."""
    for pipeline, cam in sorted(ctx.run.get("gradcams", {}).items()):
        manifest = _json(ctx.store, cam["manifest"]["uri"])
        config = manifest.get("provenance", {}).get("config", {})
        classifier = config.get("classifier", "")
        for item in manifest.get("items", [])[:6]:
            png = _bytes(ctx.store, ctx.store.uri(item["key"])) if "key" in item else None
            if png is None:
                continue
            meta = item.get("meta", {})
            predicted, probability = meta.get("explained_class", "?"), meta.get("probability")
            shown = f" (p = {probability:.2f})" if isinstance(probability, (int, float)) else ""
            image_id = item.get("image_id", "").removesuffix("_gradcam")
            layer = meta.get("target_layer", config.get("layer", "?"))
            ctx.image(
                f"gradcam-{pipeline}-{classifier}-{image_id}",
                f"Grad-CAM of {classifier} trained on pipeline {pipeline} (layer `{layer}`) on test "
                f"image `{image_id}`: true class {item.get('label', '?')}, predicted {predicted}{shown}; "
                "the map explains the predicted class.",
                png,
                group=f"gradcam-{pipeline}",
            )


def _classifier_figures(ctx: ReportContext) -> None:
    """Melanoma ROC curves per arm and confusion matrices per arm, for the first classifier and seed."""
    usable = {key: r for key, r in ctx.results.items() if "predictions" in r and "confusion_matrix" in r}
    if not usable:
        return
    reference = sorted(usable)[0].split("/", 1)[1]  # "<classifier>/<seed>" of the first cell
    classifier, _, seed = reference.partition("/")
    chosen = {key.split("/", 1)[0]: r for key, r in usable.items() if key.split("/", 1)[1] == reference}
    for arm in sorted({pipeline[0] for pipeline in chosen}):
        arm_results = {p: r for p, r in chosen.items() if p.startswith(arm)}
        ctx.plot(
            f"roc-{arm}-{classifier}-{seed}",
            f"Melanoma one-vs-rest ROC curves of {classifier} ({seed}) on the arm-{arm} test split, one "
            f"curve per pipeline {', '.join(sorted(arm_results))}; AUC in the legend, chance as a dashed line.",
            melanoma_roc_figure(arm_results, f"Melanoma vs rest, arm {arm}, {classifier}"),
        )
    for arm in sorted({pipeline[0] for pipeline in chosen}):
        arm_results = {p: r for p, r in chosen.items() if p.startswith(arm)}
        ctx.plot(
            f"confusion-{arm}-{classifier}-{seed}",
            f"Confusion matrices of {classifier} ({seed}) on the arm-{arm} test split, pipelines "
            f"{', '.join(sorted(arm_results))}: counts, shaded by the share of the true class.",
            confusion_figure(arm_results, f"{classifier}, arm {arm}"),
            TWO_COLUMN_IN if len(arm_results) > 2 else COLUMN_IN,
        )


# The result sections in report order (after the front matter, before the figures and provenance).
RESULT_SECTIONS: list[Callable[[ReportContext], Section | None]] = [
    _data,
    _preprocessing,
    _generative,
    _controllability,
    _classifiers,
    _paired_tests,
    quality_gate.report_section,
    dose_response_section,
    report_fairness.report_section,
    report_artifacts.report_section,
]


# -- figures ---------------------------------------------------------------------------------------------
def figure_path(figure: Figure, suffix: str) -> str:
    """Where a figure's file is, relative to the report: ``figures/<name>.<suffix>``."""
    return f"{FIGURES_DIR}/{figure.name}.{suffix}"


def _figures_markdown(figures: list[Figure]) -> str:
    if not figures:
        return "_no figures_\n"
    lines = []
    for number, figure in enumerate(figures, 1):
        lines += [
            f"![Figure {number}]({figure_path(figure, 'png')})",
            "",
            f"**Figure {number}.** {figure.caption} "
            f"([PDF]({figure_path(figure, 'pdf')}), [PNG 300 dpi]({figure_path(figure, 'png')}))",
            "",
        ]
    return "\n".join(lines)


def _figures_html(figures: list[Figure]) -> str:
    if not figures:
        return "<p>no figures</p>"
    out, group = [], None
    for number, figure in enumerate(figures, 1):
        if figure.group != group:
            if group:
                out.append("</div>")
            if figure.group:
                out.append(f"<div class='figure-group' id='{html_lib.escape(figure.group)}'>")
            group = figure.group or None
        data = base64.b64encode(figure.png).decode()
        # Plots at their print width; service images at their natural pixel size, smoothly scaled.
        size = (
            f"width:{int(round(figure.width_in * 300))}px" if figure.raster else f"width:{figure.width_in}in"
        )
        caption = re.sub(r"`([^`]+)`", r"<code>\1</code>", html_lib.escape(figure.caption))
        alt = html_lib.escape(figure.caption.replace("`", ""))
        out.append(
            f"<figure id='fig-{html_lib.escape(figure.name)}'>"
            f"<img src='data:image/png;base64,{data}' alt='Figure {number}. {alt}' style='{size}'>"
            f"<figcaption><b>Figure {number}.</b> {caption} "
            f"<a href='{html_lib.escape(figure_path(figure, 'pdf'))}'>PDF</a> · "
            f"<a href='{html_lib.escape(figure_path(figure, 'png'))}'>PNG</a></figcaption></figure>"
        )
    if group:
        out.append("</div>")
    return "\n".join(out)


# -- provenance --------------------------------------------------------------------------------------------
PROVENANCE_LIBRARIES = (
    "torch",
    "torchvision",
    "timm",
    "diffusers",
    "torch-fidelity",
    "scikit-learn",
    "numpy",
    "scipy",
    "scikit-image",
    "opencv-python-headless",
    "pillow",
    "safetensors",
    "grpcio",
    "protobuf",
)


def _short(sha256: Any) -> str:
    return f"`{sha256}`" if isinstance(sha256, str) and sha256 else "—"


def _provenance(ctx: ReportContext) -> Section:
    run = ctx.run
    services: dict[str, dict[str, Any]] = run.get("services", {})
    endpoints = run.get("endpoints", {})
    md = [
        "Everything needed to rerun a cell: the code, the packages and device of each service, the "
        "checksums of every input and weights file, and the grid itself.",
        "",
        "### Code and services",
        "",
        f"Report written by code {code_version()}.",
        "",
        _table(
            [
                {
                    "service": stage,
                    "code version": info.get("code_version", ""),
                    "device": info.get("device", ""),
                    "dtype": info.get("dtype") or ("not reported" if "dtype" not in info else "no torch"),
                    "job slots": info.get("job_slots", ""),
                    "endpoints": ", ".join(endpoints.get(stage, [])),
                }
                for stage, info in services.items()
            ]
        ),
    ]
    libraries = sorted(
        {name for info in services.values() for name in info.get("libraries", {})},
        key=lambda n: (PROVENANCE_LIBRARIES.index(n) if n in PROVENANCE_LIBRARIES else 99, n),
    )
    md += ["### Package versions", ""]
    if libraries:
        ctx.tables["package_versions"] = [
            {"package": name, **{s: info.get("libraries", {}).get(name, "—") for s, info in services.items()}}
            for name in libraries
        ]
        md.append(_table(ctx.tables["package_versions"]))
    else:
        md.append("_the services did not report package versions (older servers)_\n")
    for prep, evaluation in run.get("evaluations", {}).items():
        report = (
            _json(ctx.store, evaluation["outputs"].get("report_json", ""))
            if "report_json" in evaluation["outputs"]
            else {}
        )
        recorded = report.get("provenance", {}).get("libraries")
        if recorded:
            versions = ", ".join(f"{k} {v}" for k, v in sorted(recorded.items()))
            md += [f"Evaluation job `{prep}` recorded: {versions}.", ""]

    md += ["### Data", ""]
    data_rows = [
        {
            "what": f"import {i.get('result', {}).get('source', '') or n}",
            "manifest": m["uri"],
            "sha256": _short(m.get("sha256")),
        }
        for n, i in enumerate(run.get("imported", []))
        if (m := i.get("manifest"))
    ]
    split_manifest = run.get("split", {}).get("manifest")
    if split_manifest:
        data_rows.append(
            {
                "what": "split",
                "manifest": split_manifest["uri"],
                "sha256": _short(split_manifest.get("sha256")),
            }
        )
    for prep, arm in run.get("arms", {}).items():
        for kind, entry in arm.items():
            if isinstance(entry, dict) and "manifest" in entry:
                data_rows.append(
                    {
                        "what": f"{prep} {kind}",
                        "manifest": entry["manifest"]["uri"],
                        "sha256": _short(entry["manifest"].get("sha256")),
                    }
                )
    md.append(_table(data_rows))

    md += ["### Generators and synthetic sets", ""]
    generator_rows = []
    models = run.get("generator_models", {})
    for name, sample in run.get("generators", {}).items():
        trained = models.get(name, {})
        summary = trained.get("result", {}) if isinstance(trained.get("result"), dict) else {}
        generator_rows.append(
            {
                "set": name,
                "model": trained.get("model", {}).get("uri", "—"),
                "model sha256": _short(trained.get("model", {}).get("sha256")),
                "samples manifest sha256": _short(sample.get("manifest", {}).get("sha256")),
                # what the training job reports about itself (steps, device, start weights ...)
                **{
                    k: v
                    for k, v in sorted(summary.items())
                    if k != "model_uri" and isinstance(v, (str, int, float, bool))
                },
            }
        )
    md.append(_table(generator_rows) if generator_rows else "_no generator ran_\n")

    md += ["### Classifier cells", ""]
    cell_rows = []
    for key, result in sorted(ctx.results.items()):
        cell = result.get("run", {}) if isinstance(result.get("run"), dict) else {}
        weights = {
            k: v
            for k, v in cell.items()
            if ("weights" in k or "pretrained" in k) and isinstance(v, (str, int, float, bool))
        }
        cell_rows.append(
            {
                "cell": key,
                "profile": cell.get("profile", ""),
                "regime": cell.get("regime", ""),
                "seed": cell.get("seed", ""),
                "checkpoint sha256": _short(result.get("checkpoint", {}).get("sha256")),
                "test data sha256": _short(result.get("data", {}).get("sha256")),
                "start weights": ", ".join(f"{k}={v}" for k, v in sorted(weights.items())) or "—",
            }
        )
    ctx.tables["classifier_provenance"] = cell_rows
    md.append(_table(cell_rows))

    extractor_rows = []
    for prep, evaluation in run.get("evaluations", {}).items():
        report = (
            _json(ctx.store, evaluation["outputs"].get("report_json", ""))
            if "report_json" in evaluation["outputs"]
            else {}
        )
        provenance = report.get("provenance", {})
        for role in ("extractor", "domain_extractor"):
            extractor = provenance.get(role)
            if isinstance(extractor, dict):
                extractor_rows.append(
                    {
                        "arm": prep,
                        "role": role.replace("_", " "),
                        "extractor": extractor.get("extractor", extractor.get("name", "")),
                        "weights": extractor.get("weights_file", ""),
                        "weights sha256": _short(extractor.get("weights_sha256")),
                        "device": extractor.get("device", ""),
                    }
                )
    if extractor_rows:
        md += ["### Feature extractors (generative metrics)", "", _table(extractor_rows)]

    grid_yaml = yaml.safe_dump(run["grid"], sort_keys=False)
    md += [
        "### The grid",
        "",
        "Saved beside this report as `grid.yaml`; `skingenbench run --grid grid.yaml` reruns it (every "
        "output is content-addressed, so finished cells are reused and only changed ones run again).",
        "",
        "```yaml",
        grid_yaml.rstrip(),
        "```",
        "",
        "### Raw inputs of this report",
        "",
        "```json",
        json.dumps(
            {"endpoints": endpoints, "services": services, "imported": run.get("imported", [])}, indent=1
        ),
        "```",
    ]
    return Section("provenance", "Provenance", "\n".join(md), "provenance")


# -- assembly ----------------------------------------------------------------------------------------------
def _ordered(sections: list[Section]) -> list[Section]:
    return sorted(sections, key=lambda s: PARTS.index(s.part))  # stable: build order within a part


def _markdown(title: str, sections: list[Section]) -> str:
    out = [f"# {title}", ""]
    for section in sections:
        if section.title:
            out += [f"## {section.title}", ""]
        out += [section.body.rstrip(), ""]
    return "\n".join(out) + "\n"


HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.4}"
    "table{border-collapse:collapse;font-size:.85em;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
    "figure{margin:1em 0}figure img{max-width:100%;height:auto;image-rendering:auto}"
    "figcaption{font-size:.9em;max-width:7in}.figure-group{display:flex;flex-wrap:wrap;gap:1em}"
    ".figure-group figure{margin:.5em 0;max-width:3.5in}"
    "details{margin-top:2em;border-top:1px solid #ccc}summary{cursor:pointer;font-size:1.4em;font-weight:bold;"
    "padding:.5em 0}pre{overflow-x:auto;font-size:.8em}"
)


def _html(title: str, sections: list[Section], figures: list[Figure]) -> str:
    import markdown as markdown_lib

    def convert(text: str) -> str:
        return markdown_lib.markdown(text, extensions=["tables", "fenced_code"])

    parts = [f"<h1>{html_lib.escape(title)}</h1>"]
    for section in sections:
        anchor = html_lib.escape(section.key)
        if section.part == "figures":
            parts.append(
                f"<section id='{anchor}'><h2>{html_lib.escape(section.title)}</h2>{_figures_html(figures)}</section>"
            )
        elif section.part == "provenance":
            parts.append(
                f"<details id='{anchor}'><summary>{html_lib.escape(section.title)}</summary>"
                f"{convert(section.body)}</details>"
            )
        else:
            heading = f"<h2>{html_lib.escape(section.title)}</h2>" if section.title else ""
            parts.append(f"<section id='{anchor}'>{heading}{convert(section.body)}</section>")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html_lib.escape(title)}</title>"
        f"<style>{HTML_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )


def build_report(store: ObjectStore, run: dict[str, Any]) -> Report:
    ctx = ReportContext(store, run)
    ctx.results = {
        key: _metrics_section(_json(store, r["outputs"]["result_json"])) for key, r in run["tests"].items()
    }
    sections = [_front(ctx)]
    sections += [s for build in RESULT_SECTIONS if (s := build(ctx)) is not None]
    _gradcam_figures(ctx)
    sections.append(Section("figures", "Figures", _figures_markdown(ctx.figures), "figures"))
    sections.append(_provenance(ctx))
    sections = _ordered(sections)
    title = f"SkinGenBench report — {run['run_id']}"
    return Report(
        _markdown(title, sections),
        _html(title, sections, ctx.figures),
        ctx.tables,
        {
            "results": ctx.results,
            "statistics": ctx.classifier_tables.statistics if ctx.classifier_tables else {},
            **sample_size_results(run),
        },
        ctx.figures,
        sections,
        {
            "grid.yaml": yaml.safe_dump(run["grid"], sort_keys=False).encode(),
            # the run's inputs (job outputs by cell): what `skingenbench report check` recomputes from
            "run.json": json.dumps(run, indent=1, default=str).encode(),
        },
    )


def write_report(
    store: ObjectStore, folder: Path | None, run_id: str, report: Report, prefix: str = "runs"
) -> Path | None:
    """Write the report to the store (``<prefix>/<run-id>/``) and, unless ``folder`` is None, to that
    local folder: figures first, then the files that reference them, report.md (the index) last."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, bytes] = {}
    for figure in report.figures:
        files[figure_path(figure, "png")] = figure.png
        files[figure_path(figure, "pdf")] = figure.pdf
    files.update(report.files)
    files.update(
        {
            "report.html": report.html.encode(),
            "tables.json": json.dumps(report.tables, indent=1).encode(),
            "results.json": json.dumps(report.results, indent=1, default=str).encode(),
            "report.md": report.markdown.encode(),
        }
    )
    base = f"{prefix.strip('/')}/{run_id}" if prefix.strip("/") else run_id
    for name, data in files.items():
        if folder is not None:
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
        store.put_bytes(f"{base}/{name}", data)
    return folder
