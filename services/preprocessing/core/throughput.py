"""Throughput of one preprocessing pipeline, for ``bench/preprocessing.py`` (images/s per core).

Kept in the core beside the pipelines, as ``skingenbench.services.generation.core.sampling.bench_sampling`` is, so
its test runs with the pipeline tests and the bench script stays a thin driver.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np
from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.preprocessing.core.pipeline_registry import create_pipeline


def bench_pipeline(
    name: str,
    images: Iterable[np.ndarray],
    profile: str = "paper",
    augment: bool = True,
    threads: int = 1,
    cpu_time: bool = False,
    **overrides: Any,
) -> float:
    """Images per second of one pipeline over ``images`` with OpenCV limited to ``threads`` threads
    (restored afterwards); the first image is run once untimed, as OpenCV builds tables lazily.

    ``cpu_time=True`` divides by this process's CPU time instead of wall time: with one thread it
    is the per-core rate, unaffected by other processes sharing the machine."""
    pipeline, batch = create_pipeline(name, profile, **overrides), list(images)
    if not batch:
        raise InvalidArgument("bench_pipeline needs at least one image", field="images")
    previous = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        pipeline(batch[0], seed=0, augment=augment)
        clock = time.process_time if cpu_time else time.perf_counter
        start = clock()
        for index, image in enumerate(batch):
            pipeline(image, seed=index, augment=augment)
        elapsed = clock() - start
    finally:
        cv2.setNumThreads(previous)
    return len(batch) / elapsed
