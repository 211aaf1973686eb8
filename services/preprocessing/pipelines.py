"""Preprocessing pipelines by name, each with a config dataclass and ``tiny`` / ``paper`` profiles.

Like timm's ``register_model``: ``create_pipeline("advanced", profile="paper", size=224)`` builds a
callable ``pipeline(rgb, seed, augment=False) -> PreprocessResult``. The reference study (SkinGenBench,
arXiv 2512.17585) describes *basic* as random rotations, horizontal and vertical flips and a resize
to 256x256, and *advanced* as basic plus DullRazor hair and ruler-mark removal, with no parameters
published. The ``paper`` profile is that description with parameters chosen here (each field's
``doc`` says why); steps the study does not mention -- dark-field handling, ink removal, colour
constancy -- are switches, off in both profiles. ``tiny`` is ``paper`` at 64x64 for tests and demos.

Configs are frozen and validated on construction (InvalidArgument naming the field), and travel as
plain dicts (``to_dict`` / ``from_dict``, which refuses unknown keys): they are sent as JSON in gRPC
messages and recorded in manifests' provenance.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from services.common.errors import InvalidArgument
from services.preprocessing.color_constancy import shades_of_gray
from services.preprocessing.geometry import (
    FIT_MODES,
    apply_augmentation,
    resize_image,
    resize_longest_side,
    resize_mask,
    sample_augmentation,
)
from services.preprocessing.hair_removal import INPAINT_METHODS, detect_hair, remove_hair
from services.preprocessing.lesion_segmentation import area_fraction, segment_lesion
from services.preprocessing.mark_removal import remove_marks
from services.preprocessing.skin_tone import estimate_ita, skin_type_from_ita
from services.preprocessing.vignette import VIGNETTE_MODES, detect_dark_field, remove_vignette


# ----------------------------------------------------------------------------- config machinery
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


def _invalid(name: str, problem: str, hint: str = "") -> InvalidArgument:
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
                    raise _invalid(spec.name, f"expected a {expected.__name__} or a dict")
                continue
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, spec.name, value := float(value))  # JSON has no int/float split
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise _invalid(
                    spec.name, f"expected {expected.__name__}, got {type(value).__name__} {value!r}"
                )
            low, high, choices = (
                spec.metadata.get("low"),
                spec.metadata.get("high"),
                spec.metadata.get("choices"),
            )
            if choices and value not in choices:
                raise _invalid(spec.name, f"{value!r} is not one of {list(choices)}")
            if (low is not None and value < low) or (high is not None and value > high):
                raise _invalid(spec.name, f"{value!r} is outside [{low}, {high}]", hint=spec.metadata["doc"])

    def validate(self) -> None:
        """Re-check every field (construction already did; ``services.common.registry`` calls this)."""
        self.__post_init__()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], _prefix: str = "") -> Any:
        """Build from a (possibly partial) dict; missing keys keep their defaults, unknown keys are
        refused so a typo never silently falls back to a default."""
        if not isinstance(data, Mapping):
            raise _invalid(_prefix.rstrip(".") or cls.__name__, f"expected a dict, got {type(data).__name__}")
        names = {spec.name for spec in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - names)
        if unknown:
            raise _invalid(_prefix + unknown[0], "unknown key", hint=f"known keys: {sorted(names)}")
        try:
            return cls(**data)
        except InvalidArgument as exc:
            raise _invalid(_prefix + exc.context["field"], exc.context["problem"], exc.hint) from None

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


# ----------------------------------------------------------------------------- configs
@dataclass(frozen=True)
class AugmentationConfig(ConfigBase):
    hflip_probability: float = setting(0.5, "probability of a horizontal flip", 0.0, 1.0)
    vflip_probability: float = setting(0.5, "probability of a vertical flip", 0.0, 1.0)
    rotate90: bool = setting(True, "random multiple of 90 deg: dermoscopy has no canonical orientation")
    max_rotation_degrees: float = setting(
        15.0, "uniform small rotation in +-this, reflected border", 0.0, 45.0
    )


@dataclass(frozen=True)
class MeasurementConfig(ConfigBase):
    segment_lesion: bool = setting(True, "lesion mask and lesion_area_fraction")
    skin_tone: bool = setting(True, "ITA of the non-lesion skin and its skin-type category")
    detect_hair: bool = setting(True, "hair mask and hair_fraction when hair is not removed")
    detect_dark_field: bool = setting(True, "exclude the dermoscope's dark field from the measurements")


@dataclass(frozen=True)
class BasicConfig(ConfigBase):
    size: int = setting(256, "output side in pixels (the study: 256x256)", 8, 4096)
    fit: str = setting(
        "center_crop", "how the aspect ratio is kept: crop the long side or pad", choices=FIT_MODES
    )
    working_max_side: int = setting(
        1024,
        "cleaning and measuring run at most at this long side (HAM10000's 600x450 runs native)",
        32,
        16384,
    )
    augmentation: AugmentationConfig = section(AugmentationConfig, "geometric augmentation (GTA sets)")
    measurements: MeasurementConfig = section(MeasurementConfig, "per-image measurements")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.working_max_side < self.size:
            raise _invalid("working_max_side", f"{self.working_max_side} is smaller than size={self.size}")


@dataclass(frozen=True)
class VignetteConfig(ConfigBase):
    enabled: bool = setting(False, "not in the study; crop away or fill the dark field")
    mode: str = setting(
        "crop", "crop to the largest clean rectangle, or fill with skin colour", choices=VIGNETTE_MODES
    )
    relative_threshold: float = setting(0.35, "dark = below this x the 95th-percentile luminance", 0.05, 0.9)
    min_crop_fraction: float = setting(0.3, "fill instead when a crop would keep less than this", 0.0, 1.0)


@dataclass(frozen=True)
class HairRemovalConfig(ConfigBase):
    enabled: bool = setting(True, "DullRazor hair removal (Lee et al. 1997), as in the study")
    kernel_fraction: float = setting(
        0.04, "line length / short side; > 3x the widest hair (~18 px at 450)", 0.005, 0.2
    )
    orientations: int = setting(4, "line directions whose closings are combined", 1, 16)
    threshold: float = setting(12.0, "black-hat level (8-bit luminance) that counts as hair", 1.0, 255.0)
    min_length_fraction: float = setting(
        0.05, "components shorter than this / short side are not hair", 0.0, 0.5
    )
    dilation_fraction: float = setting(0.004, "mask grown by this / short side before inpainting", 0.0, 0.05)
    inpaint_method: str = setting(
        "telea", "Telea 2004 or Navier-Stokes (Bertalmio et al. 2001)", choices=INPAINT_METHODS
    )
    inpaint_radius_fraction: float = setting(0.005, "inpainting neighbourhood / short side", 0.001, 0.05)


@dataclass(frozen=True)
class MarkRemovalConfig(ConfigBase):
    enabled: bool = setting(True, "the study's ruler-mark removal")
    remove_ruler: bool = setting(True, "thin dark straight marks near the border")
    remove_ink: bool = setting(False, "not in the study; saturated blue/purple pen marks")
    ink_min_saturation: float = setting(
        0.3, "keep high: blue-white veil and blue nevi are greyish blue", 0.05, 1.0
    )
    ruler_threshold: float = setting(15.0, "black-hat level that counts as a mark", 1.0, 255.0)
    ruler_band_fraction: float = setting(0.2, "marks are searched this far from the border", 0.01, 0.5)


@dataclass(frozen=True)
class ColorConstancyConfig(ConfigBase):
    enabled: bool = setting(False, "not in the study; Shades of Gray (Finlayson & Trezzi 2004)")
    power: float = setting(6.0, "Minkowski norm p: 1 = Gray World, large = max-RGB", 1.0, 64.0)


@dataclass(frozen=True)
class AdvancedConfig(BasicConfig):
    vignette: VignetteConfig = section(VignetteConfig, "dark corners / black frame")
    hair_removal: HairRemovalConfig = section(HairRemovalConfig, "DullRazor hair removal")
    mark_removal: MarkRemovalConfig = section(MarkRemovalConfig, "ruler and ink marks")
    color_constancy: ColorConstancyConfig = section(ColorConstancyConfig, "illuminant normalisation")


# ----------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class PipelineSpec:
    name: str
    description: str
    config_class: type[BasicConfig]
    profiles: Mapping[str, BasicConfig]
    pipeline_class: type[BasicPipeline]


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


# ----------------------------------------------------------------------------- pipelines
@dataclass
class PreprocessResult:
    image: np.ndarray  # uint8 RGB (size, size, 3)
    lesion_mask: np.ndarray  # bool (size, size); all False when segmentation is off
    hair_mask: np.ndarray  # bool (size, size); detected (basic) or removed (advanced) hair
    measurements: dict[str, Any]  # JSON-serialisable


@dataclass
class _Cleaned:
    """Working-resolution state handed from the cleaning steps to resizing and measuring."""

    image: np.ndarray
    tone_image: np.ndarray  # before colour constancy, which would pull skin towards grey
    hair: np.ndarray
    dark: np.ndarray  # in the geometry of ``image``
    marks: np.ndarray
    dark_fraction: float  # of the working image, before any crop


@register_pipeline(
    "basic", BasicConfig, {"paper": BasicConfig(), "tiny": BasicConfig(size=64, working_max_side=128)}
)
class BasicPipeline:
    """Resize to a square (aspect kept), optional flips and rotations; masks and measurements."""

    name = "basic"

    def __init__(self, config: BasicConfig) -> None:
        self.config = config

    def __call__(self, rgb: np.ndarray, seed: int | None = None, augment: bool = False) -> PreprocessResult:
        """Preprocess one uint8 RGB image. ``seed`` drives augmentation only; pass
        ``geometry.image_seed(base_seed, index)`` so a set's results do not depend on order."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 8:
            raise InvalidArgument(
                f"expected uint8 RGB (H, W, 3) of at least 8x8, got {rgb.dtype} {rgb.shape}"
            )
        config, steps = self.config, []
        working = resize_longest_side(rgb, config.working_max_side)
        if working.shape != rgb.shape:
            steps.append("downscale")
        cleaned = self._clean(working, steps)
        measure = config.measurements
        size, fit = config.size, config.fit
        image = resize_image(cleaned.image, size, fit)
        tone_image = (
            image if cleaned.tone_image is cleaned.image else resize_image(cleaned.tone_image, size, fit)
        )
        hair, marks = resize_mask(cleaned.hair, size, fit), resize_mask(cleaned.marks, size, fit)
        dark = resize_mask(cleaned.dark, size, fit)
        if fit == "pad":  # the black frame padding adds is no more skin than the dark field is
            dark |= ~resize_mask(np.ones(cleaned.dark.shape, bool), size, fit)
        steps.append("resize")
        lesion = np.zeros((size, size), bool)
        if measure.segment_lesion:
            lesion = segment_lesion(image, exclude=dark)
            steps.append("segment_lesion")
        ita = estimate_ita(tone_image, lesion, hair, dark, marks) if measure.skin_tone else None
        if measure.skin_tone:
            steps.append("skin_tone")
        measurements: dict[str, Any] = {
            "lesion_area_fraction": area_fraction(lesion, ~dark) if measure.segment_lesion else None,
            "ita_degrees": None if ita is None else round(ita, 3),
            "skin_type": None if ita is None else skin_type_from_ita(ita),
            "hair_fraction": area_fraction(cleaned.hair, ~cleaned.dark),
            "dark_field_fraction": cleaned.dark_fraction,
            "mark_fraction": area_fraction(cleaned.marks, ~cleaned.dark),
            "augmentation": None,
        }
        if augment:
            drawn = sample_augmentation(np.random.default_rng(seed), **config.augmentation.to_dict())
            image, lesion, hair = (apply_augmentation(a, drawn) for a in (image, lesion, hair))
            measurements["augmentation"] = drawn.as_dict()
            steps.append("augment")
        measurements["steps"] = steps
        return PreprocessResult(image, lesion, hair, measurements)

    def _clean(self, working: np.ndarray, steps: list[str]) -> _Cleaned:
        """Basic changes no pixel: it only finds hair and the dark field, for the measurements."""
        measure, empty = self.config.measurements, np.zeros(working.shape[:2], bool)
        dark = detect_dark_field(working) if measure.detect_dark_field else empty
        hair = detect_hair(working) if measure.detect_hair else empty
        steps += [
            name
            for name, ran in (
                ("detect_dark_field", measure.detect_dark_field),
                ("detect_hair", measure.detect_hair),
            )
            if ran
        ]
        return _Cleaned(working, working, hair, dark, empty, float(dark.mean()))


