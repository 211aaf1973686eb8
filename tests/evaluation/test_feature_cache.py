"""The feature cache: five synthetic sets against one real set extract the real features once; the key
changes with anything that changes the features; bad entries are recomputed, never trusted."""

from __future__ import annotations

import torch
from skingenbench.services.evaluation.core.extractors import FEATURE_EXTRACTORS, ClassifierPreprocess
from skingenbench.services.evaluation.core.metrics import frechet_distance
from skingenbench.services.evaluation.feature_cache import FeatureCache, FeatureKey, image_set_hash

from tests.evaluation.test_extractors import TinyClassifier, noised, phantom_images, tiny_domain_extractor


def _cached(cache: FeatureCache, extractor, name: str, images: list, entries: list[tuple[str, str]]):
    key = FeatureKey.of(
        image_set_hash(entries), extractor.name, extractor.weights_sha256, extractor.preprocessing()
    )
    return cache.get_or_compute(key, lambda: extractor.extract(images))


def _entries(prefix: str, count: int) -> list[tuple[str, str]]:
    return [(f"{prefix}/{i}.png", f"{i:064x}") for i in range(count)]


def test_five_synthetic_sets_against_one_real_set_extract_the_real_features_once(folder_store):
    real = phantom_images(12, seed=0)
    synthetic = {f"gen{i}": noised(phantom_images(6, seed=10 + i), 10.0 * i, seed=i) for i in range(5)}
    cache = FeatureCache(folder_store)
    extractor = tiny_domain_extractor()
    fids = {}
    for name, images in synthetic.items():  # one evaluation per synthetic set, as five separate jobs would do
        real_features, _ = _cached(cache, extractor, "real", real, _entries("real", len(real)))
        fake_features, hit = _cached(cache, extractor, name, images, _entries(name, len(images)))
        assert not hit
        fids[name] = frechet_distance(real_features["penultimate"], fake_features["penultimate"])
    assert extractor.images_extracted == len(real) + 5 * 6  # the real set once, each synthetic set once
    assert (cache.hits, cache.misses) == (4, 6)

    # A fresh process (new cache object, new extractor instance) finds everything in the store.
    again, fresh = FeatureCache(folder_store), tiny_domain_extractor()
    real_features, hit = _cached(again, fresh, "real", real, _entries("real", len(real)))
    fake_features, _ = _cached(again, fresh, "gen3", synthetic["gen3"], _entries("gen3", 6))
    assert hit and fresh.images_extracted == 0
    assert frechet_distance(real_features["penultimate"], fake_features["penultimate"]) == fids["gen3"]
    torch.testing.assert_close(real_features["penultimate"], extractor.extract(real)["penultimate"])


def test_the_key_covers_set_content_weights_and_preprocessing(folder_store):
    cache = FeatureCache(folder_store)
    images = phantom_images(4, seed=1)
    base = tiny_domain_extractor(seed=0)
    _cached(cache, base, "a", images, _entries("a", 4))
    other_weights = tiny_domain_extractor(seed=1)
    _, hit = _cached(cache, other_weights, "a", images, _entries("a", 4))
    assert not hit  # same images, other weights
    other_preprocessing = FEATURE_EXTRACTORS.create(
        "domain", "tiny", classifier=TinyClassifier(0), preprocess=ClassifierPreprocess(40, 32)
    )
    _, hit = _cached(cache, other_preprocessing, "a", images, _entries("a", 4))
    assert not hit
    changed = _entries("a", 4)
    changed[2] = (changed[2][0], "f" * 64)  # one image replaced (its sha256 changed)
    _, hit = _cached(cache, base, "a", images, changed)
    assert not hit
    _, hit = _cached(cache, base, "a", images, list(reversed(_entries("a", 4))))
    assert not hit  # order matters: features are stored per position
    _, hit = _cached(cache, base, "a", images, _entries("a", 4))
    assert hit


def test_a_corrupt_or_foreign_entry_is_recomputed(folder_store):
    cache = FeatureCache(folder_store)
    extractor = tiny_domain_extractor()
    images = phantom_images(3, seed=2)
    key = FeatureKey.of(
        image_set_hash(_entries("c", 3)), extractor.name, extractor.weights_sha256, extractor.preprocessing()
    )
    folder_store.put_bytes(cache.object_key(key), b"not safetensors at all")
    features, hit = cache.get_or_compute(key, lambda: extractor.extract(images))
    assert not hit and features["penultimate"].shape == (3, 16)
    other = FeatureKey.of("0" * 64, extractor.name, extractor.weights_sha256, extractor.preprocessing())
    folder_store.put_bytes(cache.object_key(other), folder_store.get_bytes(cache.object_key(key)))
    assert cache.get(other) is None  # the stored key does not match the requested one
    assert cache.get(key) is not None
