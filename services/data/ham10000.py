"""HAM10000 importer: the Dataverse layout on disk → images in the object store + a manifest.

Layout read (names configurable through :class:`Ham10000Layout`)::

    <source_dir>/HAM10000_metadata.csv               lesion_id,image_id,dx,dx_type,age,sex,localization[,...]
    <source_dir>/HAM10000_images_part_1/<image_id>.jpg
    <source_dir>/HAM10000_images_part_2/<image_id>.jpg
    <source_dir>/phantom_clean/<image_id>.png        phantom data set only: the artifact-free image
    <source_dir>/phantom_masks/<kind>/<image_id>.png phantom data set only: lesion, hair, ruler, ...

Every problem with one row (malformed, unknown diagnosis, missing or unreadable image) becomes a
:class:`Skipped` entry and the import goes on; only a missing CSV or image folder stops it. The
manifest is written last, after every image and the curation report.

The pieces the MILK10K importer shares (CSV reading, file indexes, image copying, the content
address) are in ``import_files.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from skingenbench.services.core.errors import InvalidArgument, NotFound
from skingenbench.services.core.manifest import Item, Manifest, ObjectEntry, Provenance, Skipped
from skingenbench.services.data.core.diagnosis_mapping import (
    HAM10000_MAPPING,
    DiagnosisMapping,
    resolve_mapping,
)
from skingenbench.services.data.import_files import (
    DUPLICATE_ROW,
    MISSING_IMAGE,
    SAFE_ID,
    STAGE_VERSION,
    CsvTable,
    FileIndex,
    ImportResult,
    ProgressFn,
    SourceFolder,
    check_ids,
    copy_image,
    file_sha256,
    finish_import,
    index_files,
    listing_digest,
    meta_from_row,
    read_csv_table,
    report_progress,
    require_dir,
)
from skingenbench.services.platform.store import ObjectStore

SOURCE = "ham10000"
PHANTOM_SOURCE = "phantom"
# Written by services/data/phantom_dataset.py beside HAM10000's columns; never in real HAM10000.
PHANTOM_MARKER_COLUMNS = frozenset({"lesion_area", "hair_fraction"})


@dataclass(frozen=True)
class Ham10000Layout:
    metadata_csv: str = "HAM10000_metadata.csv"
    image_dirs: tuple[str, ...] = ("HAM10000_images_part_1", "HAM10000_images_part_2")
    image_suffix: str = ".jpg"
    lesion_column: str = "lesion_id"
    image_column: str = "image_id"
    diagnosis_column: str = "dx"
    # age is HAM10000's; the rest are the phantom's ground-truth columns (absent from real data).
    numeric_columns: tuple[str, ...] = (
        "age",
        "ita",
        "lesion_area",
        "hair_fraction",
        "has_hair",
        "has_ruler",
        "has_ink",
        "has_vignette",
        "has_bubbles",
    )
    clean_dir: str = "phantom_clean"
    masks_dir: str = "phantom_masks"
    side_suffix: str = ".png"


@dataclass(frozen=True)
class Ham10000Folder(SourceFolder):
    layout: Ham10000Layout
    mapping: DiagnosisMapping
    source: str
    csv_path: Path
    image_dirs: tuple[Path, ...]
    table: CsvTable
    images: FileIndex
    clean: FileIndex
    masks: dict[str, FileIndex]


def locate_ham10000(
    source_dir: str | os.PathLike,
    *,
    mapping: DiagnosisMapping | Mapping[str, Any] | None = None,
    layout: Ham10000Layout | None = None,
    source: str | None = None,
) -> Ham10000Folder:
    """Read a HAM10000-layout folder's metadata and listing (copying nothing); refuses a folder that is not one."""
    layout = layout or Ham10000Layout()
    mapping = resolve_mapping(mapping, HAM10000_MAPPING)
    root = require_dir(source_dir, "HAM10000")
    csv_path = root / layout.metadata_csv
    if not csv_path.is_file():
        raise NotFound(
            f"HAM10000 metadata not found: {csv_path}",
            hint=f"expected {layout.metadata_csv} in the source folder; see docs/data.md for the download",
        )
    image_dirs = tuple(root / name for name in layout.image_dirs if (root / name).is_dir())
    if not image_dirs:
        raise NotFound(
            f"no HAM10000 image folder in {root}",
            hint=f"expected {' and/or '.join(layout.image_dirs)} holding <image_id>{layout.image_suffix}",
        )
    required = (layout.lesion_column, layout.image_column, layout.diagnosis_column)
    table = read_csv_table(csv_path, required)
    source = source or detect_source(table.header, root, layout)
    if not SAFE_ID.match(source):
        raise InvalidArgument(f"source name {source!r} must be a plain word", hint="e.g. ham10000 or phantom")

    images = index_files(image_dirs, recursive=False)
    clean = index_files([root / layout.clean_dir], recursive=False)
    masks = {
        kind.name: index_files([kind], recursive=False)
        for kind in sorted((root / layout.masks_dir).iterdir() if (root / layout.masks_dir).is_dir() else [])
        if kind.is_dir()
    }
    config = {"source": source, "mapping": mapping.to_dict(), "layout": asdict(layout)}
    hashes = (file_sha256(csv_path), listing_digest([images, clean, *masks.values()]))
    return Ham10000Folder(
        root,
        f"import-{source}",
        config,
        hashes,
        layout,
        mapping,
        source,
        csv_path,
        image_dirs,
        table,
        images,
        clean,
        masks,
    )


