"""Training and evaluation images from manifests: the grid's training regimes, leakage checks, transforms.

Regimes (the reference's pipelines 1-5, DESIGN.md):
- ``real``: the data manifest's train split.
- ``real+synthetic``: plus synthetic images of one class (MEL by default) from generator manifests,
  all of them, ``count`` of them, or ``ratio`` x the real training images of that class; a subset is
  drawn with the run's seed. ``exclude_synthetic`` (image ids or object keys, e.g. the grid's quality
  gate's rejections, ``flows/quality_gate.py``) leaves items out of the pool before the draw.
- ``real+augment``: plus the classically augmented copies (items whose meta has ``augmented_from``)
  of training images from a preprocessing manifest made with ``augment_copies``.

The test split is never trained on: a training selection that shares an image (sha256), a lesion, or
an augmentation parent with the val or test split is refused (FAILED_PRECONDITION), as is a synthetic
item that carries a val or test split.

Transforms follow the reference: RandomResizedCrop + horizontal flip for training, Resize +
CenterCrop for evaluation, normalised with the mean/std the classifier's pretrained weights expect
(``config.mean`` / ``config.std``, from the architecture's reference weights). Training crops are drawn from a generator seeded
by (seed, epoch, position in the epoch), not from torch's global RNG, so an image's augmentation
does not depend on threads, batch boundaries or where a resumed run restarted.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import overload

import numpy as np
import torch
from skingenbench.services.core.classes import CLASS_INDEX, CLASSES
from skingenbench.services.core.classifiers.models import ClassifierConfig
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.core.imaging.decoding import decode_image
from skingenbench.services.core.manifest import Item, Manifest
from torchvision.transforms.v2 import functional as TF

REGIMES = ("real", "real+synthetic", "real+augment")
HELD_OUT = ("val", "test")
CROP_RATIO = (3 / 4, 4 / 3)  # RandomResizedCrop's aspect-ratio range (torchvision's default)


@dataclass
class TrainingSelection:
    train: list[Item]
    val: list[Item]
    counts: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def split_items(manifest: Manifest, split: str) -> list[Item]:
    return [item for item in manifest.items if item.split == split]


def check_labels(items: Sequence[Item], what: str) -> None:
    unknown = sorted({item.label for item in items} - set(CLASSES))
    if unknown:
        raise FailedPrecondition(
            f"{what} has labels outside the study's classes: {unknown}", hint=f"classes: {', '.join(CLASSES)}"
        )


def _lesion(item: Item) -> tuple[str, str] | None:
    return (item.source, item.lesion_id) if item.lesion_id else None


def check_no_leakage(train: Sequence[Item], data: Manifest) -> None:
    """Refuse training items that are, or share a lesion or parent image with, val or test items."""
    # (what is shared, its value): an image's sha256 or id, or a lesion's (source, lesion id); None if unknown.
    key: tuple[str, str | tuple[str, str] | None]
    held: dict[tuple[str, str | tuple[str, str] | None], str] = {}
    for item in data.items:
        if item.split in HELD_OUT:
            for key in (("image", item.sha256), ("lesion", _lesion(item)), ("image id", item.image_id)):
                if key[1]:
                    held[key] = item.split
    for item in train:
        parent = item.meta.get("augmented_from")
        for key in (
            ("image", item.sha256),
            ("lesion", _lesion(item)),
            ("image id", item.image_id),
            ("image id", str(parent) if parent else None),
        ):
            split = held.get(key) if key[1] else None
            if split is not None:
                shown = key[1][1] if isinstance(key[1], tuple) else key[1]  # a lesion by its id
                raise FailedPrecondition(
                    f"training item {item.image_id or item.key} shares its {key[0]} ({shown}) with the "
                    f"{split} split: the {split} split must stay unseen by training",
                    hint="split by lesion (StartSplit) and train on that manifest's train split only",
                )


def _synthetic_pool(manifests: Sequence[Manifest], label: str, exclude: Collection[str] = ()) -> list[Item]:
    """The synthetic items of ``label``, less those named (by image id or key) in ``exclude``; a name
    that matches no synthetic item is refused, so a stale or mistyped exclusion list cannot pass unseen."""
    pool, excluded = [], set(exclude)
    matched: set[str] = set()
    for manifest in manifests:
        for item in manifest.items:
            if item.split in HELD_OUT:
                raise FailedPrecondition(
                    f"synthetic item {item.image_id or item.key} carries split {item.split!r}",
                    hint="synthetic images are training data only; their split must be empty or 'train'",
                )
            names = {item.image_id, item.key} & excluded
            if names:
                matched |= names
            elif item.label == label:
                pool.append(item)
    unknown = sorted(excluded - matched)
    if unknown:
        raise InvalidArgument(
            f"exclude_synthetic names {len(unknown)} item(s) no synthetic manifest holds, e.g. {unknown[0]!r}",
            hint="name synthetic items by their image_id or object key",
        )
    return pool


def synthetic_take(available: int, real_of_class: int, count: int, ratio: float) -> int:
    """How many synthetic images a request asks for: ``count``; else ``ratio`` x real; else all."""
    if count < 0 or ratio < 0 or not math.isfinite(ratio):
        raise InvalidArgument(f"synthetic_count and synthetic_ratio must be >= 0, got {count} and {ratio}")
    wanted = count if count else (round(ratio * real_of_class) if ratio else available)
    if wanted > available:
        raise FailedPrecondition(
            f"{wanted} synthetic images requested, the manifests hold {available}",
            hint="generate more images or lower synthetic_count / synthetic_ratio",
        )
    return wanted


def select_training_items(
    data: Manifest,
    regime: str,
    *,
    synthetic: Sequence[Manifest] = (),
    synthetic_count: int = 0,
    synthetic_ratio: float = 0.0,
    synthetic_label: str = "MEL",
    augmented: Manifest | None = None,
    seed: int = 0,
    exclude_synthetic: Collection[str] = (),
) -> TrainingSelection:
    """The train and val items of a run under ``regime``, checked for leakage into val and test."""
    if regime not in REGIMES:
        raise InvalidArgument(f"unknown regime {regime!r}", hint=f"one of: {', '.join(REGIMES)}")
    if synthetic_label not in CLASS_INDEX:
        raise InvalidArgument(f"synthetic_label {synthetic_label!r} is not a class", hint=", ".join(CLASSES))
    real, val = split_items(data, "train"), split_items(data, "val")
    if not real:
        raise FailedPrecondition(
            "the data manifest has no train split", hint="use a manifest made by StartSplit"
        )
    if not val:
        raise FailedPrecondition(
            "the data manifest has no val split: model selection needs one",
            hint="split with a val fraction > 0",
        )
    extra: list[Item] = []
    counts = {"real": len(real), "synthetic": 0, "augmented": 0, "val": len(val)}
    notes = []
    if regime == "real+synthetic":
        pool = _synthetic_pool(synthetic, synthetic_label, exclude_synthetic)
        take = synthetic_take(
            len(pool), sum(item.label == synthetic_label for item in real), synthetic_count, synthetic_ratio
        )
        chosen = np.sort(np.random.default_rng([seed, 1]).choice(len(pool), size=take, replace=False))
        extra = [pool[i] for i in chosen]
        counts["synthetic"] = len(extra)
        if exclude_synthetic:
            counts["synthetic_excluded"] = len(set(exclude_synthetic))
    elif regime == "real+augment":
        copies = [item for item in (augmented.items if augmented else []) if item.meta.get("augmented_from")]
        extra = [item for item in copies if item.split in ("", "train")]
        if not extra:
            raise FailedPrecondition(
                "the augmented manifest has no augmented training items (meta augmented_from)",
                hint="preprocess the data manifest with augment_copies >= 1",
            )
        counts["augmented"] = len(extra)
        if len(copies) > len(extra):
            notes.append(f"{len(copies) - len(extra)} augmented copies of val/test images were left out")
    train = real + extra
    check_labels(train, "the training selection")
    check_labels(val, "the val split")
    check_no_leakage(train, data)
    return TrainingSelection(train, val, counts, notes)


class ItemImages(Sequence[tuple[np.ndarray, int]]):
    """(uint8 RGB [H, W, 3], class index) per item; ``read`` returns an item's verified bytes."""

    def __init__(self, items: Sequence[Item], read: Callable[[Item], bytes]) -> None:
        self.items = list(items)
        self.read = read

    def __len__(self) -> int:
        return len(self.items)

    @overload
    def __getitem__(self, index: int) -> tuple[np.ndarray, int]: ...
    @overload
    def __getitem__(self, index: slice) -> list[tuple[np.ndarray, int]]: ...
    def __getitem__(self, index: int | slice) -> tuple[np.ndarray, int] | list[tuple[np.ndarray, int]]:
        if isinstance(index, slice):  # as a Sequence does
            return [self[i] for i in range(*index.indices(len(self)))]
        item = self.items[index]
        return decode_image(self.read(item)), CLASS_INDEX.get(item.label, -1)

    def labels(self) -> np.ndarray:
        return np.array([CLASS_INDEX.get(item.label, -1) for item in self.items], dtype=np.int64)


