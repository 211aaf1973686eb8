"""``bench/gpu_check.py --dry-run``: the GPU check's own code, every section, at tiny sizes on the CPU.

It runs as ``make gpu-check`` runs it on a node (a script, not ``-m``: a node installs the project without the
venv, and the repository's ``skingenbench/`` folder would shadow the installed package under ``-m``), writes the
JSON the GPU run writes, and must hold a result for every section. The refusal when the estimate exceeds the
budget, and the partial results on SIGTERM, are checked on the same script.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Each dry run is about a minute of CPU; the timeout allows for a CPU shared with other jobs.
pytestmark = pytest.mark.timeout(1800)

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "gpu_check.py"
SECTIONS = {
    "stylegan2",
    "stylegan2_compiled",
    "ddpm_training",
    "ddpm_sampling",
    "dermgan",
    "inception",
    "classifiers",
}
CLASSIFIERS = {"resnet18", "resnet50", "vgg16", "efficientnet_b0", "vit_base_patch16_224"}


def gpu_check(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kwargs,
    )


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check") / "gpu.json"
    # A budget no dry run reaches: on a busy shared CPU the plan's own estimate (seconds) would skip sections.
    process = gpu_check("--dry-run", "--budget-s", "3600", "--out", str(out))
    try:
        output, _ = process.communicate(timeout=1500)
    except subprocess.TimeoutExpired:
        process.kill()  # leave no dry run behind
        process.communicate()
        raise
    return process.returncode, output, out


def test_dry_run_completes_every_section_and_writes_the_results(dry_run):
    code, output, out = dry_run
    assert code == 0, output[-3000:]
    document = json.loads(out.read_text())
    assert document["schema"] == "skingenbench.gpu_check/1"
    assert document["dry_run"] is True and document["complete"] is True and document["stopped"] is None
    assert document["environment"]["device"] == "cpu"
    sections = document["sections"]
    assert set(sections) == SECTIONS
    failed = {name: s.get("error") for name, s in sections.items() if s["status"] != "ok"}
    assert not failed, failed
    assert "estimates (s):" in output and "[7/7] classifiers" in output  # progress is printed


def test_dry_run_measures_positive_rates_for_each_side(dry_run):
    _, _, out = dry_run
    sections = json.loads(out.read_text())["sections"]
    assert sections["stylegan2"]["s_per_kimg"] > 0 and sections["stylegan2"]["torch_compile"] == "off"
    assert sections["stylegan2_compiled"]["torch_compile"] == "eager"
    assert sections["ddpm_training"]["steps_per_s"] > 0 and sections["ddpm_training"]["ema"] is True
    sampling = sections["ddpm_sampling"]
    assert {key for key in sampling if key[0].isalpha() and "_" in key and key[-1].isdigit()} == {
        "ddpm_4",
        "ddim_3",
        "dpm_solver_3",
    }
    assert all(sampling[key]["images_per_s"] > 0 for key in ("ddpm_4", "ddim_3", "dpm_solver_3"))
    assert sections["dermgan"]["s_per_kimg"] > 0 and sections["dermgan"]["sampling_images_per_s"] > 0
    inception = sections["inception"]
    assert inception["project_images_per_s"] > 0 and inception["torch_fidelity_images_per_s"] > 0
    assert inception["ratio"] == pytest.approx(
        inception["project_images_per_s"] / inception["torch_fidelity_images_per_s"], rel=0.02
    )
    classifiers = sections["classifiers"]
    assert set(classifiers) - {"status", "seconds"} == CLASSIFIERS
    for name in CLASSIFIERS:
        assert (
            classifiers[name]["project_images_per_s"] > 0
            and classifiers[name]["minimal_loop_images_per_s"] > 0
        )


def test_goals_name_each_target_with_its_measured_value(dry_run):
    _, _, out = dry_run
    document = json.loads(out.read_text())
    goals = document["goals"]
    assert goals["stylegan2_s_per_kimg"]["goal"] == "<= 8.0"
    assert goals["ddim50_images_per_s"]["measured"] is None  # the dry run samples DDIM-3, not DDIM-50
    assert goals["inception_ratio"]["measured"] == document["sections"]["inception"]["ratio"]
    assert {f"classifier_ratio_{name}" for name in CLASSIFIERS} <= set(goals)


def test_refuses_to_start_when_its_estimate_exceeds_the_budget(tmp_path):
    out = tmp_path / "gpu.json"
    process = gpu_check("--dry-run", "--budget-s", "5", "--out", str(out))
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 2, output
    document = json.loads(out.read_text())
    assert document["stopped"].startswith("refused: estimate") and document["sections"] == {}
    assert "exceeds the budget" in output


def test_sigterm_writes_the_partial_results(tmp_path):
    out = tmp_path / "gpu.json"
    process = gpu_check("--dry-run", "--budget-s", "3600", "--out", str(out))
    deadline = time.monotonic() + 300
    seen = ""
    while time.monotonic() < deadline:  # wait until it has started measuring
        line = process.stdout.readline()
        seen += line
        if "[1/7] stylegan2" in line or not line:
            break
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 1, seen + output
    document = json.loads(out.read_text())
    assert document["complete"] is False and document["stopped"] == "SIGTERM"
    assert "writing the partial results" in output
