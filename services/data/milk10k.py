"""MILK10K importer: the ISIC 2025 MILK10k training release → dermoscopic images in the store + a manifest.

Layout read (names configurable through :class:`Milk10kLayout`)::

    <source_dir>/MILK10k_Training_GroundTruth.csv   lesion_id,AKIEC,BCC,BEN_OTH,BKL,DF,INF,MAL_OTH,MEL,NV,SCCKA,VASC
    <source_dir>/MILK10k_Training_Metadata.csv      lesion_id,isic_id,image_type,...,age_approx,sex,
                                                    skin_tone_class,site,...
    <source_dir>/MILK10k_Training_Input/<lesion_id>/<isic_id>.jpg

One ground-truth row per lesion, one metadata row per image; each lesion has a dermoscopic and a
clinical close-up image. The diagnosis is the ground-truth column with the largest value (a tie is
refused as ambiguous). Only dermoscopic images are imported, as in the reference study.
The release zip unpacks to ``MILK10k_Training_Input/MILK10k_Training_Input/...``; that nesting is
followed, and a flat ``<images_dir>/<isic_id>.jpg`` (as ``isic image download`` writes) is accepted.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from skingenbench.services.core.errors import InvalidArgument, NotFound
from skingenbench.services.core.manifest import Item, Manifest, Provenance, Skipped
from skingenbench.services.data.core.diagnosis_mapping import (
    MILK10K_MAPPING,
    DiagnosisMapping,
    resolve_mapping,
)
from skingenbench.services.data.import_files import (
    DUPLICATE_ROW,
    MALFORMED,
    MISSING_IMAGE,
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

SOURCE = "milk10k"

NOT_DERMOSCOPIC = "not dermoscopic"
AMBIGUOUS = "ambiguous diagnosis"
NO_GROUND_TRUTH = "no ground truth"
NO_DERMOSCOPIC_IMAGE = "no dermoscopic image"


@dataclass(frozen=True)
class Milk10kLayout:
    ground_truth_csv: str = "MILK10k_Training_GroundTruth.csv"
    metadata_csv: str = "MILK10k_Training_Metadata.csv"
    images_dir: str = "MILK10k_Training_Input"
    image_suffix: str = ".jpg"
    lesion_column: str = "lesion_id"
    image_column: str = "isic_id"
    image_type_column: str = "image_type"
    dermoscopic_value: str = "dermoscopic"
    # Empty: every ground-truth column except the lesion id is a diagnosis.
    diagnosis_columns: tuple[str, ...] = ()
    numeric_columns: tuple[str, ...] = ("age_approx", "skin_tone_class")


@dataclass(frozen=True)
class _Diagnosis:
    code: str
    score: float


@dataclass(frozen=True)
class Milk10kFolder(SourceFolder):
    layout: Milk10kLayout
    mapping: DiagnosisMapping
    gt_path: Path
    meta_path: Path
    images_dir: Path
    gt_table: CsvTable
    meta_table: CsvTable
    images: FileIndex


def locate_milk10k(
    source_dir: str | os.PathLike,
    *,
    mapping: DiagnosisMapping | Mapping[str, Any] | None = None,
    layout: Milk10kLayout | None = None,
) -> Milk10kFolder:
    """Read a MILK10k release folder's CSVs and listing (copying nothing); refuses a folder that is not one."""
    layout = layout or Milk10kLayout()
    mapping = resolve_mapping(mapping, MILK10K_MAPPING)
    root = require_dir(source_dir, "MILK10K")
    gt_path, meta_path = root / layout.ground_truth_csv, root / layout.metadata_csv
    for path in (gt_path, meta_path):
        if not path.is_file():
            raise NotFound(
                f"MILK10K file not found: {path}",
                hint=f"expected {layout.ground_truth_csv} and {layout.metadata_csv} in the source folder; "
                "see docs/data.md",
            )
    images_dir = root / layout.images_dir
    if (images_dir / images_dir.name).is_dir():
        images_dir = images_dir / images_dir.name  # how the release zip unpacks
    if not images_dir.is_dir():
        raise NotFound(
            f"MILK10K image folder not found: {images_dir}",
            hint=f"expected {layout.images_dir}/<lesion_id>/<isic_id>{layout.image_suffix}",
        )

    gt_table = read_csv_table(gt_path, (layout.lesion_column, *layout.diagnosis_columns))
    meta_table = read_csv_table(
        meta_path, (layout.lesion_column, layout.image_column, layout.image_type_column)
    )
    images = index_files([images_dir], recursive=True)
    config = {"source": SOURCE, "mapping": mapping.to_dict(), "layout": asdict(layout)}
    hashes = (file_sha256(gt_path), file_sha256(meta_path), listing_digest([images]))
    return Milk10kFolder(
        root,
        f"import-{SOURCE}",
        config,
        hashes,
        layout,
        mapping,
        gt_path,
        meta_path,
        images_dir,
        gt_table,
        meta_table,
        images,
    )


