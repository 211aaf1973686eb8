"""One rule for what a server reads (issue 16, item 2), over real channels to real servers.

A request field that names something to read is a store object or a file/folder under the server's read
roots ($SKINGENBENCH_WEIGHTS_DIR and $SKINGENBENCH_READ_ROOTS); anything else is INVALID_ARGUMENT at
Start, before a job exists, with the same answer whether or not the path exists (no existence oracle,
no hash oracle), and no error quotes a file's bytes. Before the rule, the evaluation server hashed any
file it was pointed at: /etc/passwd started a job, a missing file was refused, and a failed header read
quoted the file's first bytes.
"""

from __future__ import annotations

import hashlib
import io
import os

import grpc
import pytest
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.platform import readable
from skingenbench.services.platform.client import open_channel, watch_job
from skingenbench.services.platform.store import LocalFolderStore

from skingenbench.api.v1 import (
    classification_pb2,
    classification_pb2_grpc,
    common_pb2,
    evaluation_pb2,
    evaluation_pb2_grpc,
    generation_pb2,
    generation_pb2_grpc,
)
from tests.common.phantom_data import phantom_manifests
from tests.common.service_helpers import running

PASSWD_HEAD = b"root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return LocalFolderStore(tmp_path_factory.mktemp("read-rule") / "store")


@pytest.fixture(scope="module")
def servers(store):
    with (
        running("evaluation", store) as evaluation,
        running("classification", store) as classification,
        running("generation", store) as generation,
        open_channel(evaluation.target) as e,
        open_channel(classification.target) as c,
        open_channel(generation.target) as g,
    ):
        yield {
            "evaluation": evaluation_pb2_grpc.EvaluationStub(e),
            "classification": classification_pb2_grpc.ClassificationStub(c),
            "generation": generation_pb2_grpc.GenerationStub(g),
            "generation_channel": g,
        }


@pytest.fixture
def roots(tmp_path, monkeypatch):
    """A weights folder and a data root (the allow-list), and a file and a folder outside both."""
    weights, data, outside = tmp_path / "weights", tmp_path / "data", tmp_path / "outside"
    for folder in (weights, data, outside / "folder"):
        folder.mkdir(parents=True)
    secret = outside / "secret.txt"
    secret.write_bytes(PASSWD_HEAD)
    monkeypatch.setenv("SKINGENBENCH_WEIGHTS_DIR", str(weights))
    monkeypatch.setenv("SKINGENBENCH_READ_ROOTS", str(data))
    return {"weights": weights, "data": data, "secret": secret, "outside": outside}


@pytest.fixture(scope="module")
def train_ref(store):
    return phantom_manifests(store, count=40, width=48, height=40)[1]


def _evaluate(servers, **refs):
    return servers["evaluation"].StartEvaluation(evaluation_pb2.EvaluateRequest(**refs), timeout=30)


def _test_classifier(servers, uri):
    request = classification_pb2.TestClassifierRequest(checkpoint_uri=uri)
    return servers["classification"].StartTest(request, timeout=30)


def _train_from(servers, train_ref, uri):
    request = generation_pb2.TrainGeneratorRequest(
        generator="ddpm",
        profile="tiny",
        train=train_ref,
        seed=1,
        init_checkpoint=common_pb2.ObjectRef(uri=uri),
    )
    return servers["generation"].StartTraining(request, timeout=30)


CALLS = {
    "extractor_weights": lambda servers, train_ref, uri: _evaluate(
        servers, extractor_weights=common_pb2.ObjectRef(uri=uri)
    ),
    "classifier_checkpoint (evaluation)": lambda servers, train_ref, uri: _evaluate(
        servers, classifier_checkpoint=common_pb2.ObjectRef(uri=uri), metrics=["class_anchoring"]
    ),
    "checkpoint_uri (classification)": lambda servers, train_ref, uri: _test_classifier(servers, uri),
    "init_checkpoint": _train_from,
}


def _refusal(call, servers, train_ref, uri) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call(servers, train_ref, uri)
    return error.value


