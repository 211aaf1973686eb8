"""Run each Kubernetes Deployment's pod spec with ``docker run``, as a kubelet would, where there is no
cluster: init containers to completion, then the container with its command, args, env (values,
ConfigMap and Secret references, resource fields), user and group, read-only root filesystem, dropped
capabilities, no privilege escalation, emptyDir volumes as tmpfs, CPU and memory limits; then its
probes, polled as the kubelet polls them (startupProbe first, then readiness and liveness); then a stop
with the pod's terminationGracePeriodSeconds.

Generic: it reads whatever Deployments ``kubectl kustomize`` renders. Where a cluster would supply
something this machine has not, the replay says what it used instead (``substitutions`` in the result):
a PersistentVolumeClaim is a fresh Docker volume holding one file and its SHA256SUMS (what an operator's
weights copy leaves), the S3 endpoint's host is an S3 stand-in on the replay network, Secrets are values
made for the run, CPU limits above this machine's cores are capped to them.
"""

from __future__ import annotations

import math
import os
import re
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from bench.deploy.engine import docker
from bench.deploy.progress import say

NETWORK = "skingenbench-replay"


def render(overlay: Path) -> list[dict]:
    out = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {overlay}: {out.stderr[-1500:]}")
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def _quantity_cpu(value: str | int | float) -> float:
    text = str(value)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _quantity_bytes(value: str | int) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    match = re.match(r"^([\d.]+)([A-Za-z]*)$", str(value))
    if not match:
        raise ValueError(f"not a quantity: {value!r}")
    return int(float(match.group(1)) * units.get(match.group(2), 1))


