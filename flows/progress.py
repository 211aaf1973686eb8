"""Grid-level progress of one benchmark run: cells done / total per stage and the jobs running now.

The flow creates one ``GridProgress`` per run and tells it what it plans, starts and finishes; every
change is sent to the process-wide listeners (``add_listener``: the terminal view of ``skingenbench
run`` subscribes before it calls the flow in the same process) and, inside a Prefect flow run, to
two Prefect artifacts keyed by the run id: one progress artifact for the whole grid (its description
says what runs and what is queued) and one results table, both updated in place as cells finish
(``PrefectProgressArtifacts``), so the UI shows one bar per run and no artifact per job.

A snapshot is plain JSON-able data::

    {"run_id", "grid", "total", "done", "failed",
     "stages": {stage: {"total", "done", "failed"}},
     "running": [{"cell", "stage", "job_id", "state": "queued" | "running", "percent", "endpoint"}],
     "finished"}

A listener that raises is logged and kept out of the flow's way: progress is a view, never a cause.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Snapshot = dict
Listener = Callable[[Snapshot], None]

_LISTENERS: list[Listener] = []
_LISTENERS_LOCK = threading.Lock()
QUEUED, RUNNING = "queued", "running"


def add_listener(callback: Listener) -> Callable[[], None]:
    """Send every run's snapshots (in this process) to ``callback``; returns the function that removes it."""
    with _LISTENERS_LOCK:
        _LISTENERS.append(callback)

    def remove() -> None:
        with _LISTENERS_LOCK:
            if callback in _LISTENERS:
                _LISTENERS.remove(callback)

    return remove


def _notify(callbacks: list[Listener], snapshot: Snapshot) -> None:
    for callback in callbacks:
        try:
            callback(copy.deepcopy(snapshot))  # a listener cannot change what the next one sees
        except Exception:
            log.exception("progress listener %r failed; the run goes on", callback)


def artifact_key(*parts: str) -> str:
    """A Prefect artifact key from ``parts``: lowercase letters, digits and dashes only (Prefect's rule)."""
    key = re.sub(r"[^a-z0-9-]+", "-", "-".join(parts).lower())
    return re.sub(r"-{2,}", "-", key).strip("-")[:100] or "run"


class GridProgress:
    """Thread-safe progress of one run; tasks in the flow's worker threads call it concurrently."""

    def __init__(self, run_id: str, grid: str) -> None:
        self.run_id, self.grid = run_id, grid
        self._lock = threading.Lock()
        self._stages: dict[str, dict[str, int]] = {}
        self._running: dict[str, dict[str, Any]] = {}  # cell -> its running entry
        self._results: list[dict[str, Any]] = []  # one row per finished cell, in finishing order
        self._finished = False
        self._sinks: list[Listener] = []  # this run's own receivers (the Prefect artifacts)
        # Held from snapshot to last receiver, so receivers see snapshots in the order of the changes
        # (re-entrant: a receiver may call back into this object).
        self._notifying = threading.RLock()

    def add_sink(self, sink: Listener) -> None:
        """A receiver of this run's snapshots only (``add_listener`` receives every run's)."""
        with self._lock:
            self._sinks.append(sink)

    # -- what the flow reports --------------------------------------------------------------------------
    def plan(self, stage: str, cells: int) -> None:
        """``cells`` more cells of ``stage`` will run (called again as later stages become known)."""
        with self._lock:
            self._stage(stage)["total"] += int(cells)
        self._changed()

    def started(self, stage: str, cell: str, job_id: str, endpoint: str) -> None:
        """A cell's job was accepted by ``endpoint``; it is queued there until its first running event."""
        with self._lock:
            self._stage(stage)
            self._running[cell] = {
                "cell": cell,
                "stage": stage,
                "job_id": job_id,
                "state": QUEUED,
                "percent": 0.0,
                "endpoint": endpoint,
            }
        self._changed()

    def update(self, cell: str, state: str, percent: float) -> None:
        with self._lock:
            entry = self._running.get(cell)
            if entry is None:
                return
            entry["state"] = RUNNING if state == RUNNING else QUEUED
            entry["percent"] = max(0.0, min(100.0, float(percent)))
        self._changed()

    def finished(self, stage: str, cell: str, ok: bool, result: dict[str, Any] | None = None) -> None:
        """A cell ended; ``result`` (small scalars: a metric, where it ran) is its row of the results table."""
        with self._lock:
            entry = self._running.pop(cell, None) or {}
            counts = self._stage(stage)
            counts["done" if ok else "failed"] += 1
            row = {"cell": cell, "stage": stage, "outcome": "done" if ok else "failed"}
            row.update({"job_id": entry.get("job_id", ""), "endpoint": entry.get("endpoint", "")})
            self._results.append({**row, **(result or {})})
        self._changed()

    def close(self) -> None:
        """The run ended (completed or not): listeners see ``finished``."""
        with self._lock:
            self._finished = True
        self._changed()

    # -- what views read ---------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        with self._lock:
            return self._snapshot()

    def results(self) -> list[dict[str, Any]]:
        """The finished cells' rows (cell, stage, outcome, job_id, endpoint and what ``finished`` added)."""
        with self._lock:
            return [dict(row) for row in self._results]

    def _snapshot(self) -> Snapshot:
        stages = {stage: dict(counts) for stage, counts in self._stages.items()}
        return {
            "run_id": self.run_id,
            "grid": self.grid,
            "total": sum(c["total"] for c in stages.values()),
            "done": sum(c["done"] for c in stages.values()),
            "failed": sum(c["failed"] for c in stages.values()),
            "stages": stages,
            "running": [dict(entry) for entry in self._running.values()],
            "finished": self._finished,
        }

    def _stage(self, stage: str) -> dict[str, int]:
        return self._stages.setdefault(stage, {"total": 0, "done": 0, "failed": 0})

    def _changed(self) -> None:
        with self._notifying:
            with self._lock:
                snapshot = self._snapshot()
                sinks = list(self._sinks)
            with _LISTENERS_LOCK:
                listeners = list(_LISTENERS)
            _notify(sinks + listeners, snapshot)


