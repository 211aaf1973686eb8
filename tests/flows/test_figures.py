"""Report figures: the ROC computation matches scikit-learn, and the figures render."""

from __future__ import annotations

import base64

import numpy as np
from skingenbench.flows.figures import confusion_png, melanoma_roc_png, roc_curve
from sklearn.metrics import auc
from sklearn.metrics import roc_curve as sklearn_roc


def test_roc_curve_matches_scikit_learn_with_ties():
    rng = np.random.default_rng(0)
    truth = rng.random(300) < 0.3
    scores = np.round(rng.random(300) + truth * 0.3, 1)  # coarse: many ties
    fpr, tpr = roc_curve(truth, scores)
    ref_fpr, ref_tpr, _ = sklearn_roc(truth, scores, drop_intermediate=False)
    assert np.isclose(auc(fpr, tpr), auc(ref_fpr, ref_tpr))
    assert fpr[-1] == 1.0 and tpr[-1] == 1.0


def test_figures_render_png():
    classes = ["NV", "BCC", "BKL", "MEL", "SCC"]
    rng = np.random.default_rng(1)
    predictions = [
        {"image_id": str(i), "label": classes[i % 5], "probs": list(rng.dirichlet(np.ones(5)))}
        for i in range(40)
    ]
    result = {
        "classes": classes,
        "positive": "MEL",
        "predictions": predictions,
        "confusion_matrix": rng.integers(0, 5, (5, 5)).tolist(),
    }
    for png in (melanoma_roc_png({"A1": result, "A2": result}, "t"), confusion_png(result, "A1")):
        assert base64.b64decode(png)[:8] == b"\x89PNG\r\n\x1a\n"
