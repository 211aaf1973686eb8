"""``skingenbench jobs list|watch|cancel``: the jobs of every service, through the Jobs RPCs each serves.

    skingenbench jobs list                 # recent jobs of all four services, newest first
    skingenbench jobs list --state running --service generation
    skingenbench jobs watch JOB_ID         # progress bar until it ends
    skingenbench jobs cancel JOB_ID        # training jobs checkpoint first

A job id is unique per service, and the command does not need to be told which one: it asks each
service in turn (``GetJob``) and uses the one that knows the id. A service that is not running is
reported and skipped, so ``list`` still shows the others.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time

from skingenbench.cli.connect import Service, add_connection_arguments, job_summary
from skingenbench.cli.errors import UserError
from skingenbench.cli.options import add_output_arguments, print_json

STATES = ("queued", "running", "succeeded", "failed", "cancelled")


def _stages(args: argparse.Namespace) -> list[str]:
    from skingenbench.services.platform.settings import SERVICES

    return [args.service] if getattr(args, "service", "") else list(SERVICES)


def jobs_by_service(
    stages: list[str], args: argparse.Namespace, states: tuple[str, ...] = (), limit: int = 0
) -> dict[str, list | UserError]:
    """Each stage's recent jobs in the given states (all: empty), or the error that stopped the call."""
    from skingenbench.api.v1 import common_pb2

    found: dict[str, list | UserError] = {}
    for stage in stages:
        try:
            with Service.from_args(stage, args) as service:
                rows: list = []
                for state in states or ("",):
                    request = common_pb2.ListJobsRequest(
                        state=common_pb2.JobState.Value(f"JOB_STATE_{state.upper()}") if state else 0,
                        kind=getattr(args, "kind", "") or "",
                        limit=limit,
                    )
                    rows += service.call("ListJobs", request, timeout_s=5.0, stub=service.jobs).jobs
        except UserError as error:
            found[stage] = error
            continue
        found[stage] = sorted(rows, key=lambda job: job.created.ToNanoseconds(), reverse=True)
    return found


def job_line(job) -> str:
    """``a1b2c3d4e5f6  RUNNING    train_generator   12/30 (40%) loss 0.12  started 11:02:07``."""
    from skingenbench.api.v1 import common_pb2

    state = common_pb2.JobState.Name(job.state).removeprefix("JOB_STATE_")
    event = job.last_progress
    progress = f"{event.step}/{event.total} ({100 * event.step / event.total:.0f}%)" if event.total else ""
    when = job.started if job.started.seconds else job.created
    stamp = _dt.datetime.fromtimestamp(when.seconds).strftime("%Y-%m-%d %H:%M:%S") if when.seconds else ""
    text = job.error.message if job.error.message else event.message
    return f"{job.job_id:16s} {state:10s} {job.kind:22s} {progress:14s} {stamp}  {text[:60]}".rstrip()


def _cmd_list(args: argparse.Namespace) -> int:
    found = jobs_by_service(_stages(args), args, tuple(args.state or ()), args.limit)
    errors = {stage: err for stage, err in found.items() if isinstance(err, UserError)}
    if args.json:
        print_json(
            {
                stage: {"error": str(rows)} if isinstance(rows, UserError) else [job_summary(j) for j in rows]
                for stage, rows in found.items()
            }
        )
    else:
        for stage, rows in found.items():
            if isinstance(rows, UserError):
                continue
            print(f"{stage} ({len(rows)} job{'s' if len(rows) != 1 else ''})")
            for job in rows:
                print(f"  {job_line(job)}")
    if errors and len(errors) == len(found):  # nothing answered: the one error line, exit 2
        raise next(iter(errors.values()))
    for err in errors.values():
        print(f"warning: {err}", file=sys.stderr)
    return 0


def find_job(job_id: str, args: argparse.Namespace) -> tuple[str, object]:
    """(stage, job) of the service that knows ``job_id``."""
    import grpc

    from skingenbench.api.v1 import common_pb2

    unreachable = []
    for stage in _stages(args):
        with Service.from_args(stage, args) as service:
            try:
                job = service.jobs.GetJob(common_pb2.GetJobRequest(job_id=job_id), timeout=5.0)
            except grpc.RpcError as exc:
                if exc.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
                    continue
                if exc.code() == grpc.StatusCode.UNAVAILABLE:
                    unreachable.append(f"{stage} at {service.target}")
                    continue
                raise
            return stage, job
    where = f" (not reachable: {', '.join(unreachable)})" if unreachable else ""
    raise UserError(
        f"no service knows the job {job_id!r}{where}", "list the jobs with `skingenbench jobs list`"
    )


def _cmd_watch(args: argparse.Namespace) -> int:
    stage, job = find_job(args.job_id, args)
    with Service.from_args(stage, args) as service:
        final = service.follow(job, f"{stage} {job.kind} {job.job_id}", plain=args.plain or None)
    if args.json:
        print_json(job_summary(final))
    else:
        print(job_line(final))
    return 0


def _cmd_cancel(args: argparse.Namespace) -> int:
    from skingenbench.api.v1 import common_pb2
    from skingenbench.services.platform.client import FINAL

    stage, job = find_job(args.job_id, args)
    with Service.from_args(stage, args) as service:
        job = service.call(
            "CancelJob", common_pb2.CancelJobRequest(job_id=args.job_id), timeout_s=60.0, stub=service.jobs
        )
        # A running job stops at its next cancellation check (training checkpoints first): wait for that,
        # so "cancelled" is printed only when it is true.
        deadline = time.monotonic() + args.wait
        while job.state not in FINAL and time.monotonic() < deadline:
            time.sleep(0.5)
            job = service.call(
                "GetJob", common_pb2.GetJobRequest(job_id=args.job_id), timeout_s=10.0, stub=service.jobs
            )
    if job.state not in FINAL:
        print(f"cancel requested; the job has not stopped after {args.wait:.0f} s", file=sys.stderr)
    if args.json:
        print_json(job_summary(job))
    else:
        print(f"{stage}: {job_line(job)}")
    return 0


def _targets(parser: argparse.ArgumentParser) -> None:
    from skingenbench.services.platform.settings import SERVICES

    parser.add_argument("--service", default="", choices=["", *SERVICES], help="only this service")
    add_connection_arguments(parser, None)
    add_output_arguments(parser)


def register(commands: argparse._SubParsersAction) -> None:
    jobs = commands.add_parser(
        "jobs",
        help="list, watch or cancel the jobs of the running services",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    ).add_subparsers(dest="jobs_command", required=True, metavar="{list,watch,cancel}")

    listing = jobs.add_parser("list", help="recent jobs of every service, newest first")
    listing.add_argument("--state", nargs="*", choices=STATES, help="only jobs in these states")
    listing.add_argument("--kind", default="", help="only this kind, e.g. train_generator")
    listing.add_argument("--limit", type=int, default=20, help="per service and state (default 20)")
    _targets(listing)
    listing.set_defaults(func=_cmd_list)

    watch = jobs.add_parser("watch", help="follow a job's progress until it ends")
    watch.add_argument("job_id")
    _targets(watch)
    watch.set_defaults(func=_cmd_watch)

    cancel = jobs.add_parser("cancel", help="stop a job (training checkpoints first)")
    cancel.add_argument("job_id")
    cancel.add_argument(
        "--wait", type=float, default=60.0, help="seconds to wait for it to stop (default 60)"
    )
    _targets(cancel)
    cancel.set_defaults(func=_cmd_cancel)
