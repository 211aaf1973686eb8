"""FID, KID, IS and precision/recall: equal to independent NumPy/SciPy implementations of the formulas
and to ``torch_fidelity.calculate_metrics``; ≈ 0 for a set against itself; growing with noise; clear
errors for sets that are too small."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.evaluation.core.extractors import FEATURE_EXTRACTORS, UInt8Images
from skingenbench.services.evaluation.core.metrics import (
    METRICS,
    compute,
    fid_statistics,
    frechet_distance,
    inception_score,
    kernel_distance,
    library_versions,
    precision_recall,
)

from tests.evaluation.test_extractors import (
    noised,
    one_blas_thread,  # noqa: F401 - autouse
    phantom_images,
    write_random_inception_weights,
)

SIGMAS = (8.0, 24.0, 64.0)


# -- independent implementations of the formulas ------------------------------------------------------------
def reference_fid(x: np.ndarray, y: np.ndarray) -> float:
    """Heusel et al. 2017: |mu_x - mu_y|² + Tr(S_x + S_y - 2 (S_x S_y)^½)."""
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    root = linalg.sqrtm(s_x @ s_y).real
    return float(((mu_x - mu_y) ** 2).sum() + np.trace(s_x + s_y - 2 * root))


def reference_mmd2(x: np.ndarray, y: np.ndarray) -> float:
    """Bińkowski et al. 2018: unbiased MMD² with k(a, b) = (a·b / d + 1)³."""
    d, m = x.shape[1], len(x)
    kernel = lambda a, b: (a @ b.T / d + 1.0) ** 3  # noqa: E731
    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    return float(
        (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
        + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
        - 2 * k_xy.sum() / (m * m)
    )


def gaussian_features(seed: int, n: int, d: int = 32, shift: float = 0.0, scale: float = 1.0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return torch.from_numpy(rng.normal(shift, scale, size=(n, d)) @ mixing + shift)


def test_fid_equals_scipy_implementation_of_the_formula():
    real, fake = gaussian_features(0, 400), gaussian_features(1, 300, shift=0.3, scale=1.4)
    expected = reference_fid(real.numpy(), fake.numpy())
    assert frechet_distance(real, fake) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(fid_statistics(real), fid_statistics(fake)) == pytest.approx(expected, rel=1e-6)
    assert abs(frechet_distance(real, real)) < 1e-9


def test_kid_equals_numpy_unbiased_mmd_with_the_cubic_kernel():
    real, fake = gaussian_features(2, 60), gaussian_features(3, 50, shift=0.2)
    # One subset of every image: no sampling involved.
    mean, std = kernel_distance(real[:50], fake, subset_size=50, subsets=1)
    assert mean == pytest.approx(reference_mmd2(fake.numpy(), real[:50].numpy()), rel=1e-6) and std == 0.0
    # Several subsets: the same draws as torch-fidelity (RandomState(seed), synthetic set first).
    mean, std = kernel_distance(real, fake, subset_size=20, subsets=7, seed=11)
    rng = np.random.RandomState(11)
    draws = []
    for _ in range(7):
        f = fake.numpy()[rng.choice(len(fake), 20, replace=False)]
        r = real.numpy()[rng.choice(len(real), 20, replace=False)]
        draws.append(reference_mmd2(f, r))
    assert mean == pytest.approx(np.mean(draws), rel=1e-6) and std == pytest.approx(np.std(draws), rel=1e-6)


def test_inception_score_equals_the_formula():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(40, 10)) * 3
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    expected = np.exp(np.mean(np.sum(p * (np.log(p) - np.log(p.mean(0, keepdims=True))), axis=1)))
    mean, std = inception_score(torch.from_numpy(logits), splits=1)
    assert mean == pytest.approx(expected, rel=1e-9) and std == 0.0
    uniform = inception_score(torch.zeros(20, 10), splits=2)[0]
    assert uniform == pytest.approx(1.0)


def test_precision_recall_of_identical_and_disjoint_sets():
    real = gaussian_features(5, 40)
    assert precision_recall(real, real.clone(), k=3) == (1.0, 1.0, pytest.approx(1.0))
    far = precision_recall(real, real + 100.0, k=3)
    assert far[0] == 0.0 and far[1] == 0.0


@pytest.mark.parametrize(
    ("call", "text"),
    [
        (lambda: frechet_distance(torch.zeros(0, 4), torch.zeros(5, 4)), "empty"),
        (lambda: frechet_distance(torch.zeros(1, 4), torch.zeros(5, 4)), "at least 2"),
        (lambda: frechet_distance(torch.zeros(5, 4), torch.zeros(5, 3)), "different widths"),
        (
            lambda: kernel_distance(torch.zeros(30, 4), torch.zeros(12, 4), subset_size=20),
            "larger than the synthetic set",
        ),
        (lambda: inception_score(torch.zeros(3, 4), splits=10), "at least 10"),
        (lambda: precision_recall(torch.zeros(3, 4), torch.zeros(30, 4), k=3), "at least 4"),
    ],
)
def test_too_small_sets_get_messages_with_the_numbers(call, text):
    with pytest.raises(InvalidArgument, match=text) as error:
        call()
    if "subset" in text:
        assert "20" in str(error.value) and "12" in str(error.value)


def test_registry_lists_metrics_with_both_profiles_and_refuses_unknown_options():
    assert {"fid", "kid", "isc", "prc", "domain_fid", "domain_kid"} <= set(METRICS.names())
    assert (
        METRICS.config("kid", "paper").subset_size == 1000 and METRICS.config("kid", "tiny").subset_size == 16
    )
    with pytest.raises(InvalidArgument, match="subset_sise"):
        METRICS.config("kid", "paper", {"subset_sise": 10})
    assert set(library_versions()) >= {"torch", "torch-fidelity", "scipy"}
    # The real-vs-real baseline is opt-in (a second Fréchet distance per N): off unless asked, and a boolean.
    for metric in ("fid", "domain_fid"):
        assert METRICS.config(metric, "paper").real_baseline is False
        assert METRICS.config(metric, "tiny", {"real_baseline": True}).real_baseline is True
        with pytest.raises(InvalidArgument, match="real_baseline must be true or false"):
            METRICS.config(metric, "paper", {"real_baseline": "yes"})


# -- on Inception features (random kaiming weights) ------------------------------------------------------------
@pytest.fixture(scope="module")
def inception(tmp_path_factory):
    path = write_random_inception_weights(tmp_path_factory.mktemp("weights"))
    extractor = FEATURE_EXTRACTORS.create("inception-v3-compat", "tiny", weights=path)
    base = phantom_images(6, seed=7)
    sets = {0.0: base, **{s: noised(base, s, seed=int(s)) for s in SIGMAS}}
    features = {s: extractor.extract(images) for s, images in sets.items()}
    return path, extractor, sets, features


def test_fid_and_kid_are_zero_for_a_set_against_itself_and_grow_with_noise(inception):
    _, extractor, _, features = inception
    layer = extractor.layers["fid"]
    fids = [frechet_distance(features[0.0][layer], features[s][layer]) for s in (0.0, *SIGMAS)]
    assert abs(fids[0]) < 1e-3 * fids[1]  # ≈ 0: sqrt of ~0 eigenvalues leaves ~1e-6 of rounding
    assert fids == sorted(fids) and fids[1] > 0, fids
    kids = [
        kernel_distance(features[0.0][layer], features[s][layer], subset_size=5, subsets=20)[0]
        for s in (0.0, *SIGMAS)
    ]
    assert abs(kids[0]) < 0.1 * kids[2] and kids[1:] == sorted(kids[1:]), kids
    identical = compute("prc", METRICS.config("prc", "tiny"), features[0.0], features[0.0], extractor.layers)
    assert identical["precision"] == 1.0 and identical["recall"] == 1.0
    noisy = compute("prc", METRICS.config("prc", "tiny"), features[0.0], features[64.0], extractor.layers)
    assert noisy["precision"] < 1.0
    isc = compute("isc", METRICS.config("isc", "tiny"), features[0.0], features[0.0], extractor.layers)
    assert isc["isc_mean"] >= 1.0 and isc["isc_splits"] == 2


def test_numbers_equal_torch_fidelity_calculate_metrics_on_the_same_images(inception):
    import torch_fidelity

    path, extractor, sets, features = inception
    layer = extractor.layers["fid"]
    theirs = torch_fidelity.calculate_metrics(
        input1=UInt8Images(sets[24.0]),
        input2=UInt8Images(sets[0.0]),
        cuda=False,
        fid=True,
        kid=True,
        prc=True,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(path),
        kid_subset_size=5,
        kid_subsets=10,
        batch_size=6,
        cache=False,
        save_cpu_ram=True,
        verbose=False,
    )
    ours_kid = kernel_distance(
        features[0.0][layer], features[24.0][layer], subset_size=5, subsets=10, seed=2020
    )
    ours_prc = precision_recall(features[0.0][layer], features[24.0][layer], k=3)
    assert frechet_distance(features[0.0][layer], features[24.0][layer]) == pytest.approx(
        theirs["frechet_inception_distance"], rel=1e-4
    )
    assert ours_kid[0] == pytest.approx(theirs["kernel_inception_distance_mean"], rel=1e-3, abs=1e-7)
    assert (ours_prc[0], ours_prc[1]) == (theirs["precision"], theirs["recall"])
