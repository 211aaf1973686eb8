"""The images a generator trains on: the items of a training manifest, checked against the split rule, loaded
as square uint8 arrays with their class index, and for a conditional backend paired with semantic maps.

Training data rule (DESIGN.md, science rules: a generator never sees evaluation images). Every item of
the requested classes in the named manifest must carry ``split == "train"``; one val, test or unsplit
item of those classes refuses the whole request with FAILED_PRECONDITION rather than being filtered
out, so a caller who passed the wrong manifest finds out instead of training on a silently different
set. Items of other classes are ignored whatever their split. Callers pass a train-only manifest,
e.g. the preprocessing output of ``splits: ["train"]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from skingenbench.services.core.errors import FailedPrecondition
from skingenbench.services.core.manifest import Item, Manifest
from skingenbench.services.generation.core.backend import GeneratorBackend
from skingenbench.services.platform.manifest_io import read_item, read_verified
from skingenbench.services.platform.store import ObjectStore


def select_training_items(manifest: Manifest, classes: list[str], uri: str = "") -> list[Item]:
    """The items a generator trains on; refuses the manifest if any item of the classes is not train."""
    chosen = [item for item in manifest.items if item.label in classes]
    leaking = [item for item in chosen if item.split != "train"]
    if leaking:
        by_split: dict[str, int] = {}
        for item in leaking:
            by_split[item.split or "(none)"] = by_split.get(item.split or "(none)", 0) + 1
        counts = ", ".join(f"{n} {s}" for s, n in sorted(by_split.items()))
        raise FailedPrecondition(
            f"the training manifest {uri} holds {counts} item(s) of {'+'.join(classes)} outside the train "
            "split; generators are trained on training-split items only",
            hint="pass a train-only manifest, e.g. preprocess with splits=['train']",
            split_counts=counts,
        )
    if not chosen:
        raise FailedPrecondition(f"the training manifest {uri} has no train items of {'+'.join(classes)}")
    return chosen


# -- the training job -------------------------------------------------------------------------------------
def load_training_images(
    store: ObjectStore,
    items: list[Item],
    resolution: int,
    classes: list[str],
    check: Callable[[], None] = lambda: None,
) -> list[tuple[np.ndarray, int]]:
    """(image, class index) per item: uint8 [R, R, 3] (hash-checked; square images only, resized when needed)
    and the index of the item's label in ``classes`` (the plan's sorted classes, the model's class order).

    The index is what a class-conditional backend embeds, so it must name the item's class, not its position.
    """
    import cv2
    from skingenbench.services.core.imaging.decoding import ImageDecodeError, decode_image

    index_of = {label: index for index, label in enumerate(classes)}
    dataset = []
    for item in items:
        check()
        if item.label not in index_of:  # select_training_items only picks items of ``classes``
            raise FailedPrecondition(
                f"training item {item.key} has label {item.label!r}, not one of the "
                f"model's classes {', '.join(classes)}"
            )
        try:
            image = decode_image(read_item(store, item))
        except ImageDecodeError as exc:  # the job fails on this item: say which one, so it can be fixed
            raise ImageDecodeError(
                exc.reason,
                f"training item {item.key} (image {item.image_id or '?'}) cannot be decoded: {exc.message}",
                hint=exc.hint or "fix or drop the item, e.g. re-run preprocessing on its manifest",
                key=item.key,
            ) from None
        height, width = image.shape[:2]
        if height != width:
            raise FailedPrecondition(
                f"training item {item.key} is {width}x{height}; generators train on square images",
                hint="train on a preprocessed manifest (its images are square)",
            )
        if height != resolution:
            interpolation = cv2.INTER_AREA if height > resolution else cv2.INTER_CUBIC
            image = cv2.resize(image, (resolution, resolution), interpolation=interpolation)
        dataset.append((np.ascontiguousarray(image), index_of[item.label]))
    return dataset


def conditional_training_set(
    store: ObjectStore, backend: GeneratorBackend, items: list[Item], dataset: list[tuple[np.ndarray, int]]
) -> list[tuple[Any, ...]]:
    """A conditional backend (DermGAN) trains on (image, class, semantic map): the map comes from the
    item's lesion mask and skin tone, which the preprocessing service measured."""
    from skingenbench.services.core.imaging.decoding import decode_mask

    examples = []
    for (image, _), item in zip(dataset, items, strict=True):
        entry = item.objects.get("mask_lesion")
        if entry is None:
            raise FailedPrecondition(
                f"training item {item.key} has no lesion mask; {backend.name} needs one",
                hint="train on a manifest from the preprocessing service",
            )
        mask = decode_mask(read_verified(store, entry.key, entry.sha256))
        examples.append((image, mask, item.meta.get("ita_degrees"), item.label))
    conditional, _skipped = backend.training_set(examples)
    return conditional
