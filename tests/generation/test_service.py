"""The generation service over a real channel: tiny DDPM training on phantom training melanomas,
restart mid-training, deterministic sampling, Generate from another process, the bounded queue and
deadlines, and every refusal with its status."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import pytest
import torch
from PIL import Image
from skingenbench.services.generation import models
from skingenbench.services.generation.client import GenerationClient
from skingenbench.services.platform.client import iter_events, open_channel, watch_job
from skingenbench.services.platform.jobs import JobRecord
from skingenbench.services.platform.manifest_io import read_manifest
from skingenbench.services.platform.settings import ServiceSettings
from skingenbench.services.platform.store import LocalFolderStore
from skingenbench.services.stages import start_service

from skingenbench.api.v1 import common_pb2, generation_pb2, generation_pb2_grpc
from tests.common.phantom_data import phantom_manifests
from tests.common.service_helpers import running

REPO = Path(__file__).resolve().parents[2]
# Seconds on one CPU thread: 16 px, two UNet levels, 50 diffusion steps, 30 optimiser steps.
SMALL = {
    "resolution": 16,
    "num_train_timesteps": 50,
    "batch_size": 8,
    "learning_rate": 2e-3,
    "lr_schedule": "constant",
    "lr_warmup_steps": 2,
    "ema_max_decay": 0.9,
    "train_steps": 30,
    "checkpoint_every_steps": 5,
    "default_ddim_steps": 10,
    "sample_batch_size": 8,
}
DDIM10 = generation_pb2.SamplerOptions(sampler="ddim", steps=10)
SUCCEEDED = common_pb2.JOB_STATE_SUCCEEDED


def build_data(store) -> tuple[common_pb2.ManifestRef, common_pb2.ManifestRef]:
    """(the lesion-grouped split manifest with all splits, its train-only 64x64 preprocessed version)."""
    return phantom_manifests(store, count=160, seed=11, split_seed=2)


def train_request(ref, name="", **overrides) -> generation_pb2.TrainGeneratorRequest:
    return generation_pb2.TrainGeneratorRequest(
        generator="ddpm",
        profile="tiny",
        config_json=json.dumps({**SMALL, **overrides}, sort_keys=True),
        train=ref,
        seed=3,
        name=name,
    )


def outputs(job) -> dict[str, common_pb2.NamedRef]:
    return {o.name: o for o in job.outputs}


def follow(channel, job, timeout=120) -> tuple[common_pb2.Job, list[common_pb2.ProgressEvent]]:
    events: list[common_pb2.ProgressEvent] = []
    final = watch_job(channel, job.job_id, events.append, timeout_s=timeout)
    return final, events


def losses(events) -> list[float]:
    running_state = common_pb2.JOB_STATE_RUNNING
    return [e.metrics["loss"] for e in events if "loss" in e.metrics and e.state == running_state]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return LocalFolderStore(tmp_path_factory.mktemp("generation") / "store")


@pytest.fixture(scope="module")
def data(store):
    return build_data(store)


@pytest.fixture(scope="module")
def service(store):
    # One Generate at a time and no queue, so the busy test is exact.
    with (
        running("generation", store, extra={"concurrency": "1", "queue": "0"}) as svc,
        open_channel(svc.target) as channel,
    ):
        yield svc, generation_pb2_grpc.GenerationStub(channel), channel


@pytest.fixture(scope="module")
def trained(service, data):
    svc, stub, channel = service
    events: list[common_pb2.ProgressEvent] = []
    with GenerationClient(svc.target, timeout_s=30) as client:  # the Python client other tools use
        final = client.train(data[1], profile="tiny", config=SMALL, seed=3, on_event=events.append)
    return final, events


def test_tiny_ddpm_trains_on_training_melanomas_through_the_service(service, store, data, trained):
    svc, stub, channel = service
    job, events = trained
    curve = losses(events)
    assert len(curve) == 30
    assert np.mean(curve[-8:]) < 0.7 * np.mean(curve[:8]), curve
    assert all(e.metrics["images_per_second"] > 0 for e in events if "loss" in e.metrics)
    result = json.loads(job.result_json)
    assert result["step"] == result["total_steps"] == 30 and result["resumed_from"] is None

    train_items = read_manifest(store, data[1].uri).filter(labels=["MEL"])
    assert train_items and all(item.split == "train" for item in train_items)
    listed = stub.ListTrainedModels(
        generation_pb2.ListTrainedModelsRequest(generator="ddpm"), timeout=10
    ).models
    model = {m.model_uri: m for m in listed}[outputs(job)["model"].uri]
    assert model.complete and model.step == 30 and list(model.classes) == ["MEL"] and model.profile == "tiny"
    assert model.trained_on.uri == data[1].uri and model.trained_on.item_count == len(train_items)
    assert model.checkpoint_uri == outputs(job)["checkpoint"].uri
    provenance = json.loads(model.provenance_json)
    assert provenance["parents"] == [{"uri": data[1].uri, "sha256": data[1].sha256}]
    assert provenance["seed"] == 3 and provenance["config"]["config"]["resolution"] == 16
    # Checkpoints: safetensors + descriptor, only the newest two kept; the config beside them.
    prefix = store.key_from_uri(model.model_uri).rsplit("/", 1)[0]
    assert sorted(store.list(f"{prefix}/checkpoints/")) == [
        f"{prefix}/checkpoints/step-{s:08d}.{ext}" for s in (25, 30) for ext in ("json", "safetensors")
    ]
    assert json.loads(store.get_bytes(f"{prefix}/config.json"))["backend"] == "ddpm"

    again = stub.StartTraining(train_request(data[1]), timeout=10)
    assert again.reused and again.job_id == job.job_id


def test_restart_mid_training_resumes_from_the_last_checkpoint(tmp_path):
    store = LocalFolderStore(tmp_path / "store")
    _, train_ref = build_data(store)
    settings = ServiceSettings(stage="generation", port=0, shutdown_grace_s=20)
    first = start_service("generation", settings, store)
    channel = open_channel(first.target)
    job = generation_pb2_grpc.GenerationStub(channel).StartTraining(
        train_request(train_ref, name="restarted", train_steps=40), timeout=30
    )
    for event in iter_events(channel, job.job_id):
        assert event.state != SUCCEEDED, "training ended before the restart"
        if event.step >= 12:  # two checkpoints (5, 10) are in the store
            break
    channel.close()
    first.stop(
        grace_s=20
    )  # graceful: the job checkpoints where it is and is recorded INTERRUPTED (resumes on start)

    stored_job = JobRecord.from_json(store.get_bytes(f"jobs/skingenbench.v1.Generation/{job.job_id}.json"))
    assert stored_job.state == "INTERRUPTED"
    record = models.list_records(store)[0]
    assert not record.complete and 12 <= record.step < 40 and record.checkpoint["step"] == record.step

    with running("generation", store) as second, open_channel(second.target) as channel:
        final, events = follow(channel, job)
        assert final.state == SUCCEEDED, final.error.message
        result = json.loads(final.result_json)
        assert result["resumed_from"] == record.step and result["step"] == result["total_steps"] == 40
        assert min(e.step for e in events if "loss" in e.metrics) == record.step + 1
        # The same request run without interruption ends with bit-identical weights, EMA and optimiser
        # state: the resumed run continued with the saved step count, optimiser state and noise stream.
        straight, _ = follow(
            channel,
            generation_pb2_grpc.GenerationStub(channel).StartTraining(
                train_request(train_ref, name="straight", train_steps=40), timeout=30
            ),
        )
        assert straight.state == SUCCEEDED
    resumed_record = models.read_record(store, outputs(final)["model"].uri)
    assert resumed_record.training["resumed_from"] == [record.step]
    resumed = models.load_checkpoint(store, resumed_record.checkpoint)["backend"]
    straight_record = models.read_record(store, outputs(straight)["model"].uri)
    reference = models.load_checkpoint(store, straight_record.checkpoint)["backend"]
    assert resumed["step"] == reference["step"] == 40
    for name, tensor in reference["unet"].items():
        assert torch.equal(resumed["unet"][name], tensor), name
    for a, b in zip(resumed["ema"]["shadow_params"], reference["ema"]["shadow_params"], strict=True):
        assert torch.equal(a, b)
    for index, moments in reference["optimizer"]["state"].items():
        assert torch.equal(resumed["optimizer"]["state"][index]["exp_avg"], moments["exp_avg"])


def test_sampling_is_deterministic_and_writes_a_manifest_with_provenance(service, store, trained):
    svc, stub, channel = service
    model_uri = outputs(trained[0])["model"].uri
    with GenerationClient(svc.target, timeout_s=30) as client:
        job = client.sample_to_store(model_uri, 6, 100, sampler="ddim", steps=10)
        assert [m.model_uri for m in client.list_models() if m.complete][-1] == model_uri  # the oldest
    manifest = read_manifest(store, outputs(job)["manifest"].uri, outputs(job)["manifest"].sha256)
    assert [item.meta["seed"] for item in manifest.items] == list(range(100, 106))
    assert {(i.label, i.split, i.source) for i in manifest.items} == {("MEL", "train", "ddpm")}
    assert len({item.lesion_id for item in manifest.items}) == 6
    assert manifest.items[0].meta["sampler"] == "ddim" and manifest.items[0].meta["steps"] == 10
    assert manifest.items[0].meta["checkpoint_uri"] == outputs(trained[0])["checkpoint"].uri
    assert manifest.provenance.parents[0].uri == model_uri and manifest.provenance.seed == 100

    def generate(seed, model=model_uri, **kwargs):
        request = generation_pb2.GenerateRequest(model=model, count=6, seed=seed, sampler=DDIM10, **kwargs)
        return stub.Generate(request, timeout=60)

    inline = generate(100)
    assert [image.png for image in inline.images] == [store.get_bytes(item.key) for item in manifest.items]
    assert [image.seed for image in inline.images] == list(range(100, 106))
    assert [image.png for image in generate(100, model="ddpm").images] == [i.png for i in inline.images]
    other = generate(200)
    assert all(a.png != b.png for a, b in zip(other.images, inline.images, strict=True))
    stored = generate(100, output=generation_pb2.OUTPUT_MODE_STORE)
    assert stored.manifest.uri == outputs(job)["manifest"].uri and not stored.images  # same content address
    full_chain = generation_pb2.SamplerOptions(sampler="ddpm")
    ddpm = stub.Generate(
        generation_pb2.GenerateRequest(model=model_uri, count=2, seed=1, sampler=full_chain), timeout=60
    )
    assert Image.open(io.BytesIO(ddpm.images[0].png)).size == (16, 16)


def test_generate_from_another_process_writes_deterministic_files(service, trained, tmp_path):
    svc, stub, channel = service
    out = tmp_path / "synthetic"
    command = [
        sys.executable,
        "-m",
        "skingenbench.cli.generate",
        "--model",
        "ddpm",
        "--count",
        "5",
        "--seed",
        "7",
        "--out",
        str(out),
        "--sampler",
        "ddim",
        "--steps",
        "10",
        "--target",
        svc.target,
    ]
    done = subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert done.returncode == 0, done.stderr
    assert "5/5" in done.stderr  # the progress bar reached the end
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files] == [f"seed-{s:06d}.png" for s in range(7, 12)]
    with GenerationClient(svc.target) as client:
        expected = client.generate("ddpm", 5, 7, sampler="ddim", steps=10, as_="png")
        arrays = client.generate("ddpm", 2, 7, sampler="ddim", steps=10, as_="numpy")
    assert [(out / f"seed-{s:06d}.png").read_bytes() for s in range(7, 12)] == expected
    assert arrays[0].shape == (16, 16, 3) and arrays[0].dtype == np.uint8
    record = json.loads((out / "generation.json").read_text())
    assert record["model_uri"] == outputs(trained[0])["model"].uri
    assert record["images"][0]["sha256"] == hashlib.sha256(expected[0]).hexdigest()


def test_a_busy_generator_answers_resource_exhausted_and_deadlines_stop_the_work(service, trained):
    svc, stub, channel = service
    model_uri = outputs(trained[0])["model"].uri
    small = generation_pb2.GenerateRequest(
        model=model_uri, count=1, sampler=generation_pb2.SamplerOptions(sampler="ddim", steps=2)
    )
    # 48 images through the full 50-step chain in batches of 4: several seconds of work.
    slow = stub.Generate.future(
        generation_pb2.GenerateRequest(
            model=model_uri, count=48, sampler=generation_pb2.SamplerOptions(sampler="ddpm", batch_size=4)
        ),
        timeout=0.8,
    )
    time.sleep(0.3)
    with pytest.raises(grpc.RpcError) as busy:
        stub.Generate(small, timeout=10)
    assert busy.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "busy" in busy.value.details()
    with pytest.raises(grpc.RpcError) as late:
        slow.result()
    assert late.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    started = time.monotonic()
    while True:  # the slot frees within about a batch, not after the whole chain of 12 batches
        try:
            assert len(stub.Generate(small, timeout=10).images) == 1
            break
        except grpc.RpcError as exc:
            assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert time.monotonic() - started < 3.0, "the expired call kept the generator busy"
            time.sleep(0.05)


@pytest.mark.parametrize(
    ("kwargs", "code", "text"),
    [
        ({"count": 0}, grpc.StatusCode.INVALID_ARGUMENT, "count"),
        ({"count": -3}, grpc.StatusCode.INVALID_ARGUMENT, "count"),
        ({"count": 65}, grpc.StatusCode.RESOURCE_EXHAUSTED, "OUTPUT_MODE_STORE"),
        ({"model": "stylegan9"}, grpc.StatusCode.NOT_FOUND, "stylegan9"),
        ({"model": "models/ddpm/0000000000000000"}, grpc.StatusCode.NOT_FOUND, "no trained model"),
        ({"model": ""}, grpc.StatusCode.INVALID_ARGUMENT, "model"),
        ({"seed": -1}, grpc.StatusCode.INVALID_ARGUMENT, "seed"),
        ({"sampler": {"steps": -5}}, grpc.StatusCode.INVALID_ARGUMENT, "steps"),
        ({"sampler": {"sampler": "euler"}}, grpc.StatusCode.INVALID_ARGUMENT, "euler"),
        ({"sampler": {"steps": 51}}, grpc.StatusCode.INVALID_ARGUMENT, "num_train_timesteps"),
        ({"sampler": {"truncation_psi": 0.7}}, grpc.StatusCode.INVALID_ARGUMENT, "truncation_psi"),
        ({"sampler": {"sampler": "ddpm", "eta": 0.5}}, grpc.StatusCode.INVALID_ARGUMENT, "eta"),
        ({"conditioning": {"label": "NV"}}, grpc.StatusCode.INVALID_ARGUMENT, "unconditional"),
        ({"conditioning": {"ita_degrees": 30.0}}, grpc.StatusCode.INVALID_ARGUMENT, "ita_degrees"),
    ],
)
def test_bad_generate_requests_are_refused_with_their_status(service, trained, kwargs, code, text):
    svc, stub, channel = service
    arguments = {"model": "ddpm", "count": 2, **kwargs}
    arguments["sampler"] = generation_pb2.SamplerOptions(**kwargs.get("sampler", {}))
    arguments["conditioning"] = generation_pb2.Conditioning(**kwargs.get("conditioning", {}))
    with pytest.raises(grpc.RpcError) as error:
        stub.Generate(generation_pb2.GenerateRequest(**arguments), timeout=30)
    assert error.value.code() == code and text in error.value.details(), error.value.details()


def test_training_requests_are_refused_before_a_job_starts(service, store, data):
    svc, stub, channel = service
    split_ref, train_ref = data
    jobs_before = sorted(store.list("jobs/"))

    def refused(request):
        with pytest.raises(grpc.RpcError) as error:
            stub.StartTraining(request, timeout=30)
        return error.value

    leak = refused(train_request(split_ref))  # the split manifest holds val and test melanomas
    assert leak.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "outside the train split" in leak.details() and "test" in leak.details()
    assert (
        refused(generation_pb2.TrainGeneratorRequest(generator="gan9", train=train_ref)).code()
        == grpc.StatusCode.NOT_FOUND
    )
    assert refused(train_request(train_ref, train_steps=-1)).code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused(train_request(train_ref, no_such_key=1)).code() == grpc.StatusCode.INVALID_ARGUMENT
    bad_class = train_request(train_ref)
    bad_class.classes.append("XYZ")
    assert refused(bad_class).code() == grpc.StatusCode.INVALID_ARGUMENT
    missing = train_request(common_pb2.ManifestRef(uri=store.uri("nowhere/manifest.json")))
    assert refused(missing).code() == grpc.StatusCode.NOT_FOUND
    negative_seed = train_request(train_ref)
    negative_seed.seed = -1
    assert refused(negative_seed).code() == grpc.StatusCode.INVALID_ARGUMENT
    no_folder = train_request(train_ref)
    no_folder.init_checkpoint.uri = "/no/such/diffusers/folder"
    outside = refused(no_folder)  # outside the store and the read roots: the read rule's one answer
    assert outside.code() == grpc.StatusCode.INVALID_ARGUMENT and "read roots" in outside.details()
    for count in (0, -1):
        with pytest.raises(grpc.RpcError) as error:
            stub.StartSampling(generation_pb2.SampleRequest(model_uri="ddpm", count=count), timeout=10)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(store.list("jobs/")) == jobs_before  # refused at the door: no job was recorded


def test_transfer_from_a_trained_model_starts_from_its_weights(service, data, trained):
    svc, stub, channel = service
    source = outputs(trained[0])["model"].uri
    request = train_request(data[1], name="transfer", train_steps=8)
    request.init_checkpoint.uri = source
    job, events = follow(channel, stub.StartTraining(request, timeout=30))
    assert job.state == SUCCEEDED, job.error.message
    scratch_start = np.mean(losses(trained[1])[:6])
    # Six steps teach a fresh network little: a low loss at once means it started from the weights.
    assert np.mean(losses(events)[:6]) < 0.7 * scratch_start
    record = {
        m.model_uri: m
        for m in stub.ListTrainedModels(generation_pb2.ListTrainedModelsRequest(), timeout=10).models
    }[outputs(job)["model"].uri]
    assert json.loads(record.provenance_json)["config"]["init"] == {"uri": source}
    # A generator name resolves when the job starts: the job is recorded for the newest model, this one.
    by_name = stub.StartSampling(
        generation_pb2.SampleRequest(model_uri="ddpm", count=2, sampler=DDIM10), timeout=30
    )
    assert json.loads(by_name.request_json)["model_uri"] == outputs(job)["model"].uri
    sampled, _ = follow(channel, by_name)
    assert (
        sampled.state == SUCCEEDED
        and json.loads(sampled.result_json)["model_uri"] == outputs(job)["model"].uri
    )


def test_a_ddpm_init_of_another_network_shape_is_refused_at_start_training(service, store, data, trained):
    """Weights of a UNet with other layers cannot initialise this one: StartTraining refuses the request with
    FAILED_PRECONDITION, naming the field, before a job exists (not a job that fails when it loads them)."""
    svc, stub, channel = service
    jobs_before = sorted(store.list("jobs/"))
    request = train_request(data[1], name="misfit", train_steps=4, layers_per_block=2)  # trained: 1 (tiny)
    request.init_checkpoint.uri = outputs(trained[0])["model"].uri
    with pytest.raises(grpc.RpcError) as error:
        stub.StartTraining(request, timeout=30)
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION, error.value.details()
    assert "layers_per_block" in error.value.details(), error.value.details()
    assert sorted(store.list("jobs/")) == jobs_before


def test_registry_and_service_info(service):
    svc, stub, channel = service
    entries = stub.ListModels(common_pb2.ListRegistryRequest(), timeout=10).entries
    names = [e.name for e in entries]
    assert "ddpm" in names and names == sorted(names)
    ddpm = stub.DescribeModel(common_pb2.DescribeRequest(name="ddpm"), timeout=10)
    assert {p.profile for p in ddpm.profiles} == {"tiny", "paper"}
    assert ddpm.capabilities["samplers"] == "ddpm,ddim,dpm_solver"
    paper = json.loads({p.profile: p for p in ddpm.profiles}["paper"].config_json)
    assert (paper["resolution"], paper["batch_size"], paper["learning_rate"], paper["lr_warmup_steps"]) == (
        256,
        16,
        1e-5,
        500,
    )
    with pytest.raises(grpc.RpcError) as error:
        stub.DescribeModel(common_pb2.DescribeRequest(name="nope"), timeout=10)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    info = stub.GetServiceInfo(common_pb2.GetServiceInfoRequest(), timeout=10)
    assert info.service == "skingenbench.v1.Generation" and list(info.registry) == names


def test_dermgan_trains_on_masks_and_skin_tone_and_generates_what_is_asked(service, store, data):
    """The conditional backend through the same service: semantic maps come from the preprocessing
    service's lesion masks and ITA; Generate's conditioning fields reach the generator."""
    svc, stub, channel = service
    job = stub.StartTraining(
        generation_pb2.TrainGeneratorRequest(
            generator="dermgan",
            profile="tiny",
            train=data[1],
            classes=["MEL"],
            seed=5,
            config_json=json.dumps(
                {"train_steps": 6, "train_epochs": 0, "batch_size": 4, "checkpoint_every_steps": 3}
            ),
        )
    )
    final = watch_job(channel, job.job_id, timeout_s=240)
    assert final.state == common_pb2.JOB_STATE_SUCCEEDED, final.error.message
    model_uri = {o.name: o.uri for o in final.outputs}["model"]
    conditioning = generation_pb2.Conditioning(
        label="MEL", lesion_area_fraction=0.2, center_x=0.5, center_y=0.5, ita_degrees=20.0
    )
    reply = stub.Generate(
        generation_pb2.GenerateRequest(model=model_uri, count=2, seed=9, conditioning=conditioning),
        timeout=120,
    )
    assert len(reply.images) == 2
    first = np.asarray(Image.open(io.BytesIO(reply.images[0].png)))
    assert first.shape[:2] == (32, 32)
    assert json.loads(reply.images[0].conditioning_json)  # the request that made the image is recorded
    again = stub.Generate(
        generation_pb2.GenerateRequest(model=model_uri, count=2, seed=9, conditioning=conditioning),
        timeout=120,
    )
    assert [i.png for i in again.images] == [i.png for i in reply.images]
