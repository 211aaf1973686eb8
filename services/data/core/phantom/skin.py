"""Skin of a chosen tone: the individual typology angle (ITA; Chardon et al. 1991) fixes L* and b*;
texture and the ring light's shading come from a seed of their own, so a second view keeps its skin."""

from __future__ import annotations

import math

import numpy as np
from skingenbench.services.core.imaging.skin_tone import SKIN_TYPE_BOUNDS, lightness_for_ita
from skingenbench.services.data.core.phantom.config import PhantomConfig, SkinParams
from skingenbench.services.data.core.phantom.raster import smooth_noise


def ita_bins_in_range(config: PhantomConfig) -> list[tuple[float, float, float]]:
    """(low, high, weight) of each ITA category's part of ``config.ita_range`` that has a width and a weight
    (categories of Del Bino & Bernerd 2013, bounds from ``skin_tone.SKIN_TYPE_BOUNDS``)."""
    lo, hi = config.ita_range
    uppers = [math.inf] + [bound for bound, _ in SKIN_TYPE_BOUNDS[:-1]]
    bins = []
    for (lower, _), upper, weight in zip(
        SKIN_TYPE_BOUNDS, uppers, config.ita_bin_weights or (), strict=False
    ):
        low, high = max(lower, lo), min(upper, hi)
        if high > low and weight > 0:
            bins.append((low, high, float(weight)))
    return bins


def sample_ita(rng: np.random.Generator, config: PhantomConfig) -> float:
    """An ITA from the config's tone distribution: uniform over ``ita_range`` without bin weights, else a
    category drawn by its weight and a value uniform inside it."""
    if config.ita_bin_weights is None:
        return float(rng.uniform(*config.ita_range))
    bins = ita_bins_in_range(config)
    if not bins:
        raise ValueError(
            f"no ITA category with a positive weight overlaps ita_range {config.ita_range}: "
            f"weights {config.ita_bin_weights}"
        )
    weights = np.array([w for _, _, w in bins])
    low, high, _ = bins[int(rng.choice(len(bins), p=weights / weights.sum()))]
    return float(rng.uniform(low, high))


def sample_skin(rng: np.random.Generator, config: PhantomConfig, ita: float | None = None) -> SkinParams:
    ita = sample_ita(rng, config) if ita is None else float(ita)
    # b* (yellowness) and a* (redness) in the range colorimetry reports for most skin.
    lightness, b_star = lightness_for_ita(ita, float(rng.uniform(12.0, 20.0)))
    a_star = float(rng.uniform(6.0, 13.0))
    return SkinParams(ita, lightness, a_star, b_star, int(rng.integers(2**62)))


def render_skin(skin: SkinParams, width: int, height: int) -> np.ndarray:
    """Skin in Lab: the ITA colour with low-frequency mottling, shading and a fine grain."""
    rng = np.random.default_rng(skin.texture_seed)
    size = (width, height)
    lab = np.empty((height, width, 3), np.float32)
    lab[..., 0] = (
        skin.lightness + 2.0 * smooth_noise(rng, (5, 5), size) + 0.8 * smooth_noise(rng, (40, 40), size)
    )
    lab[..., 1] = skin.a + 1.0 * smooth_noise(rng, (4, 4), size)
    lab[..., 2] = skin.b + 0.7 * smooth_noise(rng, (4, 4), size)
    # The dermatoscope's ring light is brightest in the middle; zero mean so the skin keeps its ITA.
    ys = (np.arange(height, dtype=np.float32) - height / 2) / (0.5 * math.hypot(width, height))
    xs = (np.arange(width, dtype=np.float32) - width / 2) / (0.5 * math.hypot(width, height))
    falloff = xs[None, :] ** 2 + ys[:, None] ** 2
    lab[..., 0] += float(rng.uniform(2.0, 6.0)) * (1.0 / 3.0 - falloff)  # falloff averages 1/3
    lab[..., 0] += 0.6 * rng.standard_normal((height, width), dtype=np.float32)
    np.clip(lab[..., 0], 0.0, 100.0, out=lab[..., 0])
    return lab