def import_milk10k(
    source_dir: str | os.PathLike,
    store: ObjectStore,
    *,
    mapping: DiagnosisMapping | Mapping[str, Any] | None = None,
    output_prefix: str | None = None,
    progress: ProgressFn | None = None,
    layout: Milk10kLayout | None = None,
    pinned_inputs: Iterable[str] | None = None,
) -> ImportResult:
    """Import the dermoscopic images of a MILK10k training release into ``store``.

    ``pinned_inputs`` (a :class:`SourceFolder`'s ``input_hashes`` from earlier) refuses a folder changed since.
    """
    folder = locate_milk10k(source_dir, mapping=mapping, layout=layout)
    folder.check_pinned(pinned_inputs)
    layout, mapping, gt_table, meta_table = folder.layout, folder.mapping, folder.gt_table, folder.meta_table
    gt_path, meta_path, images_dir, images = (
        folder.gt_path,
        folder.meta_path,
        folder.images_dir,
        folder.images,
    )
    prefix = folder.prefix(output_prefix)

    skipped = [Skipped(f"{SOURCE}/{gt_path.name}:{line}", r) for line, r in gt_table.malformed]
    skipped += [Skipped(f"{SOURCE}/{meta_path.name}:{line}", r) for line, r in meta_table.malformed]
    diagnoses, gt_skipped = _read_diagnoses(gt_table, layout, gt_path.name)
    skipped += gt_skipped

    items: list[Item] = []
    seen: set[str] = set()
    lesions_with_dermoscopy: set[str] = set()
    total = len(meta_table.rows)
    for done, row in enumerate(meta_table.rows, 1):
        values = row.values
        lesion_id, isic_id = values[layout.lesion_column], values[layout.image_column]
        ref = f"{SOURCE}/{isic_id or f'{meta_path.name}:{row.line}'}"
        reason = check_ids(lesion_id, isic_id, layout.lesion_column, layout.image_column)
        if not reason and isic_id in seen:
            reason = f"{DUPLICATE_ROW}: {layout.image_column} listed earlier in {meta_path.name}"
        seen.add(isic_id)
        image_type = values[layout.image_type_column]
        if not reason and image_type.casefold() != layout.dermoscopic_value.casefold():
            reason = f"{NOT_DERMOSCOPIC}: {image_type or '(empty image type)'}"
        if not reason:
            lesions_with_dermoscopy.add(lesion_id)
            diagnosis = diagnoses.get(lesion_id, f"{NO_GROUND_TRUTH}: lesion not in {gt_path.name}")
            reason = diagnosis if isinstance(diagnosis, str) else ""
        label = None
        if not reason:
            label, reason = mapping.lookup(diagnosis.code)
        name = isic_id + layout.image_suffix
        found = images.find(f"{lesion_id}/{name}") or images.find(name)
        if not reason and found is None:
            reason = f"{MISSING_IMAGE}: not found in {images_dir.name}/<lesion_id>/"
        if not reason:
            key = f"{prefix}/images/{name}"
            sha, reason = copy_image(store, key, found[0])
        if reason:
            skipped.append(Skipped(ref, reason))
        else:
            meta = meta_from_row(values, {layout.lesion_column, layout.image_column}, layout.numeric_columns)
            meta.update(diagnosis=diagnosis.code, diagnosis_score=diagnosis.score)
            items.append(Item(key, sha, label, lesion_id, source=SOURCE, image_id=isic_id, meta=meta))
        report_progress(progress, done, total, f"{SOURCE}: {isic_id or 'row ' + str(row.line)}")

    # A lesion that would have been kept but has no dermoscopic row is worth knowing about.
    for lesion_id, diagnosis in diagnoses.items():
        kept = isinstance(diagnosis, _Diagnosis) and mapping.lookup(diagnosis.code)[0] is not None
        if kept and lesion_id not in lesions_with_dermoscopy:
            skipped.append(
                Skipped(f"{SOURCE}/{lesion_id}", f"{NO_DERMOSCOPIC_IMAGE}: none listed in {meta_path.name}")
            )

    extra = {
        "importer": SOURCE,
        "source_dir": str(folder.root),
        "rows": total + len(meta_table.malformed),
        "lesions": len(gt_table.rows) + len(gt_table.malformed),
    }
    manifest = Manifest(
        items,
        Provenance(folder.stage, STAGE_VERSION, folder.config),
        name=SOURCE,
        skipped=skipped,
        extra=extra,
    )
    return finish_import(store, prefix, manifest)


def _read_diagnoses(
    table: CsvTable, layout: Milk10kLayout, csv_name: str
) -> tuple[dict[str, _Diagnosis | str], list[Skipped]]:
    """Per lesion the argmax diagnosis, or the reason there is none (kept so its images say why)."""
    columns = list(layout.diagnosis_columns) or [c for c in table.header if c and c != layout.lesion_column]
    if not columns:
        raise InvalidArgument(
            f"{csv_name} has no diagnosis columns", hint="expected one column per diagnosis"
        )
    diagnoses: dict[str, _Diagnosis | str] = {}
    skipped: list[Skipped] = []
    for row in table.rows:
        lesion_id = row.values[layout.lesion_column]
        if not lesion_id:
            skipped.append(
                Skipped(f"{SOURCE}/{csv_name}:{row.line}", f"{MALFORMED}: empty {layout.lesion_column}")
            )
            continue
        if lesion_id in diagnoses:
            skipped.append(
                Skipped(f"{SOURCE}/{lesion_id}", f"{DUPLICATE_ROW}: lesion listed earlier in {csv_name}")
            )
            continue
        diagnoses[lesion_id] = _argmax(row.values, columns)
    return diagnoses, skipped


def _argmax(values: Mapping[str, str], columns: list[str]) -> _Diagnosis | str:
    scores = {}
    for column in columns:
        try:
            score = float(values[column])
        except ValueError:
            return f"{MALFORMED}: ground truth {column}={values[column]!r} is not a number"
        if not math.isfinite(score):
            return f"{MALFORMED}: ground truth {column} is not finite"
        scores[column] = score
    best = max(scores.values())
    winners = [column for column in columns if scores[column] == best]
    if len(winners) > 1:
        # Refuse rather than pick by column order: a tie means the label is genuinely uncertain.
        return f"{AMBIGUOUS}: tie between {', '.join(winners)}"
    return _Diagnosis(winners[0], best)
