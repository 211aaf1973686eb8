from __future__ import annotations

import random
from collections import Counter, defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from skingenbench.services.core.classes import CLASSES, SPLITS
from skingenbench.services.core.errors import DataIntegrityError, InvalidArgument
from skingenbench.services.data.core.splitting import (
    assert_no_lesion_leak,
    combine_manifests,
    split_by_lesion,
)
from skingenbench.services.data.curation_report import (
    curation_report,
    describe_manifest,
    format_report_markdown,
)
from skingenbench.services.data.ham10000 import import_ham10000
from skingenbench.services.data.milk10k import import_milk10k
from skingenbench.services.platform.store import LocalFolderStore

from tests.data.fixtures import build_ham10000, build_milk10k, make_item, manifest_of, synthetic_manifest

# database=None: no .hypothesis/ folder in the checkout; the examples are cheap to regenerate.
FEW = settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

# A lesion: (source, label of each of its images). Two sources share lesion ids on purpose.
lesion_specs = st.lists(
    st.tuples(
        st.sampled_from(["ham10000", "milk10k"]), st.lists(st.sampled_from(CLASSES), min_size=1, max_size=4)
    ),
    min_size=1,
    max_size=60,
)
fraction_triples = st.sampled_from(
    [(0.7, 0.15, 0.15), (0.8, 0.1, 0.1), (0.5, 0.5, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)]
)


def manifest_from_specs(specs):
    items = []
    for n, (source, labels) in enumerate(specs):
        items += [make_item(source, f"L{n // 2:04d}", j, label) for j, label in enumerate(labels)]
    return manifest_of(items)


def split_of(manifest) -> dict[str, str]:
    return {item.key: item.split for item in manifest.items}


def splits_per_lesion(manifest) -> dict[tuple[str, str], set[str]]:
    seen = defaultdict(set)
    for item in manifest.items:
        seen[(item.source, item.lesion_id)].add(item.split)
    return seen


# -- properties -------------------------------------------------------------------------------------------


@FEW
@given(specs=lesion_specs, seed=st.integers(0, 2**31), fractions=fraction_triples)
def test_no_lesion_is_ever_in_two_splits(specs, seed, fractions):
    manifest = manifest_from_specs(specs)
    result = split_by_lesion(manifest, fractions, seed)
    assert len(result.items) == len(manifest.items)
    assert all(item.split in SPLITS for item in result.items)
    assert all(len(splits) == 1 for splits in splits_per_lesion(result).values())
    # A split with fraction 0 stays empty.
    for split, fraction in zip(SPLITS, fractions, strict=True):
        if fraction == 0:
            assert not result.by_split(split)


@FEW
@given(specs=lesion_specs, seed=st.integers(0, 2**31), shuffle_seed=st.integers(0, 2**31))
def test_item_order_does_not_change_the_split(specs, seed, shuffle_seed):
    manifest = manifest_from_specs(specs)
    shuffled = manifest_of(random.Random(shuffle_seed).sample(manifest.items, len(manifest.items)))
    assert split_of(split_by_lesion(manifest, seed=seed)) == split_of(split_by_lesion(shuffled, seed=seed))
    assert (
        split_by_lesion(manifest, seed=seed).content_hash()
        == split_by_lesion(shuffled, seed=seed).content_hash()
    )


@settings(max_examples=10, deadline=None, database=None)
@given(seed=st.integers(0, 2**31), other=st.integers(0, 2**31))
def test_same_seed_same_split_and_different_seed_different_split(seed, other):
    manifest = synthetic_manifest(300, seed=7)
    first = split_of(split_by_lesion(manifest, seed=seed))
    assert first == split_of(split_by_lesion(manifest, seed=seed))
    if other != seed:
        assert first != split_of(split_by_lesion(manifest, seed=other))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_class_and_source_proportions_follow_the_fractions(seed):
    manifest = synthetic_manifest(3000, seed=seed)
    result = split_by_lesion(manifest, (0.7, 0.15, 0.15), seed=seed)
    images = Counter((item.label, item.source, item.split) for item in result.items)
    for label in CLASSES:
        for source in ("ham10000", "milk10k"):
            stratum = sum(images[(label, source, split)] for split in SPLITS)
            for split, fraction in zip(SPLITS, (0.7, 0.15, 0.15), strict=True):
                # Within one stratum the greedy assignment ends within a few small lesions of target.
                assert abs(images[(label, source, split)] - fraction * stratum) <= 6, (label, source, split)
    totals = Counter(item.split for item in result.items)
    for split, fraction in zip(SPLITS, (0.7, 0.15, 0.15), strict=True):
        assert abs(totals[split] / len(result.items) - fraction) < 0.01


# -- behaviour ----------------------------------------------------------------------------------------------


def test_lesion_ids_are_namespaced_by_source():
    items = [make_item("ham10000", "L1", j, "NV") for j in range(3)] + [
        make_item("milk10k", "L1", j, "NV") for j in range(3)
    ]
    # One stratum holding both: two lesions of three images, one fills train's target, the other val's.
    result = split_by_lesion(manifest_of(items), (0.5, 0.5, 0.0), seed=0, stratify_by=("label",))
    assert sorted({item.source: item.split for item in result.items}.values()) == ["train", "val"]
    assert result.extra["split"]["lesions"] == {"train": 1, "val": 1, "test": 0}
    assert curation_report(result)["totals"]["lesions"] == 2


