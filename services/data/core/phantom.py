"""Procedural phantom dermoscopy: skin of a chosen tone, a lesion whose look depends on its class, and
artifacts (hair, ruler marks, ink, dark vignette corners, bubbles), each with its mask.

A phantom is ground truth that real data cannot give: the artifact-free image (``clean``) lies beside
the image with artifacts, and every artifact's mask covers exactly the pixels it changed. It is the
platform's demo data and the yardstick for hair and ruler removal.

The class looks encode the dermoscopy literature, each feature cited where it is drawn. The aim is a
data set that is *learnable from structure*: base colours are drawn from overlapping ranges and the
colours of the characteristic structures (red vessels, white keratin or cysts, blue-grey areas, dark
dots) appear in more than one class, so mean colour or a colour histogram separates the classes far
worse than shape (asymmetry, border), texture (networks, fissures) and arrangement (branching vessels,
central scale) do.

All randomness comes from the ``numpy.random.Generator`` passed in: the same seed gives bit-identical
images. Drawing uses OpenCV and vectorised numpy only (no per-pixel Python loops), so a 256x256
phantom takes a few milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields

import cv2
import numpy as np
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.imaging.skin_tone import lightness_for_ita

ARTIFACTS: tuple[str, ...] = ("hair", "ruler", "ink", "vignette", "bubbles")

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
    # 28-41 intermediate, 10-28 tan, -30-10 brown, < -30 dark. The default spans very light to brown.
    ita_range: tuple[float, float] = (-30.0, 60.0)
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


@dataclass
class PhantomSample:
    """One rendered phantom: images are HxWx3 uint8 RGB, masks HxW bool.

    Each artifact mask marks every pixel that artifact changed when it was drawn; ``ruler`` holds ruler
    ticks and ink marks. Artifacts drawn later may cover earlier ones (the vignette covers corner hairs).
    """

    image: np.ndarray
    clean: np.ndarray
    lesion: np.ndarray
    hair: np.ndarray
    ruler: np.ndarray
    vignette: np.ndarray
    bubbles: np.ndarray
    label: str
    ita: float
    lesion_area: float  # fraction of the image inside the lesion mask
    lesion_centre: tuple[float, float]  # (x, y) in pixels, the lesion mask's centroid
    artifacts: frozenset[str]  # names from ARTIFACTS that were drawn
    hair_fraction: float
    lesion_params: LesionParams

    @property
    def artifact_mask(self) -> np.ndarray:
        return self.hair | self.ruler | self.vignette | self.bubbles


# -- skin tone -----------------------------------------------------------------------------------------


def sample_skin(rng: np.random.Generator, config: PhantomConfig, ita: float | None = None) -> SkinParams:
    ita = float(rng.uniform(*config.ita_range)) if ita is None else float(ita)
    # b* (yellowness) and a* (redness) in the range colorimetry reports for most skin.
    lightness, b_star = lightness_for_ita(ita, float(rng.uniform(12.0, 20.0)))
    a_star = float(rng.uniform(6.0, 13.0))
    return SkinParams(ita, lightness, a_star, b_star, int(rng.integers(2**62)))


# -- lesion parameters ----------------------------------------------------------------------------------

# Per class: pigment range (base colour), position of the radius range used (as fractions of the config's
# range), aspect ratio range. Ranges overlap on purpose: colour and size alone must not give the class.
_CLASS_PRIORS: dict[str, dict[str, tuple[float, float]]] = {
    "NV": {"pigment": (0.15, 1.0), "radius": (0.0, 0.8), "aspect": (1.0, 1.35)},
    "MEL": {"pigment": (0.3, 1.0), "radius": (0.25, 1.0), "aspect": (1.0, 1.6)},
    "BKL": {"pigment": (0.2, 0.95), "radius": (0.0, 1.0), "aspect": (1.0, 1.5)},
    "BCC": {"pigment": (0.0, 0.7), "radius": (0.0, 0.9), "aspect": (1.0, 1.5)},
    "SCC": {"pigment": (0.0, 0.6), "radius": (0.0, 0.85), "aspect": (1.0, 1.4)},
}


def sample_lesion_params(
    label: str, rng: np.random.Generator, config: PhantomConfig, ita: float | None = None
) -> LesionParams:
    """Draw a new lesion of class ``label`` on new skin (of tone ``ita`` if given)."""
    _check_label(label)
    prior = _CLASS_PRIORS[label]
    skin = sample_skin(rng, config, ita)
    r_lo, r_hi = config.lesion_radius
    f_lo, f_hi = prior["radius"]
    radius = r_lo + (r_hi - r_lo) * float(rng.uniform(f_lo, f_hi))
    return LesionParams(
        label=label,
        skin=skin,
        radius=radius,
        aspect=float(rng.uniform(*prior["aspect"])),
        orientation=float(rng.uniform(0.0, 180.0)),
        # Dermoscopy centres the lesion in the field; a little off-centre is common.
        centre=(float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.4, 0.6))),
        pigment=float(rng.uniform(*prior["pigment"])),
        structure_seed=int(rng.integers(2**62)),
    )


def _check_label(label: str) -> None:
    if label not in CLASSES:
        raise ValueError(f"unknown class {label!r}; the phantom draws one of {', '.join(CLASSES)}")


# -- rendering --------------------------------------------------------------------------------------------


def render_phantom(
    label: str,
    rng: np.random.Generator,
    config: PhantomConfig | None = None,
    ita: float | None = None,
    lesion_params: LesionParams | None = None,
) -> PhantomSample:
    """Render one phantom of class ``label``.

    Without ``lesion_params`` a new lesion is drawn (on skin of tone ``ita`` if given). With them, the
    same lesion on the same skin is rendered in a new view: a small rotation, shift and zoom, and new
    artifacts, as when a lesion is photographed again (HAM10000 holds 1-6 images per lesion).
    """
    config = config or PhantomConfig()
    _check_label(label)
    if lesion_params is None:
        lesion_params = sample_lesion_params(label, rng, config, ita)
    elif lesion_params.label != label:
        raise ValueError(f"lesion_params are of class {lesion_params.label!r}, not {label!r}")
    elif ita is not None and not math.isclose(ita, lesion_params.skin.ita, abs_tol=1e-9):
        raise ValueError("pass either ita or lesion_params (whose skin has its own ITA), not both")

    width, height = config.width, config.height
    short = min(width, height)
    params = lesion_params
    # The view: the dermatoscope is put down again, a little turned, moved and pressed.
    angle = params.orientation + float(rng.uniform(-15.0, 15.0))
    shift = rng.normal(0.0, 0.025 * short, size=2)
    zoom = float(rng.uniform(0.92, 1.08))
    centre = (params.centre[0] * width + shift[0], params.centre[1] * height + shift[1])

    lab = _render_skin(params.skin, width, height)
    lesion_lab, lesion_alpha = _render_lesion(params, radius_px=params.radius * short * zoom)
    lesion_mask = _place_lesion(lab, lesion_lab, lesion_alpha, centre, angle)
    clean = _lab_to_rgb8(lab)

    image = clean.astype(np.float32)
    masks = {name: np.zeros((height, width), np.uint8) for name in ("hair", "ruler", "vignette", "bubbles")}
    drawn = set()
    scale = short / REFERENCE_SHORT_SIDE
    # Drawing order follows the optics: ink and hair lie on the skin, bubbles in the immersion fluid
    # above them, the ruler on the contact plate, and the vignette is the lens barrel around it all.
    for name in ARTIFACTS_IN_DRAWING_ORDER:
        if rng.random() >= getattr(config, f"{name}_rate"):
            continue
        target = "ruler" if name == "ink" else name
        alpha = _ARTIFACT_DRAWERS[name](image, rng, config, scale, centre)
        if alpha.any():
            masks[target] |= (alpha > 0).astype(np.uint8)
            drawn.add(name)
    image_u8 = np.clip(image + 0.5, 0.0, 255.0).astype(np.uint8)

    area = float(lesion_mask.mean())
    moments = cv2.moments(lesion_mask.astype(np.uint8), binaryImage=True)
    lesion_centre = (
        (moments["m10"] / moments["m00"], moments["m01"] / moments["m00"]) if moments["m00"] else centre
    )
    hair = masks["hair"].astype(bool)
    return PhantomSample(
        image=image_u8,
        clean=clean,
        lesion=lesion_mask,
        hair=hair,
        ruler=masks["ruler"].astype(bool),
        vignette=masks["vignette"].astype(bool),
        bubbles=masks["bubbles"].astype(bool),
        label=label,
        ita=params.skin.ita,
        lesion_area=area,
        lesion_centre=(float(lesion_centre[0]), float(lesion_centre[1])),
        artifacts=frozenset(drawn),
        hair_fraction=float(hair.mean()),
        lesion_params=params,
    )


def _lab_to_rgb8(lab: np.ndarray) -> np.ndarray:
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)  # float Lab (L in 0..100) -> sRGB in 0..1
    return np.clip(rgb * 255.0 + 0.5, 0.0, 255.0).astype(np.uint8)


def _noise(rng: np.random.Generator, grid: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Smooth noise: a coarse Gaussian grid resized with bicubic interpolation (cheap low frequencies)."""
    coarse = rng.standard_normal(grid, dtype=np.float32)
    return cv2.resize(coarse, size, interpolation=cv2.INTER_CUBIC)


