from __future__ import annotations

import json
from collections import Counter

import pytest
from skingenbench.services.core.errors import DataIntegrityError, InvalidArgument, NotFound
from skingenbench.services.data.core.diagnosis_mapping import HAM10000_MAPPING, DiagnosisMapping
from skingenbench.services.data.curation_report import describe_manifest
from skingenbench.services.data.ham10000 import import_ham10000, locate_ham10000
from skingenbench.services.platform.manifest_io import read_manifest, verify_manifest
from skingenbench.services.platform.store import LocalFolderStore

from tests.data.fixtures import HAM_HEADER, build_ham10000, build_phantom_like, write_csv, write_image


class RecordingStore(LocalFolderStore):
    """A folder store that remembers the order of writes, to check the manifest comes last."""

    def __init__(self, root):
        super().__init__(root)
        self.writes: list[str] = []

    def put_stream(self, key, stream, content_type="application/octet-stream"):
        info = super().put_stream(key, stream, content_type)
        self.writes.append(key)
        return info


@pytest.fixture
def ham(tmp_path):
    return build_ham10000(tmp_path / "ham")


@pytest.fixture
def store(tmp_path):
    return RecordingStore(tmp_path / "store")


def categories(manifest) -> Counter:
    return Counter(s.reason.split(":", 1)[0] for s in manifest.skipped)


def test_imports_kept_rows_and_reports_every_problem(ham, store):
    result = import_ham10000(ham.root, store)
    manifest = result.manifest

    assert {item.image_id: item.label for item in manifest.items} == ham.imported
    assert categories(manifest) == ham.dropped
    assert len(manifest.items) + len(manifest.skipped) == ham.rows
    reasons = {s.ref: s.reason for s in manifest.skipped}
    assert reasons["ham10000/ISIC_0000007"].startswith("missing image: not found in HAM10000_images_part_1/")
    assert reasons["ham10000/ISIC_0000008"] == "excluded diagnosis: akiec"
    assert reasons["ham10000/ISIC_0000009"] == "excluded diagnosis: df"
    assert reasons["ham10000/ISIC_0000010"] == "excluded diagnosis: vasc"
    assert reasons["ham10000/ISIC_0000011"] == "unknown diagnosis: xyz"
    assert reasons["ham10000/HAM10000_metadata.csv:14"] == "malformed row: 3 fields, header has 8"
    assert reasons["ham10000/ISIC_0000013"] == "malformed row: empty lesion_id"
    # The report counts the same drops, grouped by reason.
    dropped = result.report["dropped"]
    assert {cat: group["count"] for cat, group in dropped.items()} == ham.dropped
    assert dropped["excluded diagnosis"]["reasons"] == {
        "excluded diagnosis: akiec": 1,
        "excluded diagnosis: df": 1,
        "excluded diagnosis: vasc": 1,
    }
    assert result.report["counts"]["total"]["total"] == 6


def test_items_carry_source_lesion_and_metadata(ham, store):
    items = {item.image_id: item for item in import_ham10000(ham.root, store).manifest.items}
    first = items["ISIC_0000001"]
    assert first.source == "ham10000"
    assert first.lesion_id == "HAM_0000001"
    assert first.key.endswith("/images/ISIC_0000001.jpg")
    assert first.meta == {
        "dx": "nv",
        "dx_type": "histo",
        "age": 45,
        "sex": "male",
        "localization": "back",
        "dataset": "vidir_modern",
    }
    assert items["ISIC_0000003"].meta["age"] is None  # empty cell
    assert items["ISIC_0000003"].meta["localization"] == "upper extremity, left"  # quoted comma survives
    assert items["ISIC_0000002"].lesion_id == items["ISIC_0000001"].lesion_id


def test_manifest_is_written_last_and_every_object_verifies(ham, store):
    result = import_ham10000(ham.root, store)
    assert store.writes[-1] == f"{result.prefix}/manifest.json"
    assert set(store.writes[:-1]) >= {item.key for item in result.manifest.items}
    assert list(verify_manifest(store, result.manifest)) == []
    stored = read_manifest(store, result.ref.uri, expected_sha256=result.ref.sha256)
    assert [i.to_dict() for i in stored.items] == [i.to_dict() for i in result.manifest.items]
    assert stored.skipped == result.manifest.skipped
    report = json.loads(store.get_bytes(result.report_keys[0]))
    assert report["totals"]["dropped"] == 7
    assert "| excluded diagnosis | 3 |" in store.get_bytes(result.report_keys[1]).decode()


