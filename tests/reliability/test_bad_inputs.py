"""Bad input across the four services, over real servers: each request gets its status, leaves no job behind,
and every service still answers health SERVING afterwards (DESIGN.md, rule 6: errors are answers).

One module fixture starts all four services on one folder store, with a small world in it: a manifest of a
few images over the three splits, a file that is not JSON, a manifest nested 100,000 levels deep and a
classifier checkpoint. ``CASES`` is the sweep; ``bench/soak.py`` (``make soak``) runs the same cases again
and again, concurrently, beside 64 concurrent Generate calls, and records statuses, latencies and memory.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
from google.protobuf.message import Message
from PIL import Image
from skingenbench.services.core.manifest import Item, Manifest, Provenance
from skingenbench.services.platform.client import health_status, open_channel, watch_job
from skingenbench.services.platform.manifest_io import write_manifest
from skingenbench.services.platform.settings import SERVICES

from skingenbench.api.v1 import (
    classification_pb2,
    classification_pb2_grpc,
    common_pb2,
    common_pb2_grpc,
    evaluation_pb2,
    evaluation_pb2_grpc,
    generation_pb2,
    generation_pb2_grpc,
    preprocessing_pb2,
    preprocessing_pb2_grpc,
)
from tests.common.service_helpers import running

IA = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
DATA_LOSS = grpc.StatusCode.DATA_LOSS
PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED

STUBS = {
    "preprocessing": preprocessing_pb2_grpc.PreprocessingStub,
    "generation": generation_pb2_grpc.GenerationStub,
    "evaluation": evaluation_pb2_grpc.EvaluationStub,
    "classification": classification_pb2_grpc.ClassificationStub,
}
DEEP = 100_000  # nesting levels: far past the interpreter's recursion limit


@dataclass(frozen=True)
class World:
    """What the bad requests point at, in the services' store."""

    good: common_pb2.ManifestRef  # 12 images, 4 per split, labels NV and MEL
    not_json: common_pb2.ManifestRef
    deep: common_pb2.ManifestRef
    checkpoint_uri: str
    checkpoint_sha256: str
    missing: str  # a store URI with nothing behind it

    def wrong_sha(self, ref: common_pb2.ManifestRef) -> common_pb2.ManifestRef:
        return common_pb2.ManifestRef(uri=ref.uri, sha256="0" * 64)


def _png(rng: np.random.Generator, side: int = 32) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def build_world(store) -> World:
    """The objects the sweep refers to (cheap: a dozen tiny PNGs and a checkpoint of one tensor)."""
    import torch
    from skingenbench.services.core.classifiers.checkpoint import classifier_to_bytes
    from skingenbench.services.core.classifiers.models import CLASSIFIERS

    rng = np.random.default_rng(16)
    items = []
    for index in range(12):
        info = store.put_bytes(f"world/images/{index}.png", _png(rng), "image/png")
        items.append(
            Item(
                key=info.key,
                sha256=info.sha256,
                label=("NV", "MEL")[index % 2],
                lesion_id=f"lesion-{index}",
                split=("train", "val", "test")[index % 3],
                source="phantom",
                image_id=f"img_{index}",
            )
        )
    good = write_manifest(
        store, "world/manifest.json", Manifest(items, Provenance(stage="test"), name="world")
    )
    not_json = store.put_bytes("world/not_json.json", b"{this is not json", "application/json")
    deep_doc = json.dumps({"format": "skingenbench.manifest", "version": 1, "items": [], "extra": "X"})
    deep = store.put_bytes("world/deep.json", deep_doc.replace('"X"', "[" * DEEP + "]" * DEEP).encode())
    config = CLASSIFIERS.config("resnet18", "tiny", {})
    checkpoint = store.put_bytes(
        "world/classifier.safetensors",
        classifier_to_bytes({"weight": torch.zeros(2)}, "resnet18", config, {"regime": "real", "seed": 0}),
    )
    return World(
        good=common_pb2.ManifestRef(uri=good.uri, sha256=good.sha256),
        not_json=common_pb2.ManifestRef(uri=store.uri(not_json.key), sha256=not_json.sha256),
        deep=common_pb2.ManifestRef(uri=store.uri(deep.key), sha256=deep.sha256),
        checkpoint_uri=store.uri(checkpoint.key),
        checkpoint_sha256=checkpoint.sha256,
        missing=store.uri("world/nothing/here.json"),
    )


