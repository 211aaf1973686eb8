"""Evaluation benchmarks (issue: evaluation service, benchmark).

- feature extraction images/s of torch-fidelity's InceptionV3 (random kaiming weights when the published
  file is absent: the speed is the same) on the device this runs on, at 64 px and 256 px input (each is
  resized to 299 inside the network); wall time and CPU time;
- the feature cache's effect: five synthetic sets evaluated against one real set as five separate
  evaluations (FID statistics + KID), with a fresh cache in the store vs no cache.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any


def _phantoms(count: int, size: int, seed: int) -> list:
    import numpy as np
    from skingenbench.services.data.core.phantom import PhantomConfig, render_phantom

    rng = np.random.default_rng(seed)
    config = PhantomConfig(width=size, height=size)
    return [render_phantom("MEL", rng, config).image for _ in range(count)]


def _weights(folder: Path) -> Path:
    import torch
    from skingenbench.services.evaluation.core.extractors import UPSTREAM, default_weights_path
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    published = default_weights_path("inception-v3-compat")
    if published.is_file():
        return published

    class Unloaded(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict, strict=True, assign=False):
            return None

    torch.save({}, folder / "empty.pth")
    network = Unloaded(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(folder / "empty.pth")
    )
    for module in network.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight)
    path = folder / UPSTREAM["inception-v3-compat"].file
    torch.save(network.state_dict(), path)
    return path


def extraction_speed(extractor, count: int, size: int) -> dict[str, Any]:
    images = _phantoms(count, size, seed=size)
    extractor.extract(images[: extractor.batch_size])  # warm-up (allocations, cuDNN autotuning)
    wall, cpu = time.perf_counter(), time.process_time()
    extractor.extract(images)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "images": count,
        "input": f"{size}x{size}",
        "batch_size": extractor.batch_size,
        "images_per_s": round(count / wall, 2),
        "images_per_cpu_s": round(count / cpu, 2),
    }


def cache_effect(extractor, real_count: int, synthetic_count: int, sets: int = 5) -> dict[str, Any]:
    from skingenbench.services.evaluation.core.metrics import fid_statistics, kernel_distance
    from skingenbench.services.evaluation.feature_cache import FeatureCache, FeatureKey, image_set_hash
    from skingenbench.services.platform.store import LocalFolderStore

    real = _phantoms(real_count, 64, seed=1)
    synthetic = [_phantoms(synthetic_count, 64, seed=10 + i) for i in range(sets)]
    entries = {"real": [(f"real/{i}", f"{i:064x}") for i in range(real_count)]}
    entries.update(
        {f"s{j}": [(f"s{j}/{i}", f"{i:064x}") for i in range(synthetic_count)] for j in range(sets)}
    )

    def evaluate_all(cache: FeatureCache | None) -> float:
        started = time.perf_counter()
        for j, images in enumerate(synthetic):  # one evaluation (job) per synthetic set
            features = {}
            for name, data in (("real", real), (f"s{j}", images)):
                if cache is None:
                    features[name] = extractor.extract(data)
                else:
                    key = FeatureKey.of(
                        image_set_hash(entries[name]),
                        extractor.name,
                        extractor.weights_sha256,
                        extractor.preprocessing(),
                    )
                    features[name], _ = cache.get_or_compute(key, lambda data=data: extractor.extract(data))
            fid_statistics(features["real"]["2048"])
            kernel_distance(features["real"]["2048"], features[f"s{j}"]["2048"], synthetic_count, 10)
        return time.perf_counter() - started

    with tempfile.TemporaryDirectory() as folder:
        extractor.images_extracted = 0
        without = evaluate_all(None)
        images_without = extractor.images_extracted
        extractor.images_extracted = 0
        cache = FeatureCache(LocalFolderStore(folder))
        with_cache = evaluate_all(cache)
        images_with = extractor.images_extracted
    return {
        "sets": sets,
        "real_images": real_count,
        "synthetic_images_per_set": synthetic_count,
        "without_cache_s": round(without, 1),
        "with_cache_s": round(with_cache, 1),
        "images_extracted_without": images_without,
        "images_extracted_with": images_with,
        "speedup": round(without / with_cache, 2),
        "cache_hits": cache.hits,
        "cache_misses": cache.misses,
    }


def run(quick: bool = False) -> dict[str, Any]:
    from skingenbench.services.core.device import describe_device, select_device
    from skingenbench.services.evaluation.core.extractors import FEATURE_EXTRACTORS

    with tempfile.TemporaryDirectory() as folder:
        weights = _weights(Path(folder))
        device = select_device()
        extractor = FEATURE_EXTRACTORS.create(
            "inception-v3-compat", "paper", {"batch_size": 32}, weights=weights, device=device
        )
        count = 32 if quick or device == "cpu" else 512
        results = {
            "device": describe_device(),
            "weights_upstream": extractor.weights_upstream,
            "extraction": [extraction_speed(extractor, count, size) for size in (64, 256)],
        }
        real, synthetic = (32, 8) if quick or device == "cpu" else (1000, 500)
        results["cache"] = cache_effect(extractor, real, synthetic)
    return results


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
