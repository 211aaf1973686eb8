"""Connected components of a mask and what the imaging steps ask of them (extent, area, centroid).

OpenCV labels components fast (``cv2.connectedComponents``), but ``connectedComponentsWithStats``
adds a statistics pass over every pixel that costs five times the labelling itself. Hair, mark and
lesion masks cover a few to a few tens of percent of an image, so the statistics here are taken
from the foreground pixels only (``cv2.findNonZero``) with ``np.bincount`` and ``np.minimum.at``:
the same numbers -- integer extents and areas, centroids as integer sums / area -- at a fraction
of the cost (the tests compare them with OpenCV's).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Components:
    """The 8-connected components of a mask: ``labels`` (0 = background, 1..count-1) and, for every
    foreground pixel in row-major order, its coordinates and label."""

    count: int  # including the background
    labels: np.ndarray  # int32 (H, W)
    xs: np.ndarray  # intp (N,)
    ys: np.ndarray  # intp (N,)
    ids: np.ndarray  # int32 (N,): labels[ys, xs]

    def areas(self) -> np.ndarray:
        """Pixels per label (index 0, the background, counts 0)."""
        return np.bincount(self.ids, minlength=self.count)

    def centroids(self, areas: np.ndarray | None = None) -> np.ndarray:
        """float64 (count, 2) of (x, y) per label (NaN for the background and empty labels); ``areas``:
        what ``areas()`` returned, when the caller has it already."""
        areas = (self.areas() if areas is None else areas).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            sum_x = np.bincount(self.ids, weights=self.xs, minlength=self.count)
            sum_y = np.bincount(self.ids, weights=self.ys, minlength=self.count)
            centroids = np.stack([sum_x / areas, sum_y / areas], axis=1)
        centroids[0] = np.nan
        return centroids

    def extents(self) -> np.ndarray:
        """intp (count,): the longer side of each label's bounding box (0 for the background)."""
        big = np.iinfo(np.intp).max
        low_x, low_y = np.full(self.count, big), np.full(self.count, big)
        high_x, high_y = np.full(self.count, -1), np.full(self.count, -1)
        np.minimum.at(low_x, self.ids, self.xs)
        np.maximum.at(high_x, self.ids, self.xs)
        np.minimum.at(low_y, self.ids, self.ys)
        np.maximum.at(high_y, self.ids, self.ys)
        extents = np.maximum(high_x - low_x, high_y - low_y) + 1
        extents[0] = 0
        return np.maximum(extents, 0)

    def mask_of(self, keep: np.ndarray) -> np.ndarray:
        """Boolean (H, W) mask of the labels where ``keep`` (bool, per label) is True."""
        out = np.zeros(self.labels.shape, bool)
        chosen = keep[self.ids]
        out[self.ys[chosen], self.xs[chosen]] = True
        return out


def label_components(mask: np.ndarray) -> Components:
    """The 8-connected components of a boolean or 0/1 mask."""
    source = mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8)
    count, labels = cv2.connectedComponents(source, connectivity=8)
    points = cv2.findNonZero(source)  # (x, y) pairs in row-major order; None when empty
    if points is None or points.size == 0:
        empty = np.zeros(0, np.intp)
        return Components(int(count), labels, empty, empty, np.zeros(0, np.int32))
    points = points.reshape(-1, 2)  # (N, 1, 2) in OpenCV 4, (N, 2) in 5
    xs, ys = points[:, 0].astype(np.intp), points[:, 1].astype(np.intp)
    return Components(int(count), labels, xs, ys, labels[ys, xs])
