"""The Compose stack of deploy/compose/ with an S3 stand-in in MinIO's place: up, health, ports, and the
stop check (``compose stop`` while jobs run; every container must exit 0 inside its stop grace period)."""

from __future__ import annotations

import datetime as _dt
import os
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from bench.deploy.engine import docker, inspect, wait_for
from bench.deploy.progress import say

COMPOSE_DIR = Path("deploy/compose")
STAGES = ("preprocessing", "generation", "evaluation", "classification")


def compose_command() -> list[str]:
    """``docker compose`` (v2) where the client has it, else ``docker-compose`` (v1)."""
    if subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return ["docker-compose"]


def _seconds(duration: str | int | float | None, default: float = 10.0) -> float:
    """Compose durations: ``45s``, ``1m30s``, ``2m`` (compose v1 prints ``2m``), or a number of seconds."""
    if duration is None:
        return default
    if isinstance(duration, int | float):
        return float(duration)
    total = 0.0
    for value, unit in re.findall(r"([\d.]+)\s*(h|ms|m|s|us)?", str(duration)):
        total += float(value) * {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "": 1}[unit]
    return total


@dataclass
class Stack:
    root: Path
    project: str
    env: dict[str, str]
    files: tuple[str, ...] = ("docker-compose.yaml", "s3-standin.override.yaml")

    def _compose(self, *args: str, check: bool = True, timeout: float | None = None):
        command = compose_command() + ["-p", self.project]
        for name in self.files:
            command += ["-f", str(self.root / COMPOSE_DIR / name)]
        result = subprocess.run(
            command + list(args), capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"compose {' '.join(args)}: exit {result.returncode}: {result.stderr[-2000:]}")
        return result

    def config(self) -> dict:
        return yaml.safe_load(self._compose("config").stdout)

    def container(self, service: str) -> str:
        ids = self._compose("ps", "-q", service).stdout.split()
        if not ids:
            raise RuntimeError(f"compose has no container for {service}")
        return ids[0]

    def up(self, timeout_s: float = 300.0) -> dict:
        """Start the stack and wait until every service's healthcheck says healthy; seconds per service."""
        started = time.monotonic()
        self._compose("up", "-d", "--no-build", timeout=timeout_s)
        healthy: dict[str, float] = {}
        pending = ["minio", *STAGES]
        containers = {service: self.container(service) for service in pending}

        def all_healthy() -> bool:
            for service in list(pending):
                state = inspect(containers[service])["State"]
                status = (state.get("Health") or {}).get("Status", "none")
                if not state.get("Running"):
                    raise RuntimeError(
                        f"{service} is not running: exit {state.get('ExitCode')} ({self.logs(service)})"
                    )
                if status == "healthy":
                    healthy[service] = round(time.monotonic() - started, 1)
                    pending.remove(service)
                    say(f"{service} healthy after {healthy[service]} s")
            return not pending

        wait_for(all_healthy, timeout_s, interval_s=2.0, what=f"healthy services ({', '.join(pending)})")
        return {"up_s": round(time.monotonic() - started, 1), "healthy_after_s": healthy}

    def logs(self, service: str, tail: int = 30) -> str:
        return self._compose("logs", "--no-color", "--tail", str(tail), service, check=False).stdout[-3000:]

    def stop_all(self) -> dict:
        """``compose stop`` and, per service, its exit code and how long after the stop it exited."""
        graces = {
            name: _seconds(spec.get("stop_grace_period")) for name, spec in self.config()["services"].items()
        }
        containers = {service: self.container(service) for service in graces}
        say("compose stop (jobs are running)")
        stop_started = _dt.datetime.now(_dt.timezone.utc)
        began = time.monotonic()
        self._compose("stop", timeout=max(graces.values()) * 2 + 60)
        command_s = round(time.monotonic() - began, 1)
        per_service = {}
        states = {service: inspect(container)["State"] for service, container in containers.items()}
        finished_at = {service: _parse_time(state["FinishedAt"]) for service, state in states.items()}
        depends = {
            name: set(spec.get("depends_on") or {}) for name, spec in self.config()["services"].items()
        }
        for service, state in states.items():
            # Compose stops a service after those that depend on it (the stages before MinIO): its grace
            # counts from then, not from the start of `compose stop`.
            dependents = [other for other, needs in depends.items() if service in needs]
            signalled = max([finished_at[d] for d in dependents], default=stop_started)
            stop_s = round((finished_at[service] - signalled).total_seconds(), 1)
            per_service[service] = {
                "after_stop_s": round((finished_at[service] - stop_started).total_seconds(), 1),
                "exit_code": state["ExitCode"],
                "oom_killed": state.get("OOMKilled", False),
                "stop_s": stop_s,
                "grace_s": graces[service],
                "within_grace": state["ExitCode"] == 0 and stop_s <= graces[service],
                "log_tail": self.logs(service, tail=8) if state["ExitCode"] != 0 else "",
            }
            say(f"{service}: exit {state['ExitCode']} {stop_s} s after the stop (grace {graces[service]} s)")
        return {"command_s": command_s, "services": per_service}

    def down(self) -> None:
        self._compose("down", "-v", "--remove-orphans", check=False, timeout=300)


def _parse_time(stamp: str) -> _dt.datetime:
    """Docker's RFC 3339 times carry nanoseconds, which ``fromisoformat`` before 3.11 does not take."""
    match = re.match(r"(.*T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$", stamp)
    if not match:
        raise ValueError(f"unexpected docker time {stamp!r}")
    fraction = (match.group(2) or ".0")[:7]
    zone = "+00:00" if match.group(3) == "Z" else match.group(3)
    return _dt.datetime.fromisoformat(match.group(1) + fraction + zone)


def stack_env(token: str, s3_image: str, tag: str) -> dict[str, str]:
    """The compose environment: fresh secrets (the file has no defaults), the stand-in, the image tag."""
    return {
        **os.environ,
        "SKINGENBENCH_AUTH_TOKEN": token,
        "MINIO_ROOT_USER": "deploycheck",
        "MINIO_ROOT_PASSWORD": token[:24],
        "S3_IMAGE": s3_image,
        "SKINGENBENCH_TORCH_VARIANT": tag,
    }


def container_ip(container: str) -> str:
    networks = inspect(container)["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["IPAddress"]


def remove(container: str) -> None:
    docker("rm", "-f", container, check=False)
