"""Removal of ruler marks and surgical-ink marks: detect each as a mask, then inpaint.

* **Ink** (gentian violet, blue and purple skin markers) is the one thing in a dermoscopic image
  that is both strongly saturated and blue-to-purple; skin and melanin are orange-to-brown. The
  mask is a hue window in HSV with a saturation floor. The floor matters: the blue-white veil and
  blue nevi are blue too, but greyish (low saturation) -- keep it high enough not to erase them.
* **Ruler marks** are thin, dark and *straight*, and lie near the image border where the ruler
  sits. The candidates are the same morphological black-hat DullRazor uses for hair (Lee et al.
  1997); a grayscale opening of that candidate mask with long lines in several directions keeps
  only pixels on a straight run at least ``min_length_fraction`` long, and a whole candidate
  component is kept when it contains such a run (so a tick keeps its rounded ends). A run lies in
  one component, whose bounding box is at least as long as the shortest line unless the run leaves
  the image (OpenCV's openings let a line continue past the edge), so the openings run only over
  the components that long or touching the edge, in the window around them: the same marks, at a
  fraction of the cost (most components in the band are short bits of hair and lesion border), and
  as erosions: a component holds a run exactly when it holds the centre of one.

Both masks are dilated a little and inpainted (Telea 2004 by default), as for hair.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.imaging.components import label_components
from skingenbench.services.core.imaging.regions import border_band, scaled_pixels
from skingenbench.services.preprocessing.core.hair_removal import (
    dark_line_response,
    dilate,
    inpaint,
    line_kernel,
)


def detect_ink(
    rgb: np.ndarray,
    hue_range_degrees: tuple[float, float] = (200.0, 340.0),
    min_saturation: float = 0.3,
    min_value: float = 0.15,
    min_area_fraction: float = 0.0005,
) -> np.ndarray:
    """Boolean mask of saturated blue-to-purple pixels, in components of a meaningful size."""
    low, high = hue_range_degrees
    if not 0.0 <= low < high <= 360.0:
        raise InvalidArgument(
            f"hue_range_degrees must satisfy 0 <= low < high <= 360, got {hue_range_degrees}"
        )
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)  # 8-bit: H in [0, 180) = degrees / 2; S, V in [0, 255]
    hue, saturation, value = hsv[:, :, 0], hsv[:, :, 1], hsv[:, :, 2]
    mask = (
        (hue >= low / 2)
        & (hue <= high / 2)
        & (saturation >= min_saturation * 255)
        & (value >= min_value * 255)
    )
    min_area = max(1, round(min_area_fraction * mask.size))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    return keep[labels]


def straight_runs(mask: np.ndarray, length: int, orientations: int) -> np.ndarray:
    """Pixels of ``mask`` that lie on a straight run of at least ``length`` pixels (union of openings
    with line structuring elements in ``orientations`` directions)."""
    source = mask.astype(np.uint8)
    runs = np.zeros_like(source)
    for index in range(orientations):
        kernel = line_kernel(length, 180.0 * index / orientations)
        np.maximum(runs, cv2.morphologyEx(source, cv2.MORPH_OPEN, kernel), out=runs)
    return runs > 0


def run_centres(mask: np.ndarray, length: int, orientations: int) -> np.ndarray:
    """Pixels of ``mask`` at the centre of a straight run of ``length`` pixels (union of erosions with
    the line kernels). A component holds a run exactly when it holds a run's centre -- a line kernel
    contains its centre and is connected -- so this is ``straight_runs`` without the dilations when
    only which components hold a run matters."""
    source = mask.astype(np.uint8)
    centres = np.zeros_like(source)
    for index in range(orientations):
        np.maximum(centres, cv2.erode(source, line_kernel(length, 180.0 * index / orientations)), out=centres)
    return centres > 0


def detect_ruler(
    rgb: np.ndarray,
    kernel_fraction: float = 0.06,
    threshold: float = 15.0,
    band_fraction: float = 0.2,
    min_length_fraction: float = 0.05,
    orientations: int = 8,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean mask of thin dark straight structures in the border band of the image.

    ``exclude`` (e.g. the hair mask, when hair and marks are inpainted in one pass) is never a mark:
    a hair crossing the band is straight over a few pixels and would otherwise be counted twice."""
    gray = cv2.GaussianBlur(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (3, 3), 0)
    length = scaled_pixels(rgb.shape, kernel_fraction, minimum=3)
    candidates = (dark_line_response(gray, length, orientations=4) > threshold) & border_band(
        rgb.shape, band_fraction
    )
    if exclude is not None:
        candidates &= ~exclude.astype(bool)
    if not candidates.any():  # nothing dark and thin in the band: no run to look for
        return candidates
    run_length = scaled_pixels(rgb.shape, min_length_fraction, minimum=3)
    components = label_components(candidates)
    could_hold_a_run = components.extents() >= shortest_line_extent(run_length, orientations)
    labels = components.labels
    could_hold_a_run[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    could_hold_a_run[0] = False
    if not could_hold_a_run.any():
        return np.zeros(candidates.shape, bool)
    # The window around those components, grown by half a line: an opening inside it sees what it
    # would see in the whole image (at the image's own edges the border rule is the same).
    chosen = could_hold_a_run[components.ids]
    margin = (run_length | 1) // 2
    top, left = max(0, components.ys[chosen].min() - margin), max(0, components.xs[chosen].min() - margin)
    bottom, right = components.ys[chosen].max() + margin + 1, components.xs[chosen].max() + margin + 1
    window = (slice(top, bottom), slice(left, right))
    centres = run_centres(components.mask_of(could_hold_a_run)[window], run_length, orientations)
    keep = np.zeros(components.count, bool)
    keep[np.unique(labels[window][centres])] = True
    keep[0] = False
    return components.mask_of(keep)


@functools.cache
def shortest_line_extent(length: int, orientations: int) -> int:
    """The shortest bounding-box side (the longer of its two) of the ``orientations`` line kernels."""
    extents = []
    for index in range(orientations):
        rows, columns = np.nonzero(line_kernel(length, 180.0 * index / orientations))
        extents.append(max(rows.max() - rows.min(), columns.max() - columns.min()) + 1)
    return int(min(extents))


def detect_marks(
    rgb: np.ndarray,
    remove_ink: bool = True,
    remove_ruler: bool = True,
    ink_min_saturation: float = 0.3,
    ruler_threshold: float = 15.0,
    ruler_band_fraction: float = 0.2,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean mask of the ink and ruler marks the switches ask for (not dilated, not inpainted)."""
    marks = np.zeros(rgb.shape[:2], bool)
    if remove_ink:
        marks |= detect_ink(rgb, min_saturation=ink_min_saturation)
    if remove_ruler:
        marks |= detect_ruler(
            rgb, threshold=ruler_threshold, band_fraction=ruler_band_fraction, exclude=exclude
        )
    return marks


def remove_marks(
    rgb: np.ndarray,
    remove_ink: bool = True,
    remove_ruler: bool = True,
    ink_min_saturation: float = 0.3,
    ruler_threshold: float = 15.0,
    ruler_band_fraction: float = 0.2,
    dilation_fraction: float = 0.004,
    inpaint_method: str = "telea",
) -> tuple[np.ndarray, np.ndarray]:
    """(image with the marks inpainted, boolean mask of the detected marks)."""
    marks = detect_marks(
        rgb, remove_ink, remove_ruler, ink_min_saturation, ruler_threshold, ruler_band_fraction
    )
    region = dilate(marks, scaled_pixels(rgb.shape, dilation_fraction, minimum=0))
    return inpaint(rgb, region, inpaint_method), marks
