"""Square resizing and the classic geometric augmentation of the reference study's "GTA" sets.

Resizing keeps the aspect ratio: the image is first cut (``center_crop``) or padded (``pad``) to a
square and only then scaled, so a lesion is never stretched. Downscaling uses ``INTER_AREA`` (it
averages the source pixels a target pixel covers, so thin hair does not alias into dotted lines);
upscaling uses ``INTER_CUBIC``. Masks go through the same geometry: area-averaged, then thresholded.

Augmentation is drawn from a ``numpy`` generator seeded per image with ``image_seed(base, index)``,
so the transform an image gets depends only on the base seed and its index, never on the order or
the number of workers that process the set.

Sizes are fractions of the image (``skingenbench.services.core.imaging.regions``), so one set of
parameters fits 600x450 and 256x256 alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
from skingenbench.services.core.errors import InvalidArgument

FIT_MODES = ("center_crop", "pad")


def image_seed(base_seed: int, index: int) -> int:
    """A 63-bit seed for image ``index`` of a set, independent of every other image's seed."""
    if base_seed < 0 or index < 0:
        raise InvalidArgument("base_seed and index must be non-negative", base_seed=base_seed, index=index)
    return int(np.random.SeedSequence([base_seed, index]).generate_state(1, np.uint64)[0] >> np.uint64(1))


def square_box(height: int, width: int, fit: str) -> tuple[int, int, int, int]:
    """(top, left, side, side) of the square taken from (``center_crop``) or padded around (``pad``,
    negative offsets) an image of the given size."""
    if fit not in FIT_MODES:
        raise InvalidArgument(f"unknown fit {fit!r}", hint=f"choose one of {FIT_MODES}", field="fit")
    side = min(height, width) if fit == "center_crop" else max(height, width)
    return (height - side) // 2, (width - side) // 2, side, side


def _to_square(array: np.ndarray, fit: str, pad_value: float) -> np.ndarray:
    top, left, side, _ = square_box(array.shape[0], array.shape[1], fit)
    if fit == "center_crop":
        return array[top : top + side, left : left + side]
    bottom, right = side - array.shape[0] + top, side - array.shape[1] + left
    return cv2.copyMakeBorder(array, -top, bottom, -left, right, cv2.BORDER_CONSTANT, value=(pad_value,) * 4)


def resize_image(rgb: np.ndarray, size: int = 256, fit: str = "center_crop") -> np.ndarray:
    """uint8 RGB of shape (size, size, 3). ``pad`` fills with black, the colour of the dermoscope's
    own dark field, which vignette handling and ITA already treat as "not skin"."""
    if size < 1:
        raise InvalidArgument(f"size must be >= 1, got {size}", field="size")
    if rgb.shape[:2] == (size, size):  # already the output (cv2.resize would copy it unchanged)
        return rgb.copy()
    square = _to_square(rgb, fit, pad_value=0)
    interpolation = cv2.INTER_AREA if square.shape[0] >= size else cv2.INTER_CUBIC
    return cv2.resize(square, (size, size), interpolation=interpolation)


def resize_mask(
    mask: np.ndarray, size: int = 256, fit: str = "center_crop", threshold: float = 0.5
) -> np.ndarray:
    """Boolean (size, size) mask with the same geometry as ``resize_image``: a target pixel is set
    when at least ``threshold`` of the source area it covers was set."""
    if mask.dtype == bool and mask.shape == (size, size):  # already the output's square and size
        return mask.copy()
    square = _to_square(mask.astype(np.float32), fit, pad_value=0.0)
    interpolation = cv2.INTER_AREA if square.shape[0] >= size else cv2.INTER_LINEAR
    return cv2.resize(square, (size, size), interpolation=interpolation) >= threshold


def resize_longest_side(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (never upscale) so that the longest side is at most ``max_side``, keeping aspect."""
    height, width = rgb.shape[:2]
    scale = max_side / max(height, width)
    if scale >= 1.0:
        return rgb
    target = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, target, interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class GeometricAugmentation:
    """One drawn transform: flips, then ``quarter_turns`` x 90 deg, then a small rotation."""

    horizontal_flip: bool = False
    vertical_flip: bool = False
    quarter_turns: int = 0
    rotation_degrees: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def sample_augmentation(
    rng: np.random.Generator,
    hflip_probability: float = 0.5,
    vflip_probability: float = 0.5,
    rotate90: bool = True,
    max_rotation_degrees: float = 15.0,
) -> GeometricAugmentation:
    # Always draw all four numbers so that switching one option off does not shift the others.
    draws = rng.random(3)
    turns = int(rng.integers(0, 4))
    angle = float(rng.uniform(-1.0, 1.0)) * max_rotation_degrees
    return GeometricAugmentation(
        horizontal_flip=bool(draws[0] < hflip_probability),
        vertical_flip=bool(draws[1] < vflip_probability),
        quarter_turns=turns if rotate90 else 0,
        rotation_degrees=angle,
    )


def apply_augmentation(array: np.ndarray, augmentation: GeometricAugmentation) -> np.ndarray:
    """Apply ``augmentation`` to an image or a mask (bool masks stay bool, via nearest neighbour).

    The small rotation reflects the border (``BORDER_REFLECT_101``) so that no black wedges appear
    that a classifier could learn as a marker of augmented images."""
    is_mask = array.dtype == bool
    out = array.astype(np.uint8) if is_mask else array
    if augmentation.horizontal_flip:
        out = out[:, ::-1]
    if augmentation.vertical_flip:
        out = out[::-1, :]
    out = np.ascontiguousarray(np.rot90(out, augmentation.quarter_turns))
    if augmentation.rotation_degrees:
        height, width = out.shape[:2]
        matrix = cv2.getRotationMatrix2D(
            ((width - 1) / 2, (height - 1) / 2), augmentation.rotation_degrees, 1.0
        )
        interpolation = cv2.INTER_NEAREST if is_mask else cv2.INTER_LINEAR
        out = cv2.warpAffine(
            out, matrix, (width, height), flags=interpolation, borderMode=cv2.BORDER_REFLECT_101
        )
    return out.astype(bool) if is_mask else out
