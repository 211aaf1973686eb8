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

This module also holds the pieces the MILK10K importer shares (``ImportResult``, CSV reading,
image copying), since HAM10000 is the base layout of the project.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from skingenbench.services.core.errors import InvalidArgument, NotFound
from skingenbench.services.core.hashing import canonical_json, content_address, sha256_bytes, sha256_stream
from skingenbench.services.core.hashing import output_prefix as addressed_prefix
from skingenbench.services.core.manifest import (
    MANIFEST_NAME,
    Item,
    Manifest,
    ManifestRef,
    ObjectEntry,
    Provenance,
    Skipped,
)
from skingenbench.services.data.core.diagnosis_mapping import (
    HAM10000_MAPPING,
    DiagnosisMapping,
    resolve_mapping,
)
from skingenbench.services.data.curation_report import curation_report, write_curation_report
from skingenbench.services.platform.manifest_io import write_manifest
from skingenbench.services.platform.store import ObjectStore, validate_key

ProgressFn = Callable[[int, int, str], None]

STAGE_VERSION = "1"
SOURCE = "ham10000"
PHANTOM_SOURCE = "phantom"
# Written by services/data/phantom_dataset.py beside HAM10000's columns; never in real HAM10000.
PHANTOM_MARKER_COLUMNS = frozenset({"lesion_area", "hair_fraction"})

# Reason prefixes; the curation report groups dropped items by the text before the first ':'.
MALFORMED = "malformed row"
DUPLICATE_ROW = "duplicate row"
MISSING_IMAGE = "missing image"
UNREADABLE_IMAGE = "unreadable image"

# An id becomes part of an object key, so it must be a plain file name (no '/', no '..').
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_MAGIC = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"))


@dataclass(frozen=True)
class ImportResult:
    """What an importer stored: the manifest (written last), its reference and the curation report."""

    manifest: Manifest
    ref: ManifestRef
    prefix: str
    report: dict[str, Any]
    report_keys: tuple[str, str] = ("", "")


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
        "age", "ita", "lesion_area", "hair_fraction",
        "has_hair", "has_ruler", "has_ink", "has_vignette", "has_bubbles",
    )
    clean_dir: str = "phantom_clean"
    masks_dir: str = "phantom_masks"
    side_suffix: str = ".png"


