"""Feature extractors: local weights only (hash checked, missing file named), torch-fidelity's network run
by its own loop, images of mixed sizes, and the domain extractor on a classifier's penultimate layer.

The helpers at the top are shared by the other evaluation tests (imported from here)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from skingenbench.services.core.errors import (
    DataIntegrityError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from skingenbench.services.evaluation.core.extractors import (
    FEATURE_EXTRACTORS,
    UPSTREAM,
    ClassifierPreprocess,
    create_domain_extractor,
    penultimate_and_logits,
    state_dict_sha256,
)

INCEPTION = "inception-v3-compat"


# -- shared helpers ------------------------------------------------------------------------------------------
def write_random_inception_weights(folder: Path, seed: int = 0) -> Path:
    """torch-fidelity's InceptionV3 with kaiming-initialised weights, saved under the upstream file name.

    The real weights cannot be downloaded here. Default init collapses the features (every image maps to
    nearly the same vector); kaiming init keeps them apart, so distances between sets still order as they
    should. Numbers are of course not comparable with published FIDs."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):  # the weights are set below
            return None

    folder.mkdir(parents=True, exist_ok=True)
    empty = folder / "empty.pth"
    torch.save({}, empty)
    torch.manual_seed(seed)
    network = Unloaded(INCEPTION, ["2048"], feature_extractor_weights_path=str(empty))
    for module in network.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight)
    path = folder / UPSTREAM[INCEPTION].file
    torch.save(network.state_dict(), path)
    return path


def phantom_images(count: int, seed: int = 0, size: int = 64, label: str = "MEL") -> list[np.ndarray]:
    from skingenbench.services.data.core.phantom import PhantomConfig, render_phantom

    rng = np.random.default_rng(seed)
    # The uniform tone draw these metric tests were calibrated on (the default became HAM10000-like in issue 18).
    config = PhantomConfig(width=size, height=size, ita_range=(-30.0, 60.0), ita_bin_weights=None)
    return [render_phantom(label, rng, config).image for _ in range(count)]


def noised(images: list[np.ndarray], sigma: float, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [
        np.clip(i.astype(np.float64) + rng.normal(0, sigma, i.shape), 0, 255).astype(np.uint8) for i in images
    ]


class TinyClassifier(torch.nn.Module):
    """A small CNN with a 16-d penultimate layer and 5 logits: a real domain extractor that runs in
    milliseconds (the feature cache and memorization tests need many extractions, not good features)."""

    def __init__(self, seed: int = 0, classes: int = 5) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(2),
            torch.nn.Flatten(),
        )
        self.neck = torch.nn.Sequential(torch.nn.Linear(64, 16), torch.nn.ReLU())
        self.head = torch.nn.Linear(16, classes)

    def forward(self, x):
        return self.head(self.neck(self.features(x)))


