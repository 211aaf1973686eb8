from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from skimage.color import rgb2lab
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.imaging.skin_tone import (
    estimate_ita,
    ita_from_lab,
    rgb_to_cielab,
    skin_type_from_ita,
)

# Skin colours from very light to dark (sRGB).
TONES = [(245, 215, 195), (224, 172, 140), (198, 140, 100), (160, 105, 70), (110, 70, 45), (60, 38, 28)]


def reference_ita(rgb: tuple[int, int, int]) -> float:
    """ITA from scikit-image's CIELAB (an implementation independent of OpenCV's)."""
    lightness, _, b_star = rgb2lab(np.array([[rgb]], np.uint8))[0, 0]
    return math.degrees(math.atan((lightness - 50.0) / b_star))


def test_cielab_scaling_matches_scikit_image():
    rgb = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    ours, theirs = rgb_to_cielab(rgb), rgb2lab(rgb)
    assert ours.shape == rgb.shape and ours.dtype == np.float32
    assert np.abs(ours - theirs).max() < 1.5  # OpenCV's 8-bit Lab is quantised


@pytest.mark.parametrize("tone", TONES)
def test_uniform_skin_ita(tone):
    image = np.full((32, 32, 3), tone, np.uint8)
    assert estimate_ita(image) == pytest.approx(reference_ita(tone), abs=1.0)


@pytest.mark.parametrize("tone", TONES[:5])
def test_ita_recovered_around_a_lesion_with_hair(tone):
    rng = np.random.default_rng(1)
    image = np.clip(np.full((128, 128, 3), tone, np.float32) + rng.normal(0, 4, (128, 128, 1)), 0, 255)
    lesion = np.zeros((128, 128), np.uint8)
    cv2.circle(lesion, (64, 64), 35, 1, -1)
    hair = np.zeros((128, 128), np.uint8)
    for y in range(10, 128, 16):
        cv2.line(hair, (0, y), (127, y + 20), 1, 2)
    image[lesion > 0] = (40, 20, 60)
    image[hair > 0] = (20, 15, 10)
    image = image.astype(np.uint8)
    ita = estimate_ita(image, lesion_mask=lesion > 0, hair_mask=hair > 0)
    assert ita == pytest.approx(reference_ita(tone), abs=3.0)


def test_masks_matter_when_most_pixels_are_not_skin():
    image = np.full((64, 64, 3), TONES[1], np.uint8)
    lesion = np.zeros((64, 64), bool)
    lesion[:, :40] = True  # the lesion covers most of the view
    image[lesion] = (60, 30, 20)
    assert estimate_ita(image, lesion_mask=lesion) == pytest.approx(reference_ita(TONES[1]), abs=1.0)
    assert estimate_ita(image) < 0  # unmasked, the median pixel is lesion


def test_too_few_skin_pixels_gives_none():
    image = np.full((10, 10, 3), TONES[0], np.uint8)
    assert estimate_ita(image, dark_mask=np.ones((10, 10), bool)) is None


def test_ita_formula_and_edge_cases():
    assert float(ita_from_lab(50.0, 10.0)) == 0.0
    assert float(ita_from_lab(60.0, 10.0)) == pytest.approx(45.0)
    assert float(ita_from_lab(80.0, 0.0)) == 90.0  # b* = 0 stays defined


@pytest.mark.parametrize(
    ("ita", "category"),
    [
        (70.0, "very_light"),
        (55.01, "very_light"),
        (55.0, "light"),
        (41.5, "light"),
        (41.0, "intermediate"),
        (28.5, "intermediate"),
        (20.0, "tan"),
        (10.0, "brown"),
        (-29.9, "brown"),
        (-30.0, "dark"),
        (-80.0, "dark"),
    ],
)
def test_skin_type_categories(ita, category):
    assert skin_type_from_ita(ita) == category


def test_skin_type_refuses_nan():
    with pytest.raises(InvalidArgument):
        skin_type_from_ita(float("nan"))


def per_pixel_median_ita(rgb: np.ndarray, skin: np.ndarray) -> float:
    """The direct definition: every skin pixel to CIELAB, its ITA, the median (what the table replaces)."""
    lab = rgb_to_cielab(rgb[skin][:, None, :])[:, 0, :]
    return float(np.median(ita_from_lab(lab[:, 0], lab[:, 2])))


@pytest.mark.parametrize("seed", range(6))
def test_table_ita_is_the_per_pixel_median_exactly(seed):
    rng = np.random.default_rng(seed)
    height, width = rng.integers(9, 90, 2)
    base = rng.integers(0, 256, 3)  # a skin-like mean plus spread, and some fully random pixels
    image = np.clip(base + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
    image[rng.random((height, width)) < 0.2] = rng.integers(0, 256, 3)
    lesion = rng.random((height, width)) < 0.3
    for mask in (None, lesion):
        skin = np.ones((height, width), bool) if mask is None else ~mask
        if skin.sum() >= 64:
            assert estimate_ita(image, lesion_mask=mask) == per_pixel_median_ita(image, skin)
    odd = np.zeros((height, width), bool)
    odd.flat[: height * width - 65] = True  # 65 skin pixels: an odd count, the median is one pixel
    assert estimate_ita(image, lesion_mask=odd) == per_pixel_median_ita(image, ~odd)