class Replay:
    """The replay of one rendered manifest set; ``run_all`` runs every Deployment at once."""

    def __init__(
        self, docs: list[dict], secrets: dict[str, dict[str, str]], image_map: dict[str, str], s3_image: str
    ) -> None:
        self.docs = docs
        self.secrets = secrets
        self.image_map = image_map
        self.s3_image = s3_image
        self.config_maps = {
            d["metadata"]["name"]: d.get("data", {}) for d in docs if d["kind"] == "ConfigMap"
        }
        self.deployments = [d for d in docs if d["kind"] == "Deployment"]
        self.cpus = os.cpu_count() or 1
        self.created: list[tuple[str, str]] = []  # ("container"|"volume"|"network", name)
        self.substitutions: list[str] = []

    # -- the environment around the pods ----------------------------------------------------------------
    def _image(self, image: str) -> str:
        return self.image_map.get(image, image)

    def _resolve_env(self, container: dict, pod_name: str) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.config_maps.get(source["configMapRef"]["name"], {}))
            if "secretRef" in source:
                env.update(self.secrets.get(source["secretRef"]["name"], {}))
        for item in container.get("env", []):
            name = item["name"]
            if "value" in item:
                env[name] = str(item["value"])
                continue
            ref = item.get("valueFrom", {})
            if "configMapKeyRef" in ref:
                env[name] = self._key(self.config_maps, ref["configMapKeyRef"], "ConfigMap")
            elif "secretKeyRef" in ref:
                env[name] = self._key(self.secrets, ref["secretKeyRef"], "Secret")
            elif "resourceFieldRef" in ref:
                field = ref["resourceFieldRef"]
                resource = field["resource"]
                kind, _, what = resource.partition(".")
                value = container.get("resources", {}).get(kind, {}).get(what)
                if value is None:
                    raise ValueError(f"{name}: resourceFieldRef {resource} has no value in the container")
                divisor = field.get("divisor", "1")
                if what == "cpu":  # the kubelet rounds CPU up to whole divisors
                    env[name] = str(math.ceil(min(_quantity_cpu(value), self.cpus) / _quantity_cpu(divisor)))
                else:
                    env[name] = str(_quantity_bytes(value) // _quantity_bytes(divisor))
            elif "fieldRef" in ref:
                path = ref["fieldRef"]["fieldPath"]
                env[name] = {"metadata.name": pod_name, "metadata.namespace": "skingenbench"}.get(path, "")
        return env

    @staticmethod
    def _key(store: dict[str, dict[str, str]], ref: dict, kind: str) -> str:
        values = store.get(ref["name"])
        if values is None or ref["key"] not in values:
            if ref.get("optional"):
                return ""
            # What the kubelet does too: CreateContainerConfigError, the pod never starts.
            raise ValueError(f"{kind} {ref['name']} has no key {ref['key']} (the pod would not start)")
        return values[ref["key"]]

    def _network(self) -> None:
        docker("network", "rm", NETWORK, check=False)
        docker("network", "create", NETWORK)
        self.created.append(("network", NETWORK))
        endpoints = {
            urlparse(values["SKINGENBENCH_S3_ENDPOINT"])
            for values in self.config_maps.values()
            if values.get("SKINGENBENCH_S3_ENDPOINT")
        }
        for endpoint in endpoints:
            name = f"replay-s3-{abs(hash(endpoint.hostname)) % 10**6}"
            docker("rm", "-f", name, check=False)
            docker(
                "run", "-d", "--name", name, "--network", NETWORK, "--network-alias", endpoint.hostname,
                "-e", f"MOTO_PORT={endpoint.port or 80}", self.s3_image,
            )  # fmt: skip
            self.created.append(("container", name))
            self.substitutions.append(f"S3 endpoint {endpoint.geturl()}: the S3 stand-in {self.s3_image}")

    def _volumes(self, pod: dict, tag: str, image: str) -> dict[str, list[str]]:
        """Per volume name, the docker options that mount it (the mount path is added per container)."""
        volumes: dict[str, list[str]] = {}
        for volume in pod.get("volumes", []):
            name = f"replay-{tag}-{volume['name']}"
            docker("volume", "rm", "-f", name, check=False)
            if "emptyDir" in volume or ("secret" in volume and volume["secret"].get("optional")):
                # emptyDir: a tmpfs volume shared by the pod's containers, world-writable as the kubelet
                # makes it; an optional Secret that does not exist is mounted empty.
                limit = volume.get("emptyDir", {}).get("sizeLimit")
                options = "mode=1777" + (f",size={_quantity_bytes(limit)}" if limit else "")
                docker("volume", "create", "--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
                       "--opt", f"o={options}", name)  # fmt: skip
            elif "persistentVolumeClaim" in volume:
                docker("volume", "create", name)
                self._fill_claim(name, image)
                self.substitutions.append(
                    f"PVC {volume['persistentVolumeClaim']['claimName']}: a Docker volume with one file "
                    "and its SHA256SUMS"
                )
            elif "configMap" in volume:
                folder = Path(tempfile.mkdtemp(prefix=f"replay-{tag}-"))
                for key, value in self.config_maps.get(volume["configMap"]["name"], {}).items():
                    (folder / key).write_text(value)
                volumes[volume["name"]] = ["bind", str(folder)]
                continue
            else:
                raise ValueError(f"volume {volume['name']}: kind {sorted(volume)} is not replayed here")
            self.created.append(("volume", name))
            volumes[volume["name"]] = ["volume", name]
        return volumes

    @staticmethod
    def _fill_claim(volume: str, image: str) -> None:
        script = (
            "cd /claim && printf 'deploy-check placeholder weights\\n' > placeholder.bin "
            "&& sha256sum placeholder.bin > SHA256SUMS && chown -R 10001 /claim"
        )
        docker("run", "--rm", "--user", "0", "--network", "none", "--entrypoint", "sh",
               "-v", f"{volume}:/claim", image, "-c", script)  # fmt: skip

    # -- one container ------------------------------------------------------------------------------------
    def _docker_args(self, pod: dict, container: dict, volumes: dict, name: str) -> list[str]:
        pod_security = pod.get("securityContext", {})
        security = {**pod_security, **container.get("securityContext", {})}
        args = ["--name", name, "--network", NETWORK, "--hostname", name]
        uid, gid = security.get("runAsUser"), security.get("runAsGroup")
        if uid is not None:
            args += ["--user", f"{uid}:{gid}" if gid is not None else str(uid)]
        if pod_security.get("fsGroup") is not None:
            args += ["--group-add", str(pod_security["fsGroup"])]
        if security.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if security.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        for cap in security.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", cap]
        for cap in security.get("capabilities", {}).get("add", []):
            args += ["--cap-add", cap]
        limits = container.get("resources", {}).get("limits", {})
        if "cpu" in limits:
            cpus = min(_quantity_cpu(limits["cpu"]), float(self.cpus))
            if cpus < _quantity_cpu(limits["cpu"]):
                self.substitutions.append(
                    f"{name}: cpu limit {limits['cpu']} capped to this machine's {self.cpus}"
                )
            args += ["--cpus", f"{cpus:g}"]
        if "memory" in limits:
            args += ["--memory", str(_quantity_bytes(limits["memory"]))]
        for mount in container.get("volumeMounts", []):
            kind, source = volumes[mount["name"]]
            spec = f"{'type=bind' if kind == 'bind' else 'type=volume'},source={source},target={mount['mountPath']}"
            if mount.get("readOnly"):
                spec += ",readonly"
            args += ["--mount", spec]
        if container.get("workingDir"):
            args += ["-w", container["workingDir"]]
        for key, value in self._resolve_env(container, name).items():
            args += ["-e", f"{key}={value}"]
        for port in container.get("ports", []):
            args += ["-p", f"127.0.0.1::{port['containerPort']}"]
        command = container.get("command") or []
        if command:
            args += ["--entrypoint", command[0]]
        args.append(self._image(container["image"]))
        return args + list(command[1:]) + [str(a) for a in container.get("args", [])]

    def _probe(self, container_name: str, probe: dict) -> bool:
        timeout = float(probe.get("timeoutSeconds", 1))
        if "grpc" in probe:
            from skingenbench.services.platform.client import health_status
            from skingenbench.services.platform.tls import ClientTls

            host_port = self._host_port(container_name, probe["grpc"]["port"])
            status = health_status(
                f"127.0.0.1:{host_port}", probe["grpc"].get("service", ""), timeout_s=timeout, tls=ClientTls()
            )
            return status == "SERVING"
        if "tcpSocket" in probe:
            port = self._host_port(container_name, probe["tcpSocket"]["port"])
            try:
                socket.create_connection(("127.0.0.1", port), timeout=timeout).close()
                return True
            except OSError:
                return False
        if "exec" in probe:
            result = docker(
                "exec", container_name, *probe["exec"]["command"], check=False, timeout=timeout + 5
            )
            return result.returncode == 0
        raise ValueError(f"probe kind {sorted(probe)} is not replayed here")

    @staticmethod
    def _host_port(container_name: str, port: int | str) -> int:
        out = docker("port", container_name, f"{port}/tcp").stdout.split()
        return int(out[0].rsplit(":", 1)[1])

    def _poll(self, container_name: str, probe: dict, started: float) -> float:
        """Seconds after ``started`` at which the probe first passed, as the kubelet polls it."""
        time.sleep(float(probe.get("initialDelaySeconds", 0)))
        period = float(probe.get("periodSeconds", 10))
        for _attempt in range(int(probe.get("failureThreshold", 3))):
            state = docker(
                "inspect", "-f", "{{.State.Running}} {{.State.ExitCode}}", container_name
            ).stdout.split()
            if state[0] != "true":
                logs = docker("logs", "--tail", "20", container_name, check=False)
                raise RuntimeError(
                    f"{container_name} exited {state[1]}: {(logs.stdout + logs.stderr)[-1500:]}"
                )
            if self._probe(container_name, probe):
                return round(time.monotonic() - started, 1)
            time.sleep(period)
        raise RuntimeError(f"{container_name}: probe failed {probe.get('failureThreshold', 3)} times")

    # -- one pod ------------------------------------------------------------------------------------------
    def run_pod(self, deployment: dict) -> dict[str, Any]:
        name = deployment["metadata"]["name"]
        pod = deployment["spec"]["template"]["spec"]
        tag = re.sub(r"[^a-z0-9-]", "-", name.lower())
        first_image = self._image(pod["containers"][0]["image"])
        volumes = self._volumes(pod, tag, first_image)
        result: dict[str, Any] = {"init_containers": {}}
        for init in pod.get("initContainers", []):
            container = f"replay-{tag}-init-{init['name']}"
            docker("rm", "-f", container, check=False)
            began = time.monotonic()
            run = docker("run", *self._docker_args(pod, init, volumes, container), check=False)
            self.created.append(("container", container))
            result["init_containers"][init["name"]] = {
                "exit_code": run.returncode,
                "seconds": round(time.monotonic() - began, 1),
            }
            if run.returncode != 0:
                raise RuntimeError(
                    f"init container {init['name']} exited {run.returncode}: {run.stderr[-800:]}"
                )
        main = pod["containers"][0]
        container = f"replay-{tag}"
        docker("rm", "-f", container, check=False)
        started = time.monotonic()
        docker("run", "-d", *self._docker_args(pod, main, volumes, container))
        self.created.append(("container", container))
        probes = {}
        if main.get("startupProbe"):
            probes["startup_s"] = self._poll(container, main["startupProbe"], started)
        for kind in ("readinessProbe", "livenessProbe"):
            if main.get(kind):
                probes[kind.removesuffix("Probe") + "_s"] = self._poll(container, main[kind], started)
        uid = docker("exec", container, "id", "-u").stdout.strip()
        writable_root = docker(
            "exec", container, "sh", "-c", "touch /opt/x 2>/dev/null && echo yes || echo no"
        )
        grace = float(pod.get("terminationGracePeriodSeconds", 30))
        stop_began = time.monotonic()
        docker("stop", "-t", str(int(grace)), container, timeout=grace + 60)
        stop_s = round(time.monotonic() - stop_began, 1)
        exit_code = int(docker("inspect", "-f", "{{.State.ExitCode}}", container).stdout.strip())
        result.update(
            {
                "image": self._image(main["image"]),
                "probes_passed_after_s": probes,
                "uid": uid,
                "root_writable": writable_root.stdout.strip() == "yes",
                "stop": {"exit_code": exit_code, "stop_s": stop_s, "grace_s": grace},
                "ok": exit_code == 0 and stop_s <= grace and uid != "0",
            }
        )
        say(f"replayed {name}: probes {probes}, stop exit {exit_code} in {stop_s} s")
        return result

    def run_all(self) -> dict[str, Any]:
        self._network()
        results: dict[str, Any] = {}

        def one(deployment: dict) -> None:
            name = deployment["metadata"]["name"]
            try:
                results[name] = self.run_pod(deployment)
            except Exception as exc:
                results[name] = {"ok": False, "error": str(exc)[-2000:]}
                say(f"replay of {name} failed: {exc}")

        threads = [threading.Thread(target=one, args=(d,)) for d in self.deployments]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return {"deployments": results, "substitutions": sorted(set(self.substitutions))}

    def close(self) -> None:
        for kind, name in reversed(self.created):
            if kind == "container":
                docker("rm", "-f", name, check=False)
        for kind, name in self.created:
            if kind == "volume":
                docker("volume", "rm", "-f", name, check=False)
        for kind, name in self.created:
            if kind == "network":
                docker("network", "rm", name, check=False)