def test_small_strata_go_to_train_first():
    items = [make_item("milk10k", "S1", 0, "SCC"), make_item("milk10k", "S2", 0, "SCC")]
    items += [make_item("milk10k", f"N{i}", 0, "NV") for i in range(20)]
    result = split_by_lesion(manifest_of(items), seed=3)
    assert {item.split for item in result.items if item.label == "SCC"} == {"train"}
    assert result.extra["split"]["small_strata"] == [{"stratum": ["SCC", "milk10k"], "lesions": 2}]
    three = [make_item("milk10k", f"S{i}", 0, "SCC") for i in range(3)]
    assert Counter(i.split for i in split_by_lesion(manifest_of(three)).items) == {"train": 2, "val": 1}


def test_multi_label_lesion_uses_the_majority_label_and_is_reported():
    items = [
        make_item("ham10000", "M", 0, "MEL"),
        make_item("ham10000", "M", 1, "MEL"),
        make_item("ham10000", "M", 2, "NV"),
    ]
    result = split_by_lesion(manifest_of(items), seed=0)
    assert result.extra["split"]["multi_label_lesions"] == [
        {"lesion": "ham10000/M", "labels": {"MEL": 2, "NV": 1}, "majority": "MEL"}
    ]
    assert len({item.split for item in result.items}) == 1
    assert [item.label for item in result.items] == ["MEL", "MEL", "NV"]  # labels themselves are untouched
    assert "ham10000/M" in format_report_markdown(curation_report(result))


def test_stratifying_by_label_only_mixes_sources_in_one_stratum():
    manifest = synthetic_manifest(200, seed=1)
    by_label = split_by_lesion(manifest, seed=0, stratify_by=("label",))
    assert by_label.provenance.config["stratify_by"] == ["label"]
    assert split_of(by_label) != split_of(split_by_lesion(manifest, seed=0))


@pytest.mark.parametrize(
    "fractions",
    [
        (0.7, 0.15),
        (0.7, 0.15, 0.15, 0.0),
        (0.7, 0.2, 0.2),
        (1.2, -0.1, -0.1),
        (float("nan"), 0.5, 0.5),
        ("a", 0, 1),
        0.7,
    ],
)
def test_bad_fractions_are_invalid_arguments(fractions):
    with pytest.raises(InvalidArgument):
        split_by_lesion(synthetic_manifest(5), fractions)


def test_fractions_within_tolerance_and_bad_strata():
    split_by_lesion(synthetic_manifest(5), (0.7, 0.15, 0.15 + 5e-7))
    with pytest.raises(InvalidArgument):
        split_by_lesion(synthetic_manifest(5), (0.7, 0.15, 0.15 + 5e-6))
    with pytest.raises(InvalidArgument, match="stratify"):
        split_by_lesion(synthetic_manifest(5), stratify_by=("colour",))
    with pytest.raises(InvalidArgument, match="seed"):
        split_by_lesion(synthetic_manifest(5), seed="zero")


def test_a_leak_is_detected():
    items = [make_item("ham10000", "L1", 0, "NV"), make_item("ham10000", "L1", 1, "NV")]
    items[0].split, items[1].split = "train", "test"
    with pytest.raises(DataIntegrityError, match="ham10000/L1"):
        assert_no_lesion_leak(manifest_of(items))
    items[1].split = "train"
    assert_no_lesion_leak(manifest_of(items))


def test_combine_drops_exact_duplicates_and_reports_them():
    ham = manifest_of(
        [make_item("ham10000", "H1", 0, "MEL", sha="a" * 64), make_item("ham10000", "H2", 0, "NV")], "ham"
    )
    milk = manifest_of(
        [make_item("milk10k", "M1", 0, "NV", sha="a" * 64), make_item("milk10k", "M2", 0, "BCC")], "milk"
    )
    combined = combine_manifests([ham, milk])
    assert [item.image_id for item in combined.items] == ["H1_0", "H2_0", "M2_0"]
    assert [(s.ref, s.reason) for s in combined.skipped] == [
        ("milk10k/M1_0", "duplicate image: same sha256 as ham10000/H1_0")
    ]
    assert combined.extra["duplicates"][0]["label_conflict"] is True
    report = curation_report(combined)
    assert report["dropped"]["duplicate image"]["count"] == 1
    assert report["duplicates"][0]["kept"] == "ham10000/H1_0"
    assert "milk10k/M1_0 = ham10000/H1_0 (labels differ!)" in format_report_markdown(report)
    assert combined.provenance.config["inputs"] == ["ham", "milk"]


def test_import_combine_split_end_to_end(tmp_path):
    store = LocalFolderStore(tmp_path / "store")
    ham = import_ham10000(build_ham10000(tmp_path / "ham").root, store).manifest
    milk = import_milk10k(build_milk10k(tmp_path / "milk").root, store).manifest
    combined = combine_manifests([ham, milk])
    assert len(combined.skipped) == len(ham.skipped) + len(milk.skipped)  # importer drops carried over
    result = split_by_lesion(combined, seed=0)
    assert_no_lesion_leak(result)
    report = curation_report(result)
    assert report["totals"]["images"] == 12 and report["totals"]["dropped"] == 7 + 17
    assert report["dropped"]["excluded diagnosis"]["by_source"] == {"ham10000": 3, "milk10k": 1}
    assert report["counts_by_source"]["milk10k"]["SCC"]["total"] == 1
    text = describe_manifest(result)
    header = text.splitlines()[1].split()
    assert header == ["class", "train", "val", "test", "total"]
    assert "source milk10k" in text and "source ham10000" in text
    markdown = format_report_markdown(report)
    assert "| class | train | val | test | total |" in markdown
