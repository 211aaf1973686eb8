"""The images' HEALTHCHECK: grpc.health.v1 Check of this container's service, exit 0 when SERVING.

Asks for the stage's own service name (``skingenbench.v1.Generation`` ...), which follows the store
(services/platform/readiness.py): a server whose store does not answer is unhealthy, as it is to the
flow's endpoint pools. With ``SKINGENBENCH_HEALTH_PORT`` set it asks the plaintext health listener (the
one probes use when TLS is on); otherwise the service port, over TLS when ``SKINGENBENCH_TLS_CA`` is set.
"""

from __future__ import annotations

import os
import sys

from skingenbench.services.platform.client import health_status
from skingenbench.services.platform.settings import ServiceSettings
from skingenbench.services.platform.tls import ClientTls


def main() -> int:
    stage = os.environ.get("SKINGENBENCH_STAGE", "")
    if not stage:
        print("healthcheck: SKINGENBENCH_STAGE is not set", file=sys.stderr)
        return 1
    settings = ServiceSettings.from_env(stage)
    if settings.health_port:
        target, tls = f"127.0.0.1:{settings.health_port}", ClientTls()
    else:
        target, tls = f"127.0.0.1:{settings.port}", None  # None: the environment's client TLS settings
    status = health_status(target, settings.service_name, timeout_s=4.0, tls=tls)
    print(f"{stage} {target}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
