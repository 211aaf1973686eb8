"""deploy/prefect.yaml and the Kubernetes work pool's base job template agree with the code and with
deploy/k8s, and the Job prefect-kubernetes renders from them is one a cluster admits and the image runs.

The rendering here is prefect-kubernetes' own (``from_template_and_values`` + ``prepare_for_flow_run``, the
two steps of ``KubernetesWorkerJobConfiguration.resolve_for_flow_run``) on in-memory Prefect records, with
no server; ``make deploy-check`` (bench/deploy_prefect.py) does the same against a real server after a
real ``prefect deploy`` and runs the Job's container in the flow image."""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from prefect import Flow
from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.objects import Flow as APIFlow
from prefect.client.schemas.objects import FlowRun
from prefect.client.schemas.responses import DeploymentResponse
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.utilities.importtools import import_object
from prefect_kubernetes.worker import KubernetesWorker, KubernetesWorkerJobConfiguration
from skingenbench.flows.benchmark import STORE_RUNS_DIR
from skingenbench.services.platform.settings import SERVICES

from bench.deploy_prefect import container_env, docker_run_args
from tests.deploy.kustomize import build
from tests.deploy.pod_security import house_findings, restricted_findings

ROOT = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((ROOT / "deploy/prefect.yaml").read_text())
DEPLOYMENTS = {d["name"]: d for d in CONFIG["deployments"]}
TEMPLATE = json.loads((ROOT / "deploy/k8s/prefect-base-job-template.json").read_text())
KUBERNETES = ("paper", "smoke")
LOCAL = ("paper-local", "smoke-local")
HOME = "/srv"
# An address nothing listens on: the rendering must not need a server (no block or variable placeholders).
NO_SERVER = "http://127.0.0.1:9/api"
STORE_VALUES = {
    "SKINGENBENCH_STORE": "s3://skingenbench",
    "SKINGENBENCH_S3_ENDPOINT": "http://127.0.0.1:9000",
    "SKINGENBENCH_S3_ACCESS_KEY": "access",
    "SKINGENBENCH_S3_SECRET_KEY": "secret",
    "SKINGENBENCH_AUTH_TOKEN": "token",
}