@register_pipeline(
    "advanced",
    AdvancedConfig,
    {"paper": AdvancedConfig(), "tiny": AdvancedConfig(size=64, working_max_side=128)},
)
class AdvancedPipeline(BasicPipeline):
    """Basic plus artifact removal: DullRazor hair and ruler marks; dark field, ink, colour optional."""

    config: AdvancedConfig

    def _clean(self, working: np.ndarray, steps: list[str]) -> _Cleaned:
        config, image = self.config, working
        if config.vignette.enabled:
            vignette = remove_vignette(
                image,
                config.vignette.mode,
                config.vignette.relative_threshold,
                config.vignette.min_crop_fraction,
            )
            image, dark, dark_fraction = vignette.image, vignette.dark_mask, vignette.dark_fraction
            steps.append(f"vignette_{vignette.mode_used}")
        elif config.measurements.detect_dark_field:
            dark = detect_dark_field(image, config.vignette.relative_threshold)
            dark_fraction = float(dark.mean())
            steps.append("detect_dark_field")
        else:
            dark, dark_fraction = np.zeros(image.shape[:2], bool), 0.0

        hair_config = config.hair_removal
        detection = {
            key: getattr(hair_config, key)
            for key in ("kernel_fraction", "orientations", "threshold", "min_length_fraction")
        }
        if hair_config.enabled:
            image, hair = remove_hair(
                image,
                **detection,
                dilation_fraction=hair_config.dilation_fraction,
                inpaint_method=hair_config.inpaint_method,
                inpaint_radius_fraction=hair_config.inpaint_radius_fraction,
            )
            steps.append("remove_hair")
        elif config.measurements.detect_hair:
            hair = detect_hair(image, **detection)
            steps.append("detect_hair")
        else:
            hair = np.zeros(image.shape[:2], bool)

        marks_config, marks = config.mark_removal, np.zeros(image.shape[:2], bool)
        if marks_config.enabled and (marks_config.remove_ruler or marks_config.remove_ink):
            image, marks = remove_marks(
                image,
                remove_ink=marks_config.remove_ink,
                remove_ruler=marks_config.remove_ruler,
                ink_min_saturation=marks_config.ink_min_saturation,
                ruler_threshold=marks_config.ruler_threshold,
                ruler_band_fraction=marks_config.ruler_band_fraction,
                dilation_fraction=hair_config.dilation_fraction,
                inpaint_method=hair_config.inpaint_method,
            )
            steps.append("remove_marks")

        tone_image = image
        if config.color_constancy.enabled:
            image = shades_of_gray(image, config.color_constancy.power, mask=~dark)
            steps.append("color_constancy")
        return _Cleaned(image, tone_image, hair, dark, marks, dark_fraction)


def bench_pipeline(
    name: str,
    images: Iterable[np.ndarray],
    profile: str = "paper",
    augment: bool = True,
    threads: int = 1,
    cpu_time: bool = False,
    **overrides: Any,
) -> float:
    """Images per second of one pipeline over ``images`` with OpenCV limited to ``threads`` threads
    (restored afterwards); the first image is run once untimed, as OpenCV builds tables lazily.

    ``cpu_time=True`` divides by this process's CPU time instead of wall time: with one thread it
    is the per-core rate, unaffected by other processes sharing the machine."""
    pipeline, batch = create_pipeline(name, profile, **overrides), list(images)
    if not batch:
        raise InvalidArgument("bench_pipeline needs at least one image", field="images")
    previous = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        pipeline(batch[0], seed=0, augment=augment)
        clock = time.process_time if cpu_time else time.perf_counter
        start = clock()
        for index, image in enumerate(batch):
            pipeline(image, seed=index, augment=augment)
        elapsed = clock() - start
    finally:
        cv2.setNumThreads(previous)
    return len(batch) / elapsed
