"""What the importers share: CSV tables, file indexes, image copying, the content address, the last write.

HAM10000 is the base layout of the project (``ham10000.py``); MILK10K (``milk10k.py``) reads its own
CSVs and folders with these same pieces, so both report problems alike and address outputs alike.
"""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from skingenbench.services.core.errors import DataIntegrityError, InvalidArgument, NotFound
from skingenbench.services.core.hashing import canonical_json, content_address, sha256_bytes, sha256_stream
from skingenbench.services.core.hashing import output_prefix as addressed_prefix
from skingenbench.services.core.manifest import MANIFEST_NAME, Manifest, ManifestRef
from skingenbench.services.data.curation_report import curation_report, write_curation_report
from skingenbench.services.platform.manifest_io import write_manifest
from skingenbench.services.platform.store import ObjectStore, validate_key

ProgressFn = Callable[[int, int, str], None]

STAGE_VERSION = "1"

# Reason prefixes; the curation report groups dropped items by the text before the first ':'.
MALFORMED = "malformed row"
DUPLICATE_ROW = "duplicate row"
MISSING_IMAGE = "missing image"
UNREADABLE_IMAGE = "unreadable image"

# An id becomes part of an object key, so it must be a plain file name (no '/', no '..').
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
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
class SourceFolder:
    """A distribution folder read and hashed: what an import of it will write, and where.

    ``input_hashes`` (the sha256 of its metadata files and a digest of its image listing) and
    ``config`` are what the output's content address hashes; the preprocessing service's import job
    pins them at Start and the import checks them again (:meth:`check_pinned`).
    """

    root: Path
    stage: str
    config: dict[str, Any]
    input_hashes: tuple[str, ...]

    def prefix(self, output_prefix: str | None = None) -> str:
        return resolve_prefix(output_prefix, self.stage, list(self.input_hashes), self.config)

    def check_pinned(self, pinned: Iterable[str] | None) -> None:
        if pinned is not None and tuple(pinned) != self.input_hashes:
            raise DataIntegrityError(
                f"{self.root} has changed since the import was planned (its metadata or image listing differs)",
                hint="start the import again to import the folder as it is now",
            )


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
                table.malformed.append(
                    (reader.line_num, f"{MALFORMED}: {len(row)} fields, header has {len(header)}")
                )
                continue
            table.rows.append(
                CsvRow(reader.line_num, {name: cell.strip() for name, cell in zip(header, row, strict=True)})
            )
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
    if not SAFE_ID.match(image_id):
        return f"{MALFORMED}: {image_column} is not a plain file name"
    return ""


def require_dir(source_dir: str | os.PathLike, what: str) -> Path:
    root = Path(source_dir).expanduser()
    if not root.is_dir():
        raise NotFound(
            f"{what} source folder not found: {root}", hint="pass the folder the download unpacked into"
        )
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
    return sha256_bytes(
        canonical_json([sorted((name, size) for name, (_, size) in idx.items()) for idx in indexes]).encode()
    )


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def resolve_prefix(
    output_prefix: str | None, stage: str, input_hashes: list[str], config: dict[str, Any]
) -> str:
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
