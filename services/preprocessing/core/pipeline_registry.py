"""Preprocessing pipelines by name (DESIGN.md, rule 5), each with its config class and profiles.

Like timm's ``register_model``: ``create_pipeline("advanced", profile="paper", size=224)`` builds a
callable ``pipeline(rgb, seed, augment=False) -> PreprocessResult``. ``paper`` is the reference
study's description with the parameters chosen in ``pipeline_config``; ``tiny`` is ``paper`` at
64x64 for tests and demos. ``basic`` and ``advanced`` are registered at the bottom of this module
rather than in ``pipelines``, so importing this module is the one way to see them all and there is
no import cycle between a pipeline and the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.preprocessing.core.pipeline_config import AdvancedConfig, BasicConfig
from skingenbench.services.preprocessing.core.pipelines import AdvancedPipeline, BasicPipeline


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    description: str
    config_class: type[BasicConfig]
    profiles: Mapping[str, BasicConfig]
    pipeline_class: type[BasicPipeline]


# Not skingenbench.services.core.registry.Registry, which the other services use: it fits flat configs. Its
# config_from_dict applies overrides with dataclasses.replace, so a section given as a dict
# (hair_removal={"threshold": 20}) would replace the profile's section with class defaults instead of
# updating the keys it names, and an unknown key would be refused without the field name
# ("hair_removal.tresh") that clients and tests read from the error. It also answers an unknown name
# with NOT_FOUND (this service says INVALID_ARGUMENT), silently replaces a name registered twice, and
# defaults to the "paper" profile (here "tiny"). describe() keeps its entry shape (name, kind,
# description, profiles), so servicer.entry_from_description makes the same RegistryEntry from it.
_REGISTRY: dict[str, PipelineSpec] = {}


def register_pipeline(name: str, config_class: type[BasicConfig], profiles: Mapping[str, BasicConfig]):
    """Class decorator: register a pipeline under ``name``; its docstring's first line describes it."""

    def decorate(pipeline_class: type[BasicPipeline]) -> type[BasicPipeline]:
        if name in _REGISTRY:
            raise ValueError(f"pipeline {name!r} is already registered")
        description = (pipeline_class.__doc__ or "").strip().splitlines()[0]
        _REGISTRY[name] = PipelineSpec(name, description, config_class, dict(profiles), pipeline_class)
        pipeline_class.name = name
        return pipeline_class

    return decorate


def list_pipelines() -> list[str]:
    return sorted(_REGISTRY)


def get_pipeline(name: str) -> PipelineSpec:
    if name not in _REGISTRY:
        raise InvalidArgument(
            f"unknown preprocessing pipeline {name!r}", hint=f"known: {list_pipelines()}", field="pipeline"
        )
    return _REGISTRY[name]


def pipeline_config(name: str, profile: str = "tiny", **overrides: Any) -> BasicConfig:
    spec = get_pipeline(name)
    if profile not in spec.profiles:
        raise InvalidArgument(
            f"unknown profile {profile!r} for pipeline {name!r}",
            hint=f"known: {sorted(spec.profiles)}",
            field="profile",
        )
    return spec.profiles[profile].with_overrides(**overrides)


def create_pipeline(name: str, profile: str = "tiny", **overrides: Any) -> BasicPipeline:
    """The pipeline ``name`` with a profile's config, ``overrides`` applied (sections as dicts)."""
    return get_pipeline(name).pipeline_class(pipeline_config(name, profile, **overrides))


def describe() -> list[dict[str, Any]]:
    """Every pipeline's name, description and profile configs as plain dicts (service metadata)."""
    return [
        {
            "name": spec.name,
            "kind": "preprocessing_pipeline",
            "description": spec.description,
            "profiles": {profile: config.to_dict() for profile, config in sorted(spec.profiles.items())},
        }
        for spec in (_REGISTRY[name] for name in list_pipelines())
    ]


register_pipeline(
    "basic", BasicConfig, {"paper": BasicConfig(), "tiny": BasicConfig(size=64, working_max_side=128)}
)(BasicPipeline)
register_pipeline(
    "advanced",
    AdvancedConfig,
    {"paper": AdvancedConfig(), "tiny": AdvancedConfig(size=64, working_max_side=128)},
)(AdvancedPipeline)
