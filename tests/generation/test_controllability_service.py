"""DermGAN's controllability through the generation service (issue acceptance): a tiny dermgan trains on
phantom data over a real channel, the controllability job generates a grid of requested class, size,
centre and skin tone, measures every image with the preprocessing stage's tools, and its report shows
the measured attributes tracking the requested ones. Also: outputs, reuse, refusals with their status."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import numpy as np
import pytest
from PIL import Image
from skingenbench.services.generation.client import GenerationClient
from skingenbench.services.platform.client import open_channel
from skingenbench.services.platform.manifest_io import read_manifest
from skingenbench.services.platform.store import LocalFolderStore

from skingenbench.api.v1 import common_pb2, generation_pb2, generation_pb2_grpc
from tests.common.phantom_data import phantom_manifests
from tests.common.service_helpers import running

REPO = Path(__file__).resolve().parents[2]
# Enough steps for the tiny 32 px generator to learn where the lesion goes and the skin colour.
DERMGAN = {"train_steps": 100, "train_epochs": 0, "checkpoint_every_steps": 50}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return LocalFolderStore(tmp_path_factory.mktemp("controllability") / "store")


@pytest.fixture(scope="module")
def train_manifest(store):
    return phantom_manifests(store, count=120, seed=4, split_seed=1)[1]


@pytest.fixture(scope="module")
def service(store):
    with running("generation", store) as svc, open_channel(svc.target) as channel:
        yield svc, generation_pb2_grpc.GenerationStub(channel)


@pytest.fixture(scope="module")
def model_uri(service, train_manifest):
    svc, _ = service
    with GenerationClient(svc.target, timeout_s=30) as client:
        final = client.train(
            train_manifest,
            generator="dermgan",
            profile="tiny",
            config=DERMGAN,
            classes=("MEL", "NV"),
            seed=0,
            name="ctrl",
            timeout_s=600,
        )
    return {o.name: o.uri for o in final.outputs}["model"]


GRID = {
    "lesion_area_fractions": (0.05, 0.12, 0.25),
    "ita_degrees": (-20.0, 15.0, 50.0),
    "centres": ((0.42, 0.45), (0.58, 0.55)),
    "repeats": 1,
}


def test_controllability_report_shows_the_measured_attributes_tracking_the_requested(
    service, store, model_uri
):
    svc, _ = service
    events: list[common_pb2.ProgressEvent] = []
    with GenerationClient(svc.target, timeout_s=30) as client:
        final = client.controllability(model_uri, seed=100, on_event=events.append, timeout_s=600, **GRID)
    outputs = {o.name: o for o in final.outputs}
    assert set(outputs) == {"manifest", "report_json", "report_md", "montage"}
    report = json.loads(store.get_bytes(store.key_from_uri(outputs["report_json"].uri)))
    area, ita = report["attributes"]["lesion_area_fraction"], report["attributes"]["ita_degrees"]
    assert area["failures"] <= 3 and area["pearson"] > 0.7, area
    assert ita["failures"] == 0 and ita["pearson"] > 0.9 and ita["mean_absolute_error"] < 10.0, ita
    assert report["attributes"]["center_x"]["pearson"] > 0.5, report["attributes"]["center_x"]
    assert set(report["per_class"]) == {"MEL", "NV"}  # labels default to the model's classes
    assert [row["requested_ita"] for row in report["by_requested_tone"]] == [-20.0, 15.0, 50.0]
    assert any(e.total == 36 and e.step == 36 for e in events)  # 2 classes x 3 sizes x 3 tones x 2 centres

    # The images are in the store, labelled with the class they were asked to show (for class anchoring).
    manifest = read_manifest(store, outputs["manifest"].uri, outputs["manifest"].sha256)
    assert len(manifest.items) == 36 and {i.label for i in manifest.items} == {"MEL", "NV"}
    first = manifest.items[0]
    assert first.meta["conditioning"]["label"] == first.label and "ita_degrees" in first.meta["measured"]
    montage = np.asarray(Image.open(io.BytesIO(store.get_bytes(store.key_from_uri(outputs["montage"].uri)))))
    assert montage.shape == (3 * 34, 3 * 34, 3)  # 3 tones x 3 sizes of 32 px with 2 px gaps
    # Rows are requested tones, dark to light: the skin (the tile's corner) gets lighter down the rows.
    corners = [montage[row * 34 : row * 34 + 4, :4].mean() for row in range(3)]
    assert corners[0] < corners[1] < corners[2], corners
    markdown = store.get_bytes(store.key_from_uri(outputs["report_md"].uri)).decode()
    assert "| ita_degrees | 36 |" in markdown and "By requested skin tone" in markdown

    # The same request again is the same job; the outputs are found, not recomputed.
    with GenerationClient(svc.target, timeout_s=30) as client:
        again = client.controllability(model_uri, seed=100, timeout_s=60, **GRID)
    assert again.job_id == final.job_id
    assert {o.name: o.sha256 for o in again.outputs} == {n: o.sha256 for n, o in outputs.items()}


def test_tones_outside_the_training_data_measure_worse_than_tones_inside(service, model_uri):
    """The report can fail: asking for tones far outside what the phantom skin covers (its ITA lies
    roughly between 10 and 60 degrees) gives larger ITA errors than tones inside it."""
    svc, _ = service
    with GenerationClient(svc.target, timeout_s=30) as client:
        inside, outside = (
            client.controllability(
                model_uri, labels=["MEL"], ita_degrees=tones, seed=7, repeats=1, timeout_s=600
            )
            for tones in ([25.0, 40.0], [-80.0, 85.0])
        )
    inside_mae, outside_mae = (json.loads(job.result_json)["ita_degrees_mae"] for job in (inside, outside))
    assert outside_mae > inside_mae + 5.0, (inside_mae, outside_mae)


@pytest.mark.parametrize(
    "fields, code, text",
    [
        ({"labels": ["XYZ"]}, grpc.StatusCode.INVALID_ARGUMENT, "unknown class"),
        ({"labels": ["BCC"]}, grpc.StatusCode.INVALID_ARGUMENT, "trained on MEL, NV"),
        ({"lesion_area_fractions": [0.0]}, grpc.StatusCode.INVALID_ARGUMENT, "lesion_area_fractions"),
        ({"ita_degrees": [90.0]}, grpc.StatusCode.INVALID_ARGUMENT, "ita_degrees"),
        (
            {"centres": [generation_pb2.LesionCentre(x=1.5, y=0.5)]},
            grpc.StatusCode.INVALID_ARGUMENT,
            "centres",
        ),
        ({"repeats": 5000}, grpc.StatusCode.INVALID_ARGUMENT, "repeats"),
    ],
)
def test_bad_controllability_requests_are_refused_before_a_job_starts(service, model_uri, fields, code, text):
    _, stub = service
    with pytest.raises(grpc.RpcError) as error:
        stub.StartControllability(
            generation_pb2.ControllabilityRequest(model_uri=model_uri, **fields), timeout=30
        )
    assert error.value.code() == code and text in error.value.details(), error.value.details()


def test_unconditional_and_missing_models_are_refused(service, train_manifest):
    svc, stub = service
    with pytest.raises(grpc.RpcError) as error:
        stub.StartControllability(
            generation_pb2.ControllabilityRequest(model_uri="no-such-model"), timeout=30
        )
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    tiny_ddpm = {
        "resolution": 16,
        "num_train_timesteps": 10,
        "batch_size": 4,
        "train_steps": 2,
        "checkpoint_every_steps": 2,
        "default_ddim_steps": 2,
        "sample_batch_size": 4,
    }
    with GenerationClient(svc.target, timeout_s=30) as client:
        final = client.train(
            train_manifest, generator="ddpm", profile="tiny", config=tiny_ddpm, timeout_s=300
        )
    ddpm = {o.name: o.uri for o in final.outputs}["model"]
    with pytest.raises(grpc.RpcError) as error:
        stub.StartControllability(generation_pb2.ControllabilityRequest(model_uri=ddpm), timeout=30)
    assert (
        error.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "conditional" in error.value.details()
    )


def _cli(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "skingenbench.cli.generate", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_command_line_draws_what_is_asked_and_reports_controllability(service, model_uri, tmp_path):
    svc, _ = service
    out = tmp_path / "asked"
    done = _cli(
        "--model",
        model_uri,
        "--count",
        "3",
        "--out",
        str(out),
        "--label",
        "NV",
        "--size",
        "0.2",
        "--center",
        "0.4",
        "0.6",
        "--ita",
        "-10",
        "--target",
        svc.target,
    )
    assert done.returncode == 0, done.stderr
    record = json.loads((out / "generation.json").read_text())
    asked = record["images"][0]["conditioning"]
    assert record["images"][0]["label"] == "NV" and asked["lesion_area_fraction"] == pytest.approx(0.2)
    assert (asked["center_x"], asked["center_y"], asked["ita_degrees"]) == (0.4, 0.6, -10.0)
    with GenerationClient(svc.target) as client:  # the files are what the client's call gives
        expected = client.generate(
            model_uri,
            3,
            0,
            as_="png",
            conditioning={
                "label": "NV",
                "lesion_area_fraction": 0.2,
                "center_x": 0.4,
                "center_y": 0.6,
                "ita_degrees": -10.0,
            },
        )
    assert [(out / f"seed-{s:06d}.png").read_bytes() for s in range(3)] == expected

    done = _cli(
        "controllability",
        "--model",
        model_uri,
        "--labels",
        "MEL",
        "--sizes",
        "0.1",
        "0.2",
        "--ita",
        "0",
        "40",
        "--repeats",
        "1",
        "--target",
        svc.target,
    )
    assert done.returncode == 0, done.stderr
    assert "ita_degrees" in done.stdout and "Pearson r" in done.stdout and "report:" in done.stdout
    assert "8/8" in done.stderr  # progress: 1 class x 2 sizes x 2 tones x 2 default centres
    refused = _cli("controllability", "--model", model_uri, "--labels", "SCC", "--target", svc.target)
    assert refused.returncode == 2 and "INVALID_ARGUMENT" in refused.stderr


def test_a_rerun_after_losing_the_reports_reuses_the_drawn_images(service, store, model_uri):
    """Outputs are written images first, then the reports and the manifest, the completion marker last: a job
    that ended before them (here: marker, manifest, reports and job record removed) is re-run on a fresh server
    from the PNGs already in the store, and gives the same report."""
    svc, _ = service
    grid = {"labels": ["NV"], "lesion_area_fractions": (0.1,), "ita_degrees": (0.0, 30.0), "repeats": 1}
    with GenerationClient(svc.target, timeout_s=30) as client:
        first = client.controllability(model_uri, seed=300, timeout_s=600, **grid)
    outputs = {o.name: store.key_from_uri(o.uri) for o in first.outputs}
    prefix = outputs["manifest"].rsplit("/", 1)[0]
    pngs = sorted(k for k in store.list(f"{prefix}/images/"))
    assert len(pngs) == 4
    written = {key: (store.root / key).stat().st_mtime_ns for key in pngs}
    report = store.get_bytes(outputs["report_json"])
    # With its completion marker in place, a job whose record is gone finds the outputs: nothing is redrawn.
    store.delete(f"jobs/skingenbench.v1.Generation/{first.job_id}.json")
    with GenerationClient(svc.target, timeout_s=30) as client:
        found = client.controllability(model_uri, seed=300, timeout_s=60, **grid)
    assert json.loads(found.result_json)["reused_output"] is True
    assert {o.name: o.sha256 for o in found.outputs} == {o.name: o.sha256 for o in first.outputs}
    for key in (
        f"{prefix}/summary.json",
        outputs["manifest"],
        outputs["report_json"],
        outputs["report_md"],
        f"jobs/skingenbench.v1.Generation/{first.job_id}.json",
    ):
        store.delete(key)
    with running("generation", store) as fresh, GenerationClient(fresh.target, timeout_s=30) as client:
        again = client.controllability(model_uri, seed=300, timeout_s=600, **grid)
    assert json.loads(again.result_json)["reused_output"] is False  # the job ran again ...
    assert {key: (store.root / key).stat().st_mtime_ns for key in pngs} == written  # ... without redrawing
    assert store.get_bytes(outputs["report_json"]) == report
