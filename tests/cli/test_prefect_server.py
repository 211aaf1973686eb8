"""The local Prefect server that `skingenbench run` starts: its UI must talk to its own port."""

from __future__ import annotations

import json
import os
import signal
import socket
import urllib.request

import pytest

from skingenbench.cli.run import _start_prefect_server, prefect_server_env


def test_the_environment_points_the_ui_at_the_chosen_port(tmp_path):
    env = prefect_server_env(tmp_path, 4321, base={"PREFECT_API_URL": "http://elsewhere:4200/api", "X": "1"})
    assert env["PREFECT_SERVER_API_PORT"] == "4321"
    assert env["PREFECT_SERVER_UI_API_URL"] == "http://127.0.0.1:4321/api"
    assert "PREFECT_API_URL" not in env and env["X"] == "1"  # another server's URL is not inherited


@pytest.mark.slow
def test_a_server_on_a_non_default_port_serves_ui_settings_for_that_port(tmp_path):
    (tmp_path / "logs").mkdir()
    with socket.socket() as occupied:  # 4200 taken (by another server, say): the next free port is chosen
        occupied.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            occupied.bind(("127.0.0.1", 4200))
            occupied.listen()
        except OSError:
            pass  # already in use by something else: the point stands
        process, url = _start_prefect_server(tmp_path)
    try:
        assert not url.endswith(":4200")
        # The UI app serves its settings at /ui-settings (prefect.server.api.server.create_ui_app).
        with urllib.request.urlopen(f"{url}/ui-settings", timeout=10) as reply:
            settings = json.loads(reply.read())
        assert settings["api_url"] == f"{url}/api"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
