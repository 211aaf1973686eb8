"""Class-conditional StyleGAN2-ADA through the generation service, over a real channel.

Training labels are indices into the model's sorted classes (not item positions); Generate's
``conditioning.label`` picks the class, reaches the backend as that index and labels the images; a label the
model does not know, a missing label and a ``num_classes`` that does not match the classes are refused. DDPM
and unconditional StyleGAN2-ADA train identically whatever integer labels they are handed.
"""

from __future__ import annotations

import io
import json
from typing import Any

import grpc
import numpy as np
import pytest
import torch
from PIL import Image
from skingenbench.services.core.errors import FailedPrecondition, InvalidArgument
from skingenbench.services.core.registry import config_from_dict
from skingenbench.services.generation import models, sampling_job, training_job
from skingenbench.services.generation.core.registry import create_backend
from skingenbench.services.generation.core.stylegan2 import TINY, StyleGAN2ADABackend, StyleGAN2Config
from skingenbench.services.generation.core.training import DataOrder, train
from skingenbench.services.platform.client import open_channel, watch_job
from skingenbench.services.platform.manifest_io import read_manifest
from skingenbench.services.platform.store import LocalFolderStore

from skingenbench.api.v1 import common_pb2, generation_pb2, generation_pb2_grpc
from tests.common.phantom_data import phantom_manifests
from tests.common.service_helpers import running

# 16 px, batch 4, 6 steps (train_kimg 0.024): a full G + D + regulariser round is ~0.1 s on one CPU thread.
CONDITIONAL = {
    "resolution": 16,
    "batch_size": 4,
    "train_kimg": 0.024,
    "checkpoint_every_steps": 3,
    "sample_batch_size": 4,
    "num_classes": 2,
}
CLASSES = ["MEL", "NV"]  # sorted: MEL is class 0, NV class 1
SUCCEEDED = common_pb2.JOB_STATE_SUCCEEDED


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return LocalFolderStore(tmp_path_factory.mktemp("conditional-stylegan2") / "store")


@pytest.fixture(scope="module")
def train_ref(store) -> common_pb2.ManifestRef:
    """A train-only 64x64 phantom manifest (lesion-grouped split, then preprocessed with splits=train)."""
    return phantom_manifests(store, count=80, width=40, height=32, seed=11, split_seed=2)[1]


def request_dict(ref, classes=("NV", "MEL"), **overrides) -> dict[str, Any]:
    """A TrainGeneratorRequest as the job runner persists it (classes deliberately unsorted)."""
    return {
        "generator": "stylegan2_ada",
        "profile": "tiny",
        "config_json": json.dumps({**CONDITIONAL, **overrides}),
        "train": {"uri": ref.uri, "sha256": ref.sha256},
        "classes": list(classes),
        "seed": "4",
    }


def train_request(ref, classes=("NV", "MEL"), **overrides) -> generation_pb2.TrainGeneratorRequest:
    return generation_pb2.TrainGeneratorRequest(
        generator="stylegan2_ada",
        profile="tiny",
        config_json=json.dumps({**CONDITIONAL, **overrides}),
        train=ref,
        classes=list(classes),
        seed=4,
    )


@pytest.fixture(scope="module")
def service(store):
    with running("generation", store) as svc, open_channel(svc.target) as channel:
        yield generation_pb2_grpc.GenerationStub(channel), channel


@pytest.fixture(scope="module")
def trained(service, train_ref) -> common_pb2.Job:
    stub, channel = service
    job = stub.StartTraining(train_request(train_ref), timeout=30)
    return watch_job(channel, job.job_id, timeout_s=240)


def model_uri(job) -> str:
    return {o.name: o.uri for o in job.outputs}["model"]


def decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


