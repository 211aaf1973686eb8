"""The evaluation service over a real channel: phantom real set, synthetic sets derived from it (exact
copies of training images, noised other images, a set of mixed sizes), random Inception weights and,
where the classification package is present, a classifier checkpoint for the domain metrics and class
anchoring. Bad requests are refused before a job starts."""

from __future__ import annotations

import hashlib
import io
import json

import grpc
import numpy as np
import pytest
from PIL import Image
from skingenbench.services.core.hashing import content_address, output_prefix
from skingenbench.services.core.manifest import Item, Manifest, Provenance
from skingenbench.services.platform.client import open_channel, watch_job
from skingenbench.services.platform.manifest_io import read_manifest, write_manifest
from skingenbench.services.platform.store import LocalFolderStore

from skingenbench.api.v1 import common_pb2, evaluation_pb2, evaluation_pb2_grpc
from tests.common.service_helpers import running
from tests.evaluation.test_extractors import (
    noised,
    one_blas_thread,  # noqa: F401 - autouse
    write_random_inception_weights,
)

WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def _decode(store, item: Item) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(store.get_bytes(item.key))).convert("RGB"))


def _synthetic_manifest(
    store, name: str, images: list[np.ndarray], labels: tuple[str, ...] = ("MEL",)
) -> common_pb2.ManifestRef:
    items = []
    for index, image in enumerate(images):
        info = store.put_bytes(f"synthetic/{name}/{index:03d}.png", _png(image), "image/png")
        items.append(
            Item(
                key=info.key,
                sha256=info.sha256,
                label=labels[index % len(labels)],
                lesion_id=f"{name}-{index}",
                source=name,
                image_id=f"{name}-{index}",
            )
        )
    ref = write_manifest(store, f"synthetic/{name}/manifest.json", Manifest(items, Provenance(stage="test")))
    return common_pb2.ManifestRef(uri=ref.uri, sha256=ref.sha256, item_count=len(items))


def _checkpoint(store) -> common_pb2.ObjectRef | None:
    """A tiny resnet18 checkpoint written by the classification service's own code (random weights)."""
    try:
        from skingenbench.services.core.classifiers import models
        from skingenbench.services.core.classifiers.checkpoint import classifier_to_bytes
    except ImportError:
        return None
    config = models.CLASSIFIERS.config("resnet18", "tiny", {"pretrained": "none"})
    model, _ = models.build_classifier("resnet18", config)
    data = classifier_to_bytes(model.state_dict(), "resnet18", config, {"classes": list(models.CLASSES)})
    info = store.put_bytes("checkpoints/resnet18-tiny.safetensors", data)
    return common_pb2.ObjectRef(uri=store.uri(info.key), sha256=info.sha256)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from skingenbench.services.data.operations import import_source, split_sources

    store = LocalFolderStore(tmp_path_factory.mktemp("store"))
    weights = write_random_inception_weights(tmp_path_factory.mktemp("weights"))
    imported = import_source(store, "phantom", options={"count": 30, "width": 64, "height": 64}, seed=3)
    split = split_sources(store, [(imported.ref.uri, imported.ref.sha256)], (0.7, 0.15, 0.15), seed=1)
    manifest = read_manifest(store, split.ref.uri, split.ref.sha256)
    train = manifest.by_split("train")
    held_out = [i for i in manifest.items if i.split != "train"]
    copies = [_decode(store, item) for item in train[:8]]
    others = noised([_decode(store, item) for item in held_out[:8]], 40.0)
    sizes = [
        np.asarray(Image.fromarray(_decode(store, item)).resize((s, s)))
        for item, s in zip(held_out[:6], (48, 80) * 3, strict=True)
    ]
    # The weights live outside the store: the server reads them only from under a read root
    # (services/platform/readable.py), so the test names their folder as one, as an operator would.
    patch = pytest.MonkeyPatch()
    patch.setenv("SKINGENBENCH_READ_ROOTS", str(weights.parent))
    yield {
        "store": store,
        "real": common_pb2.ManifestRef(uri=split.ref.uri, sha256=split.ref.sha256),
        "train_count": len(train),
        "copies": _synthetic_manifest(store, "copies", copies),
        "noisy": _synthetic_manifest(store, "noisy", others),
        "mixed": _synthetic_manifest(store, "mixed", sizes),
        "two_classes": _synthetic_manifest(store, "two_classes", others, labels=("MEL", "NV")),
        "empty": _synthetic_manifest(store, "empty", []),
        "weights": common_pb2.ObjectRef(
            uri=weights.as_uri(), sha256=hashlib.sha256(weights.read_bytes()).hexdigest()
        ),
        "weights_dir": weights.parent,
        "checkpoint": _checkpoint(store),
    }
    patch.undo()


