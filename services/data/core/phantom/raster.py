"""Raster helpers shared by the skin and the lesion: smooth noise, the smoothstep ramp, Lab to sRGB."""

from __future__ import annotations

import cv2
import numpy as np


def lab_to_rgb8(lab: np.ndarray) -> np.ndarray:
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)  # float Lab (L in 0..100) -> sRGB in 0..1
    return np.clip(rgb * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)


def smooth_noise(rng: np.random.Generator, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Smooth noise: a coarse Gaussian grid resized with bicubic interpolation (cheap low frequencies)."""
    coarse = rng.standard_normal(grid, dtype=np.float32)
    return cv2.resize(coarse, size, interpolation=cv2.INTER_CUBIC)


def smoothstep(edge0: float | np.ndarray, edge1: float | np.ndarray, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)