def tiny_domain_extractor(seed: int = 0):
    return FEATURE_EXTRACTORS.create(
        "domain",
        "tiny",
        classifier=TinyClassifier(seed),
        preprocess=ClassifierPreprocess(32, 32),
        class_names=("NV", "BCC", "BKL", "MEL", "SCC"),
    )


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """One BLAS thread: FID's 2048×2048 eigendecomposition and t-SNE are several times slower when
    OpenBLAS threads spin against other work on a shared 2-core machine (50 s instead of 7 s)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> Path:
    return write_random_inception_weights(tmp_path_factory.mktemp("weights"))


# -- weights: local only, checked, named when missing --------------------------------------------------------
@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_missing_weights_name_the_file_and_where_to_put_it(name, tmp_path, monkeypatch):
    monkeypatch.setenv("SKINGENBENCH_WEIGHTS_DIR", str(tmp_path / "weights"))
    with pytest.raises(FailedPrecondition) as error:
        FEATURE_EXTRACTORS.create(name, "tiny")
    text = str(error.value)
    assert UPSTREAM[name].file in text and str(tmp_path / "weights" / UPSTREAM[name].file) in text
    assert UPSTREAM[name].url in error.value.hint and "SKINGENBENCH_WEIGHTS_DIR" in error.value.hint
    listed = FEATURE_EXTRACTORS.describe(name)["requirements"][0]
    assert listed["name"] == UPSTREAM[name].file and listed["available"] is False


def test_inception_file_name_is_torch_fidelitys():
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    assert UPSTREAM[INCEPTION].file == "weights-inception-2015-12-05-6726825d.pth"
    assert URL_INCEPTION_V3.endswith(UPSTREAM[INCEPTION].file)
    assert UPSTREAM[INCEPTION].matches("6726825d" + "0" * 56) and not UPSTREAM[INCEPTION].matches("0" * 64)


def test_weights_from_the_weights_dir_are_hashed_checked_and_recorded(inception_file, monkeypatch):
    monkeypatch.setenv("SKINGENBENCH_WEIGHTS_DIR", str(inception_file.parent))
    digest = hashlib.sha256(inception_file.read_bytes()).hexdigest()
    assert FEATURE_EXTRACTORS.describe(INCEPTION)["requirements"][0]["available"] is True
    extractor = FEATURE_EXTRACTORS.create(INCEPTION, "tiny", {"weights_sha256": digest})
    record = extractor.provenance()
    assert record["weights_sha256"] == digest and record["weights_file"] == inception_file.name
    assert record["weights_upstream"] is False  # a random file is never mistaken for the published one
    assert record["layers"] == {"fid": "2048", "kid": "2048", "prc": "2048", "isc": "logits_unbiased"}
    assert "299" in record["resize"] and "tensorflow1x" in record["resize"]
    with pytest.raises(DataIntegrityError):
        FEATURE_EXTRACTORS.create(INCEPTION, "tiny", {"weights_sha256": "0" * 64})


def test_a_pickled_module_or_a_foreign_state_dict_is_refused(tmp_path):
    pickled = tmp_path / "pickled.pth"
    torch.save(torch.nn.Linear(2, 2), pickled)  # a whole pickled module: not loadable with weights_only
    with pytest.raises(InvalidArgument, match="plain tensor state dict"):
        FEATURE_EXTRACTORS.create(INCEPTION, "tiny", weights=pickled)
    foreign = tmp_path / "foreign.pth"
    torch.save({"weight": torch.zeros(2, 2)}, foreign)
    with pytest.raises(InvalidArgument, match="does not fit"):
        FEATURE_EXTRACTORS.create(INCEPTION, "tiny", weights=foreign)


def test_unknown_extractor_and_bad_config_are_refused():
    with pytest.raises(NotFound, match="inception-v3-compat"):
        FEATURE_EXTRACTORS.create("inception-v4", "tiny")
    with pytest.raises(InvalidArgument, match="no_such_key"):
        FEATURE_EXTRACTORS.config(INCEPTION, "tiny", {"no_such_key": 1})


# -- extraction -----------------------------------------------------------------------------------------------
def test_extraction_is_torch_fidelitys_and_handles_mixed_sizes(inception_file):
    extractor = FEATURE_EXTRACTORS.create(INCEPTION, "tiny", {"batch_size": 4}, weights=inception_file)
    small, large = phantom_images(2, seed=1, size=48), phantom_images(2, seed=2, size=80)
    mixed = [small[0], large[0], small[1], large[1]]
    features = extractor.extract(mixed)  # batches of 4 split by size: (0, 2) and (1, 3)
    assert features["2048"].shape == (4, 2048) and features["logits_unbiased"].shape == (4, 1008)
    assert features["image_hw"].tolist() == [[48, 48], [80, 80]] * 2
    # The same images straight through torch-fidelity's module, one size at a time.
    with torch.no_grad():
        direct = extractor.module(torch.from_numpy(np.stack(large)).permute(0, 3, 1, 2).contiguous())[0]
    torch.testing.assert_close(features["2048"][[1, 3]], direct, rtol=1e-4, atol=1e-6)
    assert extractor.images_extracted == 4
    # Kaiming-initialised weights do not collapse: different images give clearly different features.
    spread = features["2048"].std(dim=0).mean() / features["2048"].abs().mean()
    assert spread > 0.05
    with pytest.raises(InvalidArgument, match="empty"):
        extractor.extract([])


# -- the domain extractor ----------------------------------------------------------------------------------
def test_domain_extractor_reads_the_input_of_the_last_linear_layer():
    extractor = tiny_domain_extractor()
    images = phantom_images(5, seed=3, size=40)
    features = extractor.extract(images)
    model = extractor.module.classifier
    batch = ClassifierPreprocess(32, 32)(torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2))
    with torch.no_grad():
        expected = model.neck(model.features(batch))
        logits = model(batch)
    torch.testing.assert_close(features["penultimate"], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(features["logits"], logits, rtol=1e-5, atol=1e-6)
    assert extractor.weights_sha256 == state_dict_sha256(model)
    assert state_dict_sha256(TinyClassifier(seed=1)) != extractor.weights_sha256
    assert extractor.layers["fid"] == "penultimate" and extractor.layers["isc"] == "logits"


def test_domain_extractor_uses_timms_pre_logits():
    import timm

    model = timm.create_model("resnet18", num_classes=5, pretrained=False).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        features, logits = penultimate_and_logits(model, x)
        torch.testing.assert_close(logits, model(x))
    assert features.shape == (2, 512)
    extractor = create_domain_extractor(
        FEATURE_EXTRACTORS.config("domain", "tiny"), model, ClassifierPreprocess(36, 32)
    )
    assert extractor.extract(phantom_images(2, seed=4, size=36))["penultimate"].shape == (2, 512)


def test_classifier_preprocess_resizes_the_shorter_side_then_crops_the_centre():
    batch = torch.full((1, 3, 40, 80), 255, dtype=torch.uint8)
    out = ClassifierPreprocess(32, 28, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))(batch)
    assert out.shape == (1, 3, 28, 28)
    torch.testing.assert_close(out, torch.ones_like(out))


def test_a_classification_checkpoint_becomes_a_domain_extractor():
    inference = pytest.importorskip("skingenbench.services.core.classifiers.checkpoint")
    from skingenbench.services.core.classifiers import models
    from skingenbench.services.evaluation.core.extractors import domain_extractor_from_checkpoint

    config = models.CLASSIFIERS.config("resnet18", "tiny", {"pretrained": "none"})
    model, _ = models.build_classifier("resnet18", config)
    data = inference.classifier_to_bytes(
        model.state_dict(), "resnet18", config, {"classes": list(models.CLASSES), "seed": 3}
    )
    extractor = domain_extractor_from_checkpoint(data, batch_size=4)
    images = phantom_images(3, seed=5, size=64)
    features = extractor.extract(images)
    # The classification service's own evaluation transform and model give the same penultimate layer.
    from skingenbench.services.classification.core.data import eval_transform

    batch = torch.stack([eval_transform(image, config) for image in images])
    with torch.no_grad():
        expected, logits = penultimate_and_logits(model.eval(), batch)
    torch.testing.assert_close(features["penultimate"], expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(features["logits"], logits, rtol=1e-4, atol=1e-5)
    assert extractor.weights_sha256 == hashlib.sha256(data).hexdigest()
    assert extractor.extra["class_names"] == list(models.CLASSES)
    assert extractor.provenance()["classifier"] == "resnet18" and extractor.provenance()["run"] == {"seed": 3}
    with pytest.raises(FailedPrecondition, match="not a classifier checkpoint"):
        domain_extractor_from_checkpoint(b"\x00" * 16)


class CountingImages:
    """A set that decodes on access (as the evaluation's ImageSet does) and counts every access."""

    def __init__(self, images: list[np.ndarray]) -> None:
        self.images, self.reads = images, [0] * len(images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> np.ndarray:
        self.reads[index] += 1
        return self.images[index]


def test_each_image_is_read_once_per_extraction(inception_file):
    extractor = FEATURE_EXTRACTORS.create(INCEPTION, "tiny", {"batch_size": 6}, weights=inception_file)
    images = CountingImages(phantom_images(3, seed=3, size=40) + phantom_images(4, seed=4, size=48))
    features = extractor.extract(images)
    assert images.reads == [1] * 7  # not once for the sizes and again for the network
    assert features["image_hw"].tolist() == [[40, 40]] * 3 + [[48, 48]] * 4
    domain = tiny_domain_extractor()
    images.reads = [0] * 7
    domain.extract(images)
    assert images.reads == [1] * 7