def _smoothstep(edge0: float, edge1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _render_skin(skin: SkinParams, width: int, height: int) -> np.ndarray:
    """Skin in Lab: the ITA colour with low-frequency mottling, shading and a fine grain."""
    rng = np.random.default_rng(skin.texture_seed)
    size = (width, height)
    lab = np.empty((height, width, 3), np.float32)
    lab[..., 0] = skin.lightness + 2.0 * _noise(rng, (5, 5), size) + 0.8 * _noise(rng, (40, 40), size)
    lab[..., 1] = skin.a + 1.0 * _noise(rng, (4, 4), size)
    lab[..., 2] = skin.b + 0.7 * _noise(rng, (4, 4), size)
    # The dermatoscope's ring light is brightest in the middle; zero mean so the skin keeps its ITA.
    ys = (np.arange(height, dtype=np.float32) - height / 2) / (0.5 * math.hypot(width, height))
    xs = (np.arange(width, dtype=np.float32) - width / 2) / (0.5 * math.hypot(width, height))
    falloff = xs[None, :] ** 2 + ys[:, None] ** 2
    lab[..., 0] += float(rng.uniform(2.0, 6.0)) * (1.0 / 3.0 - falloff)  # falloff averages 1/3
    lab[..., 0] += 0.6 * rng.standard_normal((height, width), dtype=np.float32)
    np.clip(lab[..., 0], 0.0, 100.0, out=lab[..., 0])
    return lab


# -- the lesion -------------------------------------------------------------------------------------------

# Structure colours in CIELAB, after the colours dermoscopy names (Argenziano et al. 2003; the 'C' of
# the ABCD rule, Stolz et al. 1994: light brown, dark brown, black, blue-grey, red, white).
BLACK = (16.0, 3.0, 3.0)
DARK_BROWN = (27.0, 12.0, 16.0)
BLUE_GREY = (44.0, -3.0, -11.0)
BLUE_WHITE_VEIL = (60.0, -4.0, -9.0)
REGRESSION_WHITE = (80.0, 5.0, 8.0)
VESSEL_RED = (43.0, 48.0, 26.0)
KERATIN = (85.0, 2.0, 22.0)
MILIA_WHITE = (89.0, 0.0, 13.0)
CRUST = (30.0, 24.0, 22.0)
PEARL_WHITE = (82.0, 9.0, 5.0)

# The lesion's base colour relative to its skin (dL*, da*, db*) at pigment 0, 1/3, 2/3 and 1:
# pink (vascular, amelanotic), tan, brown, dark brown.
_PIGMENT_RAMP = np.array([[-3.0, 15.0, 0.0], [-12.0, 6.0, 9.0], [-24.0, 5.0, 8.0], [-36.0, 3.0, 1.0]])


def _base_colour(skin: SkinParams, pigment: float) -> np.ndarray:
    x = pigment * (len(_PIGMENT_RAMP) - 1)
    i = min(int(x), len(_PIGMENT_RAMP) - 2)
    delta = _PIGMENT_RAMP[i] + (x - i) * (_PIGMENT_RAMP[i + 1] - _PIGMENT_RAMP[i])
    # Pigment darkens light skin more than dark skin, which has less lightness to lose.
    delta = delta * np.array([(skin.lightness - 10.0) / 60.0, 1.0, 1.0])
    colour = np.array([skin.lightness, skin.a, skin.b]) + delta
    colour[0] = max(colour[0], 12.0)
    return colour.astype(np.float32)


class _Contour:
    """A closed border r(theta) = 1 + sum_k a_k cos(k theta + phi_k), stretched to an ellipse."""

    def __init__(self, amplitudes: np.ndarray, phases: np.ndarray, aspect: float) -> None:
        self.amplitudes = amplitudes
        self.phases = phases
        self.stretch = (math.sqrt(aspect), 1.0 / math.sqrt(aspect))

    def radius(self, theta: np.ndarray) -> np.ndarray:
        k = np.arange(1, len(self.amplitudes) + 1)
        r = 1.0 + (self.amplitudes * np.cos(np.outer(theta, k) + self.phases)).sum(axis=1)
        return np.maximum(r, 0.35)

    def point(self, theta: np.ndarray, scale: float | np.ndarray = 1.0) -> np.ndarray:
        r = self.radius(theta) * scale
        return np.stack([r * np.cos(theta) * self.stretch[0], r * np.sin(theta) * self.stretch[1]], axis=-1)

    def contains(self, points: np.ndarray, scale: float = 1.0) -> np.ndarray:
        """Which points lie inside the border shrunk by ``scale``."""
        x, y = points[:, 0] / self.stretch[0], points[:, 1] / self.stretch[1]
        return np.hypot(x, y) < scale * self.radius(np.arctan2(y, x))


def _sample_contour(label: str, rng: np.random.Generator, aspect: float) -> _Contour:
    k = np.arange(1, 13)
    if label == "NV":
        # Symmetric, round to oval, smooth border: A0 B0 of the ABCD rule (Stolz et al. 1994).
        amplitudes = np.where(k <= 4, rng.uniform(0.0, 0.025, 12), 0.0)
    elif label == "MEL":
        # Asymmetric in both axes (low harmonics) with an irregular, notched border (higher harmonics).
        notches = rng.uniform(0.015, 0.05, 12) / np.sqrt(k / 4)
        amplitudes = np.where(k <= 3, rng.uniform(0.08, 0.2, 12), notches)
    elif label == "BKL":
        # Oval and sharply demarcated, sometimes with a 'moth-eaten' border (small concave bites).
        bites = np.where(k >= 7, rng.uniform(0.0, 0.025, 12), 0.0)
        amplitudes = np.where(k <= 3, rng.uniform(0.01, 0.06, 12), bites)
    elif label == "BCC":
        # Lobulated but not notched.
        amplitudes = np.where(k <= 4, rng.uniform(0.02, 0.09, 12), 0.0)
    else:  # SCC: a round to oval nodule or plaque
        amplitudes = np.where(k <= 4, rng.uniform(0.01, 0.06, 12), 0.0)
    return _Contour(amplitudes, rng.uniform(0.0, 2 * math.pi, 12), aspect)


class _Canvas:
    """The lesion in its own frame: a square canvas centred on the lesion, lengths in lesion radii."""

    def __init__(self, size: int, radius_px: float, base: np.ndarray) -> None:
        self.size = size
        self.radius = radius_px
        self.centre = (size - 1) / 2.0
        coords = (np.arange(size, dtype=np.float32) - self.centre) / radius_px
        self.u = coords[None, :]
        self.v = coords[:, None]
        self.lab = np.empty((size, size, 3), np.float32)
        self.lab[:] = base
        self.body = np.zeros((size, size), np.float32)
        self.depth = np.zeros((size, size), np.float32)  # 0 at the border, 1 at the deepest point
        self.extra_alpha = np.zeros((size, size), np.float32)  # structures reaching past the border

    def px(self, points: np.ndarray) -> np.ndarray:
        """Points in lesion radii -> fixed-point pixel coordinates for cv2 drawing (shift=4)."""
        return np.round((np.asarray(points) * self.radius + self.centre) * 16.0).astype(np.int32)

    def blank(self) -> np.ndarray:
        return np.zeros((self.size, self.size), np.uint8)

    def noise(self, rng: np.random.Generator, grid: int) -> np.ndarray:
        return _noise(rng, (grid, grid), (self.size, self.size))

    def layer(self, canvas: np.ndarray, blur: float = 0.0) -> np.ndarray:
        """A drawn uint8 canvas as float weights in [0, 1], optionally softened (blur in radii)."""
        out = canvas.astype(np.float32) * (1.0 / 255.0)
        if blur > 0 and blur * self.radius > 0.3:
            out = cv2.GaussianBlur(out, (0, 0), blur * self.radius)
        return out

    def discs(
        self, centres: np.ndarray, radii: np.ndarray, blur: float = 0.0, ellipses: np.ndarray | None = None
    ) -> np.ndarray:
        """Filled discs (radii in lesion radii); ``ellipses`` rows give (minor/major ratio, angle)."""
        canvas = self.blank()
        shapes = np.tile((1.0, 0.0), (len(radii), 1)) if ellipses is None else ellipses
        for centre, r, (ratio, angle) in zip(self.px(centres), radii, shapes, strict=True):
            major = max(1, int(r * self.radius * 16))
            axes = (major, max(1, int(major * ratio)))
            cv2.ellipse(
                canvas, (int(centre[0]), int(centre[1])), axes, float(angle), 0, 360, 255, -1, cv2.LINE_AA, 4
            )
        return self.layer(canvas, blur)

    def lines(self, polylines: Sequence[np.ndarray], widths: Sequence[float]) -> np.ndarray:
        """Open polylines (points in lesion radii) of the given widths (in lesion radii)."""
        canvas = self.blank()
        for line, width in zip(polylines, widths, strict=True):
            px_width = width * self.radius
            # Lines thinner than a pixel are drawn one pixel wide and proportionally fainter.
            value = int(255 * min(1.0, px_width))
            cv2.polylines(canvas, [self.px(line)], False, value, max(1, round(px_width)), cv2.LINE_AA, 4)
        return self.layer(canvas)

    def paint(self, weight: np.ndarray, colour: Sequence[float] | np.ndarray, opacity: float = 1.0) -> None:
        w = weight if opacity == 1.0 else weight * np.float32(opacity)
        self.lab += (np.asarray(colour, np.float32) - self.lab) * w[..., None]

    def shade(self, weight: np.ndarray, d_lab: Sequence[float]) -> None:
        """Shift colours by ``d_lab`` where ``weight`` is 1 (darken, redden...)."""
        self.lab += weight[..., None] * np.asarray(d_lab, np.float32)

    def points_inside(self, rng: np.random.Generator, n: int, contour: _Contour, r_range=(0.0, 0.85)):
        """``n`` points within the border, at fractions ``r_range`` of the border's radius."""
        theta = rng.uniform(0.0, 2 * math.pi, n)
        frac = np.sqrt(rng.uniform(r_range[0] ** 2, r_range[1] ** 2, n))
        return contour.point(theta, frac)

    def blob(self, rng: np.random.Generator, centre: np.ndarray, axes: tuple[float, float], roughness: float):
        """A soft irregular blob (in [0, 1]) around ``centre``: an ellipse distance warped by noise."""
        angle = rng.uniform(0.0, math.pi)
        du, dv = self.u - centre[0], self.v - centre[1]
        c, s = math.cos(angle), math.sin(angle)
        d = np.sqrt(((du * c + dv * s) / axes[0]) ** 2 + ((dv * c - du * s) / axes[1]) ** 2)
        d = d + roughness * self.noise(rng, 7)
        return _smoothstep(1.25, 0.7, d)


def _render_lesion(params: LesionParams, radius_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The lesion on its own canvas: Lab colours and opacity (alpha in [0, 1])."""
    rng = np.random.default_rng(params.structure_seed)
    contour = _sample_contour(params.label, rng, params.aspect)
    look = _LOOKS[params.label]
    softness = float(rng.uniform(*look.softness))
    reach = float(np.abs(contour.point(np.linspace(0, 2 * math.pi, 90))).max()) + 3 * softness + look.reach
    size = 2 * math.ceil(reach * radius_px) + 3
    canvas = _Canvas(size, radius_px, _base_colour(params.skin, params.pigment))

    theta = np.linspace(0.0, 2 * math.pi, 256, endpoint=False)
    body = canvas.blank()
    cv2.fillPoly(body, [canvas.px(contour.point(theta))], 255, cv2.LINE_AA, 4)
    canvas.body = canvas.layer(body)
    dist = cv2.distanceTransform((body > 127).astype(np.uint8), cv2.DIST_L2, 3)
    canvas.depth = dist / max(float(dist.max()), 1.0)

    look.paint(canvas, rng, contour, params)

    alpha = canvas.layer(body, blur=softness) if softness > 0 else canvas.body.copy()
    if params.label == "MEL":
        # Abrupt cut-off of the pigment on part of the border, gradual fading elsewhere (Argenziano 2003).
        phi = rng.uniform(0.0, 2 * math.pi)
        toward = (canvas.u * math.cos(phi) + canvas.v * math.sin(phi)) / (np.hypot(canvas.u, canvas.v) + 1e-3)
        alpha = _smoothstep(-0.3, 0.6, toward) * canvas.body + _smoothstep(0.6, -0.3, toward) * alpha
    alpha = np.maximum(alpha * np.float32(rng.uniform(*look.opacity)), canvas.extra_alpha)
    return canvas.lab, alpha


def _place_lesion(
    skin_lab: np.ndarray, lesion_lab: np.ndarray, alpha: np.ndarray, centre: tuple[float, float], angle: float
) -> np.ndarray:
    """Rotate the lesion canvas onto the skin at ``centre`` (in place); returns the lesion mask."""
    height, width = skin_lab.shape[:2]
    size = alpha.shape[0]
    c = (size - 1) / 2.0
    matrix = cv2.getRotationMatrix2D((c, c), angle, 1.0)
    matrix[:, 2] += (centre[0] - c, centre[1] - c)
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64) @ matrix.T
    x0, y0 = (max(0, math.floor(v)) for v in corners.min(axis=0))
    x1, y1 = min(width, math.ceil(corners[:, 0].max())), min(height, math.ceil(corners[:, 1].max()))
    mask = np.zeros((height, width), bool)
    if x1 <= x0 or y1 <= y0:
        return mask
    matrix[:, 2] -= (x0, y0)
    layer = cv2.warpAffine(
        np.dstack([lesion_lab, alpha]),
        matrix,
        (x1 - x0, y1 - y0),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    a = layer[..., 3:4]
    roi = skin_lab[y0:y1, x0:x1]
    roi += (layer[..., :3] - roi) * a
    mask[y0:y1, x0:x1] = a[..., 0] > 0.5
    return mask


# -- class looks --------------------------------------------------------------------------------------------


def _jitter(colour: Sequence[float], rng: np.random.Generator, amount: float = 4.0) -> np.ndarray:
    return np.asarray(colour, np.float32) + rng.uniform(-amount, amount, 3).astype(np.float32)


def _honeycomb(canvas: _Canvas, rng: np.random.Generator, period: float, warp: float) -> np.ndarray:
    """A pigment network: three plane waves at 120 degrees sum to a hexagonal pattern whose low values
    form a honeycomb of lines around round holes; ``warp`` (in periods) distorts it."""
    k = 4 * math.pi / (math.sqrt(3) * period)
    # The phases must sum to zero: otherwise the pattern shifts towards its inverse (dark dots).
    phase = rng.uniform(0, 2 * math.pi, 3)
    phase[2] = -phase[0] - phase[1]
    angle = rng.uniform(0, math.pi)
    u = canvas.u + warp * period * canvas.noise(rng, 9)
    v = canvas.v + warp * period * canvas.noise(rng, 9)
    total = np.zeros((canvas.size, canvas.size), np.float32)
    for i in range(3):
        a = angle + i * 2 * math.pi / 3
        total += np.cos(k * (u * math.cos(a) + v * math.sin(a)) + phase[i])
    return total  # in [-1.5, 3]: lines where it is low


def _vessel_tree(
    rng: np.random.Generator, start: np.ndarray, angle: float, length: float, width: float, depth: int
) -> tuple[list[np.ndarray], list[float]]:
    """An arborizing vessel: a thick trunk that branches into ever finer, tapering vessels."""
    lines, widths = [], []
    stack = [(np.asarray(start, float), angle, length, width, depth)]
    while stack:
        point, angle, length, width, depth = stack.pop()
        path = [point]
        for _ in range(4):
            angle += rng.normal(0.0, 0.25)
            point = point + length / 4 * np.array([math.cos(angle), math.sin(angle)])
            path.append(point)
        lines.append(np.array(path))
        widths.append(width)
        if depth > 0:
            for side in (-1.0, 1.0):
                turn = side * rng.uniform(0.35, 0.9)
                stack.append((point, angle + turn, length * rng.uniform(0.55, 0.8), width * 0.62, depth - 1))
    return lines, widths


def _dotted_vessels(
    canvas: _Canvas,
    rng: np.random.Generator,
    contour: _Contour,
    n: int,
    r_range: tuple[float, float] = (0.0, 0.85),
) -> None:
    # Dotted vessels: pinpoint red dots, regularly or irregularly spread (Argenziano et al. 2004).
    points = canvas.points_inside(rng, n, contour, r_range)
    canvas.paint(canvas.discs(points, rng.uniform(0.018, 0.03, n)) * canvas.body, _jitter(VESSEL_RED, rng))


def _glomerular_vessels(canvas: _Canvas, rng: np.random.Generator, contour: _Contour, clusters: int) -> None:
    """Coiled capillaries in small clusters like renal glomeruli, often at the periphery (SCC, Bowen's
    disease; Zalaudek et al. 2004)."""
    centres = canvas.points_inside(rng, clusters, contour, (0.45, 0.85))
    loops, widths = [], []
    for c in centres:
        for _ in range(int(rng.integers(3, 7))):
            p = c + rng.normal(0.0, 0.05, 2)
            t = np.linspace(0, 2 * math.pi * rng.uniform(1.0, 2.0), 10)
            r = rng.uniform(0.015, 0.03)
            loops.append(p + np.stack([r * np.cos(t), r * np.sin(t)], axis=1) + rng.normal(0, 0.004, (10, 2)))
            widths.append(0.018)
    cores = canvas.discs(np.array(centres), np.full(clusters, 0.04), blur=0.02)
    weight = cv2.max(canvas.lines(loops, widths), cores)
    canvas.paint(weight * canvas.body, _jitter(VESSEL_RED, rng), opacity=0.9)


def _paint_nevus(canvas: _Canvas, rng: np.random.Generator, contour: _Contour, params: LesionParams) -> None:
    # One or two colours, evenly distributed, symmetric around the centre: C1-2 of the ABCD rule.
    canvas.shade(canvas.depth * rng.uniform(-1.0, 1.0), (-6.0, 1.0, 1.0))
    canvas.shade(canvas.noise(rng, 5), (1.0, 0.3, 0.3))
    pattern = rng.choice(["reticular", "globular", "homogeneous"], p=[0.55, 0.25, 0.2])
    fade = _smoothstep(0.0, 0.45, canvas.depth)  # the network thins out towards the periphery
    dark = (-12.0 - 10.0 * params.pigment, 2.0, 2.0)
    if pattern == "reticular":
        # Typical pigment network: thin brown lines, regularly meshed, fading at the periphery.
        net = _honeycomb(canvas, rng, period=rng.uniform(0.16, 0.24), warp=0.12)
        canvas.shade(_smoothstep(-0.55 + 0.12 * canvas.noise(rng, 4), -1.1, net) * fade, dark)
    elif pattern == "globular":
        # Regular globules: similar size and colour, evenly spread (cobblestone pattern): a jittered
        # hexagonal lattice clipped to the lesion.
        spacing = rng.uniform(0.17, 0.24)
        i, j = np.meshgrid(np.arange(-10, 11), np.arange(-10, 11))
        lattice = np.stack([(i + 0.5 * (j % 2)) * spacing, j * spacing * math.sqrt(3) / 2], axis=-1)
        lattice = lattice.reshape(-1, 2) + rng.normal(0.0, 0.08 * spacing, (i.size, 2))
        spread = lattice[contour.contains(lattice, 0.85)]
        globules = canvas.discs(spread, np.full(len(spread), 0.3 * spacing), blur=0.015)
        canvas.shade(globules * fade, dark)
    if rng.random() < 0.12:
        # Central structureless blue-grey area of a combined or partly blue nevus: symmetric, unlike
        # the off-centre blue-white veil of melanoma (Argenziano et al. 2003).
        core = _smoothstep(0.45, 0.8, canvas.depth)
        canvas.paint(core, _jitter(BLUE_GREY, rng), opacity=rng.uniform(0.5, 0.8))
    if rng.random() < 0.1:
        # Comma vessels of dermal (papillomatous) nevi: short, slightly curved (Argenziano 2004).
        n = int(rng.integers(3, 8))
        starts = canvas.points_inside(rng, n, contour, (0.0, 0.7))
        commas = [s + np.cumsum(rng.normal(0, 0.04, (4, 2)) + rng.normal(0, 0.05, 2), axis=0) for s in starts]
        canvas.paint(canvas.lines(commas, [0.03] * n) * canvas.body, _jitter(VESSEL_RED, rng), opacity=0.7)


def _paint_melanoma(
    canvas: _Canvas, rng: np.random.Generator, contour: _Contour, params: LesionParams
) -> None:
    body = canvas.body
    # Several colours in asymmetric zones (ABCD rule: asymmetry and >= 3 colours; Stolz et al. 1994).
    light_brown = _base_colour(params.skin, 0.35)
    palette = [light_brown, DARK_BROWN, BLACK, BLUE_GREY, (38.0, 22.0, 18.0)]
    chosen = rng.choice(len(palette), size=int(rng.integers(2, 5)), replace=False)
    for index in chosen:
        phi = rng.uniform(0.0, 2 * math.pi)
        toward = canvas.u * math.cos(phi) + canvas.v * math.sin(phi)
        zone = _smoothstep(0.1, 0.6, 0.8 * toward + 0.5 * canvas.noise(rng, 5) + rng.uniform(-0.2, 0.2))
        canvas.paint(zone * body, _jitter(palette[index], rng), opacity=rng.uniform(0.55, 0.9))
    if rng.random() < 0.7:
        # Atypical network: thick, dark, irregular meshes, broken up and confined to part of the lesion.
        net = _honeycomb(canvas, rng, period=rng.uniform(0.17, 0.3), warp=0.4)
        width = 0.5 + 0.6 * canvas.noise(rng, 6)
        lines = _smoothstep(0.0, -0.9, net - width) * (canvas.noise(rng, 8) > -0.3)
        phi = rng.uniform(0.0, 2 * math.pi)
        part = _smoothstep(-0.3, 0.3, canvas.u * math.cos(phi) + canvas.v * math.sin(phi))
        canvas.paint(lines * part * body, _jitter(BLACK if rng.random() < 0.4 else DARK_BROWN, rng), 0.85)
    if rng.random() < 0.5:
        # Blue-white veil: an irregular, structureless blue-white area over a raised part.
        centre = canvas.points_inside(rng, 1, contour, (0.15, 0.5))[0]
        veil = canvas.blob(rng, centre, (rng.uniform(0.3, 0.55), rng.uniform(0.2, 0.4)), 0.25)
        canvas.paint(veil * body, _jitter(BLUE_WHITE_VEIL, rng), opacity=rng.uniform(0.6, 0.85))
    if rng.random() < 0.35:
        # Regression: white scar-like depigmentation peppered with blue-grey granules.
        centre = canvas.points_inside(rng, 1, contour, (0.1, 0.5))[0]
        scar = canvas.blob(rng, centre, (rng.uniform(0.2, 0.4), rng.uniform(0.15, 0.3)), 0.3)
        canvas.paint(scar * body, _jitter(REGRESSION_WHITE, rng), opacity=0.75)
        n = 40
        pepper = canvas.discs(centre + rng.normal(0, 0.2, (n, 2)), np.full(n, 0.016))
        canvas.paint(pepper * scar * body, _jitter(BLUE_GREY, rng), opacity=0.8)
    if rng.random() < 0.65:
        # Irregular dots and globules: different sizes, unevenly spread, towards one side.
        n = int(rng.integers(6, 20))
        phi = rng.uniform(0.0, 2 * math.pi)
        theta = phi + rng.normal(0.0, 0.8, n)
        points = contour.point(theta, rng.uniform(0.55, 0.95, n))
        dots = canvas.discs(points, rng.uniform(0.02, 0.08, n))
        canvas.paint(dots * body, _jitter(BLACK if rng.random() < 0.5 else DARK_BROWN, rng), 0.9)
    if rng.random() < 0.35:
        # Streaks / pseudopods: radial lines with bulbous tips at part of the border (Menzies 1996).
        n = int(rng.integers(5, 12))
        theta = rng.uniform(0, 2 * math.pi) + np.linspace(-0.6, 0.6, n) + rng.normal(0, 0.05, n)
        inner = contour.point(theta, 0.8)
        outer = contour.point(theta, rng.uniform(1.1, 1.25, n))
        streaks = canvas.lines([np.stack([a, b]) for a, b in zip(inner, outer, strict=True)], [0.04] * n)
        streaks = cv2.max(streaks, canvas.discs(outer, np.full(n, 0.035)))
        colour = _jitter(DARK_BROWN, rng)
        canvas.paint(streaks, colour)
        canvas.extra_alpha = np.maximum(canvas.extra_alpha, streaks)
    if rng.random() < 0.12:
        # Dotted / polymorphous vessels of thin or hypomelanotic melanoma.
        _dotted_vessels(canvas, rng, contour, int(rng.integers(8, 20)))


def _paint_seborrheic_keratosis(
    canvas: _Canvas, rng: np.random.Generator, contour: _Contour, params: LesionParams
) -> None:
    body = canvas.body
    # Waxy, 'stuck-on' surface: a fine mottling of light and dark.
    canvas.shade(canvas.noise(rng, 16), (2.5, 0.5, 1.0))
    if rng.random() < 0.75:
        # Fissures and ridges ('brain-like' / cerebriform pattern; Braun et al. 2002): the zero
        # crossings of smooth noise are winding, roughly parallel grooves.
        field = canvas.noise(rng, int(rng.integers(6, 10)))
        grooves = np.exp(-((field / rng.uniform(0.12, 0.2)) ** 2))
        canvas.shade(grooves * body, (-14.0 - 6.0 * params.pigment, 2.0, 1.0))
        canvas.shade(_smoothstep(0.2, 0.8, np.abs(field)) * body, (3.0, 0.0, 1.0))
    if rng.random() < 0.7:
        # Milia-like cysts: white-yellow round dots, 'starry' (Argenziano et al. 2003).
        n = int(rng.integers(3, 14))
        cysts = canvas.discs(canvas.points_inside(rng, n, contour), rng.uniform(0.025, 0.06, n), blur=0.012)
        canvas.paint(cysts * body, _jitter(MILIA_WHITE, rng), opacity=rng.uniform(0.75, 0.95))
    if rng.random() < 0.65:
        # Comedo-like openings: keratin plugs, brown-black round to oval.
        n = int(rng.integers(3, 12))
        shapes = np.stack([rng.uniform(0.5, 1.0, n), rng.uniform(0, 180, n)], axis=1)
        where = canvas.points_inside(rng, n, contour)
        plugs = canvas.discs(where, rng.uniform(0.03, 0.07, n), ellipses=shapes)
        canvas.paint(plugs * body, _jitter(DARK_BROWN if rng.random() < 0.6 else BLACK, rng), opacity=0.9)
    if rng.random() < 0.15:
        # Hairpin vessels with a whitish halo in irritated keratoses.
        n = int(rng.integers(3, 7))
        starts = canvas.points_inside(rng, n, contour, (0.1, 0.7))
        t = np.linspace(0, math.pi, 8)
        hairpins = [s + np.stack([0.04 * np.cos(t), 0.1 * np.sin(t)], axis=1) for s in starts]
        canvas.paint(canvas.lines(hairpins, [0.02] * n) * body, _jitter(VESSEL_RED, rng), opacity=0.8)


def _paint_basal_cell_carcinoma(
    canvas: _Canvas, rng: np.random.Generator, contour: _Contour, params: LesionParams
) -> None:
    body = canvas.body
    # Translucent, pearly surface: the skin shows through, with a white sheen (Menzies et al. 2000).
    sheen = _smoothstep(0.0, 1.2, canvas.noise(rng, 5))
    canvas.paint(sheen * body, _jitter(PEARL_WHITE, rng), opacity=rng.uniform(0.15, 0.4))
    if rng.random() < 0.85:
        # Arborizing vessels: bright red, sharply focused, branching into fine capillaries (Menzies 2000).
        lines, widths = [], []
        for _ in range(int(rng.integers(2, 5))):
            start = canvas.points_inside(rng, 1, contour, (0.3, 0.8))[0]
            heading = math.atan2(-start[1], -start[0]) + rng.normal(0.0, 0.6)  # inwards
            tree = _vessel_tree(rng, start, heading, rng.uniform(0.35, 0.55), rng.uniform(0.045, 0.075), 3)
            lines += tree[0]
            widths += tree[1]
        canvas.paint(canvas.lines(lines, widths) * body, _jitter(VESSEL_RED, rng), opacity=0.92)
    if rng.random() < (0.35 + 0.5 * params.pigment):
        # Large blue-grey ovoid nests and multiple blue-grey globules (pigmented BCC).
        n = int(rng.integers(1, 6))
        shapes = np.stack([rng.uniform(0.45, 0.8, n), rng.uniform(0, 180, n)], axis=1)
        nests = canvas.discs(
            canvas.points_inside(rng, n, contour, (0.0, 0.7)),
            rng.uniform(0.1, 0.2, n),
            blur=0.03,
            ellipses=shapes,
        )
        m = int(rng.integers(0, 10))
        where = canvas.points_inside(rng, m, contour)
        globules = canvas.discs(where, rng.uniform(0.025, 0.045, m), blur=0.01)
        opacity = rng.uniform(0.75, 0.95)
        canvas.paint(cv2.max(nests, globules) * body, _jitter(BLUE_GREY, rng), opacity=opacity)
    if rng.random() < 0.25:
        # Ulceration: a structureless red-brown to black crust.
        centre = canvas.points_inside(rng, 1, contour, (0.0, 0.5))[0]
        ulcer = canvas.blob(rng, centre, (rng.uniform(0.15, 0.3), rng.uniform(0.1, 0.25)), 0.3)
        canvas.paint(ulcer * body, _jitter(CRUST, rng), opacity=0.9)
    if rng.random() < 0.3:
        # Shiny white blotches and strands (visible in polarised dermoscopy).
        n = int(rng.integers(3, 8))
        starts = canvas.points_inside(rng, n, contour, (0.0, 0.7))
        strands = [np.stack([s, s + rng.normal(0, 0.1, 2)]) for s in starts]
        canvas.paint(canvas.lines(strands, [0.025] * n) * body, _jitter(MILIA_WHITE, rng), opacity=0.7)


def _paint_squamous_cell_carcinoma(
    canvas: _Canvas, rng: np.random.Generator, contour: _Contour, params: LesionParams
) -> None:
    body = canvas.body
    # Pink to red background: erythema around a keratinising tumour (Zalaudek et al. 2012).
    canvas.shade(_smoothstep(0.0, 0.6, canvas.depth) * body, (-3.0, rng.uniform(4.0, 12.0), 2.0))
    if rng.random() < 0.85:
        # White-yellow keratin / scale: a central, structureless and rough keratotic mass.
        centre = rng.normal(0.0, 0.12, 2)
        keratin = canvas.blob(rng, centre, (rng.uniform(0.3, 0.6), rng.uniform(0.25, 0.5)), 0.35)
        canvas.paint(keratin * body, _jitter(KERATIN, rng), opacity=rng.uniform(0.8, 0.95))
        rough = canvas.noise(rng, 30)
        canvas.shade(keratin * body * rough, (6.0, 0.0, 3.0))
        canvas.shade(keratin * body * np.exp(-((rough / 0.12) ** 2)), (-12.0, 3.0, 4.0))  # scale crevices
    if rng.random() < 0.75:
        _glomerular_vessels(canvas, rng, contour, int(rng.integers(3, 8)))
    if rng.random() < 0.5:
        _dotted_vessels(canvas, rng, contour, int(rng.integers(10, 30)), (0.4, 0.9))
    if rng.random() < 0.4:
        # Blood spots: small red-brown haemorrhages in the scale.
        n = int(rng.integers(1, 5))
        where = canvas.points_inside(rng, n, contour, (0.0, 0.6))
        spots = canvas.discs(where, rng.uniform(0.03, 0.07, n), blur=0.01)
        canvas.paint(spots * body, _jitter(CRUST, rng), opacity=0.9)
    if rng.random() < 0.3:
        # White circles: keratin around follicular openings (Rosendahl et al. 2012).
        n = int(rng.integers(3, 9))
        points = canvas.px(canvas.points_inside(rng, n, contour, (0.2, 0.8)))
        rings = canvas.blank()
        radius, thickness = max(1, int(0.05 * canvas.radius * 16)), max(1, int(0.025 * canvas.radius))
        for p in points:
            cv2.circle(rings, (int(p[0]), int(p[1])), radius, 255, thickness, cv2.LINE_AA, 4)
        canvas.paint(canvas.layer(rings) * body, _jitter(MILIA_WHITE, rng), opacity=0.8)


@dataclass(frozen=True)
class _Look:
    paint: Callable[[_Canvas, np.random.Generator, _Contour, LesionParams], None]
    softness: tuple[float, float]  # border blur, in lesion radii: small is sharply demarcated
    opacity: tuple[float, float]  # low is translucent
    reach: float = 0.0  # structures past the border (streaks), in lesion radii


_LOOKS: dict[str, _Look] = {
    "NV": _Look(_paint_nevus, (0.03, 0.08), (0.9, 1.0)),
    "MEL": _Look(_paint_melanoma, (0.02, 0.07), (0.92, 1.0), reach=0.35),
    "BKL": _Look(_paint_seborrheic_keratosis, (0.005, 0.02), (0.95, 1.0)),
    "BCC": _Look(_paint_basal_cell_carcinoma, (0.06, 0.14), (0.6, 0.85)),
    "SCC": _Look(_paint_squamous_cell_carcinoma, (0.05, 0.12), (0.75, 0.95)),
}


# -- artifacts --------------------------------------------------------------------------------------------

ARTIFACTS_IN_DRAWING_ORDER: tuple[str, ...] = ("ink", "hair", "bubbles", "ruler", "vignette")


def _blend(image: np.ndarray, alpha: np.ndarray, colour: Sequence[float]) -> None:
    """Blend ``colour`` into ``image`` (float RGB, in place) with weights ``alpha`` (uint8, 255 = opaque).

    Only the bounding box of the drawn pixels is touched; where alpha is 0 the image is unchanged, so a
    mask ``alpha > 0`` covers every changed pixel, antialiased edges included.
    """
    x, y, w, h = cv2.boundingRect(alpha)
    if w == 0 or h == 0:
        return
    a = alpha[y : y + h, x : x + w].astype(np.float32)[..., None] * np.float32(1.0 / 255.0)
    roi = image[y : y + h, x : x + w]
    roi += (np.asarray(colour, np.float32) - roi) * a


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * 16.0).astype(np.int32)


def _draw_hair(
    image: np.ndarray, rng: np.random.Generator, config: PhantomConfig, scale: float, lesion_centre: Point
):
    """Dark curved hairs: quadratic Bezier curves with a little wobble, of varying width and opacity."""
    height, width = image.shape[:2]
    alpha = np.zeros((height, width), np.uint8)
    count = int(rng.integers(config.hair_count[0], config.hair_count[1] + 1))
    diagonal = math.hypot(width, height)
    # Mostly black to dark brown hair; now and then lighter (blond, grey) shafts.
    brightness = rng.uniform(8, 45) if rng.random() < 0.85 else rng.uniform(90, 150)
    colour = brightness * np.array([1.0, rng.uniform(0.8, 0.95), rng.uniform(0.6, 0.9)])
    t = np.linspace(0.0, 1.0, 24)[:, None]
    for _ in range(count):
        start = rng.uniform((-0.1 * width, -0.1 * height), (1.1 * width, 1.1 * height))
        heading = rng.uniform(0.0, 2 * math.pi)
        length = rng.uniform(0.15, 0.6) * diagonal
        end = start + length * np.array([math.cos(heading), math.sin(heading)])
        normal = np.array([-math.sin(heading), math.cos(heading)])
        control = (start + end) / 2 + normal * rng.uniform(-0.35, 0.35) * length
        curve = (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end
        curve += rng.normal(0.0, 0.003 * length, curve.shape).cumsum(axis=0) * 0.3
        px_width = rng.uniform(*config.hair_width) * scale
        opacity = rng.uniform(0.75, 0.97) * min(1.0, px_width)
        value, thickness = int(255 * opacity), max(1, round(px_width))
        cv2.polylines(alpha, [_fixed(curve)], False, value, thickness, cv2.LINE_AA, 4)
    _blend(image, alpha, colour)
    return alpha


def _draw_ink(
    image: np.ndarray, rng: np.random.Generator, config: PhantomConfig, scale: float, lesion_centre: Point
):
    """Surgical marker: purple or blue strokes, dots, or an arc drawn around the lesion."""
    height, width = image.shape[:2]
    short = min(width, height)
    alpha = np.zeros((height, width), np.uint8)
    colour = (rng.uniform(90, 140), rng.uniform(40, 80), rng.uniform(130, 180))  # gentian violet
    if rng.random() < 0.3:
        colour = (rng.uniform(30, 70), rng.uniform(60, 100), rng.uniform(150, 200))  # blue marker
    thickness = max(1, round(rng.uniform(4.0, 10.0) * scale))
    for _ in range(int(rng.integers(1, 4))):
        kind = rng.choice(["stroke", "dot", "arc"], p=[0.45, 0.35, 0.2])
        if kind == "stroke":
            start = rng.uniform((0, 0), (width, height))
            steps = rng.normal(0, 0.04 * short, (12, 2)) + rng.normal(0, 0.05 * short, 2)
            stroke = _fixed(start + steps.cumsum(axis=0))
            cv2.polylines(alpha, [stroke], False, 255, thickness, cv2.LINE_AA, 4)
        elif kind == "dot":
            p = rng.uniform((0, 0), (width, height))
            radius = max(1, int(rng.uniform(0.01, 0.025) * short * 16))
            cv2.circle(alpha, tuple(int(v) for v in _fixed(p)), radius, 255, -1, cv2.LINE_AA, 4)
        else:
            axes = tuple(int(v) for v in _fixed(rng.uniform(0.3, 0.45, 2) * short))
            start_angle = rng.uniform(0, 360)
            cv2.ellipse(
                alpha,
                tuple(int(v) for v in _fixed(lesion_centre)),
                axes,
                rng.uniform(0, 180),
                start_angle,
                start_angle + rng.uniform(60, 200),
                255,
                thickness,
                cv2.LINE_AA,
                4,
            )
    # Ink bleeds into the skin furrows: soft edges, and it is never fully opaque.
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.5, 1.2 * scale))
    alpha = (alpha.astype(np.float32) * rng.uniform(0.5, 0.8)).astype(np.uint8)
    _blend(image, alpha, colour)
    return alpha


def _draw_bubbles(
    image: np.ndarray, rng: np.random.Generator, config: PhantomConfig, scale: float, lesion_centre: Point
):
    """Air bubbles in the immersion fluid: a faint bright disc, a dark outer rim, a bright inner rim
    and a specular highlight."""
    height, width = image.shape[:2]
    short = min(width, height)
    layers = {name: np.zeros((height, width), np.uint8) for name in ("fill", "dark", "light", "spot")}
    rim = max(1, round(1.5 * scale))
    for _ in range(int(rng.integers(1, 7))):
        c = rng.uniform((0, 0), (width, height))
        axes = rng.uniform(0.015, 0.06) * short * np.array([1.0, rng.uniform(0.7, 1.0)])
        angle = rng.uniform(0, 180)
        _ellipse(layers["fill"], c, axes, angle, rng.uniform(0.12, 0.25), -1)
        _ellipse(layers["dark"], c, axes, angle, rng.uniform(0.35, 0.6), rim)
        _ellipse(layers["light"], c, axes * 0.85, angle, rng.uniform(0.5, 0.85), rim)
        _ellipse(layers["spot"], c - axes * 0.4, axes * 0.2, angle, 0.9, -1)
    alpha = np.zeros((height, width), np.uint8)
    for name, grey in (("fill", 250), ("dark", 40), ("light", 255), ("spot", 255)):
        _blend(image, layers[name], (grey, grey, grey))
        alpha = cv2.max(alpha, layers[name])
    return alpha


def _ellipse(
    canvas: np.ndarray, centre: np.ndarray, axes: np.ndarray, angle: float, opacity: float, thickness: int
):
    half_axes = tuple(max(1, int(v)) for v in _fixed(axes))
    cv2.ellipse(
        canvas,
        tuple(int(v) for v in _fixed(centre)),
        half_axes,
        angle,
        0,
        360,
        int(255 * opacity),
        thickness,
        cv2.LINE_AA,
        4,
    )


def _draw_ruler(
    image: np.ndarray, rng: np.random.Generator, config: PhantomConfig, scale: float, lesion_centre: Point
):
    """A millimetre scale along one edge: a base line with ticks, longer every fifth."""
    height, width = image.shape[:2]
    short = min(width, height)
    alpha = np.zeros((height, width), np.uint8)
    edge = int(rng.integers(4))  # top, bottom, left, right
    along = width if edge < 2 else height
    span = rng.uniform(0.4, 0.9) * along
    start = rng.uniform(0.02 * along, along - span)
    offset = rng.uniform(0.03, 0.1) * short
    spacing = rng.uniform(1 / 40, 1 / 18) * short
    tilt = math.tan(math.radians(rng.uniform(-4.0, 4.0)))
    tick = rng.uniform(0.025, 0.045) * short
    thickness = max(1, round(rng.uniform(1.0, 2.5) * scale))
    # Positions along the edge (s) and into the image (d), mapped to x, y for the chosen edge.
    inward = 1.0 if edge in (0, 2) else -1.0
    base = offset if edge in (0, 2) else (height if edge == 1 else width) - offset

    def xy(s: float, d: float) -> tuple[int, int]:
        depth = base + inward * d + tilt * (s - start)
        p = (s, depth) if edge < 2 else (depth, s)
        return round(p[0] * 16), round(p[1] * 16)

    cv2.line(alpha, xy(start, 0), xy(start + span, 0), 255, thickness, cv2.LINE_AA, 4)
    for i in range(int(span // spacing) + 1):
        s = start + i * spacing
        length = tick * (2.0 if i % 10 == 0 else 1.5 if i % 5 == 0 else 1.0)
        cv2.line(alpha, xy(s, 0), xy(s, length), 255, thickness, cv2.LINE_AA, 4)
    alpha = (alpha.astype(np.float32) * rng.uniform(0.8, 0.97)).astype(np.uint8)
    _blend(image, alpha, rng.uniform(5, 40, 3))
    return alpha


def _draw_vignette(
    image: np.ndarray, rng: np.random.Generator, config: PhantomConfig, scale: float, lesion_centre: Point
):
    """The dark field of the lens barrel outside a circle: black corners with a soft edge."""
    height, width = image.shape[:2]
    half_diagonal = 0.5 * math.hypot(width, height)
    cx = width / 2 + rng.normal(0, 0.02 * width)
    cy = height / 2 + rng.normal(0, 0.02 * height)
    # From 0.8 (at 4:3 the field touches the long sides) to just inside the corners.
    radius = rng.uniform(0.8, 0.97) * half_diagonal
    ramp = rng.uniform(0.01, 0.05) * min(width, height) + 1.0
    xs = np.arange(width, dtype=np.float32) - np.float32(cx)
    ys = np.arange(height, dtype=np.float32) - np.float32(cy)
    distance = np.sqrt(xs[None, :] ** 2 + ys[:, None] ** 2)
    weight = np.clip((distance - np.float32(radius)) / np.float32(ramp), 0.0, 1.0) * rng.uniform(0.9, 1.0)
    alpha = np.ceil(weight * 255.0).astype(np.uint8)  # ceil: the faintest darkening still counts
    _blend(image, alpha, rng.uniform(0, 18, 3))
    return alpha


# Each drawer paints its artifact into the float RGB image in place and returns its weights (uint8, 0 where
# nothing changed); ``scale`` is the short side over 450, ``lesion_centre`` where the lesion lies (x, y).
ArtifactDrawer = Callable[[np.ndarray, np.random.Generator, PhantomConfig, float, Point], np.ndarray]

_ARTIFACT_DRAWERS: dict[str, ArtifactDrawer] = {
    "hair": _draw_hair,
    "ruler": _draw_ruler,
    "ink": _draw_ink,
    "vignette": _draw_vignette,
    "bubbles": _draw_bubbles,
}