@dataclass(frozen=True)
class BadInput:
    name: str
    stage: str
    method: str  # a method of the stage's stub, or "Jobs.<method>" on the stage's Jobs service
    request: Callable[[World], Message]
    code: grpc.StatusCode
    text: str = ""  # what the details must say (the field, the reason)


def _deep_json(key: str = "size") -> str:
    return json.dumps({key: "X"}).replace('"X"', "[" * DEEP + "]" * DEEP)


P, G, E, C = preprocessing_pb2, generation_pb2, evaluation_pb2, classification_pb2
CASES: list[BadInput] = [
    # -- preprocessing: imports -----------------------------------------------------------------------------
    BadInput("import: unknown source", "preprocessing", "StartImport", lambda w: P.ImportRequest(source="isic2019"), IA, "isic2019"),
    BadInput("import: options not JSON", "preprocessing", "StartImport", lambda w: P.ImportRequest(source="phantom", options_json="{"), IA, "not valid JSON"),
    BadInput("import: options a JSON list", "preprocessing", "StartImport", lambda w: P.ImportRequest(source="phantom", options_json="[1]"), IA, "JSON object"),
    BadInput("import: options nested 100,000 deep", "preprocessing", "StartImport", lambda w: P.ImportRequest(source="phantom", options_json=_deep_json("count")), IA, "options_json"),
    BadInput("import: phantom count 0", "preprocessing", "StartImport", lambda w: P.ImportRequest(source="phantom", options_json='{"count": 0}'), IA, "count"),
    BadInput("import: phantom count 2,000,000", "preprocessing", "StartImport", lambda w: P.ImportRequest(source="phantom", options_json='{"count": 2000000}'), IA, "count"),
    BadInput("import: unknown option", "preprocessing", "StartImport", lambda w: P.ImportRequest(source="phantom", options_json='{"colour": 1}'), IA, "colour"),
    BadInput("import: negative seed", "preprocessing", "StartImport", lambda w: P.ImportRequest(source="phantom", seed=-1), IA, "seed"),
    BadInput("import: s3 source_uri", "preprocessing", "StartImport", lambda w: P.ImportRequest(source="ham10000", source_uri="s3://bucket/ham"), IA, "source_uri"),
    BadInput("import: folder outside the read roots", "preprocessing", "StartImport", lambda w: P.ImportRequest(source="ham10000", source_uri="/no/such/folder"), IA, "read roots"),
    # -- preprocessing: splits --------------------------------------------------------------------------------
    BadInput("split: no inputs", "preprocessing", "StartSplit", lambda w: P.SplitRequest(), IA, "at least one"),
    BadInput("split: fractions over 1", "preprocessing", "StartSplit", lambda w: P.SplitRequest(inputs=[w.good], train_fraction=0.9, val_fraction=0.3), IA, "sum to 1"),
    BadInput("split: negative fraction", "preprocessing", "StartSplit", lambda w: P.SplitRequest(inputs=[w.good], train_fraction=1.2, val_fraction=-0.2), IA, "non-negative"),
    BadInput("split: missing manifest", "preprocessing", "StartSplit", lambda w: P.SplitRequest(inputs=[common_pb2.ManifestRef(uri=w.missing)]), NOT_FOUND, "not found"),
    BadInput("split: wrong manifest sha256", "preprocessing", "StartSplit", lambda w: P.SplitRequest(inputs=[w.wrong_sha(w.good)]), DATA_LOSS, "sha256"),
    BadInput("split: key escaping the store", "preprocessing", "StartSplit", lambda w: P.SplitRequest(inputs=[common_pb2.ManifestRef(uri="../../etc/passwd")]), IA, "inputs[0].uri"),
    # -- preprocessing: runs ----------------------------------------------------------------------------------
    BadInput("preprocess: unknown pipeline", "preprocessing", "StartPreprocess", lambda w: P.PreprocessRequest(input=w.good, pipeline="fancy"), IA, "unknown pipeline"),
    BadInput("preprocess: manifest not JSON", "preprocessing", "StartPreprocess", lambda w: P.PreprocessRequest(input=w.not_json, pipeline="basic"), IA, "not valid JSON"),
    BadInput("preprocess: manifest nested 100,000 deep", "preprocessing", "StartPreprocess", lambda w: P.PreprocessRequest(input=w.deep, pipeline="basic"), IA, "levels deep"),
    BadInput("preprocess: wrong manifest sha256", "preprocessing", "StartPreprocess", lambda w: P.PreprocessRequest(input=w.wrong_sha(w.good), pipeline="basic"), DATA_LOSS, "sha256"),
    BadInput("preprocess: no items in the splits", "preprocessing", "StartPreprocess", lambda w: P.PreprocessRequest(input=w.good, pipeline="basic", splits=["holdout"]), PRECONDITION, "no items"),
    BadInput("preprocess: 100,000 workers", "preprocessing", "StartPreprocess", lambda w: P.PreprocessRequest(input=w.good, pipeline="basic", workers=100_000), IA, "workers"),
    BadInput("preprocess: max_failure_fraction 1.5", "preprocessing", "StartPreprocess", lambda w: P.PreprocessRequest(input=w.good, pipeline="basic", max_failure_fraction=1.5), IA, "max_failure_fraction"),
    BadInput("preprocess: config nested 100,000 deep", "preprocessing", "StartPreprocess", lambda w: P.PreprocessRequest(input=w.good, pipeline="basic", config_json=_deep_json()), IA, "config_json"),
    BadInput("preprocess: config of 2 MiB", "preprocessing", "StartPreprocess", lambda w: P.PreprocessRequest(input=w.good, pipeline="basic", config_json=json.dumps({"x": "y" * (2 << 20)})), IA, "bytes"),
    BadInput("preprocess: NUL in the input uri", "preprocessing", "StartPreprocess", lambda w: P.PreprocessRequest(input=common_pb2.ManifestRef(uri="world/\x00manifest.json"), pipeline="basic"), IA, "input.uri"),
    BadInput("preprocess: no input", "preprocessing", "StartPreprocess", lambda w: P.PreprocessRequest(pipeline="basic"), IA, "required"),
    BadInput("quality report: '..' in the input uri", "preprocessing", "StartQualityReport", lambda w: P.QualityReportRequest(input=common_pb2.ManifestRef(uri="world/../x.json")), IA, "input.uri"),
    BadInput("quality report: negative limit", "preprocessing", "StartQualityReport", lambda w: P.QualityReportRequest(input=w.good, limit=-1), IA, "limit"),
    BadInput("pipeline: unknown name", "preprocessing", "DescribePipeline", lambda w: common_pb2.DescribeRequest(name="fancy"), NOT_FOUND, "fancy"),
    # -- jobs, on every service ----------------------------------------------------------------------------
    BadInput("jobs: NUL in a job id", "preprocessing", "Jobs.GetJob", lambda w: common_pb2.GetJobRequest(job_id="abc\x00def"), IA, "job_id"),
    BadInput("jobs: unknown job id", "generation", "Jobs.GetJob", lambda w: common_pb2.GetJobRequest(job_id="0" * 24), NOT_FOUND, "no job"),
    BadInput("jobs: path as a job id", "evaluation", "Jobs.CancelJob", lambda w: common_pb2.CancelJobRequest(job_id="../../etc/passwd"), IA, "job_id"),
    BadInput("jobs: 10,000-character job id", "classification", "Jobs.GetJob", lambda w: common_pb2.GetJobRequest(job_id="a" * 10_000), IA, "job_id"),
    # -- generation -------------------------------------------------------------------------------------------
    BadInput("train generator: unknown generator", "generation", "StartTraining", lambda w: G.TrainGeneratorRequest(generator="stylegan9", train=w.good), NOT_FOUND, "stylegan9"),
    BadInput("train generator: no generator", "generation", "StartTraining", lambda w: G.TrainGeneratorRequest(train=w.good), IA, "generator"),
    BadInput("train generator: config nested 100,000 deep", "generation", "StartTraining", lambda w: G.TrainGeneratorRequest(generator="ddpm", profile="tiny", config_json=_deep_json("resolution"), train=w.good), IA, "config_json"),
    BadInput("train generator: unknown config key", "generation", "StartTraining", lambda w: G.TrainGeneratorRequest(generator="ddpm", profile="tiny", config_json='{"no_such_key": 1}', train=w.good), IA, "no_such_key"),
    BadInput("train generator: test items in the training manifest", "generation", "StartTraining", lambda w: G.TrainGeneratorRequest(generator="ddpm", profile="tiny", train=w.good), PRECONDITION, "train"),
    BadInput("train generator: '..' in the train uri", "generation", "StartTraining", lambda w: G.TrainGeneratorRequest(generator="ddpm", profile="tiny", train=common_pb2.ManifestRef(uri="world/../x.json")), IA, "train.uri"),
    BadInput("generate: '..' in a model key", "generation", "Generate", lambda w: G.GenerateRequest(model="models/../x", count=1), IA, "model 'models/../x'"),
    BadInput("generate: count 0", "generation", "Generate", lambda w: G.GenerateRequest(model="ddpm", count=0), IA, "count"),
    BadInput("generate: seed past int64 for the last image", "generation", "Generate", lambda w: G.GenerateRequest(model="ddpm", count=2, seed=2**63 - 1), IA, "2**63"),
    BadInput("generate: negative seed", "generation", "Generate", lambda w: G.GenerateRequest(model="ddpm", count=1, seed=-1), IA, "seed"),
    BadInput("generate: 65 inline images", "generation", "Generate", lambda w: G.GenerateRequest(model="ddpm", count=65), EXHAUSTED, "OUTPUT_MODE_STORE"),
    BadInput("generate: unknown model", "generation", "Generate", lambda w: G.GenerateRequest(model="stylegan9", count=1), NOT_FOUND, "stylegan9"),
    BadInput("generate: eta out of range", "generation", "Generate", lambda w: G.GenerateRequest(model="ddpm", count=1, sampler=G.SamplerOptions(eta=2.0)), IA, "eta"),
    BadInput("sample: seed past int64 for the last image", "generation", "StartSampling", lambda w: G.SampleRequest(model_uri="ddpm", count=10, seed=2**63 - 5), IA, "seed"),
    BadInput("sample: count 0", "generation", "StartSampling", lambda w: G.SampleRequest(model_uri="ddpm", count=0), IA, "count"),
    BadInput("describe model: unknown", "generation", "DescribeModel", lambda w: common_pb2.DescribeRequest(name="stylegan9"), NOT_FOUND, "stylegan9"),
    # -- evaluation -------------------------------------------------------------------------------------------
    BadInput("evaluate: options nested 100,000 deep", "evaluation", "StartEvaluation", lambda w: E.EvaluateRequest(real=w.good, options_json=_deep_json("prc_k")), IA, "options_json"),
    BadInput("evaluate: options not JSON", "evaluation", "StartEvaluation", lambda w: E.EvaluateRequest(real=w.good, options_json="{nope"), IA, "options_json"),
    BadInput("evaluate: unknown feature extractor", "evaluation", "StartEvaluation", lambda w: E.EvaluateRequest(real=w.good, feature_extractor="alexnet"), IA, "alexnet"),
    BadInput("evaluate: /etc/passwd as extractor weights", "evaluation", "StartEvaluation", lambda w: E.EvaluateRequest(real=w.good, extractor_weights=common_pb2.ObjectRef(uri="/etc/passwd")), IA, ""),
    BadInput("evaluate: unknown metric", "evaluation", "StartEvaluation", lambda w: E.EvaluateRequest(real=w.good, metrics=["psnr"], synthetic=[E.SyntheticSet(name="s", manifest=w.good)]), IA, "psnr"),
    BadInput("describe: unknown entry", "evaluation", "Describe", lambda w: common_pb2.DescribeRequest(name="alexnet"), NOT_FOUND, "alexnet"),
    # -- classification ---------------------------------------------------------------------------------------
    BadInput("test classifier: wrong data-manifest sha256", "classification", "StartTest", lambda w: C.TestClassifierRequest(checkpoint_uri=w.checkpoint_uri, checkpoint_sha256=w.checkpoint_sha256, data=w.wrong_sha(w.good)), DATA_LOSS, "sha256"),
    BadInput("test classifier: missing checkpoint", "classification", "StartTest", lambda w: C.TestClassifierRequest(checkpoint_uri=w.missing, data=w.good), NOT_FOUND, ""),
    BadInput("test classifier: checkpoint_sha256 not hex", "classification", "StartTest", lambda w: C.TestClassifierRequest(checkpoint_uri=w.checkpoint_uri, checkpoint_sha256="xyz", data=w.good), IA, "checkpoint_sha256"),
    BadInput("test classifier: wrong checkpoint sha256", "classification", "StartTest", lambda w: C.TestClassifierRequest(checkpoint_uri=w.checkpoint_uri, checkpoint_sha256="0" * 64, data=w.good), DATA_LOSS, "checkpoint"),
    BadInput("test classifier: manifest not JSON", "classification", "StartTest", lambda w: C.TestClassifierRequest(checkpoint_uri=w.checkpoint_uri, data=w.not_json), IA, "JSON"),
    BadInput("train classifier: unknown classifier", "classification", "StartTraining", lambda w: C.TrainClassifierRequest(classifier="alexnet", data=w.good), IA, "alexnet"),
    BadInput("train classifier: config nested 100,000 deep", "classification", "StartTraining", lambda w: C.TrainClassifierRequest(classifier="resnet18", profile="tiny", config_json=_deep_json("epochs"), data=w.good), IA, "config_json"),
    BadInput("train classifier: unknown regime", "classification", "StartTraining", lambda w: C.TrainClassifierRequest(classifier="resnet18", profile="tiny", regime="real+magic", data=w.good), IA, "real+magic"),
    BadInput("describe classifier: unknown", "classification", "DescribeClassifier", lambda w: common_pb2.DescribeRequest(name="alexnet"), NOT_FOUND, "alexnet"),
]  # fmt: skip


