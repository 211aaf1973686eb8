"""Rendering one phantom: skin, the lesion in a new view, then the artifacts in optical order."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from skingenbench.services.data.core.phantom.artifacts import ARTIFACT_DRAWERS, ARTIFACTS_IN_DRAWING_ORDER
from skingenbench.services.data.core.phantom.config import REFERENCE_SHORT_SIDE, LesionParams, PhantomConfig
from skingenbench.services.data.core.phantom.lesion import (
    check_label,
    place_lesion,
    render_lesion,
    sample_lesion_params,
)
from skingenbench.services.data.core.phantom.raster import lab_to_rgb8
from skingenbench.services.data.core.phantom.skin import render_skin


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
    check_label(label)
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

    lab = render_skin(params.skin, width, height)
    lesion_lab, lesion_alpha = render_lesion(params, radius_px=params.radius * short * zoom)
    lesion_mask = place_lesion(lab, lesion_lab, lesion_alpha, centre, angle)
    clean = lab_to_rgb8(lab)

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
        alpha = ARTIFACT_DRAWERS[name](image, rng, config, scale, centre)
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