def import_ham10000(
    source_dir: str | os.PathLike,
    store: ObjectStore,
    *,
    mapping: DiagnosisMapping | Mapping[str, Any] | None = None,
    output_prefix: str | None = None,
    progress: ProgressFn | None = None,
    layout: Ham10000Layout | None = None,
    source: str | None = None,
    pinned_inputs: Iterable[str] | None = None,
) -> ImportResult:
    """Import a HAM10000-layout folder (real HAM10000 or the phantom) into ``store``.

    ``source`` defaults to ``"phantom"`` when the data carries phantom markers (see
    :func:`detect_source`) and ``"ham10000"`` otherwise. Without ``output_prefix`` the images go
    under ``import-<source>/<address>``, the address hashing the CSV, the image listing and the config.
    ``pinned_inputs`` (a :class:`SourceFolder`'s ``input_hashes`` from earlier) refuses a folder changed since.
    """
    folder = locate_ham10000(source_dir, mapping=mapping, layout=layout, source=source)
    folder.check_pinned(pinned_inputs)
    layout, mapping, source, table = folder.layout, folder.mapping, folder.source, folder.table
    csv_path, images = folder.csv_path, folder.images
    prefix = folder.prefix(output_prefix)

    skipped = [Skipped(f"{source}/{csv_path.name}:{line}", reason) for line, reason in table.malformed]
    items: list[Item] = []
    seen: set[str] = set()
    looked_in = ", ".join(f"{path.name}/" for path in folder.image_dirs)
    total = len(table.rows)
    for done, row in enumerate(table.rows, 1):
        values = row.values
        lesion_id, image_id = values[layout.lesion_column], values[layout.image_column]
        ref = f"{source}/{image_id or f'{csv_path.name}:{row.line}'}"
        reason = check_ids(lesion_id, image_id, layout.lesion_column, layout.image_column)
        if not reason and image_id in seen:
            reason = f"{DUPLICATE_ROW}: {layout.image_column} listed earlier in {csv_path.name}"
        seen.add(image_id)
        label = None
        if not reason:
            label, reason = mapping.lookup(values[layout.diagnosis_column])
        path = images.find(image_id + layout.image_suffix)
        if not reason and path is None:
            reason = f"{MISSING_IMAGE}: not found in {looked_in}"
        if not reason:
            sha, reason = copy_image(store, f"{prefix}/images/{image_id}{layout.image_suffix}", path[0])
        objects: dict[str, ObjectEntry] = {}
        if not reason:
            objects, reason = copy_side_files(
                store, prefix, image_id + layout.side_suffix, folder.clean, folder.masks
            )
        if reason:
            skipped.append(Skipped(ref, reason))
        else:
            items.append(
                Item(
                    key=f"{prefix}/images/{image_id}{layout.image_suffix}",
                    sha256=sha,
                    label=label,
                    lesion_id=lesion_id,
                    source=source,
                    image_id=image_id,
                    meta=meta_from_row(
                        values, {layout.lesion_column, layout.image_column}, layout.numeric_columns
                    ),
                    objects=objects,
                )
            )
        report_progress(progress, done, total, f"{source}: {image_id or 'row ' + str(row.line)}")

    listed = {(image_id + layout.image_suffix).casefold() for image_id in seen}
    unlisted = sorted(name for name in images if name.casefold() not in listed)
    extra = {
        "importer": SOURCE,
        "source_dir": str(folder.root),
        "rows": total + len(table.malformed),
        "unlisted_images": unlisted[:100],
        "unlisted_image_count": len(unlisted),
    }
    manifest = Manifest(
        items,
        Provenance(folder.stage, STAGE_VERSION, folder.config),
        name=source,
        skipped=skipped,
        extra=extra,
    )
    return finish_import(store, prefix, manifest)


def detect_source(header: Iterable[str], root: Path, layout: Ham10000Layout) -> str:
    """``phantom`` if the CSV has the phantom's ground-truth columns or a phantom side folder exists.

    Phantom columns: ``lesion_area`` and ``hair_fraction`` together, or any column named
    ``phantom*``. Real HAM10000 has neither them nor the folders: its columns are lesion_id, image_id,
    dx, dx_type, age, sex, localization (and ``dataset`` in later releases), with no masks.
    """
    names = {name.strip().casefold() for name in header}
    if names >= PHANTOM_MARKER_COLUMNS or any(name.startswith("phantom") for name in names):
        return PHANTOM_SOURCE
    if (root / layout.clean_dir).is_dir() or (root / layout.masks_dir).is_dir():
        return PHANTOM_SOURCE
    return SOURCE


def copy_side_files(
    store: ObjectStore,
    prefix: str,
    file_name: str,
    clean: FileIndex,
    masks: Mapping[str, FileIndex],
) -> tuple[dict[str, ObjectEntry], str]:
    """Copy the phantom's clean image and masks of one item; names ``clean`` and ``mask_<kind>``."""
    wanted = []
    if (found := clean.find(file_name)) is not None:
        wanted.append(("clean", f"{prefix}/clean/{file_name}", found[0]))
    for kind, files in masks.items():
        if (found := files.find(file_name)) is not None and SAFE_ID.match(kind):
            wanted.append((f"mask_{kind}", f"{prefix}/masks/{kind}/{file_name}", found[0]))
    objects = {}
    for name, key, path in wanted:
        sha, reason = copy_image(store, key, path)
        if reason:
            return {}, f"{reason} ({name})"
        objects[name] = ObjectEntry(key, sha)
    return objects, ""
