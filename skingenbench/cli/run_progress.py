"""What ``skingenbench run`` shows while a grid runs: cells done / total per stage and the jobs running now.

Both views are listeners of the flow's grid progress (``skingenbench.flows.progress.add_listener``; the
snapshot's shape is documented there), called from the flow's worker threads:

- ``LiveView``: a ``rich`` table redrawn in place on a terminal: one bar per stage, then the running and
  queued jobs with their percent and endpoint.
- ``PlainView``: one line when a cell finishes, and a heartbeat line at most every ``heartbeat_s`` while
  jobs run, so a CI log shows steady progress without a line per progress event.

Prefect's own INFO lines (task created, state changes) would push the table off the screen; they are still
sent to the Prefect API and shown in its UI, so ``quiet_prefect_console`` keeps only its warnings and errors
on the terminal while a view is up.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TextIO

Snapshot = dict[str, Any]
MAX_LISTED_JOBS = 12  # rows of running/queued jobs in the live table; the rest are counted


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def _cells(snapshot: Snapshot) -> str:
    failed = f", {snapshot['failed']} failed" if snapshot["failed"] else ""
    return f"{snapshot['done']}/{snapshot['total']} cells{failed}"


class LiveView:
    """A live ``rich`` table of the latest snapshot (redrawn a few times a second, so the clock moves)."""

    def __init__(self, console: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        from rich.console import Console

        self.console = console or Console()
        self._clock = clock
        self._start = clock()
        self._latest: Snapshot | None = None
        self._lock = threading.Lock()
        self._live: Any = None

    def __call__(self, snapshot: Snapshot) -> None:
        with self._lock:
            self._latest = snapshot

    def render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            snapshot = self._latest
        elapsed = _clock(self._clock() - self._start)
        if snapshot is None:
            return Text(f"starting the grid … {elapsed}")
        title = Text.assemble(
            ("skingenbench ", "bold"),
            f"{snapshot['grid']} · run {snapshot['run_id']} · {_cells(snapshot)} · {elapsed}",
            (" · finished" if snapshot["finished"] else "", "green"),
        )
        stages = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        stages.add_column("stage")
        stages.add_column("done", justify="right")
        stages.add_column("", width=32)
        stages.add_column("failed", justify="right")
        for stage, counts in snapshot["stages"].items():
            finished = counts["done"] + counts["failed"]
            stages.add_row(
                stage,
                f"{counts['done']}/{counts['total']}",
                ProgressBar(total=max(counts["total"], 1), completed=finished, width=30),
                str(counts["failed"]) if counts["failed"] else "",
            )
        parts: list[Any] = [title, stages]
        jobs = sorted(snapshot["running"], key=lambda e: (e["state"] != "running", e["cell"]))
        if jobs:
            table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
            for column in ("job", "stage", "state", "%", "endpoint"):
                table.add_column(column, justify="right" if column == "%" else "left")
            for entry in jobs[:MAX_LISTED_JOBS]:
                style = "cyan" if entry["state"] == "running" else "dim"
                table.add_row(
                    entry["cell"],
                    entry["stage"],
                    Text(entry["state"], style=style),
                    f"{entry['percent']:.0f}",
                    entry.get("endpoint", ""),
                )
            if len(jobs) > MAX_LISTED_JOBS:
                table.add_row(f"… and {len(jobs) - MAX_LISTED_JOBS} more", "", "", "", "")
            parts.append(table)
        return Group(*parts)

    def __enter__(self) -> LiveView:
        from rich.live import Live

        self._live = Live(
            console=self.console, get_renderable=self.render, refresh_per_second=2, redirect_stderr=False
        )
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._live.refresh()
        self._live.__exit__(*exc)


class PlainView:
    """Quiet lines for logs: the first snapshot, a line per finished cell, a heartbeat while jobs run."""

    def __init__(
        self,
        stream: TextIO | None = None,
        heartbeat_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream or sys.stdout
        self.heartbeat_s = heartbeat_s
        self._clock = clock
        self._start = clock()
        self._last_line = -float("inf")
        self._last_key: tuple[int, ...] | None = None
        self._lock = threading.Lock()

    def __call__(self, snapshot: Snapshot) -> None:
        # A stage's plan growing is no news of its own (the flow plans a whole grid in a second): it is
        # shown with the next finished cell or heartbeat.
        key = (snapshot["done"], snapshot["failed"], int(snapshot["finished"]))
        now = self._clock()
        with self._lock:
            if key == self._last_key and now - self._last_line < self.heartbeat_s:
                return
            self._last_key, self._last_line = key, now
            # Written, not print()ed: the flow's log_prints=True turns print() in its threads into log records.
            self.stream.write(self.line(snapshot, now - self._start) + "\n")
            self.stream.flush()

    @staticmethod
    def line(snapshot: Snapshot, elapsed: float) -> str:
        stages = ", ".join(
            f"{stage} {c['done']}/{c['total']}" + (f" ({c['failed']} failed)" if c["failed"] else "")
            for stage, c in snapshot["stages"].items()
        )
        text = f"[{_clock(elapsed):>7}] {_cells(snapshot)}"
        if stages:
            text += f" | {stages}"
        running = [e for e in snapshot["running"] if e["state"] == "running"]
        queued = len(snapshot["running"]) - len(running)
        if running:
            shown = ", ".join(
                f"{e['cell']} {e['percent']:.0f}%" for e in sorted(running, key=lambda e: e["cell"])[:4]
            )
            more = f" +{len(running) - 4}" if len(running) > 4 else ""
            text += f" | running {len(running)}: {shown}{more}"
        if queued:
            text += f" | queued {queued}"
        if snapshot["finished"]:
            text += " | finished"
        return text

    def __enter__(self) -> PlainView:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


def choose_view(plain: bool, stream: TextIO | None = None) -> LiveView | PlainView:
    """The live table on a terminal, plain lines when asked (``--plain``) or when the output is a file or pipe."""
    stream = stream or sys.stdout
    if plain or not stream.isatty():
        return PlainView(stream)
    from rich.console import Console

    return LiveView(Console(file=stream))


class _QuietPrefect(logging.Filter):
    """Prefect's records below WARNING are dropped; with ``tracebacks`` off, a failed task's record is shown
    as its one-line message (the traceback stays in the UI's logs; ``--debug`` shows it here too)."""

    def __init__(self, handler: logging.Handler, tracebacks: bool) -> None:
        super().__init__()
        self.handler, self.tracebacks = handler, tracebacks

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith("prefect"):
            return True
        if record.levelno < logging.WARNING:
            return False
        if record.exc_info and not self.tracebacks:
            brief = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
            self.handler.handle(brief)  # passes this filter: it has no exc_info
            return False
        return True


@contextlib.contextmanager
def quiet_prefect_console(view: LiveView | PlainView, tracebacks: bool = False) -> Iterator[None]:
    """Keep Prefect's INFO lines off the terminal (they reach its API and UI as before), and its tracebacks
    unless ``tracebacks``; with a live view, its console prints the remaining warnings above the table
    instead of through it."""
    from prefect.logging.handlers import PrefectConsoleHandler

    handlers = [h for h in logging.getLogger().handlers if isinstance(h, PrefectConsoleHandler)]
    filters = [_QuietPrefect(h, tracebacks) for h in handlers]
    consoles = [h.console for h in handlers]
    for handler, quiet in zip(handlers, filters, strict=True):
        handler.addFilter(quiet)
        if isinstance(view, LiveView):
            handler.console = view.console
    try:
        yield
    finally:
        for handler, quiet, console in zip(handlers, filters, consoles, strict=True):
            handler.removeFilter(quiet)
            handler.console = console
