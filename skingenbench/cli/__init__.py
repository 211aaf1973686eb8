"""The ``skingenbench`` command line: services, the local stack, data, every stage's jobs and reports.

Every expected mistake (a wrong name, a folder where a manifest URI belongs, a service that is not up)
is answered with one line ``error: … (what to do)`` and exit code 2; ``--debug`` (anywhere on the
command line, or ``SKINGENBENCH_DEBUG=1``) adds the traceback. A job that fails exits 1.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys


def _configure_logging() -> None:
    level = os.environ.get("SKINGENBENCH_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def _cmd_serve(args: argparse.Namespace) -> int:
    from skingenbench.services.stages import serve

    _configure_logging()
    serve(args.stage)
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from skingenbench.cli import stack

    # One stack per home: a second `up` says what is running and exits non-zero (stack.py).
    return stack.up(args.services or None, timeout_s=args.timeout, reuse_running=False)


def _cmd_status(args: argparse.Namespace) -> int:
    from skingenbench.cli import stack

    return stack.status()


def _cmd_down(args: argparse.Namespace) -> int:
    from skingenbench.cli import stack

    return stack.down(timeout_s=args.timeout)


def build_parser() -> argparse.ArgumentParser:
    from skingenbench.services.platform.settings import SERVICES

    parser = argparse.ArgumentParser(
        prog="skingenbench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--version", action="store_true", help="code version, package versions, store and service targets"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("stage", choices=list(SERVICES))
    serve.set_defaults(func=_cmd_serve)

    up = commands.add_parser("up", help="start the local stack (each service its own process)")
    up.add_argument("services", nargs="*", help=f"subset of: {', '.join(SERVICES)} (default: all)")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for SERVING")
    up.set_defaults(func=_cmd_up)

    status = commands.add_parser("status", help="health of the local stack and its running and queued jobs")
    status.set_defaults(func=_cmd_status)

    down = commands.add_parser("down", help="stop the local stack gracefully")
    down.add_argument("--timeout", type=float, default=40.0, help="seconds before SIGKILL")
    down.set_defaults(func=_cmd_down)

    for register in _extensions():
        register(commands)
    return parser


def _extensions() -> list:
    """Command groups beyond the stack: each module's ``register(commands)`` adds its parsers."""
    from skingenbench.cli import (
        classify,
        convert,
        data,
        evaluate,
        generate,
        jobs,
        reader_study,
        report,
        run,
        runs,
        serve_flows,
        tls,
        train,
    )

    return [
        data.register,
        train.register,
        generate.register,
        evaluate.register,
        classify.register,
        jobs.register,
        run.register,
        serve_flows.register,
        runs.register,
        report.register,
        tls.register,
        convert.register,
        reader_study.register,
    ]


def _split_debug(argv: list[str]) -> tuple[list[str], bool]:
    """``--debug`` is taken wherever it stands (``skingenbench train … --debug`` too), up to ``--``."""
    end = argv.index("--") if "--" in argv else len(argv)
    debug = "--debug" in argv[:end] or os.environ.get("SKINGENBENCH_DEBUG", "") not in ("", "0")
    return [a for i, a in enumerate(argv) if not (a == "--debug" and i < end)], debug


def main(argv: list[str] | None = None) -> int:
    from skingenbench.cli.errors import (
        EXIT_INTERRUPTED,
        EXIT_JOB_FAILED,
        EXIT_USAGE,
        JobEnded,
        UserError,
        one_line,
    )

    argv, debug = _split_debug(list(sys.argv[1:] if argv is None else argv))
    if "--version" in argv[:1] or argv == ["-V"]:
        from skingenbench.cli.version import version_text

        print(version_text())
        return 0
    args = build_parser().parse_args(argv)
    args.debug = debug  # taken off argv above; commands that report their own failures read it
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except Exception as exc:  # expected errors: one line, no traceback (unless --debug)
        from skingenbench.services.core.errors import SkinGenBenchError

        if isinstance(exc, JobEnded):
            code = EXIT_JOB_FAILED
        elif isinstance(exc, (UserError, SkinGenBenchError)):
            code = EXIT_USAGE
        else:
            raise
        if debug:
            import traceback

            traceback.print_exception(exc, file=sys.stderr)
        print(f"error: {one_line(str(exc))}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
