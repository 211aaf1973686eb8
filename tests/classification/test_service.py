"""The classification service over a real channel: training under the three regimes, the test tables with
confidence intervals and ISIC predictions, paired comparison, Grad-CAM, Predict, bad requests, restarts."""

from __future__ import annotations

import dataclasses
import json

import cv2
import grpc
import numpy as np
import pytest
import torch
from skingenbench.services.classification.core.predictions_csv import read_predictions_csv
from skingenbench.services.core.manifest import Manifest, Provenance
from skingenbench.services.platform.client import open_channel, watch_job
from skingenbench.services.platform.manifest_io import read_manifest, verify_manifest, write_manifest

from skingenbench.api.v1 import classification_pb2, classification_pb2_grpc, common_pb2
from tests.common.service_helpers import running

torch.set_num_threads(1)
ONE_EPOCH = json.dumps({"epochs": 1})


def _ref(ref) -> common_pb2.ManifestRef:
    return common_pb2.ManifestRef(uri=ref.uri, sha256=ref.sha256)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with phantom data (split, preprocessed), augmented copies and a fake DDPM set; a server."""
    from skingenbench.services.data.operations import import_source, split_sources
    from skingenbench.services.platform.store import LocalFolderStore
    from skingenbench.services.preprocessing.batch import PreprocessSpec, preprocess_manifest

    store = LocalFolderStore(tmp_path_factory.mktemp("store"))
    imported = import_source(store, "phantom", options={"count": 150, "width": 96, "height": 72}, seed=1)
    split = split_sources(store, [(imported.ref.uri, imported.ref.sha256)], (0.7, 0.15, 0.15), seed=1)
    data = preprocess_manifest(store, split.ref.uri, PreprocessSpec("basic", "tiny"), workers=1).ref
    augmented = preprocess_manifest(
        store, split.ref.uri, PreprocessSpec("basic", "tiny", augment_copies=1, splits=("train",)), workers=1
    ).ref
    manifest = read_manifest(store, data.uri)
    # Stand-in for a generator's output (the real DDPM is the generation service's): training melanomas
    # relabelled as synthetic, with their own lesion ids and no split.
    melanomas = [item for item in manifest.items if item.split == "train" and item.label == "MEL"]
    fakes = [
        dataclasses.replace(item, split="", source="ddpm", lesion_id=f"ddpm-{i}", image_id=f"ddpm_{i:04d}")
        for i, item in enumerate(melanomas)
    ]
    synthetic = write_manifest(
        store,
        "generated/ddpm/manifest.json",
        Manifest(fakes, Provenance(stage="generate:ddpm"), name="ddpm-fake"),
    )
    with running("classification", store) as svc, open_channel(svc.target) as channel:
        yield {
            "store": store,
            "svc": svc,
            "channel": channel,
            "manifest": manifest,
            "data": _ref(data),
            "augmented": _ref(augmented),
            "synthetic": _ref(synthetic),
            "stub": classification_pb2_grpc.ClassificationStub(channel),
        }


def _run(world, job, timeout=300, events=None) -> common_pb2.Job:
    return watch_job(
        world["channel"],
        job.job_id,
        on_event=events.append if events is not None else None,
        timeout_s=timeout,
    )


def _outputs(job) -> dict[str, common_pb2.NamedRef]:
    return {o.name: o for o in job.outputs}


def _json(world, uri):
    store = world["store"]
    return json.loads(store.get_bytes(store.key_from_uri(uri)))


@pytest.fixture(scope="module")
def trained(world):
    """One tiny ResNet-18 per regime, trained through the service (one epoch: plumbing, not learning)."""
    extra = {
        "real": {},
        "real+synthetic": {"synthetic": [world["synthetic"]], "synthetic_count": 5},
        "real+augment": {"augmented": world["augmented"]},
    }
    jobs = {}
    for regime, fields in extra.items():
        events: list = []
        request = classification_pb2.TrainClassifierRequest(
            classifier="resnet18",
            profile="tiny",
            config_json=ONE_EPOCH,
            data=world["data"],
            regime=regime,
            seed=3,
            run_name=f"A/{regime}/resnet18/seed3",
            **fields,
        )
        job = _run(world, world["stub"].StartTraining(request), events=events)
        assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.error.message
        jobs[regime] = (job, events)
    return jobs


def test_the_registry_and_service_info(world):
    stub = world["stub"]
    listed = stub.ListClassifiers(common_pb2.ListRegistryRequest(), timeout=10)
    assert [e.name for e in listed.entries] == [
        "efficientnet_b0",
        "resnet18",
        "resnet50",
        "vgg16",
        "vit_base_patch16_224",
    ]
    vit = stub.DescribeClassifier(common_pb2.DescribeRequest(name="vit_base_patch16_224"), timeout=10)
    profiles = {p.profile: json.loads(p.config_json) for p in vit.profiles}
    assert profiles["tiny"]["image_size"] == 64 and profiles["paper"]["lr_milestones"] == [15, 25]
    assert vit.requirements[0].name == "imagenet_weights"
    assert vit.capabilities["gradcam_layer"] == "encoder.layers.encoder_layer_11.ln_1"  # torchvision ViT-B/16
    with pytest.raises(grpc.RpcError) as missing:
        stub.DescribeClassifier(common_pb2.DescribeRequest(name="alexnet"), timeout=10)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
    info = stub.GetServiceInfo(common_pb2.GetServiceInfoRequest(), timeout=10)
    assert info.service == "skingenbench.v1.Classification" and "resnet18" in info.registry


def test_training_under_the_three_regimes_records_the_run(world, trained):
    counts = {}
    for regime, (job, events) in trained.items():
        result = json.loads(job.result_json)
        assert (result["regime"], result["seed"], result["pretrained"]) == (regime, 3, False)
        assert result["best_epoch"] == 1
        assert result["selection_metric"] == "macro_f1" and 0.0 <= result["val_metric"] <= 1.0
        assert result["run_name"] == f"A/{regime}/resnet18/seed3"
        outputs = _outputs(job)
        assert set(outputs) == {"checkpoint", "history_json"}
        history = _json(world, outputs["history_json"].uri)
        assert history["best_epoch"] == 1 and len(history["epochs"]) == 1
        assert any(e.metrics.get("images_per_s", 0) > 0 and "loss" in e.metrics for e in events)
        counts[regime] = result["train_counts"]
    real = counts["real"]["real"]
    assert counts["real"] == {"real": real, "synthetic": 0, "augmented": 0, "val": counts["real"]["val"]}
    assert counts["real+synthetic"]["synthetic"] == 5
    assert counts["real+augment"]["augmented"] == real  # one copy of every training image

    again = world["stub"].StartTraining(
        classification_pb2.TrainClassifierRequest(
            classifier="resnet18",
            profile="tiny",
            config_json=ONE_EPOCH,
            data=world["data"],
            regime="real",
            seed=3,
            run_name="A/real/resnet18/seed3",
        )
    )
    assert again.reused and again.job_id == trained["real"][0].job_id


def _test(world, checkpoint_uri, **fields) -> common_pb2.Job:
    request = classification_pb2.TestClassifierRequest(
        checkpoint_uri=checkpoint_uri, data=world["data"], bootstrap_samples=200, seed=1, **fields
    )
    return _run(world, world["stub"].StartTest(request))


def test_test_reports_both_tables_with_intervals_and_isic_predictions(world, trained):
    checkpoint = _outputs(trained["real"][0])["checkpoint"].uri
    job = _test(world, checkpoint)
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.error.message
    outputs = _outputs(job)
    result = _json(world, outputs["result_json"].uri)
    test_items = [item for item in world["manifest"].items if item.split == "test"]
    assert result["split"] == "test" and result["n"] == len(test_items) == len(result["predictions"])
    assert result["run"]["regime"] == "real" and result["bootstrap"]["n_resamples"] == 200
    sections = (
        ("global", ("macro_f1", "balanced_accuracy", "mcc", "roc_auc", "accuracy", "brier")),
        ("melanoma", ("f1", "sensitivity", "specificity", "precision", "roc_auc", "pr_auc")),
    )
    for section, names in sections:
        for name in names:
            entry = result[section][name]
            if entry["value"] is not None:
                assert entry["ci_low"] <= entry["value"] + 1e-9 and entry["value"] <= entry["ci_high"] + 1e-9
    assert result["tables"]["global"][0]["model"] == "A/real/resnet18/seed3"
    markdown = result["tables"]["markdown"]
    assert "| model | macro-F1 |" in markdown and "| model | F1 |" in markdown
    assert set(result["tables"]["melanoma"][0]) >= {"f1", "sensitivity", "specificity", "dor"}
    csv_text = world["store"].get_bytes(world["store"].key_from_uri(outputs["predictions_csv"].uri)).decode()
    assert csv_text.splitlines()[0] == "image,NV,BCC,BKL,MEL,SCC"
    ids, probs, _ = read_predictions_csv(csv_text, ("NV", "BCC", "BKL", "MEL", "SCC"))
    assert ids == [p["image_id"] for p in result["predictions"]]
    assert np.allclose(probs, [p["probs"] for p in result["predictions"]]) and np.allclose(probs.sum(1), 1)
    assert json.loads(job.result_json)["n"] == len(test_items)
    assert (
        world["stub"]
        .StartTest(
            classification_pb2.TestClassifierRequest(
                checkpoint_uri=checkpoint, data=world["data"], bootstrap_samples=200, seed=1
            )
        )
        .reused
    )

    candidate = _test(world, _outputs(trained["real+synthetic"][0])["checkpoint"].uri)
    compared = _run(
        world,
        world["stub"].StartComparison(
            classification_pb2.CompareRequest(
                baseline_result_uri=outputs["result_json"].uri,
                candidate_result_uri=_outputs(candidate)["result_json"].uri,
                bootstrap_samples=200,
                seed=2,
            )
        ),
    )
    assert compared.state == common_pb2.JOB_STATE_SUCCEEDED, compared.error.message
    comparison = _json(world, _outputs(compared)["comparison_json"].uri)
    assert comparison["differences"] == "candidate - baseline" and comparison["n"] == len(test_items)
    assert set(comparison["paired_bootstrap"]) == {"melanoma_f1", "balanced_accuracy"}
    assert "mcnemar" in comparison
    assert "delong_roc_auc" in comparison


def test_gradcam_returns_png_overlays(world, trained):
    checkpoint = _outputs(trained["real+augment"][0])["checkpoint"].uri
    job = _run(
        world,
        world["stub"].StartGradCam(
            classification_pb2.GradCamRequest(
                checkpoint_uri=checkpoint, data=world["data"], split="test", count=3
            )
        ),
    )
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.error.message
    ref = _outputs(job)["manifest"]
    overlays = read_manifest(world["store"], ref.uri, ref.sha256)
    assert len(overlays.items) == 3 and list(verify_manifest(world["store"], overlays)) == []
    for item in overlays.items:
        png = world["store"].get_bytes(item.key)
        assert png.startswith(b"\x89PNG")
        image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
        assert image.shape == (56, 56, 3) and image.std() > 1  # the crop the model saw, with a heat map
        assert item.meta["target_layer"] == "layer4" and item.split == "test"
    # The plan step resolves the layer on the architecture: a layer the model lacks is refused at Start.
    with pytest.raises(grpc.RpcError) as bad_layer:
        world["stub"].StartGradCam(
            classification_pb2.GradCamRequest(
                checkpoint_uri=checkpoint, data=world["data"], count=1, target_layer="layer9"
            ),
            timeout=30,
        )
    assert bad_layer.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no module 'layer9'" in bad_layer.value.details()


def test_predict_gives_json_and_csv(world, trained):
    checkpoint = _outputs(trained["real"][0])["checkpoint"].uri
    job = _run(
        world,
        world["stub"].StartPredict(
            classification_pb2.PredictRequest(
                checkpoint_uri=checkpoint, data=world["synthetic"], batch_size=4
            )
        ),
    )
    assert job.state == common_pb2.JOB_STATE_SUCCEEDED, job.error.message
    outputs = _outputs(job)
    document = _json(world, outputs["predictions_json"].uri)
    synthetic = read_manifest(world["store"], world["synthetic"].uri)
    assert [p["image_id"] for p in document["items"]] == [item.image_id for item in synthetic.items]
    for row in document["items"]:
        assert abs(sum(row["probs"]) - 1) < 1e-6 and row["predicted"] in document["classes"]
    csv_text = world["store"].get_bytes(world["store"].key_from_uri(outputs["predictions_csv"].uri)).decode()
    assert len(csv_text.splitlines()) == len(synthetic.items) + 1
    val = _run(
        world,
        world["stub"].StartPredict(
            classification_pb2.PredictRequest(checkpoint_uri=checkpoint, data=world["data"], splits=["val"])
        ),
    )
    assert json.loads(val.result_json)["n"] == sum(item.split == "val" for item in world["manifest"].items)


def _leaky(world) -> common_pb2.ManifestRef:
    manifest = world["manifest"]
    test_item = next(item for item in manifest.items if item.split == "test")
    items = manifest.items + [dataclasses.replace(test_item, split="train")]
    ref = write_manifest(world["store"], "leaky/manifest.json", Manifest(items, Provenance(stage="test")))
    return common_pb2.ManifestRef(uri=ref.uri, sha256=ref.sha256)


TRAIN_CASES = [
    ({"classifier": "alexnet"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown classifier"),
    ({"profile": "huge"}, grpc.StatusCode.INVALID_ARGUMENT, "no profile"),
    ({"config_json": "{oops"}, grpc.StatusCode.INVALID_ARGUMENT, "not valid JSON"),
    ({"config_json": '{"epochs": 0}'}, grpc.StatusCode.INVALID_ARGUMENT, "epochs"),
    ({"regime": "real+dreams"}, grpc.StatusCode.INVALID_ARGUMENT, "unknown regime"),
    ({"regime": "real+synthetic"}, grpc.StatusCode.INVALID_ARGUMENT, "needs at least one synthetic"),
    ({"regime": "real+augment"}, grpc.StatusCode.INVALID_ARGUMENT, "needs the augmented manifest"),
    (
        {"synthetic_label": "XYZ", "regime": "real+synthetic", "synthetic": "fake"},
        grpc.StatusCode.INVALID_ARGUMENT,
        "synthetic_label",
    ),
    (
        {"synthetic_count": 10_000, "regime": "real+synthetic", "synthetic": "fake"},
        grpc.StatusCode.FAILED_PRECONDITION,
        "requested",
    ),
    (
        {"exclude_synthetic": ["not-a-synthetic-item"], "regime": "real+synthetic", "synthetic": "fake"},
        grpc.StatusCode.INVALID_ARGUMENT,
        "no synthetic manifest holds",
    ),
    ({"exclude_synthetic": ["x"]}, grpc.StatusCode.INVALID_ARGUMENT, "applies to regime 'real+synthetic'"),
    (
        {"exclude_synthetic": [""], "regime": "real+synthetic", "synthetic": "fake"},
        grpc.StatusCode.INVALID_ARGUMENT,
        "an empty name",
    ),
    ({"data": "missing"}, grpc.StatusCode.NOT_FOUND, "not found"),
    ({"data": "empty"}, grpc.StatusCode.INVALID_ARGUMENT, "required"),
    ({"data": "leaky"}, grpc.StatusCode.FAILED_PRECONDITION, "test split"),
    (
        {"weights": "any", "config_json": '{"pretrained": "none"}'},
        grpc.StatusCode.INVALID_ARGUMENT,
        "a weights file was given",
    ),
    (
        {"weights": "wrong sha256", "config_json": '{"pretrained": "file"}'},
        grpc.StatusCode.DATA_LOSS,
        "expected 000000000000",
    ),
    ({"config_json": '{"pretrained": "file"}'}, grpc.StatusCode.FAILED_PRECONDITION, "no weights file"),
]


@pytest.mark.parametrize(("fields", "code", "text"), TRAIN_CASES)
def test_bad_training_requests_are_refused(world, fields, code, text):
    fields = dict(fields)
    data = {
        "missing": common_pb2.ManifestRef(uri=world["store"].uri("nowhere/manifest.json")),
        "empty": common_pb2.ManifestRef(),
        "leaky": None,
    }.get(fields.pop("data", ""), world["data"])
    if data is None:
        data = _leaky(world)
    if fields.pop("synthetic", None):
        fields["synthetic"] = [world["synthetic"]]
    weights = fields.pop("weights", None)
    if weights:  # any stored object passes as a weights file until the plan checks what it is for
        fields["pretrained_weights"] = common_pb2.ObjectRef(
            uri=world["data"].uri, sha256="0" * 64 if weights == "wrong sha256" else ""
        )
    request = classification_pb2.TrainClassifierRequest(
        **{"classifier": "resnet18", "profile": "tiny", "data": data, **fields}
    )
    with pytest.raises(grpc.RpcError) as error:
        world["stub"].StartTraining(request, timeout=30)
    assert error.value.code() == code and text in error.value.details(), error.value.details()


def test_bad_test_gradcam_predict_and_comparison_requests(world, trained):
    stub, store = world["stub"], world["store"]
    checkpoint = _outputs(trained["real"][0])["checkpoint"].uri
    cases = [
        (
            stub.StartTest,
            classification_pb2.TestClassifierRequest(checkpoint_uri=world["data"].uri, data=world["data"]),
            grpc.StatusCode.FAILED_PRECONDITION,
            "not a classifier checkpoint",
        ),
        (
            stub.StartTest,
            classification_pb2.TestClassifierRequest(
                checkpoint_uri=checkpoint, data=world["data"], split="holdout"
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown split",
        ),
        (
            stub.StartTest,
            classification_pb2.TestClassifierRequest(
                checkpoint_uri=checkpoint, data=world["data"], bootstrap_samples=-1
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "bootstrap_samples",
        ),
        (
            stub.StartTest,
            classification_pb2.TestClassifierRequest(data=world["data"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "checkpoint is required",
        ),
        (  # not the file the training job wrote (its output's sha256 is what a client passes)
            stub.StartTest,
            classification_pb2.TestClassifierRequest(
                checkpoint_uri=checkpoint, checkpoint_sha256="0" * 64, data=world["data"]
            ),
            grpc.StatusCode.DATA_LOSS,
            "does not match checkpoint_sha256",
        ),
        (  # classification reads store objects only: a path on the server is the read rule's refusal
            stub.StartPredict,
            classification_pb2.PredictRequest(checkpoint_uri="/etc/passwd", data=world["data"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "read roots",
        ),
        (
            stub.StartGradCam,
            classification_pb2.GradCamRequest(checkpoint_uri=checkpoint, data=world["data"], labels=["XYZ"]),
            grpc.StatusCode.INVALID_ARGUMENT,
            "unknown labels",
        ),
        (
            stub.StartPredict,
            classification_pb2.PredictRequest(
                checkpoint_uri=store.uri("no/model.safetensors"), data=world["data"]
            ),
            grpc.StatusCode.NOT_FOUND,
            "checkpoint not found",
        ),
        (
            stub.StartComparison,
            classification_pb2.CompareRequest(baseline_result_uri=checkpoint),
            grpc.StatusCode.INVALID_ARGUMENT,
            "candidate_result_uri is required",
        ),
    ]
    for call, request, code, text in cases:
        with pytest.raises(grpc.RpcError) as error:
            call(request, timeout=30)
        assert error.value.code() == code and text in error.value.details(), (text, error.value.details())
    # Refused at Start by the plan step, not accepted and then failed as a job.
    late_cases = [
        (
            stub.StartComparison,
            classification_pb2.CompareRequest(
                baseline_result_uri=world["data"].uri, candidate_result_uri=world["data"].uri
            ),
            "is not a StartTest result_json",
        ),
        (
            stub.StartTest,
            classification_pb2.TestClassifierRequest(checkpoint_uri=checkpoint, data=world["synthetic"]),
            "has no test items",
        ),
        (
            stub.StartGradCam,
            classification_pb2.GradCamRequest(checkpoint_uri=checkpoint, data=world["synthetic"]),
            "no test items with labels",
        ),
    ]
    for call, request, text in late_cases:
        with pytest.raises(grpc.RpcError) as refused:
            call(request, timeout=30)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, refused.value.details()
        assert text in refused.value.details(), (text, refused.value.details())
    with pytest.raises(grpc.RpcError) as empty_split:
        stub.StartPredict(
            classification_pb2.PredictRequest(
                checkpoint_uri=checkpoint, data=world["data"], splits=["nowhere"]
            ),
            timeout=30,
        )
    assert empty_split.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "no items in splits" in empty_split.value.details()
    assert stub.GetServiceInfo(common_pb2.GetServiceInfoRequest(), timeout=10).service  # still serving


@pytest.mark.parametrize(
    "fields",
    [
        {"uri": "file:///m.json"},
        {"uri": "file:///m.json", "sha256": "ab" * 32},
        {"uri": "file:///m.json", "sha256": "ab" * 32, "item_count": 150},
    ],
)
def test_documents_record_the_data_reference_as_sent(fields):
    """Output documents have always recorded ``data`` as the request's JSON: item_count included."""
    from google.protobuf import json_format
    from skingenbench.services.classification.request_checks import RequestedManifest

    sent = common_pb2.ManifestRef(**fields)
    recorded = RequestedManifest(sent.uri, sent.sha256, sent.item_count, pinned_sha256="cd" * 32).as_request()
    assert recorded == json_format.MessageToDict(sent, preserving_proto_field_name=True)