def test_output_prefix_is_content_addressed(ham, tmp_path):
    first = import_ham10000(ham.root, LocalFolderStore(tmp_path / "a"))
    again = import_ham10000(ham.root, LocalFolderStore(tmp_path / "b"))
    assert first.prefix == again.prefix and first.prefix.startswith("import-ham10000/")
    assert first.manifest.content_hash() == again.manifest.content_hash()
    other = import_ham10000(ham.root, LocalFolderStore(tmp_path / "c"), mapping={"nv": "NV"})
    assert other.prefix != first.prefix
    explicit = import_ham10000(ham.root, LocalFolderStore(tmp_path / "d"), output_prefix="datasets/ham")
    assert explicit.ref.uri.endswith("datasets/ham/manifest.json")


def test_locating_a_folder_addresses_it_as_the_import_does_and_copies_nothing(ham, store):
    folder = locate_ham10000(ham.root)
    assert list(store.list("")) == []
    result = import_ham10000(ham.root, store, pinned_inputs=folder.input_hashes)
    assert result.prefix == folder.prefix() and folder.stage == "import-ham10000"
    assert locate_ham10000(ham.root, mapping={"nv": "NV"}).prefix() != folder.prefix()


def test_a_folder_changed_since_its_inputs_were_pinned_is_refused(ham, store):
    pinned = locate_ham10000(ham.root).input_hashes
    write_image(ham.root / "HAM10000_images_part_1" / "ISIC_9999999.jpg", seed=99)  # one more file listed
    with pytest.raises(DataIntegrityError, match="changed since the import was planned"):
        import_ham10000(ham.root, store, pinned_inputs=pinned)
    assert not any(key.endswith("manifest.json") for key in store.list(""))


def test_mapping_is_configurable(ham, store):
    mapping = {"keep": {**HAM10000_MAPPING.keep, "akiec": "SCC"}, "drop": ["df", "vasc", "xyz"]}
    manifest = import_ham10000(ham.root, store, mapping=mapping).manifest
    labels = {item.image_id: item.label for item in manifest.items}
    assert labels["ISIC_0000008"] == "SCC"
    assert categories(manifest)["unknown diagnosis"] == 0
    assert categories(manifest)["excluded diagnosis"] == 3  # df, vasc, xyz


def test_mapping_refuses_targets_outside_the_five_classes():
    with pytest.raises(InvalidArgument, match="unknown class"):
        DiagnosisMapping({"nv": "NEVUS"})
    with pytest.raises(InvalidArgument, match="both kept and dropped"):
        DiagnosisMapping({"nv": "NV"}, frozenset({"NV"}))


def test_default_mapping_follows_the_reference_study():
    assert HAM10000_MAPPING.lookup("MEL") == ("MEL", "")
    assert HAM10000_MAPPING.lookup("scc") == ("SCC", "")  # the phantom's SCC code
    assert HAM10000_MAPPING.lookup("akiec") == (None, "excluded diagnosis: akiec")
    assert HAM10000_MAPPING.lookup(" ") == (None, "unknown diagnosis: (empty)")


def test_progress_is_reported_up_to_the_total(ham, store):
    calls = []
    import_ham10000(
        ham.root, store, progress=lambda done, total, message: calls.append((done, total, message))
    )
    assert calls and calls[-1][:2] == (12, 12)  # the 3-field row is set aside while reading the CSV
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_unreadable_and_duplicate_rows_are_skipped(tmp_path, store):
    root = tmp_path / "ham"
    rows = [
        ("HAM_1", "ISIC_1", "nv", "histo", "1", "male", "back", ""),
        ("HAM_1", "ISIC_1", "nv", "histo", "1", "male", "back", ""),  # duplicate image id
        ("HAM_2", "ISIC_2", "mel", "histo", "1", "male", "back", ""),  # not a JPEG
        ("HAM_3", "../etc", "mel", "histo", "1", "male", "back", ""),  # id that would escape the prefix
    ]
    write_csv(root / "HAM10000_metadata.csv", HAM_HEADER, rows)
    write_image(root / "HAM10000_images_part_1" / "ISIC_1.jpg", seed=1)
    (root / "HAM10000_images_part_1" / "ISIC_2.jpg").write_text("not an image")
    manifest = import_ham10000(root, store).manifest
    assert [item.image_id for item in manifest.items] == ["ISIC_1"]
    reasons = [s.reason for s in manifest.skipped]
    assert reasons[0].startswith("duplicate row:")
    assert reasons[1] == "unreadable image: ISIC_2.jpg is not a JPEG or PNG file"
    assert reasons[2] == "malformed row: image_id is not a plain file name"


