"""A small reader study in a real store: synthetic PNGs and real JPEGs of two classes, with their manifests."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from skingenbench.services.core.manifest import Item, Manifest, Provenance
from skingenbench.services.platform.manifest_io import write_manifest


def _image(rng: np.random.Generator, width: int, height: int, fmt: str) -> bytes:
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def write_sets(store, synthetic: dict[str, int], real: dict[str, int], seed: int = 0) -> tuple[str, str]:
    """Synthetic PNGs (64x64, generation's layout and labels) and real JPEGs (90x60); the manifests' URIs."""
    rng = np.random.default_rng(seed)
    uris = []
    for name, counts, fmt, size in (("syn", synthetic, "PNG", (64, 64)), ("real", real, "JPEG", (90, 60))):
        items = []
        for label, n in counts.items():
            for index in range(n):
                key = f"sets/{name}/{label}-{index}.{fmt.lower()}"
                info = store.put_bytes(key, _image(rng, *size, fmt))
                items.append(Item(key, info.sha256, label, f"{name}-{label}-{index}", "train", name))
        uris.append(
            write_manifest(store, f"sets/{name}/manifest.json", Manifest(items, Provenance(name))).uri
        )
    return uris[0], uris[1]


@pytest.fixture
def small_study(folder_store):
    """(store, study): 6 synthetic MEL, 8 real (4 MEL, 4 NV); count 6 -> 3 synthetic + 3 real melanomas."""
    from skingenbench.reader_study.study_store import create_or_resume_study

    syn, real = write_sets(folder_store, {"MEL": 6}, {"MEL": 4, "NV": 4})
    return folder_store, create_or_resume_study(folder_store, syn, real, count=6, seed=3)
