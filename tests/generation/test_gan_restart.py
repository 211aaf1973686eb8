"""Restart through the service for the two GAN backends, StyleGAN2-ADA and DermGAN.

A generation service stopped gracefully mid-training leaves its job INTERRUPTED with a checkpoint in the store; a
new server resumes it from that checkpoint, and the run must end bit-identical to the same request run straight
through: every tensor of the final training state (G, D, EMA, both optimisers, the noise generator, ADA's p and
its controller statistics, the path-length mean, DermGAN's condition distribution) and every scalar beside them.
The backend-level resume tests (test_stylegan2.py, test_dermgan.py) hand the state over in memory; this one goes
through what a real restart goes through: the job runner, the store's checkpoint format, the data loaded again
from the manifest, and for DermGAN the semantic maps rebuilt from masks and skin tone (conditional_training_set).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from skingenbench.services.generation import models
from skingenbench.services.platform.client import iter_events, open_channel, watch_job
from skingenbench.services.platform.jobs import JobRecord
from skingenbench.services.platform.settings import ServiceSettings
from skingenbench.services.platform.store import LocalFolderStore
from skingenbench.services.stages import start_service

from skingenbench.api.v1 import common_pb2, generation_pb2, generation_pb2_grpc
from tests.common.phantom_data import phantom_manifests
from tests.common.service_helpers import running

TOTAL_STEPS = 40
STOP_AFTER = 12  # the first server is stopped once a progress event reports this step: mid-run
SUCCEEDED = common_pb2.JOB_STATE_SUCCEEDED

# Tiny runs of TOTAL_STEPS steps (batch 4, checkpoint every 5), a few seconds each on one CPU thread.
CONFIGS: dict[str, dict[str, Any]] = {
    # 16 px. p starts at 0.5 so augmentation (and its draws from the checkpointed generator) runs from step 0;
    # ada_kimg 0.5 moves p by 12/500 per update, so over 13 updates it moves but cannot reach 0 or 1, where a
    # clamp would hide a wrong p. ada_interval 3 and the regulariser intervals 2 and 3 do not divide the step
    # the stop lands on in general, so the controller's half-collected statistics and the lazy-regulariser
    # phase have to come back from the checkpoint too.
    "stylegan2_ada": {
        "resolution": 16,
        "batch_size": 4,
        "train_kimg": TOTAL_STEPS * 4 / 1000,
        "checkpoint_every_steps": 5,
        "sample_batch_size": 4,
        "augment_p": 0.5,
        "ada_kimg": 0.5,
        "ada_interval": 3,
        "r1_interval": 3,
        "pl_interval": 2,
    },
    # 16 px needs four U-Net halvings (five do not divide 16); two PatchGAN layers leave a 4x4 patch grid.
    # The linear learning-rate decay starts at step 20, so the resumed part crosses into it.
    "dermgan": {
        "resolution": 16,
        "generator_levels": 4,
        "batch_size": 4,
        "train_steps": TOTAL_STEPS,
        "train_epochs": 0,
        "checkpoint_every_steps": 5,
        "sample_batch_size": 4,
    },
}


def build_data(store) -> common_pb2.ManifestRef:
    """A train-only 64x64 manifest preprocessed by 'basic' (lesion masks and ITA, which DermGAN's maps need)."""
    return phantom_manifests(store, count=160, seed=11, split_seed=2)[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[LocalFolderStore, common_pb2.ManifestRef]:
    store = LocalFolderStore(tmp_path_factory.mktemp("gan-restart") / "store")
    return store, build_data(store)


def train_request(generator: str, ref, name: str) -> generation_pb2.TrainGeneratorRequest:
    return generation_pb2.TrainGeneratorRequest(
        generator=generator,
        profile="tiny",
        train=ref,
        seed=3,
        name=name,
        classes=["MEL"],
        config_json=json.dumps(CONFIGS[generator]),
    )


def outputs(job) -> dict[str, common_pb2.NamedRef]:
    return {o.name: o for o in job.outputs}


def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """Every leaf of a nested training state by its path (dict keys and list positions)."""
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in flatten(item, f"{path}/{key}").items()}
    if isinstance(value, (list, tuple)):
        return {k: v for i, item in enumerate(value) for k, v in flatten(item, f"{path}/{i}").items()}
    return {path: value}


def differences(resumed: dict[str, Any], reference: dict[str, Any]) -> list[str]:
    """Paths whose leaves differ (missing, another type or dtype, another value); all of them, for diagnosis."""
    got, expected = flatten(resumed), flatten(reference)
    found = [
        f"{path}: only in {'the resumed' if path in got else 'the straight'} run"
        for path in sorted(set(got) ^ set(expected))
    ]
    tensors = []
    for path in sorted(set(got) & set(expected)):
        a, b = got[path], expected[path]
        if isinstance(b, torch.Tensor):
            if not (isinstance(a, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)):
                tensors.append(path)
        elif not (type(a) is type(b) and a == b):
            found.append(f"{path}: {a!r} != {b!r}")  # scalars first: a step or ADA's p says most
    return found + tensors


@pytest.mark.parametrize("generator", sorted(CONFIGS))
def test_restart_mid_training_resumes_from_the_last_checkpoint(data, generator):
    store, train_ref = data
    settings = ServiceSettings(stage="generation", host="127.0.0.1", port=0, shutdown_grace_s=20)
    first = start_service("generation", settings, store)
    try:
        channel = open_channel(first.target)
        job = generation_pb2_grpc.GenerationStub(channel).StartTraining(
            train_request(generator, train_ref, "restarted"), timeout=30
        )
        for event in iter_events(channel, job.job_id):
            assert event.state != SUCCEEDED, "training ended before the restart"
            if event.step >= STOP_AFTER:  # two checkpoints (5, 10) are in the store
                break
        channel.close()
    finally:
        first.stop(grace_s=20)  # graceful: the job checkpoints where it is and is recorded INTERRUPTED

    stored_job = JobRecord.from_json(store.get_bytes(f"jobs/skingenbench.v1.Generation/{job.job_id}.json"))
    assert stored_job.state == "INTERRUPTED"
    (record,) = [r for r in models.list_records(store, generator) if r.name == "restarted"]
    assert not record.complete and STOP_AFTER <= record.step < TOTAL_STEPS
    assert record.checkpoint["step"] == record.step
    stopped_at = models.load_checkpoint(store, record.checkpoint)["backend"]
    assert stopped_at["step"] == record.step

    with running("generation", store) as second, open_channel(second.target) as channel:
        events: list[common_pb2.ProgressEvent] = []
        final = watch_job(channel, job.job_id, events.append, timeout_s=240)
        assert final.state == SUCCEEDED, final.error.message
        result = json.loads(final.result_json)
        assert (
            result["resumed_from"] == record.step and result["step"] == result["total_steps"] == TOTAL_STEPS
        )
        assert min(e.step for e in events if "loss" in e.metrics) == record.step + 1
        straight = watch_job(
            channel,
            generation_pb2_grpc.GenerationStub(channel)
            .StartTraining(train_request(generator, train_ref, "straight"), timeout=30)
            .job_id,
            timeout_s=240,
        )
        assert straight.state == SUCCEEDED, straight.error.message
        assert json.loads(straight.result_json)["resumed_from"] is None

    resumed_record = models.read_record(store, outputs(final)["model"].uri)
    assert resumed_record.training["resumed_from"] == [record.step]
    straight_record = models.read_record(store, outputs(straight)["model"].uri)
    assert straight_record.training.get("resumed_from") is None and straight_record.key != resumed_record.key
    resumed = models.load_checkpoint(store, resumed_record.checkpoint)["backend"]
    reference = models.load_checkpoint(store, straight_record.checkpoint)["backend"]
    assert resumed["step"] == reference["step"] == TOTAL_STEPS
    # Every tensor and scalar: weights, EMA, optimiser moments and steps, RNG state, ADA's p and statistics.
    mismatched = differences(resumed, reference)
    assert not mismatched, f"{len(mismatched)} leaves differ: " + "; ".join(mismatched[:12])
    # Guards against a vacuous comparison: the compared state holds what the resume has to get right.
    if generator == "stylegan2_ada":
        assert reference["opt_G"]["state"] and reference["opt_D"]["state"] and reference["ada"]["count"] > 0
        # p kept moving after the restart, so a p (or controller statistics) restored wrongly ends elsewhere.
        assert len({e.metrics["augment_p"] for e in events if "augment_p" in e.metrics}) > 1
    else:
        assert reference["optimizer_g"]["state"] and reference["optimizer_d"]["state"]
        assert reference["conditions"]["values"].numel() > 0
