"""Acquisition artifacts: ink, hair, bubbles, a ruler and the vignette, each drawn into the image with
the weights it used, so that its mask covers exactly the pixels it changed."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import cv2
import numpy as np
from skingenbench.services.data.core.phantom.config import PhantomConfig, Point

# The order of the optics (see render_phantom): ink and hair on the skin, bubbles in the fluid above
# them, the ruler on the contact plate, the vignette around it all. Changing it changes every render.
ARTIFACTS_IN_DRAWING_ORDER: tuple[str, ...] = ("ink", "hair", "bubbles", "ruler", "vignette")


def _blend(image: np.ndarray, alpha: np.ndarray, colour: Sequence[float] | np.ndarray) -> None:
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


def _fixed(points: np.ndarray | Sequence[float]) -> np.ndarray:
    return np.round(np.asarray(points) * 16.0).astype(np.int32)


def _draw_hair(
    image: np.ndarray, rng: np.random.Generator, config: PhantomConfig, scale: float, lesion_centre: Point
) -> np.ndarray:
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
) -> np.ndarray:
    """Surgical marker: purple or blue strokes, dots, or an arc drawn around the lesion."""
    height, width = image.shape[:2]
    short = min(width, height)
    alpha: np.ndarray = np.zeros((height, width), np.uint8)
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
) -> np.ndarray:
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
    alpha: np.ndarray = np.zeros((height, width), np.uint8)
    for name, grey in (("fill", 250), ("dark", 40), ("light", 255), ("spot", 255)):
        _blend(image, layers[name], (grey, grey, grey))
        alpha = cv2.max(alpha, layers[name])
    return alpha


def _ellipse(
    canvas: np.ndarray, centre: np.ndarray, axes: np.ndarray, angle: float, opacity: float, thickness: int
) -> None:
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
) -> np.ndarray:
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
) -> np.ndarray:
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

ARTIFACT_DRAWERS: dict[str, ArtifactDrawer] = {
    "hair": _draw_hair,
    "ruler": _draw_ruler,
    "ink": _draw_ink,
    "vignette": _draw_vignette,
    "bubbles": _draw_bubbles,
}
