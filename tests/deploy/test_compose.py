"""deploy/compose/: the client's own validation (`docker compose config` / `docker-compose config`) when a
client is installed, and the file's agreement with the code and the Dockerfile: ports, environment names,
build targets, healthchecks, loopback-only ports, no default secrets, a pinned MinIO, stop grace above the
servers' drain. (The stack itself runs in `make deploy-check`.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from skingenbench.services.platform.settings import SERVICES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy/compose"
BASE = COMPOSE / "docker-compose.yaml"
OVERRIDES = ("s3-standin.override.yaml", "gpu.override.yaml")
SECRETS = ("SKINGENBENCH_AUTH_TOKEN", "MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD")


def _client() -> list[str] | None:
    if (
        shutil.which("docker")
        and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0
    ):
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


def _config(files: list[Path], env: dict[str, str]) -> subprocess.CompletedProcess:
    client = _client()
    if client is None:
        pytest.skip("no docker compose client installed")
    command = [*client]
    for file in files:
        command += ["-f", str(file)]
    clean = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("SKINGENBENCH_")}
    return subprocess.run([*command, "config"], capture_output=True, text=True, env={**clean, **env})


def _raw() -> dict:
    return yaml.safe_load(BASE.read_text())  # the x- anchors merge (<<) in PyYAML too


def _stages(services: dict) -> dict[str, dict]:
    return {name: spec for name, spec in services.items() if name in SERVICES}


@pytest.mark.parametrize("overrides", [(), ("s3-standin.override.yaml",), OVERRIDES])
def test_compose_config_accepts_the_files(overrides):
    env = {name: "x" * 16 for name in SECRETS}
    result = _config([BASE, *(COMPOSE / o for o in overrides)], env)
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == {"minio", *SERVICES}
    if "s3-standin.override.yaml" in overrides:
        assert services["minio"]["image"] == "local/moto-s3"
        assert "mc" not in services["minio"]["healthcheck"]["test"]
    if "gpu.override.yaml" in overrides:
        for stage in ("generation", "evaluation", "classification"):
            devices = services[stage]["deploy"]["resources"]["reservations"]["devices"]
            assert devices[0]["capabilities"] == ["gpu"]


@pytest.mark.parametrize("missing", SECRETS)
def test_compose_refuses_to_start_without_each_secret(missing):
    env = {name: "x" * 16 for name in SECRETS if name != missing}
    result = _config([BASE], env)
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr, result.stderr


def test_no_secret_has_a_default_value():
    text = BASE.read_text()
    for name in SECRETS:
        uses = re.findall(r"\$\{" + name + r"([^}]*)\}", text)
        assert uses, name
        assert all(use.startswith(":?") for use in uses), (name, uses)
    assert "minio123" not in text and "skingenbench-secret" not in text


def test_ports_are_the_code_ports_on_loopback_by_default():
    for stage, spec in _stages(_raw()["services"]).items():
        port = SERVICES[stage][1]
        assert spec["ports"] == [f"${{SKINGENBENCH_BIND:-127.0.0.1}}:{port}:{port}"], stage
    for published in _raw()["services"]["minio"]["ports"]:
        assert published.startswith("${SKINGENBENCH_BIND:-127.0.0.1}:"), published


def test_each_stage_builds_its_dockerfile_target_and_tags_the_variant():
    targets = set(re.findall(r"^FROM \S+ AS (\S+)", (ROOT / "docker/Dockerfile").read_text(), flags=re.M))
    for stage, spec in _stages(_raw()["services"]).items():
        build = spec["build"]
        assert build["target"] == stage and stage in targets
        assert (COMPOSE / build["context"] / build["dockerfile"]).resolve() == ROOT / "docker/Dockerfile"
        assert build["args"]["TORCH_VARIANT"] == "${SKINGENBENCH_TORCH_VARIANT:-cpu}"
        assert spec["image"] == f"skingenbench/{stage}:${{SKINGENBENCH_TORCH_VARIANT:-cpu}}"


def test_every_stage_has_a_grpc_healthcheck_and_waits_for_a_healthy_store():
    services = _raw()["services"]
    assert services["minio"]["healthcheck"]["test"]
    for stage, spec in _stages(services).items():
        assert spec["healthcheck"]["test"] == ["CMD", "python3", "/usr/local/lib/skingenbench/healthcheck.py"]
        assert spec["depends_on"] == {"minio": {"condition": "service_healthy"}}, stage
    assert (ROOT / "docker/healthcheck.py").exists()


def test_minio_is_pinned_to_a_release():
    image = _raw()["services"]["minio"]["image"]
    assert re.search(r"minio/minio:RELEASE\.\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ", image), image
    assert ":latest" not in image


def _known_settings() -> set[str]:
    """SKINGENBENCH_* names the code reads: literal ones, and the ``get("X")`` names of settings.py."""
    names: set[str] = set()
    for folder in ("services", "skingenbench", "flows"):
        for path in (ROOT / folder).rglob("*.py"):
            names.update(re.findall(r"SKINGENBENCH_[A-Z0-9_]*[A-Z0-9]", path.read_text(errors="replace")))
    settings = (ROOT / "services/platform/settings.py").read_text()
    names.update(f"SKINGENBENCH_{name}" for name in re.findall(r'get\("([A-Z0-9_]+)"', settings))
    names.update(f"SKINGENBENCH_{stage.upper()}_PORT" for stage in SERVICES)
    return names


def test_every_environment_name_is_one_the_code_reads():
    known = _known_settings()
    for name, spec in _raw()["services"].items():
        for variable in spec.get("environment", {}):
            if variable.startswith("SKINGENBENCH_"):
                assert variable in known, f"{name}: {variable} is read nowhere in the code"
    # The commented TLS lines name real settings too.
    for variable in re.findall(r"#\s*(SKINGENBENCH_[A-Z_]+):", BASE.read_text()):
        assert variable in known, variable


def test_stop_grace_leaves_a_margin_above_the_servers_drain():
    for stage, spec in _stages(_raw()["services"]).items():
        grace = int(spec["stop_grace_period"].removesuffix("s"))
        drain = float(spec["environment"]["SKINGENBENCH_SHUTDOWN_GRACE_S"])
        assert grace >= drain + 10, stage


def test_read_roots_and_weights_are_mounted_read_only_where_the_settings_point():
    services = _raw()["services"]
    pre = services["preprocessing"]
    root = pre["environment"]["SKINGENBENCH_READ_ROOTS"]
    assert any(v.endswith(f":{root}:ro") for v in pre["volumes"])
    for stage in ("evaluation", "classification"):
        weights = services[stage]["environment"]["SKINGENBENCH_WEIGHTS_DIR"]
        assert any(v.endswith(f":{weights}:ro") for v in services[stage]["volumes"]), stage


def test_env_example_names_every_required_secret_without_a_value():
    example = (COMPOSE / ".env.example").read_text()
    for name in SECRETS:
        line = next(line for line in example.splitlines() if line.startswith(f"{name}="))
        assert name == "MINIO_ROOT_USER" or line == f"{name}=", line
