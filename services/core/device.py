"""Pick the compute device at run time: CUDA when present, else CPU (torch is optional here)."""

from __future__ import annotations

import importlib.util
import os


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
