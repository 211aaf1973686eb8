"""Studies and answers in the platform store, under ``reader-study/<study_id>/``:

- ``study.json`` — the reading list (written once, when the study is first served);
- ``answers/<reader>.json`` — one file per reader, rewritten after every answer. The store's writes are
  atomic (a folder store renames a finished temp file, S3 shows an object once its upload completes), so a
  reader who closes the tab loses nothing they answered and a report never reads half a file.
"""

from __future__ import annotations

import json
import re

from skingenbench.reader_study.answers import ReaderAnswers, validate_reader
from skingenbench.reader_study.reading_list import (
    ManifestPin,
    Study,
    build_study,
    default_study_id,
)
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument, NotFound
from skingenbench.services.platform.manifest_io import pin_manifest
from skingenbench.services.platform.store import ObjectStore

PREFIX = "reader-study"
STUDY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def validate_study_id(study_id: str) -> str:
    if not STUDY_ID.match(study_id or ""):
        raise InvalidArgument(
            f"study id {study_id!r} is not allowed", hint="1-64 letters, digits, '.', '_' or '-'"
        )
    return study_id


def study_key(study_id: str) -> str:
    return f"{PREFIX}/{validate_study_id(study_id)}/study.json"


def answers_key(study_id: str, reader: str) -> str:
    return f"{PREFIX}/{validate_study_id(study_id)}/answers/{validate_reader(reader)}.json"


def load_study(store: ObjectStore, study_id: str) -> Study:
    try:
        raw = store.get_bytes(study_key(study_id))
    except NotFound:
        raise NotFound(
            f"no reader study {study_id!r} in {store.root_uri}",
            hint="`skingenbench reader-study serve --set … --real …` creates it",
        ) from None
    return Study.from_dict(json.loads(raw))


def create_or_resume_study(
    store: ObjectStore,
    synthetic_uri: str,
    real_uri: str,
    *,
    count: int,
    seed: int,
    study_id: str = "",
    match_classes: bool = True,
    real_split: str = "",
) -> Study:
    """The study these manifests and settings define: made and stored on first use, read back after.

    A study id already in the store with a different definition is refused: its answers belong to the
    images it showed, and silently swapping the images under them would mix two studies.
    """
    synthetic, syn_sha = pin_manifest(store, synthetic_uri)
    real, real_sha = pin_manifest(store, real_uri)
    syn_pin, real_pin = (
        ManifestPin(store.uri(store.key_from_uri(synthetic_uri)), syn_sha),
        ManifestPin(store.uri(store.key_from_uri(real_uri)), real_sha),
    )
    real_items = real.by_split(real_split) if real_split else real.items
    if real_split and not real_items:
        raise InvalidArgument(f"the real manifest has no image in split {real_split!r}")
    study_id = validate_study_id(study_id or default_study_id(syn_pin, real_pin, count, seed, match_classes))
    study = build_study(
        study_id,
        synthetic.items,
        real_items,
        synthetic=syn_pin,
        real=real_pin,
        classes=list(CLASSES),
        count=count,
        seed=seed,
        match_classes=match_classes,
    )
    key = study_key(study_id)
    if store.exists(key):
        stored = load_study(store, study_id)
        if stored.definition() != study.definition():
            raise FailedPrecondition(
                f"reader study {study_id!r} already exists with other images or settings",
                hint="serve it with the manifests and options it was made with, or choose another --study-id",
            )
        return stored
    store.put_bytes(key, json.dumps(study.to_dict(), indent=1).encode(), "application/json")
    return study


def load_answers(store: ObjectStore, study_id: str, reader: str) -> ReaderAnswers:
    key = answers_key(study_id, reader)
    if not store.exists(key):
        return ReaderAnswers(study_id, reader)
    return ReaderAnswers.from_dict(json.loads(store.get_bytes(key)))


def save_answers(store: ObjectStore, answers: ReaderAnswers) -> None:
    key = answers_key(answers.study_id, answers.reader)
    store.put_bytes(key, json.dumps(answers.to_dict(), indent=1).encode(), "application/json")


def all_answers(store: ObjectStore, study_id: str) -> list[ReaderAnswers]:
    prefix = f"{PREFIX}/{validate_study_id(study_id)}/answers/"
    return [
        ReaderAnswers.from_dict(json.loads(store.get_bytes(key)))
        for key in store.list(prefix)
        if key.endswith(".json")
    ]
