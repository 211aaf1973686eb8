"""The preprocessing service over a real channel: import → split → preprocess → quality report,
bad input of every kind, idempotency."""

from __future__ import annotations

import io
import json

import cv2
import grpc
import numpy as np
import pytest
from PIL import Image
from skingenbench.services.core.manifest import Item, Manifest, Provenance
from skingenbench.services.platform.client import open_channel, watch_job
from skingenbench.services.platform.manifest_io import read_manifest, verify_manifest, write_manifest

from skingenbench.api.v1 import common_pb2, common_pb2_grpc, preprocessing_pb2, preprocessing_pb2_grpc
from tests.common.service_helpers import running
from tests.data.fixtures import build_ham10000
from tests.preprocessing.test_decoding import png_claiming_size


@pytest.fixture
def service(folder_store):
    with running("preprocessing", folder_store) as svc, open_channel(svc.target) as channel:
        yield svc, preprocessing_pb2_grpc.PreprocessingStub(channel), channel


def _run(channel, job, timeout=240) -> common_pb2.Job:
    return watch_job(channel, job.job_id, timeout_s=timeout)


def _ref(outputs, name="manifest") -> common_pb2.ManifestRef:
    out = {o.name: o for o in outputs}[name]
    return common_pb2.ManifestRef(uri=out.uri, sha256=out.sha256)