@dataclass
class Stack:
    targets: dict[str, str]
    channels: dict[str, grpc.Channel]
    store: object
    world: World

    def call(self, case: BadInput, timeout_s: float = 30.0):
        channel = self.channels[case.stage]
        if case.method.startswith("Jobs."):
            stub, method = common_pb2_grpc.JobsStub(channel), case.method.split(".", 1)[1]
        else:
            stub, method = STUBS[case.stage](channel), case.method
        return getattr(stub, method)(case.request(self.world), timeout=timeout_s)

    def health(self) -> dict[str, str]:
        return {stage: health_status(target, SERVICES[stage][0]) for stage, target in self.targets.items()}

    def jobs(self, stage: str) -> list[common_pb2.Job]:
        stub = common_pb2_grpc.JobsStub(self.channels[stage])
        return list(stub.ListJobs(common_pb2.ListJobsRequest(), timeout=10).jobs)


@contextlib.contextmanager
def four_services(store):
    """All four services on one store, each with a channel."""
    with contextlib.ExitStack() as stack:
        services = {stage: stack.enter_context(running(stage, store)) for stage in SERVICES}
        channels = {stage: stack.enter_context(open_channel(svc.target)) for stage, svc in services.items()}
        yield {stage: svc.target for stage, svc in services.items()}, channels


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from skingenbench.services.platform.store import LocalFolderStore

    store = LocalFolderStore(tmp_path_factory.mktemp("reliability") / "store")
    world = build_world(store)
    with four_services(store) as (targets, channels):
        yield Stack(targets, channels, store, world)


