"""The Prefect deployment on a Kubernetes work pool, rendered by prefect-kubernetes and run in the flow image.

There is no Kubernetes cluster here, so the Job a Kubernetes worker would create is rendered with
prefect-kubernetes' own code (``KubernetesWorkerJobConfiguration.resolve_for_flow_run``: the work pool's base
job template, the deployment's and the flow run's job variables, ``prepare_for_flow_run``) and its container is
run with ``docker run`` the way the kubelet would run it: the image's ENTRYPOINT with the Job's ``args``, its
env (``valueFrom`` references resolved from the values the caller gives for the ConfigMap and the Secrets), the
pod's user, a read-only root filesystem with its ``emptyDir`` volumes as tmpfs, no capabilities, no privilege
escalation. The flow run must then reach Completed on the local Prefect server it reports to.

Entry point for ``make deploy-check`` (bench/deploy_check.py)::

    check_prefect_flow_job(flow_image, docker_env, results, *, deployment="smoke", parameters=None,
                           timeout_s=1800.0, docker="docker") -> dict

- ``flow_image``: the flow image's tag (``skingenbench/flow:cpu``); it replaces the deployment's ``image`` job
  variable for this run, as ``prefect deployment run --job-variable image=...`` would.
- ``docker_env``: values for the container, by variable name. Names the Job takes from the ConfigMap or the
  Secrets (``SKINGENBENCH_STORE``, ``SKINGENBENCH_S3_*``, ``SKINGENBENCH_AUTH_TOKEN``) stand in for those
  objects; every other name (the ``SKINGENBENCH_<STAGE>_ENDPOINTS`` of the stack under test, say) becomes a
  flow-run ``env`` job variable, so it reaches the container through Prefect's rendering like an operator's
  override would.
- ``results``: a dict the outcome is also written into under ``"prefect_flow_job"``.
- returns ``{"ok", "state", "flow_run_id", "job" (the rendered manifest, secrets masked), "docker_args",
  "exit_code", "seconds": {"server", "deploy", "run"}, "log_tail"}``.

The container joins the host's network (the private daemon here has no bridge), so the server is reached at
127.0.0.1 like the worker would reach it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from skingenbench.cli.run import prefect_server_env

ROOT = Path(__file__).resolve().parents[1]
PREFECT_FILE = ROOT / "deploy/prefect.yaml"
BASE_JOB_TEMPLATE = ROOT / "deploy/k8s/prefect-base-job-template.json"
WORK_POOL = "skingenbench-k8s"
FLOW_NAME = "skingenbench-grid"
SECRET_NAMES = ("SECRET", "TOKEN", "ACCESS_KEY", "PASSWORD")


# -- the local Prefect server ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_prefect_server(
    home: Path, timeout_s: float = 180.0
) -> tuple[subprocess.Popen, str, dict[str, str]]:
    """A Prefect server on a free port under ``home``: (process, API URL, the environment its clients use)."""
    port = _free_port()
    env = prefect_server_env(home, port)
    log = open(home / "prefect-server.log", "ab")  # noqa: SIM115 (lives as long as the server)
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the Prefect server exited; see {home / 'prefect-server.log'}")
        try:
            with urllib.request.urlopen(f"{api}/health", timeout=2) as reply:
                if reply.status == 200:
                    return process, api, {**env, "PREFECT_API_URL": api}
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise RuntimeError(f"the Prefect server did not become healthy within {timeout_s:.0f} s")


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# -- the work pool, the deployment, a flow run ---------------------------------------------------------


def _prefect(args: list[str], env: dict[str, str], cwd: Path = ROOT) -> str:
    """A Prefect CLI command (the operator's path, docs/kubernetes.md), failing loudly with its output."""
    done = subprocess.run(
        [sys.executable, "-m", "prefect", "--no-prompt", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"prefect {shlex.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
        )
    return done.stdout


def deploy(env: dict[str, str], deployment: str) -> None:
    """The documented commands: the Kubernetes pool with this repository's base job template, then
    ``prefect deploy`` of one deployment of deploy/prefect.yaml."""
    _prefect(
        ["work-pool", "create", WORK_POOL, "--type", "kubernetes", "--base-job-template", str(BASE_JOB_TEMPLATE),
         "--overwrite"],
        env,
    )  # fmt: skip
    _prefect(["deploy", "--prefect-file", str(PREFECT_FILE), "--name", deployment], env)


async def _render(
    api: str, deployment: str, parameters: dict[str, Any] | None, job_variables: dict[str, Any]
) -> tuple[str, dict[str, Any]]:
    """A flow run of the deployment, and the Job prefect-kubernetes' worker would create for it."""
    from prefect.client.orchestration import PrefectClient
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    # Under the settings a worker of this server has: the Job's environment starts from the worker's
    # explicitly set Prefect settings (BaseJobConfiguration._base_environment), PREFECT_API_URL among them;
    # without it `prefect flow-run execute` in the pod would start a temporary server of its own.
    with temporary_settings(updates={PREFECT_API_URL: api}):
        async with PrefectClient(api=api) as client:
            record = await client.read_deployment_by_name(f"{FLOW_NAME}/{deployment}")
            flow_run = await client.create_flow_run_from_deployment(
                record.id, parameters=parameters, job_variables=job_variables
            )
            pool = await client.read_work_pool(WORK_POOL)
            configuration = await KubernetesWorkerJobConfiguration.resolve_for_flow_run(
                flow_run, client=client, work_pool=pool, worker_name="deploy-check", deployment=record
            )
            return str(flow_run.id), configuration.job_manifest


async def _final_state(api: str, flow_run_id: str) -> str:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api=api) as client:
        flow_run = await client.read_flow_run(flow_run_id)
        return flow_run.state.type.value if flow_run.state else "NONE"


def render_flow_job(
    api: str, deployment: str = "smoke", parameters: dict[str, Any] | None = None, **job_variables: Any
) -> tuple[str, dict[str, Any]]:
    """(flow run id, the rendered Job manifest) for a new flow run of a deployment already on ``api``."""
    return asyncio.run(_render(api, deployment, parameters, job_variables))


# -- the Job's container under docker ------------------------------------------------------------------


def _masked(name: str, value: str) -> str:
    return "***" if any(part in name for part in SECRET_NAMES) and value else value


def container_env(job: dict[str, Any], values: dict[str, str]) -> dict[str, str]:
    """The container's environment as the kubelet builds it: literal values as given, ``valueFrom`` from
    ``values`` (which stand in for the ConfigMap and the Secrets). A referenced key without a value is an
    error, as a missing Secret key keeps a pod from starting (CreateContainerConfigError)."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for entry in container.get("env", []):
        name = entry["name"]
        if "valueFrom" in entry:
            source = entry["valueFrom"]
            ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
            if ref is None:
                raise ValueError(
                    f"env {name}: only secretKeyRef and configMapKeyRef are resolved here, got {source}"
                )
            if ref["key"] not in values:
                raise KeyError(f"env {name}: no value given for {ref['name']}/{ref['key']}")
            env[name] = values[ref["key"]]
        else:
            env[name] = "" if entry.get("value") is None else str(entry["value"])
    return env


def docker_run_args(job: dict[str, Any], env: dict[str, str], image: str | None = None) -> list[str]:
    """``docker run`` arguments for the Job's first container, with the pod's hardening: its user and group,
    a read-only root filesystem with each ``emptyDir`` mount as a tmpfs owned by that user, all capabilities
    dropped, no new privileges. ``args`` follow the image (the ENTRYPOINT stays, as in Kubernetes when only
    ``args`` are set)."""
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    user, group = security.get("runAsUser"), security.get("runAsGroup", security.get("runAsUser"))
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    args = ["run", "--rm", "--network", "host"]
    if user is not None:
        args += ["--user", f"{user}:{group}"]
    if security.get("readOnlyRootFilesystem"):
        args.append("--read-only")
    if "ALL" in security.get("capabilities", {}).get("drop", []):
        args += ["--cap-drop", "ALL"]
    if security.get("allowPrivilegeEscalation") is False:
        args += ["--security-opt", "no-new-privileges"]
    for mount in container.get("volumeMounts", []):
        if mount["name"] not in empty_dirs:
            raise ValueError(f"volume {mount['name']!r}: only emptyDir volumes can be stood in for here")
        args += ["--tmpfs", f"{mount['mountPath']}:rw,exec,uid={user},gid={group},mode=0700"]
    if container.get("workingDir"):
        args += ["--workdir", container["workingDir"]]
    if container.get("command"):
        args += ["--entrypoint", container["command"][0]]
    for name, value in env.items():
        args += ["--env", f"{name}={value}"]
    args.append(image or container["image"])
    args += container.get("command", [])[1:] + list(container.get("args", []))
    return args


def _masked_job(job: dict[str, Any]) -> dict[str, Any]:
    job = json.loads(json.dumps(job))
    for entry in job["spec"]["template"]["spec"]["containers"][0].get("env", []):
        if "value" in entry and entry["value"] is not None:
            entry["value"] = _masked(entry["name"], str(entry["value"]))
    return job


def _masked_args(args: list[str]) -> list[str]:
    out = []
    for arg in args:
        name, sep, value = arg.partition("=")
        out.append(f"{name}={_masked(name, value)}" if sep and name.isupper() else arg)
    return out


def check_prefect_flow_job(
    flow_image: str,
    docker_env: dict[str, str],
    results: dict[str, Any],
    *,
    deployment: str = "smoke",
    parameters: dict[str, Any] | None = None,
    timeout_s: float = 1800.0,
    docker: str = "docker",
) -> dict[str, Any]:
    """Deploy, render the flow run's Job with prefect-kubernetes, run its container, check Completed."""
    referenced = {"SKINGENBENCH_STORE", "SKINGENBENCH_S3_ENDPOINT", "SKINGENBENCH_S3_ACCESS_KEY",
                  "SKINGENBENCH_S3_SECRET_KEY", "SKINGENBENCH_AUTH_TOKEN"}  # fmt: skip
    overrides = {k: v for k, v in docker_env.items() if k not in referenced}
    outcome: dict[str, Any] = {"ok": False, "deployment": deployment, "image": flow_image, "seconds": {}}
    results["prefect_flow_job"] = outcome
    with tempfile.TemporaryDirectory(prefix="sgb-prefect-") as folder:
        started = time.monotonic()
        server, api, env = start_prefect_server(Path(folder))
        try:
            outcome["seconds"]["server"] = round(time.monotonic() - started, 1)
            started = time.monotonic()
            deploy(env, deployment)
            job_variables: dict[str, Any] = {"image": flow_image}
            if overrides:
                job_variables["env"] = overrides
            flow_run_id, job = render_flow_job(api, deployment, parameters, **job_variables)
            outcome["seconds"]["deploy"] = round(time.monotonic() - started, 1)
            outcome["flow_run_id"] = flow_run_id
            outcome["job"] = _masked_job(job)
            env_names = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0].get("env", [])}
            if "PREFECT_API_URL" not in env_names:
                raise RuntimeError(
                    "the rendered Job has no PREFECT_API_URL: its flow run could not report back"
                )
            args = docker_run_args(job, container_env(job, docker_env))
            outcome["docker_args"] = _masked_args(args)
            started = time.monotonic()
            try:
                done = subprocess.run(
                    [docker, *args], capture_output=True, text=True, timeout=timeout_s, env=dict(os.environ)
                )
                outcome["exit_code"] = done.returncode
                outcome["log_tail"] = (done.stdout + done.stderr)[-4000:]
            except subprocess.TimeoutExpired as exc:
                outcome["exit_code"] = None
                outcome["log_tail"] = f"timed out after {timeout_s:.0f} s: {str(exc.stdout or '')[-2000:]}"
            outcome["seconds"]["run"] = round(time.monotonic() - started, 1)
            outcome["state"] = asyncio.run(_final_state(api, flow_run_id))
            outcome["ok"] = outcome["exit_code"] == 0 and outcome["state"] == "COMPLETED"
        finally:
            stop_process(server)
    return outcome


