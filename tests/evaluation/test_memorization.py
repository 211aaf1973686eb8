"""Memorization: an exact copy of a training image is flagged (distance ≈ 0, SSIM ≈ 1); a different
image is not; the pair grid is a PNG of the closest pairs."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.evaluation.core.memorization import (
    MemorizationConfig,
    closest_pairs,
    closest_pairs_png,
    memorization_report,
    nearest_neighbours,
    pair_ssim,
)

from tests.evaluation.test_extractors import (
    one_blas_thread,  # noqa: F401 - autouse
    phantom_images,
    tiny_domain_extractor,
)


def test_nearest_neighbours_by_cosine_distance():
    references = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    index, distance = nearest_neighbours(np.array([[2.0, 0.1], [0.0, 5.0]]), references)
    assert index.tolist() == [0, 1] and distance[1] == pytest.approx(0.0)
    loo, _ = nearest_neighbours(references, references, exclude_self=True)
    assert loo.tolist() == [2, 2, 0] or loo.tolist() == [2, 2, 1]
    with pytest.raises(InvalidArgument):
        nearest_neighbours(np.zeros((0, 2)), references)


def test_ssim_of_a_copy_is_one_and_of_another_image_is_low():
    a, b = phantom_images(2, seed=1, size=48)
    assert pair_ssim(a, a) == pytest.approx(1.0)
    assert pair_ssim(b, a) < 0.8
    larger = np.asarray(Image.fromarray(a).resize((96, 96)))
    assert pair_ssim(larger, a) > 0.9  # the synthetic image is resized to the training image's size


def test_an_exact_copy_is_flagged_and_a_different_image_is_not():
    training = phantom_images(10, seed=2, size=48)
    fresh = phantom_images(3, seed=99, size=48)
    synthetic = [training[4], fresh[0], training[7], fresh[1], fresh[2]]
    extractor = tiny_domain_extractor()
    train_features = extractor.extract(training)["penultimate"].numpy()
    synth_features = extractor.extract(synthetic)["penultimate"].numpy()
    report = memorization_report(
        synth_features,
        train_features,
        synthetic.__getitem__,
        training.__getitem__,
        MemorizationConfig(distance_threshold=1e-6, ssim_threshold=0.95),
        [f"s{i}" for i in range(5)],
        [f"t{j}" for j in range(10)],
    )
    pairs = report["pairs"]
    assert [p["flagged"] for p in pairs] == [True, False, True, False, False]
    assert pairs[0]["training"] == "t4" and pairs[2]["training"] == "t7"
    assert pairs[0]["cosine_distance"] == pytest.approx(0.0, abs=1e-6) and pairs[0]["ssim"] == pytest.approx(
        1.0
    )
    assert all(pairs[i]["ssim"] < 0.9 for i in (1, 3, 4))
    assert report["share_flagged"] == pytest.approx(0.4)
    assert report["share_closer_than_training_p5"] >= 0.4
    # The default threshold is relative to the training set's own nearest-neighbour distances.
    auto = memorization_report(synth_features, train_features, synthetic.__getitem__, training.__getitem__)
    assert [p["flagged"] for p in auto["pairs"]] == [True, False, True, False, False]
    median = auto["training_nn_distance_quantiles"]["q50"]
    assert (
        auto["distance_threshold"] == pytest.approx(0.1 * median)
        and "median" in auto["distance_threshold_rule"]
    )
    closest = closest_pairs(report, 3)
    assert {p["synthetic"] for p in closest[:2]} == {"s0", "s2"}
    png = closest_pairs_png(closest, synthetic.__getitem__, training.__getitem__, cell=40)
    assert Image.open(io.BytesIO(png)).size == (80, 3 * (40 + 14))
