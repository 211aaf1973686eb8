"""A classical lesion mask: colour distance to the surrounding skin, Otsu, the central component.

No learned model: this mask serves measurements (lesion area, excluding the lesion from skin-tone
estimation) and DermGAN-style semantic maps, where a clear, explainable failure mode is worth more
than the last points of Dice. The steps, and why:

1. Median blur (kernel ~2% of the image side) -- erases hair and ruler ticks a few pixels wide that
   would otherwise be as far from skin as the lesion, while keeping the lesion's border sharp.
2. CIELAB distance (Delta E 1976) to the skin reference, the median colour of a border band --
   pink and amelanotic lesions differ from skin in a* and b*, not only in lightness.
3. Otsu's threshold on that distance over the valid pixels (Otsu 1979), floored at
   ``min_delta_e`` so that a lesion-free image yields an empty mask rather than noise.
4. Opening, then the component with the largest area x centrality (dermoscopy centres the lesion;
   dark corners and border-touching shadows score low), then holes filled.

The mask is computed at ``analysis_side`` (128 px on the short side; smaller images at their own
size) and brought back to the image's size by bilinear interpolation thresholded at one half. Every
size above is a fraction of the image, so the steps find the same lesion at any scale; what the
coarser grid changes is the border, by at most one pixel of the analysis grid, which is below the
uncertainty of a threshold on colour distance. At 256 px this quarters the cost, and on 80 phantoms
the Dice against the true lesion rose from 0.931 to 0.935 (the blur, a fraction of the image, is
relatively stronger on the coarser grid).

Steps 2 and 3 work on OpenCV's 8-bit Lab codes: the skin reference is the per-channel median from a
histogram of codes, and each pixel's squared distance per channel is a 256-entry table lookup. The
arithmetic is the float32 arithmetic of ``rgb_to_cielab`` followed by ``np.linalg.norm``, operation
for operation, so the mask is the same as theirs (a test compares the two) at half the cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
from skimage.filters import threshold_otsu
from skingenbench.services.core.imaging.components import label_components
from skingenbench.services.core.imaging.regions import border_band, scaled_pixels
from skingenbench.services.core.imaging.skin_tone import cielab_channel_values, median_rank_positions

_CHANNEL_VALUES = cielab_channel_values()  # (256, 3) float32 CIELAB value of each 8-bit Lab code


def area_fraction(mask: np.ndarray, valid: np.ndarray | None = None) -> float:
    """Fraction of the ``valid`` pixels (all when None) that ``mask`` covers."""
    mask = mask.astype(bool, copy=False)
    if valid is None:
        return np.count_nonzero(mask) / mask.size if mask.size else 0.0
    total = np.count_nonzero(valid)
    return np.count_nonzero(mask & valid.astype(bool, copy=False)) / total if total else 0.0


def skin_reference_colour(
    planes: Sequence[np.ndarray], valid: np.ndarray, border_fraction: float
) -> np.ndarray:
    """float32 (3,) CIELAB median of the border band's valid pixels (all valid pixels when the band has
    fewer than 16), from the three 8-bit Lab ``planes``: what np.median(lab[ring], axis=0) gives."""
    ring = border_band(planes[0].shape, border_fraction) & valid
    source = ring if np.count_nonzero(ring) >= 16 else valid
    total = int(np.count_nonzero(source))
    reference = np.empty(3, np.float32)
    for channel, plane in enumerate(planes):
        low, high = median_rank_positions(np.cumsum(np.bincount(plane[source], minlength=256)), total)
        # np.median's float32 mean of the two middle values, without np.mean's overhead (~50 us a call)
        reference[channel] = (_CHANNEL_VALUES[low, channel] + _CHANNEL_VALUES[high, channel]) / np.float32(2)
    return reference


def colour_distance(planes: Sequence[np.ndarray], reference: np.ndarray) -> np.ndarray:
    """float32 Delta E 1976 of each pixel (three 8-bit Lab ``planes``) to ``reference`` (CIELAB): per
    channel a table of (value - reference)^2, summed in np.linalg.norm's order, then the square root."""
    squared = [
        cv2.LUT(plane, np.square(_CHANNEL_VALUES[:, channel] - reference[channel]))
        for channel, plane in enumerate(planes)
    ]
    return np.sqrt((squared[0] + squared[1]) + squared[2])


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of a non-constant 1-D float array, as ``skimage.filters.threshold_otsu(values)``
    computes it (its 256-bin histogram, handed over as ``hist``): the same number without the
    image checks and copies its wrappers make (a test compares them)."""
    counts, edges = np.histogram(values, bins=256)
    return float(threshold_otsu(hist=(counts, (edges[:-1] + edges[1:]) / 2.0)))


def central_component(mask: np.ndarray) -> np.ndarray:
    """The 8-connected component with the largest area x centrality (1 at the centre, 0.05 at a corner)."""
    components = label_components(mask)
    if components.count <= 1:
        return np.zeros(mask.shape, bool)
    height, width = mask.shape
    areas = components.areas()
    offsets = (components.centroids(areas)[1:] - np.array([(width - 1) / 2, (height - 1) / 2])) / np.array(
        [width / 2, height / 2]
    )
    centrality = np.clip(1.0 - np.linalg.norm(offsets, axis=1) / np.sqrt(2.0), 0.05, 1.0)
    best = 1 + int(np.argmax(areas[1:] * centrality))
    return components.labels == best


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background region that does not reach the border filled in."""
    inverse = np.logical_not(mask).view(np.uint8)
    outside = cv2.copyMakeBorder(inverse, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=1)
    cv2.floodFill(outside, None, (0, 0), 2)  # the padding ring connects every border region
    return mask.astype(bool) | (outside[1:-1, 1:-1] == 1)


