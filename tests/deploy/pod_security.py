"""The Pod Security Standards' `restricted` profile, as field checks on a pod spec.

Follows the Kubernetes documentation "Pod Security Standards" (policies Baseline and Restricted, v1.3x):
no host namespaces, ports or paths; no privileged containers; only NET_BIND_SERVICE may be added and ALL
must be dropped; allowPrivilegeEscalation false; runAsNonRoot true and no uid 0; a RuntimeDefault or
Localhost seccomp profile; only the restricted volume types; no unsafe sysctls or procMount. Each finding is
a sentence naming the container and the field, so a failing test says what to fix. Beyond the profile,
``house_findings`` checks this project's own rules: uid 10001 and a read-only root filesystem with
emptyDir volumes for /tmp and HOME.
"""

from __future__ import annotations

from typing import Any

RESTRICTED_VOLUME_TYPES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret",
}  # fmt: skip
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies", "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
}  # fmt: skip
SERVICE_UID = 10001


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod.get("containers", []), *pod.get("ephemeralContainers", [])]


def restricted_findings(pod: dict[str, Any]) -> list[str]:
    """Every way ``pod`` (a PodSpec) breaks the `restricted` profile; empty when it passes."""
    found: list[str] = []
    pod_security = pod.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        if pod.get(field):
            found.append(f"pod sets {field}")
    for volume in pod.get("volumes", []):
        kinds = set(volume) - {"name"}
        if not kinds <= RESTRICTED_VOLUME_TYPES:
            found.append(f"volume {volume['name']} is of type {sorted(kinds)}")
    for sysctl in pod_security.get("sysctls", []):
        if sysctl["name"] not in SAFE_SYSCTLS:
            found.append(f"pod sets unsafe sysctl {sysctl['name']}")
    pod_seccomp = pod_security.get("seccompProfile", {}).get("type")
    if pod_seccomp not in (None, "RuntimeDefault", "Localhost"):
        found.append(f"pod seccompProfile is {pod_seccomp}")
    if pod_security.get("runAsUser") == 0:
        found.append("pod runs as uid 0")
    for container in _containers(pod):
        name = container["name"]
        security = container.get("securityContext", {})
        if security.get("privileged"):
            found.append(f"{name}: privileged")
        if security.get("allowPrivilegeEscalation") is not False:
            found.append(f"{name}: allowPrivilegeEscalation is not false")
        capabilities = security.get("capabilities", {})
        if "ALL" not in capabilities.get("drop", []):
            found.append(f"{name}: capabilities do not drop ALL")
        if set(capabilities.get("add", [])) - {"NET_BIND_SERVICE"}:
            found.append(f"{name}: adds capabilities {capabilities['add']}")
        if not security.get("runAsNonRoot", pod_security.get("runAsNonRoot")):
            found.append(f"{name}: runAsNonRoot is not true (container or pod)")
        if security.get("runAsUser") == 0:
            found.append(f"{name}: runs as uid 0")
        seccomp = security.get("seccompProfile", {}).get("type") or pod_seccomp
        if seccomp not in ("RuntimeDefault", "Localhost"):
            found.append(f"{name}: no RuntimeDefault/Localhost seccompProfile (container or pod)")
        if security.get("procMount", "Default") != "Default":
            found.append(f"{name}: procMount {security['procMount']}")
        for port in container.get("ports", []):
            if port.get("hostPort"):
                found.append(f"{name}: hostPort {port['hostPort']}")
    return found


def house_findings(pod: dict[str, Any], home: str) -> list[str]:
    """This project's rules beyond the profile: uid 10001, read-only root, emptyDir at /tmp and ``home``."""
    found: list[str] = []
    pod_security = pod.get("securityContext", {})
    empty_dirs = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
    for container in _containers(pod):
        name = container["name"]
        security = container.get("securityContext", {})
        if security.get("runAsUser", pod_security.get("runAsUser")) != SERVICE_UID:
            found.append(f"{name}: does not run as uid {SERVICE_UID}")
        if security.get("readOnlyRootFilesystem") is not True:
            found.append(f"{name}: root filesystem is not read-only")
    for container in pod.get("containers", []):
        mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
        for path in ("/tmp", home):
            if mounts.get(path) not in empty_dirs:
                found.append(f"{container['name']}: no emptyDir mounted at {path}")
    return found
