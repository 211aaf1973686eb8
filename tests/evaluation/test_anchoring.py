"""Class anchoring with a fixed predict callable: shares, confidence distribution, bad input."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.evaluation.core.anchoring import (
    anchoring_from_probabilities,
    class_anchoring,
    confidence_histogram_png,
    softmax,
)

CLASSES = ("NV", "BCC", "BKL", "MEL", "SCC")


def _by_brightness(images: np.ndarray) -> np.ndarray:
    """A fixed 'classifier': bright images are MEL with p=0.9, dark ones NV with p=0.7."""
    out = np.zeros((len(images), len(CLASSES)))
    bright = images.reshape(len(images), -1).mean(axis=1) > 127
    out[bright] = [0.025, 0.025, 0.025, 0.9, 0.025]
    out[~bright] = [0.7, 0.1, 0.0, 0.2, 0.0]
    return out


def test_share_and_confidence_with_a_fixed_predict():
    images = (
        [np.full((8, 8, 3), 200, np.uint8)] * 3
        + [np.full((8, 8, 3), 20, np.uint8)]
        + [np.full((12, 6, 3), 250, np.uint8)]
    )  # a second image size: batched separately
    result = class_anchoring(images, _by_brightness, CLASSES, "MEL", batch_size=2)
    assert result["share_intended"] == pytest.approx(0.8)
    assert result["predicted_counts"] == {"NV": 1, "BCC": 0, "BKL": 0, "MEL": 4, "SCC": 0}
    assert result["confidence"] == pytest.approx([0.9, 0.9, 0.9, 0.2, 0.9])
    assert result["confidence_mean"] == pytest.approx(0.76)
    assert result["confidence_quantiles"]["q50"] == pytest.approx(0.9)
    assert sum(result["confidence_histogram"]["counts"]) == 5
    png = confidence_histogram_png(
        {"gan": result, "ddpm": anchoring_from_probabilities(softmax(np.zeros((4, 5))), CLASSES, "MEL")}
    )
    assert Image.open(io.BytesIO(png)).size[0] > 100


def test_per_image_intended_labels_score_each_image_against_its_own_class():
    """A conditional generator's set: each image was asked to show its own class."""
    images = [np.full((8, 8, 3), 200, np.uint8)] * 2 + [np.full((8, 8, 3), 20, np.uint8)] * 2
    result = class_anchoring(images, _by_brightness, CLASSES, ["MEL", "NV", "NV", "MEL"])
    # bright->MEL: right for image 0, wrong for 1; dark->NV: right for 2, wrong for 3.
    assert result["intended_label"] == "per item" and result["share_intended"] == pytest.approx(0.5)
    assert result["confidence"] == pytest.approx([0.9, 0.025, 0.7, 0.2])
    assert set(result["per_label"]) == {"MEL", "NV"}
    assert result["per_label"]["MEL"]["share_intended"] == pytest.approx(0.5)
    assert result["per_label"]["NV"]["confidence"] == pytest.approx([0.025, 0.7])
    with pytest.raises(InvalidArgument, match="3 intended labels for 4 images"):
        anchoring_from_probabilities(np.full((4, 5), 0.2), CLASSES, ["MEL"] * 3)
    with pytest.raises(InvalidArgument, match="AKIEC"):
        anchoring_from_probabilities(np.full((2, 5), 0.2), CLASSES, ["MEL", "AKIEC"])


def test_bad_input_is_refused_with_reasons():
    probabilities = np.full((3, 5), 0.2)
    with pytest.raises(InvalidArgument, match="not a class"):
        anchoring_from_probabilities(probabilities, CLASSES, "AKIEC")
    with pytest.raises(InvalidArgument, match="softmax"):
        anchoring_from_probabilities(np.ones((3, 5)), CLASSES, "MEL")
    with pytest.raises(InvalidArgument, match="N×5"):
        anchoring_from_probabilities(np.full((3, 4), 0.25), CLASSES, "MEL")
    with pytest.raises(InvalidArgument, match="empty"):
        class_anchoring([], _by_brightness, CLASSES, "MEL")
    with pytest.raises(InvalidArgument, match="shape"):
        class_anchoring([np.zeros((4, 4, 3), np.uint8)], lambda b: np.ones((len(b), 3)) / 3, CLASSES, "MEL")
