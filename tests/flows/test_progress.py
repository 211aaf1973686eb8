"""Grid progress: snapshots as the contract says, listeners process-wide, a failing listener harmless,
counts right under concurrent updates from many threads."""

from __future__ import annotations

import json
import threading

from skingenbench.flows.progress import GridProgress, add_listener, artifact_key, describe, percent_done


def test_snapshots_follow_plan_start_update_finish():
    seen = []
    remove = add_listener(seen.append)
    try:
        progress = GridProgress("smoke-20260101", "smoke")
        progress.plan("preprocess", 2)
        progress.started("preprocess", "preprocess B/train", "job-1", "127.0.0.1:1")
        queued = progress.snapshot()["running"][0]
        assert queued == {
            "cell": "preprocess B/train",
            "stage": "preprocess",
            "job_id": "job-1",
            "state": "queued",
            "percent": 0.0,
            "endpoint": "127.0.0.1:1",
        }
        progress.update("preprocess B/train", "running", 150.0)
        assert progress.snapshot()["running"][0]["state"] == "running"
        assert progress.snapshot()["running"][0]["percent"] == 100.0  # clamped
        progress.finished("preprocess", "preprocess B/train", ok=True, result={"items": 3})
        progress.finished("preprocess", "preprocess B/all", ok=False)
        progress.close()
    finally:
        remove()
    last = seen[-1]
    assert json.loads(json.dumps(last)) == last  # JSON-able
    assert last["stages"] == {"preprocess": {"total": 2, "done": 1, "failed": 1}}
    assert (last["total"], last["done"], last["failed"], last["running"], last["finished"]) == (
        2,
        1,
        1,
        [],
        True,
    )
    assert [s["finished"] for s in seen].count(True) == 1 and len(seen) == 6
    rows = progress.results()
    assert rows[0] == {
        "cell": "preprocess B/train",
        "stage": "preprocess",
        "outcome": "done",
        "job_id": "job-1",
        "endpoint": "127.0.0.1:1",
        "items": 3,
    }
    assert rows[1]["outcome"] == "failed" and percent_done(last) == 100.0
    assert "1/2 cells, 1 failed" in describe(last) and "- preprocess: 1/2, 1 failed" in describe(last)
    progress.plan("sample", 1)  # removed: this listener hears nothing more
    assert len(seen) == 6


def test_a_failing_listener_never_breaks_the_run_or_other_listeners():
    seen = []

    def broken(snapshot):
        raise RuntimeError("view bug")

    removers = [add_listener(broken), add_listener(seen.append)]
    try:
        progress = GridProgress("r", "g")
        progress.plan("train", 1)
        progress.started("train", "train A1/resnet18/seed0", "j", "e")
        progress.finished("train", "train A1/resnet18/seed0", ok=True)
    finally:
        for remove in removers:
            remove()
    assert seen[-1]["done"] == 1
    seen[-1]["stages"]["train"]["done"] = 99  # a listener's copy: the run's own state is untouched
    assert progress.snapshot()["stages"]["train"]["done"] == 1


def test_counts_are_exact_under_concurrent_cells():
    progress = GridProgress("r", "g")
    order = []
    remove = add_listener(lambda s: order.append(s["done"] + s["failed"]))
    progress.plan("test", 400)

    def cells(worker):
        for i in range(50):
            cell = f"test A1/resnet18/seed{worker}-{i}"
            progress.started("test", cell, f"job-{worker}-{i}", f"e{worker}")
            progress.update(cell, "running", 50.0)
            progress.finished("test", cell, ok=i % 10 != 0)

    threads = [threading.Thread(target=cells, args=(w,)) for w in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        remove()
    snapshot = progress.snapshot()
    assert snapshot["stages"]["test"] == {"total": 400, "done": 360, "failed": 40}
    assert snapshot["running"] == [] and len(progress.results()) == 400
    assert order == sorted(order)  # listeners see the changes in order


def test_artifact_keys_are_lowercase_letters_digits_dashes():
    assert artifact_key("progress", "Smoke_Run 2026/01") == "progress-smoke-run-2026-01"
    assert artifact_key("results", "--A__B--") == "results-a-b"
