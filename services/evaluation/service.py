"""The evaluation servicer: synthetic image sets against a real set, as one job.

A thin layer over the cores in this package. ``StartEvaluation`` plans the evaluation at once (reads
the manifests, checks metrics, options, image counts and that the weights file is present, so a bad
request is refused before a job exists) and starts an ``evaluate`` job. The job extracts features
through the feature cache, computes the metrics, draws the plots and writes a JSON report, a
Markdown summary and PNGs to the store under a content-addressed prefix.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from services.common.classes import CLASSES
from services.common.device import describe_device, select_device
from services.common.errors import DataIntegrityError, FailedPrecondition, InvalidArgument, NotFound
from services.common.hashing import content_address, output_prefix, sha256_bytes
from services.common.jobs_service import job_reply
from services.common.manifest import Item, read_item, read_manifest
from services.common.server import ServiceContext
from services.common.servicer import (
    entry_from_description,
    list_response,
    parse_json_field,
    request_to_dict,
    service_info,
)
from services.common.store import ObjectStore
from services.common.version import code_version
from services.evaluation import analysis, anchoring, memorization
from services.evaluation.extractors import (
    FEATURE_EXTRACTORS,
    Extractor,
    default_weights_path,
    domain_extractor_from_checkpoint,
    missing_weights_error,
)
from services.evaluation.feature_cache import FeatureCache, FeatureKey, image_set_hash
from services.evaluation.metrics import METRICS, compute, frechet_distance, inception_score, library_versions
from skingenbench.v1 import evaluation_pb2_grpc

STAGE = "evaluation"
STAGE_VERSION = "1"
ALL_METRICS = ("fid", "kid", "isc", "prc", "domain_fid", "domain_kid", "feature_space", "memorization",
               "class_anchoring")
PAIRWISE = ("fid", "kid", "isc", "prc")
DOMAIN = ("domain_fid", "domain_kid", "class_anchoring")
GENERAL_OPTIONS = {"profile", "grid_images"}
DEFAULT_EXTRACTOR = "inception-v3-compat"
DEFAULT_LABEL = "MEL"


# -- the plan: everything decided before a job starts ---------------------------------------------------
@dataclass
class SetSpec:
    name: str
    items: list[Item]
    intended_label: str = ""
    manifest_uri: str = ""
    manifest_sha256: str = ""
    selection: dict[str, list[str]] = field(default_factory=dict)  # the real set's splits and labels
    per_item_labels: bool = False  # class anchoring against each item's own label (conditional sets)

    @property
    def anchoring_labels(self) -> str | list[str]:
        return [item.label for item in self.items] if self.per_item_labels else self.intended_label


@dataclass
class EvaluationPlan:
    real: SetSpec
    synthetic: list[SetSpec]
    metrics: list[str]
    configs: dict[str, Any]
    profile: str
    extractor: str
    extractor_overrides: dict[str, Any]
    weights: dict[str, str]
    checkpoint: dict[str, str]
    grid_images: int
    seed: int
    notes: list[str] = field(default_factory=list)
    use_extractor: bool = True  # False: only the domain space is evaluated (weights absent, or not needed)


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, Any]]:
    """(general, per-metric overrides, extractor overrides) from flat keys such as ``kid_subset_size``."""
    general, per_metric, extractor = {}, {}, {}
    prefixes = sorted(ALL_METRICS, key=len, reverse=True)
    for key, value in options.items():
        if key in GENERAL_OPTIONS:
            general[key] = value
        elif key.startswith("extractor_"):
            extractor[key.removeprefix("extractor_")] = value
        else:
            metric = next((m for m in prefixes if key.startswith(f"{m}_")), None)
            if metric is None:
                raise InvalidArgument(f"unknown option {key!r} in options_json",
                                      hint="options are profile, grid_images, extractor_<field> or <metric>_<field>, "
                                           f"e.g. kid_subset_size, prc_k; metrics: {', '.join(ALL_METRICS)}")
            per_metric.setdefault(metric, {})[key.removeprefix(f"{metric}_")] = value
    return general, per_metric, extractor


def _select_metrics(requested: list[str], has_checkpoint: bool, extractor: str) -> list[str]:
    unknown = [m for m in requested if m not in ALL_METRICS]
    if unknown:
        raise InvalidArgument(f"unknown metric(s) {', '.join(unknown)}", hint=f"known: {', '.join(ALL_METRICS)}")
    inception = FEATURE_EXTRACTORS.get(extractor).capabilities.get("inception_score") == "true"
    if requested:
        missing = [m for m in requested if m in DOMAIN]
        if missing and not has_checkpoint:
            raise InvalidArgument(f"{', '.join(missing)} need a classifier checkpoint",
                                  hint="set classifier_checkpoint to a classification service checkpoint")
        if "isc" in requested and not inception:
            raise InvalidArgument(f"the Inception Score needs Inception logits; extractor {extractor!r} has none")
        return [m for m in ALL_METRICS if m in requested]
    return [m for m in ALL_METRICS if (m not in DOMAIN or has_checkpoint) and (m != "isc" or inception)]


def _manifest_items(store: ObjectStore, ref: dict[str, Any], what: str) -> tuple[list[Item], str, str]:
    uri = ref.get("uri", "")
    if not uri:
        raise InvalidArgument(f"{what} manifest is required")
    key = store.key_from_uri(uri)
    if not store.exists(key):
        raise NotFound(f"{what} manifest not found: {uri}")
    raw = store.get_bytes(key)
    manifest = read_manifest(store, uri, ref.get("sha256", ""))
    return manifest.items, store.uri(key), sha256_bytes(raw)


def _adjust_sizes(plan_configs: dict[str, Any], explicit: dict[str, dict[str, Any]], smallest: int,
                  notes: list[str]) -> None:
    """Defaults that a small set cannot meet are lowered (and noted); explicit values are checked strictly."""
    for metric in ("kid", "domain_kid"):
        config = plan_configs.get(metric)
        if config is None or config.subset_size <= smallest:
            continue
        if "subset_size" in explicit.get(metric, {}):
            raise InvalidArgument(f"{metric} subset size {config.subset_size} is larger than the smallest set "
                                  f"({smallest} images)", hint=f"set {metric}_subset_size to at most {smallest}")
        notes.append(f"{metric}: subset size lowered from {config.subset_size} to {smallest} (the smallest set)")
        plan_configs[metric] = dataclasses.replace(config, subset_size=smallest)
    isc = plan_configs.get("isc")
    if isc is not None and isc.splits > smallest:
        if "splits" in explicit.get("isc", {}):
            raise InvalidArgument(f"IS with {isc.splits} splits needs at least {isc.splits} images per set, the "
                                  f"smallest has {smallest}", hint=f"set isc_splits to at most {smallest}")
        notes.append(f"isc: splits lowered from {isc.splits} to {smallest}")
        plan_configs["isc"] = dataclasses.replace(isc, splits=smallest)
    prc = plan_configs.get("prc")
    if prc is not None and prc.k >= smallest:
        raise InvalidArgument(f"precision/recall with k={prc.k} needs more than {prc.k} images per set, the "
                              f"smallest has {smallest}", hint=f"set prc_k below {smallest}")


def plan_evaluation(store: ObjectStore, request: dict[str, Any]) -> EvaluationPlan:
    """Validate a request (as a dict) and decide everything the job will do."""
    options = parse_json_field(request.get("options_json", ""), "options_json")
    general, per_metric, extractor_overrides = _split_options(options)
    profile = str(general.get("profile") or "paper")
    extractor = request.get("feature_extractor") or DEFAULT_EXTRACTOR
    if extractor == "domain":
        raise InvalidArgument("the domain feature space is requested as metrics domain_fid / domain_kid",
                              hint="keep feature_extractor for torch-fidelity's networks and set classifier_checkpoint")
    if extractor not in FEATURE_EXTRACTORS:
        raise InvalidArgument(f"unknown feature extractor {extractor!r}",
                              hint=f"one of: {', '.join(n for n in FEATURE_EXTRACTORS.names() if n != 'domain')}")
    checkpoint = dict(request.get("classifier_checkpoint") or {})
    metrics = _select_metrics(list(request.get("metrics") or []), bool(checkpoint.get("uri")), extractor)
    stray = sorted(set(per_metric) - set(metrics))
    if stray:
        raise InvalidArgument(f"options given for metric(s) not evaluated: {', '.join(stray)}")
    FEATURE_EXTRACTORS.config(extractor, profile, extractor_overrides)  # validates the overrides now
    notes: list[str] = []
    weights = dict(request.get("extractor_weights") or {})
    # Named metrics that all live in the classifier's space (e.g. class anchoring alone) need no Inception.
    use_extractor = not (request.get("metrics") and checkpoint.get("uri") and set(metrics) <= set(DOMAIN))
    try:
        if use_extractor:
            _check_weights_present(store, extractor, weights)
    except FailedPrecondition as missing:
        # "All that the given inputs allow": with no metric named and a classifier checkpoint given, the
        # domain space is evaluated alone, and the report says what was skipped and why.
        if request.get("metrics") or not checkpoint.get("uri"):
            raise
        use_extractor = False
        metrics = [m for m in metrics if m not in PAIRWISE]
        notes.append(f"FID, KID, IS and precision/recall skipped: {missing}")
    configs = {m: METRICS.config(m, profile, per_metric.get(m)) for m in metrics}

    synthetic_refs = list(request.get("synthetic") or [])
    if not synthetic_refs:
        raise InvalidArgument("at least one synthetic set is required")
    synthetic = []
    for index, entry in enumerate(synthetic_refs):
        name = entry.get("name") or f"synthetic_{index}"
        items, uri, sha = _manifest_items(store, entry.get("manifest") or {}, f"synthetic set {name!r}")
        if not items:
            raise InvalidArgument(f"synthetic set {name!r} is empty ({uri})")
        synthetic.append(SetSpec(name, items, entry.get("intended_label") or DEFAULT_LABEL, uri, sha,
                                 per_item_labels=bool(entry.get("per_item_labels"))))
    names = [s.name for s in synthetic]
    if len(set(names)) != len(names) or "real" in names:
        raise InvalidArgument("synthetic set names must be unique and not 'real'", hint=f"got {names}")

    items, uri, sha = _manifest_items(store, request.get("real") or {}, "real")
    splits = list(request.get("real_splits") or ["train"])
    wanted = {label for s in synthetic for label in
              ({i.label for i in s.items} if s.per_item_labels else {s.intended_label})}
    labels = list(request.get("real_labels") or sorted(wanted))
    real_items = [i for i in items if i.split in splits and i.label in labels]
    if not real_items:
        raise FailedPrecondition(f"no real items with split in {splits} and label in {labels} ({uri})",
                                 hint="check real_splits and real_labels against the manifest")
    real = SetSpec("real", real_items, "", uri, sha, {"splits": splits, "labels": labels})

    if "memorization" in metrics and splits != ["train"]:
        notes.append(f"memorization compares with the real selection (splits {splits}), not only the training "
                     "split the generators were trained on")
    _adjust_sizes(configs, per_metric, min(len(s.items) for s in [real, *synthetic]), notes)
    for metric in ("fid", "domain_fid"):
        if metric in metrics and min(len(s.items) for s in [real, *synthetic]) < 2:
            raise InvalidArgument(f"{metric} needs at least 2 images per set")
    grid_images = int(general.get("grid_images", 16))
    if not 0 <= grid_images <= 256:
        raise InvalidArgument(f"grid_images must be in 0..256, got {grid_images}")
    return EvaluationPlan(real, synthetic, metrics, configs, profile, extractor, extractor_overrides, weights,
                          checkpoint, grid_images, int(request.get("seed", 0)), notes, use_extractor)


def _local_path(uri: str) -> Path | None:
    if uri.startswith("file://"):
        return Path(unquote(urlparse(uri).path))
    return Path(uri) if uri.startswith("/") else None


def _check_weights_present(store: ObjectStore, extractor: str, ref: dict[str, str]) -> None:
    uri = ref.get("uri", "")
    path = _local_path(uri) if uri else default_weights_path(extractor)
    if path is not None and not path.is_file():
        raise missing_weights_error(extractor, path)
    if path is None and not store.exists(store.key_from_uri(uri)):
        raise missing_weights_error(extractor, Path(uri))


def _read_ref(store: ObjectStore, ref: dict[str, str], what: str) -> bytes:
    """Bytes of a local file or a store object, checked against the reference's sha256 when it has one."""
    uri = ref["uri"]
    path = _local_path(uri)
    if path is not None:
        if not path.is_file():
            raise FailedPrecondition(f"{what} {path} does not exist on the evaluation server")
        data = path.read_bytes()
    else:
        data = store.get_bytes(store.key_from_uri(uri))
    if ref.get("sha256") and sha256_bytes(data) != ref["sha256"]:
        raise DataIntegrityError(f"{what} {uri} does not match its sha256", expected=ref["sha256"])
    return data