@pytest.mark.parametrize("field", list(CALLS))
def test_a_file_outside_the_roots_is_refused_the_same_whether_it_exists(
    servers, store, roots, train_ref, field
):
    call = CALLS[field]
    jobs_before = sorted(store.list("jobs/"))
    secret, missing = roots["secret"], roots["outside"] / "no-such-file"
    answers = {}
    for name, uri in {
        "/etc/passwd": "/etc/passwd",
        "existing": str(secret),
        "existing file://": secret.as_uri(),
        "missing": str(missing),
        "dotdot": f"{roots['weights']}/../outside/secret.txt",
    }.items():
        error = _refusal(call, servers, train_ref, uri)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (name, error.details())
        assert "read roots" in error.details() and "root:x" not in error.details(), error.details()
        answers[name] = error.details().replace(uri, "<uri>").replace(repr(uri), "<uri>")
    # An existing file and a missing one get the very same answer: no existence oracle.
    assert answers["existing"] == answers["missing"] == answers["/etc/passwd"] == answers["dotdot"]
    # The same path, existing and then removed: the same bytes back.
    before = _refusal(call, servers, train_ref, str(secret)).details()
    secret.unlink()
    assert _refusal(call, servers, train_ref, str(secret)).details() == before
    assert sorted(store.list("jobs/")) == jobs_before  # refused at the door: no job was recorded


def test_a_link_inside_a_root_that_points_out_of_it_is_refused(servers, store, roots, train_ref):
    link = roots["weights"] / "weights.pth"
    link.symlink_to(roots["secret"])
    for field in ("extractor_weights", "checkpoint_uri (classification)"):
        error = _refusal(CALLS[field], servers, train_ref, str(link))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "root:x" not in error.details()
    folder_link = roots["data"] / "unet"
    folder_link.symlink_to(roots["outside"] / "folder")
    error = _refusal(CALLS["init_checkpoint"], servers, train_ref, str(folder_link))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "read roots" in error.details()


def test_a_file_under_the_weights_folder_is_read(servers, store, roots):
    """Under a root the rule lets the request through: the weights are read and checked (a wrong sha256 is
    DATA_LOSS, so the bytes were hashed), and with the right one the plan goes on to its next check."""
    weights = roots["weights"] / "my-weights.pth"
    weights.write_bytes(os.urandom(256))
    wrong = common_pb2.ObjectRef(uri=str(weights), sha256="0" * 64)
    with pytest.raises(grpc.RpcError) as error:
        _evaluate(servers, extractor_weights=wrong)
    assert error.value.code() == grpc.StatusCode.DATA_LOSS, error.value.details()
    right = common_pb2.ObjectRef(
        uri=weights.as_uri(), sha256=hashlib.sha256(weights.read_bytes()).hexdigest()
    )
    with pytest.raises(grpc.RpcError) as error:
        _evaluate(servers, extractor_weights=right)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at least one synthetic set" in error.value.details()  # past the weights: the next check
    # Missing under a root: that answer may name the file (the operator chose to expose the folder).
    with pytest.raises(grpc.RpcError) as error:
        _evaluate(servers, extractor_weights=common_pb2.ObjectRef(uri=str(roots["weights"] / "nope.pth")))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "nope.pth" in error.value.details()


def test_a_folder_under_a_read_root_starts_a_transfer(servers, store, roots, train_ref):
    folder = roots["data"] / "unet"
    folder.mkdir()
    job = _train_from(servers, train_ref, str(folder))  # accepted: a job (it fails on the empty folder)
    final = watch_job(servers["generation_channel"], job.job_id, timeout_s=120)
    assert final.state in (common_pb2.JOB_STATE_FAILED, common_pb2.JOB_STATE_SUCCEEDED)
    missing = _refusal(CALLS["init_checkpoint"], servers, train_ref, str(roots["data"] / "no-unet"))
    assert missing.code() == grpc.StatusCode.INVALID_ARGUMENT and "not a folder" in missing.details()


