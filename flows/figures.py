"""Report figures for print: melanoma ROC curves, confusion matrices and feature-space embeddings drawn
here, and the services' image grids (Grad-CAM overlays, sample grids, montages) passed through.

Every figure is a ``Figure``: a PNG at 300 dpi (the resolution journals ask for, recorded in the PNG's
pHYs chunk) and a PDF (vector for plots), sized for a journal column (3.5 in) or the full text width
(7 in), with 7–8 pt type and the legend outside the axes so it never hides data. The plots are computed
from the per-image predictions in each test result (numpy + matplotlib only: the flow has no torch), so
every curve is traceable to the predictions file beside it. Matplotlib is used through its object API
(``matplotlib.figure.Figure``), never pyplot's global state, so rendering is safe off the main thread.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DPI = 300
COLUMN_IN = 3.5  # one journal column
TWO_COLUMN_IN = 7.0  # the full text width
# Type sizes for print at the sizes above (journals ask for 6–8 pt at final size).
PRINT_STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "legend.fontsize": 7,
    "lines.linewidth": 1.0,
    "axes.linewidth": 0.6,
    "pdf.fonttype": 42,  # TrueType in the PDF: text stays text (editable, searchable)
    "svg.fonttype": "none",
}
# Colour-blind-safe (Okabe–Ito) colours, one per pipeline or synthetic set; real data is grey.
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
REAL_COLOUR = "0.6"


@dataclass(frozen=True)
class Figure:
    """One figure of the report: written as ``figures/<name>.png`` and ``figures/<name>.pdf``."""

    name: str  # file stem (letters, digits, ``-`` and ``_``), unique within a report
    caption: str  # what the figure shows, unique within a report
    png: bytes
    pdf: bytes
    width_in: float = COLUMN_IN  # the width it is drawn for (plots); raster images keep their pixels
    raster: bool = False  # an image from a service, shown at its natural size
    group: str = ""  # figures of one group are shown side by side (e.g. Grad-CAM panels of one model)


def safe_name(text: str) -> str:
    """A file stem from a title: lower case, runs of other characters as one ``-``."""
    return re.sub(r"[^a-z0-9_]+", "-", text.lower()).strip("-") or "figure"


def roc_curve(is_positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold (ties moved together)."""
    order = np.argsort(-scores, kind="mergesort")
    scores, is_positive = scores[order], is_positive[order].astype(float)
    distinct = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(is_positive)[distinct]
    fps = (distinct + 1) - tps
    positives, negatives = max(is_positive.sum(), 1.0), max(len(is_positive) - is_positive.sum(), 1.0)
    return np.r_[0.0, fps / negatives], np.r_[0.0, tps / positives]


def _new_figure(width_in: float, height_in: float):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(width_in, height_in), layout="constrained")


def _save(figure) -> tuple[bytes, bytes]:
    """(PNG at ``DPI``, PDF) of a matplotlib figure, at exactly its drawn size (no tight cropping, so a
    column figure stays a column wide); PDF metadata without a date, so equal figures are equal bytes."""
    png, pdf = io.BytesIO(), io.BytesIO()
    figure.savefig(png, format="png", dpi=DPI)
    figure.savefig(pdf, format="pdf", metadata={"CreationDate": None, "ModDate": None})
    return png.getvalue(), pdf.getvalue()


def _styled(draw):
    """Run ``draw`` under the print style (rc settings are read when artists are created)."""
    import matplotlib

    with matplotlib.rc_context(PRINT_STYLE):
        return draw()


