"""Pick the compute device at run time: CUDA when present, else CPU (torch is optional here); and whether a device
takes the mixed-precision path (autocast, channels_last)."""

from __future__ import annotations

import importlib.util
import os

# "1": the CPU takes the same mixed-precision path as CUDA (bf16 autocast, channels_last). The full-size paper-profile
# tests set it to exercise the GPU path's dtypes and shapes without a GPU (tests/paper_profiles/); a CPU with bf16
# matrix units may also gain from it. Unset, the CPU computes in fp32 with the default memory layout.
CPU_AUTOCAST_ENV = "SKINGENBENCH_CPU_AUTOCAST"


def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def select_device(preferred: str = "") -> str:
    """``SKINGENBENCH_DEVICE`` or the argument wins; otherwise ``cuda`` when available, else ``cpu``."""
    choice = preferred or os.environ.get("SKINGENBENCH_DEVICE", "")
    if choice:
        return choice
    if torch_available():
        import torch

        if torch.cuda.is_available():
            return "cuda"
    return "cpu"


def describe_device() -> str:
    device = select_device()
    if device.startswith("cuda") and torch_available():
        import torch

        index = torch.device(device).index or 0
        return f"{device} ({torch.cuda.get_device_name(index)})"
    return device


def mixed_precision_path(device: str) -> bool:
    """Whether ``device`` runs the configs' mixed precision and channels_last: CUDA always, the CPU only when
    ``SKINGENBENCH_CPU_AUTOCAST=1`` (read at each call, so a test can switch it)."""
    kind = device_type(device)
    if kind == "cuda":
        return True
    return kind == "cpu" and os.environ.get(CPU_AUTOCAST_ENV, "") == "1"


def device_type(device: str) -> str:
    """``torch.autocast``'s device type for a device string: ``cuda:1`` -> ``cuda``."""
    return str(device).split(":", 1)[0]
