"""Every stage from the command line, against real services started in this process on a folder store:
``train generator`` → ``generate`` → ``evaluate`` (two folders, torch-fidelity style), ``train classifier``
→ ``classify test``, ``jobs`` across services, ``runs``, ``--version``; and the known mistakes, each
answered with one line and exit code 2.

Stand-ins, said plainly: the data is the phantom set, the models are tiny configs trained for seconds,
and the Inception weights are randomly initialised (no real weights can be downloaded here), so the FID
is a real computation on meaningless features.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from skingenbench.services.platform.manifest_io import read_manifest
from skingenbench.services.platform.store import LocalFolderStore

from skingenbench.cli import main
from tests.common.phantom_data import phantom_manifests
from tests.common.service_helpers import add_test_jobs, request, running
from tests.conftest import free_port
from tests.evaluation.test_extractors import write_random_inception_weights

# Seconds on one CPU thread (as tests/generation/test_service.py): 16 px, 50 diffusion steps, 10 updates.
GENERATOR_SETTINGS = [
    "resolution=16",
    "num_train_timesteps=50",
    "batch_size=8",
    "learning_rate=2e-3",
    "lr_schedule=constant",
    "lr_warmup_steps=2",
    "train_steps=10",
    "checkpoint_every_steps=5",
    "default_ddim_steps=10",
]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A folder store with phantom data, and the four services on free ports, found through the same
    settings ``skingenbench up`` would give the CLI (SKINGENBENCH_<STAGE>_TARGET)."""
    root = tmp_path_factory.mktemp("cli")
    store = LocalFolderStore(root / "store")
    split, train_only = phantom_manifests(store, count=120, seed=5, split_seed=1)
    weights = write_random_inception_weights(root / "weights")
    with (
        pytest.MonkeyPatch.context() as patch,
        running("preprocessing", store, extra_setup=add_test_jobs) as preprocessing,
        running("generation", store) as generation,
        running("evaluation", store) as evaluation,
        running("classification", store) as classification,
    ):
        services = {
            "preprocessing": preprocessing,
            "generation": generation,
            "evaluation": evaluation,
            "classification": classification,
        }
        for stage, service in services.items():
            patch.setenv(f"SKINGENBENCH_{stage.upper()}_TARGET", service.target)
        patch.setenv("SKINGENBENCH_HOME", str(root / "home"))
        patch.setenv("SKINGENBENCH_STORE", store.root_uri)
        yield {
            "root": root,
            "store": store,
            "split": split,
            "train_only": train_only,
            "weights": weights,
            "services": services,
        }


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str):
    code, out, err = run_cli(capsys, *argv, "--json", "--plain")
    assert code == 0, err
    return json.loads(out)


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_train_generate_evaluate_end_to_end(world, capsys, tmp_path):
    trained = run_json(
        capsys,
        "train",
        "generator",
        "ddpm",
        "--manifest",
        world["train_only"].uri,
        "--profile",
        "tiny",
        *[arg for setting in GENERATOR_SETTINGS for arg in ("--set", setting)],
        "--seed",
        "3",
        "--name",
        "cli-ddpm",
    )
    assert trained["state"] == "SUCCEEDED" and trained["result"]["step"] == 10
    model_uri = trained["outputs"]["model"]["uri"]

    synthetic = tmp_path / "synthetic"
    generated = run_json(
        capsys,
        "generate",
        "--model",
        "cli-ddpm",
        "--count",
        "8",
        "--out",
        str(synthetic),
        "--sampler",
        "ddim",
        "--steps",
        "10",
    )
    assert generated["model_uri"] == model_uri and generated["count"] == 8
    assert len(list(synthetic.glob("seed-*.png"))) == 8

    # "Real images" as a user has them: a plain folder of PNGs (the training melanomas, exported).
    real = tmp_path / "real"
    real.mkdir()
    store = world["store"]
    for item in read_manifest(store, world["train_only"].uri).filter(labels=["MEL"]):
        (real / f"{item.image_id}.png").write_bytes(store.get_bytes(item.key))
    arguments = ["evaluate", str(real), str(synthetic), "--weights", str(world["weights"])]
    arguments += ["--profile", "tiny", "--metrics", "fid", "kid", "isc", "prc"]
    evaluated = run_json(capsys, *arguments, "--set", "kid_subset_size=4")
    sets = evaluated["result"]["sets"]
    assert list(sets) == ["synthetic"] and sets["synthetic"]["count"] == 8
    for metric in ("fid", "kid_mean", "isc_mean", "precision", "recall"):
        assert isinstance(sets["synthetic"][metric], float), (metric, sets["synthetic"])
    assert evaluated["result"]["real"]["count"] == len(list(real.glob("*.png")))
    # The folders were imported into the service's store; a second run imports and computes nothing new.
    again = run_json(capsys, *arguments, "--set", "kid_subset_size=4")
    assert again["job_id"] == evaluated["job_id"] and again["real"] == evaluated["real"]

    # The human-readable form: a table with the set's FID.
    code, out, err = run_cli(capsys, *arguments, "--set", "kid_subset_size=4", "--plain")
    assert code == 0, err
    header, row = out.splitlines()[:2]
    assert header.split()[:2] == ["set", "count"] and row.split()[0] == "synthetic"
    assert f"{sets['synthetic']['fid']:.4g}" in row


