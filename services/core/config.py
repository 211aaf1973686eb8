"""The config machinery of every stage (preprocessing pipelines, generators): fields that carry their own
docs and limits.

A config is a frozen dataclass deriving from ``ConfigBase`` whose fields are ``setting``s (a value
with its doc and valid range or choices) or ``section``s (a nested config). Construction validates
every field and raises InvalidArgument naming it (``hair_removal.threshold`` for a nested one);
relations between fields are checked in the config's own ``__post_init__`` after ``super().__post_init__()``.
Configs travel as plain dicts (``to_dict`` / ``from_dict``, which refuses unknown keys): they are
sent as JSON in gRPC messages, recorded in manifests' provenance and hashed into output addresses.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import field
from typing import TYPE_CHECKING, Any, ClassVar

from skingenbench.services.core.errors import InvalidArgument

if TYPE_CHECKING:
    from typing_extensions import Self


def setting(
    default: Any,
    doc: str,
    low: float | None = None,
    high: float | None = None,
    choices: Iterable[str] | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> Any:
    """A config field with its documentation and its valid range or choices.

    The range is closed unless ``low_open``/``high_open`` exclude its ends (a learning rate in (0, 1]).
    For a ``tuple[T, ...]`` field the range and choices apply to every element; ``T | None`` also takes None.
    """
    meta = {
        "doc": doc,
        "low": low,
        "high": high,
        "choices": tuple(choices) if choices else None,
        "low_open": low_open,
        "high_open": high_open,
    }
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

    # JSON has no int/float split: by default an int given for a float field is stored as a float. A config
    # whose dict is hashed into output addresses as given (the generators') keeps the number as written.
    coerce_int_to_float: ClassVar[bool] = True
    # Declared, not set: ``@dataclass`` sets it on every subclass, and it tells the type checker that a config is a
    # dataclass instance (``dataclasses.fields`` and ``asdict`` take one).
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

    def __post_init__(self) -> None:
        config_class: type = type(self)  # typed as plain `type`: mypy finds no __hash__ on type[ConfigBase]
        hints = _field_types(config_class)
        for spec in dataclasses.fields(self):
            value, expected = getattr(self, spec.name), hints[spec.name]
            if isinstance(expected, type) and dataclasses.is_dataclass(expected):
                section_class = typing.cast("type[ConfigBase]", expected)  # a section is a config too
                if isinstance(value, Mapping):  # a section given as a dict, e.g. from JSON
                    object.__setattr__(
                        self, spec.name, section_class.from_dict(value, _prefix=f"{spec.name}.")
                    )
                elif not isinstance(value, section_class):
                    raise invalid_field(spec.name, f"expected a {section_class.__name__} or a dict")
                continue
            checked = self._checked(spec, value, expected)
            if checked is not value:
                object.__setattr__(self, spec.name, checked)

    def _checked(self, spec: dataclasses.Field, value: Any, expected: Any) -> Any:
        """``value`` checked against the field's type and limits, normalised (JSON list -> tuple)."""
        arguments = typing.get_args(expected)
        if typing.get_origin(expected) in (types.UnionType, typing.Union) and type(None) in arguments:
            if value is None:
                return None
            (expected,) = [a for a in arguments if a is not type(None)]
        if typing.get_origin(expected) is tuple:  # tuple[T, ...]: every element a T within the limits
            if isinstance(value, list):
                value = tuple(value)
            if not isinstance(value, tuple):
                raise invalid_field(spec.name, f"expected a list, got {type(value).__name__} {value!r}")
            return tuple(self._checked_scalar(spec, item, typing.get_args(expected)[0]) for item in value)
        return self._checked_scalar(spec, value, expected)

    def _checked_scalar(self, spec: dataclasses.Field, value: Any, expected: type) -> Any:
        if (
            expected is float
            and self.coerce_int_to_float
            and isinstance(value, int)
            and not isinstance(value, bool)
        ):
            value = float(value)
        accepted = (int, float) if expected is float else expected  # an int is a valid float as written
        if not isinstance(value, accepted) or (expected in (int, float) and isinstance(value, bool)):
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
        low_open, high_open = spec.metadata.get("low_open", False), spec.metadata.get("high_open", False)
        # Written as "not inside" so that NaN, which compares false with everything, is outside every range.
        inside_low = low is None or (low < value if low_open else low <= value)
        inside_high = high is None or (value < high if high_open else value <= high)
        if not (inside_low and inside_high):
            interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
            raise invalid_field(
                spec.name, f"{value!r} is outside {interval}", hint=spec.metadata.get("doc", "")
            )
        return value

    def validate(self) -> None:
        """Re-check every field (construction already did; ``skingenbench.services.core.registry`` calls this)."""
        self.__post_init__()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], _prefix: str = "") -> Self:
        """Build from a (possibly partial) dict; missing keys keep their defaults, unknown keys are
        refused so a typo never silently falls back to a default."""
        if not isinstance(data, Mapping):
            raise invalid_field(
                _prefix.rstrip(".") or cls.__name__, f"expected a dict, got {type(data).__name__}"
            )
        names = {spec.name for spec in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise invalid_field(_prefix + unknown[0], "unknown key", hint=f"known keys: {sorted(names)}")
        try:
            return cls(**data)
        except InvalidArgument as exc:
            raise invalid_field(_prefix + exc.context["field"], exc.context["problem"], exc.hint) from None

    def with_overrides(self, **overrides: Any) -> Self:
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
