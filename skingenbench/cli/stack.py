"""The local stack: every service as its own process on 127.0.0.1 (``skingenbench up/status/down``).

State (pids, ports, log files) lives in ``$SKINGENBENCH_HOME`` (default ``./.skingenbench``), so
``down`` finds what ``up`` started even from another shell.

One stack per home. ``up`` takes an exclusive lock on ``$SKINGENBENCH_HOME/stack.lock`` (``flock(2)``)
and hands the locked file to every service it starts, so the lock is held for as long as any member of
the stack lives (the kernel drops it when the last one exits, however it exits) and never outlives
them. A second ``up`` on the same home finds the lock taken, says what is running and exits non-zero
instead of spawning duplicates that would die on bind and overwrite ``stack.json``. A service counts as
started only when its own process is alive and it answers health SERVING, checked in that order, and
only on a port that nothing listened on before it started (otherwise another program's server would
answer for a process that is about to fail). ``down`` signals the processes ``up`` recorded, only if
they are still the ``skingenbench serve`` processes it started (a recycled pid is left alone), waits
until they are gone and checks that the lock is free.

Clients in this command line (``generate``, ``run``) resolve a stage's target with :func:`target_for`,
from the same settings ``up`` uses: ``SKINGENBENCH_<STAGE>_TARGET`` if set, else
``127.0.0.1:$SKINGENBENCH_<STAGE>_PORT`` (default: the stage's port in ``SERVICES``).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from skingenbench.services.platform.client import health_status
from skingenbench.services.platform.settings import SERVICES

EXIT_ALREADY_RUNNING = 3


def home() -> Path:
    return Path(os.environ.get("SKINGENBENCH_HOME", ".skingenbench")).resolve()


def _state_file() -> Path:
    return home() / "stack.json"


def _lock_file() -> Path:
    return home() / "stack.lock"


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
    try:
        return {stage: Member(**m) for stage, m in json.loads(path.read_text()).items()}
    except (ValueError, TypeError):  # a torn or foreign file: nothing we can stop by it
        return {}


def _save(members: dict[str, Member]) -> None:
    path = _state_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({s: m.__dict__ for s, m in members.items()}, indent=1))
    os.replace(tmp, path)


def port_for(stage: str) -> int:
    raw = os.environ.get(f"SKINGENBENCH_{stage.upper()}_PORT")
    return int(raw) if raw else SERVICES[stage][1]


def target_for(stage: str) -> str:
    """Where a client reaches ``stage``: ``SKINGENBENCH_<STAGE>_TARGET``, else the port ``up`` would use."""
    return os.environ.get(f"SKINGENBENCH_{stage.upper()}_TARGET") or f"127.0.0.1:{port_for(stage)}"


# -- processes ------------------------------------------------------------------------------------------
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
        pass
    # Not our child: a zombie waiting for its parent has no command line and is gone for our purposes.
    return _cmdline(pid) != []


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return True


def _cmdline(pid: int) -> list[str] | None:
    """A process's arguments from /proc (None where /proc cannot tell: another OS, no permission)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return []
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_member(member: Member) -> bool:
    """The recorded pid is alive and is still the ``skingenbench serve <stage>`` process ``up`` started."""
    if not _alive(member.pid):
        return False
    args = _cmdline(member.pid)
    if args is None:  # cannot check: trust the pid
        return True
    return "skingenbench.cli" in args and args[-2:] == ["serve", member.stage]


def _port_in_use(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


# -- the lock ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _stack_lock():
    """The home's lock, held exclusively, or None when a stack (or another ``up``) holds it."""
    path = _lock_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - handed to the services, closed here after the spawn
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"up_pid": os.getpid(), "home": str(home())}) + "\n")
        handle.flush()
        yield handle
    finally:
        handle.close()


def _lock_is_free() -> bool:
    path = _lock_file()
    if not path.exists():
        return True
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    return True


def _describe_running(out) -> None:
    members = {stage: m for stage, m in load_members().items() if _is_member(m)}
    if not members:
        print(f"a stack is being started or stopped in {home()} (another `skingenbench up`?)", file=out)
    for stage, member in members.items():
        state = health_status(member.target, SERVICES[stage][0], timeout_s=1.0)
        print(f"{stage:15s} {state:12s} {member.target}  pid {member.pid}", file=out)


# -- commands ---------------------------------------------------------------------------------------------
def up(
    stages: list[str] | None = None,
    timeout_s: float = 120.0,
    out: IO[str] | None = None,
    *,
    reuse_running: bool = True,
) -> int:
    """Start the stack and wait until each stage is SERVING. Returns an exit code.

    If this home's stack is already running, ``reuse_running`` (what ``skingenbench run`` wants) answers
    0 when every requested stage of it is SERVING; otherwise (the ``up`` command) it says what is running
    and returns ``EXIT_ALREADY_RUNNING``. Nothing is started either way.
    """
    out = out or sys.stdout  # looked up per call: a default bound at import outlives a redirected stdout
    stages = stages or list(SERVICES)
    unknown = [stage for stage in stages if stage not in SERVICES]
    if unknown:
        print(f"unknown service {unknown[0]!r}; known: {', '.join(SERVICES)}", file=out)
        return 2
    with _stack_lock() as lock:
        if lock is None:
            return _already_running(stages, reuse_running, out)
        return _start(stages, lock, timeout_s, out)


def _already_running(stages: list[str], reuse_running: bool, out) -> int:
    members = load_members()
    serving = [
        stage
        for stage in stages
        if stage in members
        and _is_member(members[stage])
        and health_status(members[stage].target, SERVICES[stage][0], timeout_s=1.0) == "SERVING"
    ]
    if reuse_running and serving == stages:
        for stage in stages:
            member = members[stage]
            print(f"{stage:15s} already running (pid {member.pid}) on {member.target}", file=out)
        return 0
    print(f"a local stack is already running in {home()}:", file=out)
    _describe_running(out)
    print("stop it with `skingenbench down`, or use another SKINGENBENCH_HOME", file=out)
    return EXIT_ALREADY_RUNNING


