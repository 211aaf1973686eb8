"""The spooled manifest is byte for byte the manifest built in memory (so its sha256 and every content
address made from it are unchanged), whatever the item count."""

from __future__ import annotations

import numpy as np
import pytest
from skingenbench.services.core.manifest import Item, Manifest, ObjectEntry, ParentRef, Provenance, Skipped
from skingenbench.services.platform.manifest_io import read_manifest
from skingenbench.services.platform.store import LocalFolderStore
from skingenbench.services.preprocessing.manifest_spool import ManifestSpool


def items(count: int) -> list[Item]:
    return [
        Item(
            key=f"p/images/{i}.png",
            sha256=f"{i:064x}",
            label="MEL",
            lesion_id=f"L{i}",
            split="train",
            image_id=str(i),
            meta={
                "ita_degrees": np.float64(40.5 + i),
                "steps": ["resize", "remove_hair"],
                "augmentation": None,
                "nested": {"b": [], "a": {}},
            },
            objects={"mask_lesion": ObjectEntry(f"p/masks/{i}.png", f"{i + 1:064x}")},
        )
        for i in range(count)
    ]


@pytest.mark.parametrize("count", [0, 1, 3])
def test_spool_writes_the_same_bytes_as_the_manifest(tmp_path, count):
    store = LocalFolderStore(tmp_path)
    provenance = Provenance("preprocess:advanced", config={"x": 1}, seed=3, parents=[ParentRef("u", "s")])
    skipped = [Skipped("bad.jpg", "corrupt: no")]
    extra = {"selected": count + 1, "failed": 1}
    expected = Manifest(
        items(count), provenance, name="data-advanced", skipped=skipped, extra=extra
    ).to_json()
    with ManifestSpool() as spool:
        for item in items(count):
            spool.add(item)
        ref = spool.write(
            store,
            "p/manifest.json",
            name="data-advanced",
            provenance=provenance,
            skipped=skipped,
            extra=extra,
        )
    assert store.get_bytes("p/manifest.json") == expected
    assert ref.item_count == count
    assert len(read_manifest(store, ref.uri, ref.sha256).items) == count
