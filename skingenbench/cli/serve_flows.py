"""``skingenbench serve-flows`` (``make ui``): the shipped grids as deployments, started from the Prefect UI.

It brings up what the runs need — the local service stack (unless endpoints are configured) and this home's
Prefect server (reused when ``run --keep`` or an earlier ``serve-flows`` left it up, or the one
``PREFECT_API_URL`` names; started otherwise, with its UI pointed at its own port: ``run.prefect_server_env``)
— then registers one deployment per shipped grid and serves them in the foreground with Prefect's
``serve`` (Prefect docs, "Run flows on static infrastructure": each run a subprocess of this process, no
work pool or worker). In the UI, Deployments → ``skingenbench-grid/<grid>`` → Run starts the grid, with
its parameters in the form: ``grid_spec`` (a shipped name or a YAML path), ``run_id`` and ``pipelines``
(a subset such as ``["A1", "A2"]``; empty: all).

A served run reaches the services through the settings (``Wiring.from_settings``): the endpoints and the
store chosen here are put in this process's environment, which its run subprocesses inherit. Ctrl-C (or
SIGTERM) stops serving and stops what this command started.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from skingenbench.cli.errors import UserError

DEPLOYMENT_TAG = "skingenbench"


def shipped_grids() -> list[str]:
    from skingenbench.flows.grid import GRIDS_DIR

    return sorted(p.stem for p in GRIDS_DIR.glob("*.yaml"))


def grid_deployments(grids: list[str], runs_dir: str) -> list:
    """One ``RunnerDeployment`` of the benchmark flow per grid; the entrypoint is the installed module
    (``skingenbench.flows.benchmark:benchmark``), so a run does not depend on the current folder."""
    from prefect.deployments.runner import EntrypointType

    from skingenbench.flows.benchmark import benchmark
    from skingenbench.flows.grid import load_grid

    deployments = []
    for name in grids:
        grid = load_grid(name)
        deployments.append(
            benchmark.to_deployment(
                name=name,
                parameters={"grid_spec": name, "runs_dir": runs_dir},
                description=(
                    f"The {name} grid ({grid.profile} profile; pipelines "
                    f"{', '.join(p for p, _, _ in grid.pipelines())}; classifiers {', '.join(grid.classifiers)}). "
                    "Run it with its defaults, or set `pipelines` to a subset and `run_id` to name the run."
                ),
                tags=[DEPLOYMENT_TAG, f"grid:{name}"],
                entrypoint_type=EntrypointType.MODULE_PATH,
            )
        )
    return deployments


def _cmd_serve_flows(args: argparse.Namespace) -> int:
    from skingenbench.cli import stack
    from skingenbench.cli.run import (
        _endpoint_options,
        _start_prefect_server,
        running_prefect_server,
        stop_prefect_server,
    )
    from skingenbench.flows.endpoints import endpoint_specs_from_env
    from skingenbench.flows.grid import GridError, load_grid

    grids = args.grids or shipped_grids()
    for name in grids:  # a typo is refused before anything starts
        try:
            load_grid(name)
        except GridError as error:
            raise UserError(f"grid {name!r}: {error}") from error
    endpoints = {**endpoint_specs_from_env(), **_endpoint_options(args.endpoints or [])}
    runs_dir = str(Path(args.runs_dir).resolve())  # the runs' working folder is this process's

    home = stack.home()
    (home / "logs").mkdir(parents=True, exist_ok=True)
    started_stack, server = False, None
    try:
        if not endpoints:
            members_before = stack.load_members()
            if stack.up() != 0:
                return 1
            started_stack = not members_before
            endpoints = {stage: member.target for stage, member in stack.load_members().items()}
        for stage, targets in endpoints.items():  # what Wiring.from_settings reads in each served run
            os.environ[f"SKINGENBENCH_{stage.upper()}_ENDPOINTS"] = targets
        os.environ.setdefault("SKINGENBENCH_STORE", (home / "store").as_uri())

        url = os.environ.get("PREFECT_API_URL", "").removesuffix("/api") or running_prefect_server(home)
        if not url:
            server, url = _start_prefect_server(home, args.port)
        os.environ["PREFECT_API_URL"] = f"{url}/api"

        from prefect import serve

        deployments = grid_deployments(grids, runs_dir)
        print(f"Prefect UI: {url}/deployments  (Run starts a grid; Ctrl-C stops serving)", flush=True)
        serve(*deployments, limit=args.limit, print_starting_message=False)
        return 0
    finally:
        if server is not None:
            stop_prefect_server(home, server)
        if started_stack:
            stack.down()


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser(
        "serve-flows", help="serve the shipped grids as Prefect deployments, started from the UI's Run button"
    )
    serve.add_argument(
        "--grids", nargs="+", metavar="GRID", help="grids to deploy (default: every shipped grid)"
    )
    serve.add_argument(
        "--port", type=int, help="port of a new Prefect server (default: the first free from 4200)"
    )
    serve.add_argument(
        "--endpoints",
        nargs="*",
        metavar="STAGE=HOST:PORT[*SLOTS],...",
        help="service endpoints per stage (default: the local stack, started if it is not up)",
    )
    serve.add_argument("--runs-dir", default="runs", help="where the runs' reports go")
    serve.add_argument(
        "--limit", type=int, default=1, help="grid runs at once (default 1: they share the stack)"
    )
    serve.set_defaults(func=_cmd_serve_flows)
