"""What an evaluation request means: metrics, options, image sets and weights, decided once at Start.

``plan_evaluation`` reads the manifests and checks everything that can be checked without extracting a
feature, so every refusal (unknown metric or option, missing or changed weights and checkpoint, empty
or too small sets) comes from here and a bad request is answered at ``StartEvaluation`` instead of
failing as a job. Defaults a small set cannot meet are lowered and noted in the plan; values the
caller gave are checked strictly. The plan pins every input by sha256 (manifests, the selected items'
hash, the weights and the checkpoint) and names the output prefix, so the job runs on exactly what was
checked and an identical finished evaluation is found instead of recomputed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from skingenbench.services.core.errors import (
    DataIntegrityError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from skingenbench.services.core.manifest import Item
from skingenbench.services.core.registry import config_from_dict
from skingenbench.services.evaluation.core.extractors import FEATURE_EXTRACTORS
from skingenbench.services.evaluation.core.metrics import METRICS
from skingenbench.services.evaluation.core.sample_size import FEATURE_DIMENSIONS, sample_size_warnings
from skingenbench.services.evaluation.feature_cache import image_set_hash
from skingenbench.services.evaluation.model_files import (
    check_references,
    checkpoint_metadata,
    pin_file,
    pin_weights,
)
from skingenbench.services.platform.job_kind import JobPlan, JSONValue, ObjectRef
from skingenbench.services.platform.manifest_io import pin_manifest
from skingenbench.services.platform.servicer import parse_json_field
from skingenbench.services.platform.store import ObjectStore

ALL_METRICS = (
    "fid",
    "kid",
    "isc",
    "prc",
    "domain_fid",
    "domain_kid",
    "feature_space",
    "memorization",
    "class_anchoring",
)
PAIRWISE = ("fid", "kid", "isc", "prc")
DOMAIN = ("domain_fid", "domain_kid", "class_anchoring")
GENERAL_OPTIONS = {"profile", "grid_images", "strict_sample_size"}
DEFAULT_EXTRACTOR = "inception-v3-compat"
DEFAULT_LABEL = "MEL"
Address = Callable[[list[str], dict[str, JSONValue], int], str]  # ``JobKind.address`` of the evaluate kind


@dataclass(frozen=True)
class SetRef:
    """An image set by reference: its manifest pinned by the sha256 of its bytes, the selection (the real
    set's splits and labels; a synthetic set is all its items) and the hash of the items it selects."""

    name: str
    manifest: ObjectRef
    set_hash: str
    count: int
    intended_label: str = ""
    per_item_labels: bool = False  # class anchoring against each item's own label (conditional sets)
    splits: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()

    @property
    def is_selection(self) -> bool:
        return bool(self.splits or self.labels)

    def selects(self, item: Item) -> bool:
        return not self.is_selection or (item.split in self.splits and item.label in self.labels)


@dataclass(frozen=True)
class EvaluationPlan(JobPlan):
    real: SetRef
    synthetic: tuple[SetRef, ...]
    metrics: tuple[str, ...]
    configs: dict[
        str, dict[str, JSONValue]
    ]  # metric -> its config's fields (``metric_configs`` rebuilds them)
    profile: str
    extractor: str
    extractor_overrides: dict[str, JSONValue]
    weights: ObjectRef  # as requested; no URI: the extractor's default file, ``weights_file``
    weights_file: str
    weights_sha256: str  # of the bytes read at Start; "" when only the domain space is evaluated
    checkpoint: ObjectRef  # pinned at Start when a domain metric reads it
    grid_images: int
    seed: int
    notes: tuple[str, ...] = ()
    use_extractor: bool = True  # False: only the domain space is evaluated (weights absent, or not needed)
    # Refuse (FAILED_PRECONDITION) instead of warning below the documented sample-size minimums
    # (core/sample_size.py): at Start where the feature width is known then, in the job otherwise.
    strict_sample_size: bool = False

    def metric_configs(self) -> dict[str, Any]:
        return {
            m: config_from_dict(METRICS.get(m).config_cls, None, fields) for m, fields in self.configs.items()
        }


def _split_options(
    options: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, Any]]:
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
                raise InvalidArgument(
                    f"unknown option {key!r} in options_json",
                    hint="options are profile, grid_images, strict_sample_size, extractor_<field> or "
                    "<metric>_<field>, "
                    "e.g. kid_subset_size, prc_k, fid_real_baseline (the real-vs-real FID at each "
                    f"synthetic set's N, off by default); metrics: {', '.join(ALL_METRICS)}",
                )
            per_metric.setdefault(metric, {})[key.removeprefix(f"{metric}_")] = value
    return general, per_metric, extractor


