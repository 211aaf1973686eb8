"""A scripted reader completes a reading of a small study in real headless Chromium (issue 18, item 5).

Everything is real: ``skingenbench reader-study serve`` runs as its own process (uvicorn) on a folder store;
Debian's Chromium (``make browser``) is driven by Playwright, as tests/browser does. The reader enters a
name, answers each image with the buttons, the keyboard and the diagnosis list, reloads the page halfway (a
closed tab loses nothing: the page resumes where the store says), and finishes; the answers are then read
back from the store and the report command counts them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest

from skingenbench.reader_study.study_store import answers_key, load_study
from tests.headless_chromium import CHROMIUM, CHROMIUM_ARGS

from ..conftest import free_port
from .conftest import write_sets

STUDY_ID = "browser-pilot"
IMAGES = 6

pytestmark = pytest.mark.skipif(
    not shutil.which(CHROMIUM), reason=f"no {CHROMIUM}: `make browser` (as root) installs it"
)


@pytest.fixture
def served_study(folder_store):
    """(store, URL) of ``reader-study serve`` running as a process on a 6-image study."""
    syn, real = write_sets(folder_store, {"MEL": 4}, {"MEL": 3, "NV": 3})
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "skingenbench.cli",
        "reader-study",
        "serve",
        "--store",
        folder_store.root_uri,
    ]
    command += [
        "--set",
        syn,
        "--real",
        real,
        "--count",
        str(IMAGES),
        "--study-id",
        STUDY_ID,
        "--port",
        str(port),
    ]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/study", timeout=2) as reply:
                    assert json.loads(reply.read())["images"] == IMAGES
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"reader-study serve did not come up:\n{server.communicate()[0][-3000:]}")
                time.sleep(0.2)
        yield folder_store, url
    finally:
        server.terminate()
        server.wait(timeout=20)


@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 900, "height": 900})
            tab.set_default_timeout(20_000)
            yield tab
        finally:
            browser.close()


def _wait_ready(page, position: int) -> None:
    page.wait_for_function(
        "p => document.getElementById('progress').textContent === p"
        " && !document.getElementById('answer-real').disabled"
        " && document.getElementById('image').naturalWidth > 0",
        arg=f"{position} / {IMAGES}",
    )


def test_a_scripted_reader_completes_a_reading_and_the_answers_land_in_the_store(served_study, page):
    store, url = served_study
    page.goto(f"{url}/")
    page.fill("#reader-name", "ada")
    page.click("#begin")
    given = []
    for position in range(1, IMAGES + 1):
        _wait_ready(page, position)
        image_id = page.get_attribute("#image", "src").rsplit("/", 1)[-1]
        if position == 2:  # the keyboard: S answers "synthetic"
            page.keyboard.press("s")
            given.append((image_id, "synthetic", None))
        else:
            call, diagnosis = ("real", "MEL") if position % 2 else ("synthetic", "NV")
            page.select_option("#diagnosis", diagnosis)
            page.click(f"#answer-{call}")
            given.append((image_id, call, diagnosis))
        if position == 3:  # close and reopen: the reading resumes at the fourth image
            page.wait_for_function("() => document.getElementById('progress').textContent === '4 / 6'")
            page.reload()
    page.locator("#done-text").wait_for(state="visible")
    assert page.inner_text("#done-text") == f"Done: {IMAGES} / {IMAGES} images answered, ada. Thank you."

    stored = json.loads(store.get_bytes(answers_key(STUDY_ID, "ada")))
    assert [(a["image_id"], a["call"], a["diagnosis"]) for a in stored["answers"]] == given
    assert sorted(i for i, _, _ in given) == sorted(
        item.image_id for item in load_study(store, STUDY_ID).items
    )

    command = [sys.executable, "-m", "skingenbench.cli", "reader-study", "report", "--json"]
    done = subprocess.run(
        command + ["--study-id", STUDY_ID, "--store", store.root_uri],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["readers"]["ada"]["answered"] == IMAGES
