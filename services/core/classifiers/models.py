"""The five classifiers of the reference study, their reference ImageNet weights and config profiles.

SkinGenBench (arXiv 2512.17585) fine-tunes ResNet-18, ResNet-50, VGG-16, EfficientNet-B0 and ViT-B/16
from torchvision's ImageNet-1k weights (``IMAGENET1K_V1`` of each) with the head replaced: SGD (momentum
0.9, weight decay 1e-4), lr 1e-3 for 30 epochs, x0.1 at epochs 15 and 25, batch 64, RandomResizedCrop(224)
+ flip for training, Resize(256) + CenterCrop(224) for evaluation, unweighted cross-entropy. That is the
``paper`` profile. ``tiny`` is the same architecture at a small input (CNNs crop 56 from 64; ViT-B/16 needs
a multiple of its 16-pixel patch, so it crops 64 from 72 and is built at ``image_size`` 64), batch 16, two
epochs: seconds on a CPU, for tests and the demo.

Which weights (``ARCHITECTURES``): timm carries torchvision's own ImageNet-1k weights for three of the five
under the ``tv_in1k`` tag (``resnet18.tv_in1k``, ``resnet50.tv_in1k``, ``vgg16.tv_in1k``: the same tensors
as torchvision's ``resnet18-f37072fd.pth`` ...), so those are built with ``timm.create_model`` and load
either file. timm has no copy of torchvision's EfficientNet-B0 or ViT-B/16 weights (its EfficientNet-B0
tags are ``ra_in1k`` and ``ra4_e3600_r224_in1k``, its ViT-B/16 ones ImageNet-21k, AugReg, DINO, MAE, SAM
...: ``timm.list_pretrained``), so those two are torchvision's own modules
(``torchvision_models.py``) loading torchvision's files. Each architecture carries the normalisation its
weights expect (torchvision's ``IMAGENET1K_V1`` transforms: ImageNet mean/std for all five), copied into
the config so that training, evaluation, Grad-CAM and the evaluation service's domain features use it.

Pretrained weights (DESIGN.md, rule 8), from local files only: a request's weights object, else
``$SKINGENBENCH_WEIGHTS_DIR/<name>.safetensors`` or ``.pth``. Nothing downloads unless ``"hub"`` is asked
for (refused while ``HF_HUB_OFFLINE`` is set). ``pretrained``: ``"file"`` insists on a file (the paper
profile's default: a missing file is an error naming it); ``"auto"`` uses a file when there is one and
otherwise random init (the tiny profile's default); ``"none"`` is always random init. Every file is hashed:
checked against the request's sha256, a ``SHA256SUMS`` file in the weights folder (``sha256sum`` format),
or the 8 hex digits torchvision puts in its file names (``resnet50-0676ba61.pth``: the file's sha256
starts with them), and the pretrained record the training result carries says which and what was loaded.
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
SHA256SUMS = "SHA256SUMS"  # in the weights folder, optional: `sha256sum` lines vouching for its files
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
    hub_tag: str = ""  # timm pretrained tag for pretrained="hub"; empty: the reference weights' tag
    # The input normalisation the pretrained weights expect (the architecture's reference weights' own):
    # training, evaluation, Grad-CAM and the domain feature space all read it from here (and checkpoints).
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    loader_threads: int = 2  # decode and transform threads (0: in the training thread)

    def validate(self) -> None:
        # The checks below refuse anything but a pair; the cast tells mypy so.
        self.crop_scale = cast("tuple[float, float]", tuple(float(v) for v in self.crop_scale))
        self.lr_milestones = tuple(int(v) for v in self.lr_milestones)
        self.mean = cast("tuple[float, float, float]", tuple(float(v) for v in self.mean))
        self.std = cast("tuple[float, float, float]", tuple(float(v) for v in self.std))
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
            (
                len(self.mean) == 3 and len(self.std) == 3 and all(s > 0 for s in self.std),
                f"mean and std must be 3 numbers each (std > 0), got {list(self.mean)} and {list(self.std)}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InvalidArgument(message, field="config_json")


@dataclass(frozen=True)
class ReferenceWeights:
    """The ImageNet-1k weights the reference study fine-tuned from: torchvision's ``IMAGENET1K_V1``."""

    torchvision: str  # the torchvision weights enum, e.g. "ResNet50_Weights.IMAGENET1K_V1"
    file: str  # torchvision's file name; the hex after the dash starts the file's sha256
    timm_tag: str = ""  # timm's copy of the same tensors, where timm has one ("resnet50.tv_in1k")
    # torchvision's transforms for these weights (``weights.transforms()``): ImageNet statistics for all five.
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def sha256_prefix(self) -> str:
        return self.file.rsplit("-", 1)[-1].split(".", 1)[0]


