"""Registries by name (DESIGN.md, rule 5), in the manner of timm's ``register_model``.

A component (generator, classifier, feature extractor, metric) registers a factory under a name
with a config dataclass and named profiles: ``tiny`` (CPU, seconds) and ``paper`` (the reference
study's settings). Configs travel as JSON: ``config_from_dict`` refuses unknown keys loudly, so a
typo in a grid file is an error and not a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from skingenbench.services.core.errors import InvalidArgument, NotFound

PROFILES = ("tiny", "paper")


def config_from_dict(
    config_cls: type, base: Any | None = None, overrides: dict[str, Any] | None = None
) -> Any:
    """``base`` (or the class defaults) with ``overrides`` applied; unknown keys are refused."""
    overrides = dict(overrides or {})
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise InvalidArgument(
            f"unknown config key(s) for {config_cls.__name__}: {', '.join(unknown)}",
            hint=f"known keys: {', '.join(sorted(known))}",
        )
    config = dataclasses.replace(base, **overrides) if base is not None else config_cls(**overrides)
    validate = getattr(config, "validate", None)
    if callable(validate):
        validate()
    return config


@dataclass
class Registered:
    name: str
    kind: str
    description: str
    config_cls: type
    factory: Callable[..., Any]
    profiles: dict[str, Any]
    capabilities: dict[str, str] = field(default_factory=dict)
    requirements: Callable[[], list[dict[str, Any]]] = lambda: []


class Registry:
    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Registered] = {}

    def register(
        self,
        name: str,
        *,
        config_cls: type,
        profiles: dict[str, Any],
        description: str,
        capabilities: dict[str, str] | None = None,
        requirements: Callable[[], list[dict[str, Any]]] | None = None,
    ) -> Callable:
        missing = [p for p in PROFILES if p not in profiles]
        if missing:
            raise ValueError(f"{self.kind} {name!r} lacks profile(s) {missing}")

        def decorator(factory: Callable) -> Callable:
            self._entries[name] = Registered(
                name,
                self.kind,
                description,
                config_cls,
                factory,
                dict(profiles),
                dict(capabilities or {}),
                requirements or (lambda: []),
            )
            return factory

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> Registered:
        if name not in self._entries:
            raise NotFound(
                f"no {self.kind} named {name!r}", hint=f"registered: {', '.join(self.names()) or 'none'}"
            )
        return self._entries[name]

    def config(self, name: str, profile: str = "paper", overrides: dict[str, Any] | None = None) -> Any:
        entry = self.get(name)
        profile = profile or "paper"
        if profile not in entry.profiles:
            raise InvalidArgument(
                f"{self.kind} {name!r} has no profile {profile!r}",
                hint=f"profiles: {', '.join(entry.profiles)}",
            )
        return config_from_dict(entry.config_cls, entry.profiles[profile], overrides)

    def create(
        self, name: str, profile: str = "paper", overrides: dict[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        return self.get(name).factory(self.config(name, profile, overrides), **kwargs)

    def describe(self, name: str) -> dict[str, Any]:
        entry = self.get(name)
        return {
            "name": entry.name,
            "kind": entry.kind,
            "description": entry.description,
            "profiles": {p: dataclasses.asdict(c) for p, c in entry.profiles.items()},
            "capabilities": entry.capabilities,
            "requirements": entry.requirements(),
        }

    def __contains__(self, name: str) -> bool:
        return name in self._entries
