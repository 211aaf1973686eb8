"""Options the stage commands share: ``--set key=value`` config overrides, ``--json``/``--plain`` output,
manifest references, local weight files as checked references."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

from skingenbench.cli.errors import UserError, require_manifest_uri


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print the result as JSON on stdout (for scripts)"
    )
    parser.add_argument(
        "--plain", action="store_true", help="progress as plain lines, not a live bar (CI logs)"
    )


def add_set_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override one field of the profile's {what} config (repeatable); VALUE is JSON if it "
        "parses (30, 0.5, true, [1,2]), else a string",
    )


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``["train_steps=30", "sampler=ddim"]`` -> ``{"train_steps": 30, "sampler": "ddim"}``."""
    config: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set expects KEY=VALUE, got {pair!r}", "e.g. --set train_steps=30")
        try:
            config[key] = json.loads(raw)
        except ValueError:
            config[key] = raw
    return config


def manifest_ref(text: str, what: str = "manifest"):
    from skingenbench.api.v1 import common_pb2

    return common_pb2.ManifestRef(uri=require_manifest_uri(text, what))


def local_file_ref(path_text: str, what: str):
    """A local file (weights) as an ObjectRef pinned by its sha256, so the service checks it is the same
    file; a missing file is the user's error here, before any job starts."""
    from skingenbench.api.v1 import common_pb2

    if "://" in path_text:
        return common_pb2.ObjectRef(uri=path_text)
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise UserError(f"{what} {path_text!r} is not a file", "give the path of the downloaded file")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return common_pb2.ObjectRef(uri=path.resolve().as_uri(), sha256=digest.hexdigest())


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=1, sort_keys=True, default=str)
    print()