def test_a_header_read_never_quotes_the_file(servers, store):
    """A store object that is not a checkpoint: FAILED_PRECONDITION, and the message shows none of its bytes
    (it used to: the header length is the first 8 bytes read as a number, 'root:x:0' in disguise)."""
    from skingenbench.services.core.classifiers.checkpoint import read_metadata

    as_number = str(int.from_bytes(PASSWD_HEAD[:8], "little"))
    for data in (PASSWD_HEAD, b"\x10" + b"\x00" * 7 + PASSWD_HEAD, b"\x05" + b"\x00" * 7 + b"\xff\xfeab"):
        with pytest.raises(FailedPrecondition) as error:
            read_metadata(io.BytesIO(data))
        assert "root" not in str(error.value) and as_number not in str(error.value), str(error.value)
        assert "0xff" not in str(error.value)
    info = store.put_bytes("uploads/passwd", PASSWD_HEAD)
    with pytest.raises(grpc.RpcError) as error:
        _test_classifier(servers, store.uri(info.key))
    details = error.value.details()
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION, details
    assert "not a classifier checkpoint" in details and "root" not in details and as_number not in details


# -- the rule itself ---------------------------------------------------------------------------------------
def test_what_the_rule_resolves(tmp_path, store):
    weights, data = tmp_path / "w", tmp_path / "d"
    weights.mkdir()
    env = {"SKINGENBENCH_WEIGHTS_DIR": str(weights), "SKINGENBENCH_READ_ROOTS": f"{data}::relative:/"}
    assert readable.read_roots(env) == (weights.resolve(), data.resolve())  # "/" and relative roots ignored
    # Store objects: a key, or a URI inside the store (a folder store's path, too).
    assert readable.resolve(store, "models/x.json", "f", env).key == "models/x.json"
    assert readable.resolve(store, store.uri("models/x.json"), "f", env).key == "models/x.json"
    assert readable.resolve(store, f"{store.root}/models/x.json", "f", env).key == "models/x.json"
    # Files under a root, resolved.
    assert readable.resolve(store, f"{weights}/a/../b.pth", "f", env).path == weights.resolve() / "b.pth"
    assert readable.resolve(store, f"file://localhost{data}/ham", "f", env).path == data.resolve() / "ham"
    for uri in (
        "/etc/passwd",
        "file:///etc/passwd",
        "file://otherhost/etc/passwd",
        f"{weights}/../x",
        f"{store.root}/../x",
        "s3://another-bucket/x",
        "https://example.org/weights.pth",
        "//etc/passwd",
    ):
        with pytest.raises(InvalidArgument, match="read roots"):
            readable.resolve(store, uri, "f", env)
    for uri in ("../x", "a/../../x", "", "a\x00b"):
        with pytest.raises(InvalidArgument):
            readable.resolve(store, uri, "f", env)
    with pytest.raises(InvalidArgument, match="must name an object in this service's store"):
        readable.store_key(store, f"{weights}/b.pth", "f", env)
    assert readable.local_path(str(data / "ham"), "source_uri", env) == data.resolve() / "ham"
    with pytest.raises(InvalidArgument, match="read roots"):
        readable.local_path("/tmp", "source_uri", env)


def test_the_rule_with_an_s3_store(s3_store, tmp_path):
    """Over moto's S3 server: URIs inside the bucket (and prefix) are store objects, another bucket is
    refused like a path outside the roots, and a local file still needs a read root."""
    weights = tmp_path / "w"
    weights.mkdir()
    env = {"SKINGENBENCH_WEIGHTS_DIR": str(weights)}
    info = s3_store.put_bytes("checkpoints/c.safetensors", b"x")
    assert readable.resolve(s3_store, s3_store.uri(info.key), "f", env).key == info.key
    assert readable.resolve(s3_store, info.key, "f", env).key == info.key
    assert readable.resolve(s3_store, f"file://{weights}/x.pth", "f", env).path == weights.resolve() / "x.pth"
    for uri in ("s3://another-bucket/checkpoints/c.safetensors", "/etc/passwd", f"file://{tmp_path}/x"):
        with pytest.raises(InvalidArgument, match="read roots"):
            readable.resolve(s3_store, uri, "f", env)
