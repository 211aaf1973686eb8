"""The reading list: balanced, class-matched, capped, seeded; ids and order reveal nothing; studies resume."""

from __future__ import annotations

from collections import Counter

import pytest
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument

from skingenbench.reader_study.reading_list import reader_order
from skingenbench.reader_study.study_store import create_or_resume_study, load_study

from .conftest import write_sets


def test_the_draw_is_balanced_class_matched_and_capped(small_study):
    store, study = small_study
    assert Counter(i.truth for i in study.items) == {"synthetic": 3, "real": 3}
    assert {i.label for i in study.items} == {"MEL"}  # real NV are never drawn beside synthetic MEL
    assert all(i.image_id not in i.key and i.image_id.isalnum() for i in study.items)
    ids = [i.image_id for i in study.items]
    assert ids == sorted(ids)  # stored by opaque id, not grouped by truth
    assert load_study(store, study.study_id) == study


def test_same_definition_same_study_other_seed_other_draw(folder_store):
    syn, real = write_sets(folder_store, {"MEL": 10, "BCC": 6}, {"MEL": 10, "BCC": 3, "NV": 9})
    first = create_or_resume_study(folder_store, syn, real, count=12, seed=1)
    again = create_or_resume_study(folder_store, syn, real, count=12, seed=1)
    other = create_or_resume_study(folder_store, syn, real, count=12, seed=2)
    assert again == first and other.study_id != first.study_id
    assert {i.key for i in other.items} != {i.key for i in first.items}
    for study in (first, other):
        truth = Counter((i.truth, i.label) for i in study.items)
        for label in ("MEL", "BCC"):
            assert truth[("synthetic", label)] == truth[("real", label)]
        assert truth[("real", "BCC")] <= 3 and sum(truth.values()) == 12


def test_unmatched_draw_and_small_sets(folder_store):
    syn, real = write_sets(folder_store, {"MEL": 2}, {"NV": 5})
    with pytest.raises(InvalidArgument, match="no image of the synthetic set's class"):
        create_or_resume_study(folder_store, syn, real, count=4, seed=0)
    study = create_or_resume_study(folder_store, syn, real, count=9, seed=0, match_classes=False)
    assert Counter(i.truth for i in study.items) == {"synthetic": 2, "real": 2}  # capped by the smaller set
    with pytest.raises(InvalidArgument, match="at least 2"):
        create_or_resume_study(folder_store, syn, real, count=1, seed=0, match_classes=False)


def test_a_reused_study_id_with_another_definition_is_refused(folder_store):
    syn, real = write_sets(folder_store, {"MEL": 6}, {"MEL": 6})
    create_or_resume_study(folder_store, syn, real, count=4, seed=0, study_id="pilot")
    with pytest.raises(FailedPrecondition, match="already exists"):
        create_or_resume_study(folder_store, syn, real, count=6, seed=0, study_id="pilot")
    with pytest.raises(InvalidArgument, match="study id"):
        create_or_resume_study(folder_store, syn, real, count=4, seed=0, study_id="../x")


def test_each_reader_reads_every_image_in_an_order_of_their_own(small_study):
    _store, study = small_study
    orders = {name: reader_order(study, name) for name in ("ann", "bob", "cy", "dee")}
    assert all(sorted(order) == sorted(i.image_id for i in study.items) for order in orders.values())
    assert len({tuple(order) for order in orders.values()}) > 1
    assert reader_order(study, "ann") == orders["ann"]  # stable: a reopened tab resumes the same order


def test_real_images_from_one_split_only(folder_store):
    from skingenbench.services.core.manifest import Manifest
    from skingenbench.services.platform.manifest_io import read_manifest, write_manifest

    syn, real = write_sets(folder_store, {"MEL": 4}, {"MEL": 8})
    manifest = read_manifest(folder_store, real)
    for index, item in enumerate(manifest.items):
        item.split = "test" if index < 2 else "train"
    real = write_manifest(
        folder_store, "sets/real-split/manifest.json", Manifest(manifest.items, manifest.provenance)
    ).uri
    study = create_or_resume_study(folder_store, syn, real, count=8, seed=0, real_split="test")
    test_keys = {i.key for i in manifest.items[:2]}
    assert {i.key for i in study.items if i.truth == "real"} == test_keys  # two real test images: 2 + 2
    assert len(study.items) == 4
    with pytest.raises(InvalidArgument, match="no image in split 'val'"):
        create_or_resume_study(folder_store, syn, real, count=8, seed=0, real_split="val")
