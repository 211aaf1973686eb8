"""Skin tone as the Individual Typology Angle (ITA) of the skin around the lesion.

ITA = arctan((L* - 50) / b*) * 180 / pi, on CIELAB skin pixels (Chardon, Cretois & Hourseau 1991,
"Skin colour typology and suntanning pathways", Int. J. Cosmet. Sci. 13:191-208). Categories after
Del Bino et al. (2006): very light > 55 deg > light > 41 > intermediate > 28 > tan > 10 > brown >
-30 > dark.

OpenCV's 8-bit Lab is rescaled to CIELAB (L* = L * 100 / 255, a* = a - 128, b* = b - 128; the
conversion assumes sRGB input). ITA is computed per pixel and summarised by the median, so that
left-over hair, specular highlights and pigment on the lesion rim barely move it; lesion, hair,
dark-field and mark pixels are excluded outright when their masks are given.
"""

from __future__ import annotations

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


def estimate_ita(
    rgb: np.ndarray,
    lesion_mask: np.ndarray | None = None,
    hair_mask: np.ndarray | None = None,
    dark_mask: np.ndarray | None = None,
    other_mask: np.ndarray | None = None,
    min_pixels: int = MIN_SKIN_PIXELS,
) -> float | None:
    """Median per-pixel ITA of the skin pixels, or None when fewer than ``min_pixels`` remain."""
    skin = skin_pixels_mask(rgb.shape, lesion_mask, hair_mask, dark_mask, other_mask)
    if int(skin.sum()) < min_pixels:
        return None
    lab = rgb_to_cielab(rgb[skin][:, None, :])[:, 0, :]
    return float(np.median(ita_from_lab(lab[:, 0], lab[:, 2])))


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
