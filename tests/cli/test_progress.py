"""The job progress display: the ETA arithmetic, the quiet plain lines for logs, queued shown as queued,
and the live bar on a terminal (rich, rendered into a buffer that says it is a terminal)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest

from skingenbench.api.v1 import common_pb2
from skingenbench.cli.progress import JobProgress, eta_seconds, format_duration

QUEUED, RUNNING, SUCCEEDED = (
    common_pb2.JOB_STATE_QUEUED,
    common_pb2.JOB_STATE_RUNNING,
    common_pb2.JOB_STATE_SUCCEEDED,
)


def event(state, step=0, total=0, message="", **metrics):
    return SimpleNamespace(state=state, step=step, total=total, metrics=metrics, message=message)


@pytest.mark.parametrize(
    "step, total, first, elapsed, expected",
    [
        (10, 30, 0, 5.0, 10.0),  # 2 steps/s, 20 left
        (15, 30, 10, 5.0, 15.0),  # resumed at 10: only the 5 steps done now give the rate
        (0, 30, 0, 5.0, None),  # nothing done yet: no rate
        (30, 30, 0, 5.0, None),  # finished
        (5, 0, 0, 5.0, None),  # total unknown
    ],
)
def test_eta_uses_the_rate_since_the_job_started_running(step, total, first, elapsed, expected):
    assert eta_seconds(step, total, first, elapsed) == expected


def test_durations_read_as_clock_time():
    assert format_duration(None) == "?"
    assert format_duration(65.4) == "1:05"
    assert format_duration(3725) == "1:02:05"


def test_plain_lines_are_few_and_say_queued(monkeypatch):
    stream = io.StringIO()
    clock = iter(float(t) for t in range(1000))
    monkeypatch.setattr("skingenbench.cli.progress.time.monotonic", lambda: next(clock))
    progress = JobProgress("train ddpm", plain=True, stream=stream)
    progress.update(event(QUEUED))
    progress.update(event(QUEUED))  # same state, same tenth: no new line
    for step in range(0, 101):
        progress.update(event(RUNNING, step, 100, loss=0.5))
    progress.update(event(SUCCEEDED, 100, 100))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "train ddpm: queued: waiting for a free job slot"
    assert 10 <= len(lines) <= 14  # one per tenth, plus the state changes, not one per step
    assert "50/100 (50%)" in lines[6] and "loss 0.5" in lines[6] and "ETA 0:50" in lines[6]
    assert lines[-1] == "train ddpm: 100/100 (100%)  succeeded"


def test_a_terminal_gets_a_live_bar():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    progress = JobProgress("evaluate", stream=stream)
    assert progress.plain is False
    progress.update(event(RUNNING, 3, 12, images_per_s=4.0))
    progress.update(event(RUNNING, 12, 12))
    progress.close()
    text = stream.getvalue()
    assert "evaluate" in text and "12/12" in text and "100%" in text