def test_train_classifier_then_test_predict_and_gradcam(world, capsys):
    trained = run_json(
        capsys,
        "train",
        "classifier",
        "resnet18",
        "--manifest",
        world["split"].uri,
        "--profile",
        "tiny",
        "--set",
        "epochs=1",
        "--run-name",
        "cli/resnet18/seed0",
    )
    checkpoint = trained["outputs"]["checkpoint"]
    common = ["--checkpoint", checkpoint["uri"], "--sha256", checkpoint["sha256"]]
    common += ["--manifest", world["split"].uri]
    tested = run_json(capsys, "classify", "test", *common, "--bootstrap", "50")
    assert tested["result"]["split"] == "test" and tested["result"]["n"] > 0
    assert 0.0 <= tested["result"]["global_accuracy"] <= 1.0
    predicted = run_json(capsys, "classify", "predict", *common, "--splits", "test")
    assert predicted["result"]["n"] == tested["result"]["n"]
    assert "predictions_csv" in predicted["outputs"]
    gradcam = run_json(capsys, "classify", "gradcam", *common, "--count", "2")
    assert gradcam["result"]["overlays"] == 2
    # A changed checkpoint is refused before the job starts (DATA_LOSS), in one line.
    wrong = ["--checkpoint", checkpoint["uri"], "--sha256", "0" * 64, "--manifest", world["split"].uri]
    code, _, err = run_cli(capsys, "classify", "test", *wrong)
    assert code == 2 and "DATA_LOSS" in one_error_line(err)


def test_jobs_list_watch_cancel_across_services(world, capsys):
    runner = world["services"]["preprocessing"].runner
    done = runner.submit("count", request(total=3, sleep_s=0.01))
    runner.wait(done.job_id, timeout_s=30)
    long = runner.submit("count", request(total=100_000, sleep_s=0.01))
    listed = run_json(capsys, "jobs", "list")
    assert set(listed) == {"preprocessing", "generation", "evaluation", "classification"}
    ids = {job["job_id"]: job["state"] for job in listed["preprocessing"]}
    assert ids[done.job_id] == "SUCCEEDED" and ids[long.job_id] in ("QUEUED", "RUNNING")
    running_only = run_json(capsys, "jobs", "list", "--state", "running", "queued")
    assert [j["job_id"] for j in running_only["preprocessing"]] == [long.job_id]

    # The stack's status lists what runs on each service.
    import io

    from skingenbench.cli.stack import _print_active_jobs

    printed = io.StringIO()
    _print_active_jobs("preprocessing", world["services"]["preprocessing"].target, printed)
    assert "1 running or queued" in printed.getvalue() and long.job_id in printed.getvalue()

    # Found on whichever service has it: cancel, then watch the finished job.
    cancelled = run_json(capsys, "jobs", "cancel", long.job_id)
    assert cancelled["kind"] == "count" and cancelled["state"] == "CANCELLED"  # waited until it stopped
    code, _, err = run_cli(capsys, "jobs", "watch", long.job_id, "--plain")
    assert code == 1 and "ended CANCELLED" in err.strip().splitlines()[-1] and "Traceback" not in err
    watched = run_json(capsys, "jobs", "watch", done.job_id)
    assert watched["state"] == "SUCCEEDED" and watched["result"]["count"] == 3
    code, _, err = run_cli(capsys, "jobs", "watch", "no-such-job")
    assert code == 2 and "no service knows the job" in one_error_line(err)


def test_runs_lists_finished_runs_with_their_reports(world, capsys, tmp_path):
    runs_dir = tmp_path / "runs"
    (runs_dir / "half-done").mkdir(parents=True)  # no report.md: not finished
    finished = runs_dir / "smoke-1"
    finished.mkdir()
    (finished / "run.json").write_text(json.dumps({"grid": {"name": "smoke"}, "tests": {"A1/x/0": {}}}))
    (finished / "report.md").write_text("# report")
    world["store"].put_bytes("runs/elsewhere-2/report.md", b"# report")
    rows = run_json(capsys, "runs", "--runs-dir", str(runs_dir))
    by_id = {row["run_id"]: row for row in rows}
    assert set(by_id) >= {"smoke-1", "elsewhere-2"} and "half-done" not in by_id
    assert by_id["smoke-1"]["grid"] == "smoke" and by_id["smoke-1"]["report"] == str(finished / "report.md")
    assert by_id["elsewhere-2"]["store_report"] == world["store"].uri("runs/elsewhere-2/report.md")


