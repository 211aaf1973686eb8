"""A job's progress on the terminal: a live bar with ETA (``rich``) on a terminal, plain lines elsewhere.

The services stream ``ProgressEvent``s (step, total, metrics, state); :class:`JobProgress` turns them
into ``train ddpm ━━━━━╸━━━ 12/30 40% loss 0.12 0:00:05 ETA 0:00:07``. Output that is not a terminal
(CI logs, a pipe, ``--plain``) gets one line per tenth of the job, per state change and at least every
30 s, so a log shows the job is alive without a line per step. Everything goes to stderr: stdout is
kept for results (``--json``).

The ETA is the remaining steps at the rate measured since the job started running (steps done before a
resume, or while queued, do not count), which is what a researcher waiting at the terminal wants.
"""

from __future__ import annotations

import sys
import time
from typing import IO

PLAIN_EVERY_S = 30.0


def eta_seconds(step: int, total: int, first_step: int, elapsed_s: float) -> float | None:
    """Seconds left at the rate seen since ``first_step``; None while no rate is known."""
    done = step - first_step
    if total <= 0 or done <= 0 or elapsed_s <= 0 or step >= total:
        return None
    return (total - step) * elapsed_s / done


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _metrics_text(metrics) -> str:
    shown = []
    for name in ("loss", "images_per_s", "val_score", "lr"):
        if name in metrics:
            shown.append(f"{name} {metrics[name]:.4g}")
    return " ".join(shown)


class JobProgress:
    """``update(event)`` per ProgressEvent, ``close()`` at the end; ``note(text)`` prints a line."""

    def __init__(self, label: str, plain: bool | None = None, stream: IO[str] | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.plain = plain if plain is not None else not (_is_terminal(self.stream) and _has_rich())
        self._first: tuple[int, float] | None = None  # (step, time) when the job was first seen running
        self._last_line = (-1, "", 0.0)  # (tenth, state, time) of the last plain line
        self._bar = None
        self._task = None

    # -- events --------------------------------------------------------------------------------------------
    def update(self, event) -> None:
        state = _state_name(event.state)
        step, total = int(event.step), int(event.total)
        now = time.monotonic()
        if state == "RUNNING" and self._first is None:
            self._first = (step, now)
        first_step, since = self._first or (step, now)
        eta = eta_seconds(step, total, first_step, now - since) if state == "RUNNING" else None
        detail = "queued: waiting for a free job slot" if state == "QUEUED" else _metrics_text(event.metrics)
        if state not in ("QUEUED", "RUNNING"):
            detail = state.lower()
        if self.plain:
            self._plain_line(state, step, total, eta, detail or event.message, now)
        else:
            self._rich_update(step, total, detail or event.message)

    def count(self, done: int, total: int, detail: str = "") -> None:
        """Progress of work this process does itself (images received, files imported)."""
        from types import SimpleNamespace

        self.update(SimpleNamespace(state=2, step=done, total=total, metrics={}, message=detail))

    def note(self, text: str) -> None:
        if self._bar is not None:
            self._bar.console.print(text)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    # -- renderings ----------------------------------------------------------------------------------------
    def _plain_line(self, state: str, step: int, total: int, eta, detail: str, now: float) -> None:
        tenth = int(10 * step / total) if total else -1
        last_tenth, last_state, last_time = self._last_line
        if tenth == last_tenth and state == last_state and now - last_time < PLAIN_EVERY_S:
            return
        self._last_line = (tenth, state, now)
        counts = f"{step}/{total} ({100 * step / total:.0f}%)" if total else (f"step {step}" if step else "")
        left = f"ETA {format_duration(eta)}" if eta is not None else ""
        parts = [p for p in (counts, detail, left) if p]
        print(f"{self.label}: {'  '.join(parts) or state.lower()}", file=self.stream, flush=True)

    def _rich_update(self, step: int, total: int, detail: str) -> None:
        if self._bar is None:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TaskProgressColumn,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[detail]}"),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=total or None, detail=detail)
        self._bar.update(self._task, completed=step, total=total or None, detail=detail)


def _state_name(state: int) -> str:
    from skingenbench.api.v1 import common_pb2

    return common_pb2.JobState.Name(state).removeprefix("JOB_STATE_")


def _has_rich() -> bool:
    import importlib.util

    return importlib.util.find_spec("rich") is not None


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
