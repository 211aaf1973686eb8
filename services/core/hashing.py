"""Content hashing and content addressing (DESIGN.md, rule 3).

An output's location is a hash of its inputs' hashes, its config, its seed and the stage version, so
re-running a stage with the same inputs finds the existing output instead of recomputing it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any, BinaryIO

CHUNK = 1 << 20


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_stream(stream: BinaryIO) -> str:
    digest = hashlib.sha256()
    for chunk in iter(lambda: stream.read(CHUNK), b""):
        digest.update(chunk)
    return digest.hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values always hash equally."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)


def _default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"not JSON-serialisable in a config: {type(value).__name__}")


def content_address(
    stage: str,
    stage_version: str,
    input_hashes: Iterable[str],
    config: Mapping[str, Any] | None = None,
    seed: int | None = None,
) -> str:
    """The hash that names a stage's output: same inputs + config + seed + version, same address.

    Input order matters (a train and a test manifest are not interchangeable), so the hashes are
    kept in the order given.
    """
    payload = {
        "stage": stage,
        "stage_version": stage_version,
        "inputs": list(input_hashes),
        "config": dict(config or {}),
        "seed": seed,
    }
    return sha256_bytes(canonical_json(payload).encode())


def output_prefix(stage: str, address: str) -> str:
    """Store prefix for a content-addressed output; 16 hex digits (64 bits) keep keys short."""
    return f"{stage}/{address[:16]}"