def test_version_names_code_packages_and_store(world, capsys):
    code, out, _ = run_cli(capsys, "--version")
    assert code == 0
    assert out.startswith("skingenbench 0.") and "grpcio " in out and "torch " in out
    assert world["store"].root_uri in out


# -- the known mistakes: one line, what to do, exit 2, nothing left behind ----------------------------------
def test_preprocess_run_on_a_folder_says_to_import_it(tmp_path, capsys):
    folder = tmp_path / "HAM10000"
    folder.mkdir()
    code, _, err = run_cli(capsys, "preprocess", "run", str(folder), "--store", str(tmp_path / "store"))
    line = one_error_line(err)
    assert code == 2 and "expected a manifest URI" in line and "got a folder" in line
    assert "skingenbench data import" in line


def test_generate_with_an_unknown_model_creates_no_folder(world, capsys, tmp_path):
    out = tmp_path / "never"
    code, _, err = run_cli(capsys, "generate", "--model", "dddpm", "--count", "2", "--out", str(out))
    line = one_error_line(err)
    assert code == 2 and "dddpm" in line and not out.exists()


def test_a_service_that_is_not_up_is_one_line(capsys, tmp_path, monkeypatch):
    target = f"127.0.0.1:{free_port()}"
    out = tmp_path / "never"
    code, _, err = run_cli(
        capsys, "generate", "--model", "ddpm", "--count", "1", "--out", str(out), "--target", target
    )
    line = one_error_line(err)
    assert code == 2 and f"the generation service at {target} is not reachable" in line
    assert "skingenbench up" in line and not out.exists()
    monkeypatch.setenv("SKINGENBENCH_EVALUATION_TARGET", target)
    code, _, err = run_cli(capsys, "jobs", "list", "--service", "evaluation")
    assert code == 2 and f"the evaluation service at {target} is not reachable" in one_error_line(err)


@pytest.mark.parametrize(
    "argv, text",
    [
        (["train", "generator", "ddpmm", "--profile", "tiny"], "ddpmm"),
        (["train", "classifier", "resnet1000", "--profile", "tiny"], "resnet1000"),
        (["train", "generator", "ddpm", "--profile", "tiny", "--set", "train_steps"], "KEY=VALUE"),
        (["train", "generator", "ddpm", "--profile", "huge"], "huge"),
    ],
)
def test_wrong_names_and_settings_are_refused_before_a_job(world, capsys, argv, text):
    manifest = world["train_only"].uri if argv[1] == "generator" else world["split"].uri
    before = {stage: len(s.runner.list()) for stage, s in world["services"].items()}
    code, _, err = run_cli(capsys, *argv, "--manifest", manifest)
    assert code == 2 and text in one_error_line(err)
    assert {stage: len(s.runner.list()) for stage, s in world["services"].items()} == before


def test_a_folder_where_a_manifest_belongs_is_refused_by_every_stage_command(world, capsys, tmp_path):
    for argv in (
        ["train", "generator", "ddpm", "--manifest", str(tmp_path)],
        ["train", "classifier", "resnet18", "--manifest", str(tmp_path)],
        ["classify", "test", "--checkpoint", "x", "--manifest", str(tmp_path)],
    ):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and "got a folder" in one_error_line(err), argv


def test_debug_shows_the_traceback(capsys, tmp_path):
    code, _, err = run_cli(capsys, "preprocess", "run", str(tmp_path), "--debug")
    assert code == 2 and "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")


def test_the_cli_entry_point_in_a_subprocess(world, tmp_path):
    """``python -m skingenbench.cli`` (what the console script runs): the same one line and exit code."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-m", "skingenbench.cli", "preprocess", "run", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=repo,
        env={**os.environ, "PYTHONPATH": str(repo)},
    )
    assert done.returncode == 2 and "got a folder" in one_error_line(done.stderr)


def test_ctrl_c_leaves_the_job_running_and_says_how_to_follow_it(world, capsys, monkeypatch):
    runner = world["services"]["preprocessing"].runner
    job = runner.submit("count", request(total=100_000, sleep_s=0.01, tag=1))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("skingenbench.services.platform.client.watch_job", interrupted)
    try:
        code, _, err = run_cli(capsys, "jobs", "watch", job.job_id, "--plain")
        assert code == 130
        assert f"skingenbench jobs watch {job.job_id}" in err and f"jobs cancel {job.job_id}" in err
        assert runner.get(job.job_id).state in ("QUEUED", "RUNNING")  # still there: Ctrl-C stopped only us
    finally:
        runner.cancel(job.job_id)
