"""What to ask DermGAN for: explicit parameters, the training distribution, or balanced skin tones.

A request names any of class, lesion area fraction, centre and ITA; what it leaves out is drawn from
the distribution of those attributes over the training items (``ConditionDistribution``), conditioned
on the class when the class is given (lesion size depends on the class). Drawing picks one training
record and jitters it a little, so combinations near the data are favoured and exact copies of a
training map are not reproduced.

``balance_skin_tone`` replaces the record's tone by one drawn uniformly over the six ITA categories of
Del Bino et al. (2006) (as in ``skingenbench.services.core.imaging.skin_tone``), then uniformly inside the chosen
category: public dermoscopy is mostly very light and light skin, and a balanced synthetic set is one
way to counter that. The open-ended categories are closed at 70 and -55 degrees, about the extremes
colorimetry reports for skin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.generation.core.dermgan.semantic_map import (
    MAX_AREA_FRACTION,
    MapLayout,
    MapParams,
    resize_mask,
)

# (category, low, high) in degrees; lows and highs are the boundaries of skin_tone.SKIN_TYPE_BOUNDS.
ITA_BINS: tuple[tuple[str, float, float], ...] = (
    ("very_light", 55.0, 70.0),
    ("light", 41.0, 55.0),
    ("intermediate", 28.0, 41.0),
    ("tan", 10.0, 28.0),
    ("brown", -30.0, 10.0),
    ("dark", -55.0, -30.0),
)

# Jitter of a drawn training record: relative for the area, in image fractions for the centre, in
# degrees for the tone. Small against the spread of real data, large against pixel quantisation.
AREA_JITTER = 0.1
CENTRE_JITTER = 0.02
ITA_JITTER = 2.0
MAX_IRREGULARITY = 0.3
REQUIRED_WITHOUT_DISTRIBUTION = ("label", "lesion_area_fraction", "center_x", "center_y", "ita_degrees")
PARAMETER_KEYS = (
    *REQUIRED_WITHOUT_DISTRIBUTION,
    "aspect_ratio",
    "orientation_degrees",
    "irregularity",
    "shape_seed",
)
# "class" is the brief's name for the proto's "label"; "maps" passes semantic maps [N, R, R, C] directly.
CONDITIONING_KEYS = (*PARAMETER_KEYS, "class", "balance_skin_tone", "maps")


@dataclass(frozen=True)
class ConditionRecord:
    """The controllable attributes of one training item."""

    label: str
    lesion_area_fraction: float
    center_x: float
    center_y: float
    ita_degrees: float
    aspect_ratio: float = 1.0

    @classmethod
    def from_mask(
        cls, mask: np.ndarray, ita_degrees: float, label: str, resolution: int = 0
    ) -> ConditionRecord:
        """Measure a lesion mask (optionally at the training resolution, as its map will be)."""
        mask = resize_mask(mask, resolution) if resolution else np.asarray(mask) > 0
        if not mask.any():
            raise InvalidArgument(
                "empty lesion mask", field="mask", hint="skip items without a segmented lesion"
            )
        height, width = mask.shape
        ys, xs = np.nonzero(mask)
        # Axis ratio from the second moments: the eigenvalues are the squared semi-axes up to one factor.
        moments = np.cov(np.stack([xs, ys]).astype(np.float64)) if xs.size > 1 else np.eye(2)
        low, high = np.linalg.eigvalsh(moments + 1e-6 * np.eye(2))
        return cls(
            label,
            float(mask.mean()),
            float((xs.mean() + 0.5) / width),
            float((ys.mean() + 0.5) / height),
            float(ita_degrees),
            float(min(10.0, math.sqrt(high / low))),
        )


def draw_balanced_ita(rng: np.random.Generator) -> float:
    """An ITA angle: category uniformly over ``ITA_BINS``, then uniformly inside it."""
    _, low, high = ITA_BINS[int(rng.integers(len(ITA_BINS)))]
    return float(rng.uniform(low, high))


def draw_params(
    rng: np.random.Generator,
    fixed: dict[str, float | str] | None = None,
    balance_skin_tone: bool = False,
    distribution: ConditionDistribution | None = None,
) -> MapParams:
    """Map parameters: ``fixed`` as given, the rest from ``distribution`` (a training record) and ``rng``.

    Without a distribution, class, area, centre and tone must all be given (tone may come from
    ``balance_skin_tone``); only the border's shape is drawn. The same random numbers are consumed
    whatever is fixed, so fixing one field never changes the others' draws.
    """
    fixed = {key: value for key, value in (fixed or {}).items() if value is not None}
    if balance_skin_tone and "ita_degrees" in fixed:
        raise InvalidArgument("give either ita_degrees or balance_skin_tone, not both", field="ita_degrees")
    # Field name -> value of the MapParams to build; MapParams.validate checks the values.
    drawn: dict[str, Any]
    if distribution is not None:
        label = fixed.get("label")
        if label is not None and not isinstance(label, str):
            raise InvalidArgument(f"label must be a class name, got {label!r}", field="label")
        drawn = dict(distribution.draw_record(rng, label))
    else:
        needed = [
            key
            for key in REQUIRED_WITHOUT_DISTRIBUTION
            if key not in fixed and not (key == "ita_degrees" and balance_skin_tone)
        ]
        if needed:
            raise FailedPrecondition(
                f"no training distribution to draw {', '.join(needed)} from",
                hint="give every parameter, or set the backend's condition distribution "
                "from its training items",
            )
        drawn = {"aspect_ratio": 1.0}
    balanced = draw_balanced_ita(rng)
    if balance_skin_tone:
        drawn["ita_degrees"] = balanced
    drawn["orientation_degrees"] = float(rng.uniform(0.0, 180.0))
    drawn["irregularity"] = float(rng.uniform(0.0, MAX_IRREGULARITY))
    drawn["shape_seed"] = int(rng.integers(2**62))
    drawn.update(fixed)
    params = MapParams(**drawn)
    params.validate()
    return params


class ConditionDistribution:
    """The empirical joint distribution of (class, area, centre, ITA, aspect) over training items."""

    def __init__(self, records: Sequence[ConditionRecord], classes: Sequence[str] = CLASSES) -> None:
        self.classes = tuple(classes)
        if not records:
            raise InvalidArgument(
                "no training records to estimate the condition distribution from", field="dataset"
            )
        unknown = sorted({r.label for r in records} - set(self.classes))
        if unknown:
            raise InvalidArgument(f"records of unknown class(es) {unknown}", field="dataset")
        self.labels = np.array([self.classes.index(r.label) for r in records], np.int64)
        self.values = np.array(
            [
                [r.lesion_area_fraction, r.center_x, r.center_y, r.ita_degrees, r.aspect_ratio]
                for r in records
            ],
            np.float64,
        )

    def __len__(self) -> int:
        return len(self.labels)

    def class_proportions(self) -> dict[str, float]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {name: float(count / counts.sum()) for name, count in zip(self.classes, counts, strict=True)}

    def draw(
        self,
        rng: np.random.Generator,
        fixed: dict[str, float | str] | None = None,
        balance_skin_tone: bool = False,
    ) -> MapParams:
        """One set of map parameters: ``fixed`` entries as given, the rest from this distribution."""
        return draw_params(rng, fixed, balance_skin_tone, self)

    def draw_record(self, rng: np.random.Generator, label: str | None) -> dict[str, float | str]:
        """A training record, of class ``label`` when given and present, jittered."""
        pool = np.arange(len(self.labels))
        if label is not None:
            if label not in self.classes:
                raise InvalidArgument(
                    f"unknown class {label!r}", field="label", hint=f"one of {', '.join(self.classes)}"
                )
            if (self.labels == self.classes.index(label)).any():
                pool = pool[self.labels == self.classes.index(label)]  # attributes given the class
        pick = int(pool[rng.integers(len(pool))])
        area, cx, cy, ita, aspect = self.values[pick]
        jitter = rng.standard_normal(4)
        return {
            "label": self.classes[self.labels[pick]],
            "lesion_area_fraction": float(
                np.clip(area * math.exp(AREA_JITTER * jitter[0]), 1e-3, MAX_AREA_FRACTION)
            ),
            "center_x": float(np.clip(cx + CENTRE_JITTER * jitter[1], 0.0, 1.0)),
            "center_y": float(np.clip(cy + CENTRE_JITTER * jitter[2], 0.0, 1.0)),
            "ita_degrees": float(np.clip(ita + ITA_JITTER * jitter[3], -89.0, 89.0)),
            "aspect_ratio": float(aspect),
        }

    # -- checkpoints: the distribution travels with the weights -----------------------------------------------
    def to_state(self) -> dict:
        return {
            "classes": list(self.classes),
            "labels": torch.from_numpy(self.labels.copy()),
            "values": torch.from_numpy(self.values.copy()),
        }

    @classmethod
    def from_state(cls, state: dict) -> ConditionDistribution:
        distribution = cls.__new__(cls)
        distribution.classes = tuple(state["classes"])
        distribution.labels = state["labels"].cpu().numpy().astype(np.int64)
        distribution.values = state["values"].cpu().numpy().astype(np.float64)
        return distribution


# -- requests as the backend receives them ----------------------------------------------------------------------
def parse_conditioning(
    conditioning: Any,
    count: int,
    layout: MapLayout,
    resolution: int,
) -> tuple[list[dict[str, Any]], np.ndarray | None]:
    """One typed parameter dict per image, or explicit maps [count, R, R, C].

    Accepted: None (everything from the training distribution); a dict whose values are shared scalars
    or per-image sequences/arrays of length ``count`` (``sampling.sample_images`` slices arrays batch by
    batch); a list of ``count`` per-image dicts; ``{"maps": array}`` with one map [R, R, C] for all or one
    per image. ``None`` values and an empty label (the proto's default) mean "not given".
    """
    if conditioning is None:
        return [{} for _ in range(count)], None
    if isinstance(conditioning, (list, tuple)):
        if len(conditioning) != count or not all(isinstance(c, dict) for c in conditioning):
            raise InvalidArgument(
                f"per-image conditioning must be {count} dicts, one per seed", field="conditioning"
            )
        if any("maps" in c for c in conditioning):
            raise InvalidArgument(
                "explicit maps go in one conditioning dict, not per image", field="conditioning"
            )
        return [parse_conditioning(c, 1, layout, resolution)[0][0] for c in conditioning], None
    if not isinstance(conditioning, dict):
        raise InvalidArgument(
            f"conditioning must be a dict or a list of dicts, got {type(conditioning).__name__}",
            field="conditioning",
        )
    unknown = sorted(set(conditioning) - set(CONDITIONING_KEYS))
    if unknown:
        raise InvalidArgument(
            f"unknown conditioning key(s) {unknown}",
            field="conditioning",
            hint=f"known: {', '.join(CONDITIONING_KEYS)}",
        )
    if conditioning.get("maps") is not None:
        if set(conditioning) - {"maps"}:
            raise InvalidArgument("explicit maps exclude other conditioning keys", field="conditioning")
        return [{} for _ in range(count)], _explicit_maps(conditioning["maps"], count, layout, resolution)
    requests: list[dict[str, Any]] = [{} for _ in range(count)]
    for key, value in conditioning.items():
        if isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim == 0:
            value = value.item()
        if isinstance(value, (np.ndarray, torch.Tensor, list, tuple)):
            values = value.tolist() if isinstance(value, (np.ndarray, torch.Tensor)) else list(value)
            if len(values) != count:
                raise InvalidArgument(f"{key} has {len(values)} entries for {count} images", field=key)
        else:
            values = [value] * count
        for request, entry in zip(requests, values, strict=True):
            if entry is not None and entry != "":
                request["label" if key == "class" else key] = _typed(key, entry, layout)
    return requests, None


def _typed(key: str, value: Any, layout: MapLayout) -> Any:
    try:
        if key in ("label", "class"):
            layout.class_index(str(value))
            return str(value)
        if key == "balance_skin_tone":
            return bool(value)
        if key == "shape_seed":
            return int(value)
        return float(value)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(f"{key}: {value!r} is not a valid value", field=key) from error


def _explicit_maps(maps: Any, count: int, layout: MapLayout, resolution: int) -> np.ndarray:
    array = np.asarray(maps.cpu() if isinstance(maps, torch.Tensor) else maps, np.float32)
    shape = (resolution, resolution, layout.channels)
    if array.shape == shape:
        array = np.broadcast_to(array, (count, *shape))
    if array.shape != (count, *shape):
        raise InvalidArgument(
            f"maps must be [{count}, {', '.join(map(str, shape))}], got {list(array.shape)}", field="maps"
        )
    return np.array(array, np.float32, copy=True)  # writable and contiguous, whatever was passed


def resolve_request(
    seed: int, request: dict[str, Any], distribution: ConditionDistribution | None
) -> MapParams:
    """An image's map parameters: a pure function of its seed, its request and the distribution."""
    request = dict(request)
    balance = request.pop("balance_skin_tone", False)
    rng = np.random.default_rng([seed, 0x6D6170])  # a stream of its own, apart from the image's noise
    return draw_params(rng, request, balance, distribution)
