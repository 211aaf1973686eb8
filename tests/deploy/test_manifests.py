"""The deployment files agree with each other and with the code: the same four stages on the same ports in
settings.SERVICES, Compose, the Kubernetes base and the Prefect deployments, each built from a target of
the one Dockerfile whose extra exists in pyproject.toml. (Each file's own checks: test_kubernetes.py,
test_prefect_yaml.py, and the Docker/Compose tests.)"""

from __future__ import annotations

import re
from pathlib import Path

import tomllib
import yaml
from skingenbench.services.platform.settings import SERVICES

from tests.deploy.kustomize import build

ROOT = Path(__file__).resolve().parents[2]


def test_every_file_deploys_the_same_stages_on_the_same_ports():
    ports = {stage: port for stage, (_, port) in SERVICES.items()}
    k8s = build(ROOT / "deploy/k8s/base")
    k8s_ports = {d["metadata"]["name"]: d["spec"]["ports"][0]["port"] for d in k8s if d["kind"] == "Service"}
    assert k8s_ports == ports
    compose = yaml.safe_load((ROOT / "deploy/compose/docker-compose.yaml").read_text())["services"]
    for stage, port in ports.items():
        assert any(
            str(p).endswith(f":{port}:{port}") or str(p) == f"{port}:{port}" for p in compose[stage]["ports"]
        )
    prefect = yaml.safe_load((ROOT / "deploy/prefect.yaml").read_text())
    for deployment in prefect["deployments"]:
        env = deployment["work_pool"]["job_variables"]["env"]
        assert {
            stage: int(env[f"SKINGENBENCH_{stage.upper()}_ENDPOINTS"].rsplit(":", 1)[1]) for stage in ports
        } == ports, deployment["name"]


def test_every_image_is_a_dockerfile_target_with_its_extra():
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    targets = set(re.findall(r"^FROM \S+ AS (\S+)", (ROOT / "docker/Dockerfile").read_text(), flags=re.M))
    for stage in SERVICES:
        assert stage in targets and stage in extras
    assert "flow" in targets and "flows" in extras  # the Prefect flow's image and its extra
