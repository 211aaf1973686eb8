"""Report figures: the ROC computation matches scikit-learn, and the figures are fit for print — 300-dpi
PNG and PDF, a column (3.5 in) or the text width (7 in) wide, type no smaller than 6 pt, legends outside
the axes."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image
from skingenbench.flows.figures import (
    COLUMN_IN,
    TWO_COLUMN_IN,
    _styled,
    confusion_figure,
    draw_confusion,
    draw_embedding,
    draw_melanoma_roc,
    embedding_figure,
    melanoma_roc_figure,
    raster_figure,
    roc_curve,
)
from sklearn.metrics import auc
from sklearn.metrics import roc_curve as sklearn_roc

CLASSES = ["NV", "BCC", "BKL", "MEL", "SCC"]


def _result(seed: int = 1) -> dict:
    rng = np.random.default_rng(seed)
    predictions = [
        {"image_id": str(i), "label": CLASSES[i % 5], "probs": list(rng.dirichlet(np.ones(5)))}
        for i in range(40)
    ]
    return {
        "classes": CLASSES,
        "positive": "MEL",
        "predictions": predictions,
        "confusion_matrix": rng.integers(0, 5, (5, 5)).tolist(),
    }


def _points(names, n=30) -> dict:
    rng = np.random.default_rng(0)
    return {name: rng.normal(size=(n, 2)).tolist() for name in names}


def test_roc_curve_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    truth = rng.random(300) < 0.3
    scores = np.round(rng.random(300) + truth * 0.3, 1)  # coarse: many ties
    fpr, tpr = roc_curve(truth, scores)
    ref_fpr, ref_tpr, _ = sklearn_roc(truth, scores, drop_intermediate=False)
    assert np.isclose(auc(fpr, tpr), auc(ref_fpr, ref_tpr))
    assert fpr[-1] == 1.0 and tpr[-1] == 1.0


@pytest.mark.parametrize(
    ("rendered", "width_in"),
    [
        (lambda: melanoma_roc_figure({f"A{i}": _result(i) for i in range(1, 6)}, "t"), COLUMN_IN),
        (lambda: confusion_figure({f"A{i}": _result(i) for i in range(1, 6)}, "t"), TWO_COLUMN_IN),
        (lambda: confusion_figure({"A1": _result()}, "t"), COLUMN_IN),
        (lambda: embedding_figure(_points(["real", "A2", "A3"]), "t", ("PC1", "PC2")), COLUMN_IN),
    ],
    ids=["roc", "confusion-five", "confusion-one", "embedding"],
)
def test_plots_are_300_dpi_png_and_pdf_at_print_width(rendered, width_in):
    png, pdf = rendered()
    with Image.open(io.BytesIO(png)) as image:
        assert image.format == "PNG"
        assert image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        assert image.width == round(width_in * 300)  # drawn at the width it is printed at, not cropped
    assert pdf.startswith(b"%PDF")


@pytest.mark.parametrize(
    ("draw", "entries"),
    [
        (lambda: draw_melanoma_roc({f"A{i}": _result(i) for i in range(1, 6)}, "t"), 5),
        (lambda: draw_embedding(_points(["real", "A2-stylegan2_ada", "A3-ddpm", "A5-dermgan"]), "t"), 4),
    ],
    ids=["roc", "embedding"],
)
def test_legends_sit_outside_the_axes_in_print_sized_type(draw, entries):
    def check():
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        figure = draw()
        canvas = FigureCanvasAgg(figure)
        canvas.draw()
        renderer = canvas.get_renderer()
        (axis,) = figure.axes
        (legend,) = figure.legends
        assert not legend.get_window_extent(renderer).overlaps(axis.get_window_extent(renderer))
        texts = [t for t in figure.findobj(match=lambda a: hasattr(a, "get_fontsize")) if t.get_text()]
        assert texts and min(t.get_fontsize() for t in texts) >= 6
        assert len(legend.get_texts()) == entries

    _styled(check)


def test_roc_legend_names_each_pipeline_with_its_auc():
    def check():
        figure = draw_melanoma_roc({"A1": _result(1), "A2": _result(2)}, "t")
        labels = [t.get_text() for t in figure.legends[0].get_texts()]
        assert [label.split(" ")[0] for label in labels] == ["A1", "A2"]
        assert all(re.fullmatch(r"A\d \(AUC \d\.\d\d\)", label) for label in labels)

    _styled(check)


def test_confusion_panels_one_per_pipeline_with_counts():
    def check():
        figure = draw_confusion({"A1": _result(1), "A2": _result(2)}, "t")
        assert [axis.get_title() for axis in figure.axes] == ["A1", "A2"]
        counts = [t.get_text() for t in figure.axes[0].texts]
        assert counts == [str(v) for v in np.asarray(_result(1)["confusion_matrix"]).ravel()]

    _styled(check)


def test_raster_figure_keeps_the_pixels_and_marks_300_dpi():
    pixels = np.random.default_rng(0).integers(0, 255, (40, 70, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    png, pdf, width = raster_figure(buffer.getvalue())
    assert width == 70
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (70, 40) and image.info["dpi"] == pytest.approx((300, 300), abs=0.01)
        assert np.array_equal(np.asarray(image.convert("RGB")), pixels)
    assert pdf.startswith(b"%PDF")