def test_missing_inputs_are_clear_errors(tmp_path, store):
    with pytest.raises(NotFound, match="source folder not found"):
        import_ham10000(tmp_path / "nowhere", store)
    root = tmp_path / "ham"
    root.mkdir()
    with pytest.raises(NotFound, match="HAM10000_metadata.csv") as info:
        import_ham10000(root, store)
    assert "docs/data.md" in info.value.hint
    write_csv(root / "HAM10000_metadata.csv", HAM_HEADER, [])
    with pytest.raises(NotFound, match="no HAM10000 image folder"):
        import_ham10000(root, store)
    (root / "HAM10000_images_part_1").mkdir()
    write_csv(root / "HAM10000_metadata.csv", ("lesion_id", "image_id"), [])
    with pytest.raises(InvalidArgument, match="lacks column"):
        import_ham10000(root, store)
    (root / "HAM10000_metadata.csv").write_text("")
    with pytest.raises(InvalidArgument, match="is empty"):
        import_ham10000(root, store)
    assert not any(key.endswith("manifest.json") for key in store.writes)


def test_phantom_layout_brings_clean_images_and_masks(tmp_path, store):
    phantom = build_phantom_like(tmp_path / "phantom", n=10)
    result = import_ham10000(phantom.root, store)
    manifest = result.manifest
    assert manifest.name == "phantom" and result.prefix.startswith("import-phantom/")
    assert {item.image_id: item.label for item in manifest.items} == phantom.imported
    assert {item.source for item in manifest.items} == {"phantom"}
    assert Counter(item.label for item in manifest.items)["SCC"] == 2
    full, lesion_only = manifest.items[0], manifest.items[1]
    assert set(full.objects) == {
        "clean",
        "mask_lesion",
        "mask_hair",
        "mask_ruler",
        "mask_vignette",
        "mask_bubbles",
    }
    assert set(lesion_only.objects) == {"clean", "mask_lesion"}
    assert full.objects["mask_hair"].key == f"{result.prefix}/masks/hair/{full.image_id}.png"
    assert (full.meta["ita"], full.meta["lesion_area"], full.meta["hair_fraction"]) == (41.5, 0, 0)
    assert list(verify_manifest(store, manifest)) == []  # side objects included


def test_source_is_phantom_by_columns_or_side_folders(tmp_path, store):
    root = tmp_path / "by_columns"
    header = (*HAM_HEADER[:7], "lesion_area", "hair_fraction")
    write_csv(
        root / "HAM10000_metadata.csv", header, [("L1", "ISIC_1", "scc", "histo", "", "", "", "0.1", "0")]
    )
    write_image(root / "HAM10000_images_part_1" / "ISIC_1.jpg", seed=1)
    assert {item.source for item in import_ham10000(root, store).manifest.items} == {"phantom"}
    (root / "HAM10000_metadata.csv").unlink()
    write_csv(root / "HAM10000_metadata.csv", HAM_HEADER[:7], [("L1", "ISIC_1", "nv", "histo", "", "", "")])
    assert {item.source for item in import_ham10000(root, store).manifest.items} == {"ham10000"}
    (root / "phantom_masks" / "lesion").mkdir(parents=True)
    assert {item.source for item in import_ham10000(root, store).manifest.items} == {"phantom"}
    assert import_ham10000(root, store, source="ham10000").manifest.name == "ham10000"


def test_reads_what_the_phantom_generator_writes(tmp_path, store):
    phantom_dataset = pytest.importorskip("skingenbench.services.data.core.phantom_dataset")
    phantom_dataset.write_phantom_dataset(tmp_path / "phantom", 20, width=48, height=36, seed=0)
    result = import_ham10000(tmp_path / "phantom", store)
    assert result.manifest.name == "phantom" and not result.manifest.skipped
    assert len(result.manifest.items) == 20
    assert {item.label for item in result.manifest.items} <= {"NV", "BCC", "BKL", "MEL", "SCC"}
    assert all(set(item.objects) >= {"clean", "mask_lesion", "mask_hair"} for item in result.manifest.items)
    assert isinstance(result.manifest.items[0].meta["ita"], float)
    assert list(verify_manifest(store, result.manifest)) == []


def test_describe_prints_class_by_split_counts(ham, store):
    text = describe_manifest(import_ham10000(ham.root, store).manifest)
    lines = text.splitlines()
    assert lines[0].startswith("ham10000: 6 images, 4 lesions")
    assert lines[1].split() == ["class", "unsplit", "total"]
    assert lines[2].split() == ["NV", "3", "3"]
    assert "excluded diagnosis" in text
