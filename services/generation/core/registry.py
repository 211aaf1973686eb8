"""The generator registry (DESIGN.md, rule 5): every backend by name, with its config and profiles.

Backends are registered here rather than in their own modules, so importing this module is the one way
to see them all and there is no import cycle between a backend and the registry.
"""

from __future__ import annotations

import json
from typing import Any

from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.registry import Registry, config_from_dict
from skingenbench.services.generation.core.backend import GeneratorBackend
from skingenbench.services.generation.core.ddpm import PROFILES as DDPM_PROFILES
from skingenbench.services.generation.core.ddpm import DDPMBackend, DDPMConfig
from skingenbench.services.generation.core.dermgan.backend import PROFILES as DERMGAN_PROFILES
from skingenbench.services.generation.core.dermgan.backend import DermGANBackend, DermGANConfig
from skingenbench.services.generation.core.stylegan2.backend import PROFILES as STYLEGAN2_PROFILES
from skingenbench.services.generation.core.stylegan2.backend import StyleGAN2ADABackend, StyleGAN2Config

GENERATORS = Registry("generator")


@GENERATORS.register(
    "ddpm",
    config_cls=DDPMConfig,
    profiles=DDPM_PROFILES,
    description="Unconditional DDPM (Ho et al. 2020) on a diffusers UNet2DModel; DDPM or DDIM sampling.",
    capabilities={"conditional": "false", "samplers": "ddpm,ddim", "default_sampler": "ddim"},
)
def create_ddpm(config: DDPMConfig, device: str = "") -> DDPMBackend:
    return DDPMBackend(config, device)


@GENERATORS.register(
    "stylegan2_ada",
    config_cls=StyleGAN2Config,
    profiles=STYLEGAN2_PROFILES,
    description="StyleGAN2 (Karras et al. 2020) with adaptive discriminator augmentation (Karras et al. 2020, "
                "limited data), plain PyTorch; seeded sampling with truncation.",
    capabilities={"conditional": "optional", "samplers": "stylegan,stylegan_const", "default_sampler": "stylegan"},
)
def create_stylegan2_ada(config: StyleGAN2Config, device: str = "") -> StyleGAN2ADABackend:
    return StyleGAN2ADABackend(config, device)


@GENERATORS.register(
    "dermgan",
    config_cls=DermGANConfig,
    profiles=DERMGAN_PROFILES,
    description="DermGAN-style conditional Pix2Pix (Ghorbani et al. 2019; Isola et al. 2017): lesions of a chosen "
                "class, size, centre and skin tone (ITA) from semantic maps.",
    capabilities={"conditional": "true", "samplers": "pix2pix", "default_sampler": "pix2pix"},
)
def create_dermgan(config: DermGANConfig, device: str = "") -> DermGANBackend:
    return DermGANBackend(config, device)


def create_backend(name: str, profile: str = "paper", overrides: dict[str, Any] | None = None,
                   device: str = "") -> GeneratorBackend:
    """A backend from a registered name, a profile and config overrides (unknown keys are refused).

    ``device`` empty: chosen at run time (``SKINGENBENCH_DEVICE``, else CUDA when present, else CPU).
    """
    return GENERATORS.create(name, profile, overrides, device=device)


def backend_from_config_json(text: str | bytes, device: str = "") -> GeneratorBackend:
    """The inverse of ``GeneratorBackend.config_json()``: the same backend and config, unbuilt."""
    try:
        document = json.loads(text)
        name, config = document["backend"], document["config"]
    except (ValueError, KeyError, TypeError) as error:
        raise InvalidArgument(f"not a generator config document: {error}", field="config") from error
    entry = GENERATORS.get(name)
    return entry.factory(config_from_dict(entry.config_cls, None, config), device=device)
