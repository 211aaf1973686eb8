"""Every classifier checkpoint reference carries a sha256 checked at Start (issue 16, item 3).

TestClassifier, GradCam and Predict took a bare ``checkpoint_uri``: a checkpoint with one flipped byte in
its weights still parsed, and tested "successfully" with other metrics. They now take
``checkpoint_sha256`` (the training job's ``checkpoint`` output carries it, and the flow passes it): a
file that does not match is DATA_LOSS at Start, before a job exists. The evaluation service's
``classifier_checkpoint`` (an ObjectRef) is held to the same, and the flow sends the sha256 there too.
"""

from __future__ import annotations

import hashlib
import json

import grpc
import pytest
from skingenbench.flows.jobs import JobOutcome
from skingenbench.services.platform.client import open_channel, watch_job
from skingenbench.services.platform.store import LocalFolderStore

from skingenbench.api.v1 import (
    classification_pb2,
    classification_pb2_grpc,
    common_pb2,
    evaluation_pb2,
    evaluation_pb2_grpc,
)
from tests.common.phantom_data import phantom_manifests
from tests.common.service_helpers import running


def _checkpoint_bytes() -> bytes:
    """A tiny resnet18 checkpoint written by the classification service's own code (random weights)."""
    from skingenbench.services.core.classifiers import models
    from skingenbench.services.core.classifiers.checkpoint import classifier_to_bytes

    config = models.CLASSIFIERS.config("resnet18", "tiny", {"pretrained": "none"})
    model, _ = models.build_classifier("resnet18", config)
    return classifier_to_bytes(model.state_dict(), "resnet18", config, {"classes": list(models.CLASSES)})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    store = LocalFolderStore(tmp_path_factory.mktemp("checkpoint-hash") / "store")
    split, _ = phantom_manifests(store, count=40, width=48, height=40)
    good = _checkpoint_bytes()
    flipped = bytearray(good)
    flipped[-3] ^= 0x01  # one bit of the last tensor: the header still parses, the weights differ
    store.put_bytes("checkpoints/good.safetensors", good)
    store.put_bytes("checkpoints/flipped.safetensors", bytes(flipped))
    with (
        running("classification", store) as classification,
        running("evaluation", store) as evaluation,
        open_channel(classification.target) as c,
        open_channel(evaluation.target) as e,
    ):
        yield {
            "store": store,
            "data": split,
            "sha256": hashlib.sha256(good).hexdigest(),
            "good": store.uri("checkpoints/good.safetensors"),
            "flipped": store.uri("checkpoints/flipped.safetensors"),
            "classification": classification_pb2_grpc.ClassificationStub(c),
            "classification_channel": c,
            "evaluation": evaluation_pb2_grpc.EvaluationStub(e),
        }


def _starts(world, uri: str, sha256: str):
    stub, data = world["classification"], world["data"]
    fields = {"checkpoint_uri": uri, "checkpoint_sha256": sha256, "data": data}
    return {
        "StartTest": lambda: stub.StartTest(
            classification_pb2.TestClassifierRequest(bootstrap_samples=10, **fields), timeout=30
        ),
        "StartGradCam": lambda: stub.StartGradCam(
            classification_pb2.GradCamRequest(count=1, **fields), timeout=30
        ),
        "StartPredict": lambda: stub.StartPredict(classification_pb2.PredictRequest(**fields), timeout=30),
    }


@pytest.mark.parametrize("method", ["StartTest", "StartGradCam", "StartPredict"])
def test_a_flipped_byte_is_data_loss_at_start(world, method):
    store = world["store"]
    jobs_before = sorted(store.list("jobs/"))
    with pytest.raises(grpc.RpcError) as error:
        _starts(world, world["flipped"], world["sha256"])[method]()
    assert error.value.code() == grpc.StatusCode.DATA_LOSS, error.value.details()
    assert "checkpoint_sha256" in error.value.details()
    assert sorted(store.list("jobs/")) == jobs_before  # refused at the door: no job was recorded


def test_a_malformed_sha256_is_invalid_argument(world):
    with pytest.raises(grpc.RpcError) as error:
        _starts(world, world["good"], "abc")["StartTest"]()
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "64 hex digits" in error.value.details()


def test_the_matching_checkpoint_tests_and_records_its_sha256(world):
    job = _starts(world, world["good"], world["sha256"].upper())["StartTest"]()  # hex in either case
    done = watch_job(world["classification_channel"], job.job_id, timeout_s=300)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.error.message
    store = world["store"]
    result = json.loads(
        store.get_bytes(store.key_from_uri({o.name: o.uri for o in done.outputs}["result_json"]))
    )
    assert result["checkpoint"]["sha256"] == world["sha256"]


def test_no_sha256_still_pins_the_bytes_read_at_start(world):
    """An empty checkpoint_sha256 stays accepted (old clients): the plan pins what it read, so the job
    scores exactly that file; a client should pass the sha256 (README)."""
    job = _starts(world, world["flipped"], "")["StartPredict"]()
    done = watch_job(world["classification_channel"], job.job_id, timeout_s=300)
    assert done.state == common_pb2.JOB_STATE_SUCCEEDED, done.error.message


def test_the_evaluation_checkpoint_is_checked_the_same_way(world):
    data = world["data"]
    request = evaluation_pb2.EvaluateRequest(
        real=data,
        synthetic=[evaluation_pb2.SyntheticSet(name="s", manifest=data)],
        metrics=["class_anchoring"],
        classifier_checkpoint=common_pb2.ObjectRef(uri=world["flipped"], sha256=world["sha256"]),
        options_json=json.dumps({"profile": "tiny", "grid_images": 0}),
    )
    with pytest.raises(grpc.RpcError) as error:
        world["evaluation"].StartEvaluation(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.DATA_LOSS, error.value.details()


def test_the_flow_passes_the_training_outputs_sha256(monkeypatch):
    """The grid hands each test, Grad-CAM and evaluation the checkpoint as the training job output it."""
    from skingenbench.flows import tasks

    sent: dict[str, object] = {}
    checkpoint = common_pb2.NamedRef(name="checkpoint", uri="s3://b/ckpt.safetensors", sha256="a" * 64)

    def fake_run(wiring, stage, stub, method, request, label):
        sent[method] = request
        return JobOutcome("job", method, {"checkpoint": checkpoint, "manifest": checkpoint}, {}, False)

    monkeypatch.setattr(tasks, "_run", fake_run)
    data = {"uri": "s3://b/m.json", "sha256": "b" * 64}
    trained = tasks.train_classifier.fn(
        None, data, "resnet18", "tiny", {}, "real", [], None, 0, "MEL", 1, "r"
    )
    assert trained["checkpoint"] == {"uri": checkpoint.uri, "sha256": checkpoint.sha256}
    tasks.test_classifier.fn(None, trained["checkpoint"], data, 10, 1, "r")
    tasks.gradcam.fn(None, trained["checkpoint"], data, 2, "r")
    tasks.evaluate.fn(None, data, {"s": data}, "MEL", {}, trained["checkpoint"], 1, "A")
    assert sent["StartTest"].checkpoint_sha256 == sent["StartGradCam"].checkpoint_sha256 == "a" * 64
    assert sent["StartEvaluation"].classifier_checkpoint.sha256 == "a" * 64
