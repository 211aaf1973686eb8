"""An image set of the evaluation: the items a plan's set reference selects, decoded on demand.

The plan names each set by reference (its manifest pinned by sha256, the selection, the hash of the
selected items); ``load_set`` reads the manifest back and selects the same items, so a set is never
carried in a plan. Images are decoded when asked for and only the most recent few are kept, so a
large set is never held in memory; memorization and the sample grids ask for a few images again
after extraction.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass, field

import numpy as np
from skingenbench.services.core.errors import DataIntegrityError, InvalidArgument
from skingenbench.services.core.manifest import Item
from skingenbench.services.evaluation.feature_cache import image_set_hash
from skingenbench.services.evaluation.plan import SetRef
from skingenbench.services.platform.manifest_io import read_item, read_manifest
from skingenbench.services.platform.store import ObjectStore


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


def load_set(store: ObjectStore, ref: SetRef) -> SetSpec:
    """The items a set reference selects, from its manifest as pinned at Start (checked by sha256)."""
    manifest = read_manifest(store, ref.manifest.uri, ref.manifest.sha256)
    items = [item for item in manifest.items if ref.selects(item)]
    if image_set_hash((item.key, item.sha256) for item in items) != ref.set_hash:
        raise DataIntegrityError(
            f"set {ref.name!r} of {ref.manifest.uri} no longer selects the planned items",
            expected=ref.set_hash,
        )
    selection = {"splits": list(ref.splits), "labels": list(ref.labels)} if ref.is_selection else {}
    return SetSpec(
        ref.name,
        items,
        ref.intended_label,
        ref.manifest.uri,
        ref.manifest.sha256,
        selection,
        ref.per_item_labels,
    )


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
