"""Evaluation benchmarks (issue 20, item 3).

- **The evaluation as a whole against torch-fidelity** (goal: ratio >= 1.0): ``evaluate()`` (plan, decode
  from the store, Inception features, FID + KID, report) against ``torch_fidelity.calculate_metrics(fid=True,
  kid=True)`` on the same two folders of PNGs, each in a fresh process (so neither finds the other's or its own
  earlier features), alternately; CPU seconds of each **including its child processes** (torch-fidelity decodes
  in ``min(4, 2 × cpus)`` DataLoader worker processes, whose CPU ``process_time`` alone leaves out); ratio =
  peer seconds / project seconds (> 1: the project is faster). Inception has random (kaiming) weights when the
  published file is absent: the cost is the same. The project runs with its defaults, so no real-vs-real
  baseline FID (opt-in: ``fid_real_baseline``).
- Feature extraction images/s at 64 and 256 px, and the feature cache's effect (evaluations against one real
  set, with and without the cache).

Sizes (about 5 minutes on 2 quiet cores: the quick run took 416 CPU s in all; one evaluation costs ~0.27 CPU s
per image for Inception at 299 px plus ~18 CPU s for FID's 2048×2048 eigenvalue problem, the same on both
sides, which is why the sets stay small):

- full: 2 × 16 PNGs of 64×64 per evaluation, 5 pairs; extraction 32 images; cache 3 sets of 8 against 16 real.
- quick: 2 × 8 PNGs, 5 pairs; the rest as full.
- on a GPU: 2 × 200 PNGs (the issue's table), extraction 512, cache 5 sets of 500 against 1,000.
"""

from __future__ import annotations

import resource
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.fresh import alternating_pairs, measure_in_fresh_process


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

    folder.mkdir(parents=True, exist_ok=True)
    torch.save({}, folder / "empty.pth")
    network = Unloaded(
        "inception-v3-compat", ["2048"], feature_extractor_weights_path=str(folder / "empty.pth")
    )
    for module in network.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
            torch.nn.init.kaiming_normal_(module.weight)
    path = folder / UPSTREAM["inception-v3-compat"].file
    torch.save(network.state_dict(), path)
    (folder / "empty.pth").unlink()
    return path


