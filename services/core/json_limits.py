"""Bounds on the JSON a service parses, checked before it is parsed: size and nesting depth.

CPython's ``json`` decoder recurses once per nested array or object, so a request field of 100,000 ``[``
runs into the interpreter's recursion limit (a ``RecursionError``, which the status mapping once answered
with INTERNAL), and a few megabytes of nesting are cheap to send. Every ``*_json`` request field and
every manifest is therefore measured first, without recursion and without building any object, and
refused with INVALID_ARGUMENT when it is larger or deeper than these limits:

- ``MAX_JSON_DEPTH`` (64): nested arrays/objects. Configs are two levels deep (a section and its keys),
  manifests four or five (items, an item, its ``meta`` or ``objects``, an entry).
- ``MAX_FIELD_JSON_BYTES`` (1 MiB): a ``*_json`` request field (config overrides, options): a config is
  a few hundred bytes.
- ``MAX_MANIFEST_BYTES`` (1 GiB): a manifest document, about 1.5 million items of a preprocessed set.

JSON's grammar is RFC 8259; its section 9 lets a parser "set limits on the maximum depth of nesting" and
"on the size of texts it accepts", which is what this does.
"""

from __future__ import annotations

import re

from skingenbench.services.core.errors import InvalidArgument

MAX_JSON_DEPTH = 64
MAX_FIELD_JSON_BYTES = 1 << 20
MAX_MANIFEST_BYTES = 1 << 30

# A JSON string (RFC 8259 section 7), unrolled so that the regex engine runs without backtracking; the
# brackets inside strings are not structure and are dropped with them.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_OPENERS = frozenset(b"[{")


def json_depth(raw: str | bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text (0 for a scalar), found by one linear
    scan: no recursion, whatever the input. Malformed text gets a number too; parsing it then fails."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if data.count(b"[") + data.count(b"{") == 0:
        return 0
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    depth = deepest = 0
    for byte in brackets:
        if byte in _OPENERS:
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def check_json_bounds(raw: str | bytes, what: str, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse a JSON text larger than ``max_bytes`` or nested deeper than ``max_depth``, naming ``what``."""
    size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) else len(raw)
    if size > max_bytes:
        raise InvalidArgument(
            f"{what} is {size} bytes; at most {max_bytes} are accepted",
            hint="JSON limits: skingenbench.services.core.json_limits",
            field=what,
        )
    # At most one opener per byte: a text shorter than the limit cannot be deeper than it.
    if size > max_depth and json_depth(raw) > max_depth:
        raise InvalidArgument(
            f"{what} nests arrays/objects more than {max_depth} levels deep",
            hint="JSON limits: skingenbench.services.core.json_limits",
            field=what,
        )
