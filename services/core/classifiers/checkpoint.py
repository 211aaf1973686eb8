"""A trained classifier as one file: safetensors weights with a JSON record in the header.

The header metadata holds ``{"skingenbench": JSON}``: the classifier name, its config, the classes
and the run's record (seed, regime, pretrained record, best epoch, val metric). No pickle (DESIGN.md,
rule 7), and the metadata can be read from the first bytes of the file without loading the weights,
so a service can check a request before starting a job. Classification writes these files;
evaluation reads them for its domain feature space and class anchoring.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from typing import Any, BinaryIO

import torch
from skingenbench.services.core.classifiers.models import (
    CLASSIFIERS,
    ClassifierConfig,
    config_dict,
    config_from_dict,
)
from skingenbench.services.core.classifiers.placement import prepare
from skingenbench.services.core.errors import FailedPrecondition

CHECKPOINT_FORMAT = "skingenbench.classifier/1"
_METADATA_KEY = "skingenbench"
_MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit


def classifier_to_bytes(
    model_state: dict[str, torch.Tensor], name: str, config: ClassifierConfig, record: dict[str, Any]
) -> bytes:
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
        # The reason names the kind of failure only: the error's own text would quote the file's bytes (a
        # header length is its first 8 bytes as a number, a decode error shows bytes), which no answer may.
        raise FailedPrecondition(
            f"not a classifier checkpoint (no safetensors header with SkinGenBench metadata: "
            f"{type(error).__name__})",
            hint="pass the 'checkpoint' output of a StartTraining job",
        ) from None
    if metadata.get("format") != CHECKPOINT_FORMAT or metadata.get("classifier") not in CLASSIFIERS:
        raise FailedPrecondition(
            f"not a classifier checkpoint of a known model (format "
            f"{metadata.get('format')!r}, classifier {metadata.get('classifier')!r})"
        )
    return metadata


def classifier_from_bytes(data: bytes, device: str = "cpu") -> tuple[torch.nn.Module, ClassifierConfig, dict]:
    """(model in eval mode on ``device``, config, metadata) from a classifier file."""
    import io

    from safetensors.torch import load

    metadata = read_metadata(io.BytesIO(data))
    config = config_from_dict(metadata["config"])
    # Built without pretrained weights: every tensor comes from the file (strict load).
    model, _ = CLASSIFIERS.get(metadata["classifier"]).factory(
        dataclasses.replace(config, pretrained="none"), num_classes=len(metadata["classes"])
    )
    try:
        model.load_state_dict(load(data), strict=True)
    except RuntimeError as error:
        # e.g. an EfficientNet-B0 / ViT-B/16 file written when they were timm's modules (now torchvision's).
        raise FailedPrecondition(
            f"the checkpoint's {metadata['classifier']} weights do not fit this version's network "
            f"({str(error)[:200]})",
            hint="train the classifier again with this version",
        ) from None
    return prepare(model, config, device).eval(), config, metadata
