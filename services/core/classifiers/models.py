"""The five classifiers of the reference study, built with timm, and their config profiles.

SkinGenBench (arXiv 2512.17585) fine-tunes ResNet-18, ResNet-50, VGG-16, EfficientNet-B0 and ViT-B/16
from ImageNet weights with the head replaced: SGD (momentum 0.9, weight decay 1e-4), lr 1e-3 for
30 epochs, x0.1 at epochs 15 and 25, batch 64, RandomResizedCrop(224) + flip for training,
Resize(256) + CenterCrop(224) for evaluation, unweighted cross-entropy. That is the ``paper``
profile. ``tiny`` is the same architecture at a small input (CNNs crop 56 from 64; ViT-B/16 needs a
multiple of its 16-pixel patch, so it crops 64 from 72 and is built with ``img_size=64``), batch 16,
two epochs: seconds on a CPU, for tests and the demo.

Pretrained weights (DESIGN.md, rule 8): ``pretrained="auto"`` loads a local file when one is given
(a request's weights object, else ``$SKINGENBENCH_WEIGHTS_DIR/<name>.safetensors`` or ``.pth``) and
otherwise starts from random init; ``"file"`` insists on a file; ``"hub"`` downloads timm's weights
and is refused while ``HF_HUB_OFFLINE`` is set; ``"none"`` is always random init. What happened is
returned as a ``pretrained`` record that the training result carries.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.errors import DataIntegrityError, FailedPrecondition, InvalidArgument
from skingenbench.services.core.registry import Registry

CLASSIFIERS = Registry("classifier")
WEIGHTS_DIR_ENV = "SKINGENBENCH_WEIGHTS_DIR"
WEIGHTS_SUFFIXES = (".safetensors", ".pth")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRETRAINED_MODES = ("auto", "file", "hub", "none")
OPTIMIZERS = ("sgd", "adamw")
SELECTION_METRICS = ("macro_f1", "balanced_accuracy")
MIN_LOADED_FRACTION = 0.8  # of the backbone's tensors; below it the file is for another architecture


@dataclass
class ClassifierConfig:
    """Everything that shapes a training run besides the data and the seed."""

    image_size: int = 224  # crop side for training and evaluation (ViT: its img_size)
    resize_size: int = 256  # evaluation: resize the shorter side, then centre-crop image_size
    crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop's area range (torchvision's default)
    hflip: bool = True
    epochs: int = 30
    batch_size: int = 64
    eval_batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    lr_milestones: tuple[int, ...] = (15, 25)  # epochs after which the lr is multiplied by lr_gamma
    lr_gamma: float = 0.1
    class_weighted_loss: bool = False  # weights n / (C * n_c): an option, not the reference's choice
    selection_metric: str = "macro_f1"  # on the val split, the epoch whose weights are kept
    amp: bool = True  # bf16 autocast, CUDA only
    channels_last: bool = True  # CUDA only
    pretrained: str = "auto"
    hub_tag: str = ""  # timm pretrained tag for pretrained="hub"; empty: the model's default
    loader_threads: int = 2  # decode and transform threads (0: in the training thread)

    def validate(self) -> None:
        # The checks below refuse anything but a pair; the cast tells mypy so.
        self.crop_scale = cast("tuple[float, float]", tuple(float(v) for v in self.crop_scale))
        self.lr_milestones = tuple(int(v) for v in self.lr_milestones)
        checks = [
            (self.image_size >= 16, f"image_size must be >= 16, got {self.image_size}"),
            (
                self.resize_size >= self.image_size,
                f"resize_size ({self.resize_size}) must be >= image_size ({self.image_size})",
            ),
            (
                len(self.crop_scale) == 2 and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1,
                f"crop_scale must be (low, high) with 0 < low <= high <= 1, got {self.crop_scale}",
            ),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (self.batch_size >= 2, f"batch_size must be >= 2 (batch norm), got {self.batch_size}"),
            (self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}"),
            (
                self.lr > 0 and self.weight_decay >= 0 and 0 <= self.momentum < 1,
                "lr must be > 0, weight_decay >= 0 and momentum in [0, 1)",
            ),
            (
                list(self.lr_milestones) == sorted(set(self.lr_milestones))
                and all(m > 0 for m in self.lr_milestones),
                f"lr_milestones must be increasing positive epochs, got {list(self.lr_milestones)}",
            ),
            (0 < self.lr_gamma <= 1, f"lr_gamma must be in (0, 1], got {self.lr_gamma}"),
            (
                self.selection_metric in SELECTION_METRICS,
                f"selection_metric must be one of {SELECTION_METRICS}, got {self.selection_metric!r}",
            ),
            (
                self.pretrained in PRETRAINED_MODES,
                f"pretrained must be one of {PRETRAINED_MODES}, got {self.pretrained!r}",
            ),
            (0 <= self.loader_threads <= 64, f"loader_threads must be in 0..64, got {self.loader_threads}"),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidArgument(message, field="config_json")


@dataclass(frozen=True)
class Architecture:
    timm_name: str
    description: str
    gradcam_layer: str  # module path of Grad-CAM's default target layer
    default_hub_tag: str  # torchvision's ImageNet weights where timm has them, as the reference used
    is_vit: bool = False
    tiny: dict[str, Any] = field(default_factory=dict)


_TINY_CNN = {"image_size": 56, "resize_size": 64}
ARCHITECTURES: dict[str, Architecture] = {
    "resnet18": Architecture("resnet18", "ResNet-18 (He et al. 2016)", "layer4", "tv_in1k", tiny=_TINY_CNN),
    "resnet50": Architecture("resnet50", "ResNet-50 (He et al. 2016)", "layer4", "tv_in1k", tiny=_TINY_CNN),
    # features.29 is the ReLU after conv5_3, before the last max-pool: the usual VGG Grad-CAM layer.
    "vgg16": Architecture(
        "vgg16", "VGG-16 (Simonyan & Zisserman 2015)", "features.29", "tv_in1k", tiny=_TINY_CNN
    ),
    "efficientnet_b0": Architecture(
        "efficientnet_b0", "EfficientNet-B0 (Tan & Le 2019)", "bn2", "ra_in1k", tiny=_TINY_CNN
    ),
    # norm1 of the last block: its patch tokens still carry spatial layout (the class token is read later).
    "vit_base_patch16_224": Architecture(
        "vit_base_patch16_224",
        "ViT-B/16 (Dosovitskiy et al. 2021)",
        "blocks.11.norm1",
        "augreg2_in21k_ft_in1k",
        is_vit=True,
        tiny={"image_size": 64, "resize_size": 72},
    ),
}


def paper_config() -> ClassifierConfig:
    return ClassifierConfig()


def tiny_config(architecture: Architecture) -> ClassifierConfig:
    # From random init at 64 px, AdamW and milder crops learn in a few epochs where the paper's SGD does not.
    return ClassifierConfig(
        epochs=3,
        batch_size=16,
        eval_batch_size=64,
        optimizer="adamw",
        lr=2e-3,
        crop_scale=(0.5, 1.0),
        lr_milestones=(),
        loader_threads=0,
        **architecture.tiny,
    )


def local_weights_file(name: str, env: dict[str, str] | None = None) -> Path | None:
    """``$SKINGENBENCH_WEIGHTS_DIR/<name>.safetensors`` (or ``.pth``) when it exists."""
    folder = (os.environ if env is None else env).get(WEIGHTS_DIR_ENV, "")
    if not folder:
        return None
    for suffix in WEIGHTS_SUFFIXES:
        path = Path(folder) / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


def _requirements(name: str) -> list[dict[str, Any]]:
    path = local_weights_file(name)
    return [
        {
            "name": "imagenet_weights",
            "description": f"ImageNet weights for {name} in timm's layout (optional: without them training "
            "starts from random init and the result says so)",
            "available": path is not None,
            "hint": f"put {name}.safetensors (or .pth) in ${WEIGHTS_DIR_ENV}, or pass pretrained_weights",
        }
    ]


def _register(name: str, architecture: Architecture) -> None:
    @CLASSIFIERS.register(
        name,
        config_cls=ClassifierConfig,
        profiles={"tiny": tiny_config(architecture), "paper": paper_config()},
        description=f"{architecture.description} through timm.create_model({architecture.timm_name!r})",
        capabilities={
            "gradcam_layer": architecture.gradcam_layer,
            "hub_tag": architecture.default_hub_tag,
            "normalisation": "imagenet",
            "classes": ",".join(CLASSES),
        },
        requirements=lambda: _requirements(name),
    )
    def factory(
        config: ClassifierConfig,
        weights_path: str | os.PathLike | None = None,
        weights_sha256: str = "",
        num_classes: int = len(CLASSES),
    ):
        return build_classifier(name, config, weights_path, weights_sha256, num_classes)


for _name, _architecture in ARCHITECTURES.items():
    _register(_name, _architecture)


def _file_sha256(path: Path) -> str:
    from skingenbench.services.core.hashing import sha256_stream

    with open(path, "rb") as handle:
        return sha256_stream(handle)


def _check_loaded(model, path: Path, classifier_keys: tuple[str, ...]) -> tuple[int, int]:
    """(backbone tensors equal to the file's, backbone tensors): timm loads non-strictly once the head is
    replaced, so a file for another architecture would otherwise pass silently."""
    import torch
    from timm.models import load_state_dict

    source = load_state_dict(str(path))
    backbone = {
        k: v
        for k, v in model.state_dict().items()
        if not k.endswith("num_batches_tracked") and not k.startswith(classifier_keys)
    }
    loaded = sum(
        1
        for k, v in backbone.items()
        if k in source and source[k].shape == v.shape and torch.equal(source[k].to(v.dtype), v)
    )
    return loaded, len(backbone)


def build_classifier(
    name: str,
    config: ClassifierConfig,
    weights_path: str | os.PathLike | None = None,
    weights_sha256: str = "",
    num_classes: int = len(CLASSES),
) -> tuple[Any, dict[str, Any]]:
    """(timm model with a ``num_classes`` head, pretrained record ``{"pretrained", "source", ...}``)."""
    import timm

    architecture = ARCHITECTURES[name]
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if architecture.is_vit:
        kwargs["img_size"] = config.image_size
    path = Path(weights_path) if weights_path else None
    if path is not None and config.pretrained in ("hub", "none"):
        raise InvalidArgument(
            f"a weights file was given but the config says pretrained={config.pretrained!r}",
            hint="drop pretrained_weights, or use pretrained 'auto' or 'file'",
        )
    if path is None and config.pretrained in ("auto", "file"):
        path = local_weights_file(name)
    if path is None and config.pretrained == "file":
        raise FailedPrecondition(
            f"pretrained='file' but no weights file for {name}",
            hint=f"pass pretrained_weights or put {name}.safetensors in ${WEIGHTS_DIR_ENV}",
        )
    if path is not None:
        if not path.is_file():
            raise FailedPrecondition(f"weights file {path} does not exist")
        digest = _file_sha256(path)
        if weights_sha256 and digest != weights_sha256:
            raise DataIntegrityError(
                f"weights file {path.name} has sha256 {digest[:12]}…, expected {weights_sha256[:12]}…"
            )
        try:
            model = timm.create_model(
                architecture.timm_name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
            )
        except RuntimeError as error:  # shape mismatches: weights of another architecture
            raise FailedPrecondition(
                f"weights file {path.name} does not fit {name}: {str(error)[:300]}"
            ) from None
        pretrained_cfg = cast("dict[str, Any]", model.pretrained_cfg)  # timm sets a plain dict
        classifier_keys = tuple(f"{k}." for k in _as_tuple(pretrained_cfg.get("classifier")))
        loaded, total = _check_loaded(model, path, classifier_keys)
        if loaded < MIN_LOADED_FRACTION * total:
            raise FailedPrecondition(
                f"weights file {path.name} set only {loaded} of {total} backbone tensors of {name}",
                hint="the file must use timm's parameter names for this model",
            )
        return model, {
            "pretrained": True,
            "source": "file",
            "file": path.name,
            "sha256": digest,
            "loaded_tensors": loaded,
            "backbone_tensors": total,
        }
    if config.pretrained == "hub":
        if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
            raise FailedPrecondition(
                f"pretrained='hub' asks to download {name} weights, but HF_HUB_OFFLINE is set",
                hint="unset HF_HUB_OFFLINE on a machine that is online, or give a local file",
            )
        tag = config.hub_tag or architecture.default_hub_tag
        model = timm.create_model(f"{architecture.timm_name}.{tag}", pretrained=True, **kwargs)
        return model, {"pretrained": True, "source": "hub", "tag": f"{architecture.timm_name}.{tag}"}
    return timm.create_model(architecture.timm_name, pretrained=False, **kwargs), {
        "pretrained": False,
        "source": "random init",
    }


def _as_tuple(value: Any) -> tuple[str, ...]:
    if not value:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def create_classifier(
    name: str, profile: str = "paper", overrides: dict[str, Any] | None = None, **kwargs: Any
) -> tuple[Any, dict[str, Any], ClassifierConfig]:
    """(model, pretrained record, config) from a registered name, a profile and config overrides."""
    config = CLASSIFIERS.config(name, profile, overrides)
    model, pretrained = CLASSIFIERS.get(name).factory(config, **kwargs)
    return model, pretrained, config


def config_from_dict(data: dict[str, Any]) -> ClassifierConfig:
    """The inverse of ``dataclasses.asdict`` (as stored in a checkpoint); unknown keys are refused."""
    from skingenbench.services.core.registry import config_from_dict as build

    return build(ClassifierConfig, None, data)


def config_dict(config: ClassifierConfig) -> dict[str, Any]:
    data = dataclasses.asdict(config)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