@pytest.fixture(scope="module")
def service(world):
    with running("evaluation", world["store"]) as svc, open_channel(svc.target) as channel:
        yield evaluation_pb2_grpc.EvaluationStub(channel), channel


def _request(world, names=("copies", "noisy"), **kwargs) -> evaluation_pb2.EvaluateRequest:
    base = {
        "real": world["real"],
        "real_labels": ["NV", "BCC", "BKL", "MEL", "SCC"],
        "synthetic": [
            evaluation_pb2.SyntheticSet(name=n, manifest=world[n], intended_label="MEL") for n in names
        ],
        "extractor_weights": world["weights"],
        "options_json": json.dumps({"profile": "tiny"}),
        "seed": 5,
    }
    base.update(kwargs)
    return evaluation_pb2.EvaluateRequest(**base)


def _read_json(store, uri: str) -> dict:
    return json.loads(store.get_bytes(store.key_from_uri(uri)))


def _address_from_report(report: dict) -> str:
    """The output prefix recomputed from what the report says was evaluated (its provenance): the plan's
    address, fixed at Start, must name exactly what the work then used."""
    provenance = report["provenance"]
    inputs = [provenance["real"]["set_hash"]] + [s["set_hash"] for s in provenance["synthetic"].values()]
    settings = {
        "metrics": provenance["metrics"],
        "configs": provenance["configs"],
        "extractor": (provenance["extractor"] or {}).get("weights_sha256", ""),
        "domain": (provenance["domain_extractor"] or {}).get("weights_sha256", ""),
        "names": list(provenance["synthetic"]),
        "anchoring": [[a["intended_label"], a["per_item_labels"]] for a in provenance["anchoring"].values()],
        "extractor_name": provenance["extractor_name"],
        "profile": provenance["profile"],
        "extractor_options": provenance["extractor_options"],
        "grid_images": provenance["grid_images"],
        "strict_sample_size": provenance["strict_sample_size"],
    }
    return output_prefix(
        "evaluation", content_address("evaluation", "4", inputs, settings, provenance["seed"])
    )


