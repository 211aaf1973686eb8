"""A manifest read from a local file one item at a time: what a stage iterates when the set is large.

``Manifest.from_json`` parses the whole document: a 10k-item manifest (17 MB of JSON) became ~60 MB of
Python objects plus the bytes, and a preprocessing run's peak memory grew with its input (issue 20,
item 3). :class:`StreamedManifest` reads the file with ijson's incremental parser (a maintained binding
of the yajl C parser; RFC 8259 JSON, iterative, so nesting depth costs no recursion) in passes:

1. **the header**: every parse event, with the top-level values other than ``items`` built (name,
   provenance, skipped, extra, format, version) and nesting depth counted (the same
   ``MAX_JSON_DEPTH`` as ``core/json_limits.py``);
2. **the items**, each checked with ``Item.from_dict`` and dropped, counting per (label, split, source);
3. again on each :meth:`StreamedManifest.iter_items`, and once for :meth:`content_hash`, whose bytes
   are exactly ``Manifest.content_hash``'s (``canonical_json`` of the item list, fed item by item).

yajl reads a few documents differently from Python's ``json``, which wrote them: it refuses ``NaN``,
``Infinity`` and integers beyond 64 bits, and it turns a lone UTF-16 surrogate escape (``"\\ud800"``)
into ``"?"``. Such a document, and any document the passes refuse (malformed, not a manifest, an item
without its fields), is read instead by ``Manifest.from_json`` itself, in memory: it gets exactly the
items, or exactly the error, it always got. Only a document that streams cleanly is streamed.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from skingenbench.services.core.hashing import canonical_json
from skingenbench.services.core.json_limits import MAX_JSON_DEPTH
from skingenbench.services.core.manifest import (
    Item,
    Manifest,
    Provenance,
    Skipped,
    checked_provenance,
    skipped_entries,
)

_CHUNK = 1 << 16
_ITEMS = "items"
_ITEM_PREFIX = "items.item"  # ijson's path of an element of the top-level "items" array
_OPEN = frozenset(("start_map", "start_array"))
_CLOSE = frozenset(("end_map", "end_array"))
# A \uD800-\uDFFF escape (either half of a surrogate pair). Escapes in pairs read the same in both parsers;
# a file with one of these *and* a "?" in a string may hold a lone one, which yajl turned into that "?".
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class _NotStreamable(Exception):
    """The document is not one the streaming passes read exactly as ``json`` does."""


_DEPTH_PASS_BUFFER = 4096  # bytes per read in the depth pass: at most ~4 Ki events held at once


class StreamedManifest:
    """A manifest document in a local file; its items are parsed one at a time, never all held.

    ``sha256`` is the hash of the file's bytes as the caller read them (``manifest_io.open_manifest``).
    Each :meth:`iter_items` is its own pass over the file, so several may run at once. ``streamed`` is
    False for a document read in memory instead (see the module's docstring).
    """

    name: str
    provenance: Provenance
    skipped: list[Skipped]
    extra: dict[str, Any]
    item_count: int
    streamed: bool

    def __init__(self, path: str | Path, sha256: str = "") -> None:
        import ijson  # noqa: F401  (a declared dependency; missing, it must fail loudly, not fall back)

        self.path = Path(path)
        self.sha256 = sha256
        self._content_hash: str | None = None
        self._in_memory: Manifest | None = None
        try:
            self._scan()
        except Exception:  # noqa: BLE001 (any refusal: json decides, with its own items or its own error)
            self._in_memory = Manifest.from_json(self.path.read_bytes())
            self._take_header(self._in_memory)
        self.streamed = self._in_memory is None

    # -- the passes ---------------------------------------------------------------------------------
    def _scan(self) -> None:
        self._depth_pass()
        header, question_mark = self._header_pass()
        if question_mark and self._has_surrogate_escape():
            raise _NotStreamable("a lone surrogate escape may have been read as '?'")
        self.provenance = checked_provenance(header)
        self._counts: Counter = Counter()
        count = 0
        for item in self._parsed_items():
            self._counts[(item.label, item.split, item.source)] += 1
            count += 1
        self.item_count = count
        self.name = str(header.get("name", ""))
        self.skipped = skipped_entries(header)
        self.extra = dict(header.get("extra") or {})

    def _depth_pass(self) -> None:
        """Refuse a document nested deeper than the JSON limits before any pass with prefixes reads it.

        ijson's C backend parses a whole read buffer into events before Python sees the first, and each
        ``parse`` event carries its dotted prefix: 64 KiB of ``[`` is 64 Ki events whose prefixes grow by
        five characters a level, gigabytes for one buffer (a 100,000-deep manifest took 24 GB). The
        prefix-free ``basic_parse`` on a small buffer holds a few thousand small events at most."""
        import ijson

        depth = 0
        with open(self.path, "rb") as handle:
            for event, _ in ijson.basic_parse(handle, buf_size=_DEPTH_PASS_BUFFER):
                if event in _OPEN:
                    depth += 1
                    if depth > MAX_JSON_DEPTH:
                        raise _NotStreamable("nested deeper than the JSON limits allow")
                elif event in _CLOSE:
                    depth -= 1

    def _header_pass(self) -> tuple[dict[str, Any], bool]:
        """The top-level values but the items, and whether any string holds a '?'; refuses what the item
        pass could misread (not an object at the top, ``items`` not an array, a key twice, a dotted key)."""
        import ijson

        header: dict[str, Any] = {}
        seen: set[str] = set()
        depth, key, builder, question_mark, started = 0, "", None, False, False
        with open(self.path, "rb") as handle:
            for prefix, event, value in ijson.parse(handle, use_float=True):
                if not started:
                    if event != "start_map":
                        raise _NotStreamable("the document is not an object")
                    started = True
                if event in _OPEN:
                    depth += 1
                    if depth > MAX_JSON_DEPTH:
                        raise _NotStreamable("nested deeper than the JSON limits allow")
                elif event in _CLOSE:
                    depth -= 1
                elif event in ("string", "map_key") and "?" in value:
                    question_mark = True
                if depth == 0 or (depth == 1 and event == "start_map" and prefix == ""):
                    continue  # the document's own braces
                if depth == 1 and event == "map_key":
                    if value in seen or "." in value:
                        raise _NotStreamable(f"top-level key {value!r} is repeated or dotted")
                    seen.add(value)
                    key, builder = value, (None if value == _ITEMS else ijson.ObjectBuilder())
                    continue
                if builder is None:  # inside "items": the item pass reads those
                    if prefix == _ITEMS and event != "start_array" and event != "end_array":
                        raise _NotStreamable("items is not an array")
                    continue
                builder.event(event, value)
                if depth == 1:  # the value is complete: a scalar, or the close that ended it
                    header[key] = builder.value
                    builder = None
        if not started:
            raise _NotStreamable("empty document")
        return header, question_mark

    def _has_surrogate_escape(self) -> bool:
        tail = b""
        with open(self.path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                if _SURROGATE_ESCAPE.search(tail + chunk):
                    return True
                tail = chunk[-5:]  # an escape split across two chunks is found in the next window
        return False

    def _parsed_items(self) -> Iterator[Item]:
        import ijson

        with open(self.path, "rb") as handle:
            for index, data in enumerate(ijson.items(handle, _ITEM_PREFIX, use_float=True)):
                yield Item.from_dict(data, index)

    def _take_header(self, manifest: Manifest) -> None:
        self.provenance = manifest.provenance
        self.name = manifest.name
        self.skipped = manifest.skipped
        self.extra = manifest.extra
        self.item_count = len(manifest.items)
        self._counts = manifest.counts()

    # -- what a stage reads (Manifest has the same) -------------------------------------------------
    def iter_items(self) -> Iterator[Item]:
        if self._in_memory is not None:
            return iter(self._in_memory.items)
        return self._parsed_items()

    def counts(self) -> Counter:
        """Counts per (label, split, source), as ``Manifest.counts``."""
        return Counter(self._counts)

    def content_hash(self) -> str:
        """``Manifest.content_hash`` of the same document: sha256 of ``canonical_json`` of the item list,
        whose text is "[" + the items' canonical JSON joined by "," + "]"."""
        if self._content_hash is None:
            if self._in_memory is not None:
                self._content_hash = self._in_memory.content_hash()
            else:
                digest = hashlib.sha256(b"[")
                for index, item in enumerate(self.iter_items()):
                    digest.update((b"," if index else b"") + canonical_json(item.to_dict()).encode())
                digest.update(b"]")
                self._content_hash = digest.hexdigest()
        return self._content_hash