# -- image sets: decoded on demand, so large sets are not held in memory ---------------------------------
class ImageSet:
    def __init__(self, store: ObjectStore, spec: SetSpec, cached: int = 64) -> None:
        self.store, self.spec = store, spec
        self.image = functools.lru_cache(maxsize=cached)(self._decode)

    def __len__(self) -> int:
        return len(self.spec.items)

    def __getitem__(self, index: int) -> np.ndarray:
        return self.image(index)

    def _decode(self, index: int) -> np.ndarray:
        from PIL import Image, UnidentifiedImageError

        item = self.spec.items[index]
        try:
            with Image.open(io.BytesIO(read_item(self.store, item))) as image:
                return np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise InvalidArgument(f"{self.spec.name}: cannot decode {item.key}: {exc}") from None

    @property
    def ids(self) -> list[str]:
        return [item.image_id or item.key for item in self.spec.items]

    def content_hash(self) -> str:
        return image_set_hash((item.key, item.sha256) for item in self.spec.items)


# -- the evaluation itself ---------------------------------------------------------------------------------
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


def _features(cache: FeatureCache, extractor: Extractor, images: ImageSet, progress: _Progress,
              check: Callable[[], None], timings: list[tuple[int, float]]) -> dict[str, Any]:
    key = FeatureKey.of(images.content_hash(), extractor.name, extractor.weights_sha256, extractor.preprocessing())

    def compute():
        started = time.perf_counter()
        out = extractor.extract(images, check=check, progress=lambda done, total: progress.emit(
            progress.step, progress.total, f"{extractor.name} features of {images.spec.name}: {done}/{total}"))
        timings.append((len(images), time.perf_counter() - started))
        return out

    features, hit = cache.get_or_compute(key, compute)
    speed = {} if hit or timings[-1][1] <= 0 else {"images_per_s": timings[-1][0] / timings[-1][1]}
    progress.advance(f"{extractor.name} features of {images.spec.name}" + (" (cached)" if hit else ""), **speed)
    return features


