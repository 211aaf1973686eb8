"""A Docker engine for the deploy check: the one ``DOCKER_HOST`` names when it answers, else the private
daemon of ``../shared/tools/containers`` (an offline build machine's workaround, not part of the project:
its README), started here and stopped again at the end.

Only what this module started is stopped, by the tools' own stop scripts (they signal the PID their
pidfile names). The daemon's folder is kept (no ``PURGE``), so a second run finds its images cached.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.deploy.progress import say

# ../shared/tools/containers beside the checkout, or wherever SKINGENBENCH_CONTAINER_TOOLS points.
TOOLS_DIR = Path(
    os.environ.get("SKINGENBENCH_CONTAINER_TOOLS")
    or Path(__file__).resolve().parents[2].parent / "shared" / "tools" / "containers"
)
# Short on purpose: the daemon's sockets live in it (a Unix socket path has ~100 bytes).
DAEMON_DIR = os.environ.get("SKINGENBENCH_DOCKERD_DIR") or "/tmp/skingenbench-dockerd"


def docker(*args: str, check: bool = True, capture: bool = True, timeout: float | None = None, env=None):
    """Run the docker client; a failure raises with its stderr, so the check's log says what broke."""
    result = subprocess.run(
        ["docker", *args], capture_output=capture, text=True, timeout=timeout, env=env or os.environ.copy()
    )
    if check and result.returncode != 0:
        raise RuntimeError(
            f"docker {' '.join(args[:3])} ...: exit {result.returncode}: {result.stderr[-2000:]}"
        )
    return result


def engine_answers() -> bool:
    try:
        return docker("info", "--format", "{{.ServerVersion}}", check=False, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def image_exists(name: str) -> bool:
    return docker("image", "inspect", name, check=False).returncode == 0


@dataclass
class Engine:
    """The engine in use and what was started to get it (stopped by ``close``)."""

    tools: Path | None
    pip_port: int
    started_daemon: bool = False
    started_indexes: bool = False
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        version = docker("version", "--format", "{{.Server.Version}}", check=False).stdout.strip()
        return {
            "docker_host": os.environ.get("DOCKER_HOST", "(default socket)"),
            "server_version": version,
            "local_tools": str(self.tools) if self.tools else None,
            "started_daemon": self.started_daemon,
            "started_pip_indexes": self.started_indexes,
            "notes": self.notes,
        }

    def close(self) -> None:
        if self.tools is None:
            return
        if self.started_indexes:
            say(f"stopping the pip index server on port {self.pip_port}")
            subprocess.run([str(self.tools / "stop-pip-indexes.sh"), str(self.pip_port)], check=False)
        if self.started_daemon:
            say(f"stopping the private Docker daemon in {DAEMON_DIR} (its folder and images stay)")
            subprocess.run([str(self.tools / "stop-dockerd.sh"), DAEMON_DIR], check=False)


def _pid_alive(pidfile: Path) -> bool:
    try:
        os.kill(int(pidfile.read_text().strip()), 0)
        return True
    except (OSError, ValueError):
        return False


def open_engine(base: str, s3_image: str, pip_port: int) -> Engine:
    """An answering engine with ``base`` and ``s3_image`` present (built with the local tools if they
    exist and the images are missing); raises with what to do otherwise."""
    tools = TOOLS_DIR if TOOLS_DIR.is_dir() else None
    engine = Engine(tools, pip_port)
    if not engine_answers():
        if tools is None:
            raise RuntimeError(
                "no Docker engine answers (DOCKER_HOST) and there are no local container tools "
                f"({TOOLS_DIR}): start Docker, or export DOCKER_HOST"
            )
        say(f"no engine answers: starting a private Docker daemon in {DAEMON_DIR}")
        out = subprocess.run(
            [str(tools / "start-dockerd.sh"), DAEMON_DIR], capture_output=True, text=True, check=True
        ).stdout
        match = re.search(r"export DOCKER_HOST=(\S+)", out)
        if not match:
            raise RuntimeError(f"start-dockerd.sh printed no DOCKER_HOST: {out[-500:]}")
        os.environ["DOCKER_HOST"] = match.group(1)
        engine.started_daemon = True
        if not engine_answers():
            raise RuntimeError(f"the daemon started in {DAEMON_DIR} does not answer")
    if tools is not None and base.startswith("local/"):
        # Builds from the local stand-in base install from this machine's package indexes, served on the
        # loopback port baked into the base image's /etc/pip.conf.
        if not _pid_alive(Path(f"/tmp/pip-indexes.{pip_port}/server.pid")):
            say(f"serving this machine's pip indexes on 127.0.0.1:{pip_port}")
            subprocess.run(
                [str(tools / "serve-pip-indexes.sh"), str(pip_port)], check=True, capture_output=True
            )
            engine.started_indexes = True
        if not image_exists(base):
            say(f"building the base stand-in {base} (debootstrap; 2-4 min the first time)")
            env = {**os.environ, "TMPDIR": "/dev/shm"}
            subprocess.run([str(tools / "make-base-image.sh"), base, str(pip_port)], check=True, env=env)
        if not image_exists(s3_image):
            say(f"building the S3 stand-in {s3_image} (about 1.5 min)")
            subprocess.run([str(tools / "make-s3-image.sh"), s3_image, base], check=True)
    for name in (base, s3_image):
        if not image_exists(name):
            raise RuntimeError(f"image {name} is not available to the engine (pull or build it first)")
    return engine


def image_size(name: str) -> int:
    return int(docker("image", "inspect", name, "--format", "{{.Size}}").stdout.strip())


def inspect(container: str) -> dict:
    return json.loads(docker("inspect", container).stdout)[0]


def wait_for(predicate, timeout_s: float, interval_s: float = 1.0, what: str = "condition"):
    """Poll ``predicate`` until it returns a true value; raise TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)
