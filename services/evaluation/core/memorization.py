"""Memorization: is a synthetic image a copy of a training image?

For every synthetic image, its nearest training image in feature space (cosine distance) and the
pixel-space SSIM of that pair (Wang et al. 2004, scikit-image). A generator trained on a few
hundred melanomas can reproduce its training images; a medical reviewer asks this first.

Two tests flag a likely copy (either suffices): an SSIM at least ``ssim_threshold``, or a feature
distance at most a threshold. Cosine distances depend on the feature space (between different
dermoscopy images they are ~0.1 in ImageNet Inception features and ~0.001 in randomly initialised
ones), so by default the distance threshold is relative: ``relative_threshold`` times the median
distance of a training image to its nearest other training image (leave-one-out). The report also
gives the share of synthetic images closer to the training set than 5% of training images are to
each other, a calibration-free figure in the spirit of Meehan et al. 2020.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.evaluation.core.metrics import METRICS

Loader = Callable[[int], np.ndarray]


@dataclass
class MemorizationConfig:
    distance_threshold: float | None = None  # absolute cosine distance; None: relative_threshold applies
    relative_threshold: float = 0.1  # × the median leave-one-out NN distance within the training set
    ssim_threshold: float = 0.95
    grid_pairs: int = 12  # closest pairs shown in the PNG grid

    def validate(self) -> None:
        absolute_ok = self.distance_threshold is None or 0 <= self.distance_threshold <= 2
        if (
            not absolute_ok
            or not 0 < self.relative_threshold <= 1
            or not -1 <= self.ssim_threshold <= 1
            or self.grid_pairs < 1
        ):
            raise InvalidArgument(
                "memorization needs distance_threshold in [0, 2] (or null), relative_threshold "
                "in (0, 1], ssim_threshold in [-1, 1] and grid_pairs >= 1"
            )


METRICS.register(
    "memorization",
    config_cls=MemorizationConfig,
    profiles={"tiny": MemorizationConfig(grid_pairs=6), "paper": MemorizationConfig()},
    description="nearest training image per synthetic image (cosine, feature space), SSIM of the "
    "pair, share under thresholds, PNG grid of the closest pairs",
    capabilities={"feature_space": "extractor", "outputs": "png"},
)(lambda config: config)


def _unit_rows(features: np.ndarray) -> np.ndarray:
    features = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


def nearest_neighbours(
    queries: np.ndarray, references: np.ndarray, exclude_self: bool = False, chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """(index of the nearest reference, cosine distance to it) for every query row."""
    if len(queries) == 0 or len(references) == 0:
        raise InvalidArgument("nearest neighbours need non-empty query and reference sets")
    if exclude_self and len(references) < 2:
        raise InvalidArgument("leave-one-out nearest neighbours need at least 2 references")
    q, r = _unit_rows(queries), _unit_rows(references)
    index = np.empty(len(q), dtype=np.int64)
    distance = np.empty(len(q), dtype=np.float64)
    for start in range(0, len(q), chunk):
        similarity = q[start : start + chunk] @ r.T
        if exclude_self:
            rows = np.arange(similarity.shape[0])
            similarity[rows, rows + start] = -np.inf
        best = similarity.argmax(axis=1)
        index[start : start + chunk] = best
        distance[start : start + chunk] = 1.0 - similarity[np.arange(len(best)), best]
    return index, np.clip(distance, 0.0, 2.0)


def pair_ssim(synthetic: np.ndarray, training: np.ndarray) -> float:
    """SSIM of two RGB uint8 images; the synthetic one is resized to the training image's size first."""
    from PIL import Image
    from skimage.metrics import structural_similarity

    if synthetic.shape[:2] != training.shape[:2]:
        synthetic = np.asarray(
            Image.fromarray(synthetic).resize(training.shape[1::-1], Image.Resampling.BILINEAR)
        )
    side = min(training.shape[:2])
    window = min(7, side if side % 2 else side - 1)
    if window < 3:
        raise InvalidArgument(f"SSIM needs images of at least 3×3 pixels, got {training.shape[:2]}")
    return float(structural_similarity(synthetic, training, channel_axis=2, data_range=255, win_size=window))