def test_plans_survive_the_job_record(world, trained):
    """A plan is persisted as JSON and rebuilt on resume: every kind's plan comes back equal."""
    from skingenbench.services.classification import gradcam_job, testing_job, training_job

    store = world["store"]
    checkpoint = _outputs(trained["real"][0])["checkpoint"].uri
    result = _outputs(_test(world, checkpoint))["result_json"].uri
    requests = [
        (
            training_job.TrainKind(),
            classification_pb2.TrainClassifierRequest(
                classifier="resnet18",
                profile="tiny",
                data=world["data"],
                regime="real+synthetic",
                synthetic=[world["synthetic"]],
                synthetic_ratio=0.5,
                seed=2,
            ),
        ),
        (
            training_job.TrainKind(),
            classification_pb2.TrainClassifierRequest(
                classifier="resnet18",
                profile="tiny",
                data=world["data"],
                regime="real+augment",
                augmented=world["augmented"],
            ),
        ),
        (
            testing_job.TestKind(),
            classification_pb2.TestClassifierRequest(checkpoint_uri=checkpoint, data=world["data"]),
        ),
        (
            testing_job.CompareKind(),
            classification_pb2.CompareRequest(baseline_result_uri=result, candidate_result_uri=result),
        ),
        (
            gradcam_job.GradCamKind(),
            classification_pb2.GradCamRequest(checkpoint_uri=checkpoint, data=world["data"], labels=["MEL"]),
        ),
    ]
    for kind, request in requests:
        plan = kind.plan(request, store)
        assert kind.plan_from_json(json.loads(json.dumps(plan.to_json()))) == plan, kind.name