@dataclass(frozen=True)
class Architecture:
    builder: str  # "timm" (timm.create_model) or "torchvision" (torchvision_models.py)
    model_name: str  # timm's model name, or torchvision's builder name
    description: str
    gradcam_layer: str  # module path of Grad-CAM's default target layer
    reference: ReferenceWeights
    is_vit: bool = False
    tiny: dict[str, Any] = field(default_factory=dict)


_TINY_CNN = {"image_size": 56, "resize_size": 64}
ARCHITECTURES: dict[str, Architecture] = {
    "resnet18": Architecture(
        "timm",
        "resnet18",
        "ResNet-18 (He et al. 2016)",
        "layer4",
        ReferenceWeights("ResNet18_Weights.IMAGENET1K_V1", "resnet18-f37072fd.pth", "resnet18.tv_in1k"),
        tiny=_TINY_CNN,
    ),
    "resnet50": Architecture(
        "timm",
        "resnet50",
        "ResNet-50 (He et al. 2016)",
        "layer4",
        ReferenceWeights("ResNet50_Weights.IMAGENET1K_V1", "resnet50-0676ba61.pth", "resnet50.tv_in1k"),
        tiny=_TINY_CNN,
    ),
    # features.29 is the ReLU after conv5_3, before the last max-pool: the usual VGG Grad-CAM layer.
    "vgg16": Architecture(
        "timm",
        "vgg16",
        "VGG-16 (Simonyan & Zisserman 2015)",
        "features.29",
        ReferenceWeights("VGG16_Weights.IMAGENET1K_V1", "vgg16-397923af.pth", "vgg16.tv_in1k"),
        tiny=_TINY_CNN,
    ),
    # features.8 is the last 1x1 conv + BN + SiLU (320 -> 1280 channels), timm's conv_head/bn2.
    "efficientnet_b0": Architecture(
        "torchvision",
        "efficientnet_b0",
        "EfficientNet-B0 (Tan & Le 2019)",
        "features.8",
        ReferenceWeights("EfficientNet_B0_Weights.IMAGENET1K_V1", "efficientnet_b0_rwightman-7f5810bc.pth"),
        tiny=_TINY_CNN,
    ),
    # ln_1 of the last encoder block: its patch tokens still carry spatial layout (the class token is read later).
    "vit_base_patch16_224": Architecture(
        "torchvision",
        "vit_b_16",
        "ViT-B/16 (Dosovitskiy et al. 2021)",
        "encoder.layers.encoder_layer_11.ln_1",
        ReferenceWeights("ViT_B_16_Weights.IMAGENET1K_V1", "vit_b_16-c867db91.pth"),
        is_vit=True,
        tiny={"image_size": 64, "resize_size": 72},
    ),
}


def paper_config(architecture: Architecture | None = None) -> ClassifierConfig:
    """The reference recipe; a weights file is required (``pretrained="file"``)."""
    reference = architecture.reference if architecture else ReferenceWeights("", "")
    return ClassifierConfig(pretrained="file", mean=reference.mean, std=reference.std)


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
        mean=architecture.reference.mean,
        std=architecture.reference.std,
        **architecture.tiny,
    )


def weights_candidates(name: str, env: dict[str, str] | None = None) -> list[Path]:
    """Where a local weights file for ``name`` is looked for, in order (empty when the folder is unset)."""
    folder = (os.environ if env is None else env).get(WEIGHTS_DIR_ENV, "")
    return [Path(folder) / f"{name}{suffix}" for suffix in WEIGHTS_SUFFIXES] if folder else []


def local_weights_file(name: str, env: dict[str, str] | None = None) -> Path | None:
    """``$SKINGENBENCH_WEIGHTS_DIR/<name>.safetensors`` (or ``.pth``) when it exists."""
    return next((path for path in weights_candidates(name, env) if path.is_file()), None)


def weights_hint(name: str) -> str:
    """What file to put where: torchvision's file of the reference weights (or timm's copy of it)."""
    reference = ARCHITECTURES[name].reference
    timm = (
        f", or timm's {reference.timm_tag} (model.safetensors) as {name}.safetensors"
        if reference.timm_tag
        else ""
    )
    return (
        f"put torchvision's {reference.file} ({reference.torchvision}) in ${WEIGHTS_DIR_ENV} as {name}.pth"
        f"{timm}; or pass pretrained_weights; or set pretrained 'none' to train from random init (the report "
        "then says so)"
    )