def memorization_report(
    synthetic_features: np.ndarray,
    training_features: np.ndarray,
    synthetic_image: Loader,
    training_image: Loader,
    config: MemorizationConfig | None = None,
    synthetic_ids: Sequence[str] = (),
    training_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """Nearest training image, distance and SSIM per synthetic image, and the shares that look copied.

    Images are read through loaders (index -> uint8 H×W×3) so that large sets are not held in memory.
    """
    config = config or MemorizationConfig()
    index, distance = nearest_neighbours(synthetic_features, training_features)
    ssim = np.array([pair_ssim(synthetic_image(i), training_image(int(j))) for i, j in enumerate(index)])
    report: dict[str, Any] = {"count": int(len(distance)), "ssim_threshold": config.ssim_threshold}
    threshold, rule = config.distance_threshold, "absolute"
    if len(training_features) >= 2:
        _, train_distance = nearest_neighbours(training_features, training_features, exclude_self=True)
        report["training_nn_distance_quantiles"] = _quantiles(train_distance)
        report["share_closer_than_training_p5"] = float((distance < np.quantile(train_distance, 0.05)).mean())
        if threshold is None:
            threshold = config.relative_threshold * float(np.median(train_distance))
            rule = f"{config.relative_threshold} × median training nearest-neighbour distance"
    if threshold is None:  # a single training image: nothing to calibrate against, only exact copies count
        threshold, rule = 1e-6, "exact copies only (one training image)"
    by_distance = distance <= threshold
    by_ssim = ssim >= config.ssim_threshold
    report.update(
        {
            "distance_threshold": float(threshold),
            "distance_threshold_rule": rule,
            "share_under_distance_threshold": float(by_distance.mean()),
            "share_over_ssim_threshold": float(by_ssim.mean()),
            "share_flagged": float((by_distance | by_ssim).mean()),
            "distance_quantiles": _quantiles(distance),
            "ssim_quantiles": _quantiles(ssim),
        }
    )
    ids = list(synthetic_ids) or [str(i) for i in range(len(index))]
    train_ids = list(training_ids) or [str(j) for j in range(len(training_features))]
    report["pairs"] = [
        {
            "synthetic": ids[i],
            "training": train_ids[int(j)],
            "synthetic_index": i,
            "training_index": int(j),
            "cosine_distance": float(distance[i]),
            "ssim": float(ssim[i]),
            "flagged": bool(by_distance[i] or by_ssim[i]),
        }
        for i, j in enumerate(index)
    ]
    return report


def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {f"q{int(q * 100):02d}": float(np.quantile(values, q)) for q in (0.0, 0.05, 0.25, 0.5, 0.75, 1.0)}


def closest_pairs(report: dict[str, Any], count: int) -> list[dict[str, Any]]:
    return sorted(report["pairs"], key=lambda p: (p["cosine_distance"], -p["ssim"]))[:count]


def closest_pairs_png(
    pairs: Sequence[dict[str, Any]], synthetic_image: Loader, training_image: Loader, cell: int = 96
) -> bytes:
    """Rows of (synthetic | nearest training image) with distance and SSIM, closest first."""
    from PIL import Image, ImageDraw

    if not pairs:
        raise InvalidArgument("no pairs to draw")
    label = 14
    canvas = Image.new("RGB", (2 * cell, len(pairs) * (cell + label)), "white")
    draw = ImageDraw.Draw(canvas)
    for row, pair in enumerate(pairs):
        top = row * (cell + label)
        for column, image in enumerate(
            (synthetic_image(pair["synthetic_index"]), training_image(pair["training_index"]))
        ):
            tile = Image.fromarray(image).resize((cell, cell), Image.Resampling.BILINEAR)
            canvas.paste(tile, (column * cell, top + label))
        flag = " COPY?" if pair["flagged"] else ""
        draw.text(
            (2, top + 1),
            f"d={pair['cosine_distance']:.4f} ssim={pair['ssim']:.3f}{flag}",
            fill="red" if flag else "black",
        )
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()
