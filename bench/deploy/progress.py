"""Progress lines and the results file of the deploy check: written after every step, so a failed run
leaves what it measured up to the failure."""

from __future__ import annotations

import datetime as _dt
import json
import sys
import time
from pathlib import Path
from typing import Any

_START = time.monotonic()


def say(message: str) -> None:
    print(f"[deploy-check {time.monotonic() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


class Results:
    """A JSON document grown step by step; ``save`` writes it whole (a temporary file, then a rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {
            "started_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "ok": False,
            "failures": [],
            "steps": {},
        }

    def step(self, name: str, value: Any) -> None:
        self.data["steps"][name] = value
        self.save()

    def fail(self, step: str, error: BaseException | str) -> None:
        self.data["failures"].append({"step": step, "error": str(error)[-3000:]})
        say(f"FAILED {step}: {error}")
        self.save()

    def save(self) -> None:
        self.data["elapsed_s"] = round(time.monotonic() - _START, 1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.data, indent=2, sort_keys=False) + "\n")
        tmp.replace(self.path)
