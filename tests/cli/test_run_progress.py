"""The terminal views of ``skingenbench run`` fed a sequence of grid-progress snapshots (the shape
``skingenbench.flows.progress`` sends; here made by its real ``GridProgress``, no flow or service)."""

from __future__ import annotations

import io
import logging

from rich.console import Console
from skingenbench.flows.progress import GridProgress, add_listener

from skingenbench.cli.run_progress import LiveView, PlainView, choose_view, quiet_prefect_console


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _drive(progress: GridProgress, clock: FakeClock) -> None:
    """A small grid: two preprocessing cells, one generator cell that reports progress, then the end."""
    progress.plan("preprocess", 2)
    progress.started("preprocess", "A basic", "job-1", "127.0.0.1:50051")
    progress.started("preprocess", "B advanced", "job-2", "127.0.0.1:50051")
    progress.update("A basic", "running", 50)
    progress.finished("preprocess", "A basic", ok=True)
    progress.finished("preprocess", "B advanced", ok=False)
    progress.plan("train generator", 1)
    progress.started("train generator", "A2-stylegan2_ada", "job-3", "127.0.0.1:50052")
    for percent in (10, 20, 30):  # progress events within the heartbeat: no new plain lines
        clock.now += 1
        progress.update("A2-stylegan2_ada", "running", percent)
    clock.now += 31  # past the heartbeat: one line says what runs
    progress.update("A2-stylegan2_ada", "running", 40)
    progress.finished("train generator", "A2-stylegan2_ada", ok=True)
    progress.close()


def test_plain_lines_follow_finished_cells_and_a_heartbeat(monkeypatch):
    # Inside the flow run, log_prints=True makes print() a Prefect log record (dropped from the terminal):
    # the view must write to its stream instead.
    def no_print(*_args, **_kwargs):
        raise AssertionError("print() inside a flow run becomes a log record")

    monkeypatch.setattr("builtins.print", no_print)
    out, clock = io.StringIO(), FakeClock()
    view = PlainView(out, heartbeat_s=30, clock=clock)
    remove = add_listener(view)
    try:
        _drive(GridProgress("demo-1", "demo"), clock)
    finally:
        remove()
    lines = out.getvalue().splitlines()
    # first plan, done, failed, heartbeat, done, finished: a line each; none per start, plan or progress event
    assert len(lines) == 6, lines
    assert lines[0].endswith("0/2 cells | preprocess 0/2")
    assert "1/2 cells, 1 failed | preprocess 1/2 (1 failed)" in lines[2]
    assert lines[3].startswith("[   0:34]")
    assert lines[3].endswith(
        "1/3 cells, 1 failed | preprocess 1/2 (1 failed), train generator 0/1 | running 1: A2-stylegan2_ada 40%"
    )
    assert lines[-1].endswith(
        "2/3 cells, 1 failed | preprocess 1/2 (1 failed), train generator 1/1 | finished"
    )


def test_the_live_table_shows_stages_and_running_jobs():
    console = Console(file=io.StringIO(), width=140, color_system=None)
    clock = FakeClock()
    view = LiveView(console, clock=clock)
    progress = GridProgress("demo-1", "demo")
    progress.add_sink(view)
    progress.plan("preprocess", 2)
    progress.started("preprocess", "A basic", "job-1", "127.0.0.1:50051")
    progress.started("preprocess", "B advanced", "job-2", "127.0.0.1:50055")
    progress.update("A basic", "running", 62)
    clock.now += 75
    console.print(view.render())
    text = console.file.getvalue()
    assert "demo · run demo-1 · 0/2 cells · 1:15" in text
    assert "preprocess" in text and "0/2" in text
    rows = [line for line in text.splitlines() if "basic" in line or "advanced" in line]
    assert "running" in rows[0] and "62" in rows[0] and "50051" in rows[0]  # running jobs first
    assert "queued" in rows[1] and "50055" in rows[1]


def test_a_pipe_gets_plain_lines():
    assert isinstance(choose_view(plain=False, stream=io.StringIO()), PlainView)


def test_prefect_info_lines_and_tracebacks_stay_off_the_terminal():
    from prefect.logging.handlers import PrefectConsoleHandler

    out = io.StringIO()
    handler = PrefectConsoleHandler(stream=out)
    root = logging.getLogger()
    root.addHandler(handler)
    logger = logging.getLogger("prefect.task_runs.test")
    logger.setLevel(logging.INFO)
    try:
        with quiet_prefect_console(PlainView(io.StringIO())):
            logger.info("Finished in state Completed()")
            try:
                raise RuntimeError("boom")
            except RuntimeError:
                logger.error("Task run failed with exception: RuntimeError('boom')", exc_info=True)
            logging.getLogger("skingenbench.x").warning("kept")
        logger.info("after the view: shown again")
    finally:
        root.removeHandler(handler)
    text = out.getvalue()
    assert "Completed" not in text and "Traceback" not in text
    assert "RuntimeError('boom')" in text and "kept" in text and "shown again" in text


def test_the_live_view_draws_on_a_terminal_and_leaves_the_final_table():
    console = Console(file=io.StringIO(), width=140, force_terminal=True, color_system=None)
    clock = FakeClock()
    view = LiveView(console, clock=clock)
    remove = add_listener(view)
    try:
        with view, quiet_prefect_console(view):
            _drive(GridProgress("demo-2", "demo"), clock)
    finally:
        remove()
    text = console.file.getvalue()
    assert "demo · run demo-2 · 2/3 cells, 1 failed" in text and "finished" in text
    assert "train generator" in text
