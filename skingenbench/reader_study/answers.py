"""A reader's answers: one per image, "real" or "synthetic" and optionally a diagnosis, checked on entry.

An answer, once given, stands: the page shows no way back (a reader who could revisit images after seeing
more of them would be answering a different question), and the same answer sent twice — a reloaded tab
repeating its last request — is accepted once and changes nothing.
"""

from __future__ import annotations

import datetime as _dt
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from skingenbench.reader_study.reading_list import CALLS, Study
from skingenbench.services.core.errors import AlreadyExists, InvalidArgument

ANSWERS_FORMAT = "skingenbench.reader-answers"
ANSWERS_VERSION = 1
# A reader's name becomes an object key (answers/<reader>.json): letters, digits and . _ - only.
READER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def validate_reader(name: str) -> str:
    name = (name or "").strip()
    if not READER_NAME.match(name):
        raise InvalidArgument(
            f"reader name {name!r} is not allowed",
            hint="1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
        )
    return name


@dataclass(frozen=True)
class Answer:
    image_id: str
    call: str  # "real" or "synthetic"
    diagnosis: str | None = None  # one of the study's classes, or None when the reader gave none
    answered_at: str = ""


@dataclass
class ReaderAnswers:
    study_id: str
    reader: str
    answers: list[Answer] = field(default_factory=list)

    def answered(self) -> dict[str, Answer]:
        return {answer.image_id: answer for answer in self.answers}

    def record(self, study: Study, image_id: str, call: str, diagnosis: str | None = None) -> bool:
        """Check and add an answer; False when the very same answer was already recorded (nothing changes)."""
        study.item(image_id)  # an unknown image is NotFound
        call = (call or "").strip().lower()
        if call not in CALLS:
            raise InvalidArgument(f"answer {call!r} is not one of {', '.join(CALLS)}")
        diagnosis = (diagnosis or "").strip() or None
        if diagnosis is not None and diagnosis not in study.classes:
            raise InvalidArgument(f"diagnosis {diagnosis!r} is not one of {', '.join(study.classes)}")
        before = self.answered().get(image_id)
        if before is not None:
            if (before.call, before.diagnosis) == (call, diagnosis):
                return False
            raise AlreadyExists(
                f"image {image_id} was already answered ({before.call}); an answer cannot be changed"
            )
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.answers.append(Answer(image_id, call, diagnosis, now))
        return True

    def next_image(self, order: list[str]) -> str | None:
        done = self.answered()
        return next((image_id for image_id in order if image_id not in done), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": ANSWERS_FORMAT,
            "version": ANSWERS_VERSION,
            "study_id": self.study_id,
            "reader": self.reader,
            "answers": [asdict(a) for a in self.answers],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReaderAnswers:
        if data.get("format") != ANSWERS_FORMAT or data.get("version") != ANSWERS_VERSION:
            raise InvalidArgument("not a SkinGenBench reader's answers file (format/version fields)")
        answers = [Answer(**a) for a in data.get("answers") or []]
        return cls(str(data["study_id"]), str(data["reader"]), answers)
