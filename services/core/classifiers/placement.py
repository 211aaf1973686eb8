"""Where a classifier runs: device, channels_last and bf16 autocast on the accelerator path (CUDA; the CPU only when
``core.device.CPU_AUTOCAST_ENV`` asks for it) and fp32 elsewhere."""

from __future__ import annotations

import torch
from skingenbench.services.core.classifiers.models import ClassifierConfig
from skingenbench.services.core.device import device_type, mixed_precision_path


def on_cuda(device: str) -> bool:
    return str(device).startswith("cuda")


def prepare(model: torch.nn.Module, config: ClassifierConfig, device: str) -> torch.nn.Module:
    model = model.to(device)
    if mixed_precision_path(device) and config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def to_device(batch: torch.Tensor, config: ClassifierConfig, device: str) -> torch.Tensor:
    batch = batch.to(device, non_blocking=True)
    if mixed_precision_path(device) and config.channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def autocast(config: ClassifierConfig, device: str):
    enabled = mixed_precision_path(device) and config.amp
    return torch.autocast(device_type(device), dtype=torch.bfloat16, enabled=enabled)
