"""Dark corners and black frames: the field outside a dermoscope's round aperture.

The dark field is found as the pixels much darker than the skin -- below ``relative_threshold`` x
the 95th percentile of luminance, which is the skin level even when the lesion is large or the
aperture small -- that are connected to the image border: a lesion is dark too, but sits inside
the field (one that touches the border *and* is nearly black will be taken for it). It is then
either cropped away (``crop``: the largest axis-aligned rectangle that contains no dark pixel) or
filled with the skin colour found just inside the aperture (``fill``), with a soft edge so no new
contour appears. Cropping keeps only real pixels but can cost a lot of the image when the aperture
is small; when the rectangle would keep less than ``min_crop_fraction`` of the image, ``fill`` is
used instead and the result says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.imaging.regions import scaled_pixels
from skingenbench.services.preprocessing.core.hair_removal import dilate

VIGNETTE_MODES = ("crop", "fill")
_COARSE_SIDE = 96  # the inscribed-rectangle search runs on a grid this size: exact enough, ~ms


@dataclass(frozen=True)
class VignetteResult:
    image: np.ndarray
    dark_mask: np.ndarray  # in the geometry of ``image``
    dark_fraction: float  # of the input image
    mode_used: str  # "none" when no dark field was found
    crop_box: tuple[int, int, int, int] | None  # (x, y, width, height) in the input, for ``crop``


def detect_dark_field(
    rgb: np.ndarray,
    relative_threshold: float = 0.35,
    min_fraction: float = 0.005,
    min_width_fraction: float = 0.02,
) -> np.ndarray:
    """Boolean mask of broad dark regions connected to the image border (empty below
    ``min_fraction`` of the image). Dark structures narrower than ``min_width_fraction`` of the
    shorter side -- hair and ruler marks that run off the edge -- are not part of it."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    cumulative = np.cumsum(np.bincount(gray.ravel(), minlength=256))  # uint8: a histogram is exact
    level = int(np.searchsorted(cumulative, 0.95 * gray.size)) * relative_threshold
    radius = scaled_pixels(rgb.shape, min_width_fraction / 2, minimum=1)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    below = gray < level
    # The field is a subset of these pixels: too few of them and it cannot reach min_fraction.
    if np.count_nonzero(below) < min_fraction * below.size:
        return np.zeros(gray.shape, bool)
    dark = cv2.morphologyEx(below.astype(np.uint8), cv2.MORPH_OPEN, disk)
    count, labels = cv2.connectedComponents(dark, connectivity=8)
    border_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    keep = np.zeros(count, bool)
    keep[border_labels] = True
    keep[0] = False
    field = keep[labels]
    return field if np.count_nonzero(field) >= min_fraction * field.size else np.zeros_like(field)


def _largest_rectangle_in_histogram(heights: np.ndarray) -> tuple[int, int, int]:
    """(area, left, width) of the largest rectangle under a histogram (stack algorithm, O(n))."""
    best = (0, 0, 0)
    stack: list[int] = []
    for position in range(len(heights) + 1):
        current = heights[position] if position < len(heights) else 0
        while stack and heights[stack[-1]] >= current:
            height = heights[stack.pop()]
            left = stack[-1] + 1 if stack else 0
            area = int(height) * (position - left)
            if area > best[0]:
                best = (area, left, position - left)
        stack.append(position)
    return best


def largest_inscribed_rectangle(valid: np.ndarray) -> tuple[int, int, int, int]:
    """(x, y, width, height) of a large axis-aligned rectangle containing only ``valid`` pixels.

    Searched on a coarse grid whose cells count as valid only when entirely valid, so the
    rectangle mapped back to full resolution never includes an invalid pixel."""
    height, width = valid.shape
    scale = min(1.0, _COARSE_SIDE / max(height, width))
    grid_w, grid_h = max(1, round(width * scale)), max(1, round(height * scale))
    coverage = cv2.resize(valid.astype(np.float32), (grid_w, grid_h), interpolation=cv2.INTER_AREA)
    cells = coverage >= 0.999
    heights = np.zeros(grid_w, np.int64)
    best = (0, 0, 0, 0, 0)  # area, x, y, w, h in cells
    for row in range(grid_h):
        heights = np.where(cells[row], heights + 1, 0)
        area, left, run = _largest_rectangle_in_histogram(heights)
        if area > best[0]:
            rect_height = area // run
            best = (area, left, row - rect_height + 1, run, rect_height)
    _, x, y, w, h = best
    cell_w, cell_h = width / grid_w, height / grid_h
    x0, y0 = int(np.ceil(x * cell_w)), int(np.ceil(y * cell_h))
    x1, y1 = int(np.floor((x + w) * cell_w)), int(np.floor((y + h) * cell_h))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


def fill_dark_field(rgb: np.ndarray, dark: np.ndarray, edge_fraction: float = 0.01) -> np.ndarray:
    """Replace ``dark`` with the median colour of the skin just inside it, blended over a soft edge."""
    edge = scaled_pixels(rgb.shape, edge_fraction, minimum=1)
    ring = dilate(dark, 3 * edge) & ~dilate(dark, edge)
    source = rgb[ring] if ring.any() else rgb[~dark]
    colour = np.median(source, axis=0).astype(np.float32)
    alpha = cv2.GaussianBlur(dilate(dark, edge).astype(np.float32), (0, 0), edge)[:, :, None]
    filled = rgb.astype(np.float32) * (1.0 - alpha) + colour * alpha
    return np.clip(np.rint(filled), 0, 255).astype(np.uint8)


def remove_vignette(
    rgb: np.ndarray,
    mode: str = "crop",
    relative_threshold: float = 0.35,
    min_crop_fraction: float = 0.3,
) -> VignetteResult:
    """Detect the dark field and crop it away or fill it; see the module docstring."""
    if mode not in VIGNETTE_MODES:
        raise InvalidArgument(
            f"unknown vignette mode {mode!r}", hint=f"choose one of {VIGNETTE_MODES}", field="mode"
        )
    dark = detect_dark_field(rgb, relative_threshold)
    fraction = float(dark.mean())
    if not dark.any():
        return VignetteResult(rgb, dark, 0.0, "none", None)
    if mode == "crop":
        x, y, w, h = largest_inscribed_rectangle(~dark)
        if w * h >= min_crop_fraction * dark.size:
            crop = np.ascontiguousarray(rgb[y : y + h, x : x + w])
            return VignetteResult(crop, dark[y : y + h, x : x + w].copy(), fraction, "crop", (x, y, w, h))
    return VignetteResult(fill_dark_field(rgb, dark), dark, fraction, "fill", None)
