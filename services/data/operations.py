"""Data operations on a store, shared by the preprocessing service's jobs and the CLI.

Thin glue over the importers, the phantom generator and the splitter: each takes plain arguments,
writes objects then a manifest, and returns the manifest reference and its curation report keys.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.hashing import content_address, output_prefix, sha256_bytes
from skingenbench.services.core.manifest import MANIFEST_NAME, Manifest, ManifestRef, ParentRef
from skingenbench.services.platform.manifest_io import read_manifest, write_manifest
from skingenbench.services.platform.store import ObjectStore

SOURCES = ("ham10000", "milk10k", "phantom")
PHANTOM_OPTIONS = {"count", "width", "height"}
Progress = Callable[[int, int, str], None]


@dataclass
class DataOutcome:
    ref: ManifestRef
    report_keys: tuple[str, str]
    report: dict[str, Any]


def local_path(uri: str) -> Path:
    """A folder the server can read: a plain path or a file:// URI."""
    if not uri:
        raise InvalidArgument("source_uri is required: the folder holding the distribution")
    if "://" in uri:
        parsed = urlparse(uri)
        if parsed.scheme != "file":
            raise InvalidArgument(f"source_uri must be a local folder or file:// URI, got {uri!r}",
                                  hint="download the data set onto the preprocessing node first (docs/data.md)")
        return Path(unquote(parsed.path))
    return Path(uri)


def import_source(store: ObjectStore, source: str, source_uri: str = "", options: dict[str, Any] | None = None,
                  seed: int = 0, progress: Progress | None = None) -> DataOutcome:
    """Import HAM10000, MILK10K or a freshly generated phantom set into the store."""
    from skingenbench.services.data.ham10000 import import_ham10000
    from skingenbench.services.data.milk10k import import_milk10k

    options = dict(options or {})
    if source not in SOURCES:
        raise InvalidArgument(f"unknown data source {source!r}", hint=f"one of: {', '.join(SOURCES)}")
    if source == "phantom":
        unknown = set(options) - PHANTOM_OPTIONS
        if unknown:
            raise InvalidArgument(f"unknown phantom option(s): {', '.join(sorted(unknown))}",
                                  hint=f"known: {', '.join(sorted(PHANTOM_OPTIONS))}")
        from skingenbench.services.data.core.phantom_dataset import write_phantom_dataset

        count = int(options.get("count", 200))
        if count < 1 or count > 1_000_000:
            raise InvalidArgument(f"phantom count must be in 1..1000000, got {count}")
        with tempfile.TemporaryDirectory(prefix="sgb-phantom-") as folder:
            write_phantom_dataset(folder, count, width=options.get("width"), height=options.get("height"),
                                  seed=seed, progress=(lambda d, t: progress(d, 2 * t, "generating phantom"))
                                  if progress else None)
            result = import_ham10000(folder, store, source="phantom",
                                     progress=(lambda d, t, m: progress(t + d, 2 * t, m)) if progress else None)
    elif source == "ham10000":
        result = import_ham10000(local_path(source_uri), store, mapping=options.get("mapping"), progress=progress)
    else:
        result = import_milk10k(local_path(source_uri), store, mapping=options.get("mapping"), progress=progress)
    return DataOutcome(result.ref, result.report_keys, result.report)


def split_sources(store: ObjectStore, inputs: list[tuple[str, str]], fractions: tuple[float, float, float],
                  seed: int = 0) -> DataOutcome:
    """Combine manifests (dropping duplicates) and split by lesion; idempotent by content address."""
    from skingenbench.services.data.core.splitting import (
        combine_manifests,
        split_by_lesion,
        validate_fractions,
    )
    from skingenbench.services.data.curation_report import curation_report, write_curation_report

    if not inputs:
        raise InvalidArgument("split needs at least one input manifest")
    fractions = validate_fractions(fractions)
    manifests = [read_manifest(store, uri, sha) for uri, sha in inputs]
    parents = [ParentRef(store.uri(store.key_from_uri(uri)), sha) for uri, sha in inputs]
    address = content_address("split", "1", [m.content_hash() for m in manifests], {"fractions": list(fractions)},
                              seed)
    prefix = output_prefix("split", address)
    key = f"{prefix}/{MANIFEST_NAME}"
    if store.exists(key):
        raw = store.get_bytes(key)
        manifest = Manifest.from_json(raw)
        report = curation_report(manifest)
        return DataOutcome(ManifestRef(store.uri(key), sha256_bytes(raw), len(manifest.items)),
                           (f"{prefix}/curation_report.json", f"{prefix}/curation_report.md"), report)
    combined = combine_manifests(manifests, parents=parents)
    split = split_by_lesion(combined, fractions, seed, parents=parents)
    report = curation_report(split)
    report_keys = write_curation_report(store, prefix, report)
    ref = write_manifest(store, key, split)
    return DataOutcome(ref, report_keys, report)


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
