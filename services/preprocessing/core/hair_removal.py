"""DullRazor-style hair removal.

After Lee, Ng, Gallagher, Coldman & McLean (1997), "DullRazor: A software approach to hair removal
from images", Computers in Biology and Medicine 27(6):533-543: hair is a thin dark structure, so a
grayscale *closing* with a line longer than the hair is wide fills it in, and the difference between
the closing and the image (the morphological black-hat) is large on hair and near zero on skin and
on lesions wider than the line. As in the original, closings along several orientations are
combined (their maximum), so a hair is caught whatever its direction. Thresholding gives a hair
mask; components too short to be hair (pores, dots of pigment) are dropped and the rest dilated to
cover the hair's soft edge. The masked pixels are then filled by inpainting -- Telea (2004), "An
image inpainting technique based on the fast marching method", or Bertalmio, Bertozzi & Sapiro
(2001), "Navier-Stokes, fluid dynamics, and image and video inpainting" -- instead of DullRazor's
bilinear interpolation along the hair's normal, which leaves streaks where hairs cross.

All sizes are fractions of the image's shorter side, so the same parameters behave the same at
600x450 and at 256x256.
"""

from __future__ import annotations

import functools
import math

import cv2
import numpy as np
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.imaging.components import label_components
from skingenbench.services.core.imaging.regions import scaled_pixels

INPAINT_METHODS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
BLUR_SIGMA_FRACTION = 0.8 / 450  # pre-detection blur: sigma / short side


@functools.cache
def line_kernel(length: int, angle_degrees: float) -> np.ndarray:
    """A one-pixel-wide line of ``length`` pixels through the centre of a square uint8 kernel (built
    once per length and angle; read-only, as it is shared)."""
    length = length | 1  # odd, so the line has a centre pixel
    kernel = np.zeros((length, length), np.uint8)
    half = (length - 1) / 2
    dx, dy = half * math.cos(math.radians(angle_degrees)), half * math.sin(math.radians(angle_degrees))
    start = (round(half - dx), round(half - dy))
    end = (round(half + dx), round(half + dy))
    cv2.line(kernel, start, end, 1, thickness=1)
    kernel.flags.writeable = False
    return kernel


def dark_line_response(gray: np.ndarray, length: int, orientations: int) -> np.ndarray:
    """Maximum over ``orientations`` evenly spaced line directions of the black-hat of ``gray``: the
    maximum of the closings minus ``gray`` (a closing is never below the image, so this is the maximum
    of the black-hats with one subtraction)."""
    if orientations < 1:
        raise InvalidArgument(f"orientations must be >= 1, got {orientations}", field="orientations")
    closed = np.zeros_like(gray)
    for index in range(orientations):
        kernel = line_kernel(length, 180.0 * index / orientations)
        np.maximum(closed, cv2.morphologyEx(gray, cv2.MORPH_CLOSE, kernel), out=closed)
    return cv2.subtract(closed, gray)


def keep_long_components(mask: np.ndarray, min_length: int) -> np.ndarray:
    """Drop 8-connected components whose bounding box is shorter than ``min_length`` on both sides."""
    components = label_components(mask)
    keep = components.extents() >= min_length
    keep[0] = False  # background
    return components.mask_of(keep)


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    if radius <= 0:
        return mask.astype(bool)
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask.astype(np.uint8), disk) > 0


def detect_hair(
    rgb: np.ndarray,
    kernel_fraction: float = 0.04,
    orientations: int = 4,
    threshold: float = 12.0,
    min_length_fraction: float = 0.05,
) -> np.ndarray:
    """Boolean hair mask (H, W) of a uint8 RGB image; see the module docstring for the method.

    The mask is the hair itself (what ``hair_fraction`` measures and what is compared with ground
    truth); ``remove_hair`` dilates it before inpainting."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    # Skin texture would otherwise pass the threshold. The blur is a fraction of the image, as every
    # other size here: OpenCV's 3x3 default (sigma 0.8) at HAM10000's 450 px short side; at 256 px the
    # downscaling has already averaged the texture, and a full 3x3 blur would widen 2-px hair by half.
    sigma = BLUR_SIGMA_FRACTION * min(rgb.shape[:2])
    gray = cv2.GaussianBlur(gray, (3, 3), sigma)
    length = scaled_pixels(rgb.shape, kernel_fraction, minimum=3)
    candidates = dark_line_response(gray, length, orientations) > threshold
    return keep_long_components(candidates, scaled_pixels(rgb.shape, min_length_fraction, minimum=2))


def inpaint(
    rgb: np.ndarray, mask: np.ndarray, method: str = "telea", radius_fraction: float = 0.005
) -> np.ndarray:
    """Fill ``mask`` from its surroundings (Telea 2004 or Navier-Stokes, Bertalmio et al. 2001)."""
    if method not in INPAINT_METHODS:
        raise InvalidArgument(
            f"unknown inpainting method {method!r}",
            hint=f"choose one of {sorted(INPAINT_METHODS)}",
            field="method",
        )
    if not mask.any():
        return rgb.copy()
    radius = scaled_pixels(rgb.shape, radius_fraction, minimum=1)
    return cv2.inpaint(rgb, mask.astype(np.uint8), radius, INPAINT_METHODS[method])


def remove_hair(
    rgb: np.ndarray,
    kernel_fraction: float = 0.04,
    orientations: int = 4,
    threshold: float = 12.0,
    min_length_fraction: float = 0.05,
    dilation_fraction: float = 0.004,
    inpaint_method: str = "telea",
    inpaint_radius_fraction: float = 0.005,
) -> tuple[np.ndarray, np.ndarray]:
    """(image with hair inpainted, boolean hair mask). The inpainted region is the mask dilated by
    ``dilation_fraction``: it also covers the hair's soft, partly dark edge."""
    hair = detect_hair(rgb, kernel_fraction, orientations, threshold, min_length_fraction)
    region = dilate(hair, scaled_pixels(rgb.shape, dilation_fraction, minimum=0))
    return inpaint(rgb, region, inpaint_method, inpaint_radius_fraction), hair
