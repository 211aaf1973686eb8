"""The evaluation itself: a plan in, a report dict and the PNG files out.

Features of every set in every space (the extractor's and, with a classifier checkpoint, the domain
space) go through the feature cache; then the metrics of each synthetic set against the real set,
class anchoring, the feature-space analysis, memorization and the sample grids, each only when the
plan asks for it. Nothing here speaks gRPC, and the feature cache is the only thing written to the
store: the report and the PNGs are returned, and the job kind (``evaluation_job.py``) stores them
under the plan's output prefix. Progress and cancellation come in as callables.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.device import describe_device, select_device
from skingenbench.services.core.errors import FailedPrecondition
from skingenbench.services.core.version import code_version
from skingenbench.services.evaluation.core import analysis, anchoring, memorization
from skingenbench.services.evaluation.core.extractors import (
    FEATURE_EXTRACTORS,
    Extractor,
    domain_extractor_from_checkpoint,
)
from skingenbench.services.evaluation.core.metrics import (
    compute,
    frechet_distance,
    inception_score,
    library_versions,
)
from skingenbench.services.evaluation.core.sample_size import (
    FID_METRICS,
    SampleSizeWarning,
    baseline_note,
    real_baseline_subsets,
    sample_size_warnings,
    sample_sizes,
)
from skingenbench.services.evaluation.feature_cache import FeatureCache, FeatureKey
from skingenbench.services.evaluation.image_set import ImageSet, load_set
from skingenbench.services.evaluation.model_files import read_ref
from skingenbench.services.evaluation.plan import DOMAIN, PAIRWISE, EvaluationPlan
from skingenbench.services.platform.store import ObjectStore


@dataclass
class Evaluation:
    report: dict[str, Any]
    files: dict[str, tuple[bytes, str]]  # output name -> (bytes, file name)


class _Progress:
    def __init__(self, emit: Callable[..., None], total: int) -> None:
        self.emit, self.total, self.step = emit, total, 0

    def advance(self, message: str, **metrics: float) -> None:
        self.step += 1
        self.emit(min(self.step, self.total), self.total, message, **metrics)


def _features(
    cache: FeatureCache,
    extractor: Extractor,
    images: ImageSet,
    progress: _Progress,
    check: Callable[[], None],
    timings: list[tuple[int, float]],
) -> dict[str, Any]:
    key = FeatureKey.of(
        images.content_hash(), extractor.name, extractor.weights_sha256, extractor.preprocessing()
    )

    def compute():
        started = time.perf_counter()
        out = extractor.extract(
            images,
            check=check,
            progress=lambda done, total: progress.emit(
                progress.step,
                progress.total,
                f"{extractor.name} features of {images.spec.name}: {done}/{total}",
            ),
        )
        timings.append((len(images), time.perf_counter() - started))
        return out

    features, hit = cache.get_or_compute(key, compute)
    speed = {} if hit or timings[-1][1] <= 0 else {"images_per_s": timings[-1][0] / timings[-1][1]}
    progress.advance(
        f"{extractor.name} features of {images.spec.name}" + (" (cached)" if hit else ""), **speed
    )
    return features


def _sizes(features: dict[str, Any]) -> dict[str, int]:
    sizes = Counter(f"{w}x{h}" for h, w in features["image_hw"].tolist())
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def _sample_sizes(
    plan: EvaluationPlan,
    configs: dict[str, Any],
    report: dict[str, Any],
    sets: list[ImageSet],
    features: dict[str, dict[str, Any]],
    extractor: Extractor | None,
    domain: Extractor | None,
) -> None:
    """The sample sizes, the warnings below the documented minimums (``core/sample_size.py``; refused under
    ``strict_sample_size``) and, for each Fréchet metric whose ``real_baseline`` option is on, the real-vs-real
    baseline at each synthetic set's N."""
    real = sets[0].spec.name
    spaces = {"extractor": extractor, "domain": domain}
    dimensions = {
        space: int(features[e.name][real][e.layers["fid"]].shape[1]) if e is not None else None
        for space, e in spaces.items()
    }
    counts = {"real": len(sets[0]), **{s.spec.name: len(s) for s in sets[1:]}}
    warnings = sample_size_warnings(plan.metrics, counts, dimensions, configs)
    if plan.strict_sample_size and warnings:  # what Start could not check: the domain space's width
        raise FailedPrecondition(
            "strict_sample_size: " + "; ".join(w.message for w in warnings),
            hint="evaluate more images or drop strict_sample_size",
        )
    baselines: dict[str, dict[str, dict[str, Any]]] = {}
    for metric, space in FID_METRICS.items():
        e = spaces[space]
        if metric not in plan.metrics or e is None or not configs[metric].real_baseline:
            continue  # the baseline is opt-in (``fid_real_baseline``): a second Fréchet distance per N
        real_features = features[e.name][real][e.layers["fid"]]
        for target in sorted({len(s) for s in sets[1:]}):
            first, second = real_baseline_subsets(len(sets[0]), target, plan.seed)
            if len(first) < 2:
                message = (
                    f"{metric}: no real-vs-real baseline: two disjoint subsets of at least 2 need 4 images"
                )
                warnings.append(
                    SampleSizeWarning(f"{metric}_real_baseline", "real", len(sets[0]), 4, message)
                )
                break  # the targets ascend: a larger one cannot fit either
            value = frechet_distance(
                real_features[torch.as_tensor(first)], real_features[torch.as_tensor(second)]
            )
            baselines.setdefault(metric, {})[str(target)] = {
                "value": value,
                "count": len(first),
                "target_count": target,
                "disjoint": True,
            }
            if len(first) < target:
                message = baseline_note(metric, len(first), target, len(sets[0]))
                warnings.append(
                    SampleSizeWarning(f"{metric}_real_baseline", "real", len(first), target, message)
                )
    if baselines:
        report["real"]["real_baselines"] = baselines
    report["sample_sizes"] = {
        **sample_sizes(plan.metrics, counts, dimensions, configs),
        "below_minimum": [w.as_dict() for w in warnings],
    }
    report["warnings"] = [w.message for w in warnings]


