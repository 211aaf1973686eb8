"""Skin tone as the Individual Typology Angle (ITA) of the skin around the lesion.

ITA = arctan((L* - 50) / b*) * 180 / pi, on CIELAB skin pixels (Chardon, Cretois & Hourseau 1991,
"Skin colour typology and suntanning pathways", Int. J. Cosmet. Sci. 13:191-208). Categories after
Del Bino et al. (2006): very light > 55 deg > light > 41 > intermediate > 28 > tan > 10 > brown >
-30 > dark.

OpenCV's 8-bit Lab is rescaled to CIELAB (L* = L * 100 / 255, a* = a - 128, b* = b - 128; the
conversion assumes sRGB input). ITA is computed per pixel and summarised by the median, so that
left-over hair, specular highlights and pigment on the lesion rim barely move it; lesion, hair,
dark-field and mark pixels are excluded outright when their masks are given.

Per-pixel ITA depends only on a pixel's 8-bit (L, b) pair, so ``estimate_ita`` looks it up in a
table of all 65,536 pairs (built once, with the same float32 arithmetic as ``rgb_to_cielab`` and
``ita_from_lab``) and takes the median from a histogram of the pairs: the same number as the
float32 median over pixels, in a fifth of the time (a test compares the two).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from skingenbench.services.core.errors import InvalidArgument

MIN_SKIN_PIXELS = 64

# (lower bound in degrees, category), from lightest down; the lower bound itself belongs below.
SKIN_TYPE_BOUNDS: tuple[tuple[float, str], ...] = (
    (55.0, "very_light"),
    (41.0, "light"),
    (28.0, "intermediate"),
    (10.0, "tan"),
    (-30.0, "brown"),
    (-np.inf, "dark"),
)
SKIN_TYPES = tuple(name for _, name in SKIN_TYPE_BOUNDS)
# Valid CIELAB lightness of skin: a requested ITA is met by lowering b* rather than clipping L*.
SKIN_LIGHTNESS_RANGE = (15.0, 92.0)


def rgb_to_cielab(rgb: np.ndarray) -> np.ndarray:
    """float32 (..., 3) array of L* in [0, 100] and a*, b* in about [-128, 127] from uint8 sRGB."""
    if rgb.dtype != np.uint8:
        raise InvalidArgument(f"rgb_to_cielab needs uint8 input, got {rgb.dtype}")
    import cv2  # here, not at the top: the ITA categories are read by the flow image, which has no OpenCV

    lab = cv2.cvtColor(rgb.reshape(1, -1, 3), cv2.COLOR_RGB2LAB).reshape(rgb.shape).astype(np.float32)
    lab[..., 0] *= 100.0 / 255.0
    lab[..., 1:] -= 128.0
    return lab


def ita_from_lab(lightness: np.ndarray | float, b_star: np.ndarray | float) -> np.ndarray:
    """ITA in degrees. arctan2 equals the published arctan formula for b* > 0 (all real skin) and
    stays defined at b* = 0; results are clipped to [-90, 90]."""
    return np.clip(np.degrees(np.arctan2(np.subtract(lightness, 50.0), b_star)), -90.0, 90.0)


def skin_type_from_ita(ita_degrees: float) -> str:
    """Del Bino et al. (2006) category name for an ITA angle."""
    if np.isnan(ita_degrees):
        raise InvalidArgument(f"ITA must be a number, got {ita_degrees}")
    for lower, name in SKIN_TYPE_BOUNDS:
        if ita_degrees > lower:
            return name
    return "dark"


def skin_pixels_mask(shape: tuple[int, ...], *excluded: np.ndarray | None) -> np.ndarray:
    """True where no exclusion mask (lesion, hair, dark field, marks; None entries ignored) is set."""
    skin = np.ones(shape[:2], bool)
    for mask in excluded:
        if mask is not None:
            skin &= ~mask.astype(bool)
    return skin


def cielab_channel_values() -> np.ndarray:
    """float32 (256, 3): the CIELAB value ``rgb_to_cielab`` gives each 8-bit code of each channel."""
    codes = np.arange(256, dtype=np.float32)
    lightness, chroma = codes.copy(), codes.copy()
    lightness *= 100.0 / 255.0  # the same float32 operations as rgb_to_cielab, so the same values
    chroma -= 128.0
    return np.stack([lightness, chroma, chroma], axis=1)


@functools.cache
def _ita_by_lab_code() -> tuple[np.ndarray, np.ndarray]:
    """(order, sorted ITA): the ITA of every 8-bit (L, b) pair, index ``L * 256 + b``, sorted, and the
    permutation of the codes that sorts it (a histogram of codes taken in this order is one of ITA)."""
    values = cielab_channel_values()
    table = ita_from_lab(values[:, None, 0], values[None, :, 2]).ravel()
    order = np.argsort(table, kind="stable")
    return order, table[order]


def median_rank_positions(cumulative_counts: np.ndarray, total: int) -> tuple[int, int]:
    """Bins holding the two middle elements (ranks (n-1)//2 and n//2) of ``total`` sorted elements whose
    histogram has these cumulative counts; for odd ``total`` both are the median's bin."""
    low, high = np.searchsorted(cumulative_counts, [(total - 1) // 2 + 1, total // 2 + 1])
    return int(low), int(high)


def estimate_ita(
    rgb: np.ndarray,
    lesion_mask: np.ndarray | None = None,
    hair_mask: np.ndarray | None = None,
    dark_mask: np.ndarray | None = None,
    other_mask: np.ndarray | None = None,
    min_pixels: int = MIN_SKIN_PIXELS,
) -> float | None:
    """Median per-pixel ITA of the skin pixels, or None when fewer than ``min_pixels`` remain."""
    if rgb.dtype != np.uint8:
        raise InvalidArgument(f"estimate_ita needs uint8 input, got {rgb.dtype}")
    skin = skin_pixels_mask(rgb.shape, lesion_mask, hair_mask, dark_mask, other_mask)
    total = int(np.count_nonzero(skin))
    if total < min_pixels:
        return None
    import cv2  # here, not at the top: see rgb_to_cielab

    lab: np.ndarray = cv2.cvtColor(
        np.ascontiguousarray(rgb), cv2.COLOR_RGB2LAB
    )  # per pixel: masking after is the same
    codes = (lab[..., 0].astype(np.uint16) << 8 | lab[..., 2])[skin]
    order, sorted_ita = _ita_by_lab_code()
    counts = np.bincount(codes, minlength=65536)[order]
    low, high = median_rank_positions(np.cumsum(counts), total)
    # np.median of float32 values: the float32 mean of the two middle ones (one, twice, for odd counts)
    return float((sorted_ita[low] + sorted_ita[high]) / np.float32(2))


def lightness_for_ita(ita: float, b_star: float) -> tuple[float, float]:
    """An (L*, b*) pair with the given ITA, starting from ``b_star``.

    Inverts the ITA formula: L* = 50 + b* tan(ITA). Where that L* would leave the range of real skin,
    b* is reduced instead, so the returned pair has exactly the requested angle.
    """
    if not -90.0 < ita < 90.0:
        raise ValueError(f"ITA must lie in (-90, 90) degrees, got {ita}")
    slope = math.tan(math.radians(ita))
    lo, hi = SKIN_LIGHTNESS_RANGE
    if slope > 0:
        b_star = min(b_star, (hi - 50.0) / slope)
    elif slope < 0:
        b_star = min(b_star, (lo - 50.0) / slope)
    return 50.0 + b_star * slope, b_star