# -- the same file on a local process pool -----------------------------------------------------------

LOCAL_POOL = "skingenbench-local"


def check_local_process_flow(
    flow_env: dict[str, str],
    results: dict[str, Any],
    *,
    deployment: str = "smoke-local",
    parameters: dict[str, Any] | None = None,
    timeout_s: float = 1800.0,
) -> dict[str, Any]:
    """deploy/prefect.yaml's local deployment on a process pool: a local server, ``prefect work-pool create
    --type process``, ``prefect deploy`` from the repository root, a flow run whose ``env`` job variable
    carries ``flow_env`` (endpoints, store of the services under test), and ``prefect worker start
    --run-once`` executing it. Returns (and stores under ``results["prefect_local_flow"]``) ``{"ok",
    "state", "flow_run_id", "seconds", "log_tail"}``."""
    outcome: dict[str, Any] = {"ok": False, "deployment": deployment, "seconds": {}}
    results["prefect_local_flow"] = outcome
    with tempfile.TemporaryDirectory(prefix="sgb-prefect-") as folder:
        started = time.monotonic()
        server, api, env = start_prefect_server(Path(folder))
        try:
            outcome["seconds"]["server"] = round(time.monotonic() - started, 1)
            started = time.monotonic()
            _prefect(["work-pool", "create", LOCAL_POOL, "--type", "process", "--overwrite"], env)
            _prefect(
                ["deploy", "--prefect-file", str(PREFECT_FILE), "--name", deployment],
                {**env, "PWD": str(ROOT)},
            )
            flow_run_id = asyncio.run(_create_run(api, deployment, parameters, {"env": dict(flow_env)}))
            outcome["flow_run_id"] = flow_run_id
            outcome["seconds"]["deploy"] = round(time.monotonic() - started, 1)
            started = time.monotonic()
            try:
                done = subprocess.run(
                    [sys.executable, "-m", "prefect", "worker", "start", "--pool", LOCAL_POOL, "--run-once"],
                    cwd=folder, env=env, capture_output=True, text=True, timeout=timeout_s,
                )  # fmt: skip
                outcome["log_tail"] = (done.stdout + done.stderr)[-4000:]
            except subprocess.TimeoutExpired:
                outcome["log_tail"] = f"the worker did not finish within {timeout_s:.0f} s"
            outcome["seconds"]["run"] = round(time.monotonic() - started, 1)
            outcome["state"] = asyncio.run(_final_state(api, flow_run_id))
            outcome["ok"] = outcome["state"] == "COMPLETED"
        finally:
            stop_process(server)
    return outcome


async def _create_run(
    api: str, deployment: str, parameters: dict[str, Any] | None, job_variables: dict[str, Any]
) -> str:
    from prefect.client.orchestration import PrefectClient

    async with PrefectClient(api=api) as client:
        record = await client.read_deployment_by_name(f"{FLOW_NAME}/{deployment}")
        flow_run = await client.create_flow_run_from_deployment(
            record.id, parameters=parameters, job_variables=job_variables
        )
        return str(flow_run.id)
