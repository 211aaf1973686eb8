"""Manifests: the JSON description of an image set (DESIGN.md, rule 2).

A manifest lists per item the object key, its sha256, label, lesion id, source and split, plus free
metadata and side objects (masks, clean references); and the provenance of the whole set: parent
manifests, stage, config, seed and code version. It is written after every object it names, so a
half-written output is never visible, and it is verified on read: a hash that does not match is an
error, never a warning.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from skingenbench.services.core.errors import InvalidArgument
from skingenbench.services.core.hashing import canonical_json, sha256_bytes
from skingenbench.services.core.json_limits import MAX_MANIFEST_BYTES, check_json_bounds
from skingenbench.services.core.object_keys import validate_key
from skingenbench.services.core.version import code_version

MANIFEST_FORMAT = "skingenbench.manifest"
MANIFEST_VERSION = 1
MANIFEST_NAME = "manifest.json"


@dataclass
class ObjectEntry:
    """A side object of an item (a mask, a clean reference image)."""

    key: str
    sha256: str


@dataclass
class Item:
    key: str
    sha256: str
    label: str
    lesion_id: str
    split: str = ""
    source: str = ""
    image_id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    objects: dict[str, ObjectEntry] = field(default_factory=dict)

    REQUIRED = ("key", "sha256", "label", "lesion_id")

    @classmethod
    def from_dict(cls, data: dict[str, Any], index: int = -1) -> Item:
        where = f"item {index}" if index >= 0 else "item"
        if not isinstance(data, dict):
            raise InvalidArgument(f"manifest {where} is not an object")
        missing = [name for name in cls.REQUIRED if name not in data]
        if missing:
            raise InvalidArgument(f"manifest {where} lacks field(s) {', '.join(missing)}")
        objects = {
            name: ObjectEntry(**entry) if isinstance(entry, dict) else ObjectEntry(str(entry), "")
            for name, entry in (data.get("objects") or {}).items()
        }
        return cls(
            key=validate_key(str(data["key"])),
            sha256=str(data["sha256"]),
            label=str(data["label"]),
            lesion_id=str(data["lesion_id"]),
            split=str(data.get("split", "")),
            source=str(data.get("source", "")),
            image_id=str(data.get("image_id", "")),
            meta=dict(data.get("meta") or {}),
            objects=objects,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Skipped:
    """An input item a stage could not process, and why; the stage goes on without it."""

    ref: str
    reason: str


@dataclass
class ParentRef:
    uri: str
    sha256: str


@dataclass
class Provenance:
    stage: str
    stage_version: str = "1"
    config: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None
    parents: list[ParentRef] = field(default_factory=list)
    code_version: str = field(default_factory=code_version)
    created_at: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        data = dict(data)
        data["parents"] = [ParentRef(**p) for p in data.get("parents", [])]
        return cls(**data)


@dataclass
class Manifest:
    items: list[Item]
    provenance: Provenance
    name: str = ""
    skipped: list[Skipped] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    # -- serialisation ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "name": self.name,
            "provenance": asdict(self.provenance),
            "items": [item.to_dict() for item in self.items],
            "skipped": [asdict(s) for s in self.skipped],
            "extra": self.extra,
        }

    def to_json(self) -> bytes:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True, default=_jsonable).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> Manifest:
        # Size and depth are bounded before parsing (core/json_limits.py): deep nesting is refused,
        # never a RecursionError in the decoder.
        check_json_bounds(raw, "manifest", MAX_MANIFEST_BYTES)
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InvalidArgument(f"manifest is not valid JSON: {exc}") from None
        provenance = checked_provenance(data)
        items = [Item.from_dict(entry, i) for i, entry in enumerate(data.get("items") or [])]
        return cls(
            items, provenance, str(data.get("name", "")), skipped_entries(data), dict(data.get("extra") or {})
        )

    # -- views -----------------------------------------------------------------------------------
    def iter_items(self) -> Iterator[Item]:
        """The items one by one: what :class:`StreamedManifest` offers too, so a stage takes either."""
        return iter(self.items)

    def by_split(self, split: str) -> list[Item]:
        return [item for item in self.items if item.split == split]

    def filter(
        self, *, splits: Iterable[str] | None = None, labels: Iterable[str] | None = None
    ) -> list[Item]:
        splits = set(splits) if splits is not None else None
        labels = set(labels) if labels is not None else None
        return [
            item
            for item in self.items
            if (splits is None or item.split in splits) and (labels is None or item.label in labels)
        ]

    def counts(self) -> Counter:
        """Counts per (label, split, source)."""
        return Counter((item.label, item.split, item.source) for item in self.items)

    def content_hash(self) -> str:
        """Hash of the items alone (not timestamps): what downstream stages address outputs by."""
        return sha256_bytes(canonical_json([item.to_dict() for item in self.items]).encode())


def checked_provenance(data: Any) -> Provenance:
    """What a manifest document is checked for before its items: the format, the version, the provenance."""
    if not isinstance(data, dict) or data.get("format") != MANIFEST_FORMAT:
        raise InvalidArgument("not a SkinGenBench manifest (missing format field)")
    if data.get("version") != MANIFEST_VERSION:
        raise InvalidArgument(
            f"manifest version {data.get('version')!r} is not supported (expected {MANIFEST_VERSION})"
        )
    try:
        return Provenance.from_dict(data.get("provenance") or {})
    except TypeError as exc:
        raise InvalidArgument(f"manifest provenance is malformed: {exc}") from None


def skipped_entries(data: dict[str, Any]) -> list[Skipped]:
    return [Skipped(**s) for s in data.get("skipped") or []]


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


@dataclass(frozen=True)
class ManifestRef:
    uri: str
    sha256: str
    item_count: int
