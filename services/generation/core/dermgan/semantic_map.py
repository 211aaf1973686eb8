"""DermGAN's input: a semantic map of skin colour, lesion region and condition (Ghorbani et al. 2019).

DermGAN (arXiv 1911.08716) turns Pix2Pix (Isola et al. 2017) into a skin-image synthesiser by feeding
it a map that says *what* to draw where: the skin colour, the lesion's outline and its condition. A
map here is a float32 array [R, R, C] (channel-last, as the training loop's condition maps are):

- channels 0-2: the skin colour of the requested ITA angle, as sRGB in [-1, 1] (the image's range),
  filled over the whole image, lesion included: a lesion's look depends on the skin it sits on, and
  the lesion region is marked by the class channels anyway;
- channels 3 .. 3+K-1: one channel per class, 1 inside the lesion in its class's channel, else 0.
  One-hot rather than one colour per class: colours would put the classes in a metric space where
  some pairs (say BKL and MEL) are nearer than others, an order the generator would be free to
  exploit; one-hot channels are equidistant, and an empty class channel means "no lesion here";
- last channel (optional): Gaussian noise, so one map gives several images. The backend redraws it
  every training step and from each image's seed when sampling.

The skin colour is a function of ITA alone (a* and b* fixed at the middle of the ranges colorimetry
reports for skin; L* from ITA via ``skingenbench.services.core.imaging.skin_tone.lightness_for_ita``), so a training map
built from a real image and a map requested at sampling time describe skin the same way.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.imaging.skin_tone import lightness_for_ita

SKIN_A_STAR = 10.0  # redness: middle of the a* range reported for skin (about 6-13)
SKIN_B_STAR = (
    16.0  # yellowness: middle of the b* range (about 12-20); lowered where L* would leave skin's range
)
MAX_AREA_FRACTION = 0.95

# CIELAB colours for showing a map as an image (``paint_map``), one per class, chosen far from any skin
# colour so that a painted map segments cleanly. They are for display and for the oracle that tests the
# controllability measurement; the generator never sees them.
DISPLAY_COLOURS_LAB: dict[str, tuple[float, float, float]] = {
    "NV": (38.0, 22.0, 32.0),  # brown
    "BCC": (62.0, 48.0, -6.0),  # pink-magenta
    "BKL": (55.0, -6.0, 46.0),  # olive-tan
    "MEL": (18.0, 4.0, -4.0),  # near black
    "SCC": (45.0, 58.0, 40.0),  # red
}


@dataclass(frozen=True)
class MapLayout:
    """Which channel holds what; fixed by the backend's config."""

    classes: tuple[str, ...] = CLASSES
    noise_channel: bool = True

    @property
    def channels(self) -> int:
        return 3 + len(self.classes) + int(self.noise_channel)

    @property
    def class_channels(self) -> slice:
        return slice(3, 3 + len(self.classes))

    @property
    def noise_index(self) -> int | None:
        return 3 + len(self.classes) if self.noise_channel else None

    def class_index(self, label: str) -> int:
        if label not in self.classes:
            raise InvalidArgument(
                f"unknown class {label!r}", field="label", hint=f"one of {', '.join(self.classes)}"
            )
        return self.classes.index(label)


