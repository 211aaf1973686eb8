"""``skingenbench tls self-signed``, and the TLS options every client command shares.

    skingenbench tls self-signed --out tls/            # ca.pem, server.pem, server-key.pem, client.pem ...
    export SKINGENBENCH_TLS_CERT=tls/server.pem SKINGENBENCH_TLS_KEY=tls/server-key.pem   # servers
    export SKINGENBENCH_TLS_CA=tls/ca.pem                                                 # clients
    skingenbench up && skingenbench status

A client command takes ``--tls-ca``, ``--tls-cert`` and ``--tls-key``; each defaults to its
``SKINGENBENCH_TLS_*`` variable (services/platform/tls.py lists them).
"""

from __future__ import annotations

import argparse
import sys


def add_tls_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TLS (default: $SKINGENBENCH_TLS_CA, _CLIENT_CERT, _CLIENT_KEY)")
    group.add_argument("--tls-ca", default=None, metavar="PEM", help="CA bundle to verify the server by")
    group.add_argument("--tls-cert", default=None, metavar="PEM", help="client certificate (mutual TLS)")
    group.add_argument("--tls-key", default=None, metavar="PEM", help="client private key (mutual TLS)")


def client_tls(args: argparse.Namespace):
    """The ClientTls of a command's options over the environment's settings."""
    from skingenbench.services.platform.tls import ClientTls

    return ClientTls.resolve(ca=args.tls_ca, cert=args.tls_cert, key=args.tls_key)


def _cmd_self_signed(args: argparse.Namespace) -> int:
    try:
        from skingenbench.services.platform.tls import self_signed

        kit = self_signed(args.out, args.host or ["localhost", "127.0.0.1"], days=args.days)
    except ImportError:
        print("error: the `cryptography` package is needed (pip install cryptography)", file=sys.stderr)
        return 2
    print(
        f"wrote a private CA and certificates to {args.out}/ (server names: "
        f"{', '.join(args.host or ['localhost', '127.0.0.1'])}; valid {args.days} days)\n"
        f"servers:  SKINGENBENCH_TLS_CERT={kit.server_cert} SKINGENBENCH_TLS_KEY={kit.server_key}\n"
        f"          (mutual TLS: SKINGENBENCH_TLS_CLIENT_CA={kit.ca})\n"
        f"clients:  SKINGENBENCH_TLS_CA={kit.ca}\n"
        f"          (mutual TLS: SKINGENBENCH_TLS_CLIENT_CERT={kit.client_cert} "
        f"SKINGENBENCH_TLS_CLIENT_KEY={kit.client_key})\n"
        f"keep {kit.ca_key} off the servers: it signs certificates"
    )
    return 0


def register(commands: argparse._SubParsersAction) -> None:
    tls = commands.add_parser("tls", help="TLS helpers (a self-signed CA and certificates)")
    actions = tls.add_subparsers(dest="action", required=True)
    kit = actions.add_parser(
        "self-signed",
        help="write a private CA, a server certificate and a client certificate (PEM) into a folder",
    )
    kit.add_argument("--out", required=True, help="folder for the PEM files (keys are written 0600)")
    kit.add_argument(
        "--host",
        action="append",
        default=[],
        help="a DNS name or IP address the server certificate is for (repeatable; "
        "default: localhost and 127.0.0.1)",
    )
    kit.add_argument("--days", type=int, default=365, help="validity in days")
    kit.set_defaults(func=_cmd_self_signed)
