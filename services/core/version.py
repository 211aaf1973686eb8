"""The code version recorded in every manifest's provenance."""

from __future__ import annotations

import functools
import importlib.metadata
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path

from skingenbench import __version__


@functools.cache
def code_version() -> str:
    """``<package version>+g<git sha>`` in a checkout, the package version elsewhere.

    Containers have no .git: their build sets ``SKINGENBENCH_GIT_SHA`` instead.
    """
    sha = os.environ.get("SKINGENBENCH_GIT_SHA", "")
    if not sha:
        repo = Path(__file__).resolve().parents[2]
        if (repo / ".git").exists():
            try:
                sha = subprocess.run(
                    ["git", "-C", str(repo), "rev-parse", "--short=12", "HEAD"],
                    capture_output=True,
                    text=True,
                    timeout=5,
                    check=True,
                ).stdout.strip()
            except (OSError, subprocess.SubprocessError):
                sha = ""
    return f"{__version__}+g{sha}" if sha else __version__


def installed_versions(distributions: Iterable[str]) -> dict[str, str]:
    """Installed version of each distribution (PyPI name), read from package metadata without importing
    it; "absent" where it is not installed. What a report records so a reader can rerun a number."""
    versions = {}
    for name in distributions:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions
