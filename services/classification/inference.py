"""A trained classifier as one file, and its class probabilities for images.

The file is a safetensors file of the selected model's weights whose header metadata holds
``{"skingenbench": JSON}``: the classifier name, its config, the classes and the run's record (seed,
regime, pretrained record, best epoch, val metric). No pickle (DESIGN.md, rule 7), and the metadata
can be read from the first bytes of the file without loading the weights, so a service can check a
request before starting a job.

Prediction uses the evaluation transform (Resize + CenterCrop), batches, bf16 autocast and
channels_last on CUDA only, and returns float64 probabilities whose rows sum to 1.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO

import numpy as np
import torch

from services.classification.data import ManifestImages, eval_transform
from services.classification.models import CLASSIFIERS, ClassifierConfig, config_dict, config_from_dict
from services.common.errors import FailedPrecondition
from services.common.manifest import Item
from services.common.store import ObjectStore

CHECKPOINT_FORMAT = "skingenbench.classifier/1"
_METADATA_KEY = "skingenbench"
_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit


def classifier_to_bytes(model_state: dict[str, torch.Tensor], name: str, config: ClassifierConfig,
                        record: dict[str, Any]) -> bytes:
    """The file of a trained classifier: its weights plus what is needed to rebuild and describe it."""
    from safetensors.torch import save

    metadata = {"format": CHECKPOINT_FORMAT, "classifier": name, "config": config_dict(config), **record}
    tensors = {k: v.detach().contiguous().cpu() for k, v in model_state.items()}
    return save(tensors, metadata={_METADATA_KEY: json.dumps(metadata, sort_keys=True)})


def read_metadata(stream: BinaryIO) -> dict[str, Any]:
    """The metadata of a classifier file from its header (safetensors: u64 length, then JSON)."""
    try:
        (length,) = struct.unpack("<Q", stream.read(8))
        if not 0 < length <= _MAX_HEADER_BYTES:
            raise ValueError(f"header length {length}")
        header = json.loads(stream.read(length))
        metadata = json.loads(header["__metadata__"][_METADATA_KEY])
    except (struct.error, ValueError, KeyError, TypeError) as error:
        raise FailedPrecondition(f"not a classifier checkpoint ({type(error).__name__}: {error})",
                                 hint="pass the 'checkpoint' output of a StartTraining job") from None
    if metadata.get("format") != CHECKPOINT_FORMAT or metadata.get("classifier") not in CLASSIFIERS:
        raise FailedPrecondition(f"not a classifier checkpoint of a known model (format "
                                 f"{metadata.get('format')!r}, classifier {metadata.get('classifier')!r})")
    return metadata


def classifier_from_bytes(data: bytes, device: str = "cpu") -> tuple[torch.nn.Module, ClassifierConfig, dict]:
    """(model in eval mode on ``device``, config, metadata) from a classifier file."""
    import io

    from safetensors.torch import load

    metadata = read_metadata(io.BytesIO(data))
    config = config_from_dict(metadata["config"])
    # Built without pretrained weights: every tensor comes from the file (strict load).
    model, _ = CLASSIFIERS.get(metadata["classifier"]).factory(dataclasses.replace(config, pretrained="none"),
                                                               num_classes=len(metadata["classes"]))
    model.load_state_dict(load(data), strict=True)
    return prepare(model, config, device).eval(), config, metadata


def on_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def prepare(model: torch.nn.Module, config: ClassifierConfig, device: str) -> torch.nn.Module:
    model = model.to(device)
    if on_cuda(device) and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def to_device(batch: torch.Tensor, config: ClassifierConfig, device: str) -> torch.Tensor:
    batch = batch.to(device, non_blocking=True)
    if on_cuda(device) and config.channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def autocast(config: ClassifierConfig, device: str):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=on_cuda(device) and config.amp)


@torch.no_grad()
def predict_probabilities(model: torch.nn.Module, images: Sequence, config: ClassifierConfig,
                          device: str = "cpu", batch_size: int = 0,
                          on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
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


def predict_items(model: torch.nn.Module, config: ClassifierConfig, store: ObjectStore, items: Sequence[Item],
                  device: str = "cpu", batch_size: int = 0,
                  on_batch: Callable[[int, int], None] | None = None,
                  ) -> tuple[list[str], list[str], np.ndarray]:
    """(image ids, labels, probabilities [N, C]) of a manifest's items, in the order given."""
    if not items:
        raise FailedPrecondition("no items to predict")
    probs = predict_probabilities(model, ManifestImages(store, items), config, device, batch_size, on_batch)
    return item_names(items), [item.label for item in items], probs
