"""A plain folder of PNG/JPEG images as a manifest in the store (``data import-folder``, ``evaluate``).

torch-fidelity's command line takes two folders; the services take manifests. This is the bridge: every
image of the folder (not its subfolders) is copied into the store under a content-addressed prefix (the
same folder with the same label gives the same manifest, and importing it again writes nothing new), each
file its own lesion, all with one label and split. The manifest is written last (DESIGN.md, rule 2).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from skingenbench.cli.errors import UserError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")
STAGE = "import-folder"
STAGE_VERSION = "1"


def image_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise UserError(f"{str(folder)!r} is not a folder of images", "give a folder of PNG or JPEG files")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(
            f"the folder {str(folder)!r} has no PNG or JPEG images", "point at the folder that holds them"
        )
    return files


def import_folder(
    store,
    folder: str | Path,
    label: str,
    split: str = "train",
    progress: Callable[[int, int], None] | None = None,
):
    """Copy the folder's images into ``store`` and write their manifest; returns its ManifestRef."""
    from skingenbench.api.v1 import common_pb2
    from skingenbench.services.core.classes import CLASSES
    from skingenbench.services.core.hashing import content_address, output_prefix, sha256_bytes
    from skingenbench.services.core.manifest import MANIFEST_NAME, Item, Manifest, Provenance
    from skingenbench.services.platform.manifest_io import write_manifest

    if label not in CLASSES:
        raise UserError(f"unknown label {label!r}", f"use one of {', '.join(CLASSES)}")
    folder = Path(folder).expanduser().resolve()
    files = image_files(folder)
    contents = []
    for path in files:
        data = path.read_bytes()
        if not data.startswith(_MAGIC):
            raise UserError(f"{path} is not a PNG or JPEG image", "remove it from the folder")
        contents.append((path, data, sha256_bytes(data)))
    config = {"label": label, "split": split}
    address = content_address(STAGE, STAGE_VERSION, [f"{p.name}:{h}" for p, _, h in contents], config)
    prefix = output_prefix(STAGE, address)
    manifest_key = f"{prefix}/{MANIFEST_NAME}"
    if store.exists(manifest_key):  # imported before: the manifest is written last, so all is there
        raw = store.get_bytes(manifest_key)
        uri = store.uri(manifest_key)
        return common_pb2.ManifestRef(uri=uri, sha256=sha256_bytes(raw), item_count=len(contents))
    items = []
    for done, (path, data, digest) in enumerate(contents, start=1):
        key = f"{prefix}/images/{path.name}"
        if not store.exists(key):
            store.put_bytes(key, data, "image/png" if data.startswith(_MAGIC[0]) else "image/jpeg")
        items.append(Item(key, digest, label, path.stem, split=split, source="folder", image_id=path.stem))
        if progress is not None:
            progress(done, len(contents))
    manifest = Manifest(
        items, Provenance(STAGE, STAGE_VERSION, {**config, "folder": folder.name}), name=folder.name
    )
    ref = write_manifest(store, manifest_key, manifest)
    return common_pb2.ManifestRef(uri=ref.uri, sha256=ref.sha256, item_count=ref.item_count)
