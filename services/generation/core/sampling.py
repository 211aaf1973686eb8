"""Seeded sampling: image i of a set drawn with ``seed`` is always the image of seed ``seed + i``.

Per-image seeds make a synthetic set reproducible piece by piece (a manifest records each image's
seed), let a job resume half-way, and keep an image unchanged when the batch size or device changes
(up to floating-point rounding of batched kernels).
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.generation.core.backend import GeneratorBackend, SamplerOptions, check_seeds


@dataclass
class SampleBatch:
    first_index: int  # position of images[0] in the whole set
    seeds: list[int]  # seeds[k] made images[k]
    images: np.ndarray  # uint8 [n, H, W, 3]


def image_seeds(count: int, seed: int) -> list[int]:
    """The seed of every image of a set: ``seed + i``."""
    if count < 0:
        raise InvalidArgument(f"count must be >= 0, got {count}", field="count")
    return check_seeds([seed + i for i in range(count)])


def _slice_conditioning(
    conditioning: dict[str, Any] | None,
    count: int,
    start: int,
    stop: int,
) -> dict[str, Any] | None:
    """Per-image entries (arrays or tensors with ``count`` rows) follow their images into each batch."""
    if conditioning is None:
        return None
    sliced = {}
    for key, value in conditioning.items():
        per_image = (
            isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim > 0 and value.shape[0] == count
        )
        sliced[key] = value[start:stop] if per_image else value
    return sliced


def sample_images(
    backend: GeneratorBackend,
    count: int,
    seed: int,
    options: SamplerOptions | None = None,
    conditioning: dict[str, Any] | None = None,
    batch_size: int = 0,
) -> Iterator[SampleBatch]:
    """``count`` images with seeds ``seed .. seed + count - 1``, yielded batch by batch.

    ``batch_size`` (else ``options.batch_size``, else the backend's default) is both the size of the
    yielded batches and of the forward passes.
    """
    options = options or SamplerOptions()
    options.validate()
    if batch_size < 0:
        raise InvalidArgument(f"batch_size must be >= 0, got {batch_size}", field="batch_size")
    size = batch_size or options.batch_size or backend.sample_batch_size
    options = replace(options, batch_size=size)
    seeds = image_seeds(count, seed)
    for start in range(0, count, size):
        stop = min(start + size, count)
        images = backend.sample(
            seeds[start:stop], options, _slice_conditioning(conditioning, count, start, stop)
        )
        yield SampleBatch(start, seeds[start:stop], images)


def to_png_bytes(image: np.ndarray) -> bytes:
    """One uint8 [H, W, 3] image as PNG bytes (no metadata, so equal pixels give equal bytes)."""
    from PIL import Image

    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise InvalidArgument(
            f"expected a uint8 [H, W, 3] array, got {type(image).__name__} {shape}", field="image"
        )
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def bench_sampling(backend: GeneratorBackend, n: int, sampler: str = "", steps: int = 0) -> float:
    """Images per second for ``n`` images in one batch, after a one-image warm-up (kernel selection, caches)."""
    if n < 1:
        raise InvalidArgument(f"n must be >= 1, got {n}", field="n")
    backend.sample([0], SamplerOptions(sampler=sampler, steps=1, batch_size=1))
    options = SamplerOptions(sampler=sampler, steps=steps, batch_size=n)
    started = time.perf_counter()
    backend.sample(list(range(n)), options)
    return n / (time.perf_counter() - started)
