"""``skingenbench --version``: what a bug report or a methods section needs to name this installation.

The code version (package version and git commit, as every manifest's provenance records it), the
installed versions of the packages the science depends on (the list each service reports in
``ServiceInfo.libraries``), the Python, the store the local stack uses and where each service is expected.
"""

from __future__ import annotations

import os
import platform


def version_report() -> dict:
    from skingenbench.cli import stack
    from skingenbench.services.core.version import code_version, installed_versions
    from skingenbench.services.platform.servicer import REPORTED_LIBRARIES
    from skingenbench.services.platform.settings import SERVICES

    tooling = ("grpcio", "protobuf", "prefect", "rich", "minio")
    return {
        "skingenbench": code_version(),
        "python": platform.python_version(),
        "packages": installed_versions((*REPORTED_LIBRARIES, *tooling)),
        "store": os.environ.get("SKINGENBENCH_STORE") or (stack.home() / "store").as_uri(),
        "home": str(stack.home()),
        "services": {stage: stack.target_for(stage) for stage in SERVICES},
    }


def version_text() -> str:
    report = version_report()
    lines = [f"skingenbench {report['skingenbench']} (Python {report['python']})"]
    lines.append("packages: " + ", ".join(f"{k} {v}" for k, v in report["packages"].items()))
    lines.append(f"store:    {report['store']}")
    lines.append("services: " + ", ".join(f"{k} {v}" for k, v in report["services"].items()))
    return "\n".join(lines)
