"""The deployment files agree with the code: every stage is deployed on its port, discoverable through
a headless Service, probed with gRPC health, and built from the one Dockerfile's extras."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from skingenbench.services.platform.settings import SERVICES

ROOT = Path(__file__).resolve().parents[2]


def test_kubernetes_manifests_cover_every_stage_on_its_port():
    docs = list(yaml.safe_load_all((ROOT / "deploy/k8s/skingenbench.yaml").read_text()))
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(services) == set(deployments) == set(SERVICES)
    for stage, (_, port) in SERVICES.items():
        assert services[stage]["spec"]["clusterIP"] == "None"  # headless: the flow sees every pod
        container = deployments[stage]["spec"]["template"]["spec"]["containers"][0]
        assert container["ports"][0]["containerPort"] == port
        assert container["readinessProbe"]["grpc"]["port"] == port
        env = {e["name"]: e["value"] for e in container["env"]}
        assert (
            env[f"SKINGENBENCH_{stage.upper()}_PORT"] == str(port) and env["SKINGENBENCH_HOST"] == "0.0.0.0"
        )


def test_compose_publishes_every_stage_and_shares_one_store():
    compose = yaml.safe_load((ROOT / "deploy/compose/docker-compose.yaml").read_text())
    for stage, (_, port) in SERVICES.items():
        service = compose["services"][stage]
        assert f"{port}:{port}" in service["ports"]
        assert service["environment"]["SKINGENBENCH_STORE"] == "s3://skingenbench"


def test_dockerfile_extras_exist_in_pyproject():
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for stage in SERVICES:
        assert stage in extras, f"docker/Dockerfile installs .[{stage}] but pyproject has no such extra"
    dockerfile = (ROOT / "docker/Dockerfile").read_text()
    assert re.search(r"skingenbench serve", dockerfile)


def test_prefect_deployment_points_at_the_flow_and_headless_services():
    config = yaml.safe_load((ROOT / "deploy/prefect.yaml").read_text())
    module, _, function = config["deployments"][0]["entrypoint"].partition(":")
    assert (ROOT / module).exists() and f"def {function}(" in (ROOT / module).read_text()
    env = config["deployments"][0]["work_pool"]["job_variables"]["env"]
    for stage, (_, port) in SERVICES.items():
        assert env[f"SKINGENBENCH_{stage.upper()}_ENDPOINTS"].endswith(f":{port}")
