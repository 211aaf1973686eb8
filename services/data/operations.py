"""Data operations on a store, shared by the preprocessing service's jobs and the CLI.

Thin glue over the importers, the phantom generator and the splitter: each takes plain arguments,
writes objects then a manifest, and returns the manifest reference and its curation report keys.
The checks come first and apart (``import_options``, ``phantom_settings``, ``split_prefix``), so the
service's jobs run them once at Start; the CLI's ``import_source`` and ``split_sources`` run them and
then the work. Neither looks for earlier outputs: in the service, the job framework's completion
marker reattaches an identical finished job.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.hashing import content_address, output_prefix
from skingenbench.services.core.manifest import MANIFEST_NAME, Manifest, ManifestRef, ParentRef
from skingenbench.services.data.core.diagnosis_mapping import resolve_mapping
from skingenbench.services.data.core.phantom.config import PhantomConfig
from skingenbench.services.platform.manifest_io import read_manifest, write_manifest
from skingenbench.services.platform.store import ObjectStore

SOURCES = ("ham10000", "milk10k", "phantom")
FOLDER_OPTIONS = {"mapping"}
PHANTOM_OPTIONS = {"count", "width", "height", "ita_bin_weights"}
MAX_PHANTOM_COUNT = 1_000_000
PHANTOM_SIDE = (8, 8192)  # pixels: a lesion needs room to be drawn; far past any dermoscope's frame
SPLIT_STAGE, SPLIT_VERSION = "split", "1"
Progress = Callable[[int, int, str], None]


@dataclass
class DataOutcome:
    ref: ManifestRef
    report_keys: tuple[str, str]
    report: dict[str, Any]


@dataclass(frozen=True)
class PhantomSettings:
    """What a phantom set is generated from (with the seed): the same settings give byte-identical files."""

    count: int = 200
    width: int | None = None  # None: the phantom config's own size (600x450)
    height: int | None = None
    # Relative weights of the six ITA bins (very light ... dark) the skin tones are drawn from; None: the
    # phantom's default, skewed light as in HAM10000 (PhantomConfig.ita_bin_weights).
    ita_bin_weights: tuple[float, ...] | None = None

    def address_settings(self) -> dict[str, Any]:
        """The settings in the import's content address: tone weights only when given, so every phantom
        set made before the option existed keeps its address."""
        settings: dict[str, Any] = {"count": self.count, "width": self.width, "height": self.height}
        if self.ita_bin_weights is not None:
            settings["ita_bin_weights"] = list(self.ita_bin_weights)
        return settings


def local_path(uri: str) -> Path:
    """A folder the server can read: a plain path or a file:// URI."""
    if not uri:
        raise InvalidArgument("source_uri is required: the folder holding the distribution")
    if "://" in uri:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise InvalidArgument(
                f"source_uri must be a local folder or file:// URI, got {uri!r}",
                hint="download the data set onto the preprocessing node first (docs/data.md)",
            )
        return Path(unquote(parsed.path))
    return Path(uri)


def import_options(source: str, options: dict[str, Any]) -> dict[str, Any] | None:
    """Check an import's source and options; returns the diagnosis mapping's dict form (None: the default).

    A phantom set takes no mapping (its codes are HAM10000's); see :func:`phantom_settings` for its options.
    """
    if source not in SOURCES:
        raise InvalidArgument(f"unknown data source {source!r}", hint=f"one of: {', '.join(SOURCES)}")
    known = PHANTOM_OPTIONS if source == "phantom" else FOLDER_OPTIONS
    unknown = set(options) - known
    if unknown:
        raise InvalidArgument(
            f"unknown {source} option(s): {', '.join(sorted(unknown))}",
            hint=f"known: {', '.join(sorted(known))}",
        )
    mapping = options.get("mapping")
    return None if mapping is None else resolve_mapping(mapping, None).to_dict()


def phantom_settings(options: dict[str, Any], seed: int) -> PhantomSettings:
    """A phantom import's options, checked (count 1..1000000, width and height 8..8192, seed >= 0)."""
    import_options("phantom", options)
    if seed < 0:
        raise InvalidArgument(f"phantom seed must be non-negative, got {seed}")
    count = _whole(options.get("count", PhantomSettings.count), "count", 1, MAX_PHANTOM_COUNT)
    sides = [
        None if options.get(name) is None else _whole(options[name], name, *PHANTOM_SIDE)
        for name in ("width", "height")
    ]
    settings = PhantomSettings(count, *sides)
    weights = options.get("ita_bin_weights")
    if weights is None:
        return settings
    settings = PhantomSettings(count, *sides, ita_bin_weights=weights)
    try:  # checked by the phantom's own config (weights, and a size it can draw), with its message
        return replace(settings, ita_bin_weights=_tone_config(settings).ita_bin_weights)
    except (TypeError, ValueError) as error:
        raise InvalidArgument(f"phantom ita_bin_weights: {error}") from None