def _normalise(image: torch.Tensor, config: ClassifierConfig) -> torch.Tensor:
    return TF.normalize(image.float() / 255.0, list(config.mean), list(config.std))


def _as_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.require(image, np.uint8, ("C", "W"))).permute(2, 0, 1)


def crop_box(
    height: int, width: int, scale: tuple[float, float], rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop of ``scale`` x the area with aspect in CROP_RATIO
    (the RandomResizedCrop sampling of Szegedy et al. 2015 as torchvision implements it)."""
    area = height * width
    log_low, log_high = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_low, log_high))
        w, h = round(math.sqrt(target * aspect)), round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    aspect = width / height  # fallback: the centred crop of the whole image within the ratio range
    if aspect < CROP_RATIO[0]:
        w, h = width, round(width / CROP_RATIO[0])
    elif aspect > CROP_RATIO[1]:
        h, w = height, round(height * CROP_RATIO[1])
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def train_transform(image: np.ndarray, config: ClassifierConfig, rng: np.random.Generator) -> torch.Tensor:
    """RandomResizedCrop(image_size) + horizontal flip, normalised (``config.mean``/``std``) float [3, S, S]."""
    tensor = _as_tensor(image)
    top, left, h, w = crop_box(tensor.shape[1], tensor.shape[2], config.crop_scale, rng)
    tensor = TF.resized_crop(tensor, top, left, h, w, [config.image_size] * 2, antialias=True)
    if config.hflip and rng.random() < 0.5:
        tensor = TF.horizontal_flip(tensor)
    return _normalise(tensor, config)


def eval_transform(image: np.ndarray, config: ClassifierConfig) -> torch.Tensor:
    """Resize(resize_size) of the shorter side + CenterCrop(image_size), normalised (``config.mean``/``std``)."""
    tensor = TF.resize(_as_tensor(image), config.resize_size, antialias=True)
    return _normalise(TF.center_crop(tensor, [config.image_size] * 2), config)


def denormalise(tensor: torch.Tensor, config: ClassifierConfig | None = None) -> np.ndarray:
    """A normalised [3, S, S] tensor back to float RGB [S, S, 3] in [0, 1] (for Grad-CAM overlays)."""
    config = config or ClassifierConfig()  # the defaults: ImageNet statistics
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    return (tensor.detach().cpu().float() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()