def test_evaluation_end_to_end_with_every_metric(service, world):
    stub, channel = service
    store, checkpoint = world["store"], world["checkpoint"]
    extra = {"classifier_checkpoint": checkpoint} if checkpoint is not None else {}
    events = []
    job = stub.StartEvaluation(_request(world, **extra), timeout=60)
    done = watch_job(channel, job.job_id, on_event=events.append, timeout_s=600)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.error.message
    outputs = {o.name: o for o in done.outputs}
    report = _read_json(store, outputs["report_json"].uri)
    sets, real = report["sets"], report["real"]

    provenance = report["provenance"]
    assert provenance["extractor"]["weights_sha256"] == world["weights"].sha256
    assert (
        provenance["extractor"]["weights_upstream"] is False
        and "not the published file" in report["notes"][-1]
    )
    assert provenance["image_counts"] == {"real": world["train_count"], "copies": 8, "noisy": 8}
    assert "299" in provenance["extractor"]["resize"] and provenance["libraries"]["torch-fidelity"]
    assert any("kid: subset size lowered from 16 to 8" in note for note in report["notes"])
    assert real["count"] == world["train_count"] and real["image_sizes"] == {"64x64": world["train_count"]}

    # Exact copies of training images: inside the real manifold, flagged as memorized; noised other
    # lesions: further away, not flagged.
    assert sets["copies"]["precision"] == 1.0 and sets["copies"]["memorized_share"] == 1.0
    assert sets["noisy"]["memorized_share"] == 0.0
    assert 0 <= sets["copies"]["fid"] < sets["noisy"]["fid"]
    assert sets["copies"]["kid_mean"] < sets["noisy"]["kid_mean"] and sets["noisy"]["kid_std"] >= 0
    # The real-vs-real baseline (a second Fréchet distance per N) is opt-in, fid_real_baseline: not by default
    # (test_sample_size.py asks for it).
    assert real["isc_mean"] >= 1.0 and "real_baselines" not in real
    assert not any(key.endswith("_real_baseline") for key in sets["noisy"])
    assert report["provenance"]["configs"]["fid"] == {"real_baseline": False}
    pair = report["memorization"]["copies"]["pairs"][0]
    assert pair["ssim"] == pytest.approx(1.0) and pair["cosine_distance"] < 1e-5
    assert set(report["feature_space"]) >= {"inception-v3-compat"}

    expected = {
        "report_json",
        "report_md",
        "pca_inception-v3-compat",
        "tsne_inception-v3-compat",
        "memorization_copies",
        "memorization_noisy",
        "samples_real",
        "samples_copies",
        "samples_noisy",
    }
    if checkpoint is not None:
        expected |= {"pca_domain", "tsne_domain", "anchoring_confidence"}
        assert provenance["domain_extractor"]["weights_sha256"] == checkpoint.sha256
        anchoring = report["class_anchoring"]["noisy"]
        assert anchoring["count"] == 8 and 0.0 <= anchoring["share_intended"] <= 1.0
        assert sets["noisy"]["domain_fid"] >= 0 and "domain_kid_mean" in sets["copies"]
    assert expected <= set(outputs)
    png = store.get_bytes(store.key_from_uri(outputs["memorization_copies"].uri))
    assert png[:4] == b"\x89PNG" and hashlib.sha256(png).hexdigest() == outputs["memorization_copies"].sha256
    markdown = store.get_bytes(store.key_from_uri(outputs["report_md"].uri)).decode()
    assert "| set | n | FID | KID |" in markdown and "| copies | 8 |" in markdown  # no baseline column

    result = json.loads(done.result_json)
    assert result["sets"]["noisy"]["fid"] == sets["noisy"]["fid"] and result["weights_upstream"] is False
    assert outputs["report_json"].uri == store.uri(f"{_address_from_report(report)}/report.json")
    assert (
        report["outputs"]["samples_real"] == outputs["samples_real"].uri
        and "report_json" not in report["outputs"]
    )
    messages = [e.message for e in events]
    assert any("features of real" in m for m in messages) and any("memorization" in m for m in messages)
    assert any(e.metrics.get("images_per_s", 0) > 0 for e in events)
    steps = [e.step for e in events if e.total]
    assert steps == sorted(steps) and events[-1].state == common_pb2.JOB_STATE_SUCCEEDED


def test_a_second_evaluation_reuses_the_real_features_and_records_mixed_sizes(service, world, monkeypatch):
    stub, channel = service
    monkeypatch.setenv(
        "SKINGENBENCH_WEIGHTS_DIR", str(world["weights_dir"])
    )  # the default location this time
    request = _request(
        world,
        names=("mixed",),
        metrics=["kid", "prc"],
        extractor_weights=None,
        options_json=json.dumps({"profile": "tiny", "kid_subset_size": 6, "kid_subsets": 5}),
    )
    done = watch_job(channel, stub.StartEvaluation(request, timeout=60).job_id, timeout_s=600)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.error.message
    report = _read_json(world["store"], {o.name: o for o in done.outputs}["report_json"].uri)
    assert report["provenance"]["feature_cache"] == {"hits": 1, "misses": 1}  # only the new set was extracted
    assert report["sets"]["mixed"]["image_sizes"] == {"48x48": 3, "80x80": 3}
    assert report["sets"]["mixed"]["kid_subset_size"] == 6 and report["sets"]["mixed"]["kid_subsets"] == 5
    assert "fid" not in report["sets"]["mixed"]


