"""The ``skingenbench`` command line: services, the local stack, data and reports."""

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

    parser = argparse.ArgumentParser(prog="skingenbench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run one service in the foreground")
    serve.add_argument("stage", choices=list(SERVICES))
    serve.set_defaults(func=_cmd_serve)

    up = commands.add_parser("up", help="start the local stack (each service its own process)")
    up.add_argument("services", nargs="*", help=f"subset of: {', '.join(SERVICES)} (default: all)")
    up.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for SERVING")
    up.set_defaults(func=_cmd_up)

    status = commands.add_parser("status", help="health of the local stack")
    status.set_defaults(func=_cmd_status)

    down = commands.add_parser("down", help="stop the local stack gracefully")
    down.add_argument("--timeout", type=float, default=40.0, help="seconds before SIGKILL")
    down.set_defaults(func=_cmd_down)

    for register in _extensions():
        register(commands)
    return parser


def _extensions() -> list:
    """Command groups beyond the stack: each module's ``register(commands)`` adds its parsers."""
    from skingenbench.cli import convert, data, generate, report, run, tls

    return [data.register, generate.register, run.register, report.register, tls.register, convert.register]


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # the CLI answers with the message, not a traceback, for known errors
        from skingenbench.services.core.errors import SkinGenBenchError

        if isinstance(exc, SkinGenBenchError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
