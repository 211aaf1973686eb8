"""The config machinery of the preprocessing pipelines: fields that carry their own docs and limits.

A config is a frozen dataclass deriving from ``ConfigBase`` whose fields are ``setting``s (a value
with its doc and valid range or choices) or ``section``s (a nested config). Construction validates
every field and raises InvalidArgument naming it (``hair_removal.threshold`` for a nested one).
Configs travel as plain dicts (``to_dict`` / ``from_dict``, which refuses unknown keys): they are
sent as JSON in gRPC messages, recorded in manifests' provenance and hashed into output addresses.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import Any

from skingenbench.services.core.errors import InvalidArgument


def setting(
    default: Any,
    doc: str,
    low: float | None = None,
    high: float | None = None,
    choices: Iterable[str] | None = None,
) -> Any:
    """A config field with its documentation and its valid range or choices."""
    meta = {"doc": doc, "low": low, "high": high, "choices": tuple(choices) if choices else None}
    return field(default=default, metadata=meta)


def section(config_class: type, doc: str) -> Any:
    return field(default_factory=config_class, metadata={"doc": doc})



def invalid_field(name: str, problem: str, hint: str = "") -> InvalidArgument:
    return InvalidArgument(
        f"invalid config field {name!r}: {problem}", hint=hint, field=name, problem=problem
    )


@functools.cache
def _field_types(config_class: type) -> dict[str, Any]:
    return typing.get_type_hints(config_class)


class ConfigBase:
    """Validation and dict round-trip shared by every config dataclass below."""

    def __post_init__(self) -> None:
        types = _field_types(type(self))
        for spec in dataclasses.fields(self):  # type: ignore[arg-type]
            value, expected = getattr(self, spec.name), types[spec.name]
            if dataclasses.is_dataclass(expected):
                if isinstance(value, Mapping):  # a section given as a dict, e.g. from JSON
                    object.__setattr__(self, spec.name, expected.from_dict(value, _prefix=f"{spec.name}."))
                elif not isinstance(value, expected):
                    raise invalid_field(spec.name, f"expected a {expected.__name__} or a dict")
                continue
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, spec.name, value := float(value))  # JSON has no int/float split
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise invalid_field(
                    spec.name, f"expected {expected.__name__}, got {type(value).__name__} {value!r}"
                )
            low, high, choices = (
                spec.metadata.get("low"),
                spec.metadata.get("high"),
                spec.metadata.get("choices"),
            )
            if choices and value not in choices:
                raise invalid_field(spec.name, f"{value!r} is not one of {list(choices)}")
            if (low is not None and value < low) or (high is not None and value > high):
                raise invalid_field(spec.name, f"{value!r} is outside [{low}, {high}]", hint=spec.metadata["doc"])

    def validate(self) -> None:
        """Re-check every field (construction already did; ``skingenbench.services.core.registry`` calls this)."""
        self.__post_init__()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], _prefix: str = "") -> Any:
        """Build from a (possibly partial) dict; missing keys keep their defaults, unknown keys are
        refused so a typo never silently falls back to a default."""
        if not isinstance(data, Mapping):
            raise invalid_field(_prefix.rstrip(".") or cls.__name__, f"expected a dict, got {type(data).__name__}")
        names = {spec.name for spec in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise invalid_field(_prefix + unknown[0], "unknown key", hint=f"known keys: {sorted(names)}")
        try:
            return cls(**data)
        except InvalidArgument as exc:
            raise invalid_field(_prefix + exc.context["field"], exc.context["problem"], exc.hint) from None

    def with_overrides(self, **overrides: Any) -> Any:
        """A copy with ``overrides`` applied; a dict for a section updates only the keys it names."""
        merged = self.to_dict()
        for name, value in overrides.items():
            if isinstance(value, ConfigBase):
                value = value.to_dict()
            if isinstance(value, Mapping) and isinstance(merged.get(name), dict):
                merged[name] = {**merged[name], **value}
            else:
                merged[name] = value
        return type(self).from_dict(merged)