def test_missing_weights_offline_are_a_failed_precondition_naming_the_file(
    service, world, tmp_path, monkeypatch
):
    stub, _ = service
    monkeypatch.setenv("SKINGENBENCH_WEIGHTS_DIR", str(tmp_path / "nothing-here"))
    with pytest.raises(grpc.RpcError) as error:
        stub.StartEvaluation(_request(world, extractor_weights=None), timeout=30)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert WEIGHTS_FILE in error.value.details() and str(tmp_path / "nothing-here") in error.value.details()


def test_without_inception_weights_all_that_the_inputs_allow_is_the_domain_space(
    service, world, tmp_path, monkeypatch
):
    if world["checkpoint"] is None:
        pytest.skip("needs the classification package for a checkpoint")
    stub, channel = service
    monkeypatch.setenv("SKINGENBENCH_WEIGHTS_DIR", str(tmp_path / "nothing-here"))
    request = _request(
        world,
        extractor_weights=None,
        classifier_checkpoint=world["checkpoint"],
        options_json=json.dumps({"profile": "tiny", "grid_images": 0}),
    )
    done = watch_job(channel, stub.StartEvaluation(request, timeout=30).job_id, timeout_s=600)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.error.message
    result = json.loads(done.result_json)
    assert result["extractor"] is None and any(WEIGHTS_FILE in note for note in result["notes"])
    noisy = result["sets"]["noisy"]
    assert "fid" not in noisy and {
        "domain_fid",
        "domain_kid_mean",
        "anchoring_share",
        "memorized_share",
    } <= set(noisy)
    assert result["sets"]["copies"]["memorized_share"] == 1.0  # found in the domain space too
    assert {"tsne_domain", "pca_domain", "report_md"} <= {o.name for o in done.outputs}
    report_uri = {o.name: o.uri for o in done.outputs}["report_json"]
    assert report_uri == world["store"].uri(
        f"{_address_from_report(_read_json(world['store'], report_uri))}/report.json"
    )


def test_the_same_evaluation_asked_differently_reattaches_the_finished_outputs(service, world):
    """A request that plans to the same output prefix (here: the real manifest named without its
    sha256) is a new job that finds the finished outputs instead of extracting or computing again."""
    stub, channel = service
    request = _request(
        world,
        names=("noisy",),
        metrics=["fid"],
        options_json=json.dumps({"profile": "tiny", "grid_images": 0}),
    )
    first = watch_job(channel, stub.StartEvaluation(request, timeout=60).job_id, timeout_s=600)
    assert first.state == common_pb2.JOB_STATE_SUCCEEDED, first.error.message
    request.real.sha256 = ""
    again = stub.StartEvaluation(request, timeout=60)
    assert again.job_id != first.job_id
    second = watch_job(channel, again.job_id, timeout_s=600)
    assert second.state == common_pb2.JOB_STATE_SUCCEEDED, second.error.message
    assert json.loads(second.result_json)["reused_output"] is True and "reused_output" not in json.loads(
        first.result_json
    )
    assert {(o.name, o.uri, o.sha256) for o in second.outputs} == {
        (o.name, o.uri, o.sha256) for o in first.outputs
    }


def test_model_files_are_pinned_at_start(service, world):
    """Weights that do not match their sha256 and a checkpoint that is not there are refused by
    StartEvaluation (they used to fail the job)."""
    stub, _ = service
    wrong = common_pb2.ObjectRef(uri=world["weights"].uri, sha256="0" * 64)
    with pytest.raises(grpc.RpcError) as error:
        stub.StartEvaluation(_request(world, extractor_weights=wrong), timeout=30)
    assert (
        error.value.code() == grpc.StatusCode.DATA_LOSS
        and "does not match its sha256" in error.value.details()
    )
    options = json.dumps({"profile": "tiny", "extractor_weights_sha256": "1" * 64})
    with pytest.raises(grpc.RpcError) as error:
        stub.StartEvaluation(_request(world, options_json=options), timeout=30)
    assert (
        error.value.code() == grpc.StatusCode.DATA_LOSS and "expected 111111111111" in error.value.details()
    )
    # A folder store's file:// URIs name store objects: a missing one is NOT_FOUND, as in every service.
    missing = common_pb2.ObjectRef(uri=world["store"].uri("checkpoints/no-such.safetensors"))
    with pytest.raises(grpc.RpcError) as error:
        stub.StartEvaluation(
            _request(world, metrics=["class_anchoring"], classifier_checkpoint=missing), timeout=30
        )
    assert error.value.code() == grpc.StatusCode.NOT_FOUND and "no-such.safetensors" in error.value.details()
    # A missing file under a read root is a FAILED_PRECONDITION that names it (the operator exposed the folder).
    absent = common_pb2.ObjectRef(uri=str(world["weights_dir"] / "no-such.safetensors"))
    with pytest.raises(grpc.RpcError) as error:
        stub.StartEvaluation(
            _request(world, metrics=["class_anchoring"], classifier_checkpoint=absent), timeout=30
        )
    assert (
        error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        and "no-such.safetensors" in error.value.details()
    )


