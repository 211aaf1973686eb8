"""Lesion borders: a closed Fourier contour whose harmonics encode each class's asymmetry and border
(the 'A' and 'B' of the ABCD rule, Stolz et al. 1994)."""

from __future__ import annotations

import math

import numpy as np


class Contour:
    """A closed border r(theta) = 1 + sum_k a_k cos(k theta + phi_k), stretched to an ellipse."""

    def __init__(self, amplitudes: np.ndarray, phases: np.ndarray, aspect: float) -> None:
        self.amplitudes = amplitudes
        self.phases = phases
        self.stretch = (math.sqrt(aspect), 1.0 / math.sqrt(aspect))

    def radius(self, theta: np.ndarray) -> np.ndarray:
        k = np.arange(1, len(self.amplitudes) + 1)
        r = 1.0 + (self.amplitudes * np.cos(np.outer(theta, k) + self.phases)).sum(axis=1)
        return np.maximum(r, 0.35)

    def point(self, theta: np.ndarray, scale: float | np.ndarray = 1.0) -> np.ndarray:
        r = self.radius(theta) * scale
        return np.stack([r * np.cos(theta) * self.stretch[0], r * np.sin(theta) * self.stretch[1]], axis=-1)

    def contains(self, points: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Which points lie inside the border shrunk by ``scale``."""
        x, y = points[:, 0] / self.stretch[0], points[:, 1] / self.stretch[1]
        return np.hypot(x, y) < scale * self.radius(np.arctan2(y, x))


def sample_contour(label: str, rng: np.random.Generator, aspect: float) -> Contour:
    k = np.arange(1, 13)
    if label == "NV":
        # Symmetric, round to oval, smooth border: A0 B0 of the ABCD rule (Stolz et al. 1994).
        amplitudes = np.where(k <= 4, rng.uniform(0.0, 0.025, 12), 0.0)
    elif label == "MEL":
        # Asymmetric in both axes (low harmonics) with an irregular, notched border (higher harmonics).
        notches = rng.uniform(0.015, 0.05, 12) / np.sqrt(k / 4)
        amplitudes = np.where(k <= 3, rng.uniform(0.08, 0.2, 12), notches)
    elif label == "BKL":
        # Oval and sharply demarcated, sometimes with a 'moth-eaten' border (small concave bites).
        bites = np.where(k >= 7, rng.uniform(0.0, 0.025, 12), 0.0)
        amplitudes = np.where(k <= 3, rng.uniform(0.01, 0.06, 12), bites)
    elif label == "BCC":
        # Lobulated but not notched.
        amplitudes = np.where(k <= 4, rng.uniform(0.02, 0.09, 12), 0.0)
    else:  # SCC: a round to oval nodule or plaque
        amplitudes = np.where(k <= 4, rng.uniform(0.01, 0.06, 12), 0.0)
    return Contour(amplitudes, rng.uniform(0.0, 2 * math.pi, 12), aspect)
