"""Sizes and regions as fractions of the image.

Every imaging step expresses its sizes as fractions of the shorter image side, so that one set of
parameters fits 600x450 and 256x256 alike.
"""

from __future__ import annotations

import numpy as np


def scaled_pixels(shape: tuple[int, ...], fraction: float, minimum: int = 1) -> int:
    """``fraction`` of the shorter image side, in whole pixels, at least ``minimum``."""
    return max(minimum, round(min(shape[0], shape[1]) * fraction))


def border_band(shape: tuple[int, ...], band_fraction: float) -> np.ndarray:
    """Boolean mask of the pixels within ``band_fraction`` of the shorter side from any border."""
    height, width = shape[:2]
    band = scaled_pixels(shape, band_fraction, minimum=0)
    inside = np.zeros((height, width), bool)
    inside[band : height - band, band : width - band] = True
    return ~inside
