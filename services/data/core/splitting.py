"""Combining sources into one set and splitting it into train/val/test by lesion.

Splitting rule (DESIGN.md, science rules): every image of a lesion lands in the same split, so no
lesion is ever seen in training and tested on; splits are stratified by class and source.

Algorithm (``ALGORITHM``): lesions are grouped by ``(source, lesion_id)`` — ids are namespaced by
source so a HAM10000 and a MILK10K id can never merge — and each lesion gets its majority label.
Lesions are put into strata (by default majority label × source). Within a stratum, lesions are
sorted, shuffled with a generator seeded by ``(seed, stratum)`` and assigned one by one to the split
whose image count is furthest *below* its target (``fraction × images in stratum``); ties go to
train, then val, then test. Counting images rather than lesions keeps the image proportions right
when lesions have several images; the absolute deficit fills train first, so a stratum with one or
two lesions goes to train rather than being scattered across splits. Per stratum no split
overshoots its target by a whole lesion, so each ends within a couple of lesions of it.
"""

from __future__ import annotations

import math
import numbers
import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import replace

from skingenbench.services.core.classes import CLASS_INDEX, SPLITS
from skingenbench.services.core.errors import DataIntegrityError, InvalidArgument
from skingenbench.services.core.hashing import canonical_json, sha256_bytes
from skingenbench.services.core.manifest import Item, Manifest, ParentRef, Provenance, Skipped

STAGE_VERSION = "1"
ALGORITHM = "stratified-lesion-greedy-deficit-v1"
FRACTION_TOLERANCE = 1e-6
STRATIFY_FIELDS = ("label", "source")
DUPLICATE = "duplicate image"

LesionKey = tuple[str, str, str]  # (source, lesion_id, image key if the lesion id is empty)


def combine_manifests(
    manifests: Sequence[Manifest], *, parents: Sequence[ParentRef] = (), name: str = "combined"
) -> Manifest:
    """Merge sources in the order given; an image already seen (same sha256) is dropped and reported.

    The first copy is kept, so list the source you trust most first. Skipped entries of the inputs
    are carried over, so the combined set's curation report still shows every drop.
    """
    items: list[Item] = []
    skipped: list[Skipped] = []
    duplicates: list[dict] = []
    first: dict[str, Item] = {}
    for manifest in manifests:
        skipped.extend(manifest.skipped)
        for item in manifest.items:
            kept = first.get(item.sha256) if item.sha256 else None
            if kept is None:
                if item.sha256:
                    first[item.sha256] = item
                items.append(replace(item, meta=dict(item.meta), objects=dict(item.objects)))
                continue
            skipped.append(Skipped(item_ref(item), f"{DUPLICATE}: same sha256 as {item_ref(kept)}"))
            duplicates.append(
                {
                    "ref": item_ref(item),
                    "kept": item_ref(kept),
                    "sha256": item.sha256,
                    "labels": [kept.label, item.label],
                    "label_conflict": kept.label != item.label,
                }
            )
    config = {"inputs": [m.name for m in manifests], "dedupe": "sha256", "keep": "first"}
    extra = {
        "inputs": [{"name": m.name, "items": len(m.items), "skipped": len(m.skipped)} for m in manifests],
        "duplicates": duplicates,
    }
    provenance = Provenance("combine", STAGE_VERSION, config, None, list(parents))
    return Manifest(items, provenance, name=name, skipped=skipped, extra=extra)


def split_by_lesion(
    manifest: Manifest,
    fractions: Sequence[float] = (0.70, 0.15, 0.15),
    seed: int = 0,
    stratify_by: Sequence[str] = ("label", "source"),
    *,
    parents: Sequence[ParentRef] = (),
) -> Manifest:
    """A copy of ``manifest`` with every item's split set to train, val or test (see module docstring).

    The result depends only on the set of items, the fractions, the seed and the strata — not on
    item order. Raises :class:`InvalidArgument` for bad fractions or strata.
    """
    fractions = validate_fractions(fractions)
    stratify_by = validate_stratify_by(stratify_by)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InvalidArgument(f"split seed must be an integer, got {seed!r}")
    seed = int(seed)

    ordered = sorted(manifest.items, key=_item_order)
    lesions: dict[LesionKey, list[Item]] = defaultdict(list)
    for item in ordered:
        lesions[lesion_key(item)].append(item)

    strata: dict[tuple[str, ...], list[LesionKey]] = defaultdict(list)
    multi_label = []
    for key, members in lesions.items():
        label, counts = majority_label(members)
        if len(counts) > 1:
            multi_label.append(
                {"lesion": _lesion_name(key), "labels": dict(sorted(counts.items())), "majority": label}
            )
        values = {"label": label, "source": key[0]}
        strata[tuple(values[name] for name in stratify_by)].append(key)

    assignment: dict[LesionKey, str] = {}
    small_strata = []
    active_splits = sum(1 for f in fractions if f > 0)
    for stratum in sorted(strata):
        keys = sorted(strata[stratum])
        random.Random(_stratum_seed(seed, stratum)).shuffle(keys)
        assignment.update(_assign_greedy(keys, {k: len(lesions[k]) for k in keys}, fractions))
        if len(keys) < active_splits:
            small_strata.append({"stratum": list(stratum), "lesions": len(keys)})

    items = [
        replace(item, split=assignment[lesion_key(item)], meta=dict(item.meta), objects=dict(item.objects))
        for item in ordered
    ]
    summary = {
        "fractions": list(fractions),
        "seed": seed,
        "stratify_by": list(stratify_by),
        "algorithm": ALGORITHM,
        "images": {s: sum(1 for i in items if i.split == s) for s in SPLITS},
        "lesions": {s: sum(1 for v in assignment.values() if v == s) for s in SPLITS},
        "multi_label_lesions": multi_label,
        "small_strata": small_strata,
    }
    config = {"fractions": list(fractions), "stratify_by": list(stratify_by), "algorithm": ALGORITHM}
    provenance = Provenance("split", STAGE_VERSION, config, seed, list(parents))
    result = Manifest(
        items,
        provenance,
        name=manifest.name,
        skipped=list(manifest.skipped),
        extra={**manifest.extra, "split": summary},
    )
    assert_no_lesion_leak(result)
    return result


