"""How a generator enters the registry: ``@register_generator`` on its backend class, in its own module.

In the manner of timm's ``register_model``: the model's module declares its registry entry next to its code
(name, config class and samplers come from the class; profiles, description and the conditioning it offers
are given), and ``registry.py`` imports every backend module so that importing it shows them all. This
module imports no backend, so a backend importing it makes no cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, TypeVar

from skingenbench.services.core.registry import Registry

if TYPE_CHECKING:  # for the annotations only: the backend modules import this one
    from skingenbench.services.generation.core.backend import GeneratorBackend
    from skingenbench.services.generation.core.generator_config import GeneratorConfig

GENERATORS = Registry("generator")

Backend = TypeVar("Backend", bound="type[GeneratorBackend]")


def register_generator(
    *, profiles: Mapping[str, GeneratorConfig], description: str, conditional: str, default_sampler: str
) -> Callable[[Backend], Backend]:
    """Register the decorated ``GeneratorBackend`` class under its ``name`` (the class is the factory).

    ``conditional`` is what ListGenerators reports: ``"false"``, ``"true"`` (needs condition maps) or
    ``"optional"`` (class labels when configured); ``default_sampler`` is the sampler a request gets by default.
    """

    def decorator(backend_class: Backend) -> Backend:
        if default_sampler not in backend_class.samplers:
            raise ValueError(
                f"{backend_class.name}: default sampler {default_sampler!r} is not one of "
                f"{backend_class.samplers}"
            )
        capabilities = {
            "conditional": conditional,
            "samplers": ",".join(backend_class.samplers),
            "default_sampler": default_sampler,
        }
        GENERATORS.register(
            backend_class.name,
            config_cls=backend_class.config_class,
            profiles=dict(profiles),
            description=description,
            capabilities=capabilities,
        )(backend_class)
        return backend_class

    return decorator