ANALYSIS_SIDE = 128


def segment_lesion(
    rgb: np.ndarray,
    exclude: np.ndarray | None = None,
    blur_fraction: float = 0.02,
    min_delta_e: float = 8.0,
    border_fraction: float = 0.1,
    opening_fraction: float = 0.01,
    min_area_fraction: float = 0.002,
    analysis_side: int = ANALYSIS_SIDE,
) -> np.ndarray:
    """Boolean lesion mask (H, W) of a uint8 RGB image; ``exclude`` (e.g. the dark field) is never
    part of the lesion or of the skin reference. ``analysis_side``: the short side the mask is
    computed at (0: the image's own)."""
    valid = np.ones(rgb.shape[:2], bool) if exclude is None else ~exclude.astype(bool)
    if valid.sum() < 16:
        return np.zeros(rgb.shape[:2], bool)
    height, width = rgb.shape[:2]
    scale = analysis_side / min(height, width)
    if analysis_side <= 0 or scale >= 1.0:
        return _segment(
            rgb, valid, blur_fraction, min_delta_e, border_fraction, opening_fraction, min_area_fraction
        )
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = cv2.resize(rgb, small_size, interpolation=cv2.INTER_AREA)
    # A coarse pixel is valid only when all of it is: excluded pixels stay out of the skin reference.
    if exclude is None or not exclude.any():
        small_valid = np.ones(small.shape[:2], bool)
    else:
        small_valid = cv2.resize(valid.astype(np.float32), small_size, interpolation=cv2.INTER_AREA) >= 1.0
    if small_valid.sum() < 16:
        return np.zeros(rgb.shape[:2], bool)
    lesion = _segment(
        small, small_valid, blur_fraction, min_delta_e, border_fraction, opening_fraction, min_area_fraction
    )
    if not lesion.any():
        return np.zeros(rgb.shape[:2], bool)
    grown = cv2.resize(lesion.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) >= 0.5
    return grown & valid


def _segment(
    rgb: np.ndarray,
    valid: np.ndarray,
    blur_fraction: float,
    min_delta_e: float,
    border_fraction: float,
    opening_fraction: float,
    min_area_fraction: float,
) -> np.ndarray:
    """Steps 1-4 of the module docstring at ``rgb``'s own size."""
    kernel = scaled_pixels(rgb.shape, blur_fraction, minimum=3) | 1
    planes: Sequence[np.ndarray] = cv2.split(cv2.cvtColor(cv2.medianBlur(rgb, kernel), cv2.COLOR_RGB2LAB))
    distance = colour_distance(planes, skin_reference_colour(planes, valid, border_fraction))
    values = distance[valid]
    threshold = max(otsu_threshold(values) if np.ptp(values) > 0 else 0.0, min_delta_e)
    candidates = (distance > threshold) & valid
    radius = scaled_pixels(rgb.shape, opening_fraction, minimum=1)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    candidates = cv2.morphologyEx(candidates.astype(np.uint8), cv2.MORPH_OPEN, disk) > 0
    lesion = central_component(candidates)
    if lesion.sum() < min_area_fraction * lesion.size:
        return np.zeros(rgb.shape[:2], bool)
    return fill_holes(lesion)