def assert_no_lesion_leak(manifest: Manifest) -> None:
    """Raise :class:`DataIntegrityError` if any lesion has images in more than one split."""
    splits_of: dict[LesionKey, set[str]] = defaultdict(set)
    for item in manifest.items:
        splits_of[lesion_key(item)].add(item.split)
    leaks = sorted(_lesion_name(key) for key, splits in splits_of.items() if len(splits) > 1)
    if leaks:
        raise DataIntegrityError(
            f"{len(leaks)} lesion(s) appear in more than one split, e.g. {', '.join(leaks[:5])}",
            hint="split with split_by_lesion; never split a lesion-grouped data set by image",
        )


def validate_fractions(fractions: Iterable[float]) -> tuple[float, float, float]:
    """Three non-negative numbers (train, val, test) summing to 1 within ``FRACTION_TOLERANCE``."""
    try:
        values = tuple(fractions)
    except TypeError:
        raise InvalidArgument(f"split fractions must be three numbers, got {fractions!r}") from None
    if len(values) != 3 or any(isinstance(v, bool) or not isinstance(v, numbers.Real) for v in values):
        raise InvalidArgument(
            f"split fractions must be three numbers (train, val, test), got {list(values)!r}",
            hint="e.g. 0.70 0.15 0.15",
        )
    floats = tuple(float(v) for v in values)
    if any(not math.isfinite(v) or v < 0 for v in floats):
        raise InvalidArgument(f"split fractions must be finite and non-negative, got {list(floats)}")
    if abs(sum(floats) - 1.0) > FRACTION_TOLERANCE:
        raise InvalidArgument(f"split fractions must sum to 1, got {list(floats)} (sum {sum(floats):.6g})")
    return floats  # type: ignore[return-value]


def validate_stratify_by(stratify_by: Iterable[str]) -> tuple[str, ...]:
    if isinstance(stratify_by, str):
        stratify_by = (stratify_by,)
    fields = tuple(stratify_by)
    unknown = [name for name in fields if name not in STRATIFY_FIELDS]
    if unknown or len(set(fields)) != len(fields):
        raise InvalidArgument(
            f"cannot stratify by {list(fields)}",
            hint=f"choose distinct fields among {', '.join(STRATIFY_FIELDS)}",
        )
    return fields


def lesion_key(item: Item) -> LesionKey:
    # An image without a lesion id is its own lesion: grouping unrelated images would be worse.
    return (item.source, item.lesion_id, "" if item.lesion_id else item.key)


def majority_label(items: Iterable[Item]) -> tuple[str, Counter]:
    """The most common label of a lesion; ties go to the class listed first in ``CLASSES``."""
    counts = Counter(item.label for item in items)
    label = min(counts, key=lambda lb: (-counts[lb], CLASS_INDEX.get(lb, len(CLASS_INDEX)), lb))
    return label, counts


def item_ref(item: Item) -> str:
    return f"{item.source}/{item.image_id or item.key}"


def _lesion_name(key: LesionKey) -> str:
    return f"{key[0]}/{key[1] or key[2]}"


def _item_order(item: Item) -> tuple[str, ...]:
    return (item.source, item.lesion_id, item.image_id, item.key, item.sha256, item.label)


def _stratum_seed(seed: int, stratum: tuple[str, ...]) -> int:
    # Derived per stratum so that adding a stratum does not reshuffle the others; sha256 rather
    # than hash() because Python's string hashing changes between processes.
    return int(sha256_bytes(canonical_json([seed, list(stratum)]).encode())[:16], 16)


def _assign_greedy(
    lesions: Sequence[LesionKey], sizes: dict[LesionKey, int], fractions: tuple[float, float, float]
) -> dict[LesionKey, str]:
    total = sum(sizes.values())
    targets = [fraction * total for fraction in fractions]
    filled = [0, 0, 0]
    assignment = {}
    for key in lesions:
        # Largest absolute deficit; on a tie the earlier split (train first). A split with fraction 0
        # never has a positive deficit, and some split always does while images remain.
        best = max(range(3), key=lambda i: (targets[i] - filled[i], -i))
        filled[best] += sizes[key]
        assignment[key] = SPLITS[best]
    return assignment