def _melanoma_scores(result: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    classes = result["classes"]
    positive = classes.index(result.get("positive", "MEL"))
    predictions = result["predictions"]
    truth = np.array([p["label"] == classes[positive] for p in predictions])
    scores = np.array([p["probs"][positive] for p in predictions])
    return truth, scores


def melanoma_roc_figure(results: Mapping[str, dict[str, Any]], title: str) -> tuple[bytes, bytes]:
    """One melanoma one-vs-rest ROC curve per pipeline (``results`` maps a pipeline to its test result),
    each labelled with its AUC; one column wide, legend below the axes."""
    return _styled(lambda: _save(draw_melanoma_roc(results, title)))


def draw_melanoma_roc(results: Mapping[str, dict[str, Any]], title: str):
    """The matplotlib figure of ``melanoma_roc_figure`` (drawn under the print style)."""

    def draw():
        curves = []
        for name, result in sorted(results.items()):
            truth, scores = _melanoma_scores(result)
            if truth.all() or not truth.any():
                continue  # no ROC without both classes
            fpr, tpr = roc_curve(truth, scores)
            curves.append((name, fpr, tpr, float(np.trapezoid(tpr, fpr))))
        rows = -(-max(len(curves), 1) // 3)
        figure = _new_figure(COLUMN_IN, COLUMN_IN * 0.9 + 0.18 * rows)
        axis = figure.add_subplot()
        for index, (name, fpr, tpr, area) in enumerate(curves):
            axis.step(
                fpr, tpr, where="post", color=COLOURS[index % len(COLOURS)], label=f"{name} (AUC {area:.2f})"
            )
        axis.plot([0, 1], [0, 1], color=REAL_COLOUR, linewidth=0.5, linestyle="--")
        axis.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 − specificity", ylabel="sensitivity", title=title)
        axis.set_aspect("equal")
        if curves:
            figure.legend(loc="outside lower center", ncol=min(3, len(curves)), frameon=False)
        return figure

    return _styled(draw)


def confusion_figure(results: Mapping[str, dict[str, Any]], title: str) -> tuple[bytes, bytes]:
    """Confusion matrices (counts; shade = share of the true class) of several pipelines side by side,
    the full text width (one column for one or two)."""
    return _styled(lambda: _save(draw_confusion(results, title)))


def draw_confusion(results: Mapping[str, dict[str, Any]], title: str):
    def draw():
        names = sorted(results)
        columns = max(1, len(names))
        width = TWO_COLUMN_IN if columns > 2 else COLUMN_IN
        panel = width / columns
        figure = _new_figure(width, panel + 0.9)  # room for the tick labels, axis labels and title
        for index, name in enumerate(names):
            result = results[name]
            matrix = np.asarray(result["confusion_matrix"], dtype=float)
            classes = result["classes"]
            share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
            axis = figure.add_subplot(1, columns, index + 1)
            axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
            for (row, col), value in np.ndenumerate(matrix):
                axis.text(
                    col,
                    row,
                    f"{int(value)}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if share[row, col] > 0.6 else "black",
                )
            ticks = range(len(classes))
            axis.set_xticks(ticks, classes, rotation=90)
            axis.set_yticks(ticks, classes if index == 0 else [])
            axis.set_title(name)
            axis.set_xlabel("predicted")
            if index == 0:
                axis.set_ylabel("true")
        figure.suptitle(title, fontsize=8)
        return figure

    return _styled(draw)


def embedding_figure(
    points: Mapping[str, Sequence[Sequence[float]]],
    title: str,
    axis_labels: Sequence[str] = ("", ""),
    real: str = "real",
) -> tuple[bytes, bytes]:
    """A 2-D embedding (PCA or t-SNE) of each set's features: real data grey underneath, each synthetic
    set in its own colour; small markers, one column wide, legend below the axes."""
    return _styled(lambda: _save(draw_embedding(points, title, axis_labels, real)))


def draw_embedding(
    points: Mapping[str, Sequence[Sequence[float]]],
    title: str,
    axis_labels: Sequence[str] = ("", ""),
    real: str = "real",
):
    def draw():
        rows = -(-max(len(points), 1) // 2)
        figure = _new_figure(COLUMN_IN, COLUMN_IN * 0.85 + 0.18 * rows)
        axis = figure.add_subplot()
        colours = iter(COLOURS)
        for name in sorted(points, key=lambda n: (n != real, n)):
            xy = np.asarray(points[name], dtype=float).reshape(len(points[name]), -1)
            if xy.shape[1] == 1:  # one component only (fewer features than two)
                xy = np.c_[xy, np.zeros(len(xy))]
            is_real = name == real
            axis.scatter(
                xy[:, 0],
                xy[:, 1],
                s=3,
                linewidths=0,
                alpha=0.5 if is_real else 0.8,
                color=REAL_COLOUR if is_real else next(colours, "black"),
                zorder=1 if is_real else 2,
                label=f"{name} (n={len(xy)})",
            )
        axis.set(title=title, xlabel=axis_labels[0], ylabel=axis_labels[1])
        axis.tick_params(labelsize=6)
        if points:
            figure.legend(loc="outside lower center", ncol=2, frameon=False, markerscale=3)
        return figure

    return _styled(draw)


def raster_figure(png: bytes) -> tuple[bytes, bytes, int]:
    """A service's image (grid, overlay, montage) as it is: the same pixels, marked 300 dpi, and a PDF
    holding it at that resolution; also its width in pixels (what the HTML shows it at)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image.load()
        rgb = image.convert("RGB")
        width = image.width
        out_png = io.BytesIO()
        (image if image.mode in ("RGB", "RGBA", "L", "LA", "P") else rgb).save(
            out_png, format="PNG", dpi=(DPI, DPI)
        )
    out_pdf = io.BytesIO()
    rgb.save(out_pdf, format="PDF", resolution=float(DPI))
    return out_png.getvalue(), out_pdf.getvalue(), width