def test_class_anchoring_against_each_items_own_label(service, world):
    """A conditional generator's set (e.g. the controllability manifest): per_item_labels scores each
    image against the class it was asked to show, and breaks the result down per class."""
    if world["checkpoint"] is None:
        pytest.skip("the classification package is not installed")
    stub, channel = service
    request = evaluation_pb2.EvaluateRequest(
        real=world["real"],
        synthetic=[
            evaluation_pb2.SyntheticSet(name="dermgan", manifest=world["two_classes"], per_item_labels=True)
        ],
        metrics=["class_anchoring"],
        classifier_checkpoint=world["checkpoint"],
        options_json=json.dumps({"profile": "tiny", "grid_images": 0}),
        seed=1,
    )
    done = watch_job(channel, stub.StartEvaluation(request, timeout=30).job_id, timeout_s=600)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.error.message
    report = _read_json(world["store"], {o.name: o.uri for o in done.outputs}["report_json"])
    anchoring = report["class_anchoring"]["dermgan"]
    per_label = anchoring["per_label"]
    assert anchoring["intended_label"] == "per item" and set(per_label) == {"MEL", "NV"}
    assert per_label["MEL"]["count"] == per_label["NV"]["count"] == 4
    overall = (per_label["MEL"]["share_intended"] + per_label["NV"]["share_intended"]) / 2
    assert anchoring["share_intended"] == pytest.approx(overall)
    # The real selection defaults to the items' labels, not to MEL alone.
    assert report["provenance"]["real"]["labels"] == ["MEL", "NV"]


@pytest.mark.parametrize(
    ("change", "code", "texts"),
    [
        (
            {"options_json": json.dumps({"kid_subset_size": 50})},
            grpc.StatusCode.INVALID_ARGUMENT,
            ("50", "8 images"),
        ),
        ({"feature_extractor": "inception-v4"}, grpc.StatusCode.INVALID_ARGUMENT, ("inception-v4",)),
        ({"metrics": ["fid", "sharpness"]}, grpc.StatusCode.INVALID_ARGUMENT, ("sharpness",)),
        ({"metrics": ["domain_fid"]}, grpc.StatusCode.INVALID_ARGUMENT, ("classifier checkpoint",)),
        (
            {"options_json": json.dumps({"kid_subset_sise": 4})},
            grpc.StatusCode.INVALID_ARGUMENT,
            ("subset_sise",),
        ),
        ({"options_json": json.dumps({"colour": 1})}, grpc.StatusCode.INVALID_ARGUMENT, ("colour",)),
        ({"synthetic": []}, grpc.StatusCode.INVALID_ARGUMENT, ("at least one synthetic set",)),
        ({"real_splits": ["holdout"]}, grpc.StatusCode.FAILED_PRECONDITION, ("holdout",)),
        (  # a missing file under a read root: named, with where the weights go
            {"extractor_weights": "{weights_dir}/no-such/weights.pth"},
            grpc.StatusCode.FAILED_PRECONDITION,
            (WEIGHTS_FILE, "/no-such/weights.pth"),
        ),
        (  # outside the store and the read roots: refused by the read rule, whether it exists or not
            {"extractor_weights": "file:///no/such/weights.pth"},
            grpc.StatusCode.INVALID_ARGUMENT,
            ("extractor_weights", "/no/such/weights.pth", "read roots"),
        ),
    ],
)
def test_bad_requests_are_refused_before_a_job_starts(service, world, change, code, texts):
    stub, _ = service
    if isinstance(change.get("extractor_weights"), str):
        uri = change["extractor_weights"].format(weights_dir=world["weights_dir"])
        change = {"extractor_weights": common_pb2.ObjectRef(uri=uri)}
    with pytest.raises(grpc.RpcError) as error:
        stub.StartEvaluation(_request(world, **change), timeout=30)
    assert error.value.code() == code, error.value.details()
    for text in texts:
        assert text in error.value.details()