def test_the_sweep_is_broad():
    assert len({case.name for case in CASES}) == len(CASES) >= 40
    assert {case.stage for case in CASES} == set(SERVICES)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_bad_input_gets_its_status_and_every_service_keeps_serving(stack, case):
    before = sorted(stack.store.list("world/"))
    jobs_before = stack.jobs(case.stage)
    with pytest.raises(grpc.RpcError) as error:
        stack.call(case)
    code, details = error.value.code(), error.value.details() or ""
    assert code == case.code, f"{case.name}: {code.name} {details}"
    assert case.text in details, f"{case.name}: {details!r} does not say {case.text!r}"
    assert "internal error" not in details
    assert stack.jobs(case.stage) == jobs_before  # refused before any job existed
    assert stack.health() == {stage: "SERVING" for stage in SERVICES}
    assert sorted(stack.store.list("world/")) == before  # nothing stored was touched


def test_a_training_item_that_cannot_be_decoded_is_named_in_the_failed_job(stack):
    store = stack.store
    rng = np.random.default_rng(3)
    items = []
    for index in range(4):
        data = _png(rng, 16) if index != 2 else b"definitely not an image"
        info = store.put_bytes(f"undecodable/{index}.png", data)
        items.append(Item(info.key, info.sha256, "MEL", f"l{index}", "train", image_id=f"mel_{index}"))
    ref = write_manifest(store, "undecodable/manifest.json", Manifest(items, Provenance(stage="test")))
    stub = generation_pb2_grpc.GenerationStub(stack.channels["generation"])
    job = stub.StartTraining(
        G.TrainGeneratorRequest(
            generator="ddpm",
            profile="tiny",
            config_json=json.dumps({"resolution": 16, "train_steps": 2, "batch_size": 2}),
            train=common_pb2.ManifestRef(uri=ref.uri, sha256=ref.sha256),
        ),
        timeout=30,
    )
    final = watch_job(stack.channels["generation"], job.job_id, timeout_s=120)
    assert final.state == common_pb2.JOB_STATE_FAILED
    assert "undecodable/2.png" in final.error.message and "mel_2" in final.error.message, final.error.message
    assert stack.health() == {stage: "SERVING" for stage in SERVICES}