def _sizes(features: dict[str, Any]) -> dict[str, int]:
    sizes = Counter(f"{w}x{h}" for h, w in features["image_hw"].tolist())
    return dict(sorted(sizes.items(), key=lambda kv: -kv[1]))


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def evaluate(store: ObjectStore, plan: EvaluationPlan, emit: Callable[..., None] = lambda *a, **k: None,
             check: Callable[[], None] = lambda: None) -> Evaluation:
    device = select_device()
    weights = _read_ref(store, plan.weights, "extractor weights") if plan.weights.get("uri") else None
    overrides = dict(plan.extractor_overrides)
    if plan.weights.get("sha256"):
        overrides.setdefault("weights_sha256", plan.weights["sha256"])
    extractor = FEATURE_EXTRACTORS.create(plan.extractor, plan.profile, overrides, weights=weights,
                                          device=device) if plan.use_extractor else None
    domain = None
    if any(m in DOMAIN for m in plan.metrics):
        domain = domain_extractor_from_checkpoint(_read_ref(store, plan.checkpoint, "classifier checkpoint"), device,
                                                  FEATURE_EXTRACTORS.config("domain", plan.profile).batch_size)
    sets = [ImageSet(store, spec) for spec in [plan.real, *plan.synthetic]]
    spaces = [e for e in (extractor, domain) if e is not None]
    first = spaces[0]  # the space of memorization and of the image-size record: Inception's unless absent
    progress = _Progress(emit, len(sets) * len(spaces) + len(plan.synthetic) + 4)
    cache, timings = FeatureCache(store), []
    features = {e.name: {s.spec.name: _features(cache, e, s, progress, check, timings) for s in sets} for e in spaces}
    real_name = plan.real.name
    main = features[first.name]
    report: dict[str, Any] = {"sets": {}, "notes": list(plan.notes)}
    if extractor is not None and not extractor.weights_upstream:
        report["notes"].append(f"{extractor.name} weights {extractor.weights_sha256[:12]}… are not the published "
                               "file: numbers are not comparable with published values")

    real_entry: dict[str, Any] = {"count": len(sets[0]), "image_sizes": _sizes(main[real_name])}
    if "isc" in plan.metrics:
        real_entry["isc_mean"], real_entry["isc_std"] = inception_score(
            main[real_name][extractor.layers["isc"]], plan.configs["isc"].splits, plan.seed)
    if "fid" in plan.metrics and len(sets[0]) >= 4:
        # The FID of two random halves of the real set: what sampling alone gives at this size.
        order = np.random.default_rng(plan.seed).permutation(len(sets[0]))
        real_fid = main[real_name][extractor.layers["fid"]]
        half = len(order) // 2
        real_entry["fid_real_halves"] = frechet_distance(real_fid[order[:half]], real_fid[order[half:2 * half]])
    report["real"] = real_entry
    files: dict[str, tuple[bytes, str]] = {}
    for images in sets[1:]:
        check()
        name = images.spec.name
        entry: dict[str, Any] = {"count": len(images), "intended_label": images.spec.intended_label,
                                 "image_sizes": _sizes(main[name])}
        for metric in (m for m in plan.metrics if m in PAIRWISE):
            entry.update(compute(metric, plan.configs[metric], main[real_name], main[name], extractor.layers,
                                 plan.seed))
        for metric in (m for m in plan.metrics if m in ("domain_fid", "domain_kid")):
            space = features["domain"]
            entry.update(compute(metric, plan.configs[metric], space[real_name], space[name], domain.layers, plan.seed))
        report["sets"][name] = entry
        progress.advance(f"metrics of {name}")

    if "class_anchoring" in plan.metrics:
        classes = domain.extra.get("class_names") or list(CLASSES)
        results = {s.spec.name: anchoring.anchoring_from_probabilities(
            anchoring.softmax(features["domain"][s.spec.name]["logits"].numpy()), classes, s.spec.anchoring_labels)
            for s in sets[1:]}
        report["class_anchoring"] = results
        for name, result in results.items():
            report["sets"][name]["anchoring_share"] = result["share_intended"]
            report["sets"][name]["anchoring_confidence_mean"] = result["confidence_mean"]
        files["anchoring_confidence"] = (anchoring.confidence_histogram_png(results), "anchoring_confidence.png")
    progress.advance("class anchoring")

    if "feature_space" in plan.metrics:
        report["feature_space"] = {}
        for space in spaces:
            layer = space.layers["fid"]
            numbers, plots = analysis.feature_space_report(
                features[space.name][real_name][layer].numpy(),
                {s.spec.name: features[space.name][s.spec.name][layer].numpy() for s in sets[1:]},
                _safe(space.name), plan.configs["feature_space"], plan.seed)
            report["feature_space"][space.name] = numbers
            files.update({Path(f).stem: (png, f) for f, png in plots.items()})
    progress.advance("feature-space analysis")

    if "memorization" in plan.metrics:
        config = plan.configs["memorization"]
        report["memorization"] = {}
        layer = first.layers["fid"]
        report["memorization_space"] = first.name
        for images in sets[1:]:
            check()
            result = memorization.memorization_report(
                main[images.spec.name][layer].numpy(), main[real_name][layer].numpy(), images.image, sets[0].image,
                config, images.ids, sets[0].ids)
            report["memorization"][images.spec.name] = result
            report["sets"][images.spec.name]["memorized_share"] = result["share_flagged"]
            pairs = memorization.closest_pairs(result, config.grid_pairs)
            files[f"memorization_{_safe(images.spec.name)}"] = (memorization.closest_pairs_png(
                pairs, images.image, sets[0].image), f"memorization_{_safe(images.spec.name)}.png")
    progress.advance("memorization")

    if plan.grid_images:
        rng = np.random.default_rng(plan.seed)
        for images in sets:
            chosen = np.sort(rng.choice(len(images), min(plan.grid_images, len(images)), replace=False))
            files[f"samples_{_safe(images.spec.name)}"] = (analysis.image_grid_png(
                [images[int(i)] for i in chosen], title=f"{images.spec.name} ({len(images)} images)"),
                f"samples_{_safe(images.spec.name)}.png")
    progress.advance("sample grids")

    extracted = sum(n for n, _ in timings)
    seconds = sum(t for _, t in timings)
    report["provenance"] = {
        "extractor": extractor.provenance() if extractor else None,
        "domain_extractor": domain.provenance() if domain else None,
        "image_counts": {s.spec.name: len(s) for s in sets}, "libraries": library_versions(),
        "device": describe_device(), "code_version": code_version(), "seed": plan.seed, "profile": plan.profile,
        "metrics": plan.metrics, "configs": {m: dataclasses.asdict(c) for m, c in plan.configs.items()},
        "real": {"manifest": plan.real.manifest_uri, "manifest_sha256": plan.real.manifest_sha256,
                 **plan.real.selection, "set_hash": sets[0].content_hash()},
        "synthetic": {s.spec.name: {"manifest": s.spec.manifest_uri, "manifest_sha256": s.spec.manifest_sha256,
                                    "set_hash": s.content_hash()} for s in sets[1:]},
        "feature_cache": {"hits": cache.hits, "misses": cache.misses},
        "extraction": {"images": extracted, "seconds": seconds,
                       "images_per_s": extracted / seconds if seconds > 0 else None},
    }
    return Evaluation(report, files)