def missing_weights_error(name: str, profile: str = "") -> FailedPrecondition:
    """FAILED_PRECONDITION naming the file(s) a run needs and did not find."""
    candidates = weights_candidates(name)
    where = (
        " and ".join(str(path) for path in candidates)
        if candidates
        else f"${WEIGHTS_DIR_ENV}/{name}.safetensors or .pth (${WEIGHTS_DIR_ENV} is not set)"
    )
    why = f"the {profile} profile needs" if profile else "pretrained='file' needs"
    return FailedPrecondition(
        f"{why} ImageNet weights for {name} and there is no weights file: looked for {where}",
        hint=weights_hint(name),
    )


def _requirements(name: str) -> list[dict[str, Any]]:
    path = local_weights_file(name)
    reference = ARCHITECTURES[name].reference
    return [
        {
            "name": "imagenet_weights",
            "description": f"torchvision's ImageNet-1k weights for {name} ({reference.torchvision}, file "
            f"{reference.file}{', or timm ' + reference.timm_tag if reference.timm_tag else ''}): required by "
            "the paper profile; without them the tiny profile starts from random init and the result says so",
            "available": path is not None,
            "hint": weights_hint(name),
        }
    ]


def _register(name: str, architecture: Architecture) -> None:
    reference = architecture.reference
    builder = (
        f"timm.create_model({architecture.model_name!r})"
        if architecture.builder == "timm"
        else f"torchvision.models.{architecture.model_name}"
    )

    @CLASSIFIERS.register(
        name,
        config_cls=ClassifierConfig,
        profiles={"tiny": tiny_config(architecture), "paper": paper_config(architecture)},
        description=f"{architecture.description} through {builder}, from {reference.torchvision}",
        capabilities={
            "gradcam_layer": architecture.gradcam_layer,
            "builder": architecture.builder,
            "reference_weights": reference.torchvision,
            "reference_file": reference.file,
            "hub_tag": reference.timm_tag,
            "normalisation": f"mean {list(reference.mean)} std {list(reference.std)}",
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


def listed_sha256(path: Path) -> str:
    """The sha256 a ``SHA256SUMS`` file beside ``path`` lists for it (``sha256sum`` format), or ""."""
    sums = path.parent / SHA256SUMS
    if not sums.is_file():
        return ""
    for line in sums.read_text().splitlines():
        parts = line.strip().split()
        if len(parts) == 2 and parts[1].lstrip("*") == path.name:
            return parts[0].lower()
    return ""


def verify_weights_file(name: str, path: Path, expected_sha256: str = "") -> dict[str, Any]:
    """The file's sha256 and how it is known to be the file meant: DATA_LOSS when a stated checksum (the
    request's, or ``SHA256SUMS``) disagrees; ``verified_by`` "" when nothing vouches for it."""
    digest = _file_sha256(path)
    reference = ARCHITECTURES[name].reference
    listed = listed_sha256(path)
    for stated, where in ((expected_sha256, "expected"), (listed, f"{SHA256SUMS} lists")):
        if stated and digest != stated:
            raise DataIntegrityError(
                f"weights file {path.name} has sha256 {digest[:12]}…, {where} {stated[:12]}…"
            )
    is_reference_file = digest.startswith(reference.sha256_prefix)
    verified_by = (
        "request sha256"
        if expected_sha256
        else SHA256SUMS
        if listed
        else f"torchvision file name {reference.file}"
        if is_reference_file
        else ""
    )
    return {
        "sha256": digest,
        "verified_by": verified_by,
        "is_torchvision_reference_file": is_reference_file,
        "reference_weights": reference.torchvision,
        "reference_file": reference.file,
    }


def _vgg_names(state: dict[str, Any]) -> dict[str, Any]:
    """torchvision's VGG classifier names and shapes as timm's (timm's own ``_filter_fn`` does the same when it
    loads the file; here only to compare what was loaded)."""
    out = {}
    for key, value in state.items():
        if key.startswith("classifier.0."):
            key, value = key.replace("classifier.0.", "pre_logits.fc1."), value
            value = value.reshape(-1, 512, 7, 7) if key.endswith("weight") else value
        elif key.startswith("classifier.3."):
            key = key.replace("classifier.3.", "pre_logits.fc2.")
            value = value.reshape(-1, 4096, 1, 1) if key.endswith("weight") else value
        out[key] = value
    return out


def _check_loaded(model, path: Path, classifier_keys: tuple[str, ...], name: str) -> tuple[int, int]:
    """(backbone tensors equal to the file's, backbone tensors): timm loads non-strictly once the head is
    replaced, so a file for another architecture would otherwise pass silently."""
    import torch
    from timm.models import load_state_dict

    source = load_state_dict(str(path))
    if name == "vgg16":
        source = _vgg_names(source)
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


def _build_timm(
    name: str, architecture: Architecture, config: ClassifierConfig, path: Path | None, num_classes: int
) -> tuple[Any, dict[str, Any]]:
    import timm

    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if architecture.is_vit:
        kwargs["img_size"] = config.image_size
    if path is None:
        return timm.create_model(architecture.model_name, pretrained=False, **kwargs), {}
    try:
        model = timm.create_model(
            architecture.model_name, pretrained=True, pretrained_cfg_overlay={"file": str(path)}, **kwargs
        )
    except RuntimeError as error:  # shape mismatches: weights of another architecture
        raise FailedPrecondition(
            f"weights file {path.name} does not fit {name}: {str(error)[:300]}"
        ) from None
    pretrained_cfg = cast("dict[str, Any]", model.pretrained_cfg)  # timm sets a plain dict
    classifier_keys = tuple(f"{k}." for k in _as_tuple(pretrained_cfg.get("classifier")))
    loaded, total = _check_loaded(model, path, classifier_keys, name)
    return model, {"loaded_tensors": loaded, "backbone_tensors": total}


def _hub_model(name: str, architecture: Architecture, config: ClassifierConfig, num_classes: int):
    """The reference weights downloaded (``pretrained="hub"``, only when asked and online)."""
    if os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
        raise FailedPrecondition(
            f"pretrained='hub' asks to download {name} weights, but HF_HUB_OFFLINE is set",
            hint="unset HF_HUB_OFFLINE on a machine that is online, or give a local file",
        )
    if architecture.builder == "torchvision":
        from skingenbench.services.core.classifiers import torchvision_models

        model = torchvision_models.build(architecture.model_name, config.image_size, num_classes)
        torchvision_models.load_reference_from_hub(model, architecture.reference.torchvision)
        return model, {"pretrained": True, "source": "hub", "tag": architecture.reference.torchvision}
    import timm

    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if architecture.is_vit:
        kwargs["img_size"] = config.image_size
    tag = (
        f"{architecture.model_name}.{config.hub_tag}"
        if config.hub_tag
        else architecture.reference.timm_tag or architecture.model_name
    )
    model = timm.create_model(tag, pretrained=True, **kwargs)
    return model, {"pretrained": True, "source": "hub", "tag": tag}


def build_classifier(
    name: str,
    config: ClassifierConfig,
    weights_path: str | os.PathLike | None = None,
    weights_sha256: str = "",
    num_classes: int = len(CLASSES),
) -> tuple[Any, dict[str, Any]]:
    """(model with a ``num_classes`` head, pretrained record ``{"pretrained", "source", "requested", ...}``)."""
    architecture = ARCHITECTURES[name]
    path = Path(weights_path) if weights_path else None
    if path is not None and config.pretrained in ("hub", "none"):
        raise InvalidArgument(
            f"a weights file was given but the config says pretrained={config.pretrained!r}",
            hint="drop pretrained_weights, or use pretrained 'auto' or 'file'",
        )
    if path is None and config.pretrained in ("auto", "file"):
        path = local_weights_file(name)
    if path is None and config.pretrained == "file":
        raise missing_weights_error(name)
    requested = {"requested": config.pretrained}
    if path is not None:
        if not path.is_file():
            raise FailedPrecondition(f"weights file {path} does not exist")
        checked = verify_weights_file(name, path, weights_sha256)
        if architecture.builder == "torchvision":
            from skingenbench.services.core.classifiers import torchvision_models

            model = torchvision_models.build(architecture.model_name, config.image_size, num_classes)
            counts = torchvision_models.load_backbone(model, architecture.model_name, path, name)
        else:
            model, counts = _build_timm(name, architecture, config, path, num_classes)
        if counts["loaded_tensors"] < MIN_LOADED_FRACTION * counts["backbone_tensors"]:
            raise FailedPrecondition(
                f"weights file {path.name} set only {counts['loaded_tensors']} of {counts['backbone_tensors']} "
                f"backbone tensors of {name}",
                hint=f"the file must be {architecture.reference.torchvision} in torchvision's (or timm's) "
                "parameter names",
            )
        return model, {
            "pretrained": True,
            "source": "file",
            "file": path.name,
            **checked,
            **counts,
            **requested,
        }
    if config.pretrained == "hub":
        model, record = _hub_model(name, architecture, config, num_classes)
        return model, {**record, **requested}
    if architecture.builder == "torchvision":
        from skingenbench.services.core.classifiers import torchvision_models

        model = torchvision_models.build(architecture.model_name, config.image_size, num_classes)
    else:
        model, _ = _build_timm(name, architecture, config, None, num_classes)
    return model, {"pretrained": False, "source": "random init", **requested}


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