def test_phantom_import_split_preprocess_and_quality_through_the_service(service, folder_store):
    svc, stub, channel = service
    imported = _run(
        channel,
        stub.StartImport(
            preprocessing_pb2.ImportRequest(
                source="phantom", options_json=json.dumps({"count": 60, "width": 160, "height": 120}), seed=3
            )
        ),
    )
    assert imported.state == common_pb2.JOB_STATE_SUCCEEDED, imported.error.message
    assert json.loads(imported.result_json)["item_count"] == 60
    assert folder_store.key_from_uri(_ref(imported.outputs).uri).startswith("import-phantom/")
    # The same settings asked differently (another job): the phantom set is addressed by its settings and
    # seed, so the finished import is reattached rather than generated again.
    same_set = _run(
        channel,
        stub.StartImport(
            preprocessing_pb2.ImportRequest(
                source="phantom", options_json=json.dumps({"height": 120, "width": 160, "count": 60}), seed=3
            )
        ),
    )
    assert same_set.job_id != imported.job_id and json.loads(same_set.result_json)["reused_output"] is True
    assert _ref(same_set.outputs) == _ref(imported.outputs)
    split = _run(
        channel, stub.StartSplit(preprocessing_pb2.SplitRequest(inputs=[_ref(imported.outputs)], seed=1))
    )
    assert split.state == common_pb2.JOB_STATE_SUCCEEDED, split.error.message
    split_manifest = read_manifest(folder_store, _ref(split.outputs).uri, _ref(split.outputs).sha256)
    lesions = {}
    for item in split_manifest.items:
        lesions.setdefault(item.lesion_id, set()).add(item.split)
    assert all(len(splits) == 1 for splits in lesions.values())
    assert {item.split for item in split_manifest.items} == {"train", "val", "test"}

    request = preprocessing_pb2.PreprocessRequest(
        input=_ref(split.outputs), pipeline="advanced", profile="tiny", seed=5, augment_copies=1, workers=2
    )
    done = _run(channel, stub.StartPreprocess(request))
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.error.message
    out = read_manifest(folder_store, _ref(done.outputs).uri, _ref(done.outputs).sha256)
    assert len(out.items) == 120 and not out.skipped  # original + one augmented copy each
    assert list(verify_manifest(folder_store, out)) == []
    first = out.items[0]
    assert {"lesion_area_fraction", "ita_degrees", "hair_fraction"} <= set(first.meta)
    assert "mask_lesion" in first.objects and first.split in ("train", "val", "test")
    image = cv2.imdecode(np.frombuffer(folder_store.get_bytes(first.key), np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (64, 64, 3)
    assert out.provenance.parents[0].sha256 == _ref(split.outputs).sha256

    again = stub.StartPreprocess(request)
    assert again.reused and again.job_id == done.job_id
    other_workers = _run(
        channel,
        stub.StartPreprocess(
            preprocessing_pb2.PreprocessRequest(
                input=_ref(split.outputs),
                pipeline="advanced",
                profile="tiny",
                seed=5,
                augment_copies=1,
                workers=1,
            )
        ),
    )
    assert json.loads(other_workers.result_json)["reused_output"] is True
    assert _ref(other_workers.outputs).uri == _ref(done.outputs).uri

    quality = _run(
        channel,
        stub.StartQualityReport(
            preprocessing_pb2.QualityReportRequest(
                input=_ref(imported.outputs), pipeline="advanced", profile="paper", limit=30
            )
        ),
    )
    assert quality.state == common_pb2.JOB_STATE_SUCCEEDED, quality.error.message
    report = json.loads(
        folder_store.get_bytes(folder_store.key_from_uri(_ref(quality.outputs, "report_json").uri))
    )
    hair = report["hair_regions"]
    # Acceptance: advanced beats the untouched image in hair regions by a clear margin, and does not
    # lower PSNR outside them by more than a small tolerance.
    assert hair["psnr_hair_after"]["mean"] > hair["psnr_hair_before"]["mean"] + 5.0
    assert hair["psnr_outside_after"]["mean"] > hair["psnr_outside_before"]["mean"] - 3.0
    assert (
        "| psnr_hair_after |"
        in folder_store.get_bytes(folder_store.key_from_uri(_ref(quality.outputs, "report_md").uri)).decode()
    )
    # The report is addressed by the manifest's items, the pipeline config and the limit, not by the job.
    assert folder_store.key_from_uri(_ref(quality.outputs, "report_json").uri).startswith("quality-report/")
    same_question = _run(
        channel,
        stub.StartQualityReport(
            preprocessing_pb2.QualityReportRequest(
                input=_ref(imported.outputs), pipeline="advanced", profile="paper", config_json="{}", limit=30
            )
        ),
    )
    assert same_question.job_id != quality.job_id
    assert json.loads(same_question.result_json)["reused_output"] is True
    assert _ref(same_question.outputs, "report_json") == _ref(quality.outputs, "report_json")
    fewer = _run(
        channel,
        stub.StartQualityReport(
            preprocessing_pb2.QualityReportRequest(
                input=_ref(imported.outputs), pipeline="advanced", profile="paper", limit=2
            )
        ),
    )
    assert fewer.state == common_pb2.JOB_STATE_SUCCEEDED, fewer.error.message
    # No summary at all when the first two phantoms happen to have no hair (an empty summary is "").
    assert "reused_output" not in json.loads(fewer.result_json or "{}")
    assert _ref(fewer.outputs, "report_json").uri != _ref(quality.outputs, "report_json").uri


def _png(array: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode).save(buffer, format="PNG")
    return buffer.getvalue()


def _bad_input_manifest(store) -> tuple[common_pb2.ManifestRef, dict[str, str]]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    jpeg = cv2.imencode(".jpg", rgb)[1].tobytes()
    sixteen = cv2.imencode(".png", (rng.integers(0, 65535, (40, 40, 3))).astype(np.uint16))[1].tobytes()
    payloads = {
        "good": (jpeg, None),
        "truncated_jpeg": (jpeg[: len(jpeg) // 2], "truncated"),
        "zero_byte": (b"", "empty"),
        "not_an_image": (b"this is not an image at all" * 10, "not_an_image"),
        "grayscale": (_png(rng.integers(0, 255, (40, 40), dtype=np.uint8)), None),
        "rgba": (_png(rng.integers(0, 255, (40, 40, 4), dtype=np.uint8), "RGBA"), None),
        "sixteen_bit": (sixteen, None),
        "bomb": (png_claiming_size(60_000, 60_000), "too_large"),  # 3.6 gigapixels declared
    }
    items, expected = [], {}
    for name, (data, reason) in payloads.items():
        info = store.put_bytes(f"bad/{name}", data)
        items.append(
            Item(key=info.key, sha256=info.sha256, label="NV", lesion_id=name, split="train", image_id=name)
        )
        if reason:
            expected[info.key] = reason
    items.append(
        Item(
            key="bad/missing_object",
            sha256="0" * 64,
            label="NV",
            lesion_id="m",
            split="train",
            image_id="missing_object",
        )
    )
    expected["bad/missing_object"] = "not found"
    ref = write_manifest(store, "bad/manifest.json", Manifest(items, Provenance(stage="test")))
    return common_pb2.ManifestRef(uri=ref.uri, sha256=ref.sha256), expected


def test_bad_items_are_skipped_with_reasons_and_the_threshold_fails_the_job(service, folder_store):
    svc, stub, channel = service
    ref, expected = _bad_input_manifest(folder_store)
    strict_request = preprocessing_pb2.PreprocessRequest(
        input=ref, pipeline="basic", profile="tiny", workers=1
    )
    strict = _run(channel, stub.StartPreprocess(strict_request))
    assert strict.state == common_pb2.JOB_STATE_FAILED
    assert strict.error.code == "FAILED_PRECONDITION" and "max_failure_fraction" in strict.error.message
    tolerant = _run(
        channel,
        stub.StartPreprocess(
            preprocessing_pb2.PreprocessRequest(
                input=ref, pipeline="basic", profile="tiny", max_failure_fraction=1.0, workers=1
            )
        ),
    )
    assert tolerant.state == common_pb2.JOB_STATE_SUCCEEDED, tolerant.error.message
    out = read_manifest(folder_store, _ref(tolerant.outputs).uri)
    assert sorted(item.image_id for item in out.items) == ["good", "grayscale", "rgba", "sixteen_bit"]
    reasons = {s.ref: s.reason for s in out.skipped}
    assert set(reasons) == set(expected)
    for key, reason in expected.items():
        assert reason in reasons[key], (key, reasons[key])

    # The threshold is not part of the output's address: the tolerant run's finished output must not be
    # reattached to the strict request, which is now refused at Start.
    with pytest.raises(grpc.RpcError) as refused:
        stub.StartPreprocess(strict_request, timeout=10)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "max_failure_fraction" in refused.value.details()
    health = stub.GetServiceInfo(common_pb2.GetServiceInfoRequest(), timeout=5)
    assert health.service == "skingenbench.v1.Preprocessing"
    assert folder_store.get_bytes("bad/good")  # nothing stored was touched


@pytest.mark.parametrize(
    ("request_kwargs", "code", "text"),
    [
        ({"pipeline": "fancy"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown pipeline"),
        ({"pipeline": "basic", "config_json": '{"size": 1}'}, grpc.StatusCode.INVALID_ARGUMENT, "size"),
        (
            {"pipeline": "basic", "config_json": '{"no_such_key": 1}'},
            grpc.StatusCode.INVALID_ARGUMENT,
            "no_such_key",
        ),
        ({"pipeline": "basic", "config_json": "[1, 2"}, grpc.StatusCode.INVALID_ARGUMENT, "not valid JSON"),
        ({"pipeline": "basic", "augment_copies": -1}, grpc.StatusCode.INVALID_ARGUMENT, "augment_copies"),
        ({"pipeline": "basic", "profile": "huge"}, grpc.StatusCode.INVALID_ARGUMENT, "huge"),
        (
            {"pipeline": "basic", "max_failure_fraction": 1.5},
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_failure_fraction",
        ),
        ({"pipeline": "basic", "workers": -2}, grpc.StatusCode.INVALID_ARGUMENT, "workers"),
        (
            {"pipeline": "basic", "splits": ["test"]},
            grpc.StatusCode.FAILED_PRECONDITION,
            "no items to process",
        ),
    ],
)
def test_bad_requests_get_invalid_argument(service, folder_store, request_kwargs, code, text):
    svc, stub, channel = service
    ref, _ = _bad_input_manifest(folder_store)
    with pytest.raises(grpc.RpcError) as error:
        stub.StartPreprocess(preprocessing_pb2.PreprocessRequest(input=ref, **request_kwargs), timeout=10)
    assert error.value.code() == code and text in error.value.details()


def test_missing_manifest_and_unknown_source_are_clear(service, data_read_root):
    svc, stub, channel = service
    with pytest.raises(grpc.RpcError) as missing:
        stub.StartPreprocess(
            preprocessing_pb2.PreprocessRequest(
                input=common_pb2.ManifestRef(uri=svc.store.uri("nowhere/manifest.json")), pipeline="basic"
            ),
            timeout=10,
        )
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as source:
        stub.StartImport(preprocessing_pb2.ImportRequest(source="isic2019"), timeout=10)
    assert source.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    # The folder is read at Start (to address the import): a missing one is refused there, not a failed job.
    missing_folder = data_read_root / "no-such-folder"
    with pytest.raises(grpc.RpcError) as folder:
        stub.StartImport(
            preprocessing_pb2.ImportRequest(source="ham10000", source_uri=str(missing_folder)), timeout=10
        )
    assert folder.value.code() == grpc.StatusCode.NOT_FOUND and "no-such-folder" in folder.value.details()
    # Outside the read roots: refused whether or not the folder exists, without looking at it.
    for outside in ("/no/such/folder", "/etc"):
        with pytest.raises(grpc.RpcError) as refused:
            stub.StartImport(
                preprocessing_pb2.ImportRequest(source="ham10000", source_uri=outside), timeout=10
            )
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "read roots" in refused.value.details()
    listed = stub.ListPipelines(common_pb2.ListRegistryRequest(), timeout=5)
    assert [e.name for e in listed.entries] == ["advanced", "basic"]
    assert {p.profile for p in listed.entries[0].profiles} == {"tiny", "paper"}


@pytest.mark.parametrize(
    ("request_kwargs", "code", "text"),
    [
        ({"source": "phantom", "options_json": "{"}, grpc.StatusCode.INVALID_ARGUMENT, "not valid JSON"),
        (
            {"source": "phantom", "options_json": '{"count": 5, "colour": 1}'},
            grpc.StatusCode.INVALID_ARGUMENT,
            "colour",
        ),
        ({"source": "phantom", "options_json": '{"count": 0}'}, grpc.StatusCode.INVALID_ARGUMENT, "count"),
        (
            {"source": "phantom", "options_json": '{"width": "wide"}'},
            grpc.StatusCode.INVALID_ARGUMENT,
            "width",
        ),
        ({"source": "phantom", "seed": -1}, grpc.StatusCode.INVALID_ARGUMENT, "seed"),
        ({"source": "ham10000"}, grpc.StatusCode.INVALID_ARGUMENT, "source_uri"),
        (
            {"source": "milk10k", "source_uri": "s3://bucket/milk"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "read roots",
        ),
        (
            {"source": "ham10000", "source_uri": "/tmp", "options_json": '{"count": 5}'},
            grpc.StatusCode.INVALID_ARGUMENT,
            "count",
        ),
        (
            {"source": "ham10000", "source_uri": "/tmp", "options_json": '{"mapping": {"nv": "DF"}}'},
            grpc.StatusCode.INVALID_ARGUMENT,
            "DF",
        ),
    ],
)
def test_bad_imports_are_refused_at_start(service, request_kwargs, code, text):
    svc, stub, channel = service
    with pytest.raises(grpc.RpcError) as error:
        stub.StartImport(preprocessing_pb2.ImportRequest(**request_kwargs), timeout=10)
    assert error.value.code() == code and text in error.value.details()


def test_bad_splits_and_quality_reports_are_refused_at_start(service, folder_store):
    svc, stub, channel = service
    ref, _ = _bad_input_manifest(folder_store)
    refusals = [
        (stub.StartSplit, preprocessing_pb2.SplitRequest(), grpc.StatusCode.INVALID_ARGUMENT, "at least one"),
        (
            stub.StartSplit,
            preprocessing_pb2.SplitRequest(inputs=[ref], train_fraction=0.5, val_fraction=0.1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "sum to 1",
        ),
        (
            stub.StartSplit,
            preprocessing_pb2.SplitRequest(inputs=[common_pb2.ManifestRef(uri=ref.uri, sha256="0" * 64)]),
            grpc.StatusCode.DATA_LOSS,
            "has changed",
        ),
        (
            stub.StartSplit,
            preprocessing_pb2.SplitRequest(inputs=[common_pb2.ManifestRef(uri=svc.store.uri("no/m.json"))]),
            grpc.StatusCode.NOT_FOUND,
            "not found",
        ),
        (
            stub.StartQualityReport,
            preprocessing_pb2.QualityReportRequest(input=ref),
            grpc.StatusCode.FAILED_PRECONDITION,
            "phantom ground truth",
        ),
        (
            stub.StartQualityReport,
            preprocessing_pb2.QualityReportRequest(input=ref, limit=-1),
            grpc.StatusCode.INVALID_ARGUMENT,
            "limit",
        ),
        (
            stub.StartQualityReport,
            preprocessing_pb2.QualityReportRequest(input=ref, pipeline="fancy"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown pipeline",
        ),
        (
            stub.StartQualityReport,
            preprocessing_pb2.QualityReportRequest(),
            grpc.StatusCode.INVALID_ARGUMENT,
            "required",
        ),
    ]
    for start, request, code, text in refusals:
        with pytest.raises(grpc.RpcError) as error:
            start(request, timeout=10)
        assert (error.value.code(), text in error.value.details()) == (code, True), (
            request,
            error.value.details(),
        )
    assert stub.ListPipelines(common_pb2.ListRegistryRequest(), timeout=5).entries  # still serving


def test_a_folder_import_is_addressed_by_the_folder_and_found_again(service, folder_store, tmp_path):
    from skingenbench.services.data.ham10000 import locate_ham10000

    svc, stub, channel = service
    ham = build_ham10000(tmp_path / "ham")
    mapping = {"keep": {"nv": "NV", "mel": "MEL"}, "drop": ["bcc"]}
    request = preprocessing_pb2.ImportRequest(
        source="ham10000", source_uri=f"file://{ham.root}", options_json=json.dumps({"mapping": mapping})
    )
    done = _run(channel, stub.StartImport(request))
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.error.message
    expected = locate_ham10000(ham.root, mapping=mapping).prefix()  # the importer's own address, as before
    assert folder_store.key_from_uri(_ref(done.outputs).uri) == f"{expected}/manifest.json"
    assert {item.label for item in read_manifest(folder_store, _ref(done.outputs).uri).items} == {"NV", "MEL"}
    assert {"report_json", "report_md"} <= {o.name for o in done.outputs}
    same_folder = _run(
        channel,
        stub.StartImport(
            preprocessing_pb2.ImportRequest(
                source="ham10000", source_uri=str(ham.root), options_json=json.dumps({"mapping": mapping})
            )
        ),
    )
    assert same_folder.job_id != done.job_id and json.loads(same_folder.result_json)["reused_output"] is True


# -- issue 16: refused before a job starts, DATA_LOSS for a changed item, an explicit zero tolerance ----------
def _jobs(channel) -> list[common_pb2.Job]:
    return list(common_pb2_grpc.JobsStub(channel).ListJobs(common_pb2.ListJobsRequest(), timeout=10).jobs)


def _not_json_manifest(store) -> common_pb2.ManifestRef:
    info = store.put_bytes("bad/not_json/manifest.json", b"{this is not json")
    return common_pb2.ManifestRef(uri=store.uri(info.key), sha256=info.sha256)


# Each case of item 7 of the issue: a request that used to start a job (and fail in it) must be answered with
# its status by the Start call, and leave no job behind.
REFUSED_AT_START = {
    "phantom count 0": (
        "StartImport",
        lambda store, ref: preprocessing_pb2.ImportRequest(source="phantom", options_json='{"count": 0}'),
        grpc.StatusCode.INVALID_ARGUMENT,
        "count",
    ),
    "phantom count 2,000,000": (
        "StartImport",
        lambda store, ref: preprocessing_pb2.ImportRequest(
            source="phantom", options_json='{"count": 2000000}'
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "count",
    ),
    "unknown import option": (
        "StartImport",
        lambda store, ref: preprocessing_pb2.ImportRequest(source="phantom", options_json='{"colour": 1}'),
        grpc.StatusCode.INVALID_ARGUMENT,
        "colour",
    ),
    "s3 source_uri": (
        "StartImport",
        lambda store, ref: preprocessing_pb2.ImportRequest(source="ham10000", source_uri="s3://bucket/ham"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "source_uri",
    ),
    "folder outside the read roots": (
        "StartImport",
        lambda store, ref: preprocessing_pb2.ImportRequest(source="ham10000", source_uri="/no/such/folder"),
        grpc.StatusCode.INVALID_ARGUMENT,
        "read roots",
    ),
    "fractions that do not sum to 1": (
        "StartSplit",
        lambda store, ref: preprocessing_pb2.SplitRequest(inputs=[ref], train_fraction=0.9, val_fraction=0.3),
        grpc.StatusCode.INVALID_ARGUMENT,
        "sum to 1",
    ),
    "a negative fraction": (
        "StartSplit",
        lambda store, ref: preprocessing_pb2.SplitRequest(
            inputs=[ref], train_fraction=1.2, val_fraction=-0.1, test_fraction=-0.1
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "non-negative",
    ),
    "a NaN fraction": (
        "StartSplit",
        lambda store, ref: preprocessing_pb2.SplitRequest(inputs=[ref], train_fraction=float("nan")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "finite",
    ),
    "a manifest that is not JSON": (
        "StartPreprocess",
        lambda store, ref: preprocessing_pb2.PreprocessRequest(
            input=_not_json_manifest(store), pipeline="basic", profile="tiny"
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "not valid JSON",
    ),
    "a wrong manifest sha256": (
        "StartPreprocess",
        lambda store, ref: preprocessing_pb2.PreprocessRequest(
            input=common_pb2.ManifestRef(uri=ref.uri, sha256="0" * 64), pipeline="basic", profile="tiny"
        ),
        grpc.StatusCode.DATA_LOSS,
        "sha256",
    ),
    "no items in the requested splits": (
        "StartPreprocess",
        lambda store, ref: preprocessing_pb2.PreprocessRequest(
            input=ref, pipeline="basic", profile="tiny", splits=["val"]
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "no items to process",
    ),
    "unbounded workers": (
        "StartPreprocess",
        lambda store, ref: preprocessing_pb2.PreprocessRequest(
            input=ref, pipeline="basic", profile="tiny", workers=100_000
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "workers",
    ),
    "deeply nested config_json": (
        "StartPreprocess",
        lambda store, ref: preprocessing_pb2.PreprocessRequest(
            input=ref,
            pipeline="basic",
            profile="tiny",
            config_json='{"size": ' + "[" * 50_000 + "]" * 50_000 + "}",
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "levels deep",
    ),
    "deeply nested options_json": (
        "StartImport",
        lambda store, ref: preprocessing_pb2.ImportRequest(
            source="phantom", options_json='{"count": ' + '{"a": [' * 20_000 + "]}" * 20_000 + "}"
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "options_json",
    ),
    "oversized config_json": (
        "StartPreprocess",
        lambda store, ref: preprocessing_pb2.PreprocessRequest(
            input=ref, pipeline="basic", profile="tiny", config_json=json.dumps({"pad": "x" * (2 << 20)})
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "bytes",
    ),
}


@pytest.mark.parametrize("case", list(REFUSED_AT_START))
def test_a_bad_request_is_refused_at_start_and_leaves_no_job(service, folder_store, case):
    svc, stub, channel = service
    method, build, code, text = REFUSED_AT_START[case]
    ref, _ = _bad_input_manifest(folder_store)
    with pytest.raises(grpc.RpcError) as error:
        getattr(stub, method)(build(folder_store, ref), timeout=30)
    assert (error.value.code(), text in error.value.details()) == (code, True), error.value.details()
    assert _jobs(channel) == []
    assert stub.ListPipelines(common_pb2.ListRegistryRequest(), timeout=5).entries  # still serving


def test_a_deeply_nested_manifest_is_invalid_argument(service, folder_store):
    svc, stub, channel = service
    deep = {"format": "skingenbench.manifest", "version": 1, "items": [], "extra": {"x": 0}}
    raw = json.dumps(deep).replace('{"x": 0}', "[" * 100_000 + "]" * 100_000).encode()
    info = folder_store.put_bytes("bad/deep/manifest.json", raw)
    with pytest.raises(grpc.RpcError) as error:
        stub.StartPreprocess(
            preprocessing_pb2.PreprocessRequest(
                input=common_pb2.ManifestRef(uri=folder_store.uri(info.key), sha256=info.sha256),
                pipeline="basic",
            ),
            timeout=30,
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    assert "manifest" in error.value.details() and "deep" in error.value.details()
    assert _jobs(channel) == []


def test_an_item_that_does_not_match_its_sha256_fails_the_job_with_data_loss(service, folder_store):
    svc, stub, channel = service
    ref, _ = _bad_input_manifest(folder_store)
    folder_store.put_bytes("bad/good", folder_store.get_bytes("bad/good") + b"\x00")  # one byte more
    job = _run(
        channel,
        stub.StartPreprocess(
            # Even the most tolerant run: a changed object is lost data, not a bad image to skip.
            preprocessing_pb2.PreprocessRequest(
                input=ref, pipeline="basic", profile="tiny", max_failure_fraction=1.0, workers=1
            )
        ),
    )
    assert job.state == common_pb2.JOB_STATE_FAILED
    assert job.error.code == "DATA_LOSS" and "bad/good" in job.error.message, job.error.message
    assert not folder_store.list("preprocess-basic/") or not any(
        key.endswith("manifest.json") for key in folder_store.list("preprocess-basic/")
    )


def test_max_failure_fraction_zero_allows_no_failure_and_unset_keeps_the_default(service, folder_store):
    svc, stub, channel = service
    rng = np.random.default_rng(1)
    items = []
    for index in range(40):  # 40 good items and one missing: 2.4% fail, under the default 5%
        info = folder_store.put_bytes(
            f"tol/{index}.png", _png(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
        )
        items.append(
            Item(key=info.key, sha256=info.sha256, label="NV", lesion_id=str(index), image_id=str(index))
        )
    items.append(Item(key="tol/missing.png", sha256="0" * 64, label="NV", lesion_id="m", image_id="missing"))
    written = write_manifest(folder_store, "tol/manifest.json", Manifest(items, Provenance(stage="test")))
    ref = common_pb2.ManifestRef(uri=written.uri, sha256=written.sha256)
    unset = preprocessing_pb2.PreprocessRequest(input=ref, pipeline="basic", profile="tiny", workers=1)
    default = _run(channel, stub.StartPreprocess(unset))
    assert default.state == common_pb2.JOB_STATE_SUCCEEDED, default.error.message
    assert json.loads(default.result_json)["skipped"] == 1
    # The job id of a request that leaves the field unset is what it always was: the request hashed as sent.
    assert "max_failure_fraction" not in json.loads(default.request_json)
    # An explicit 0 is a different request and no longer means "the default": one missing item fails it,
    # refused at Start here because the same output (same address) finished with a skipped item.
    strict = preprocessing_pb2.PreprocessRequest(
        input=ref, pipeline="basic", profile="tiny", workers=1, max_failure_fraction=0.0
    )
    with pytest.raises(grpc.RpcError) as refused:
        stub.StartPreprocess(strict, timeout=10)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "max_failure_fraction 0.0%" in refused.value.details()
    # ... and as a fresh run (another seed, another address), the job itself fails on the first failure.
    strict.seed = 7
    failed = _run(channel, stub.StartPreprocess(strict))
    assert failed.state == common_pb2.JOB_STATE_FAILED
    assert failed.error.code == "FAILED_PRECONDITION" and "1 of 41" in failed.error.message
