"""The Prefect UI of a finished run, in headless Chromium (issue 19's acceptance): the flow run page shows the
run by its name, the task runs named by their cells, the grid progress artifact at 100% and the results table.

Everything is real: ``skingenbench run`` starts the four services as processes and runs the smallest grid
that reaches every one of them (``tiny_grid.yaml``, pipelines A1 and A3 selected: preprocessing, DDPM
training and sampling, the evaluation, classifier training and testing, the comparison, Grad-CAM, the
report) against a Prefect server on a non-default port, whose UI is then opened at that port. Chromium is
Debian's (``make browser``) driven by Playwright; Playwright's own browser download is never used.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.headless_chromium import CHROMIUM, CHROMIUM_ARGS

HERE = Path(__file__).resolve().parent
RUN_ID = "ui-check"
PIPELINES = ["A1", "A3"]

pytestmark = [
    pytest.mark.slow,  # a whole (tiny) grid runs: minutes on two cores
    pytest.mark.skipif(
        not shutil.which(CHROMIUM), reason=f"no {CHROMIUM}: `make browser` (as root) installs it"
    ),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _post(url: str, path: str, body: dict) -> list[dict]:
    request = urllib.request.Request(
        f"{url}/api{path}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as reply:
        return json.loads(reply.read())


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """(UI URL, flow run) of the tiny grid, run to the end by the real command line."""
    from skingenbench.cli.run import _start_prefect_server, stop_prefect_server

    home = tmp_path_factory.mktemp("home")
    port = next(p for p in iter(_free_port, None) if p != 4200)  # the UI must follow a non-default port
    server, url = _start_prefect_server(home, port)
    env = {
        **os.environ,
        "SKINGENBENCH_HOME": str(home),
        "PREFECT_API_URL": f"{url}/api",
        "HF_HUB_OFFLINE": "1",
    }
    for stage in ("preprocessing", "generation", "evaluation", "classification"):  # beside any other stack
        env[f"SKINGENBENCH_{stage.upper()}_PORT"] = str(_free_port())
    command = [sys.executable, "-m", "skingenbench.cli", "run", "--grid", str(HERE / "tiny_grid.yaml")]
    command += ["--run-id", RUN_ID, "--pipelines", *PIPELINES, "--plain", "--runs-dir", str(home / "runs")]
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1500)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        assert "cells | " in done.stdout and "| finished" in done.stdout  # the plain progress lines
        runs = _post(url, "/flow_runs/filter", {})
        assert len(runs) == 1 and runs[0]["state_type"] == "COMPLETED", runs
        yield url, runs[0]
    finally:
        stop_prefect_server(home, server)


@pytest.fixture(scope="module")
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def test_the_ui_settings_follow_the_port(finished_run):
    url, _run = finished_run
    with urllib.request.urlopen(f"{url}/ui-settings", timeout=10) as reply:
        assert json.loads(reply.read())["api_url"] == f"{url}/api"


def test_the_flow_run_page_shows_named_runs_progress_and_results(finished_run, page):
    url, run = finished_run
    page.set_default_timeout(60_000)
    page.goto(f"{url}/runs/flow-run/{run['id']}")
    page.get_by_text(f"browser-{RUN_ID}", exact=True).first.wait_for()  # the flow run's name: grid and run id

    # The run page's tabs are list items without an ARIA role (Prefect UI 3.8): found by their text.
    page.get_by_text("Task Runs", exact=True).click()
    for name in (
        "train generator A3/ddpm",
        "train A1/resnet18/seed0",
        "test A3/resnet18/seed0",
        "evaluate A",
    ):
        page.get_by_text(name, exact=True).first.wait_for()

    page.get_by_text("Artifacts", exact=True).click()
    page.get_by_text(f"results-{RUN_ID}", exact=True).first.wait_for()
    page.get_by_text(f"progress-{RUN_ID}", exact=True).first.click()
    page.get_by_text("Progress: 100%").wait_for()  # the grid's one progress artifact, complete
    page.get_by_text("finished", exact=True).wait_for()

    page.go_back()
    page.get_by_text("Artifacts", exact=True).click()
    page.get_by_text(f"results-{RUN_ID}", exact=True).first.click()
    table = page.locator("table")
    table.first.wait_for()
    text = table.first.inner_text()
    for cell in ("train A1/resnet18/seed0", "train A3/resnet18/seed0", "compare A3 vs A1/resnet18/seed0"):
        assert cell in text
    assert "train A4" not in text  # A4 was not selected
