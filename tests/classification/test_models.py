"""The classifier registry: every model builds at its tiny size, trains a step and gives a Grad-CAM map;
weights load only from local files (checked to be the weights actually loaded); the classifier file
round-trips."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from skingenbench.services.classification.core.gradcam import gradcam_overlays
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.classifiers.checkpoint import (
    classifier_from_bytes,
    classifier_to_bytes,
    read_metadata,
)
from skingenbench.services.core.classifiers.models import (
    CLASSIFIERS,
    WEIGHTS_DIR_ENV,
    build_classifier,
    create_classifier,
)
from skingenbench.services.core.errors import (
    DataIntegrityError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from skingenbench.services.core.hashing import sha256_bytes

torch.set_num_threads(1)
FIVE = ("efficientnet_b0", "resnet18", "resnet50", "vgg16", "vit_base_patch16_224")


def test_the_registry_holds_the_five_reference_models_with_both_profiles():
    assert CLASSIFIERS.names() == sorted(FIVE)
    for name in FIVE:
        described = CLASSIFIERS.describe(name)
        assert set(described["profiles"]) == {"tiny", "paper"}
        assert described["requirements"][0]["name"] == "imagenet_weights"


def test_the_paper_profile_is_the_reference_recipe():
    config = CLASSIFIERS.config("resnet50", "paper")
    assert (config.optimizer, config.lr, config.momentum, config.weight_decay) == ("sgd", 1e-3, 0.9, 1e-4)
    assert (config.epochs, config.lr_milestones, config.lr_gamma) == (30, (15, 25), 0.1)
    assert (config.batch_size, config.image_size, config.resize_size) == (64, 224, 256)
    assert (config.crop_scale, config.hflip) == ((0.08, 1.0), True)
    assert config.class_weighted_loss is False
    assert config.pretrained == "file"  # the reference's ImageNet weights, or an error naming the file
    assert (config.mean, config.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


@pytest.mark.parametrize("name", FIVE)
def test_each_tiny_model_builds_trains_a_step_and_explains(name):
    torch.manual_seed(0)
    model, record, config = create_classifier(name, "tiny", {"pretrained": "none"})
    assert record == {"pretrained": False, "source": "random init", "requested": "none"}
    assert config.image_size <= 64 and config.epochs <= 3
    model.train()
    images = torch.randn(2, 3, config.image_size, config.image_size)
    logits = model(images)
    assert logits.shape == (2, len(CLASSES))
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 3]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0

    # Grad-CAM at the architecture's default layer (ViT: patch tokens reshaped to the grid).
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    (overlay,) = gradcam_overlays(model, name, config, [image])
    assert overlay.cam.shape == (config.image_size, config.image_size) and np.isfinite(overlay.cam).all()
    decoded = cv2.imdecode(np.frombuffer(overlay.png, np.uint8), cv2.IMREAD_COLOR)
    assert decoded.shape == (config.image_size, config.image_size, 3)
    assert 0 <= overlay.target_class < len(CLASSES) and overlay.probs.sum() == pytest.approx(1, abs=1e-5)


def test_vit_is_built_at_the_tiny_image_size():
    model, _, config = create_classifier("vit_base_patch16_224", "tiny", {"pretrained": "none"})
    assert config.image_size == 64 and config.image_size % 16 == 0
    # torchvision's ViT-B/16 (the reference's weights are torchvision's), its position table for a 4x4 grid.
    assert tuple(model.patch_embed.img_size) == (64, 64) and model.patch_embed.grid_size == (4, 4)
    assert model.encoder.pos_embedding.shape[1] == (64 // 16) ** 2 + model.num_prefix_tokens


def test_bad_configs_are_refused():
    with pytest.raises(InvalidArgument, match="no_such_key"):
        CLASSIFIERS.config("resnet18", "tiny", {"no_such_key": 1})
    with pytest.raises(InvalidArgument, match="optimizer"):
        CLASSIFIERS.config("resnet18", "tiny", {"optimizer": "lion"})
    with pytest.raises(InvalidArgument, match="resize_size"):
        CLASSIFIERS.config("resnet18", "tiny", {"resize_size": 32})
    with pytest.raises(InvalidArgument, match="lr_milestones"):
        CLASSIFIERS.config("resnet18", "tiny", {"lr_milestones": [5, 3]})
    with pytest.raises(NotFound):
        CLASSIFIERS.config("alexnet", "tiny")


def _imagenet_file(tmp_path, suffix=".safetensors", seed=1):
    """A random 'ImageNet' resnet18 (1000 classes) saved as a local weights file."""
    import timm

    torch.manual_seed(seed)
    state = timm.create_model("resnet18", num_classes=1000).state_dict()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path, state


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_local_weights_are_the_weights_loaded(tmp_path, suffix):
    path, state = _imagenet_file(tmp_path, suffix)
    config = CLASSIFIERS.config("resnet18", "tiny")
    torch.manual_seed(2)  # a different init: equality below can only come from the file
    model, record = build_classifier("resnet18", config, path, sha256_bytes(path.read_bytes()))
    loaded = model.state_dict()
    backbone = [k for k in loaded if not k.startswith("fc.")]
    assert all(torch.equal(loaded[k], state[k]) for k in backbone)
    assert loaded["fc.weight"].shape == (len(CLASSES), 512)  # the head is replaced, not loaded
    assert record["pretrained"] is True and record["source"] == "file"
    assert record["sha256"] == sha256_bytes(path.read_bytes())
    assert record["loaded_tensors"] == record["backbone_tensors"] > 50


def test_the_weights_dir_is_used_and_reported(tmp_path, monkeypatch):
    path, state = _imagenet_file(tmp_path)
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    assert CLASSIFIERS.describe("resnet18")["requirements"][0]["available"] is True
    assert CLASSIFIERS.describe("resnet50")["requirements"][0]["available"] is False
    model, record, _ = create_classifier("resnet18", "tiny")
    assert record["pretrained"] is True
    assert torch.equal(model.state_dict()["conv1.weight"], state["conv1.weight"])
    _, record, _ = create_classifier("resnet18", "tiny", {"pretrained": "none"})
    assert record["pretrained"] is False


def test_wrong_or_missing_weights_are_refused(tmp_path, monkeypatch):
    path, _ = _imagenet_file(tmp_path)
    config = CLASSIFIERS.config("resnet18", "tiny")
    with pytest.raises(DataIntegrityError, match="sha256"):
        build_classifier("resnet18", config, path, "0" * 64)
    with pytest.raises(InvalidArgument, match="pretrained='none'"):
        build_classifier("resnet18", CLASSIFIERS.config("resnet18", "tiny", {"pretrained": "none"}), path)
    # EfficientNet-B0 is torchvision's module: a file of another network sets none of its tensors.
    with pytest.raises(FailedPrecondition, match="set only 0 of .* backbone tensors of efficientnet_b0"):
        build_classifier("efficientnet_b0", CLASSIFIERS.config("efficientnet_b0", "tiny"), path)
    # Names timm does not know: a non-strict load would silently skip them all.
    renamed = tmp_path / "renamed.safetensors"
    save_file({f"encoder.{k}": v.contiguous() for k, v in _imagenet_file(tmp_path)[1].items()}, str(renamed))
    with pytest.raises(FailedPrecondition, match="set only 0 of"):
        build_classifier("resnet18", config, renamed)
    monkeypatch.delenv(WEIGHTS_DIR_ENV, raising=False)
    with pytest.raises(FailedPrecondition, match="no weights file"):
        create_classifier("resnet18", "tiny", {"pretrained": "file"})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FailedPrecondition, match="HF_HUB_OFFLINE"):
        create_classifier("resnet18", "tiny", {"pretrained": "hub"})


def test_the_classifier_file_round_trips_with_its_metadata():
    torch.manual_seed(0)
    model, _, config = create_classifier("resnet18", "tiny", {"pretrained": "none"})
    model.eval()
    data = classifier_to_bytes(
        model.state_dict(),
        "resnet18",
        config,
        {"classes": list(CLASSES), "seed": 3, "regime": "real", "best_epoch": 2},
    )
    header_end = 8 + int.from_bytes(data[:8], "little")
    metadata = read_metadata(io.BytesIO(data[:header_end]))  # the header alone, no weights
    assert (metadata["classifier"], metadata["seed"], metadata["best_epoch"]) == ("resnet18", 3, 2)
    restored, restored_config, _ = classifier_from_bytes(data)
    assert restored_config == config
    images = torch.randn(3, 3, config.image_size, config.image_size)
    with torch.no_grad():
        assert torch.equal(model(images), restored(images))
    with pytest.raises(FailedPrecondition, match="not a classifier checkpoint"):
        read_metadata(io.BytesIO(b"definitely not safetensors"))
