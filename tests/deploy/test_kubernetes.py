"""deploy/k8s: each overlay builds (here with `jsonpatch`, and with kubectl where it exists, the same result),
is valid against the Kubernetes schemas (`kubernetes-validate --strict`), passes Pod Security `restricted`,
and agrees with the code: ports, env names, weights, secrets, grace, probes, GPU knobs, network policy."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from skingenbench.services.core.classifiers.models import SHA256SUMS
from skingenbench.services.platform.settings import SERVICES, ServiceSettings

from skingenbench.cli import build_parser
from tests.deploy.kustomize import build, by_identity, kubectl_build
from tests.deploy.pod_security import house_findings, restricted_findings

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy/k8s"
OVERLAYS = ("cpu", "gpu")
NAMESPACE = "skingenbench"
HOME = "/srv"  # the image's HOME and WORKDIR (docker/Dockerfile)
TORCH_STAGES = ("generation", "evaluation", "classification")
WEIGHTS_STAGES = ("evaluation", "classification")
# generation took up to 73 s to start (issue 15); the startup probe allows at least twice that
SLOWEST_START_S = 73
# from SIGKILL's side: the shared drain budget plus this margin must fit in terminationGracePeriodSeconds
GRACE_MARGIN_S = 20
K8S_VERSION = "1.33.0"


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request) -> tuple[str, list[dict[str, Any]]]:
    return request.param, build(K8S / "overlays" / request.param)


def _of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def test_python_build_equals_kubectl_kustomize(overlay):
    name, docs = overlay
    reference = kubectl_build(K8S / "overlays" / name)
    if reference is None:
        pytest.skip("kubectl is not installed; the jsonpatch build is checked by the other tests alone")
    assert by_identity(docs) == by_identity(reference)


def test_python_build_refuses_what_it_cannot_apply(tmp_path):
    (tmp_path / "kustomization.yaml").write_text("resources: []\nimages: [{name: x, newTag: y}]\n")
    with pytest.raises(ValueError, match="images"):
        build(tmp_path)


def test_every_document_is_valid_against_the_kubernetes_schemas(overlay):
    _, docs = overlay
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_schema_validation_catches_an_unknown_field(overlay):
    _, docs = overlay
    deployment = dict(_of_kind(docs, "Deployment")["generation"])
    broken = yaml.safe_load(yaml.safe_dump(deployment))
    _container(broken)["readinesProbe"] = {"grpc": {"port": 1}}  # a typo strict validation must reject
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_every_pod_passes_pod_security_restricted_and_the_house_rules(overlay):
    _, docs = overlay
    deployments = _of_kind(docs, "Deployment")
    assert set(deployments) == set(SERVICES)
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]["spec"]
        assert restricted_findings(pod) == [], name
        assert house_findings(pod, HOME) == [], name
        assert pod["automountServiceAccountToken"] is False
        assert _env(_container(deployment))["HOME"]["value"] == HOME


def test_the_pod_security_check_can_fail(overlay):
    _, docs = overlay
    pod = yaml.safe_load(
        yaml.safe_dump(_of_kind(docs, "Deployment")["evaluation"]["spec"]["template"]["spec"])
    )
    del pod["initContainers"][0]["securityContext"]["allowPrivilegeEscalation"]
    pod["containers"][0]["securityContext"]["capabilities"] = {"add": ["SYS_ADMIN"]}
    pod["volumes"].append({"name": "host", "hostPath": {"path": "/"}})
    found = restricted_findings(pod)
    assert any("verify-weights: allowPrivilegeEscalation" in f for f in found)
    assert any("do not drop ALL" in f for f in found) and any("SYS_ADMIN" in f for f in found)
    assert any("volume host" in f for f in found)
    pod["containers"][0]["volumeMounts"] = []
    assert any("no emptyDir mounted at /tmp" in f for f in house_findings(pod, HOME))


def test_the_namespace_enforces_restricted(overlay):
    _, docs = overlay
    namespace = _of_kind(docs, "Namespace")[NAMESPACE]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {NAMESPACE}


def test_every_stage_is_served_on_its_port_behind_a_headless_service(overlay):
    _, docs = overlay
    services, deployments = _of_kind(docs, "Service"), _of_kind(docs, "Deployment")
    assert set(services) == set(deployments) == set(SERVICES)
    for stage, (_, port) in SERVICES.items():
        assert services[stage]["spec"]["clusterIP"] == "None"  # headless: the flow sees every pod
        assert services[stage]["spec"]["ports"][0]["port"] == port
        container = _container(deployments[stage])
        assert container["ports"] == [{"name": "grpc", "containerPort": port}]
        assert container["args"] == ["serve", stage]  # the entrypoint runs `skingenbench serve <stage>`
        assert build_parser().parse_args(container["args"]).func.__name__ == "_cmd_serve"
        env = {name: entry.get("value") for name, entry in _env(container).items()}
        settings = ServiceSettings.from_env(stage, {k: v for k, v in env.items() if v is not None})
        assert (settings.port, settings.host) == (port, "0.0.0.0")
        assert settings.require_token and settings.job_slots == 1


def test_probes_ask_grpc_health_on_the_stage_port_and_allow_the_slowest_start(overlay):
    _, docs = overlay
    for stage, deployment in _of_kind(docs, "Deployment").items():
        container, port = _container(deployment), SERVICES[stage][1]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["grpc"] == {"port": port}, (stage, probe)
        startup = container["startupProbe"]
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 2 * SLOWEST_START_S


def test_termination_grace_covers_the_shared_drain_budget(overlay):
    _, docs = overlay
    for stage, deployment in _of_kind(docs, "Deployment").items():
        env = {k: v.get("value") for k, v in _env(_container(deployment)).items()}
        budget = ServiceSettings.from_env(
            stage, {"SKINGENBENCH_SHUTDOWN_GRACE_S": env["SKINGENBENCH_SHUTDOWN_GRACE_S"]}
        )
        grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        assert budget.shutdown_grace_s + GRACE_MARGIN_S <= grace, stage


def _names_the_code_reads() -> set[str]:
    """SKINGENBENCH_* names spelt out in the code, plus those ServiceSettings.from_env builds per stage
    (``get("JOB_SLOTS")`` reads SKINGENBENCH_<STAGE>_JOB_SLOTS, then SKINGENBENCH_JOB_SLOTS)."""
    code = "\n".join(
        p.read_text()
        for folder in ("services", "flows", "skingenbench")
        for p in (ROOT / folder).rglob("*.py")
    )
    names = set(re.findall(r"SKINGENBENCH_[A-Z0-9_]*[A-Z0-9]", code))
    settings = (ROOT / "services/platform/settings.py").read_text()
    for suffix in [*re.findall(r'get\("([A-Z_]+)"', settings), "PORT", "HEALTH_PORT"]:
        names |= {f"SKINGENBENCH_{suffix}", *(f"SKINGENBENCH_{stage.upper()}_{suffix}" for stage in SERVICES)}
    return names


def test_every_env_name_is_one_the_code_reads(overlay):
    """A misspelt setting would be ignored silently; every SKINGENBENCH_* name set must be read somewhere."""
    _, docs = overlay
    known = _names_the_code_reads()
    assert "SKINGENBENCH_SHUTDOWN_GRACE_S" in known and "SKINGENBENCH_GENERATION_PORT" in known
    assert "SKINGENBENCH_SHUTDOWN_GRACE" not in known  # a prefix of a real name is not taken for one
    for deployment in _of_kind(docs, "Deployment").values():
        for name in _env(_container(deployment)):
            if name.startswith("SKINGENBENCH_"):
                assert name in known, f"{name} is set but no code reads it"


def test_credentials_come_from_secrets_that_the_example_defines(overlay):
    _, docs = overlay
    example = {
        d["metadata"]["name"]: d for d in yaml.safe_load_all((K8S / "secret.example.yaml").read_text())
    }
    config_maps = _of_kind(docs, "ConfigMap")
    for deployment in _of_kind(docs, "Deployment").values():
        env = _env(_container(deployment))
        for name in ("SKINGENBENCH_S3_ACCESS_KEY", "SKINGENBENCH_S3_SECRET_KEY", "SKINGENBENCH_AUTH_TOKEN"):
            assert "value" not in env[name], f"{name} must not be a literal"
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref["key"] in example[ref["name"]]["stringData"]
        for entry in env.values():
            ref = entry.get("valueFrom", {}).get("configMapKeyRef")
            if ref:
                assert ref["key"] in config_maps[ref["name"]]["data"]
    for secret in example.values():
        assert secret["metadata"]["namespace"] == NAMESPACE
        assert set(secret["stringData"].values()) == {"REPLACE-ME"}  # no usable credential in the repository


def test_weights_come_from_the_volume_and_are_checked_before_serving(overlay):
    _, docs = overlay
    deployments = _of_kind(docs, "Deployment")
    claim = _of_kind(docs, "PersistentVolumeClaim")["skingenbench-weights"]
    for stage in WEIGHTS_STAGES:
        pod = deployments[stage]["spec"]["template"]["spec"]
        volumes = {v["name"]: v for v in pod["volumes"]}
        weights_dir = _env(pod["containers"][0])["SKINGENBENCH_WEIGHTS_DIR"]["value"]
        mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
        volume = volumes[mounts[weights_dir]["name"]]
        assert volume["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        assert mounts[weights_dir]["readOnly"] is True
        verify = pod["initContainers"][0]
        assert verify["command"][0] == "sha256sum" and verify["command"][-1] == SHA256SUMS
        assert verify["workingDir"] == weights_dir and verify["image"] == pod["containers"][0]["image"]
    for stage in set(SERVICES) - set(WEIGHTS_STAGES):
        assert "SKINGENBENCH_WEIGHTS_DIR" not in _env(_container(deployments[stage]))


def test_cpu_limits_are_set_and_reach_the_thread_count(overlay):
    _, docs = overlay
    for deployment in _of_kind(docs, "Deployment").values():
        container = _container(deployment)
        assert container["resources"]["limits"]["cpu"] == container["resources"]["requests"]["cpu"]
        field = _env(container)["OMP_NUM_THREADS"]["valueFrom"]["resourceFieldRef"]
        assert field == {"resource": "limits.cpu", "divisor": "1"}


def test_every_replicated_stage_has_a_disruption_budget(overlay):
    _, docs = overlay
    budgets = _of_kind(docs, "PodDisruptionBudget")
    for stage, deployment in _of_kind(docs, "Deployment").items():
        if deployment["spec"]["replicas"] > 1:
            budget = budgets[stage]["spec"]
            assert budget["selector"] == deployment["spec"]["selector"]
            assert budget["maxUnavailable"] < deployment["spec"]["replicas"]
        else:
            assert stage not in budgets  # one pod and a budget: no node could ever be drained


def test_the_network_policy_admits_only_the_flow_and_the_stages(overlay):
    _, docs = overlay
    policies = _of_kind(docs, "NetworkPolicy")
    stages = policies["stages"]["spec"]
    assert stages["podSelector"] == {"matchLabels": {"skingenbench.io/role": "stage"}}
    for deployment in _of_kind(docs, "Deployment").values():
        assert deployment["spec"]["template"]["metadata"]["labels"]["skingenbench.io/role"] == "stage"
    (rule,) = stages["ingress"]
    (peer,) = rule["from"]
    assert peer == {"podSelector": {"matchExpressions": [
        {"key": "skingenbench.io/role", "operator": "In", "values": ["flow", "stage"]}]}}  # fmt: skip
    grpc = next(p for p in rule["ports"] if "endPort" in p)
    assert all(grpc["port"] <= port <= grpc["endPort"] for _, port in SERVICES.values())
    assert policies["flow"]["spec"]["ingress"] == []


def test_gpu_overlay_gives_the_torch_stages_a_gpu_and_the_knobs(overlay):
    name, docs = overlay
    for stage, deployment in _of_kind(docs, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        resources = pod["containers"][0]["resources"]
        images = {c["image"] for c in [*pod.get("initContainers", []), *pod["containers"]]}
        if name == "gpu" and stage in TORCH_STAGES:
            assert resources["limits"]["nvidia.com/gpu"] == resources["requests"]["nvidia.com/gpu"] == "1"
            assert pod["nodeSelector"] and pod["tolerations"][0]["key"] == "nvidia.com/gpu"
            assert images == {f"skingenbench/{stage}:cuda"}
        else:
            assert "nvidia.com/gpu" not in resources.get("limits", {})
            assert "tolerations" not in pod and "nodeSelector" not in pod
            assert images == {f"skingenbench/{stage}:cpu"}
        device = _env(pod["containers"][0]).get("SKINGENBENCH_DEVICE")
        assert (device or {}).get("value") == ("cpu" if name == "cpu" and stage in TORCH_STAGES else None)


def test_images_are_targets_of_the_one_dockerfile(overlay):
    _, docs = overlay
    dockerfile = (ROOT / "docker/Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)", dockerfile, flags=re.M))
    for deployment in _of_kind(docs, "Deployment").values():
        for container in deployment["spec"]["template"]["spec"].get("initContainers", []) + [
            _container(deployment)
        ]:
            assert container["image"].split("/")[1].split(":")[0] in targets
    workdir = re.findall(r"^WORKDIR (\S+)", dockerfile, flags=re.M)[-1]
    home = re.search(r"HOME=(\S+)", dockerfile)
    assert workdir == HOME and home is not None and home.group(1) == HOME
