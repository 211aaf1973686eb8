"""A study's reading list: a seeded, balanced draw of synthetic and real images, and each reader's order.

The draw is balanced (as many real images as synthetic ones) and, by default, class-matched: for every
class the synthetic set requests, as many real images of that class are drawn as synthetic ones, so the
diagnosis is no cue to the answer (a synthetic set of melanomas read beside real naevi would be a test of
diagnosis, not of realism). Image ids are opaque hashes, so neither an id nor the list's order says which
images are synthetic; every reader reads the same images, each in an order of their own (order effects
average out over readers, and Fleiss' kappa needs items read by everyone).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from skingenbench.services.core.errors import InvalidArgument, NotFound
from skingenbench.services.core.hashing import canonical_json, sha256_bytes
from skingenbench.services.core.manifest import Item

REAL, SYNTHETIC = "real", "synthetic"
CALLS = (REAL, SYNTHETIC)
STUDY_FORMAT = "skingenbench.reader-study"
STUDY_VERSION = 1
DEFAULT_COUNT = 40


@dataclass(frozen=True)
class StudyItem:
    image_id: str  # opaque: what the page and the answers name the image by
    key: str  # the image in the store
    sha256: str
    truth: str  # "real" or "synthetic"
    label: str  # synthetic: the class the generator was asked for; real: the ground-truth diagnosis
    source: str = ""  # the manifest item's source (generator name, data set)


@dataclass(frozen=True)
class ManifestPin:
    uri: str
    sha256: str


@dataclass
class Study:
    study_id: str
    seed: int
    count: int
    synthetic: ManifestPin
    real: ManifestPin
    classes: list[str]  # the diagnosis choices offered to readers
    match_classes: bool
    items: list[StudyItem] = field(default_factory=list)

    def definition(self) -> dict[str, Any]:
        """What the study is made of; a second ``serve`` with the same id must define the same study."""
        data = asdict(self)
        data.pop("study_id")
        return data

    def to_dict(self) -> dict[str, Any]:
        return {"format": STUDY_FORMAT, "version": STUDY_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Study:
        if data.get("format") != STUDY_FORMAT or data.get("version") != STUDY_VERSION:
            raise InvalidArgument("not a SkinGenBench reader study (format/version fields)")
        return cls(
            study_id=str(data["study_id"]),
            seed=int(data["seed"]),
            count=int(data["count"]),
            synthetic=ManifestPin(**data["synthetic"]),
            real=ManifestPin(**data["real"]),
            classes=[str(c) for c in data["classes"]],
            match_classes=bool(data["match_classes"]),
            items=[StudyItem(**item) for item in data["items"]],
        )

    def item(self, image_id: str) -> StudyItem:
        for item in self.items:
            if item.image_id == image_id:
                return item
        raise NotFound(f"image {image_id!r} is not part of study {self.study_id!r}")

    def truths(self) -> dict[str, str]:
        return {item.image_id: item.truth for item in self.items}


def default_study_id(synthetic: ManifestPin, real: ManifestPin, count: int, seed: int, match: bool) -> str:
    """Content addressing: the same manifests, count, seed and matching name the same study."""
    body = canonical_json([asdict(synthetic), asdict(real), count, seed, match])
    return "rs-" + sha256_bytes(body.encode())[:12]


def _image_id(study_seed: int, item: Item) -> str:
    return sha256_bytes(f"{study_seed}:{item.key}:{item.sha256}".encode())[:16]


def _class_counts(synthetic: list[Item], real: list[Item], pairs: int, rng: random.Random, match: bool):
    """How many synthetic (= real) images of each class to draw: ``pairs`` slots drawn without replacement
    from the classes' available pairs, so a class is represented in proportion to what both sets offer."""
    syn, rea = Counter(i.label for i in synthetic), Counter(i.label for i in real)
    if not match:
        return None
    available = {label: min(syn[label], rea[label]) for label in sorted(syn)}
    slots = [label for label, n in available.items() for _ in range(n)]
    if not slots:
        raise InvalidArgument(
            f"the real manifest has no image of the synthetic set's class(es) {', '.join(sorted(syn))}",
            hint="give a real manifest with those classes, or --no-class-match",
        )
    return Counter(rng.sample(slots, min(pairs, len(slots))))


def build_study(
    study_id: str,
    synthetic_items: list[Item],
    real_items: list[Item],
    *,
    synthetic: ManifestPin,
    real: ManifestPin,
    classes: list[str],
    count: int = DEFAULT_COUNT,
    seed: int = 0,
    match_classes: bool = True,
) -> Study:
    """Draw ``count`` images (half synthetic, half real; an odd count is rounded down) with ``seed``."""
    if count < 2:
        raise InvalidArgument(f"a reader study needs at least 2 images (--count {count})")
    if not synthetic_items:
        raise InvalidArgument("the synthetic manifest lists no image")
    if not real_items:
        raise InvalidArgument("the real manifest lists no image")
    rng = random.Random(seed)
    pairs = min(count // 2, len(synthetic_items), len(real_items))
    per_class = _class_counts(synthetic_items, real_items, pairs, rng, match_classes)
    if per_class is None:
        drawn_syn, drawn_real = rng.sample(synthetic_items, pairs), rng.sample(real_items, pairs)
    else:
        drawn_syn, drawn_real = [], []
        for label in sorted(per_class):
            n = per_class[label]
            drawn_syn += rng.sample([i for i in synthetic_items if i.label == label], n)
            drawn_real += rng.sample([i for i in real_items if i.label == label], n)
    items = [StudyItem(_image_id(seed, i), i.key, i.sha256, SYNTHETIC, i.label, i.source) for i in drawn_syn]
    items += [StudyItem(_image_id(seed, i), i.key, i.sha256, REAL, i.label, i.source) for i in drawn_real]
    if len({item.image_id for item in items}) != len(items):
        raise InvalidArgument(
            "the two manifests name the same image twice; a reader study needs distinct images"
        )
    items.sort(key=lambda item: item.image_id)  # stored order: by opaque id, never by truth
    return Study(study_id, seed, count, synthetic, real, list(classes), match_classes, items)


def reader_order(study: Study, reader: str) -> list[str]:
    """The image ids in the order ``reader`` sees them: a shuffle seeded by the study seed and the name
    (``random.Random`` seeded with a string hashes it with SHA-512: the same order in every process)."""
    ids = [item.image_id for item in study.items]
    random.Random(f"{study.seed}:{reader}").shuffle(ids)
    return ids
