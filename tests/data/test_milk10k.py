from __future__ import annotations

from collections import Counter

import pytest
from skingenbench.services.core.errors import DataIntegrityError, InvalidArgument, NotFound
from skingenbench.services.data.core.diagnosis_mapping import MILK10K_MAPPING
from skingenbench.services.data.milk10k import Milk10kLayout, import_milk10k, locate_milk10k
from skingenbench.services.platform.manifest_io import read_manifest, verify_manifest
from skingenbench.services.platform.store import LocalFolderStore

from tests.data.fixtures import MILK_DIAGNOSES, build_milk10k, one_hot, write_csv, write_image


@pytest.fixture
def store(tmp_path):
    return LocalFolderStore(tmp_path / "store")


def categories(manifest) -> Counter:
    return Counter(s.reason.split(":", 1)[0] for s in manifest.skipped)


def test_imports_dermoscopic_images_with_mapped_labels(tmp_path, store):
    milk = build_milk10k(tmp_path / "milk")
    result = import_milk10k(milk.root, store)
    manifest = result.manifest
    assert {item.image_id: item.label for item in manifest.items} == milk.imported
    assert categories(manifest) == milk.dropped
    assert {item.source for item in manifest.items} == {"milk10k"}
    assert all(item.meta["image_type"] == "dermoscopic" for item in manifest.items)
    assert {cat: group["count"] for cat, group in result.report["dropped"].items()} == milk.dropped


def test_sccka_becomes_scc_and_the_source_code_is_kept(tmp_path, store):
    manifest = import_milk10k(build_milk10k(tmp_path / "milk").root, store).manifest
    scc = next(item for item in manifest.items if item.lesion_id == "IL_0000003")
    assert scc.label == "SCC"
    assert scc.meta["diagnosis"] == "SCCKA" and scc.meta["diagnosis_score"] == 1.0
    assert scc.meta["skin_tone_class"] == 3 and scc.meta["age_approx"] == 43 and scc.meta["site"] == "trunk"
    assert scc.meta["MONET_hair"] == "0.5"


def test_label_is_the_argmax_and_ties_are_refused(tmp_path, store):
    manifest = import_milk10k(build_milk10k(tmp_path / "milk").root, store).manifest
    soft = next(item for item in manifest.items if item.lesion_id == "IL_0000009")
    assert (soft.label, soft.meta["diagnosis"], soft.meta["diagnosis_score"]) == ("MEL", "MEL", 0.6)
    reasons = {s.ref: s.reason for s in manifest.skipped}
    assert reasons["milk10k/ISIC_9000070"] == "ambiguous diagnosis: tie between MEL, NV"
    assert not any(item.lesion_id == "IL_0000007" for item in manifest.items)


def test_clinical_images_and_other_problems_are_reported(tmp_path, store):
    manifest = import_milk10k(build_milk10k(tmp_path / "milk").root, store).manifest
    reasons = {s.ref: s.reason for s in manifest.skipped}
    assert reasons["milk10k/ISIC_9000011"] == "not dermoscopic: clinical: close-up"
    assert sum(r.startswith("not dermoscopic") for r in reasons.values()) == 11
    assert reasons["milk10k/ISIC_9000060"] == "excluded diagnosis: DF"
    assert reasons["milk10k/ISIC_9000080"].startswith("missing image: not found in MILK10k_Training_Input/")
    assert reasons["milk10k/MILK10k_Training_GroundTruth.csv:12"] == "malformed row: 3 fields, header has 12"
    assert reasons["milk10k/ISIC_9000100"].startswith(
        "no ground truth: lesion not in MILK10k_Training_GroundTruth"
    )
    assert reasons["milk10k/IL_0000011"].startswith("no dermoscopic image")


@pytest.mark.parametrize("images", ["zip", "flat"])
def test_zip_nesting_and_flat_image_folders_are_accepted(tmp_path, store, images):
    milk = build_milk10k(tmp_path / "milk", images=images)
    manifest = import_milk10k(milk.root, store).manifest
    assert {item.image_id: item.label for item in manifest.items} == milk.imported
    assert all(item.key.endswith(f"/images/{item.image_id}.jpg") for item in manifest.items)