def import_ham10000(
    source_dir: str | os.PathLike,
    store: ObjectStore,
    *,
    mapping: DiagnosisMapping | Mapping[str, Any] | None = None,
    output_prefix: str | None = None,
    progress: ProgressFn | None = None,
    layout: Ham10000Layout | None = None,
    source: str | None = None,
) -> ImportResult:
    """Import a HAM10000-layout folder (real HAM10000 or the phantom) into ``store``.

    ``source`` defaults to ``"phantom"`` when the data carries phantom markers (see
    :func:`detect_source`) and ``"ham10000"`` otherwise. Without ``output_prefix`` the images go
    under ``import-<source>/<address>``, the address hashing the CSV, the image listing and the config.
    """
    layout = layout or Ham10000Layout()
    mapping = resolve_mapping(mapping, HAM10000_MAPPING)
    root = require_dir(source_dir, "HAM10000")
    csv_path = root / layout.metadata_csv
    if not csv_path.is_file():
        raise NotFound(
            f"HAM10000 metadata not found: {csv_path}",
            hint=f"expected {layout.metadata_csv} in the source folder; see docs/data.md for the download",
        )
    image_dirs = [root / name for name in layout.image_dirs if (root / name).is_dir()]
    if not image_dirs:
        raise NotFound(
            f"no HAM10000 image folder in {root}",
            hint=f"expected {' and/or '.join(layout.image_dirs)} holding <image_id>{layout.image_suffix}",
        )
    required = (layout.lesion_column, layout.image_column, layout.diagnosis_column)
    table = read_csv_table(csv_path, required)
    source = source or detect_source(table.header, root, layout)
    if not _SAFE_ID.match(source):
        raise InvalidArgument(f"source name {source!r} must be a plain word", hint="e.g. ham10000 or phantom")

    images = index_files(image_dirs, recursive=False)
    clean = index_files([root / layout.clean_dir], recursive=False)
    masks = {
        kind.name: index_files([kind], recursive=False)
        for kind in sorted((root / layout.masks_dir).iterdir() if (root / layout.masks_dir).is_dir() else [])
        if kind.is_dir()
    }
    stage = f"import-{source}"
    config = {"source": source, "mapping": mapping.to_dict(), "layout": asdict(layout)}
    listing = [images, clean, *masks.values()]
    prefix = resolve_prefix(output_prefix, stage, [file_sha256(csv_path), listing_digest(listing)], config)

    skipped = [Skipped(f"{source}/{csv_path.name}:{line}", reason) for line, reason in table.malformed]
    items: list[Item] = []
    seen: set[str] = set()
    looked_in = ", ".join(f"{path.name}/" for path in image_dirs)
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
            objects, reason = copy_side_files(store, prefix, image_id + layout.side_suffix, clean, masks)
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
                    meta=meta_from_row(values, {layout.lesion_column, layout.image_column}, layout.numeric_columns),
                    objects=objects,
                )
            )
        report_progress(progress, done, total, f"{source}: {image_id or 'row ' + str(row.line)}")

    listed = {(image_id + layout.image_suffix).casefold() for image_id in seen}
    unlisted = sorted(name for name in images if name.casefold() not in listed)
    extra = {
        "importer": SOURCE,
        "source_dir": str(root),
        "rows": total + len(table.malformed),
        "unlisted_images": unlisted[:100],
        "unlisted_image_count": len(unlisted),
    }
    manifest = Manifest(items, Provenance(stage, STAGE_VERSION, config), name=source, skipped=skipped, extra=extra)
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
        if (found := files.find(file_name)) is not None and _SAFE_ID.match(kind):
            wanted.append((f"mask_{kind}", f"{prefix}/masks/{kind}/{file_name}", found[0]))
    objects = {}
    for name, key, path in wanted:
        sha, reason = copy_image(store, key, path)
        if reason:
            return {}, f"{reason} ({name})"
        objects[name] = ObjectEntry(key, sha)
    return objects, ""


# -- shared by the importers --------------------------------------------------------------------------


@dataclass
class CsvRow:
    line: int
    values: dict[str, str]


@dataclass
class CsvTable:
    header: list[str]
    rows: list[CsvRow] = field(default_factory=list)
    malformed: list[tuple[int, str]] = field(default_factory=list)


def read_csv_table(path: Path, required: Iterable[str]) -> CsvTable:
    """Read a CSV with a header; rows with the wrong number of fields are set aside, not fatal.

    ``utf-8-sig`` because spreadsheet exports often start with a BOM, which would otherwise glue
    itself to the first column name; undecodable bytes are replaced rather than aborting the import.
    """
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.reader(handle)
        header: list[str] | None = None
        table = CsvTable([])
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                table.malformed.append((reader.line_num, f"{MALFORMED}: {exc}"))
                continue
            if not any(cell.strip() for cell in row):
                continue  # blank lines are layout, not data
            if header is None:
                header = [cell.strip() for cell in row]
                table.header = header
                continue
            if len(row) != len(header):
                table.malformed.append((reader.line_num, f"{MALFORMED}: {len(row)} fields, header has {len(header)}"))
                continue
            table.rows.append(CsvRow(reader.line_num, {name: cell.strip() for name, cell in zip(header, row, strict=True)}))
    if header is None:
        raise InvalidArgument(f"{path.name} is empty", hint="expected a header row and one row per image")
    missing = [name for name in required if name not in header]
    if missing:
        raise InvalidArgument(
            f"{path.name} lacks column(s) {', '.join(missing)}",
            hint=f"found columns: {', '.join(header)}; column names are configurable in the layout",
        )
    return table


def check_ids(lesion_id: str, image_id: str, lesion_column: str, image_column: str) -> str:
    """The reason a row's ids are unusable, or ``""``."""
    if not lesion_id:
        return f"{MALFORMED}: empty {lesion_column}"
    if not image_id:
        return f"{MALFORMED}: empty {image_column}"
    if not _SAFE_ID.match(image_id):
        return f"{MALFORMED}: {image_column} is not a plain file name"
    return ""


