from __future__ import annotations

import cv2
import numpy as np
import pytest
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.preprocessing.core.quality import mask_iou
from skingenbench.services.preprocessing.core.vignette import (
    detect_dark_field,
    largest_inscribed_rectangle,
    remove_vignette,
)

SKIN, LESION = (224, 172, 140), (90, 55, 40)


def dermoscope_view(height: int = 450, width: int = 600, radius: int = 280, seed: int = 0):
    """Skin and a dark lesion seen through a round aperture of ``radius`` px: outside it the field
    falls off to near black within ~10 px. Returns (image, true dark-field mask, lesion mask)."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), SKIN, np.float32) + rng.normal(0, 3, (height, width, 1))
    lesion = np.zeros((height, width), np.uint8)
    cv2.circle(lesion, (width // 2, height // 2), 60, 1, -1)
    image[lesion > 0] = LESION
    yy, xx = np.mgrid[:height, :width]
    distance = np.hypot(yy - height / 2, xx - width / 2)
    brightness = np.clip(1.0 - (distance - radius) / 10.0, 0.05, 1.0)
    image = np.clip(image * brightness[..., None], 0, 255).astype(np.uint8)
    return image, distance > radius + 5, lesion > 0


def test_dark_field_found_and_lesion_not_part_of_it():
    image, dark_true, lesion = dermoscope_view()
    dark = detect_dark_field(image)
    assert mask_iou(dark_true, dark) > 0.9
    assert not (dark & lesion).any()


def test_hair_running_off_the_edge_is_not_dark_field():
    image, _, lesion = dermoscope_view(radius=2000)
    for x in range(0, 600, 60):
        cv2.line(image, (x, 0), (x + 100, 449), (40, 30, 25), 4)  # dark, thin, touching the border
    assert not detect_dark_field(image).any()


def test_crop_removes_the_dark_field():
    image, dark_true, _ = dermoscope_view()
    result = remove_vignette(image, mode="crop")
    assert result.mode_used == "crop"
    x, y, w, h = result.crop_box
    assert not dark_true[y : y + h, x : x + w].any()
    assert result.image.shape == (h, w, 3)
    # The largest rectangle in a disc of radius r is the square of side r * sqrt(2); here it fits.
    assert w * h > 0.9 * 2 * 280**2
    assert 0.05 < result.dark_fraction < 0.3


def test_fill_paints_the_dark_field_with_skin():
    image, dark_true, lesion = dermoscope_view()
    result = remove_vignette(image, mode="fill")
    assert result.mode_used == "fill" and result.image.shape == image.shape
    filled = result.image[dark_true].astype(float)
    assert np.abs(filled.mean(axis=0) - SKIN).max() < 15
    np.testing.assert_array_equal(result.image[lesion], image[lesion])


def test_small_aperture_falls_back_to_fill():
    image, _, _ = dermoscope_view(radius=120)
    result = remove_vignette(image, mode="crop", min_crop_fraction=0.3)
    assert result.mode_used == "fill" and result.crop_box is None


def test_no_dark_field_leaves_the_image_alone():
    image, _, _ = dermoscope_view(radius=2000)
    for mode in ("crop", "fill"):
        result = remove_vignette(image, mode=mode)
        assert result.mode_used == "none" and result.dark_fraction == 0.0
        np.testing.assert_array_equal(result.image, image)


def test_largest_inscribed_rectangle_of_a_known_shape():
    valid = np.zeros((200, 300), bool)
    valid[30:150, 40:260] = True  # the big one
    valid[160:190, 10:290] = True  # wide but short: smaller area
    x, y, w, h = largest_inscribed_rectangle(valid)
    assert valid[y : y + h, x : x + w].all()
    assert w * h >= 0.9 * 120 * 220


def test_unknown_mode_refused():
    with pytest.raises(InvalidArgument):
        remove_vignette(np.zeros((16, 16, 3), np.uint8), mode="blur")