@dataclass(frozen=True)
class MapParams:
    """A lesion drawn from parameters. Centre and area are what the map's lesion region measures."""

    label: str
    lesion_area_fraction: float  # of the image, (0, 0.95]
    center_x: float  # fraction of the width, left to right
    center_y: float  # fraction of the height, top to bottom
    ita_degrees: float  # skin tone
    aspect_ratio: float = 1.0  # major / minor axis of the ellipse, >= 1
    orientation_degrees: float = 0.0  # of the major axis, counter-clockwise from the x axis
    irregularity: float = 0.0  # 0 = an ellipse; up to 0.5 = a strongly lobed border
    shape_seed: int = 0  # the border's lobes

    def validate(self) -> None:
        checks = (
            (
                "lesion_area_fraction",
                0.0 < self.lesion_area_fraction <= MAX_AREA_FRACTION,
                f"(0, {MAX_AREA_FRACTION}]",
            ),
            ("center_x", 0.0 <= self.center_x <= 1.0, "[0, 1]"),
            ("center_y", 0.0 <= self.center_y <= 1.0, "[0, 1]"),
            ("ita_degrees", -90.0 < self.ita_degrees < 90.0, "(-90, 90)"),
            ("aspect_ratio", 1.0 <= self.aspect_ratio <= 10.0, "[1, 10]"),
            ("orientation_degrees", math.isfinite(self.orientation_degrees), "finite"),
            ("irregularity", 0.0 <= self.irregularity <= 0.5, "[0, 0.5]"),
        )
        for name, ok, interval in checks:
            value = getattr(self, name)
            if not ok or not math.isfinite(value):
                raise InvalidArgument(f"{name} must be in {interval}, got {value}", field=name)
        if self.label not in CLASSES:
            raise InvalidArgument(
                f"unknown class {self.label!r}", field="label", hint=f"one of {', '.join(CLASSES)}"
            )

    def to_dict(self) -> dict[str, float | int | str]:
        """JSON-ready; also a valid per-image conditioning dict that rebuilds exactly this map."""
        return asdict(self)


def skin_colour(ita_degrees: float) -> np.ndarray:
    """sRGB in [0, 1] (float32, shape [3]) of skin with this ITA angle."""
    if not -90.0 < ita_degrees < 90.0:
        raise InvalidArgument(f"ita_degrees must be in (-90, 90), got {ita_degrees}", field="ita_degrees")
    lightness, b_star = lightness_for_ita(float(ita_degrees), SKIN_B_STAR)
    return lab_to_srgb((lightness, SKIN_A_STAR, b_star))


def lab_to_srgb(lab: tuple[float, float, float]) -> np.ndarray:
    pixel = np.array([[lab]], np.float32)
    return np.clip(cv2.cvtColor(pixel, cv2.COLOR_Lab2RGB)[0, 0], 0.0, 1.0)


def lesion_mask(params: MapParams, resolution: int) -> np.ndarray:
    """Boolean [R, R] lesion region with exactly round(area * R^2) pixels, centroid at the centre.

    The border is r(theta) = s * e(theta) * (1 + irregularity * sum_k w_k cos(k theta + phi_k)), k = 2..5,
    with e the unit-area ellipse: harmonics from 2 up leave the centroid in place (k = 1 would shift it).
    Instead of searching the scale s, every pixel's "radius ratio" dist / r_unit(theta) is computed once
    and the ``target`` smallest are taken: the area is exact by construction. A lesion clipped by the
    image border keeps its area by growing inward; its centroid then moves away from the border.
    """
    params.validate()
    target = max(1, round(params.lesion_area_fraction * resolution * resolution))
    rng = np.random.default_rng(params.shape_seed)
    weights = rng.uniform(-1.0, 1.0, 4)
    weights /= np.abs(weights).sum()
    phases = rng.uniform(0.0, 2.0 * math.pi, 4)
    major = math.sqrt(params.aspect_ratio / math.pi)
    minor = 1.0 / (math.pi * major)
    angle = math.radians(params.orientation_degrees)
    ys, xs = np.mgrid[:resolution, :resolution].astype(np.float64) + 0.5
    wanted = np.array([params.center_x, params.center_y]) * resolution
    centre = wanted.copy()
    for _ in range(3):  # recentre: the lobes and the border can move the centroid by a pixel or so
        dx, dy = xs - centre[0], centre[1] - ys  # y up, so orientation is counter-clockwise on screen
        u = dx * math.cos(angle) + dy * math.sin(angle)
        v = -dx * math.sin(angle) + dy * math.cos(angle)
        theta = np.arctan2(v, u)
        ellipse = major * minor / np.sqrt((minor * np.cos(theta)) ** 2 + (major * np.sin(theta)) ** 2)
        lobes = 1.0 + params.irregularity * sum(
            w * np.cos(k * theta + p) for k, w, p in zip(range(2, 6), weights, phases, strict=True)
        )
        ratio = np.hypot(u, v) / (ellipse * lobes)
        chosen = np.zeros(resolution * resolution, bool)
        chosen[np.argsort(ratio, axis=None, kind="stable")[:target]] = True
        mask = chosen.reshape(resolution, resolution)
        measured = np.array([xs[mask].mean(), ys[mask].mean()])
        if np.abs(measured - wanted).max() < 0.25:
            break
        centre = centre + (wanted - measured)
    return mask


