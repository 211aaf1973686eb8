"""``skingenbench run``: the benchmark grid through Prefect (``report`` is in ``cli/report.py``).

``run`` brings up what is missing — the local service stack (unless endpoints are configured) and
a local Prefect server (unless ``PREFECT_API_URL`` is set or this home's server is up), so the run can
be watched in the UI —
runs the flow, prints the report's path, and stops what it started (``--keep`` leaves it up).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from skingenbench.cli.errors import UserError, one_line
from skingenbench.cli.tls import add_tls_arguments, client_tls


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def prefect_server_env(home: Path, port: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a local Prefect server on ``port``.

    The UI finds the API through the server's ``ui-settings``, which default to port 4200 unless told
    otherwise (Prefect's settings reference: ``server.ui.api_url`` falls back to ``PREFECT_API_URL``,
    then to ``PREFECT_SERVER_API_HOST``/``_PORT``). So the API port and the UI's API URL are both set
    to this server's, and a ``PREFECT_API_URL`` inherited from the caller's shell is not passed on.
    """
    env = {k: v for k, v in (os.environ if base is None else base).items() if k != "PREFECT_API_URL"}
    env.update(
        PREFECT_HOME=str(home / "prefect"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_SERVER_UI_API_URL=f"http://127.0.0.1:{port}/api",
    )
    return env


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/health", timeout=2) as reply:
            return reply.status == 200
    except OSError:
        return False


def _server_record(home: Path) -> Path:
    return home / "prefect-server.json"


def running_prefect_server(home: Path) -> str | None:
    """The URL of the Prefect server a ``run --keep`` or ``serve-flows`` of this home left running, if it
    still answers (one server per home: they share its database, ``PREFECT_HOME``)."""
    try:
        record = json.loads(_server_record(home).read_text())
        os.kill(int(record["pid"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return record["url"] if _healthy(record["url"]) else None


def stop_prefect_server(home: Path, process: subprocess.Popen) -> None:
    process.terminate()
    process.wait(timeout=30)
    _server_record(home).unlink(missing_ok=True)


def _start_prefect_server(home: Path, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """A Prefect server for this home on ``port`` (default: the first free one from 4200), recorded in
    the home so that a later ``run`` or ``serve-flows`` reuses it."""
    if port is None:
        port = next(p for p in [4200, *range(4201, 4300)] if _port_free(p))
    elif not _port_free(port):
        raise UserError(f"port {port} is in use", "choose another with --port, or stop what listens there")
    url = f"http://127.0.0.1:{port}"
    env = prefect_server_env(home, port)
    (home / "logs").mkdir(parents=True, exist_ok=True)
    log = open(home / "logs" / "prefect-server.log", "ab")  # noqa: SIM115 (lives as long as the server)
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the Prefect server exited; see {home / 'logs' / 'prefect-server.log'}")
        if _healthy(url):
            _server_record(home).write_text(json.dumps({"url": url, "pid": process.pid}))
            return process, url
        time.sleep(0.5)
    process.terminate()
    raise SystemExit("the Prefect server did not become healthy within 120 s")


def _endpoint_options(options: list[str]) -> dict[str, str]:
    """``--endpoints STAGE=TARGETS ...`` as stage -> comma-separated targets."""
    from skingenbench.services.platform.settings import SERVICES

    endpoints = {}
    for option in options:
        stage, _, targets = option.partition("=")
        if stage not in SERVICES or not targets:
            raise UserError(
                f"--endpoints {option!r}: expected STAGE=HOST:PORT[*SLOTS],... with STAGE one of "
                f"{', '.join(SERVICES)}"
            )
        endpoints[stage] = targets
    return endpoints


def _check_runs_dir(runs_dir: str) -> None:
    folder = Path(runs_dir)
    existing = next((p for p in [folder, *folder.parents] if p.exists()), Path("."))
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UserError(
            f"--runs-dir {runs_dir!r}: {str(existing)!r} is not a writable folder; choose another"
        )


def _validate(args: argparse.Namespace, endpoints: dict[str, str]):
    """Everything about the request that can be wrong, checked before a process or a flow run starts."""
    from skingenbench.flows.grid import GridError
    from skingenbench.flows.validation import validate_grid

    _check_runs_dir(args.runs_dir)
    try:
        # The local stack reads this machine's disk; remote services read theirs (their paths are theirs).
        return validate_grid(args.grid, args.pipelines, check_data_paths=not endpoints)
    except GridError as error:
        raise UserError(f"grid {args.grid!r}: {error}") from error


def _debug(args: argparse.Namespace) -> bool:
    """``--debug`` (taken off the command line by ``cli.main``, which sets ``args.debug``) or ``SKINGENBENCH_DEBUG``."""
    return bool(getattr(args, "debug", False)) or os.environ.get("SKINGENBENCH_DEBUG", "") not in ("", "0")


def _cmd_run(args: argparse.Namespace) -> int:
    """Every ``UserError`` raised before the run is ``cli.main``'s to print: one line, exit 2."""
    from skingenbench.cli import stack
    from skingenbench.flows.endpoints import endpoint_specs_from_env

    endpoints = {**endpoint_specs_from_env(), **_endpoint_options(args.endpoints or [])}
    _validate(args, endpoints)  # no stack, no server, no flow run for a mistake in the request

    from skingenbench.flows.wiring import Wiring

    home = stack.home()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    started_stack = False
    if not endpoints:  # nothing configured: the local stack, started unless it is up
        members_before = stack.load_members()
        if stack.up() != 0:
            return 1
        started_stack = not members_before
        endpoints = {stage: member.target for stage, member in stack.load_members().items()}
    # The stack's services default to the same store (``stack.up``); the flow gets it, with the
    # endpoints, as its wiring: nothing is passed to it through the environment.
    wiring = Wiring.from_settings(
        endpoints=endpoints,
        store_uri=os.environ.get("SKINGENBENCH_STORE") or (home / "store").as_uri(),
        tls=client_tls(args),
    )
    server = None
    try:  # from here on, what was started is stopped however the run ends
        if not os.environ.get("PREFECT_API_URL"):
            url = running_prefect_server(home)
            if url is None:
                server, url = _start_prefect_server(home)
            os.environ["PREFECT_API_URL"] = f"{url}/api"
            print(f"Prefect UI: {url}  (watch the run there)", flush=True)
        folder = _run_flow(args, wiring, home)
        if folder is None:
            return 1
        print(f"\nreport: {Path(folder) / 'report.md'}\n        {Path(folder) / 'report.html'}")
        return 0
    finally:
        _flush_prefect_logs()
        if not args.keep:
            if server is not None:
                stop_prefect_server(home, server)
            if started_stack:
                stack.down()
        else:
            print(
                "left running: the local stack and the Prefect server (`skingenbench down` stops the stack)"
            )


def _run_flow(args: argparse.Namespace, wiring, home: Path) -> str | None:
    """The flow with the terminal view subscribed to its progress; None (and one line) when it failed."""
    from skingenbench.cli.run_progress import choose_view, quiet_prefect_console
    from skingenbench.flows.benchmark import benchmark
    from skingenbench.flows.progress import add_listener

    selection = {"pipelines": args.pipelines} if args.pipelines else {}
    view = choose_view(args.plain)
    remove = add_listener(view)
    try:
        with view, quiet_prefect_console(view, tracebacks=_debug(args)):
            return benchmark(
                grid_spec=args.grid, run_id=args.run_id, runs_dir=args.runs_dir, wiring=wiring, **selection
            )
    except Exception as error:  # the run's failure is in the Prefect UI and its logs; here, one line
        if _debug(args):
            raise
        print(
            f"error: the run failed: {type(error).__name__}: {one_line(str(error))} (the Prefect UI and "
            f"{home / 'logs'} have the details; --debug shows the traceback)",
            file=sys.stderr,
        )
        return None
    finally:
        remove()


def _flush_prefect_logs() -> None:
    """Send buffered run logs to the API before the server they go to is stopped; otherwise Prefect's log
    worker tries at interpreter exit, finds no server and prints "Error logging to API"."""
    try:
        from prefect.logging.handlers import APILogWorker

        APILogWorker.drain_all(timeout=10)  # blocks until sent (no event loop runs here)
    except Exception:  # logging is best effort; the report is already written
        pass


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="run a benchmark grid through Prefect")
    run.add_argument("--grid", default="demo", help="a shipped grid (demo, smoke, paper) or a YAML file")
    run.add_argument(
        "--pipelines",
        nargs="+",
        metavar="NAME",
        help="run only these pipelines of the grid, e.g. A1 A2 (default: all)",
    )
    run.add_argument(
        "--endpoints",
        nargs="*",
        metavar="STAGE=HOST:PORT[*SLOTS],...",
        help="service endpoints per stage (default: the local stack)",
    )
    run.add_argument("--run-id", default="", help="default: <grid>-<timestamp>")
    run.add_argument("--runs-dir", default="runs")
    run.add_argument("--keep", action="store_true", help="leave the stack and the Prefect server running")
    run.add_argument(
        "--plain", action="store_true", help="progress as plain lines (also when not a terminal)"
    )
    add_tls_arguments(run)
    run.set_defaults(func=_cmd_run)
    # `report` (show and check) is registered by skingenbench/cli/report.py