def percent_done(snapshot: Snapshot) -> float:
    """Cells finished (done or failed) as a percentage of the cells planned so far."""
    total = snapshot["total"]
    return 100.0 * (snapshot["done"] + snapshot["failed"]) / total if total else 0.0


def describe(snapshot: Snapshot) -> str:
    """One Markdown line per stage and a line on what runs and waits: the grid artifact's description."""
    lines = [
        f"**{snapshot['grid']}** run `{snapshot['run_id']}`: {snapshot['done']}/{snapshot['total']} cells"
    ]
    if snapshot["failed"]:
        lines[0] += f", {snapshot['failed']} failed"
    for stage, counts in snapshot["stages"].items():
        failed = f", {counts['failed']} failed" if counts["failed"] else ""
        lines.append(f"- {stage}: {counts['done']}/{counts['total']}{failed}")
    running = [e for e in snapshot["running"] if e["state"] == RUNNING]
    queued = [e for e in snapshot["running"] if e["state"] == QUEUED]
    if running or queued:
        lines.append(f"- now: {len(running)} running, {len(queued)} queued on their endpoints")
    if snapshot["finished"]:
        lines.append("- finished")
    return "\n".join(lines)


class PrefectProgressArtifacts:
    """The run's grid progress artifact and results table in the Prefect UI, updated in place.

    Created in the flow run's context (so they belong to the flow run); updated through the API from any
    thread at most every ``min_interval_s`` and at the run's end, so a grid of any size makes one small
    call pair per interval, not one per progress event or cell. Any Prefect error
    is logged once and the artifacts stop updating: the run does not depend on its view.
    """

    def __init__(self, progress: GridProgress, min_interval_s: float = 2.0) -> None:
        from prefect.artifacts import create_progress_artifact, create_table_artifact

        self.run_id = progress.run_id
        self.min_interval_s = min_interval_s
        self._lock = threading.Lock()
        self._last = 0.0
        self._last_finished = -1
        self._progress = progress
        self._broken = False
        self.progress_key = artifact_key("progress", progress.run_id)
        self.results_key = artifact_key("results", progress.run_id)
        self.progress_id = create_progress_artifact(
            progress=0.0, key=self.progress_key, description=describe(progress.snapshot())
        )
        self.results_id = create_table_artifact(
            table=[{"cell": "", "stage": "", "result": "no cell has finished yet"}],
            key=self.results_key,
            description=f"Results of run {progress.run_id}, one row per finished cell",
        )
        progress.add_sink(self)

    def __call__(self, snapshot: Snapshot) -> None:
        finished = snapshot["done"] + snapshot["failed"]
        now = time.monotonic()
        with self._lock:
            if self._broken:
                return
            if not (snapshot["finished"] or now - self._last >= self.min_interval_s):
                return  # the next change after the interval, or the run's end, shows this one too
            cells_ended = finished != self._last_finished
            self._last, self._last_finished = now, finished
            self._call(self._update_progress, snapshot)
            if cells_ended or snapshot["finished"]:
                self._call(self._update_results, self._progress.results())

    def _update_progress(self, snapshot: Snapshot) -> None:
        from prefect.artifacts import update_progress_artifact

        update_progress_artifact(
            self.progress_id, progress=percent_done(snapshot), description=describe(snapshot)
        )

    def _update_results(self, rows: list[dict[str, Any]]) -> None:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.actions import ArtifactUpdate

        if not rows:
            return
        columns = sorted({key for row in rows for key in row}, key=lambda k: (k not in _FIRST_COLUMNS, k))
        table = [{column: _cell_value(row.get(column, "")) for column in columns} for row in rows]
        with get_client(
            sync_client=True
        ) as client:  # the table's data is its JSON text, as Prefect stores it
            client.update_artifact(self.results_id, ArtifactUpdate(data=json.dumps(table)))

    def _call(self, function: Callable[..., Any], *args: Any) -> None:
        try:
            function(*args)
        except Exception:
            self._broken = True
            log.warning(
                "the Prefect progress artifacts of run %s stopped updating", self.run_id, exc_info=True
            )


_FIRST_COLUMNS = ("cell", "stage", "outcome")


def _cell_value(value: Any) -> Any:
    """JSON without NaN (Prefect's table view cannot show it) and floats short enough to read."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 4)
    return value
