"""DDPM (Ho et al. 2020) on diffusers' ``UNet2DModel``, sampled with the DDPM chain or DDIM (Song et al. 2021).

- ``config``: ``DDPMConfig``, its profiles and its model/training fields;
- ``backend``: ``DDPMBackend``, the generator registry's ``ddpm``.
"""

from __future__ import annotations

from skingenbench.services.generation.core.ddpm.backend import DDPMBackend
from skingenbench.services.generation.core.ddpm.config import PAPER, PROFILES, SAMPLERS, TINY, DDPMConfig

__all__ = ["PAPER", "PROFILES", "SAMPLERS", "TINY", "DDPMBackend", "DDPMConfig"]
