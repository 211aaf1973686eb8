"""The flow image installs only the base install and the `flows` extra: no torch, no OpenCV, no
torchvision, no diffusers (docker/Dockerfile's `flow` target). The flow module Prefect loads from the
deployment's entrypoint must import without them; an import of the imaging core at module level once
crashed every flow run in that image ("No module named 'cv2'")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]

ABSENT_IN_THE_FLOW_IMAGE = ("cv2", "torch", "torchvision", "diffusers", "timm", "torch_fidelity", "skimage")


def test_the_deployed_flow_entrypoint_imports_without_the_stage_libraries():
    entrypoints = {
        d["entrypoint"] for d in yaml.safe_load((ROOT / "deploy/prefect.yaml").read_text())["deployments"]
    }
    assert entrypoints, "deploy/prefect.yaml has no deployments"
    modules = sorted({entrypoint.partition(":")[0] for entrypoint in entrypoints})
    # A None entry in sys.modules makes `import cv2` raise ImportError, as if it were not installed.
    script = "; ".join(
        [
            "import sys",
            *[f"sys.modules[{name!r}] = None" for name in ABSENT_IN_THE_FLOW_IMAGE],
            *[f"import importlib; importlib.import_module({module!r})" for module in modules],
        ]
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