def evaluate(
    store: ObjectStore,
    plan: EvaluationPlan,
    emit: Callable[..., None] = lambda *a, **k: None,
    check: Callable[[], None] = lambda: None,
) -> Evaluation:
    device = select_device()
    configs = plan.metric_configs()
    extractor = None
    if plan.use_extractor:
        # The weights the plan pinned: a named file is read (and checked) here, the default one by the
        # extractor, which checks it against the same sha256.
        weights: bytes | Path = (
            read_ref(store, {"uri": plan.weights.uri, "sha256": plan.weights_sha256}, "extractor weights")
            if plan.weights.uri
            else Path(plan.weights_file)
        )
        overrides = {**plan.extractor_overrides, "weights_sha256": plan.weights_sha256}
        extractor = FEATURE_EXTRACTORS.create(
            plan.extractor, plan.profile, overrides, weights=weights, device=device
        )
    domain = None
    if any(m in DOMAIN for m in plan.metrics):
        checkpoint = read_ref(
            store, {"uri": plan.checkpoint.uri, "sha256": plan.checkpoint.sha256}, "classifier checkpoint"
        )
        domain = domain_extractor_from_checkpoint(
            checkpoint, device, FEATURE_EXTRACTORS.config("domain", plan.profile).batch_size
        )
    real_spec = load_set(store, plan.real)
    sets = [ImageSet(store, spec) for spec in [real_spec, *(load_set(store, ref) for ref in plan.synthetic)]]
    spaces = [e for e in (extractor, domain) if e is not None]
    first = spaces[0]  # the space of memorization and of the image-size record: Inception's unless absent
    progress = _Progress(emit, len(sets) * len(spaces) + len(plan.synthetic) + 4)
    cache, timings = FeatureCache(store), []
    features = {
        e.name: {s.spec.name: _features(cache, e, s, progress, check, timings) for s in sets} for e in spaces
    }
    real_name = real_spec.name
    main = features[first.name]
    report: dict[str, Any] = {"sets": {}, "notes": list(plan.notes)}
    if extractor is not None and not extractor.weights_upstream:
        report["notes"].append(
            f"{extractor.name} weights {extractor.weights_sha256[:12]}… are not the published "
            "file: numbers are not comparable with published values"
        )

    real_entry: dict[str, Any] = {"count": len(sets[0]), "image_sizes": _sizes(main[real_name])}
    if "isc" in plan.metrics:
        real_entry["isc_mean"], real_entry["isc_std"] = inception_score(
            main[real_name][extractor.layers["isc"]], configs["isc"].splits, plan.seed
        )
    report["real"] = real_entry
    _sample_sizes(plan, configs, report, sets, features, extractor, domain)
    files: dict[str, tuple[bytes, str]] = {}
    for images in sets[1:]:
        check()
        name = images.spec.name
        entry: dict[str, Any] = {
            "count": len(images),
            "intended_label": images.spec.intended_label,
            "image_sizes": _sizes(main[name]),
        }
        for metric in (m for m in plan.metrics if m in PAIRWISE):
            entry.update(
                compute(metric, configs[metric], main[real_name], main[name], extractor.layers, plan.seed)
            )
        for metric in (m for m in plan.metrics if m in ("domain_fid", "domain_kid")):
            space = features["domain"]
            entry.update(
                compute(metric, configs[metric], space[real_name], space[name], domain.layers, plan.seed)
            )
        for metric, baselines in report["real"].get("real_baselines", {}).items():
            baseline = baselines.get(str(len(images)))
            if baseline is not None:  # the real-vs-real value at this set's N (or the nearest size possible)
                entry[f"{metric}_real_baseline"] = baseline["value"]
                entry[f"{metric}_real_baseline_count"] = baseline["count"]
        report["sets"][name] = entry
        progress.advance(f"metrics of {name}")

    if "class_anchoring" in plan.metrics:
        classes = domain.extra.get("class_names") or list(CLASSES)
        results = {
            s.spec.name: anchoring.anchoring_from_probabilities(
                anchoring.softmax(features["domain"][s.spec.name]["logits"].numpy()),
                classes,
                s.spec.anchoring_labels,
            )
            for s in sets[1:]
        }
        report["class_anchoring"] = results
        for name, result in results.items():
            report["sets"][name]["anchoring_share"] = result["share_intended"]
            report["sets"][name]["anchoring_confidence_mean"] = result["confidence_mean"]
        files["anchoring_confidence"] = (
            anchoring.confidence_histogram_png(results),
            "anchoring_confidence.png",
        )
    progress.advance("class anchoring")

    if "feature_space" in plan.metrics:
        report["feature_space"] = {}
        for space in spaces:
            layer = space.layers["fid"]
            numbers, plots = analysis.feature_space_report(
                features[space.name][real_name][layer].numpy(),
                {s.spec.name: features[space.name][s.spec.name][layer].numpy() for s in sets[1:]},
                _safe(space.name),
                configs["feature_space"],
                plan.seed,
            )
            report["feature_space"][space.name] = numbers
            files.update({Path(f).stem: (png, f) for f, png in plots.items()})
    progress.advance("feature-space analysis")

    if "memorization" in plan.metrics:
        config = configs["memorization"]
        report["memorization"] = {}
        layer = first.layers["fid"]
        report["memorization_space"] = first.name
        for images in sets[1:]:
            check()
            result = memorization.memorization_report(
                main[images.spec.name][layer].numpy(),
                main[real_name][layer].numpy(),
                images.image,
                sets[0].image,
                config,
                images.ids,
                sets[0].ids,
            )
            report["memorization"][images.spec.name] = result
            report["sets"][images.spec.name]["memorized_share"] = result["share_flagged"]
            pairs = memorization.closest_pairs(result, config.grid_pairs)
            files[f"memorization_{_safe(images.spec.name)}"] = (
                memorization.closest_pairs_png(pairs, images.image, sets[0].image),
                f"memorization_{_safe(images.spec.name)}.png",
            )
    progress.advance("memorization")

    if plan.grid_images:
        rng = np.random.default_rng(plan.seed)
        for images in sets:
            chosen = np.sort(rng.choice(len(images), min(plan.grid_images, len(images)), replace=False))
            files[f"samples_{_safe(images.spec.name)}"] = (
                analysis.image_grid_png(
                    [images[int(i)] for i in chosen], title=f"{images.spec.name} ({len(images)} images)"
                ),
                f"samples_{_safe(images.spec.name)}.png",
            )
    progress.advance("sample grids")

    extracted = sum(n for n, _ in timings)
    seconds = sum(t for _, t in timings)
    report["provenance"] = {
        "extractor": extractor.provenance() if extractor else None,
        "domain_extractor": domain.provenance() if domain else None,
        "image_counts": {s.spec.name: len(s) for s in sets},
        "libraries": library_versions(),
        "device": describe_device(),
        "code_version": code_version(),
        "seed": plan.seed,
        "profile": plan.profile,
        "metrics": list(plan.metrics),
        "configs": {m: dataclasses.asdict(c) for m, c in configs.items()},
        "real": {
            "manifest": real_spec.manifest_uri,
            "manifest_sha256": real_spec.manifest_sha256,
            **real_spec.selection,
            "set_hash": sets[0].content_hash(),
        },
        "synthetic": {
            s.spec.name: {
                "manifest": s.spec.manifest_uri,
                "manifest_sha256": s.spec.manifest_sha256,
                "set_hash": s.content_hash(),
            }
            for s in sets[1:]
        },
        "anchoring": {
            s.name: {"intended_label": s.intended_label, "per_item_labels": s.per_item_labels}
            for s in plan.synthetic
        },
        "extractor_name": plan.extractor if plan.use_extractor else "",
        "extractor_options": plan.extractor_overrides if plan.use_extractor else {},
        "grid_images": plan.grid_images,
        "strict_sample_size": plan.strict_sample_size,
        "feature_cache": {"hits": cache.hits, "misses": cache.misses},
        "extraction": {
            "images": extracted,
            "seconds": seconds,
            "images_per_s": extracted / seconds if seconds > 0 else None,
        },
    }
    return Evaluation(report, files)
