"""A feature cache in the object store, in the manner of torch-fidelity's ``cache_lookup_*`` wrappers.

Features are keyed by what decides them: the image set's content (the ordered keys and sha256s of the
items evaluated), the extractor, the hash of its weights, and its preprocessing (resize, layers,
dtype, library version). Evaluating five synthetic sets against one real set, in one job or five,
extracts the real set's features once. Entries are safetensors (no pickle, DESIGN.md rule 7) whose
metadata repeats the full key, so a read checks it got what it asked for.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from skingenbench.services.core.hashing import canonical_json, sha256_bytes
from skingenbench.services.platform.store import ObjectStore

log = logging.getLogger(__name__)
CACHE_PREFIX = "cache/features"
CACHE_VERSION = "1"


def image_set_hash(entries: Iterable[tuple[str, str]]) -> str:
    """Hash of an image set as evaluated: its (object key, sha256) pairs, in order."""
    return sha256_bytes(canonical_json([[key, sha] for key, sha in entries]).encode())


@dataclass(frozen=True)
class FeatureKey:
    set_hash: str
    extractor: str
    weights_sha256: str
    preprocessing: str  # canonical JSON

    @classmethod
    def of(
        cls, set_hash: str, extractor: str, weights_sha256: str, preprocessing: dict[str, Any]
    ) -> FeatureKey:
        return cls(set_hash, extractor, weights_sha256, canonical_json(preprocessing))

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": CACHE_VERSION,
            "set": self.set_hash,
            "extractor": self.extractor,
            "weights_sha256": self.weights_sha256,
            "preprocessing": json.loads(self.preprocessing),
        }

    def digest(self) -> str:
        return sha256_bytes(canonical_json(self.as_dict()).encode())


class FeatureCache:
    """``get_or_compute`` features by key; counts hits and misses (what the benchmark reports)."""

    def __init__(self, store: ObjectStore, prefix: str = CACHE_PREFIX) -> None:
        self.store = store
        self.prefix = prefix.rstrip("/")
        self.hits = 0
        self.misses = 0

    def object_key(self, key: FeatureKey) -> str:
        digest = key.digest()
        return f"{self.prefix}/{digest[:2]}/{digest}.safetensors"

    def get(self, key: FeatureKey) -> dict[str, torch.Tensor] | None:
        from safetensors import SafetensorError
        from safetensors.torch import load

        name = self.object_key(key)
        if not self.store.exists(name):
            return None
        data = self.store.get_bytes(name)
        try:
            stored_key = safetensors_metadata(data).get("key", "")
            tensors = load(data)
        except (SafetensorError, ValueError) as exc:
            log.warning("unreadable feature cache entry %s (%s); recomputing", name, exc)
            return None
        if stored_key != canonical_json(key.as_dict()):
            log.warning("feature cache entry %s holds another key; recomputing", name)
            return None
        return tensors

    def put(self, key: FeatureKey, features: dict[str, torch.Tensor]) -> str:
        from safetensors.torch import save

        tensors = {layer: values.detach().cpu().contiguous() for layer, values in features.items()}
        data = save(tensors, metadata={"key": canonical_json(key.as_dict())})
        name = self.object_key(key)
        self.store.put_bytes(name, data, "application/octet-stream")
        return name

    def get_or_compute(
        self, key: FeatureKey, compute: Callable[[], dict[str, torch.Tensor]]
    ) -> tuple[dict[str, torch.Tensor], bool]:
        """(features, whether they came from the cache)."""
        cached = self.get(key)
        if cached is not None:
            self.hits += 1
            return cached, True
        self.misses += 1
        features = compute()
        self.put(key, features)
        return features, False


def safetensors_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes (an 8-byte little-endian header length, then JSON)."""
    length = int.from_bytes(data[:8], "little")
    if len(data) < 8 or length > len(data) - 8:
        raise ValueError("not a safetensors file")
    return dict(json.loads(data[8 : 8 + length]).get("__metadata__") or {})