def test_empty_and_missing_manifests(service, world):
    stub, _ = service
    empty = evaluation_pb2.SyntheticSet(name="empty", manifest=world["empty"])
    with pytest.raises(grpc.RpcError) as error:
        stub.StartEvaluation(_request(world, synthetic=[empty]), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "empty" in error.value.details()
    missing = common_pb2.ManifestRef(uri=world["store"].uri("nowhere/manifest.json"))
    with pytest.raises(grpc.RpcError) as error:
        stub.StartEvaluation(_request(world, real=missing), timeout=30)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND


def test_registry_rpcs(service):
    stub, _ = service
    metrics = stub.ListMetrics(common_pb2.ListRegistryRequest(), timeout=10)
    assert {e.name for e in metrics.entries} == {
        "fid",
        "kid",
        "isc",
        "prc",
        "domain_fid",
        "domain_kid",
        "feature_space",
        "memorization",
        "class_anchoring",
    }
    assert all({p.profile for p in e.profiles} == {"tiny", "paper"} for e in metrics.entries)
    extractors = stub.ListFeatureExtractors(common_pb2.ListRegistryRequest(), timeout=10)
    inception = {e.name: e for e in extractors.entries}["inception-v3-compat"]
    assert (
        inception.requirements[0].name == WEIGHTS_FILE and inception.capabilities["inception_score"] == "true"
    )
    kid = stub.Describe(common_pb2.DescribeRequest(name="kid"), timeout=10)
    assert json.loads({p.profile: p for p in kid.profiles}["paper"].config_json) == {
        "subset_size": 1000,
        "subsets": 100,
    }
    with pytest.raises(grpc.RpcError) as error:
        stub.Describe(common_pb2.DescribeRequest(name="sharpness"), timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    info = stub.GetServiceInfo(common_pb2.GetServiceInfoRequest(), timeout=10)
    assert info.service == "skingenbench.v1.Evaluation" and "domain" in info.registry


def test_a_different_anchoring_label_or_grid_is_a_different_evaluation(service, world):
    """What changes the report (the label a set is anchored against, the sample grids) is part of the
    address: such a request is computed, never handed another request's outputs."""
    stub, channel = service
    request = _request(
        world,
        names=("noisy",),
        metrics=["fid"],
        options_json=json.dumps({"profile": "tiny", "grid_images": 0}),
    )
    first = watch_job(channel, stub.StartEvaluation(request, timeout=60).job_id, timeout_s=600)
    assert first.state == common_pb2.JOB_STATE_SUCCEEDED, first.error.message
    first_report = {o.name: o.uri for o in first.outputs}["report_json"]
    request.synthetic[0].intended_label = "NV"
    relabelled = watch_job(channel, stub.StartEvaluation(request, timeout=60).job_id, timeout_s=600)
    request.options_json = json.dumps({"profile": "tiny", "grid_images": 4})
    gridded = watch_job(channel, stub.StartEvaluation(request, timeout=60).job_id, timeout_s=600)
    for job in (relabelled, gridded):
        assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.error.message
        assert "reused_output" not in json.loads(job.result_json)
    reports = {
        first_report,
        *({o.name: o.uri for o in j.outputs}["report_json"] for j in (relabelled, gridded)),
    }
    assert len(reports) == 3
    assert any(o.name.startswith("samples_") for o in gridded.outputs)
