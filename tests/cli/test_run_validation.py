"""``skingenbench run`` checks the whole request before it starts anything (issue 19, "validate before
starting"): each mistake is one line on stderr with what to do, exit status 2, no traceback (``--debug``
shows it), and no stack, Prefect server or flow run was started for it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from skingenbench.flows.grid import GridError
from skingenbench.flows.validation import validate_grid

from skingenbench.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def nothing_may_start(monkeypatch):
    """Starting the stack, the Prefect server or the flow fails the test: validation must come first."""
    from skingenbench.cli import run, stack

    def forbidden(*_args, **_kwargs):
        raise AssertionError("started something for a request that is wrong")

    monkeypatch.setattr(stack, "up", forbidden)
    monkeypatch.setattr(run, "_start_prefect_server", forbidden)
    monkeypatch.setattr(run, "_run_flow", forbidden)


def _grid_file(tmp_path: Path, **changes) -> str:
    data = yaml.safe_load((ROOT / "flows" / "grids" / "demo.yaml").read_text())
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section][field] = value
        else:
            data[section] = value
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


MISTAKES = {
    "unknown grid name": (lambda tmp: ["--grid", "smok"], "no grid file 'smok'"),
    "unknown classifier": (
        lambda tmp: ["--grid", _grid_file(tmp, classifiers=["resnet19"])],
        "classifiers[0]: unknown value 'resnet19'",
    ),
    "config key typo": (
        lambda tmp: ["--grid", _grid_file(tmp, generator_config={"ddpm": {"train_stepz": 3}})],
        "generator_config.ddpm: unknown config key(s) for DDPMConfig: train_stepz",
    ),
    "config for a generator the grid lacks": (
        lambda tmp: ["--grid", _grid_file(tmp, generators=["ddpm"])],
        "is not one of this grid's generators (ddpm); remove the entry or add the name",
    ),
    "preprocessing config typo": (
        lambda tmp: ["--grid", _grid_file(tmp, preprocessing_config={"basic": {"sise": 32}})],
        "preprocessing_config.basic:",
    ),
    "missing data folder": (
        lambda tmp: ["--grid", _grid_file(tmp, data={"source": "ham10000", "path": str(tmp / "nowhere")})],
        "data.path: no folder",
    ),
    "fractions": (
        lambda tmp: ["--grid", _grid_file(tmp, split__train=0.9)],
        "split: train/val/test must be non-negative and sum to 1",
    ),
    "negative count": (
        lambda tmp: ["--grid", _grid_file(tmp, evaluation_count=-5)],
        "evaluation_count: must be >= 0",
    ),
    "zero augmentation copies": (
        lambda tmp: ["--grid", _grid_file(tmp, augment_copies=0)],
        "augment_copies: a positive integer",
    ),
    "pipeline the grid lacks": (
        lambda tmp: ["--grid", "demo", "--pipelines", "A1", "C7"],
        "pipelines: 'C7' is not a pipeline of grid 'demo'",
    ),
    "malformed endpoint": (
        lambda tmp: ["--grid", "demo", "--endpoints", "generaton=127.0.0.1:1"],
        "--endpoints 'generaton=127.0.0.1:1'",
    ),
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_mistake_is_one_line_and_exit_2_before_anything_starts(
    mistake, tmp_path, capsys, nothing_may_start
):
    options, expected = MISTAKES[mistake]
    status = main(["run", *options(tmp_path), "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert status == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0]
    assert "Traceback" not in err


def test_debug_shows_the_traceback(tmp_path, capsys, nothing_may_start):
    assert main(["run", "--grid", "smok", "--debug", "--runs-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "validate_grid" in err
    assert err.strip().splitlines()[-1].startswith("error: grid 'smok': no grid file 'smok'")


def test_the_names_are_checked_against_the_service_registry_itself(monkeypatch):
    """A name grid.py knows but the classification service does not register is refused before the run
    (the service would refuse it only when its turn came)."""
    from skingenbench.services.core.classifiers.models import CLASSIFIERS

    registered = [name for name in CLASSIFIERS.names() if name != "resnet18"]
    monkeypatch.setattr(CLASSIFIERS, "names", lambda: registered)
    with pytest.raises(GridError, match=r"classifiers\[0\]: 'resnet18' is not registered with the service"):
        validate_grid("demo")


def test_a_data_folder_must_hold_its_metadata(tmp_path):
    folder = tmp_path / "ham"
    folder.mkdir()
    grid = _grid_file(tmp_path, data={"source": "ham10000", "path": str(folder)})
    with pytest.raises(GridError, match="has no HAM10000_metadata.csv"):
        validate_grid(grid)
    (folder / "HAM10000_metadata.csv").write_text("lesion_id,image_id,dx\n")
    assert validate_grid(grid).data.path == str(folder)
    # A remote service reads its own disk: its paths are not this machine's to check.
    assert validate_grid(
        _grid_file(tmp_path, data={"source": "ham10000", "path": "/nowhere"}), check_data_paths=False
    )


@pytest.mark.parametrize("name", ["demo", "smoke", "paper"])
def test_the_shipped_grids_pass(name):
    grid = validate_grid(name, check_data_paths=False)  # paper reads /data/HAM10000, absent here
    assert grid.name == name


def test_the_command_line_leaves_nothing_behind(tmp_path):
    """The real entry point in a fresh process: exit 2, one line, and the home holds no stack record, no
    Prefect database (so no Failed flow run) — nothing was started."""
    env = {**os.environ, "SKINGENBENCH_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    env.pop("PREFECT_API_URL", None)
    grid = _grid_file(tmp_path, classifier_config={"resnet18": {"epochs": 0}})
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "skingenbench.cli",
            "run",
            "--grid",
            grid,
            "--runs-dir",
            str(tmp_path / "runs"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "classifier_config.resnet18:" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "home").exists() and not (tmp_path / "runs").exists()


def test_a_run_that_fails_later_ends_with_one_line(monkeypatch, tmp_path, capsys):
    """Past validation, a failure (a job failed on a service) is exit 1 and one line: the traceback is in
    the Prefect UI's logs, and here with --debug."""
    import argparse

    from skingenbench.flows import benchmark

    from skingenbench.cli import run

    def failing(**_parameters):
        raise RuntimeError("the train job abc ended FAILED:\nINVALID_ARGUMENT: no images")

    monkeypatch.setattr(benchmark, "benchmark", failing)
    args = argparse.Namespace(plain=True, pipelines=None, grid="demo", run_id="", runs_dir=str(tmp_path))
    assert run._run_flow(args, wiring=None, home=tmp_path) is None
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "error: the run failed: RuntimeError: the train job abc ended FAILED: INVALID_ARGUMENT" in lines[0]
    assert str(tmp_path / "logs") in lines[0]
    args.debug = True
    with pytest.raises(RuntimeError, match="ended FAILED"):
        run._run_flow(args, wiring=None, home=tmp_path)