def _select_metrics(requested: list[str], has_checkpoint: bool, extractor: str) -> list[str]:
    unknown = [m for m in requested if m not in ALL_METRICS]
    if unknown:
        raise InvalidArgument(
            f"unknown metric(s) {', '.join(unknown)}", hint=f"known: {', '.join(ALL_METRICS)}"
        )
    inception = FEATURE_EXTRACTORS.get(extractor).capabilities.get("inception_score") == "true"
    if requested:
        missing = [m for m in requested if m in DOMAIN]
        if missing and not has_checkpoint:
            raise InvalidArgument(
                f"{', '.join(missing)} need a classifier checkpoint",
                hint="set classifier_checkpoint to a classification service checkpoint",
            )
        if "isc" in requested and not inception:
            raise InvalidArgument(
                f"the Inception Score needs Inception logits; extractor {extractor!r} has none"
            )
        return [m for m in ALL_METRICS if m in requested]
    return [m for m in ALL_METRICS if (m not in DOMAIN or has_checkpoint) and (m != "isc" or inception)]


def _manifest_items(store: ObjectStore, ref: dict[str, Any], what: str) -> tuple[list[Item], ObjectRef]:
    """A manifest's items and the manifest pinned: its store URI and the sha256 of its bytes as read now."""
    uri = ref.get("uri", "")
    if not uri:
        raise InvalidArgument(f"{what} manifest is required")
    key = store.key_from_uri(uri)
    if not store.exists(key):
        raise NotFound(f"{what} manifest not found: {uri}")
    manifest, sha256 = pin_manifest(store, uri, ref.get("sha256", ""))
    return manifest.items, ObjectRef(store.uri(key), sha256)


def _set_ref(name: str, items: list[Item], manifest: ObjectRef, **selection: Any) -> SetRef:
    return SetRef(
        name, manifest, image_set_hash((item.key, item.sha256) for item in items), len(items), **selection
    )


def _adjust_sizes(
    plan_configs: dict[str, Any], explicit: dict[str, dict[str, Any]], smallest: int, notes: list[str]
) -> None:
    """Defaults that a small set cannot meet are lowered (and noted); explicit values are checked strictly."""
    for metric in ("kid", "domain_kid"):
        config = plan_configs.get(metric)
        if config is None or config.subset_size <= smallest:
            continue
        if "subset_size" in explicit.get(metric, {}):
            raise InvalidArgument(
                f"{metric} subset size {config.subset_size} is larger than the smallest set "
                f"({smallest} images)",
                hint=f"set {metric}_subset_size to at most {smallest}",
            )
        notes.append(
            f"{metric}: subset size lowered from {config.subset_size} to {smallest} (the smallest set)"
        )
        plan_configs[metric] = dataclasses.replace(config, subset_size=smallest)
    isc = plan_configs.get("isc")
    if isc is not None and isc.splits > smallest:
        if "splits" in explicit.get("isc", {}):
            raise InvalidArgument(
                f"IS with {isc.splits} splits needs at least {isc.splits} images per set, the "
                f"smallest has {smallest}",
                hint=f"set isc_splits to at most {smallest}",
            )
        notes.append(f"isc: splits lowered from {isc.splits} to {smallest}")
        plan_configs["isc"] = dataclasses.replace(isc, splits=smallest)
    prc = plan_configs.get("prc")
    if prc is not None and prc.k >= smallest:
        raise InvalidArgument(
            f"precision/recall with k={prc.k} needs more than {prc.k} images per set, the "
            f"smallest has {smallest}",
            hint=f"set prc_k below {smallest}",
        )


