from __future__ import annotations

import cv2
import numpy as np
import pytest
from skingenbench.services.core.imaging.lesion_segmentation import (
    area_fraction,
    central_component,
    fill_holes,
    segment_lesion,
)
from skingenbench.services.preprocessing.core.quality import mask_dice

SKIN = (224, 172, 140)


def skin_scene(size: int = 256, lesion_colour=(110, 70, 50), hairs: int = 0, seed: int = 0):
    """Textured skin with a soft-edged elliptical lesion a little off centre and, optionally, thin
    dark straight hairs across it. Returns (image, true lesion mask)."""
    rng = np.random.default_rng(seed)
    image = np.full((size, size, 3), SKIN, np.float32) + rng.normal(0, 3, (size, size, 1))
    lesion = np.zeros((size, size), np.uint8)
    cv2.ellipse(lesion, (size // 2 + size // 16, size // 2), (size // 4, size // 5), 30.0, 0, 360, 1, -1)
    alpha = cv2.GaussianBlur(lesion.astype(np.float32), (0, 0), size / 200)[..., None]
    image = image * (1 - alpha) + np.float32(lesion_colour) * alpha
    for _ in range(hairs):
        start, end = rng.integers(0, size, 2), rng.integers(0, size, 2)
        cv2.line(image, tuple(map(int, start)), tuple(map(int, end)), (50, 35, 25), max(1, size // 150))
    return np.clip(image, 0, 255).astype(np.uint8), lesion > 0


@pytest.mark.parametrize(
    ("lesion_colour", "hairs", "min_dice"),
    [((110, 70, 50), 0, 0.95), ((110, 70, 50), 8, 0.85), ((215, 130, 130), 0, 0.9)],  # last: pink, amelanotic
)
def test_dice_on_a_clear_lesion(lesion_colour, hairs, min_dice):
    image, truth = skin_scene(lesion_colour=lesion_colour, hairs=hairs)
    mask = segment_lesion(image)
    assert mask.dtype == bool and mask.shape == truth.shape
    assert mask_dice(truth, mask) > min_dice


def test_plain_skin_gives_an_empty_mask():
    image, _ = skin_scene(lesion_colour=SKIN)
    assert not segment_lesion(image).any()


def test_excluded_dark_corners_are_not_the_lesion():
    image, truth = skin_scene()
    yy, xx = np.mgrid[:256, :256]
    corners = np.hypot(yy - 128, xx - 128) > 170
    image[corners] = 5
    mask = segment_lesion(image, exclude=corners)
    assert not (mask & corners).any() and mask_dice(truth, mask) > 0.9


def test_holes_are_filled():
    image, truth = skin_scene()
    image[120:130, 150:160] = SKIN  # a regression-like pale spot inside the lesion
    assert segment_lesion(image)[120:130, 150:160].all()


def test_central_component_prefers_the_centre_over_a_bigger_corner_blob():
    mask = np.zeros((100, 100), bool)
    mask[40:60, 40:60] = True  # 400 px at the centre
    mask[:25, :25] = True  # 625 px in a corner
    chosen = central_component(mask)
    assert chosen[50, 50] and not chosen[5, 5]


def test_area_fraction():
    mask = np.zeros((10, 10), bool)
    mask[:2] = True
    valid = np.ones((10, 10), bool)
    valid[5:] = False
    assert area_fraction(mask) == pytest.approx(0.2)
    assert area_fraction(mask, valid) == pytest.approx(0.4)
    assert area_fraction(mask, np.zeros((10, 10), bool)) == 0.0


def test_fill_holes_fills_enclosed_background_only():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    mask[8:12, 8:12] = False  # a hole inside the square
    mask[0:3, :] = True
    mask[1, 5:10] = False  # a hole inside the top band
    mask[1, 0] = False  # a gap in the band that touches the border: not a hole
    filled = fill_holes(mask)
    assert filled[8:12, 8:12].all() and filled[1, 5:10].all() and not filled[1, 0]
    assert not filled[16:, :].any()


@pytest.mark.parametrize("seed", range(4))
def test_table_distance_is_the_float32_lab_norm_exactly(seed):
    """The 8-bit-code tables give the float32 CIELAB median and Delta E of the direct computation."""
    from skingenbench.services.core.imaging.lesion_segmentation import colour_distance, skin_reference_colour
    from skingenbench.services.core.imaging.regions import border_band
    from skingenbench.services.core.imaging.skin_tone import rgb_to_cielab

    rng = np.random.default_rng(seed)
    image, _ = skin_scene(size=int(rng.integers(40, 200)), hairs=3, seed=seed)
    image[rng.random(image.shape[:2]) < 0.1] = rng.integers(0, 256, 3)
    valid = rng.random(image.shape[:2]) > 0.2
    lab = rgb_to_cielab(image)
    expected_reference = np.median(lab[border_band(image.shape, 0.1) & valid], axis=0)
    planes = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2LAB))
    reference = skin_reference_colour(planes, valid, 0.1)
    assert reference.dtype == np.float32 and np.array_equal(reference, expected_reference)
    distance = colour_distance(planes, reference)
    assert distance.dtype == np.float32
    assert np.array_equal(distance, np.linalg.norm(lab - expected_reference, axis=2))


def test_the_mask_at_the_analysis_side_matches_the_native_one():
    image, truth = skin_scene(size=256, hairs=4)
    coarse, native = segment_lesion(image), segment_lesion(image, analysis_side=0)
    assert coarse.shape == native.shape == truth.shape
    assert mask_dice(native, coarse) > 0.97 and mask_dice(truth, coarse) > 0.9
    small, _ = skin_scene(size=100)  # below the analysis side: segmented at its own size
    np.testing.assert_array_equal(segment_lesion(small), segment_lesion(small, analysis_side=0))


@pytest.mark.parametrize("seed", range(5))
def test_otsu_threshold_is_scikit_images(seed):
    from skimage.filters import threshold_otsu
    from skingenbench.services.core.imaging.lesion_segmentation import otsu_threshold

    rng = np.random.default_rng(seed)
    values = np.concatenate([rng.gamma(2.0, 3.0, 5000), rng.normal(40, 6, int(rng.integers(10, 3000)))])
    values = values.astype(np.float32 if seed % 2 else np.float64)
    assert otsu_threshold(values) == float(threshold_otsu(values))