# -- training labels ------------------------------------------------------------------------------------------
class RecordingBackend(StyleGAN2ADABackend):
    """The real backend, remembering the labels each real train_step received."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[list[int]] = []

    def train_step(self, images, labels=None, conditions=None):
        self.seen.append(labels.tolist())
        return super().train_step(images, labels, conditions)


def test_training_labels_are_indices_into_the_sorted_classes(store, train_ref):
    plan = training_job.plan_training(store, request_dict(train_ref))
    assert plan.classes == CLASSES
    dataset = training_job.load_training_images(store, plan.items, 16, plan.classes)
    labels = [label for _, label in dataset]
    assert labels == [CLASSES.index(item.label) for item in plan.items]
    assert labels.count(0) == sum(i.label == "MEL" for i in plan.items) >= 2
    assert labels.count(1) == sum(i.label == "NV" for i in plan.items) >= 2

    # What train_step receives, batch by batch, is the class of each picked item.
    backend = RecordingBackend(config_from_dict(StyleGAN2Config, TINY, CONDITIONAL), device="cpu")
    backend.build(plan.seed, total_steps=3)
    train(backend, dataset, seed=plan.seed)
    order = DataOrder(plan.seed, len(dataset), backend.hflip_probability)
    expected = [[CLASSES.index(plan.items[i].label) for i, _ in order.batch(step, 4)] for step in range(3)]
    assert backend.seen == expected
    assert {c for batch in backend.seen for c in batch} <= {0, 1}


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flatten(item, f"{prefix}/{key}").items()}
    if isinstance(value, (list, tuple)):
        return {k: v for i, item in enumerate(value) for k, v in _flatten(item, f"{prefix}/{i}").items()}
    return {prefix: value}


@pytest.mark.parametrize(
    ("generator", "overrides"),
    [
        ("ddpm", {"resolution": 16, "num_train_timesteps": 50, "batch_size": 4, "lr_warmup_steps": 1}),
        ("stylegan2_ada", {**CONDITIONAL, "num_classes": 0}),
    ],
)
def test_unconditional_backends_train_the_same_whatever_the_labels(store, train_ref, generator, overrides):
    """DDPM and unconditional StyleGAN2-ADA ignore labels: class indices (now) and item positions (before the
    fix) give bit-identical training states."""
    plan = training_job.plan_training(
        store, {**request_dict(train_ref), "generator": generator, "config_json": json.dumps(overrides)}
    )
    dataset = training_job.load_training_images(store, plan.items, 16, plan.classes)
    states = []
    for data in (dataset, [(image, index) for index, (image, _) in enumerate(dataset)]):
        backend = create_backend(generator, "tiny", overrides, device="cpu")
        backend.build(plan.seed, total_steps=2)
        train(backend, data, seed=plan.seed)
        states.append(_flatten(backend.state()))
    assert states[0].keys() == states[1].keys()
    for key, value in states[0].items():
        other = states[1][key]
        assert torch.equal(value, other) if isinstance(value, torch.Tensor) else value == other, key


def test_a_num_classes_that_does_not_match_the_classes_is_refused_at_start_training(
    service, store, train_ref
):
    stub, _ = service
    jobs_before = sorted(store.list("jobs/"))
    for classes, num_classes in ((("MEL", "NV"), 3), (("MEL",), 2), ((), 2)):  # () is the default, MEL only
        with pytest.raises(grpc.RpcError) as error:
            stub.StartTraining(train_request(train_ref, classes, num_classes=num_classes), timeout=30)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"num_classes={num_classes}" in error.value.details(), error.value.details()
    assert sorted(store.list("jobs/")) == jobs_before  # refused at the door: no job was recorded
    # num_classes 0 over two classes stays a legitimate request: one unconditional model over their union.
    assert training_job.plan_training(store, request_dict(train_ref, num_classes=0)).classes == CLASSES


# -- the service ----------------------------------------------------------------------------------------------
def test_conditional_stylegan2_trains_through_the_service_and_records_its_class_order(
    service, store, train_ref, trained
):
    stub, _ = service
    assert trained.state == SUCCEEDED, trained.error.message
    result = json.loads(trained.result_json)
    items = read_manifest(store, train_ref.uri).filter(labels=CLASSES)
    assert result["step"] == result["total_steps"] == 6 and result["dataset_size"] == len(items)
    record = models.read_record(store, model_uri(trained))
    assert record.classes == CLASSES and record.config["num_classes"] == 2 and record.complete
    assert record.provenance["config"]["classes"] == CLASSES
    listed = {
        m.model_uri: m
        for m in stub.ListTrainedModels(
            generation_pb2.ListTrainedModelsRequest(generator="stylegan2_ada"), timeout=10
        ).models
    }
    assert list(listed[model_uri(trained)].classes) == CLASSES


def test_generate_draws_the_requested_class_and_labels_it(service, store, trained):
    stub, _ = service
    uri = model_uri(trained)

    def generate(label, **kwargs):
        return stub.Generate(
            generation_pb2.GenerateRequest(
                model=uri, count=3, seed=7, conditioning=generation_pb2.Conditioning(label=label), **kwargs
            ),
            timeout=60,
        )

    mel, nv = generate("MEL"), generate("NV")
    assert [i.label for i in mel.images] == ["MEL"] * 3 and [i.label for i in nv.images] == ["NV"] * 3
    assert json.loads(nv.images[0].conditioning_json) == {"class": 1, "label": "NV"}
    for a, b in zip(mel.images, nv.images, strict=True):  # same seed, other class: another image
        assert a.seed == b.seed and a.png != b.png
    assert [i.png for i in generate("NV").images] == [i.png for i in nv.images]

    # The backend got the class index from the record's sorted classes: MEL -> 0, NV -> 1.
    record = models.read_record(store, uri)
    backend = models.load_sampling_backend(store, record, device="cpu")
    options = sampling_job.resolve_sampler(backend, sampling_job.sampler_options({}))
    for reply, index in ((mel, 0), (nv, 1)):
        expected = backend.sample([7, 8, 9], options, {"class": index})
        assert np.array_equal(np.stack([decode(i.png) for i in reply.images]), expected)

    stored = generate("NV", output=generation_pb2.OUTPUT_MODE_STORE)
    manifest = read_manifest(store, stored.manifest.uri, stored.manifest.sha256)
    assert [item.label for item in manifest.items] == ["NV"] * 3
    assert manifest.items[0].meta["conditioning"] == {"class": 1, "label": "NV"}
    assert [store.get_bytes(item.key) for item in manifest.items] == [i.png for i in nv.images]
    assert manifest.provenance.config["conditioning"] == {"class": 1, "label": "NV"}


@pytest.mark.parametrize(
    ("conditioning", "text"),
    [
        ({"label": "BCC"}, "MEL, NV"),
        ({"label": "MEL+NV"}, "MEL, NV"),
        ({}, "conditioning.label must name the class"),
        ({"label": "MEL", "ita_degrees": 20.0}, "ita_degrees"),
        ({"label": "MEL", "lesion_area_fraction": 0.2}, "lesion_area_fraction"),
    ],
)
def test_a_label_the_model_cannot_draw_is_invalid_argument(service, trained, conditioning, text):
    stub, _ = service
    generate = generation_pb2.GenerateRequest(
        model=model_uri(trained), count=1, conditioning=generation_pb2.Conditioning(**conditioning)
    )
    sample = generation_pb2.SampleRequest(
        model_uri=model_uri(trained), count=1, conditioning=generation_pb2.Conditioning(**conditioning)
    )
    for call, request in ((stub.Generate, generate), (stub.StartSampling, sample)):
        with pytest.raises(grpc.RpcError) as error:
            call(request, timeout=60)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
        assert text in error.value.details(), error.value.details()


def test_transfer_between_conditional_models_needs_the_same_classes(service, store, train_ref, trained):
    """Class embeddings are indexed by the sorted classes: starting a conditional run from a conditional model of
    other classes would hand each class another class's embedding, so StartTraining refuses it before a job."""
    stub, channel = service
    source = model_uri(trained)  # conditional on MEL (0), NV (1)
    jobs_before = sorted(store.list("jobs/"))
    # BCC, MEL has the same number of classes (the weights would load silently, MEL taking NV's embedding);
    # BCC, MEL, NV does not (the backend would fail the job later, on num_classes, without naming classes).
    for classes in (("BCC", "MEL"), ("MEL", "NV", "BCC")):
        request = train_request(train_ref, classes, num_classes=len(classes))
        request.init_checkpoint.uri = source
        with pytest.raises(grpc.RpcError) as error:
            stub.StartTraining(request, timeout=30)
        details = error.value.details()
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, details
        assert "classes MEL, NV" in details and f"classes {', '.join(sorted(classes))}" in details, details
    assert sorted(store.list("jobs/")) == jobs_before  # refused at the door: no job was recorded

    # The same classes (in any spelling order): accepted, and the transfer trains.
    same = train_request(train_ref, ("NV", "MEL"))
    same.init_checkpoint.uri = source
    job = watch_job(channel, stub.StartTraining(same, timeout=30).job_id, timeout_s=240)
    assert job.state == SUCCEEDED, job.error.message
    record = models.read_record(store, model_uri(job))
    assert record.classes == CLASSES and record.provenance["config"]["init"] == {"uri": source}

    # Unconditional on either side: no class order to confuse, but the networks differ in shape (the class
    # embedding and projection exist on one side only), so the transfer is refused before a job too.
    unconditional = watch_job(
        channel,
        stub.StartTraining(train_request(train_ref, ("MEL",), num_classes=0), timeout=30).job_id,
        timeout_s=240,
    )
    assert unconditional.state == SUCCEEDED, unconditional.error.message
    for init, classes, num_classes in (
        (source, ("BCC", "MEL"), 0),
        (model_uri(unconditional), ("BCC", "MEL"), 2),
    ):
        with pytest.raises(FailedPrecondition, match="num_classes"):
            training_job.plan_training(
                store,
                {
                    **request_dict(train_ref, classes, num_classes=num_classes),
                    "init_checkpoint": {"uri": init},
                },
            )
    # And a model of another generator is no initialisation at all.
    dermgan = {
        **request_dict(train_ref),
        "generator": "dermgan",
        "config_json": "",
        "init_checkpoint": {"uri": source},
    }
    with pytest.raises(InvalidArgument, match="is a stylegan2_ada model; this run trains dermgan"):
        training_job.plan_training(store, dermgan)


def test_the_backend_takes_a_class_by_index_and_a_name_only_beside_it():
    config = config_from_dict(StyleGAN2Config, TINY, CONDITIONAL)
    backend = StyleGAN2ADABackend(config, device="cpu")
    backend.build(0, total_steps=0)
    by_index = backend.sample([3], None, {"class": 1})
    assert np.array_equal(backend.sample([3], None, {"class": 1, "label": "NV"}), by_index)
    assert not np.array_equal(backend.sample([3], None, {"class": 0}), by_index)
    with pytest.raises(InvalidArgument, match="by index"):
        backend.sample([3], None, {"label": "NV"})