def require_dir(source_dir: str | os.PathLike, what: str) -> Path:
    root = Path(source_dir).expanduser()
    if not root.is_dir():
        raise NotFound(f"{what} source folder not found: {root}", hint="pass the folder the download unpacked into")
    return root.resolve()


class FileIndex(dict):
    """File name (or path relative to its folder) → (path, size), with a case-insensitive ``find``.

    ``isic image download`` names files ``<isic_id>.JPG``; the release zips use ``.jpg``.
    """

    _folded: dict[str, tuple[Path, int]] | None = None

    def find(self, name: str) -> tuple[Path, int] | None:
        if name in self:
            return self[name]
        if self._folded is None:
            self._folded = {}
            for key, value in self.items():
                self._folded.setdefault(key.casefold(), value)
        return self._folded.get(name.casefold())


def index_files(folders: Iterable[Path], *, recursive: bool) -> FileIndex:
    """File name (or path relative to its folder, if recursive) → (path, size); first folder wins."""
    index = FileIndex()
    for folder in folders:
        if not folder.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = sorted(dirnames) if recursive else []
            rel = os.path.relpath(dirpath, folder)
            for name in sorted(filenames):
                key = name if rel == "." else f"{rel.replace(os.sep, '/')}/{name}"
                path = Path(dirpath) / name
                if key not in index:
                    index[key] = (path, path.stat().st_size)
    return index


def listing_digest(indexes: Iterable[Mapping[str, tuple[Path, int]]]) -> str:
    """Hash of names and sizes: cheap, and changes when files are added, removed or replaced."""
    return sha256_bytes(canonical_json([sorted((name, size) for name, (_, size) in idx.items()) for idx in indexes]).encode())


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def resolve_prefix(output_prefix: str | None, stage: str, input_hashes: list[str], config: dict[str, Any]) -> str:
    if output_prefix:
        return validate_key(output_prefix.strip("/"))
    return addressed_prefix(stage, content_address(stage, STAGE_VERSION, input_hashes, config))


def copy_image(store: ObjectStore, key: str, path: Path) -> tuple[str, str]:
    """Copy one image file into the store: ``(sha256, "")``, or ``("", reason)`` if unreadable.

    Only the magic bytes are checked here: decoding 10,000 JPEGs belongs to preprocessing, which
    reports images it cannot decode. Store errors propagate: a store that is down fails the import.
    """
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
            content_type = next((kind for magic, kind in _MAGIC if head.startswith(magic)), "")
            if not content_type:
                return "", f"{UNREADABLE_IMAGE}: {path.name} is not a JPEG or PNG file"
            handle.seek(0)
            info = store.put_stream(key, handle, content_type)
    except OSError as exc:
        return "", f"{UNREADABLE_IMAGE}: {exc.strerror or type(exc).__name__}"
    return info.sha256, ""


def meta_from_row(values: Mapping[str, str], exclude: set[str], numeric: Iterable[str]) -> dict[str, Any]:
    """Every column but the ids; empty cells become ``None``, numeric columns numbers where they parse."""
    numeric = set(numeric)
    meta: dict[str, Any] = {}
    for name, value in values.items():
        if name in exclude or not name:
            continue
        meta[name] = None if value == "" else parse_number(value) if name in numeric else value
    return meta


def parse_number(value: str) -> int | float | str | None:
    try:
        number = float(value)
    except ValueError:
        return value  # keep what the source says rather than lose it
    if not math.isfinite(number):
        return None
    return int(number) if number.is_integer() else number


def report_progress(progress: ProgressFn | None, done: int, total: int, message: str) -> None:
    # About a hundred calls per import: enough for a progress bar, few enough for a gRPC stream.
    if progress is not None and (done == total or done % max(1, total // 100) == 0):
        progress(done, total, message)


def finish_import(store: ObjectStore, prefix: str, manifest: Manifest) -> ImportResult:
    """Write the curation report, then the manifest — last, so a half-done import is never visible."""
    report = curation_report(manifest)
    report_keys = write_curation_report(store, prefix, report)
    ref = write_manifest(store, f"{prefix}/{MANIFEST_NAME}", manifest)
    return ImportResult(manifest, ref, prefix, report, report_keys)