# -- the Markdown summary ----------------------------------------------------------------------------------
_COLUMNS = (("count", "n", "{:d}"), ("fid", "FID", "{:.2f}"), ("kid_mean", "KID", "{:.4f}"),
            ("isc_mean", "IS", "{:.2f}"), ("precision", "precision", "{:.3f}"), ("recall", "recall", "{:.3f}"),
            ("domain_fid", "domain FID", "{:.2f}"), ("domain_kid_mean", "domain KID", "{:.4f}"),
            ("memorized_share", "memorized", "{:.1%}"), ("anchoring_share", "anchored", "{:.1%}"))


def report_markdown(report: dict[str, Any]) -> str:
    rows = {"real": report["real"], **report["sets"]}
    columns = [c for c in _COLUMNS if any(c[0] in r for r in rows.values())]
    lines = ["# Evaluation of synthetic sets", "", "| set | " + " | ".join(c[1] for c in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for name, row in rows.items():
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            cell = "" if value is None else fmt.format(value)
            if key in ("kid_mean", "domain_kid_mean", "isc_mean") and value is not None:
                std = row.get(key.replace("_mean", "_std"))
                cell += f" ± {std:.4f}" if std is not None else ""
            cells.append(cell)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    extractor = report["provenance"]["extractor"]
    if extractor:
        lines += ["", f"Extractor: {extractor['extractor']} (weights sha256 {extractor['weights_sha256'][:16]}…, "
                      f"{'published file' if extractor['weights_upstream'] else 'NOT the published file'}); "
                      f"resize: {extractor['resize']}."]
    domain = report["provenance"]["domain_extractor"]
    if domain:
        lines += ["", f"Domain space: {domain.get('classifier', 'classifier')} penultimate layer (checkpoint sha256 "
                      f"{domain['weights_sha256'][:16]}…); {domain['resize']}."]
    lines += ["", f"Real set: {report['real']['count']} images"
              + (f"; FID between its random halves {report['real']['fid_real_halves']:.2f}"
                 if "fid_real_halves" in report["real"] else "") + "."]
    if report["notes"]:
        lines += ["", "Notes:"] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


# -- the servicer and the job --------------------------------------------------------------------------------
def _describe(name: str) -> dict[str, Any]:
    for registry in (METRICS, FEATURE_EXTRACTORS):
        if name in registry:
            return registry.describe(name)
    raise NotFound(f"no metric or feature extractor named {name!r}",
                   hint=f"registered: {', '.join(METRICS.names() + FEATURE_EXTRACTORS.names())}")


class EvaluationServicer(evaluation_pb2_grpc.EvaluationServicer):
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def GetServiceInfo(self, request, context):
        return service_info(self.ctx, METRICS.names() + FEATURE_EXTRACTORS.names())

    def ListMetrics(self, request, context):
        return list_response(METRICS.describe, METRICS.names())

    def ListFeatureExtractors(self, request, context):
        return list_response(FEATURE_EXTRACTORS.describe, FEATURE_EXTRACTORS.names())

    def Describe(self, request, context):
        return entry_from_description(_describe(request.name))

    def StartEvaluation(self, request, context):
        data = request_to_dict(request)
        plan_evaluation(self.ctx.store, data)  # refuses a bad request before a job exists
        return job_reply(self.ctx.runner, "evaluate", data)


def _evaluate_job(request: dict[str, Any], ctx) -> dict[str, Any]:
    plan = plan_evaluation(ctx.store, request)
    ctx.progress(0, 0, "planned: " + ", ".join(plan.metrics))
    result = evaluate(ctx.store, plan, ctx.progress, ctx.check_cancelled)
    report = result.report
    provenance = report["provenance"]
    address = content_address(STAGE, STAGE_VERSION, [provenance["real"]["set_hash"]] + [
        s["set_hash"] for s in provenance["synthetic"].values()], {
        "metrics": plan.metrics, "configs": provenance["configs"], "extractor": (provenance["extractor"] or {}).get(
            "weights_sha256", ""), "domain": (provenance["domain_extractor"] or {}).get("weights_sha256", ""),
        "names": list(provenance["synthetic"])}, plan.seed)
    prefix = output_prefix(STAGE, address)
    for name, (data, filename) in result.files.items():
        info = ctx.store.put_bytes(f"{prefix}/{filename}", data, "image/png")
        ctx.add_output(name, ctx.store.uri(info.key), info.sha256)
    report["outputs"] = {o["name"]: o["uri"] for o in ctx.record.outputs}
    info = ctx.store.put_bytes(f"{prefix}/report.json", json.dumps(report, indent=1, sort_keys=True).encode(),
                               "application/json")
    ctx.add_output("report_json", ctx.store.uri(info.key), info.sha256)
    md = ctx.store.put_bytes(f"{prefix}/report.md", report_markdown(report).encode(), "text/markdown")
    ctx.add_output("report_md", ctx.store.uri(md.key), md.sha256)
    summary_keys = ("count", "fid", "kid_mean", "kid_std", "isc_mean", "isc_std", "precision", "recall",
                    "domain_fid", "domain_kid_mean", "domain_kid_std", "memorized_share", "anchoring_share")
    return {
        "sets": {n: {k: v for k, v in s.items() if k in summary_keys} for n, s in report["sets"].items()},
        "real": {k: v for k, v in report["real"].items() if k != "image_sizes"},
        "extractor": (provenance["extractor"] or {}).get("extractor"),
        "weights_sha256": (provenance["extractor"] or {}).get("weights_sha256"),
        "weights_upstream": (provenance["extractor"] or {}).get("weights_upstream"),
        "feature_cache": provenance["feature_cache"],
        "notes": report["notes"],
    }


def setup(ctx: ServiceContext) -> None:
    evaluation_pb2_grpc.add_EvaluationServicer_to_server(EvaluationServicer(ctx), ctx.server)
    ctx.runner.register("evaluate", _evaluate_job)

