"""What every full-size paper-profile test shares: the CPU on the accelerator's mixed-precision path, and a
probe that records whether a module really ran under bf16 autocast with channels_last inputs.

``SKINGENBENCH_CPU_AUTOCAST=1`` (``core.device.CPU_AUTOCAST_ENV``) makes the CPU take the code path CUDA takes:
``torch.autocast("cpu", dtype=torch.bfloat16)`` where CUDA autocasts to the config's dtype, channels_last where
CUDA uses it. Shape and dtype bugs of the GPU path (a float32 buffer meeting a bf16 activation, an fp32-only
op under autocast, a 256-pixel layout error) show here without a GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest
import torch
from skingenbench.services.core.device import CPU_AUTOCAST_ENV


@pytest.fixture(autouse=True)
def gpu_path_on_cpu(monkeypatch):
    monkeypatch.setenv(CPU_AUTOCAST_ENV, "1")
    monkeypatch.setenv("SKINGENBENCH_DEVICE", "cpu")


class Probe:
    """Helpers the ``probe`` fixture hands to the tests (test modules do not import conftest)."""

    @staticmethod
    @contextlib.contextmanager
    def calls_recorded(module: torch.nn.Module) -> Iterator[list[dict[str, object]]]:
        """Per call of ``module``: whether CPU autocast was on, its dtype, and whether the first 4-d tensor input
        was channels_last (None when the call had none)."""
        calls: list[dict[str, object]] = []

        def record(_module, args, kwargs):
            tensors = (*args, *kwargs.values())
            images = next((a for a in tensors if isinstance(a, torch.Tensor) and a.ndim == 4), None)
            calls.append(
                {
                    "autocast": torch.is_autocast_enabled("cpu"),
                    "dtype": torch.get_autocast_dtype("cpu"),
                    "channels_last": None
                    if images is None
                    else images.is_contiguous(memory_format=torch.channels_last),
                }
            )

        handle = module.register_forward_pre_hook(record, with_kwargs=True)
        try:
            yield calls
        finally:
            handle.remove()

    @staticmethod
    def assert_on_gpu_path(calls: list[dict[str, object]], images: bool = True) -> None:
        """Every call ran under bf16 autocast; with ``images``, the image inputs were channels_last (at least one:
        a GAN's discriminator also sees generated images, in whatever layout the generator left them)."""
        assert calls, "the module was never called"
        for call in calls:
            assert call["autocast"] and call["dtype"] == torch.bfloat16, call
        if images:
            assert any(call["channels_last"] for call in calls), calls

    @staticmethod
    def parameters_copy(module: torch.nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in module.parameters()]

    @staticmethod
    def changed_fraction(before: list[torch.Tensor], module: torch.nn.Module) -> float:
        """Share of parameter tensors an optimiser step changed; all stay float32 (AMP keeps fp32 weights)."""
        after = list(module.parameters())
        assert all(p.dtype == torch.float32 for p in after)
        return sum(not torch.equal(a, p.detach()) for a, p in zip(before, after, strict=True)) / len(after)


@pytest.fixture
def probe() -> type[Probe]:
    return Probe
