"""What a phantom is drawn from: the configuration (image size, artifact rates, ranges) and the
parameters that pin one skin and one lesion, so that a lesion can be photographed again."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np

ARTIFACTS: tuple[str, ...] = ("hair", "ruler", "ink", "vignette", "bubbles")

# The share of each ITA category (very light > 55 deg, light, intermediate, tan, brown, dark < -30; Del
# Bino & Bernerd 2013) in dermoscopy archives, approximately: ITA measured on ISIC 2018 / HAM10000 puts
# most images in the light categories, few in tan and brown and almost none in dark (Kinyanjui et al.
# 2020, MICCAI, "Fairness of classifiers across skin tones in dermatology"; Kalb et al. 2023, "Revisiting
# skin tone fairness in dermatological lesion classification", show the exact shares depend on the ITA
# estimator). These weights give that shape, not one study's counts.
HAM10000_ITA_BIN_WEIGHTS: tuple[float, ...] = (0.42, 0.30, 0.16, 0.08, 0.035, 0.005)
ITA_BIN_COUNT = 6

# HAM10000's images are 600x450; hair widths and counts are stated at its 450-pixel short side.
REFERENCE_SHORT_SIDE = 450

Point = tuple[float, float]


@dataclass(frozen=True)
class PhantomConfig:
    """Image size, artifact rates (probabilities per image) and the ranges the phantom draws from."""

    width: int = 600
    height: int = 450
    hair_rate: float = 0.6
    ruler_rate: float = 0.2
    ink_rate: float = 0.15
    vignette_rate: float = 0.3
    bubbles_rate: float = 0.15
    hair_count: tuple[int, int] = (4, 30)
    # Hair shaft width in pixels at a 450-pixel short side; scaled with the image.
    hair_width: tuple[float, float] = (1.0, 3.5)
    # Individual typology angle in degrees (Chardon et al. 1991): > 55 very light, 41-55 light,
    # 28-41 intermediate, 10-28 tan, -30-10 brown, < -30 dark. The default spans all six categories;
    # before issue 18 it was (-30, 60), drawn uniformly (ita_bin_weights None).
    ita_range: tuple[float, float] = (-50.0, 70.0)
    # How often each ITA category is drawn (very light, light, intermediate, tan, brown, dark), each
    # uniform within its part of ``ita_range``; None draws uniformly over ``ita_range`` (the phantom's
    # behaviour before issue 18). The default is skewed light like HAM10000 (see HAM10000_ITA_BIN_WEIGHTS).
    ita_bin_weights: tuple[float, ...] | None = HAM10000_ITA_BIN_WEIGHTS
    # Lesion radius as a fraction of the image's short side.
    lesion_radius: tuple[float, float] = (0.12, 0.3)

    def __post_init__(self) -> None:
        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 32 <= value <= 8192:
                raise ValueError(f"PhantomConfig.{name} must be an integer in [32, 8192], got {value!r}")
        for name in ARTIFACTS:
            rate = getattr(self, f"{name}_rate")
            if (
                isinstance(rate, bool)
                or not isinstance(rate, (int, float, np.number))
                or not 0.0 <= rate <= 1.0
            ):
                raise ValueError(f"PhantomConfig.{name}_rate must be a probability in [0, 1], got {rate!r}")
        self._check_range("hair_count", 0, 1000, integer=True)
        self._check_range("hair_width", 0.0, 40.0, open_low=True)
        self._check_range("ita_range", -90.0, 90.0, open_low=True, open_high=True)
        self._check_range("lesion_radius", 0.0, 0.5, open_low=True)
        self._check_ita_bin_weights()

    def _check_ita_bin_weights(self) -> None:
        weights = self.ita_bin_weights
        if weights is None:
            return
        try:
            values = tuple(float(w) for w in weights)
        except (TypeError, ValueError):
            values = ()
        if (
            len(values) != ITA_BIN_COUNT
            or any(isinstance(w, bool) for w in weights)
            or not all(math.isfinite(w) and w >= 0 for w in values)
            or sum(values) <= 0
        ):
            raise ValueError(
                f"PhantomConfig.ita_bin_weights must be None or {ITA_BIN_COUNT} non-negative weights (very light, "
                f"light, intermediate, tan, brown, dark) with a positive sum, got {weights!r}"
            )
        object.__setattr__(self, "ita_bin_weights", values)  # a list becomes a tuple: hashable

    def _check_range(
        self,
        name: str,
        low: float,
        high: float,
        *,
        integer: bool = False,
        open_low: bool = False,
        open_high: bool = False,
    ) -> None:
        value = getattr(self, name)
        try:
            lo, hi = value
        except (TypeError, ValueError):
            raise ValueError(f"PhantomConfig.{name} must be a (low, high) pair, got {value!r}") from None
        kind = (int, np.integer) if integer else (int, float, np.integer, np.floating)
        if not all(isinstance(v, kind) and not isinstance(v, bool) for v in (lo, hi)):
            what = "integers" if integer else "numbers"
            raise ValueError(f"PhantomConfig.{name} must hold {what}, got {value!r}")
        low_ok = lo > low if open_low else lo >= low
        high_ok = hi < high if open_high else hi <= high
        if not (low_ok and high_ok and lo <= hi and math.isfinite(lo) and math.isfinite(hi)):
            bounds = f"{'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
            raise ValueError(f"PhantomConfig.{name} must satisfy low <= high within {bounds}, got {value!r}")
        object.__setattr__(self, name, (lo, hi))  # lists become tuples: the config stays hashable

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> PhantomConfig:
        """The inverse of :meth:`to_dict` (pairs may be lists, as after a JSON round trip)."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown PhantomConfig field(s) {unknown}")
        return cls(**data)  # type: ignore[arg-type]


@dataclass(frozen=True)
class SkinParams:
    """Skin colour in CIELAB (D65) and the seed of its texture."""

    ita: float
    lightness: float
    a: float
    b: float
    texture_seed: int


@dataclass(frozen=True)
class LesionParams:
    """Everything that makes a lesion *that* lesion; views of it differ only in pose and artifacts."""

    label: str
    skin: SkinParams
    radius: float  # fraction of the image's short side
    aspect: float  # major / minor axis, >= 1
    orientation: float  # degrees
    centre: tuple[float, float]  # fractions of width and height
    pigment: float  # base colour: 0 pink, 1/3 tan, 2/3 brown, 1 dark brown
    structure_seed: int
