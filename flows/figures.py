"""Report figures drawn from test results: melanoma ROC curves per arm and confusion matrices.

Computed from the per-image predictions in each test result (numpy + matplotlib only: the flow has no
torch), so every curve is traceable to the predictions file beside it.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np


def roc_curve(is_positive: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False- and true-positive rates at every distinct threshold (ties moved together)."""
    order = np.argsort(-scores, kind="mergesort")
    scores, is_positive = scores[order], is_positive[order].astype(float)
    distinct = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tps = np.cumsum(is_positive)[distinct]
    fps = (distinct + 1) - tps
    positives, negatives = max(is_positive.sum(), 1.0), max(len(is_positive) - is_positive.sum(), 1.0)
    return np.r_[0.0, fps / negatives], np.r_[0.0, tps / positives]


def _png(figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()


def melanoma_roc_png(results: dict[str, dict[str, Any]], title: str) -> str:
    """One curve per pipeline: ``results`` maps a pipeline name to its test result."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(4.2, 4.2))
    for name, result in sorted(results.items()):
        classes = result["classes"]
        positive = classes.index(result.get("positive", "MEL"))
        predictions = result["predictions"]
        truth = np.array([p["label"] == classes[positive] for p in predictions])
        scores = np.array([p["probs"][positive] for p in predictions])
        if truth.all() or not truth.any():
            continue
        fpr, tpr = roc_curve(truth, scores)
        axis.plot(fpr, tpr, label=name)
    axis.plot([0, 1], [0, 1], color="grey", linewidth=0.5)
    axis.set(xlabel="1 − specificity", ylabel="sensitivity", title=title)
    axis.legend(fontsize=7)
    return _png(figure)


def confusion_png(result: dict[str, Any], title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(result["confusion_matrix"])
    classes = result["classes"]
    figure, axis = plt.subplots(figsize=(3.6, 3.2))
    axis.imshow(matrix, cmap="Blues")
    for (row, col), value in np.ndenumerate(matrix):
        axis.text(col, row, str(value), ha="center", va="center", fontsize=7)
    axis.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xticklabels=classes,
        yticklabels=classes,
        xlabel="predicted",
        ylabel="true",
        title=title,
    )
    return _png(figure)
