"""The local stack cannot be started twice, reports only processes it started, stops only those, and every
client of the command line finds the stack where `up` put it (issue 16, item 10)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from skingenbench.services.platform.client import health_status
from skingenbench.services.platform.settings import SERVICES

from tests.common.service_helpers import running
from tests.conftest import free_port

PREPROCESSING = SERVICES["preprocessing"][0]


def _cli(args, env, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "skingenbench.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _env(home, **ports):
    env = dict(os.environ, SKINGENBENCH_HOME=str(home))
    for stage, port in ports.items():
        env[f"SKINGENBENCH_{stage.upper()}_PORT"] = str(port)
    return env


def _gone(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie whose parent has not reaped it yet counts as gone
            if not Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def test_a_second_up_on_the_same_home_refuses_and_leaves_the_first_stack_alone(tmp_path):
    port = free_port()
    env = _env(tmp_path / "home", preprocessing=port)
    first = _cli(["up", "preprocessing"], env)
    state = tmp_path / "home" / "stack.json"
    try:
        assert first.returncode == 0, first.stdout + first.stderr
        recorded = state.read_text()
        pid = json.loads(recorded)["preprocessing"]["pid"]
        # Even asking on another port: the home has a stack, so nothing is spawned and nothing overwritten.
        second = _cli(["up", "preprocessing"], dict(env, SKINGENBENCH_PREPROCESSING_PORT=str(free_port())))
        assert second.returncode != 0
        assert "already running" in second.stdout and f"pid {pid}" in second.stdout, second.stdout
        assert state.read_text() == recorded
        assert health_status(f"127.0.0.1:{port}", PREPROCESSING) == "SERVING"
    finally:
        stopped = _cli(["down"], env)
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert _gone(pid)
    assert health_status(f"127.0.0.1:{port}", PREPROCESSING) == "UNREACHABLE"
    # The lock went with the processes: the home can be started again.
    again = _cli(["up", "preprocessing"], env)
    try:
        assert again.returncode == 0, again.stdout
    finally:
        assert _cli(["down"], env).returncode == 0


def test_a_port_answered_by_another_stack_is_not_taken_for_ours(tmp_path, folder_store):
    # Another home's server already answers SERVING on the port: `up` must not report that as its own.
    with running("preprocessing", folder_store) as other:
        port = int(other.target.rsplit(":", 1)[1])
        env = _env(tmp_path / "home", preprocessing=port)
        result = _cli(["up", "preprocessing", "--timeout", "30"], env)
        try:
            assert result.returncode != 0, result.stdout
            assert "FAILED to start" in result.stdout and "cannot listen" in result.stdout
            assert "SERVING  127.0.0.1" not in result.stdout
        finally:
            _cli(["down"], env)
        assert health_status(other.target, PREPROCESSING) == "SERVING"  # the other stack is untouched


def test_down_leaves_a_recycled_pid_alone(tmp_path):
    # stack.json names a pid that is alive but is not the service `up` started (the pid was reused).
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        home = tmp_path / "home"
        home.mkdir()
        (home / "stack.json").write_text(
            json.dumps(
                {"preprocessing": {"stage": "preprocessing", "pid": stranger.pid, "port": 1, "log": ""}}
            )
        )
        result = _cli(["down"], _env(home))
        assert result.returncode == 0, result.stdout
        assert "not running" in result.stdout
        assert stranger.poll() is None  # still alive: not ours to stop
        status = _cli(["status"], _env(home))
        assert "STOPPED" in status.stdout or "no local stack" in status.stdout
    finally:
        stranger.kill()
        stranger.wait()


def test_the_generate_command_finds_the_generator_where_up_would_put_it(folder_store, monkeypatch, capsys):
    from skingenbench.cli import generate, stack

    with running("generation", folder_store) as service:
        port = service.target.rsplit(":", 1)[1]
        monkeypatch.delenv("SKINGENBENCH_GENERATION_TARGET", raising=False)
        monkeypatch.setenv("SKINGENBENCH_GENERATION_PORT", port)
        assert stack.target_for("generation") == f"127.0.0.1:{port}"
        assert generate.main(["--list-models", "--timeout", "10"]) == 0
        assert "no trained models" in capsys.readouterr().out
        # An explicit target still wins, as it does for `up`'s own clients.
        monkeypatch.setenv("SKINGENBENCH_GENERATION_TARGET", service.target)
        monkeypatch.setenv("SKINGENBENCH_GENERATION_PORT", str(free_port()))
        assert stack.target_for("generation") == service.target


@pytest.mark.parametrize("stage", list(SERVICES))
def test_target_for_honours_the_port_setting_up_uses(stage, monkeypatch):
    from skingenbench.cli import stack

    monkeypatch.delenv(f"SKINGENBENCH_{stage.upper()}_TARGET", raising=False)
    monkeypatch.setenv(f"SKINGENBENCH_{stage.upper()}_PORT", "61234")
    assert stack.target_for(stage) == "127.0.0.1:61234" == f"127.0.0.1:{stack.port_for(stage)}"
