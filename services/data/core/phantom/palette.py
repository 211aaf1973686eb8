"""Lesion colours in CIELAB: the structure colours dermoscopy names and the base colour on given skin."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from skingenbench.services.data.core.phantom.config import SkinParams

# Structure colours in CIELAB, after the colours dermoscopy names (Argenziano et al. 2003; the 'C' of
# the ABCD rule, Stolz et al. 1994: light brown, dark brown, black, blue-grey, red, white).
BLACK = (16.0, 3.0, 3.0)
DARK_BROWN = (27.0, 12.0, 16.0)
BLUE_GREY = (44.0, -3.0, -11.0)
BLUE_WHITE_VEIL = (60.0, -4.0, -9.0)
REGRESSION_WHITE = (80.0, 5.0, 8.0)
VESSEL_RED = (43.0, 48.0, 26.0)
KERATIN = (85.0, 2.0, 22.0)
MILIA_WHITE = (89.0, 0.0, 13.0)
CRUST = (30.0, 24.0, 22.0)
PEARL_WHITE = (82.0, 9.0, 5.0)

# The lesion's base colour relative to its skin (dL*, da*, db*) at pigment 0, 1/3, 2/3 and 1:
# pink (vascular, amelanotic), tan, brown, dark brown.
_PIGMENT_RAMP = np.array([[-3.0, 15.0, 0.0], [-12.0, 6.0, 9.0], [-24.0, 5.0, 8.0], [-36.0, 3.0, 1.0]])


def base_colour(skin: SkinParams, pigment: float) -> np.ndarray:
    x = pigment * (len(_PIGMENT_RAMP) - 1)
    i = min(int(x), len(_PIGMENT_RAMP) - 2)
    delta = _PIGMENT_RAMP[i] + (x - i) * (_PIGMENT_RAMP[i + 1] - _PIGMENT_RAMP[i])
    # Pigment darkens light skin more than dark skin, which has less lightness to lose.
    delta = delta * np.array([(skin.lightness - 10.0) / 60.0, 1.0, 1.0])
    colour = np.array([skin.lightness, skin.a, skin.b]) + delta
    colour[0] = max(colour[0], 12.0)
    return colour.astype(np.float32)


def jitter(colour: Sequence[float], rng: np.random.Generator, amount: float = 4.0) -> np.ndarray:
    return np.asarray(colour, np.float32) + rng.uniform(-amount, amount, 3).astype(np.float32)