def test_synthetic_exclusions_are_part_of_the_job_identity_only_when_given(world):
    """The quality gate's exclusions change the job (its address) and survive the job record; their order
    does not matter."""
    from skingenbench.services.classification import training_job

    store, kind = world["store"], training_job.TrainKind()
    ids = [item.image_id for item in read_manifest(store, world["synthetic"].uri).items[:2]]

    def plan(exclude):
        return kind.plan(
            classification_pb2.TrainClassifierRequest(
                classifier="resnet18",
                profile="tiny",
                data=world["data"],
                regime="real+synthetic",
                synthetic=[world["synthetic"]],
                synthetic_count=2,
                exclude_synthetic=exclude,
            ),
            store,
        )

    plain, gated, reordered = plan([]), plan(ids), plan(ids[::-1] + ids[:1])
    assert gated.output_prefix != plain.output_prefix and gated.output_prefix == reordered.output_prefix
    assert gated.mix.exclude == tuple(sorted(ids)) and plain.mix.exclude == ()
    assert kind.plan_from_json(json.loads(json.dumps(gated.to_json()))) == gated


def test_a_checkpoint_changed_after_start_is_data_loss(world, trained):
    """The plan pins the checkpoint's sha256: a job that finds another file there fails instead of scoring it."""
    import threading

    from skingenbench.services.classification import testing_job
    from skingenbench.services.core.errors import DataIntegrityError
    from skingenbench.services.platform.jobs import JobContext, JobRecord, JobRunner

    store, key = world["store"], "pinned/model.safetensors"
    pinned, other = (
        store.key_from_uri(_outputs(trained[regime][0])["checkpoint"].uri)
        for regime in ("real", "real+augment")
    )
    store.put_bytes(key, store.get_bytes(pinned))
    kind = testing_job.TestKind()
    plan = kind.plan(
        classification_pb2.TestClassifierRequest(
            checkpoint_uri=store.uri(key), data=world["data"], bootstrap_samples=10
        ),
        store,
    )
    store.put_bytes(key, store.get_bytes(other))  # another run's checkpoint where the pinned one was
    runner = JobRunner(store, "test.pinning")
    context = JobContext(
        runner,
        JobRecord(job_id="pinning", kind=kind.name, service=runner.service, request={}),
        threading.Event(),
    )
    try:
        with pytest.raises(DataIntegrityError, match="does not match"):
            kind.run(plan, context)
    finally:
        runner.shutdown(grace_s=0)
    assert not store.exists(f"{plan.output_prefix}/result.json")


def test_training_resumes_after_a_restart(world):
    """A server stopped mid-training checkpoints; the next server resumes the job from that checkpoint."""
    store = world["store"]
    request = classification_pb2.TrainClassifierRequest(
        classifier="resnet18",
        profile="tiny",
        config_json=json.dumps({"epochs": 2, "batch_size": 8}),
        data=world["data"],
        regime="real",
        seed=11,
    )
    with running("classification", store) as first, open_channel(first.target) as channel:
        job = classification_pb2_grpc.ClassificationStub(channel).StartTraining(request)
        for event in common_pb2_grpc_jobs(channel).WatchJob(common_pb2.WatchJobRequest(job_id=job.job_id)):
            if event.metrics.get("epoch", 0) >= 2:  # into the second epoch: stop the server now
                break
    with running("classification", store) as second, open_channel(second.target) as channel:
        done = watch_job(channel, job.job_id, timeout_s=300)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.error.message
    result = json.loads(done.result_json)
    assert result["resumed_from"]["epoch"] >= 1 and result["epochs"] == 2


def common_pb2_grpc_jobs(channel):
    from skingenbench.api.v1 import common_pb2_grpc

    return common_pb2_grpc.JobsStub(channel)