def _whole(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgument(f"phantom {name} must be a whole number in {low}..{high}, got {value!r}")
    return value


def import_source(
    store: ObjectStore,
    source: str,
    source_uri: str = "",
    options: dict[str, Any] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> DataOutcome:
    """Import HAM10000, MILK10K or a freshly generated phantom set into the store."""
    options = dict(options or {})
    if source == "phantom":
        return import_phantom(store, phantom_settings(options, seed), seed, progress)
    return import_folder(
        store, source, local_path(source_uri), import_options(source, options), progress=progress
    )


def import_folder(
    store: ObjectStore,
    source: str,
    folder: Path,
    mapping: dict[str, Any] | None,
    *,
    pinned_inputs: Iterable[str] | None = None,
    progress: Progress | None = None,
) -> DataOutcome:
    """Import a HAM10000- or MILK10K-layout folder; ``pinned_inputs`` refuses a folder changed since they were read."""
    from skingenbench.services.data.ham10000 import import_ham10000
    from skingenbench.services.data.milk10k import import_milk10k

    importer = import_ham10000 if source == "ham10000" else import_milk10k
    result = importer(folder, store, mapping=mapping, pinned_inputs=pinned_inputs, progress=progress)
    return DataOutcome(result.ref, result.report_keys, result.report)


def import_phantom(
    store: ObjectStore, settings: PhantomSettings, seed: int, progress: Progress | None = None
) -> DataOutcome:
    """Generate a phantom set in a temporary folder and import it (under ``import-phantom/<address>``)."""
    from skingenbench.services.data.core.phantom_dataset import write_phantom_dataset
    from skingenbench.services.data.ham10000 import import_ham10000

    with tempfile.TemporaryDirectory(prefix="sgb-phantom-") as folder:
        write_phantom_dataset(
            folder,
            settings.count,
            width=settings.width,
            height=settings.height,
            seed=seed,
            config=None if settings.ita_bin_weights is None else _tone_config(settings),
            progress=(lambda d, t: progress(d, 2 * t, "generating phantom")) if progress else None,
        )
        result = import_ham10000(
            folder,
            store,
            source="phantom",
            progress=(lambda d, t, m: progress(t + d, 2 * t, m)) if progress else None,
        )
    return DataOutcome(result.ref, result.report_keys, result.report)


def _tone_config(settings: PhantomSettings) -> PhantomConfig:
    """The phantom config with the requested tone weights (and the requested size, which it must agree with)."""
    sizes = {name: value for name in ("width", "height") if (value := getattr(settings, name)) is not None}
    return PhantomConfig(ita_bin_weights=settings.ita_bin_weights, **sizes)


def split_prefix(manifests: Sequence[Manifest], fractions: tuple[float, float, float], seed: int) -> str:
    """Where a split of these manifests' items lives: their items' hashes, the fractions and the seed."""
    address = content_address(
        SPLIT_STAGE,
        SPLIT_VERSION,
        [m.content_hash() for m in manifests],
        {"fractions": list(fractions)},
        seed,
    )
    return output_prefix(SPLIT_STAGE, address)


def split_manifests(
    store: ObjectStore,
    manifests: Sequence[Manifest],
    parents: Sequence[ParentRef],
    fractions: tuple[float, float, float],
    seed: int,
    prefix: str,
) -> DataOutcome:
    """Combine manifests (dropping duplicates), split by lesion, and write the curation report and manifest."""
    from skingenbench.services.data.core.splitting import combine_manifests, split_by_lesion
    from skingenbench.services.data.curation_report import curation_report, write_curation_report

    combined = combine_manifests(manifests, parents=parents)
    split = split_by_lesion(combined, fractions, seed, parents=parents)
    report = curation_report(split)
    report_keys = write_curation_report(store, prefix, report)
    ref = write_manifest(store, f"{prefix}/{MANIFEST_NAME}", split)
    return DataOutcome(ref, report_keys, report)


def split_sources(
    store: ObjectStore, inputs: list[tuple[str, str]], fractions: tuple[float, float, float], seed: int = 0
) -> DataOutcome:
    """Combine manifests (given as (uri, sha256)) and split by lesion, under a content address."""
    from skingenbench.services.data.core.splitting import validate_fractions

    if not inputs:
        raise InvalidArgument("split needs at least one input manifest")
    fractions = validate_fractions(fractions)
    manifests = [read_manifest(store, uri, sha) for uri, sha in inputs]
    parents = [ParentRef(store.uri(store.key_from_uri(uri)), sha) for uri, sha in inputs]
    return split_manifests(
        store, manifests, parents, fractions, seed, split_prefix(manifests, fractions, seed)
    )


def default_workers() -> int:
    from skingenbench.services.core.cpu_limit import usable_cpu_count

    return usable_cpu_count()
