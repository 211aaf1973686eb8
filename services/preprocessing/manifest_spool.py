"""Write an output manifest without holding its items in memory.

A run over N items used to keep every output ``Item`` (with its measurements) in a list, then build the
whole manifest as one dict and one JSON string: memory grew by ~15 KiB per item. The spool appends each
item's JSON to a temporary file as soon as it is stored, and at the end streams header, items and trailer
to the store with ``put_stream``. The bytes are exactly ``Manifest.to_json()``'s (the same ``sort_keys``
and ``indent=1`` layout), so the manifest's sha256, and every content address made from it, is the same
as a manifest built in memory.
"""

from __future__ import annotations

import json
import tempfile
from typing import Any

from skingenbench.services.core.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    Item,
    ManifestRef,
    Provenance,
    Skipped,
)
from skingenbench.services.platform.store import ObjectStore

_PLACEHOLDER = "\x00items\x00"


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays, as Manifest.to_json accepts them
        return value.tolist()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def _dumps(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=_jsonable)


class ManifestSpool:
    """Collects items on disk; :meth:`write` puts the manifest in the store (call it last)."""

    def __init__(self) -> None:
        self._items = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self.count = 0

    def add(self, item: Item) -> None:
        # An item sits two levels deep (top-level dict, "items" list): each of its lines gets two spaces.
        text = "  " + _dumps(item.to_dict()).replace("\n", "\n  ")
        self._items.write((",\n" if self.count else "") + text)
        self.count += 1

    def write(
        self,
        store: ObjectStore,
        key: str,
        *,
        name: str,
        provenance: Provenance,
        skipped: list[Skipped],
        extra: dict[str, Any],
    ) -> ManifestRef:
        from dataclasses import asdict

        document = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "name": name,
            "provenance": asdict(provenance),
            "items": [_PLACEHOLDER] if self.count else [],
            "skipped": [asdict(s) for s in skipped],
            "extra": extra,
        }
        head, _, tail = _dumps(document).partition(_dumps(_PLACEHOLDER))
        if self.count:  # the placeholder's own indentation is in ``head``; the items bring theirs
            head = head[: -len("  ")]
        with tempfile.TemporaryFile("w+b") as out:
            out.write(head.encode())
            self._items.seek(0)
            while chunk := self._items.read(1 << 20):
                out.write(chunk.encode())
            out.write(tail.encode())
            out.seek(0)
            info = store.put_stream(key, out, "application/json")
        return ManifestRef(store.uri(key), info.sha256, self.count)

    def close(self) -> None:
        self._items.close()

    def __enter__(self) -> ManifestSpool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