def plan_evaluation(store: ObjectStore, request: dict[str, Any], address: Address) -> EvaluationPlan:
    """Validate a request (as a dict) and decide everything the job will do; ``address`` names its outputs."""
    options = parse_json_field(request.get("options_json", ""), "options_json")
    general, per_metric, extractor_overrides = _split_options(options)
    profile = str(general.get("profile") or "paper")
    extractor = request.get("feature_extractor") or DEFAULT_EXTRACTOR
    if extractor == "domain":
        raise InvalidArgument(
            "the domain feature space is requested as metrics domain_fid / domain_kid",
            hint="keep feature_extractor for torch-fidelity's networks and set classifier_checkpoint",
        )
    if extractor not in FEATURE_EXTRACTORS:
        raise InvalidArgument(
            f"unknown feature extractor {extractor!r}",
            hint=f"one of: {', '.join(n for n in FEATURE_EXTRACTORS.names() if n != 'domain')}",
        )
    checkpoint = dict(request.get("classifier_checkpoint") or {})
    weights = dict(request.get("extractor_weights") or {})
    # The read rule first, for every file the request names, whether or not this plan will read it: a path
    # outside the store and the read roots is refused the same way whether it exists (no oracle).
    check_references(store, {"extractor weights": weights, "classifier checkpoint": checkpoint})
    metrics = _select_metrics(list(request.get("metrics") or []), bool(checkpoint.get("uri")), extractor)
    stray = sorted(set(per_metric) - set(metrics))
    if stray:
        raise InvalidArgument(f"options given for metric(s) not evaluated: {', '.join(stray)}")
    extractor_config = FEATURE_EXTRACTORS.config(
        extractor, profile, extractor_overrides
    )  # validates them now
    notes: list[str] = []
    weights_file, weights_sha256 = "", ""
    # Named metrics that all live in the classifier's space (e.g. class anchoring alone) need no Inception.
    use_extractor = not (request.get("metrics") and checkpoint.get("uri") and set(metrics) <= set(DOMAIN))
    try:
        if use_extractor:
            weights_file, weights_sha256 = pin_weights(store, extractor, weights)
    except FailedPrecondition as missing:
        # "All that the given inputs allow": with no metric named and a classifier checkpoint given, the
        # domain space is evaluated alone, and the report says what was skipped and why. Memorization
        # named alone (the grid's quality gate) is answered the same way, in the classifier's space.
        alone_in_domain = set(metrics) <= {*DOMAIN, "memorization"}
        if (request.get("metrics") and not alone_in_domain) or not checkpoint.get("uri"):
            raise
        use_extractor = False
        metrics = [m for m in metrics if m not in PAIRWISE]
        notes.append(f"FID, KID, IS and precision/recall skipped: {missing}")
    expected = getattr(extractor_config, "weights_sha256", "")
    if use_extractor and expected and expected != weights_sha256:
        raise DataIntegrityError(
            f"the {extractor} weights have sha256 {weights_sha256[:12]}…, expected {expected[:12]}…",
            hint="the file changed or is another file",
        )
    configs = {m: METRICS.config(m, profile, per_metric.get(m)) for m in metrics}

    synthetic_refs = list(request.get("synthetic") or [])
    if not synthetic_refs:
        raise InvalidArgument("at least one synthetic set is required")
    synthetic, wanted = [], set()
    for index, entry in enumerate(synthetic_refs):
        name = entry.get("name") or f"synthetic_{index}"
        items, manifest = _manifest_items(store, entry.get("manifest") or {}, f"synthetic set {name!r}")
        if not items:
            raise InvalidArgument(f"synthetic set {name!r} is empty ({manifest.uri})")
        label, per_item = entry.get("intended_label") or DEFAULT_LABEL, bool(entry.get("per_item_labels"))
        wanted |= {i.label for i in items} if per_item else {label}
        synthetic.append(_set_ref(name, items, manifest, intended_label=label, per_item_labels=per_item))
    names = [s.name for s in synthetic]
    if len(set(names)) != len(names) or "real" in names:
        raise InvalidArgument("synthetic set names must be unique and not 'real'", hint=f"got {names}")

    items, manifest = _manifest_items(store, request.get("real") or {}, "real")
    splits = list(request.get("real_splits") or ["train"])
    labels = list(request.get("real_labels") or sorted(wanted))
    real_items = [i for i in items if i.split in splits and i.label in labels]
    if not real_items:
        raise FailedPrecondition(
            f"no real items with split in {splits} and label in {labels} ({manifest.uri})",
            hint="check real_splits and real_labels against the manifest",
        )
    real = _set_ref("real", real_items, manifest, splits=tuple(splits), labels=tuple(labels))

    if "memorization" in metrics and splits != ["train"]:
        notes.append(
            f"memorization compares with the real selection (splits {splits}), not only the training "
            "split the generators were trained on"
        )
    smallest = min(s.count for s in [real, *synthetic])
    _adjust_sizes(configs, per_metric, smallest, notes)
    for metric in ("fid", "domain_fid"):
        if metric in metrics and smallest < 2:
            raise InvalidArgument(f"{metric} needs at least 2 images per set")
    strict = general.get("strict_sample_size", False)
    if not isinstance(strict, bool):
        raise InvalidArgument(f"strict_sample_size must be true or false, got {strict!r}")
    if strict:
        _refuse_small_samples(metrics, [real, *synthetic], configs, extractor if use_extractor else "")
    grid_images = int(general.get("grid_images", 16))
    if not 0 <= grid_images <= 256:
        raise InvalidArgument(f"grid_images must be in 0..256, got {grid_images}")
    seed = int(request.get("seed", 0))
    uses_domain = any(m in DOMAIN for m in metrics)
    checkpoint_ref = ObjectRef(checkpoint.get("uri", ""), checkpoint.get("sha256", ""))
    if uses_domain:  # pinned last (the largest read): the job reads exactly the checkpoint checked here
        checkpoint_ref = ObjectRef(checkpoint_ref.uri, pin_file(store, checkpoint, "classifier checkpoint"))
        checkpoint_metadata(store, checkpoint)  # a checkpoint at all: refused now, not a failed job
    config_fields = {m: dataclasses.asdict(c) for m, c in configs.items()}
    # The address names everything that shapes the outputs: the selected sets' hashes, the metrics and their
    # configs, the weights' and the checkpoint's hashes, the set names, and (since version 2) what each
    # synthetic set is anchored against, the extractor and its settings, and the sample grids. Version 1
    # left those out, so two requests differing only there shared a prefix. Version 3 adds the sample-size
    # strictness (its outputs: warnings, the baseline at the synthetic sets' N, no zero KID std).
    prefix = address(
        [real.set_hash] + [s.set_hash for s in synthetic],
        {
            "metrics": metrics,
            "configs": config_fields,
            "extractor": weights_sha256 if use_extractor else "",
            "domain": checkpoint_ref.sha256 if uses_domain else "",
            "names": names,
            "anchoring": [[s.intended_label, s.per_item_labels] for s in synthetic],
            "extractor_name": extractor if use_extractor else "",
            "profile": profile,
            "extractor_options": extractor_overrides if use_extractor else {},
            "grid_images": grid_images,
            "strict_sample_size": strict,
        },
        seed,
    )
    return EvaluationPlan(
        prefix,
        real,
        tuple(synthetic),
        tuple(metrics),
        config_fields,
        profile,
        extractor,
        extractor_overrides,
        ObjectRef(weights.get("uri", ""), weights.get("sha256", "")),
        weights_file,
        weights_sha256 if use_extractor else "",
        checkpoint_ref,
        grid_images,
        seed,
        tuple(notes),
        use_extractor,
        strict,
    )


def _refuse_small_samples(
    metrics: list[str], sets: list[SetRef], configs: dict[str, Any], extractor: str
) -> None:
    """``strict_sample_size``: below a documented minimum (core/sample_size.py) the request is refused now.
    The extractor space's width is known from its name; the domain space's only once the checkpoint's network
    is built, so the job checks that one (and fails with FAILED_PRECONDITION)."""
    counts = {s.name: s.count for s in sets}
    warnings = sample_size_warnings(
        metrics, counts, {"extractor": FEATURE_DIMENSIONS.get(extractor), "domain": None}, configs
    )
    if warnings:
        raise FailedPrecondition(
            "strict_sample_size: " + "; ".join(w.message for w in warnings),
            hint="evaluate more images (the grid's evaluation_count; the reference used 5,000 per generator) "
            "or drop strict_sample_size to get the numbers with these warnings",
        )
