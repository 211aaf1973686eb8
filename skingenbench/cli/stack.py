"""The local stack: every service as its own process on 127.0.0.1 (``skingenbench up/status/down``).

State (pids, ports, log files) lives in ``$SKINGENBENCH_HOME`` (default ``./.skingenbench``), so
``down`` finds what ``up`` started even from another shell.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from skingenbench.services.platform.client import health_status
from skingenbench.services.platform.settings import SERVICES


def home() -> Path:
    return Path(os.environ.get("SKINGENBENCH_HOME", ".skingenbench")).resolve()


def _state_file() -> Path:
    return home() / "stack.json"


@dataclass
class Member:
    stage: str
    pid: int
    port: int
    log: str

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


def load_members() -> dict[str, Member]:
    """The members of the local stack as ``up`` recorded them (stage -> pid, port, log); empty if none."""
    path = _state_file()
    if not path.exists():
        return {}
    return {stage: Member(**m) for stage, m in json.loads(path.read_text()).items()}


def _save(members: dict[str, Member]) -> None:
    path = _state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({s: m.__dict__ for s, m in members.items()}, indent=1))
    os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


def port_for(stage: str) -> int:
    raw = os.environ.get(f"SKINGENBENCH_{stage.upper()}_PORT")
    return int(raw) if raw else SERVICES[stage][1]


def up(stages: list[str] | None = None, timeout_s: float = 120.0, out=sys.stdout) -> int:
    """Start the stages that are not running and wait until each is SERVING. Returns an exit code."""
    stages = stages or list(SERVICES)
    members = load_members()
    logs = home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("SKINGENBENCH_STORE", (home() / "store").as_uri())
    env.setdefault("SKINGENBENCH_HOST", "127.0.0.1")
    started: list[str] = []
    for stage in stages:
        if stage not in SERVICES:
            print(f"unknown service {stage!r}; known: {', '.join(SERVICES)}", file=out)
            return 2
        member = members.get(stage)
        if member and _alive(member.pid) and health_status(member.target, SERVICES[stage][0]) == "SERVING":
            print(f"{stage:15s} already running (pid {member.pid}) on {member.target}", file=out)
            continue
        port = port_for(stage)
        log_path = logs / f"{stage}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "skingenbench.cli", "serve", stage],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # survives the shell that ran `up`
            )
        members[stage] = Member(stage, process.pid, port, str(log_path))
        started.append(stage)
    _save(members)

    deadline = time.monotonic() + timeout_s
    failed = []
    for stage in started:
        member = members[stage]
        while True:
            status = health_status(member.target, SERVICES[stage][0], timeout_s=1.0)
            if status == "SERVING":
                break
            if not _alive(member.pid) or time.monotonic() > deadline:
                failed.append(stage)
                break
            time.sleep(0.3)
    for stage in stages:
        member = members[stage]
        if stage in failed:
            tail = Path(member.log).read_text(errors="replace").splitlines()[-15:]
            print(f"{stage:15s} FAILED to start; last lines of {member.log}:", file=out)
            for line in tail:
                print(f"    {line}", file=out)
        elif stage in started:
            print(f"{stage:15s} SERVING  {member.target}  {SERVICES[stage][0]}  pid {member.pid}", file=out)
    print(f"store: {env['SKINGENBENCH_STORE']}   logs: {logs}", file=out)
    return 1 if failed else 0


def status(out=sys.stdout) -> int:
    members = load_members()
    if not members:
        print("no local stack is running (start it with `skingenbench up`)", file=out)
        return 1
    worst = 0
    for stage, member in members.items():
        state = health_status(member.target, SERVICES[stage][0]) if _alive(member.pid) else "STOPPED"
        worst = worst or int(state != "SERVING")
        print(f"{stage:15s} {state:12s} {member.target}  pid {member.pid}  log {member.log}", file=out)
    return worst


def down(timeout_s: float = 40.0, out=sys.stdout) -> int:
    """SIGTERM every member (they drain and checkpoint), SIGKILL what is left after the timeout."""
    members = load_members()
    for member in members.values():
        if _alive(member.pid):
            os.kill(member.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    for stage, member in members.items():
        while _alive(member.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(member.pid):
            os.kill(member.pid, signal.SIGKILL)
            print(f"{stage:15s} killed after {timeout_s:.0f} s", file=out)
        else:
            print(f"{stage:15s} stopped", file=out)
    _state_file().unlink(missing_ok=True)
    return 0