def test_manifest_is_written_last_and_every_object_verifies(tmp_path, store):
    result = import_milk10k(build_milk10k(tmp_path / "milk").root, store)
    assert list(verify_manifest(store, result.manifest)) == []
    keys = list(store.list(result.prefix + "/"))
    assert f"{result.prefix}/manifest.json" in keys and result.prefix.startswith("import-milk10k/")
    stored = read_manifest(store, result.ref.uri, expected_sha256=result.ref.sha256)
    assert len(stored.items) == 6 and len(stored.skipped) == 17


def test_mapping_and_column_names_are_configurable(tmp_path, store):
    root = tmp_path / "custom"
    diagnoses = ("MEL", "NV", "DF")
    write_csv(root / "gt.csv", ("case", *diagnoses), [("C1", "1", "0", "0"), ("C2", "0", "0", "1")])
    write_csv(
        root / "meta.csv",
        ("case", "image", "kind"),
        [("C1", "IMG_1", "dermoscopic"), ("C2", "IMG_2", "Dermoscopic")],
    )
    write_image(root / "imgs" / "C1" / "IMG_1.jpg", seed=1)
    write_image(root / "imgs" / "C2" / "IMG_2.jpg", seed=2)
    layout = Milk10kLayout(
        ground_truth_csv="gt.csv",
        metadata_csv="meta.csv",
        images_dir="imgs",
        lesion_column="case",
        image_column="image",
        image_type_column="kind",
    )
    mapping = {"keep": {"MEL": "MEL", "NV": "NV", "DF": "BKL"}, "drop": []}
    manifest = import_milk10k(root, store, layout=layout, mapping=mapping).manifest
    assert {item.image_id: item.label for item in manifest.items} == {"IMG_1": "MEL", "IMG_2": "BKL"}


def test_unknown_ground_truth_column_is_reported_not_guessed(tmp_path, store):
    root = tmp_path / "milk"
    write_csv(root / "MILK10k_Training_GroundTruth.csv", ("lesion_id", "MEL", "NEW"), [("IL_1", "0", "1")])
    write_csv(
        root / "MILK10k_Training_Metadata.csv",
        ("lesion_id", "isic_id", "image_type"),
        [("IL_1", "ISIC_1", "dermoscopic")],
    )
    (root / "MILK10k_Training_Input").mkdir()
    manifest = import_milk10k(root, store).manifest
    assert [s.reason for s in manifest.skipped] == ["unknown diagnosis: NEW"]


def test_default_mapping_covers_every_milk10k_diagnosis():
    assert {MILK10K_MAPPING.lookup(code)[0] for code in MILK_DIAGNOSES} == {
        "NV",
        "BCC",
        "BKL",
        "MEL",
        "SCC",
        None,
    }
    assert all(not MILK10K_MAPPING.lookup(code)[1].startswith("unknown") for code in MILK_DIAGNOSES)
    assert one_hot("NV")["NV"] == 1.0


def test_missing_inputs_are_clear_errors(tmp_path, store):
    root = tmp_path / "milk"
    root.mkdir()
    with pytest.raises(NotFound, match="MILK10k_Training_GroundTruth.csv"):
        import_milk10k(root, store)
    write_csv(root / "MILK10k_Training_GroundTruth.csv", ("lesion_id", "MEL"), [])
    write_csv(root / "MILK10k_Training_Metadata.csv", ("lesion_id", "isic_id"), [])
    with pytest.raises(NotFound, match="image folder"):
        import_milk10k(root, store)
    (root / "MILK10k_Training_Input").mkdir()
    with pytest.raises(InvalidArgument, match="lacks column"):
        import_milk10k(root, store)


def test_locating_a_release_pins_its_csvs_and_listing(tmp_path, store):
    milk = build_milk10k(tmp_path / "milk")
    folder = locate_milk10k(milk.root)
    assert list(store.list("")) == [] and len(folder.input_hashes) == 3
    assert import_milk10k(milk.root, store, pinned_inputs=folder.input_hashes).prefix == folder.prefix()
    metadata = milk.root / Milk10kLayout().metadata_csv
    metadata.write_text(metadata.read_text() + "\n")  # same rows, different bytes
    with pytest.raises(DataIntegrityError, match="changed since the import was planned"):
        import_milk10k(milk.root, store, pinned_inputs=folder.input_hashes)
