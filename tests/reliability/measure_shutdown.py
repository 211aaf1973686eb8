"""Measure a real ``serve`` process's exit after SIGTERM with a job running and a client watching it.

Not a test (pytest does not collect it): the numbers of docs/shutdown.md. Run from the repository root:

    .venv/bin/python tests/reliability/measure_shutdown.py > shutdown.json

Each case queues a job in a fresh folder store (the child's start resumes it, as in
``test_shutdown_grace.py``), watches it, sends SIGTERM once it has done 5 steps and times the exit.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

# torch-fidelity installs a top-level "tests" package that would shadow this repository's tests/ (a folder
# without __init__.py) outside pytest; this script imports from the repository's.
_TESTS = types.ModuleType("tests")
_TESTS.__path__ = [str(Path(__file__).resolve().parents[1])]
sys.modules.setdefault("tests", _TESTS)

from google.protobuf import json_format  # noqa: E402
from skingenbench.services.platform.client import describe_end, open_channel, watch_job  # noqa: E402
from skingenbench.services.platform.jobs import JobRecord, JobRunner  # noqa: E402
from skingenbench.services.platform.store import LocalFolderStore  # noqa: E402

from tests.common.service_helpers import CountKind, request  # noqa: E402
from tests.conftest import free_port  # noqa: E402
from tests.reliability.test_shutdown_grace import (  # noqa: E402
    _CHILD,
    REPO,
    SERVICE,
    StubbornKind,
    _wait_serving,
)

CASES = [
    ("checkpoints", {}),
    ("ignores-stop", {}),
    ("ignores-stop", {"SKINGENBENCH_SHUTDOWN_GRACE_S": "75", "SKINGENBENCH_SHUTDOWN_CALLS_S": "5"}),
    ("ignores-stop", {"SKINGENBENCH_SHUTDOWN_GRACE_S": "8", "SKINGENBENCH_SHUTDOWN_CALLS_S": "2"}),
]


def _queue(store: LocalFolderStore, kind, job_request) -> str:
    as_dict = json_format.MessageToDict(job_request, preserving_proto_field_name=True)
    job_id = JobRunner.job_id_for(SERVICE, kind.name, as_dict)
    record = JobRecord(job_id, kind.name, SERVICE, as_dict, plan=kind.plan(job_request, store).to_json())
    store.put_bytes(f"jobs/{SERVICE}/{job_id}.json", record.to_json(), "application/json")
    return job_id


def measure(job: str, env_overrides: dict[str, str]) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="sgb-shutdown-"))
    store = LocalFolderStore(folder / "store")
    kind = StubbornKind() if job == "ignores-stop" else CountKind()
    job_id = _queue(store, kind, request(total=100_000, sleep_s=0.05))  # far longer than any grace
    port = free_port()
    env = {
        **os.environ,
        "SKINGENBENCH_STORE": store.root_uri,
        "SKINGENBENCH_HOST": "127.0.0.1",
        "SKINGENBENCH_PREPROCESSING_PORT": str(port),
        **env_overrides,
    }
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(REPO / "tests")],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    target = f"127.0.0.1:{port}"
    _wait_serving(target, child)
    channel = open_channel(target, token="")
    ended: dict = {}
    events: list = []
    watcher = threading.Thread(
        target=lambda: ended.update(job=watch_job(channel, job_id, on_event=events.append, timeout_s=300))
    )
    watcher.start()
    while not any(e.step >= 5 for e in events):
        time.sleep(0.02)
    signalled = time.monotonic()
    child.send_signal(signal.SIGTERM)
    returncode = child.wait(timeout=300)
    exit_s = time.monotonic() - signalled
    watcher.join(timeout=10)
    log = child.stdout.read()
    return {
        "job": job,
        "grace_s": float(env_overrides.get("SKINGENBENCH_SHUTDOWN_GRACE_S", 30)),
        "calls_s": float(env_overrides.get("SKINGENBENCH_SHUTDOWN_CALLS_S", 5)),
        "exit_after_sigterm_s": round(exit_s, 2),
        "returncode": returncode,
        "watcher_saw": describe_end(ended["job"]) if "job" in ended else "the watch never ended",
        "server_log": [line for line in log.splitlines() if "stopped in" in line],
    }


def main() -> None:
    results = [measure(job, env) for job, env in CASES]
    json.dump({"machine_cpus": len(os.sched_getaffinity(0)), "cases": results}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
