"""`skingenbench up/status/down`: real processes, real ports, nothing left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
from skingenbench.services.platform.client import health_status, open_channel
from skingenbench.services.platform.settings import SERVICES

from tests.conftest import free_port


def _cli(args, env, timeout=180):
    return subprocess.run(
        [sys.executable, "-m", "skingenbench.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_up_status_down(tmp_path, monkeypatch):
    from skingenbench.cli import stack

    monkeypatch.setenv("SKINGENBENCH_HOME", str(tmp_path / "home"))
    env = dict(os.environ, SKINGENBENCH_HOME=str(tmp_path / "home"))
    ports = {stage: free_port() for stage in SERVICES}
    for stage, port in ports.items():
        env[f"SKINGENBENCH_{stage.upper()}_PORT"] = str(port)
    started = _cli(["up"], env)
    pids = [m["pid"] for m in json.loads((tmp_path / "home" / "stack.json").read_text()).values()]
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        # What `skingenbench run` wires the flow to when it uses the local stack.
        assert {stage: member.target for stage, member in stack.load_members().items()} == {
            stage: f"127.0.0.1:{port}" for stage, port in ports.items()
        }
        for stage, port in ports.items():
            assert f"127.0.0.1:{port}" in started.stdout
            assert health_status(f"127.0.0.1:{port}", SERVICES[stage][0]) == "SERVING"
            with open_channel(f"127.0.0.1:{port}") as channel:
                assert SERVICES[stage][0] in ProtoReflectionDescriptorDatabase(channel).get_services()
        # One stack per home: a second `up` says what runs and exits non-zero, spawning nothing.
        recorded = (tmp_path / "home" / "stack.json").read_text()
        again = _cli(["up"], env)
        assert again.returncode == stack.EXIT_ALREADY_RUNNING, again.stdout + again.stderr
        assert "already running" in again.stdout and again.stdout.count("SERVING") == 4
        assert (tmp_path / "home" / "stack.json").read_text() == recorded
        # What `skingenbench run` does with a stack that is up: reuses it.
        assert stack.up(reuse_running=True) == 0
        status = _cli(["status"], env)
        assert status.returncode == 0 and status.stdout.count("SERVING") == 4
    finally:
        stopped = _cli(["down"], env)
    assert stopped.returncode == 0, stopped.stderr
    for port in ports.values():
        assert health_status(f"127.0.0.1:{port}") == "UNREACHABLE"
    assert len(pids) == 4
    for pid in pids:  # every process is gone (reaped by `down`, or not our child: kill(0) fails)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert _cli(["status"], env).returncode == 1  # nothing running any more
    assert stack.load_members() == {}


def test_a_port_in_use_is_reported_with_the_log(tmp_path):
    import socket

    env = dict(os.environ, SKINGENBENCH_HOME=str(tmp_path / "home"))
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        env["SKINGENBENCH_GENERATION_PORT"] = str(blocker.getsockname()[1])
        result = _cli(["up", "generation", "--timeout", "60"], env)
        _cli(["down"], env)
    assert result.returncode == 1
    assert "FAILED to start" in result.stdout and "cannot listen" in result.stdout