def _render(name: str, flow_run_variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Job a Kubernetes worker would create for a flow run of deployment ``name``."""
    deployment = DEPLOYMENTS[name]
    flow = APIFlow(name="skingenbench-grid")
    record = DeploymentResponse(
        name=name, flow_id=flow.id, job_variables=copy.deepcopy(deployment["work_pool"]["job_variables"])
    )
    flow_run = FlowRun(
        flow_id=flow.id, name="test-run", deployment_id=record.id, job_variables=flow_run_variables or {}
    )
    variables = copy.deepcopy(record.job_variables)
    variables["env"] = {**variables.get("env", {}), **(flow_run_variables or {}).get("env", {})}

    async def render() -> dict[str, Any]:
        configuration = await KubernetesWorkerJobConfiguration.from_template_and_values(
            TEMPLATE, variables, client=PrefectClient(api=NO_SERVER)
        )
        configuration.prepare_for_flow_run(flow_run=flow_run, deployment=record, flow=flow)
        return configuration.job_manifest

    with temporary_settings(updates={PREFECT_API_URL: NO_SERVER}):  # a worker's settings
        return asyncio.run(render())


def test_every_entrypoint_is_the_flow_and_takes_the_parameters():
    for name, deployment in DEPLOYMENTS.items():
        flow = import_object(deployment["entrypoint"])
        assert isinstance(flow, Flow) and flow.name == "skingenbench-grid", name
        accepted = inspect.signature(flow.fn).parameters
        assert set(deployment["parameters"]) <= set(accepted), name
        assert (ROOT / "flows/grids" / f"{deployment['parameters']['grid_spec']}.yaml").exists()


def test_kubernetes_deployments_run_in_the_stages_namespace_from_the_flow_image():
    base = build(ROOT / "deploy/k8s/base")
    services = {d["metadata"]["name"]: d for d in base if d["kind"] == "Service"}
    namespace = {d["metadata"]["namespace"] for d in base if d["kind"] != "Namespace"}
    dockerfile = (ROOT / "docker/Dockerfile").read_text()
    workdir = re.findall(r"^WORKDIR (\S+)", dockerfile, flags=re.M)[-1]
    store = next(d for d in base if d["kind"] == "ConfigMap")["data"]["SKINGENBENCH_STORE"]
    for name in KUBERNETES:
        deployment = DEPLOYMENTS[name]
        variables = deployment["work_pool"]["job_variables"]
        assert {variables["namespace"]} == namespace
        assert variables["image"].startswith("skingenbench/flow:") and re.search(
            r"^FROM \S+ AS flow$", dockerfile, re.M
        )
        (step,) = deployment["pull"]
        assert step == {"prefect.deployments.steps.set_working_directory": {"directory": workdir}}
        for stage, (_, port) in SERVICES.items():
            target = variables["env"][f"SKINGENBENCH_{stage.upper()}_ENDPOINTS"]
            host, _, target_port = target.removeprefix("dns:///").rpartition(":")
            service, ns = host.split(".")[:2]
            assert (service, ns, int(target_port)) == (stage, variables["namespace"], port)
            assert services[service]["spec"]["clusterIP"] == "None"
        # The report goes to the store the Job is given (SKINGENBENCH_STORE from the ConfigMap): a Job's
        # own filesystem is gone when it ends.
        assert deployment["parameters"]["runs_dir"] == STORE_RUNS_DIR and store.startswith("s3://")
        assert not any(k.startswith("SKINGENBENCH_S3") or k.endswith("TOKEN") for k in variables["env"])


def test_local_deployments_run_from_the_deploying_folder_against_local_ports():
    for name in LOCAL:
        deployment = DEPLOYMENTS[name]
        env = deployment["work_pool"]["job_variables"]["env"]
        (step,) = deployment["pull"]
        directory = step["prefect.deployments.steps.set_working_directory"]["directory"]
        variable = re.fullmatch(r"\{\{ \$(\w+) \}\}", directory).group(1)
        assert env[variable] == "{{ $PWD }}"  # resolved by `prefect deploy`, read back when the run starts
        for stage, (_, port) in SERVICES.items():
            assert env[f"SKINGENBENCH_{stage.upper()}_ENDPOINTS"] == f"127.0.0.1:{port}"
        assert not Path(deployment["parameters"]["runs_dir"]).is_absolute()


def test_the_base_job_template_is_prefect_kubernetes_own_plus_the_hardening():
    default = KubernetesWorker.get_default_base_job_template()
    assert set(TEMPLATE["job_configuration"]) == set(default["job_configuration"])
    assert set(TEMPLATE["variables"]["properties"]) == set(default["variables"]["properties"])
    assert TEMPLATE["variables"]["properties"]["namespace"]["default"] == "skingenbench"
    # The Job's container still takes the flow-run command and image from Prefect.
    container = TEMPLATE["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == "{{ command }}" and container["image"] == "{{ image }}"


@pytest.mark.parametrize("name", KUBERNETES)
def test_the_rendered_job_is_admitted_and_runs_prefect_flow_run_execute(name):
    job = _render(name)
    assert job["metadata"]["namespace"] == "skingenbench"
    pod = job["spec"]["template"]["spec"]
    assert restricted_findings(pod) == [] and house_findings(pod, HOME) == []
    assert job["spec"]["template"]["metadata"]["labels"]["skingenbench.io/role"] == "flow"  # NetworkPolicy
    container = pod["containers"][0]
    assert container["args"] == ["prefect", "flow-run", "execute"]
    assert container["image"] == DEPLOYMENTS[name]["work_pool"]["job_variables"]["image"]
    env = {e["name"]: e for e in container["env"]}
    assert env["PREFECT__FLOW_RUN_ID"]["value"]
    assert env["PREFECT_API_URL"]["value"] == NO_SERVER  # the pod reports to the worker's API
    assert env["SKINGENBENCH_GENERATION_ENDPOINTS"]["value"].startswith("dns:///generation.")
    for key in ("SKINGENBENCH_S3_ACCESS_KEY", "SKINGENBENCH_S3_SECRET_KEY", "SKINGENBENCH_AUTH_TOKEN"):
        assert "value" not in env[key] and env[key]["valueFrom"]["secretKeyRef"]["key"] == key
    # prefect-kubernetes requires `parallelism` and `completions` in the *pod* spec (its
    # _get_base_job_manifest; they are Job fields): the API server drops them with a warning, strict
    # validation rejects them. Everything else must pass strictly.
    strict = copy.deepcopy(job)
    assert {strict["spec"]["template"]["spec"].pop(f) for f in ("parallelism", "completions")} == {1}
    kubernetes_validate.validate(strict, "1.33.0", strict=True)
    with pytest.raises(kubernetes_validate.ValidationError, match="completions"):
        kubernetes_validate.validate(job, "1.33.0", strict=True)


def test_secret_references_in_the_job_exist_in_the_example_secret_and_the_config_map():
    example = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all((ROOT / "deploy/k8s/secret.example.yaml").read_text())
    }
    config = next(d for d in build(ROOT / "deploy/k8s/base") if d["kind"] == "ConfigMap")
    for entry in _render("smoke")["spec"]["template"]["spec"]["containers"][0]["env"]:
        source = entry.get("valueFrom", {})
        if "secretKeyRef" in source:
            assert source["secretKeyRef"]["key"] in example[source["secretKeyRef"]["name"]]["stringData"]
        if "configMapKeyRef" in source:
            assert source["configMapKeyRef"]["name"] == config["metadata"]["name"]
            assert source["configMapKeyRef"]["key"] in config["data"]


def test_a_flow_run_override_reaches_the_job_and_docker_runs_it_hardened():
    job = _render("smoke", {"env": {"SKINGENBENCH_GENERATION_ENDPOINTS": "127.0.0.1:50052"}})
    env = container_env(job, STORE_VALUES)
    assert env["SKINGENBENCH_GENERATION_ENDPOINTS"] == "127.0.0.1:50052"
    assert env["SKINGENBENCH_AUTH_TOKEN"] == "token" and env["HOME"] == HOME
    args = docker_run_args(job, env, image="skingenbench/flow:cpu")
    assert args[args.index("--user") + 1] == "10001:10001"
    assert "--read-only" in args and args[args.index("--cap-drop") + 1] == "ALL"
    assert {args[i + 1].split(":")[0] for i, a in enumerate(args) if a == "--tmpfs"} == {"/tmp", HOME}
    assert args[-4:] == ["skingenbench/flow:cpu", "prefect", "flow-run", "execute"]


def test_a_missing_secret_value_stops_the_run_like_a_missing_secret_key():
    values = {k: v for k, v in STORE_VALUES.items() if k != "SKINGENBENCH_AUTH_TOKEN"}
    with pytest.raises(KeyError, match="skingenbench-auth/SKINGENBENCH_AUTH_TOKEN"):
        container_env(_render("smoke"), values)
