"""``skingenbench serve-flows``: the shipped grids appear as deployments in a real Prefect server's API, with
the parameters the UI's Run form offers (grid, run id, pipeline selection)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from skingenbench.cli.serve_flows import shipped_grids


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _deployments(url: str) -> list[dict]:
    request = urllib.request.Request(
        f"{url}/api/deployments/filter",
        data=b"{}",
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def test_every_shipped_grid_is_served():
    assert {"demo", "smoke", "paper"} <= set(shipped_grids())


@pytest.mark.slow  # a Prefect server starts (15-40 s on two busy cores)
def test_served_deployments_carry_the_grid_parameters(tmp_path):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "SKINGENBENCH_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1"}
    env.pop("PREFECT_API_URL", None)
    # Endpoints given: no stack is started (nothing is run, so nothing listens there).
    endpoints = [
        f"{stage}=127.0.0.1:{_free_port()}"
        for stage in ("preprocessing", "generation", "evaluation", "classification")
    ]
    command = [
        sys.executable,
        "-m",
        "skingenbench.cli",
        "serve-flows",
        "--port",
        str(port),
        "--endpoints",
        *endpoints,
    ]
    command += ["--runs-dir", str(tmp_path / "runs")]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        found: list[dict] = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and len(found) < len(shipped_grids()):
            assert process.poll() is None, process.stdout.read()
            try:
                found = _deployments(url)
            except OSError:
                pass
            time.sleep(1)
        by_name = {d["name"]: d for d in found}
        assert set(by_name) == set(shipped_grids()), found
        demo = by_name["demo"]
        assert demo["parameters"]["grid_spec"] == "demo"
        assert os.path.isabs(demo["parameters"]["runs_dir"])
        assert {"skingenbench", "grid:demo"} <= set(demo["tags"])
        assert demo["entrypoint"] == "skingenbench.flows.benchmark.benchmark"  # Prefect's module-path form
        form = demo["parameter_openapi_schema"]["properties"]  # what the UI's Run form shows
        assert {"grid_spec", "run_id", "pipelines"} <= set(form)
        # The UI of the server this command started talks to that server's port.
        with urllib.request.urlopen(f"{url}/ui-settings", timeout=10) as reply:
            assert json.loads(reply.read())["api_url"] == f"{url}/api"
    finally:
        process.send_signal(signal.SIGTERM)  # serve shuts down and stops the server it started
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    with pytest.raises(OSError):  # the Prefect server went with it
        _deployments(url)


def test_a_recorded_server_is_reused_only_while_it_answers(tmp_path):
    """``run`` and ``serve-flows`` share the home's Prefect server (one database per home): the record is
    trusted only while its process lives and its health endpoint answers."""
    import http.server
    import threading

    from skingenbench.cli.run import running_prefect_server

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (the handler's protocol)
            self.send_response(200 if self.path == "/api/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    record = tmp_path / "prefect-server.json"
    try:
        assert running_prefect_server(tmp_path) is None  # no record
        record.write_text(json.dumps({"url": url, "pid": os.getpid()}))
        assert running_prefect_server(tmp_path) == url
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        record.write_text(json.dumps({"url": url, "pid": dead.pid}))
        assert running_prefect_server(tmp_path) is None  # its process is gone
    finally:
        httpd.shutdown()
    record.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    assert running_prefect_server(tmp_path) is None  # nothing answers any more