# -- evaluate() against torch_fidelity.calculate_metrics --------------------------------------------------
def cpu_seconds() -> float:
    """CPU seconds of this process and of its children that have ended (DataLoader workers are joined when
    their iterator is exhausted, so they are counted once the extraction is done)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def prepare_sets(folder: str, count: int, size: int) -> dict[str, Any]:
    """Fresh-process child: ``count`` real and ``count`` synthetic PNGs in a folder store, their manifests,
    Inception weights inside the store (the read rule allows the store)."""
    from skingenbench.services.core.imaging.decoding import encode_png
    from skingenbench.services.core.manifest import Item, Manifest, Provenance
    from skingenbench.services.platform.manifest_io import write_manifest
    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(folder)
    refs = {}
    for name, seed in (("real", 1), ("synthetic", 2)):
        items = []
        for index, image in enumerate(_phantoms(count, size, seed)):
            stored = store.put_bytes(f"{name}/{index:05d}.png", encode_png(image), "image/png")
            items.append(Item(stored.key, stored.sha256, "MEL", f"{name}{index}", split="train"))
        ref = write_manifest(store, f"manifests/{name}.json", Manifest(items, Provenance("bench")))
        refs[name] = {"key": f"manifests/{name}.json", "sha256": ref.sha256}
    weights = _weights(Path(folder) / "weights")
    refs["weights"] = {"key": f"weights/{weights.name}", "path": str(weights)}
    return refs


def project_evaluation(folder: str, refs: dict[str, Any], count: int) -> float:
    """Fresh-process child: CPU seconds of a whole FID + KID evaluation through ``evaluate()``, as the
    evaluate job runs it with default options (no real-vs-real baseline)."""
    import json

    from skingenbench.services.core.hashing import content_address
    from skingenbench.services.evaluation.evaluate import evaluate
    from skingenbench.services.evaluation.plan import plan_evaluation
    from skingenbench.services.platform.store import LocalFolderStore

    with tempfile.TemporaryDirectory() as copy:  # a store of its own: no feature cache from a prior run
        shutil.copytree(folder, copy, dirs_exist_ok=True)
        store = LocalFolderStore(copy)
        started = cpu_seconds()
        real, synthetic = (
            {"uri": store.uri(refs[n]["key"]), "sha256": refs[n]["sha256"]} for n in ("real", "synthetic")
        )
        request = {
            "real": real,
            "synthetic": [{"name": "synthetic", "manifest": synthetic, "intended_label": "MEL"}],
            "extractor_weights": {"uri": store.uri(refs["weights"]["key"])},
            "metrics": ["fid", "kid"],
            # Half the set: both sides draw their 100 KID subsets (at the full size the project computes one).
            "options_json": json.dumps({"grid_images": 0, "kid_subset_size": count // 2}),
        }
        plan = plan_evaluation(
            store,
            request,
            lambda inputs, settings, seed: content_address("evaluation", "bench", inputs, settings, seed),
        )
        evaluation = evaluate(store, plan)
        seconds = cpu_seconds() - started
    computed = evaluation.report["sets"]["synthetic"]
    if "fid" not in computed or "kid_mean" not in computed:
        raise RuntimeError("the evaluation computed no FID or no KID")
    if evaluation.report["provenance"]["image_counts"] != {"real": count, "synthetic": count}:
        raise RuntimeError(f"asked for {count} images per set, evaluated {evaluation.report['provenance']}")
    return seconds


def peer_evaluation(folder: str, refs: dict[str, Any], count: int) -> float:
    """Fresh-process child: CPU seconds of ``torch_fidelity.calculate_metrics`` on the same PNG folders."""
    import torch_fidelity

    started = cpu_seconds()
    metrics = torch_fidelity.calculate_metrics(
        input1=str(Path(folder) / "real"),
        input2=str(Path(folder) / "synthetic"),
        fid=True,
        kid=True,
        kid_subset_size=count // 2,
        feature_extractor_weights_path=refs["weights"]["path"],
        cuda=False,
        cache=False,
        verbose=False,
    )
    seconds = cpu_seconds() - started
    if "frechet_inception_distance" not in metrics:
        raise RuntimeError("torch-fidelity computed no FID")
    return seconds


def evaluation_against_torch_fidelity(count: int, size: int, pairs: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        refs = measure_in_fresh_process(
            "bench.evaluation:prepare_sets", folder=folder, count=count, size=size
        )["result"]

        def rate(target: str) -> float:  # evaluations per CPU second
            return 1.0 / measure_in_fresh_process(target, folder=folder, refs=refs, count=count)["result"]

        summary = alternating_pairs(
            lambda: rate("bench.evaluation:project_evaluation"),
            lambda: rate("bench.evaluation:peer_evaluation"),
            pairs,
        )
    return {
        "unit": "evaluations per CPU second (FID + KID, one real and one synthetic set); ratio = project / peer",
        "images_per_set": count,
        "image_size": f"{size}x{size} PNG",
        "scaled_down": "the issue's table used 2x200 PNGs; this run's size is above (CPU time grows with N)",
        "peer": "torch_fidelity.calculate_metrics(fid=True, kid=True, cache=False)",
        "evaluate_over_torch_fidelity": summary,
        "goal": 1.0,
    }


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

    device = select_device()
    gpu = device != "cpu"
    results: dict[str, Any] = {"device": describe_device()}
    count = 200 if gpu else (8 if quick else 16)
    results["against_torch_fidelity"] = evaluation_against_torch_fidelity(count, 64, 5)
    with tempfile.TemporaryDirectory() as folder:
        weights = _weights(Path(folder))
        extractor = FEATURE_EXTRACTORS.create(
            "inception-v3-compat", "paper", {"batch_size": 32}, weights=weights, device=device
        )
        results["weights_upstream"] = extractor.weights_upstream
        results["extraction"] = [extraction_speed(extractor, 512 if gpu else 32, size) for size in (64, 256)]
        real, synthetic, sets = (1000, 500, 5) if gpu else (16, 8, 3)
        results["cache"] = cache_effect(extractor, real, synthetic, sets)
    return results


if __name__ == "__main__":
    import json
    import sys

    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
