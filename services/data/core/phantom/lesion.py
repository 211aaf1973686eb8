"""One lesion: its parameters drawn per class, rendered on its own canvas, and placed onto the skin."""

from __future__ import annotations

import math

import cv2
import numpy as np
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.data.core.phantom.canvas import LesionCanvas
from skingenbench.services.data.core.phantom.config import LesionParams, PhantomConfig
from skingenbench.services.data.core.phantom.contour import sample_contour
from skingenbench.services.data.core.phantom.looks import LOOKS
from skingenbench.services.data.core.phantom.palette import base_colour
from skingenbench.services.data.core.phantom.raster import smoothstep
from skingenbench.services.data.core.phantom.skin import sample_skin

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
    check_label(label)
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


def check_label(label: str) -> None:
    if label not in CLASSES:
        raise ValueError(f"unknown class {label!r}; the phantom draws one of {', '.join(CLASSES)}")


def render_lesion(params: LesionParams, radius_px: float) -> tuple[np.ndarray, np.ndarray]:
    """The lesion on its own canvas: Lab colours and opacity (alpha in [0, 1])."""
    rng = np.random.default_rng(params.structure_seed)
    contour = sample_contour(params.label, rng, params.aspect)
    look = LOOKS[params.label]
    softness = float(rng.uniform(*look.softness))
    reach = float(np.abs(contour.point(np.linspace(0, 2 * math.pi, 90))).max()) + 3 * softness + look.reach
    size = 2 * math.ceil(reach * radius_px) + 3
    canvas = LesionCanvas(size, radius_px, base_colour(params.skin, params.pigment))

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
        alpha = smoothstep(-0.3, 0.6, toward) * canvas.body + smoothstep(0.6, -0.3, toward) * alpha
    alpha = np.maximum(alpha * np.float32(rng.uniform(*look.opacity)), canvas.extra_alpha)
    return canvas.lab, alpha


def place_lesion(
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
