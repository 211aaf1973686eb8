from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.preprocessing.core.geometry import (
    GeometricAugmentation,
    apply_augmentation,
    image_seed,
    resize_image,
    resize_longest_side,
    resize_mask,
    sample_augmentation,
)


def banded_image(height: int = 450, width: int = 600) -> np.ndarray:
    """Mid-grey with a red band in the left 75 px and a blue one in the right 75 px."""
    image = np.full((height, width, 3), 128, np.uint8)
    image[:, :75] = (255, 0, 0)
    image[:, -75:] = (0, 0, 255)
    return image


def test_center_crop_cuts_the_long_side_symmetrically():
    out = resize_image(banded_image(), 256, "center_crop")
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    # 600x450 -> centre 450x450 drops exactly the two 75 px bands.
    assert np.abs(out.astype(int) - 128).max() <= 1


def test_pad_keeps_everything_and_adds_black_bands():
    out = resize_image(banded_image(), 256, "pad")
    band = (600 - 450) // 2 * 256 // 600  # 32 rows top and bottom
    assert out[: band - 1].max() == 0 and out[-band + 1 :].max() == 0
    assert out[128, 2, 0] > 200 and out[128, -3, 2] > 200  # both coloured bands survive


def test_aspect_ratio_is_kept():
    image = np.zeros((300, 600, 3), np.uint8)
    yy, xx = np.mgrid[:300, :600]
    image[(yy - 150) ** 2 + (xx - 300) ** 2 < 100**2] = 255
    for fit in ("center_crop", "pad"):
        disc = resize_image(image, 128, fit)[..., 0] > 127
        rows, cols = np.nonzero(disc)
        assert abs(np.ptp(rows) - np.ptp(cols)) <= 1


def test_downscaling_averages_instead_of_aliasing():
    checker = ((np.indices((512, 512)).sum(axis=0) % 2) * 255).astype(np.uint8)
    out = resize_image(np.dstack([checker] * 3), 100)
    # INTER_AREA averages to mid-grey; nearest-neighbour sampling would leave black/white pixels.
    assert abs(float(out.mean()) - 127.5) < 2 and out.std() < 10


def test_mask_follows_the_image_geometry():
    image = banded_image()
    mask = image[..., 0] == 255
    for fit in ("center_crop", "pad"):
        resized_image, resized_mask = resize_image(image, 64, fit), resize_mask(mask, 64, fit)
        assert resized_mask.dtype == bool
        np.testing.assert_array_equal(resized_mask, resized_image[..., 0] > 190)


def test_unknown_fit_and_bad_size_refused():
    with pytest.raises(InvalidArgument):
        resize_image(banded_image(), 64, "stretch")
    with pytest.raises(InvalidArgument):
        resize_image(banded_image(), 0)


def test_resize_longest_side_never_upscales():
    assert resize_longest_side(banded_image(), 1024).shape == (450, 600, 3)
    assert resize_longest_side(banded_image(), 300).shape == (225, 300, 3)


@settings(max_examples=40, deadline=None)
@given(
    height=st.integers(8, 300),
    width=st.integers(8, 300),
    size=st.integers(8, 128),
    fit=st.sampled_from(["center_crop", "pad"]),
)
def test_resize_shapes_for_any_input(height, width, size, fit):
    image = np.random.default_rng(height * width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = resize_image(image, size, fit)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    mask = resize_mask(image[..., 0] > 127, size, fit)
    assert mask.shape == (size, size) and mask.dtype == bool


def test_image_seeds_are_distinct_and_stable():
    seeds = [image_seed(7, index) for index in range(1000)]
    assert len(set(seeds)) == 1000
    assert seeds[3] == image_seed(7, 3) and image_seed(8, 3) != seeds[3]
    assert all(0 <= seed < 2**63 for seed in seeds)
    with pytest.raises(InvalidArgument):
        image_seed(-1, 0)


def augment(image: np.ndarray, seed: int) -> np.ndarray:
    return apply_augmentation(image, sample_augmentation(np.random.default_rng(seed)))


def test_augmentation_is_deterministic_per_seed_and_independent_of_order():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(6)]
    forward = {i: augment(images[i], image_seed(42, i)) for i in range(6)}
    backward = {i: augment(images[i], image_seed(42, i)) for i in reversed(range(6))}
    for index in range(6):
        np.testing.assert_array_equal(forward[index], backward[index])
    drawn = {sample_augmentation(np.random.default_rng(image_seed(42, i))) for i in range(20)}
    assert len(drawn) == 20  # different images get different transforms


def test_switched_off_options_draw_nothing():
    for seed in range(20):
        drawn = sample_augmentation(np.random.default_rng(seed), 0.0, 0.0, False, 0.0)
        assert drawn == GeometricAugmentation()


def test_switching_one_option_off_does_not_change_the_others():
    full = sample_augmentation(np.random.default_rng(5))
    no_turns = sample_augmentation(np.random.default_rng(5), rotate90=False)
    assert (full.horizontal_flip, full.vertical_flip, full.rotation_degrees) == (
        no_turns.horizontal_flip,
        no_turns.vertical_flip,
        no_turns.rotation_degrees,
    )


def test_image_and_mask_stay_aligned():
    rng = np.random.default_rng(1)
    image = np.zeros((40, 56, 3), np.uint8)
    image[5:20, 8:30] = 255
    mask = image[..., 0] > 0
    for _ in range(10):
        drawn = sample_augmentation(rng, max_rotation_degrees=0.0)
        moved_image, moved_mask = apply_augmentation(image, drawn), apply_augmentation(mask, drawn)
        assert moved_mask.dtype == bool
        np.testing.assert_array_equal(moved_mask, moved_image[..., 0] > 0)


def test_small_rotation_reflects_the_border():
    uniform = np.full((64, 64, 3), 200, np.uint8)
    rotated = apply_augmentation(uniform, GeometricAugmentation(rotation_degrees=13.0))
    assert rotated.min() == 200  # no black wedges in the corners
