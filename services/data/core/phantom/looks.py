"""The class looks: one painter per class draws the structures dermoscopy describes for it (each one
cited where it is drawn), on a :class:`~skingenbench.services.data.core.phantom.canvas.LesionCanvas`.

Structure colours appear in more than one class on purpose, so that structure (shape, texture,
arrangement) separates the classes better than colour does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from skingenbench.services.data.core.phantom.canvas import LesionCanvas
from skingenbench.services.data.core.phantom.config import LesionParams
from skingenbench.services.data.core.phantom.contour import Contour
from skingenbench.services.data.core.phantom.palette import (
    BLACK,
    BLUE_GREY,
    BLUE_WHITE_VEIL,
    CRUST,
    DARK_BROWN,
    KERATIN,
    MILIA_WHITE,
    PEARL_WHITE,
    REGRESSION_WHITE,
    VESSEL_RED,
    base_colour,
    jitter,
)
from skingenbench.services.data.core.phantom.raster import smoothstep


def _honeycomb(canvas: LesionCanvas, rng: np.random.Generator, period: float, warp: float) -> np.ndarray:
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
    canvas: LesionCanvas,
    rng: np.random.Generator,
    contour: Contour,
    n: int,
    r_range: tuple[float, float] = (0.0, 0.85),
) -> None:
    # Dotted vessels: pinpoint red dots, regularly or irregularly spread (Argenziano et al. 2004).
    points = canvas.points_inside(rng, n, contour, r_range)
    canvas.paint(canvas.discs(points, rng.uniform(0.018, 0.03, n)) * canvas.body, jitter(VESSEL_RED, rng))


def _glomerular_vessels(
    canvas: LesionCanvas, rng: np.random.Generator, contour: Contour, clusters: int
) -> None:
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
    canvas.paint(weight * canvas.body, jitter(VESSEL_RED, rng), opacity=0.9)


def _paint_nevus(
    canvas: LesionCanvas, rng: np.random.Generator, contour: Contour, params: LesionParams
) -> None:
    # One or two colours, evenly distributed, symmetric around the centre: C1-2 of the ABCD rule.
    canvas.shade(canvas.depth * rng.uniform(-1.0, 1.0), (-6.0, 1.0, 1.0))
    canvas.shade(canvas.noise(rng, 5), (1.0, 0.3, 0.3))
    pattern = rng.choice(["reticular", "globular", "homogeneous"], p=[0.55, 0.25, 0.2])
    fade = smoothstep(0.0, 0.45, canvas.depth)  # the network thins out towards the periphery
    dark = (-12.0 - 10.0 * params.pigment, 2.0, 2.0)
    if pattern == "reticular":
        # Typical pigment network: thin brown lines, regularly meshed, fading at the periphery.
        net = _honeycomb(canvas, rng, period=rng.uniform(0.16, 0.24), warp=0.12)
        canvas.shade(smoothstep(-0.55 + 0.12 * canvas.noise(rng, 4), -1.1, net) * fade, dark)
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
        core = smoothstep(0.45, 0.8, canvas.depth)
        canvas.paint(core, jitter(BLUE_GREY, rng), opacity=rng.uniform(0.5, 0.8))
    if rng.random() < 0.1:
        # Comma vessels of dermal (papillomatous) nevi: short, slightly curved (Argenziano 2004).
        n = int(rng.integers(3, 8))
        starts = canvas.points_inside(rng, n, contour, (0.0, 0.7))
        commas = [s + np.cumsum(rng.normal(0, 0.04, (4, 2)) + rng.normal(0, 0.05, 2), axis=0) for s in starts]
        canvas.paint(canvas.lines(commas, [0.03] * n) * canvas.body, jitter(VESSEL_RED, rng), opacity=0.7)


def _paint_melanoma(
    canvas: LesionCanvas, rng: np.random.Generator, contour: Contour, params: LesionParams
) -> None:
    body = canvas.body
    # Several colours in asymmetric zones (ABCD rule: asymmetry and >= 3 colours; Stolz et al. 1994).
    light_brown = base_colour(params.skin, 0.35)
    palette = [light_brown, DARK_BROWN, BLACK, BLUE_GREY, (38.0, 22.0, 18.0)]
    chosen = rng.choice(len(palette), size=int(rng.integers(2, 5)), replace=False)
    for index in chosen:
        phi = rng.uniform(0.0, 2 * math.pi)
        toward = canvas.u * math.cos(phi) + canvas.v * math.sin(phi)
        zone = smoothstep(0.1, 0.6, 0.8 * toward + 0.5 * canvas.noise(rng, 5) + rng.uniform(-0.2, 0.2))
        canvas.paint(zone * body, jitter(palette[index], rng), opacity=rng.uniform(0.55, 0.9))
    if rng.random() < 0.7:
        # Atypical network: thick, dark, irregular meshes, broken up and confined to part of the lesion.
        net = _honeycomb(canvas, rng, period=rng.uniform(0.17, 0.3), warp=0.4)
        width = 0.5 + 0.6 * canvas.noise(rng, 6)
        lines = smoothstep(0.0, -0.9, net - width) * (canvas.noise(rng, 8) > -0.3)
        phi = rng.uniform(0.0, 2 * math.pi)
        part = smoothstep(-0.3, 0.3, canvas.u * math.cos(phi) + canvas.v * math.sin(phi))
        canvas.paint(lines * part * body, jitter(BLACK if rng.random() < 0.4 else DARK_BROWN, rng), 0.85)
    if rng.random() < 0.5:
        # Blue-white veil: an irregular, structureless blue-white area over a raised part.
        centre = canvas.points_inside(rng, 1, contour, (0.15, 0.5))[0]
        veil = canvas.blob(rng, centre, (rng.uniform(0.3, 0.55), rng.uniform(0.2, 0.4)), 0.25)
        canvas.paint(veil * body, jitter(BLUE_WHITE_VEIL, rng), opacity=rng.uniform(0.6, 0.85))
    if rng.random() < 0.35:
        # Regression: white scar-like depigmentation peppered with blue-grey granules.
        centre = canvas.points_inside(rng, 1, contour, (0.1, 0.5))[0]
        scar = canvas.blob(rng, centre, (rng.uniform(0.2, 0.4), rng.uniform(0.15, 0.3)), 0.3)
        canvas.paint(scar * body, jitter(REGRESSION_WHITE, rng), opacity=0.75)
        n = 40
        pepper = canvas.discs(centre + rng.normal(0, 0.2, (n, 2)), np.full(n, 0.016))
        canvas.paint(pepper * scar * body, jitter(BLUE_GREY, rng), opacity=0.8)
    if rng.random() < 0.65:
        # Irregular dots and globules: different sizes, unevenly spread, towards one side.
        n = int(rng.integers(6, 20))
        phi = rng.uniform(0.0, 2 * math.pi)
        theta = phi + rng.normal(0.0, 0.8, n)
        points = contour.point(theta, rng.uniform(0.55, 0.95, n))
        dots = canvas.discs(points, rng.uniform(0.02, 0.08, n))
        canvas.paint(dots * body, jitter(BLACK if rng.random() < 0.5 else DARK_BROWN, rng), 0.9)
    if rng.random() < 0.35:
        # Streaks / pseudopods: radial lines with bulbous tips at part of the border (Menzies 1996).
        n = int(rng.integers(5, 12))
        theta = rng.uniform(0, 2 * math.pi) + np.linspace(-0.6, 0.6, n) + rng.normal(0, 0.05, n)
        inner = contour.point(theta, 0.8)
        outer = contour.point(theta, rng.uniform(1.1, 1.25, n))
        streaks = canvas.lines([np.stack([a, b]) for a, b in zip(inner, outer, strict=True)], [0.04] * n)
        streaks = cv2.max(streaks, canvas.discs(outer, np.full(n, 0.035)))
        colour = jitter(DARK_BROWN, rng)
        canvas.paint(streaks, colour)
        canvas.extra_alpha = np.maximum(canvas.extra_alpha, streaks)
    if rng.random() < 0.12:
        # Dotted / polymorphous vessels of thin or hypomelanotic melanoma.
        _dotted_vessels(canvas, rng, contour, int(rng.integers(8, 20)))


def _paint_seborrheic_keratosis(
    canvas: LesionCanvas, rng: np.random.Generator, contour: Contour, params: LesionParams
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
        canvas.shade(smoothstep(0.2, 0.8, np.abs(field)) * body, (3.0, 0.0, 1.0))
    if rng.random() < 0.7:
        # Milia-like cysts: white-yellow round dots, 'starry' (Argenziano et al. 2003).
        n = int(rng.integers(3, 14))
        cysts = canvas.discs(canvas.points_inside(rng, n, contour), rng.uniform(0.025, 0.06, n), blur=0.012)
        canvas.paint(cysts * body, jitter(MILIA_WHITE, rng), opacity=rng.uniform(0.75, 0.95))
    if rng.random() < 0.65:
        # Comedo-like openings: keratin plugs, brown-black round to oval.
        n = int(rng.integers(3, 12))
        shapes = np.stack([rng.uniform(0.5, 1.0, n), rng.uniform(0, 180, n)], axis=1)
        where = canvas.points_inside(rng, n, contour)
        plugs = canvas.discs(where, rng.uniform(0.03, 0.07, n), ellipses=shapes)
        canvas.paint(plugs * body, jitter(DARK_BROWN if rng.random() < 0.6 else BLACK, rng), opacity=0.9)
    if rng.random() < 0.15:
        # Hairpin vessels with a whitish halo in irritated keratoses.
        n = int(rng.integers(3, 7))
        starts = canvas.points_inside(rng, n, contour, (0.1, 0.7))
        t = np.linspace(0, math.pi, 8)
        hairpins = [s + np.stack([0.04 * np.cos(t), 0.1 * np.sin(t)], axis=1) for s in starts]
        canvas.paint(canvas.lines(hairpins, [0.02] * n) * body, jitter(VESSEL_RED, rng), opacity=0.8)


def _paint_basal_cell_carcinoma(
    canvas: LesionCanvas, rng: np.random.Generator, contour: Contour, params: LesionParams
) -> None:
    body = canvas.body
    # Translucent, pearly surface: the skin shows through, with a white sheen (Menzies et al. 2000).
    sheen = smoothstep(0.0, 1.2, canvas.noise(rng, 5))
    canvas.paint(sheen * body, jitter(PEARL_WHITE, rng), opacity=rng.uniform(0.15, 0.4))
    if rng.random() < 0.85:
        # Arborizing vessels: bright red, sharply focused, branching into fine capillaries (Menzies 2000).
        lines, widths = [], []
        for _ in range(int(rng.integers(2, 5))):
            start = canvas.points_inside(rng, 1, contour, (0.3, 0.8))[0]
            heading = math.atan2(-start[1], -start[0]) + rng.normal(0.0, 0.6)  # inwards
            tree = _vessel_tree(rng, start, heading, rng.uniform(0.35, 0.55), rng.uniform(0.045, 0.075), 3)
            lines += tree[0]
            widths += tree[1]
        canvas.paint(canvas.lines(lines, widths) * body, jitter(VESSEL_RED, rng), opacity=0.92)
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
        canvas.paint(cv2.max(nests, globules) * body, jitter(BLUE_GREY, rng), opacity=opacity)
    if rng.random() < 0.25:
        # Ulceration: a structureless red-brown to black crust.
        centre = canvas.points_inside(rng, 1, contour, (0.0, 0.5))[0]
        ulcer = canvas.blob(rng, centre, (rng.uniform(0.15, 0.3), rng.uniform(0.1, 0.25)), 0.3)
        canvas.paint(ulcer * body, jitter(CRUST, rng), opacity=0.9)
    if rng.random() < 0.3:
        # Shiny white blotches and strands (visible in polarised dermoscopy).
        n = int(rng.integers(3, 8))
        starts = canvas.points_inside(rng, n, contour, (0.0, 0.7))
        strands = [np.stack([s, s + rng.normal(0, 0.1, 2)]) for s in starts]
        canvas.paint(canvas.lines(strands, [0.025] * n) * body, jitter(MILIA_WHITE, rng), opacity=0.7)


def _paint_squamous_cell_carcinoma(
    canvas: LesionCanvas, rng: np.random.Generator, contour: Contour, params: LesionParams
) -> None:
    body = canvas.body
    # Pink to red background: erythema around a keratinising tumour (Zalaudek et al. 2012).
    canvas.shade(smoothstep(0.0, 0.6, canvas.depth) * body, (-3.0, rng.uniform(4.0, 12.0), 2.0))
    if rng.random() < 0.85:
        # White-yellow keratin / scale: a central, structureless and rough keratotic mass.
        centre = rng.normal(0.0, 0.12, 2)
        keratin = canvas.blob(rng, centre, (rng.uniform(0.3, 0.6), rng.uniform(0.25, 0.5)), 0.35)
        canvas.paint(keratin * body, jitter(KERATIN, rng), opacity=rng.uniform(0.8, 0.95))
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
        canvas.paint(spots * body, jitter(CRUST, rng), opacity=0.9)
    if rng.random() < 0.3:
        # White circles: keratin around follicular openings (Rosendahl et al. 2012).
        n = int(rng.integers(3, 9))
        points = canvas.px(canvas.points_inside(rng, n, contour, (0.2, 0.8)))
        rings = canvas.blank()
        radius, thickness = max(1, int(0.05 * canvas.radius * 16)), max(1, int(0.025 * canvas.radius))
        for p in points:
            cv2.circle(rings, (int(p[0]), int(p[1])), radius, 255, thickness, cv2.LINE_AA, 4)
        canvas.paint(canvas.layer(rings) * body, jitter(MILIA_WHITE, rng), opacity=0.8)


@dataclass(frozen=True)
class _Look:
    paint: Callable[[LesionCanvas, np.random.Generator, Contour, LesionParams], None]
    softness: tuple[float, float]  # border blur, in lesion radii: small is sharply demarcated
    opacity: tuple[float, float]  # low is translucent
    reach: float = 0.0  # structures past the border (streaks), in lesion radii


LOOKS: dict[str, _Look] = {
    "NV": _Look(_paint_nevus, (0.03, 0.08), (0.9, 1.0)),
    "MEL": _Look(_paint_melanoma, (0.02, 0.07), (0.92, 1.0), reach=0.35),
    "BKL": _Look(_paint_seborrheic_keratosis, (0.005, 0.02), (0.95, 1.0)),
    "BCC": _Look(_paint_basal_cell_carcinoma, (0.06, 0.14), (0.6, 0.85)),
    "SCC": _Look(_paint_squamous_cell_carcinoma, (0.05, 0.12), (0.75, 0.95)),
}
