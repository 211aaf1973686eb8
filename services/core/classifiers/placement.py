"""Where a classifier runs: device, channels_last and bf16 autocast on CUDA only (CPU stays fp32)."""

from __future__ import annotations

import torch
from skingenbench.services.core.classifiers.models import ClassifierConfig


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