def test_the_status_mapping_answers_recursion_with_invalid_argument():
    # A backstop for nesting that reaches a recursive parser the JSON bounds do not guard.
    from skingenbench.services.platform.status import error_detail_dict, status_for_exception

    assert status_for_exception(RecursionError("maximum recursion depth exceeded")) == IA
    assert error_detail_dict(RecursionError())["code"] == "INVALID_ARGUMENT"


def test_json_depth_is_measured_without_recursion_and_ignores_brackets_in_strings():
    from skingenbench.services.core.errors import InvalidArgument
    from skingenbench.services.core.json_limits import MAX_JSON_DEPTH, check_json_bounds, json_depth

    assert json_depth("1") == 0 and json_depth('{"a": [1, {"b": []}]}') == 4
    assert json_depth('{"a": "[[[[[\\"[[[["}') == 1  # brackets inside strings, an escaped quote among them
    assert json_depth("[" * 1_000_000) == 1_000_000
    nested = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    check_json_bounds(nested, "x", 1 << 20)  # exactly at the limit: accepted
    with pytest.raises(InvalidArgument, match="levels deep"):
        check_json_bounds("[" + nested + "]", "x", 1 << 20)
    with pytest.raises(InvalidArgument, match="bytes"):
        check_json_bounds("1" * 11, "x", 10)
