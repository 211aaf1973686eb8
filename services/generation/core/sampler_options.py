"""How images are drawn: the sampler options of a request and the seeds that make each image reproducible."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from skingenbench.services.core.errors import InvalidArgument

# torch.Generator.manual_seed takes any 64-bit pattern, but a seed is recorded in int64 fields
# (GeneratedImage.seed, the requests' seeds) and in manifests: seeds are limited to [0, 2**63) so that
# every seed an image gets can be written where it is reported. Negative seeds are refused so that a
# seed in a manifest means the same thing in every tool that reads it.
MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class SamplerOptions:
    """How to draw images. Zero/empty values mean "the backend's configured default".

    Options that do not apply to a backend (``eta`` for a GAN, ``truncation_psi`` for a diffusion model)
    must stay at their neutral value: a backend refuses them rather than silently ignoring them.
    """

    sampler: str = ""  # diffusion: "ddpm" (full ancestral chain), "ddim" or "dpm_solver"; GANs: ""
    steps: int = 0  # denoising steps; 0 = backend default
    eta: float = 0.0  # DDIM stochasticity (0 = deterministic DDIM, 1 = DDPM-like noise)
    truncation_psi: float = 1.0  # StyleGAN truncation; 1 = none
    batch_size: int = 0  # images per forward pass; 0 = backend default

    def validate(self) -> None:
        if self.steps < 0:
            raise InvalidArgument(f"steps must be >= 0, got {self.steps}", field="steps")
        if self.batch_size < 0:
            raise InvalidArgument(f"batch_size must be >= 0, got {self.batch_size}", field="batch_size")
        if not 0.0 <= self.eta <= 1.0:
            raise InvalidArgument(f"eta must be in [0, 1], got {self.eta}", field="eta")
        if not math.isfinite(self.truncation_psi):
            raise InvalidArgument(
                f"truncation_psi must be finite, got {self.truncation_psi}", field="truncation_psi"
            )


def check_seeds(seeds: list[int]) -> list[int]:
    """Seeds as plain ints in [0, 2**63); a bool, float or out-of-range seed is refused loudly."""
    checked = []
    for seed in seeds:
        if (
            isinstance(seed, bool)
            or not isinstance(seed, (int, np.integer))
            or not 0 <= int(seed) <= MAX_SEED
        ):
            raise InvalidArgument(f"seed {seed!r} is not an integer in [0, 2**63)", field="seeds")
        checked.append(int(seed))
    return checked