def build_map(
    mask: np.ndarray, ita_degrees: float, label: str, layout: MapLayout, noise: np.ndarray | None = None
) -> np.ndarray:
    """The semantic map [R, R, C] of a lesion region, a skin tone and a class (noise channel 0 unless given)."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 2 or mask.shape[0] != mask.shape[1]:
        raise InvalidArgument(f"lesion masks must be square [R, R], got {list(mask.shape)}", field="mask")
    semantic = np.zeros((*mask.shape, layout.channels), np.float32)
    semantic[..., :3] = skin_colour(ita_degrees) * 2.0 - 1.0
    semantic[..., 3 + layout.class_index(label)] = mask
    if layout.noise_index is not None and noise is not None:
        semantic[..., layout.noise_index] = noise
    return semantic


def map_from_params(params: MapParams, resolution: int, layout: MapLayout) -> np.ndarray:
    """A map drawn from parameters (noise channel 0: the backend fills it from the image's seed)."""
    return build_map(lesion_mask(params, resolution), params.ita_degrees, params.label, layout)


def resize_mask(mask: np.ndarray, resolution: int) -> np.ndarray:
    """A lesion mask (bool or 0/255) at the training resolution: area-average, then half coverage."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    coverage = cv2.resize(
        (mask > 0).astype(np.float32), (resolution, resolution), interpolation=cv2.INTER_AREA
    )
    return coverage >= 0.5


def map_from_mask(
    mask: np.ndarray, ita_degrees: float | None, label: str, resolution: int, layout: MapLayout
) -> np.ndarray:
    """The map of a real preprocessed item: its lesion mask (``objects["mask_lesion"]``), its ITA
    (``meta["ita_degrees"]``) and its class. Items without a lesion or a tone are refused: a pair whose
    map shows no lesion would teach the generator to draw lesions where the map says there are none."""
    if ita_degrees is None or not math.isfinite(float(ita_degrees)):
        raise InvalidArgument(
            "the item has no skin tone (ita_degrees)",
            field="ita_degrees",
            hint="skip items whose skin tone could not be measured",
        )
    resized = resize_mask(mask, resolution)
    if not resized.any():
        raise InvalidArgument(
            "the item's lesion mask is empty at the training resolution",
            field="mask",
            hint="skip items whose lesion segmentation failed (lesion_area_fraction 0)",
        )
    return build_map(resized, float(ita_degrees), label, layout)


def read_map(semantic: np.ndarray, layout: MapLayout) -> tuple[np.ndarray, str, np.ndarray]:
    """(lesion mask, class, skin sRGB in [0, 1]) of a map [R, R, C]."""
    semantic = np.asarray(semantic, np.float32)
    if semantic.ndim != 3 or semantic.shape[2] != layout.channels:
        raise InvalidArgument(
            f"semantic maps must be [R, R, {layout.channels}], got {list(semantic.shape)}",
            field="conditioning",
        )
    one_hot = semantic[..., layout.class_channels]
    mask = one_hot.sum(axis=2) > 0.5
    label = layout.classes[int(np.argmax(one_hot[mask].sum(axis=0)))] if mask.any() else ""
    skin = np.median(semantic[~mask][:, :3] if (~mask).any() else semantic[..., :3].reshape(-1, 3), axis=0)
    return mask, label, (skin + 1.0) / 2.0


def paint_map(semantic: np.ndarray, layout: MapLayout) -> np.ndarray:
    """uint8 [R, R, 3] picture of a map: skin colour with the lesion in its class's display colour."""
    mask, label, skin = read_map(semantic, layout)
    image = np.empty((*mask.shape, 3), np.float32)
    image[:] = skin
    if mask.any():
        image[mask] = lab_to_srgb(DISPLAY_COLOURS_LAB[label])
    return np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