def _start(stages: list[str], lock: IO[str], timeout_s: float, out) -> int:
    # The lock is free, so nothing of this home runs: what stack.json still lists is stale.
    logs = home() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("SKINGENBENCH_STORE", (home() / "store").as_uri())
    env.setdefault("SKINGENBENCH_HOST", "127.0.0.1")
    members: dict[str, Member] = {}
    processes: dict[str, subprocess.Popen] = {}
    busy = {stage: port_for(stage) for stage in stages if _port_in_use(port_for(stage))}
    for stage in stages:
        if stage in busy:
            continue
        log_path = logs / f"{stage}.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "skingenbench.cli", "serve", stage],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,  # survives the shell that ran `up`
                pass_fds=(lock.fileno(),),  # the service holds the home's lock while it lives
            )
        members[stage] = Member(stage, process.pid, port_for(stage), str(log_path))
        processes[stage] = process
    _save(members)

    deadline = time.monotonic() + timeout_s
    failed = []
    for stage, member in members.items():
        while True:
            # The process first: a port that answers proves nothing about a process that has exited. It is
            # our child, so poll() knows (its /proc entry may not show the new command line yet).
            if processes[stage].poll() is not None:
                failed.append(stage)
                break
            if health_status(member.target, SERVICES[stage][0], timeout_s=1.0) == "SERVING":
                break
            if time.monotonic() > deadline:
                failed.append(stage)
                break
            time.sleep(0.3)
    for stage in stages:
        if stage in busy:
            print(
                f"{stage:15s} FAILED to start: cannot listen on 127.0.0.1:{busy[stage]}, something already "
                "listens there (another stack? set SKINGENBENCH_"
                f"{stage.upper()}_PORT)",
                file=out,
            )
            continue
        member = members[stage]
        if stage in failed:
            tail = Path(member.log).read_text(errors="replace").splitlines()[-15:]
            print(f"{stage:15s} FAILED to start; last lines of {member.log}:", file=out)
            for line in tail:
                print(f"    {line}", file=out)
        else:
            print(f"{stage:15s} SERVING  {member.target}  {SERVICES[stage][0]}  pid {member.pid}", file=out)
    print(f"store: {env['SKINGENBENCH_STORE']}   logs: {logs}", file=out)
    return 1 if failed or busy else 0


def status(out: IO[str] | None = None) -> int:
    out = out or sys.stdout
    members = load_members()
    if not members:
        print("no local stack is running (start it with `skingenbench up`)", file=out)
        return 1
    worst = 0
    for stage, member in members.items():
        state = health_status(member.target, SERVICES[stage][0]) if _is_member(member) else "STOPPED"
        worst = worst or int(state != "SERVING")
        print(f"{stage:15s} {state:12s} {member.target}  pid {member.pid}  log {member.log}", file=out)
        if state == "SERVING":
            _print_active_jobs(stage, member.target, out)
    return worst


def _print_active_jobs(stage: str, target: str, out) -> None:
    """The member's running and queued jobs (Jobs.ListJobs), one indented line each."""
    import argparse

    from skingenbench.cli.errors import UserError
    from skingenbench.cli.jobs import job_line, jobs_by_service

    found = jobs_by_service([stage], argparse.Namespace(target=target), ("running", "queued"), 20)[stage]
    if isinstance(found, UserError):
        print(f"{'':15s} jobs: {found}", file=out)
        return
    print(f"{'':15s} jobs: {len(found)} running or queued", file=out)
    for job in found:
        print(f"{'':17s} {job_line(job)}", file=out)


def down(timeout_s: float = 40.0, out: IO[str] | None = None) -> int:
    """SIGTERM every member (they drain and checkpoint), SIGKILL what is left after the timeout, then check
    that every process is gone and the home's lock is free. Returns 1 if something could not be stopped."""
    out = out or sys.stdout
    members = load_members()
    ours = {stage: member for stage, member in members.items() if _is_member(member)}
    for stage, member in members.items():
        if stage not in ours:
            print(f"{stage:15s} not running (pid {member.pid} is gone or not ours)", file=out)
    for member in ours.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(member.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    stuck = []
    for stage, member in ours.items():
        while _is_member(member) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _is_member(member):
            with contextlib.suppress(ProcessLookupError):
                os.kill(member.pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 10.0
            while _is_member(member) and time.monotonic() < kill_deadline:
                time.sleep(0.1)
            if _is_member(member):
                stuck.append(stage)
                print(f"{stage:15s} still running after SIGKILL (pid {member.pid})", file=out)
            else:
                print(f"{stage:15s} killed after {timeout_s:.0f} s", file=out)
        else:
            print(f"{stage:15s} stopped", file=out)
    # Every process that held the lock is gone when it is free (a service's own children do not hold it).
    lock_deadline = time.monotonic() + 10.0
    while not _lock_is_free() and time.monotonic() < lock_deadline:
        time.sleep(0.1)
    # An exited service is a zombie until its parent (init, once `up` has exited) reaps it: wait a moment
    # for that too, so that a caller that looks for the pids after `down` finds them gone.
    reap_deadline = time.monotonic() + 5.0
    for member in ours.values():
        while _pid_exists(member.pid) and time.monotonic() < reap_deadline:
            time.sleep(0.05)
    if stuck or not _lock_is_free():
        print(
            f"the stack in {home()} is still holding {_lock_file()}; its processes are not all gone", file=out
        )
        return 1
    _state_file().unlink(missing_ok=True)
    return 0
