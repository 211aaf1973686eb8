"""A manifest's items as classifier inputs, read from the store with every sha256 checked."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from skingenbench.services.classification.core.data import ItemImages
from skingenbench.services.classification.core.inference import item_names, predict_probabilities
from skingenbench.services.core.classifiers.models import ClassifierConfig
from skingenbench.services.core.errors import FailedPrecondition
from skingenbench.services.core.manifest import Item
from skingenbench.services.platform.manifest_io import read_item
from skingenbench.services.platform.store import ObjectStore


class ManifestImages(ItemImages):
    """``ItemImages`` whose bytes come from ``store``."""

    def __init__(self, store: ObjectStore, items: Sequence[Item]) -> None:
        super().__init__(items, lambda item: read_item(store, item))
        self.store = store


def predict_items(
    model: torch.nn.Module,
    config: ClassifierConfig,
    store: ObjectStore,
    items: Sequence[Item],
    device: str = "cpu",
    batch_size: int = 0,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[list[str], list[str], np.ndarray]:
    """(image ids, labels, probabilities [N, C]) of a manifest's items, in the order given."""
    if not items:
        raise FailedPrecondition("no items to predict")
    probs = predict_probabilities(model, ManifestImages(store, items), config, device, batch_size, on_batch)
    return item_names(items), [item.label for item in items], probs
