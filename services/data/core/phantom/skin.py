"""Skin of a chosen tone: the individual typology angle (ITA; Chardon et al. 1991) fixes L* and b*;
texture and the ring light's shading come from a seed of their own, so a second view keeps its skin."""

from __future__ import annotations

import math

import numpy as np
from skingenbench.services.core.imaging.skin_tone import lightness_for_ita
from skingenbench.services.data.core.phantom.config import PhantomConfig, SkinParams
from skingenbench.services.data.core.phantom.raster import smooth_noise


def sample_skin(rng: np.random.Generator, config: PhantomConfig, ita: float | None = None) -> SkinParams:
    ita = float(rng.uniform(*config.ita_range)) if ita is None else float(ita)
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
