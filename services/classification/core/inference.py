"""Class probabilities of a classifier for images, and the names reports give the images.

Prediction uses the evaluation transform (Resize + CenterCrop), batches, bf16 autocast and
channels_last on CUDA only, and returns float64 probabilities whose rows sum to 1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from skingenbench.services.classification.core.data import eval_transform
from skingenbench.services.core.classifiers.models import ClassifierConfig
from skingenbench.services.core.classifiers.placement import autocast, to_device
from skingenbench.services.core.manifest import Item


@torch.no_grad()
def predict_probabilities(
    model: torch.nn.Module,
    images: Sequence,
    config: ClassifierConfig,
    device: str = "cpu",
    batch_size: int = 0,
    on_batch: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Softmax probabilities [N, C] (float64, rows summing to 1) of ``images[i] = (uint8 HWC, label)``."""
    model.eval()
    size = batch_size or config.eval_batch_size
    outputs = []
    threads = ThreadPoolExecutor(config.loader_threads) if config.loader_threads else None

    def load(index: int) -> torch.Tensor:
        return eval_transform(images[index][0], config)

    try:
        for start in range(0, len(images), size):
            indices = range(start, min(start + size, len(images)))
            tensors = list(threads.map(load, indices)) if threads else [load(i) for i in indices]
            with autocast(config, device):
                logits = model(to_device(torch.stack(tensors), config, device))
            outputs.append(torch.softmax(logits.float(), dim=1).cpu().double().numpy())
            if on_batch is not None:
                on_batch(indices.stop, len(images))
    finally:
        if threads:
            threads.shutdown()
    probs = np.concatenate(outputs) if outputs else np.zeros((0, 0))
    return probs / probs.sum(axis=1, keepdims=True) if len(probs) else probs


def item_names(items: Sequence[Item]) -> list[str]:
    """Image ids for reports and CSVs: ``image_id`` when every item has a distinct one, else object keys."""
    ids = [item.image_id for item in items]
    return ids if all(ids) and len(set(ids)) == len(ids) else [item.key for item in items]
