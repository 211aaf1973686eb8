"""Shades of Gray colour constancy.

Finlayson & Trezzi (2004), "Shades of Gray and Colour Constancy", Proc. IS&T/SID Color Imaging
Conference: the illuminant is estimated per channel as the Minkowski p-norm mean of the pixels,
e_c = (mean I_c^p)^(1/p), and each channel is divided by it. p = 1 is Gray World, p -> infinity is
max-RGB; p = 6 was the best single value in their experiments and is the usual choice for
dermoscopy (Barata, Celebi & Marques 2015). The estimate is normalised to unit length and the
gains to sqrt(3), so an already neutral illuminant leaves the image unchanged.

Note for measurements: this step pulls the dominant colour -- skin -- towards grey, so skin tone
(ITA) must be measured on the image *before* it, as the pipelines do.
"""

from __future__ import annotations

import cv2
import numpy as np
from skingenbench.services.core.errors import InvalidArgument

DEFAULT_POWER = 6.0


def estimate_illuminant(
    rgb: np.ndarray, power: float = DEFAULT_POWER, mask: np.ndarray | None = None
) -> np.ndarray:
    """Unit-length RGB illuminant estimate from the pixels in ``mask`` (all pixels when None).

    Leave the dermoscope's dark field out through ``mask``: it carries no illuminant information
    and only lowers the estimate."""
    if not power >= 1.0:
        raise InvalidArgument(f"power must be >= 1, got {power}", field="power")
    pixels = rgb.reshape(-1, 3) if mask is None else rgb[mask.astype(bool)]
    if pixels.shape[0] == 0:
        return np.full(3, 1.0 / np.sqrt(3.0))
    # 8-bit values: the mean of v**p is a histogram dotted with a 256-entry table, exact and
    # ~30x faster than raising every pixel to a float power. Values in [0, 1] keep v**p finite.
    powered_levels = np.power(np.arange(256) / 255.0, power)
    counts = [np.bincount(pixels[:, channel], minlength=256) for channel in range(3)]
    norm = np.power(np.array([count @ powered_levels for count in counts]) / pixels.shape[0], 1.0 / power)
    length = np.linalg.norm(norm)
    return norm / length if length > 0 else np.full(3, 1.0 / np.sqrt(3.0))


def shades_of_gray(
    rgb: np.ndarray, power: float = DEFAULT_POWER, mask: np.ndarray | None = None
) -> np.ndarray:
    """uint8 RGB with the estimated illuminant divided out (von Kries-style per-channel gains)."""
    illuminant = estimate_illuminant(rgb, power, mask)
    gains = 1.0 / (np.sqrt(3.0) * np.maximum(illuminant, 1e-6))
    # One lookup table per channel: out = clip(round(v * gain)).
    table = np.clip(np.rint(np.arange(256)[:, None] * gains[None, :]), 0, 255).astype(np.uint8)
    return cv2.LUT(np.ascontiguousarray(rgb), table.reshape(256, 1, 3))
