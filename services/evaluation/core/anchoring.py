"""Class anchoring: do synthetic melanomas look like melanoma to a diagnostic model?

A classifier trained on real data only labels every synthetic image; the share it assigns to the
class the generator was meant to produce, and how confident it is (the distribution of the intended
class's probability), tell whether a synthetic set carries the class it will be added to training
as. The classifier is any callable ``predict(uint8 N×H×W×3) -> probabilities N×C``, so this module
does not depend on the classification package; the service feeds it a checkpoint's softmax.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.evaluation.core.metrics import METRICS

Predict = Callable[[np.ndarray], np.ndarray]
HISTOGRAM_BINS = 10


@dataclass
class AnchoringConfig:
    batch_size: int = 64

    def validate(self) -> None:
        if self.batch_size < 1:
            raise InvalidArgument(f"batch_size must be >= 1, got {self.batch_size}")


METRICS.register(
    "class_anchoring",
    config_cls=AnchoringConfig,
    profiles={"tiny": AnchoringConfig(16), "paper": AnchoringConfig()},
    description="share of synthetic images a real-data classifier assigns to the intended class, "
    "and the distribution of its confidence in that class",
    capabilities={"feature_space": "domain", "outputs": "png"},
)(lambda config: config)


def anchoring_from_probabilities(
    probabilities: np.ndarray, class_names: Sequence[str], intended_label: str | Sequence[str]
) -> dict[str, Any]:
    """Anchoring numbers from class probabilities (rows sum to 1).

    ``intended_label`` is one class for the whole set, or one class per image (a conditional generator's
    set); with per-image classes the result also holds ``per_label``, the same numbers per class."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[1] != len(class_names):
        raise InvalidArgument(
            f"probabilities must be N×{len(class_names)} (one column per class), got shape "
            f"{probabilities.shape}"
        )
    if len(probabilities) == 0:
        raise InvalidArgument("class anchoring of an empty set")
    intended: list[str]
    if isinstance(intended_label, str):
        per_image, intended = False, [intended_label] * len(probabilities)
    else:
        per_image, intended = True, list(intended_label)
    if len(intended) != len(probabilities):
        raise InvalidArgument(f"{len(intended)} intended labels for {len(probabilities)} images")
    foreign = sorted(set(intended) - set(class_names))
    if foreign:
        raise InvalidArgument(
            f"intended label(s) {', '.join(map(repr, foreign))} not a class of the classifier",
            hint=f"classes: {', '.join(class_names)}",
        )
    if not np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-3) or (probabilities < 0).any():
        raise InvalidArgument(
            "probabilities must be non-negative and sum to 1 per image (apply softmax first)"
        )
    target = np.array([list(class_names).index(label) for label in intended])
    predicted = probabilities.argmax(axis=1)
    confidence = probabilities[np.arange(len(probabilities)), target]
    counts, edges = np.histogram(confidence, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
    result = {
        "intended_label": "per item" if per_image else intended_label,
        "count": int(len(probabilities)),
        "share_intended": float((predicted == target).mean()),
        "predicted_counts": {name: int((predicted == i).sum()) for i, name in enumerate(class_names)},
        "confidence_mean": float(confidence.mean()),
        "confidence_quantiles": {
            f"q{int(q * 100):02d}": float(np.quantile(confidence, q)) for q in (0.1, 0.25, 0.5, 0.75, 0.9)
        },
        "confidence_histogram": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        "confidence": [float(c) for c in confidence],
    }
    if per_image:
        labels = np.array(intended)
        result["per_label"] = {
            label: anchoring_from_probabilities(probabilities[labels == label], class_names, label)
            for label in sorted(set(intended))
        }
    return result


def class_anchoring(
    images: Sequence[np.ndarray],
    predict: Predict,
    class_names: Sequence[str],
    intended_label: str | Sequence[str],
    batch_size: int = 64,
) -> dict[str, Any]:
    """Run ``predict`` over the images (batched by image size) and summarise with
    :func:`anchoring_from_probabilities`."""
    from skingenbench.services.evaluation.core.extractors import as_rgb_uint8, batches_by_size

    if len(images) == 0:
        raise InvalidArgument("class anchoring of an empty set")
    probabilities = np.zeros((len(images), len(class_names)), dtype=np.float64)
    for _start, groups in batches_by_size(images, batch_size):
        for indices, members in groups:
            batch = np.stack([as_rgb_uint8(image) for image in members])
            out = np.asarray(predict(batch), dtype=np.float64)
            if out.shape != (len(indices), len(class_names)):
                raise InvalidArgument(
                    f"predict returned shape {out.shape} for {len(indices)} images and "
                    f"{len(class_names)} classes"
                )
            probabilities[indices] = out
    return anchoring_from_probabilities(probabilities, class_names, intended_label)


def softmax(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits, dtype=np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def confidence_histogram_png(results: Mapping[str, dict[str, Any]]) -> bytes:
    """One histogram per synthetic set of the classifier's probability for the intended class."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    if not results:
        raise InvalidArgument("no anchoring results to plot")
    figure = Figure(figsize=(6.4, 1.8 + 1.4 * len(results)), dpi=120)
    axes = figure.subplots(len(results), 1, squeeze=False)[:, 0]
    for ax, (name, result) in zip(axes, results.items(), strict=True):
        ax.hist(result["confidence"], bins=HISTOGRAM_BINS, range=(0, 1), color="tab:red", alpha=0.8)
        ax.set_title(
            f"{name}: p({result['intended_label']}); share assigned {result['share_intended']:.0%}",
            fontsize=9,
        )
        ax.set_xlim(0, 1)
    axes[-1].set_xlabel("classifier probability of the intended class")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
