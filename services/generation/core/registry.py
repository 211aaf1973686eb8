"""The generator registry (DESIGN.md, rule 5): every backend by name, with its config and profiles.

Each backend registers itself in its own module with ``@register_generator`` (``registration.py``), as timm's
models do with ``register_model``; importing this module imports every backend module, so it is the one
place that sees them all.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.generation.core import ddpm as _ddpm  # noqa: F401  (registers "ddpm")
from skingenbench.services.generation.core.backend import GeneratorBackend, read_config_document
from skingenbench.services.generation.core.dermgan import backend as _dermgan  # noqa: F401  (registers "dermgan")
from skingenbench.services.generation.core.registration import GENERATORS
from skingenbench.services.generation.core.stylegan2 import backend as _stylegan2  # noqa: F401  (registers "stylegan2_ada")

__all__ = ["GENERATORS", "backend_class", "backend_from_config_json", "create_backend", "from_pretrained"]


def create_backend(
    name: str, profile: str = "paper", overrides: dict[str, Any] | None = None, device: str = ""
) -> GeneratorBackend:
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
    return backend_class(name).from_config(config, device=device)


def from_pretrained(folder: str | Path, device: str = "") -> GeneratorBackend:
    """A sampling backend from any generator's ``save_pretrained`` folder (the backend named in its config)."""
    document = read_config_document(folder, field="folder")
    if document is None:
        raise InvalidArgument(
            f"{folder} is not a save_pretrained folder (no config document)", field="folder"
        )
    return backend_class(document["backend"]).from_pretrained(folder, device=device)


def backend_class(name: str) -> type[GeneratorBackend]:
    """The backend class registered as ``name`` (``register_generator`` registers the class as its factory)."""
    factory = GENERATORS.get(name).factory
    if not (isinstance(factory, type) and issubclass(factory, GeneratorBackend)):
        raise TypeError(f"generator {name!r} is registered with {factory!r}, not a GeneratorBackend class")
    return factory
