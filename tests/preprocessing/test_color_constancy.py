from __future__ import annotations

import numpy as np
import pytest
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.preprocessing.core.color_constancy import estimate_illuminant, shades_of_gray

CAST = np.array([1.15, 1.0, 0.7])  # a warm (yellow-orange) illuminant


def colourful_scene(seed: int = 0) -> np.ndarray:
    """Random colour patches under a neutral light: their Minkowski means per channel are equal."""
    rng = np.random.default_rng(seed)
    patches = rng.uniform(40, 200, (12, 16, 3))
    balanced = patches / np.power(np.mean(patches**6, axis=(0, 1)), 1 / 6) * 150  # exactly neutral, p=6
    return np.kron(balanced, np.ones((8, 8, 1))).round().clip(0, 255).astype(np.uint8)


def under(scene: np.ndarray, cast: np.ndarray) -> np.ndarray:
    return np.clip(scene * cast, 0, 255).round().astype(np.uint8)


def test_illuminant_estimate_recovers_the_cast():
    estimate = estimate_illuminant(under(colourful_scene(), CAST))
    np.testing.assert_allclose(estimate, CAST / np.linalg.norm(CAST), atol=0.01)


def test_colour_cast_is_neutralised():
    scene = colourful_scene()
    corrected = shades_of_gray(under(scene, CAST)).astype(float)
    channel_means = corrected.reshape(-1, 3).mean(axis=0)
    cast_means = under(scene, CAST).reshape(-1, 3).mean(axis=0)
    # Before: red/blue ratio ~1.6; after: back to the neutral scene's ratio.
    neutral_ratio = scene[..., 0].mean() / scene[..., 2].mean()
    assert cast_means[0] / cast_means[2] > 1.4 * neutral_ratio
    assert abs(channel_means[0] / channel_means[2] - neutral_ratio) < 0.03
    # Recovered up to the overall brightness, which Shades of Gray cannot know: x |cast| / sqrt(3).
    assert np.abs(corrected - scene * np.linalg.norm(CAST) / np.sqrt(3)).mean() < 1.0


def test_neutral_scene_is_left_alone():
    scene = colourful_scene(seed=2)
    assert np.abs(shades_of_gray(scene).astype(int) - scene).max() <= 1


def test_mask_leaves_dark_field_out_of_the_estimate():
    image = under(colourful_scene(), CAST)
    image[:, :40] = (0, 0, 80)  # a bluish black frame
    keep = np.ones(image.shape[:2], bool)
    keep[:, :40] = False
    np.testing.assert_allclose(estimate_illuminant(image, mask=keep), CAST / np.linalg.norm(CAST), atol=0.01)


def test_power_one_is_gray_world():
    image = under(colourful_scene(), CAST)
    means = image.reshape(-1, 3).mean(axis=0) / 255
    np.testing.assert_allclose(
        estimate_illuminant(image, power=1.0), means / np.linalg.norm(means), atol=1e-6
    )


def test_power_below_one_refused():
    with pytest.raises(InvalidArgument):
        estimate_illuminant(colourful_scene(), power=0.5)
