"""Predictions as CSV in the ISIC challenge layout: ``image`` then one probability column per class.

The ISIC 2018/2019 submission format is one row per test image, its id in the ``image`` column and
one column per diagnosis holding that class's probability. Here the classes are this study's five
(``NV,BCC,BKL,MEL,SCC`` by default), so a file written here is read back by anything that speaks the
ISIC layout, and files from elsewhere can be scored if their columns name the same classes.

Probabilities are written with ``repr`` (the shortest text that parses back to the same float), so a
round trip is exact. Reading checks the layout, not the probabilities: ``validate_predictions`` does
that when the predictions are scored.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

import numpy as np
from skingenbench.services.core.classes import CLASSES
from skingenbench.services.core.errors import InvalidArgument

IMAGE_COLUMN = "image"


def _check_ids(image_ids: Sequence[str]) -> list[str]:
    ids = [str(i) for i in image_ids]
    if any(not i.strip() for i in ids):
        raise InvalidArgument("image ids must be non-empty")
    seen: set[str] = set()
    for image_id in ids:
        if image_id in seen:
            raise InvalidArgument(f"image id {image_id!r} appears more than once")
        seen.add(image_id)
    return ids


def _check_classes(classes: Sequence[str]) -> tuple[str, ...]:
    names = tuple(str(c) for c in classes)
    if (
        not names
        or any(not c.strip() for c in names)
        or len(set(names)) != len(names)
        or IMAGE_COLUMN in names
    ):
        raise InvalidArgument(
            f"class columns must be unique, non-empty and not {IMAGE_COLUMN!r}: {list(names)}"
        )
    return names


def write_predictions_csv(image_ids: Sequence[str], probs, classes: Sequence[str] = CLASSES) -> str:
    """CSV text with header ``image,<class>,...`` and one row per image, in the order given."""
    names = _check_classes(classes)
    ids = _check_ids(image_ids)
    probs = np.asarray(probs, dtype=float)
    if probs.shape != (len(ids), len(names)):
        raise InvalidArgument(
            f"probs must have shape [{len(ids)}, {len(names)}] (ids x classes), got {probs.shape}"
        )
    if not np.isfinite(probs).all():
        raise InvalidArgument("probabilities must be finite")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((IMAGE_COLUMN, *names))
    for image_id, row in zip(ids, probs.tolist(), strict=True):
        writer.writerow((image_id, *(repr(v) for v in row)))
    return out.getvalue()


def read_predictions_csv(
    text: str, classes: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """Parse ISIC-layout CSV text into (image ids, probabilities [N, C], class names).

    With ``classes`` the file must have exactly those class columns (in any order); the columns are
    returned reordered to ``classes``. A file of another layout is refused with the line at fault.
    """
    rows = [
        row for row in csv.reader(io.StringIO(text.lstrip("\ufeff"))) if any(cell.strip() for cell in row)
    ]
    if not rows:
        raise InvalidArgument("the predictions CSV is empty")
    header = [cell.strip() for cell in rows[0]]
    if header[0] != IMAGE_COLUMN:
        raise InvalidArgument(f"the first column must be {IMAGE_COLUMN!r} (ISIC layout), got {header[0]!r}")
    names = _check_classes(header[1:])
    ids, values = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise InvalidArgument(f"line {line} has {len(row)} fields, the header has {len(header)}")
        try:
            values.append([float(cell) for cell in row[1:]])
        except ValueError as error:
            raise InvalidArgument(f"line {line}: a probability is not a number ({error})") from None
        ids.append(row[0])
    ids = _check_ids(ids)
    probs = np.asarray(values, dtype=float).reshape(len(ids), len(names))
    if not np.isfinite(probs).all():
        raise InvalidArgument("the predictions CSV holds non-finite probabilities")
    if classes is not None:
        wanted = _check_classes(classes)
        if set(wanted) != set(names):
            raise InvalidArgument(f"the CSV's classes {list(names)} are not the expected {list(wanted)}")
        probs = probs[:, [names.index(c) for c in wanted]]
        names = wanted
    return ids, probs, names
