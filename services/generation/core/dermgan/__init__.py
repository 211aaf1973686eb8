"""DermGAN-style conditional generation (Ghorbani et al. 2019, after Pix2Pix, Isola et al. 2017).

- ``semantic_map``: the generator's input (skin colour from ITA, one-hot class in the lesion, noise);
- ``networks``: U-Net generator (upsample + convolution) and PatchGAN discriminator;
- ``losses``: conditional GAN loss plus lesion-weighted L1;
- ``conditioning``: sampling conditions (explicit, from the training distribution, balanced tones);
- ``controllability``: requested vs measured lesion size, centre and skin tone;
- ``config``: ``DermGANConfig``, its profiles and its model/training fields;
- ``backend``: ``DermGANBackend``, the generator registry's ``dermgan``.
"""

from __future__ import annotations

from skingenbench.services.generation.core.dermgan.backend import DermGANBackend
from skingenbench.services.generation.core.dermgan.conditioning import (
    ITA_BINS,
    ConditionDistribution,
    ConditionRecord,
)
from skingenbench.services.generation.core.dermgan.config import PROFILES, DermGANConfig
from skingenbench.services.generation.core.dermgan.semantic_map import MapLayout, MapParams

__all__ = [
    "ITA_BINS",
    "PROFILES",
    "ConditionDistribution",
    "ConditionRecord",
    "DermGANBackend",
    "DermGANConfig",
    "MapLayout",
    "MapParams",
]
